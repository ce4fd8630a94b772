"""What approvers and requesters see of approval requests (issue 22 §1-2), through a real
gateway: real PDP with its HTTP API, real proxy, real asyncpg clients, tokens from the dev
issuer, the real `portcullis approvals` CLI and a real webhook receiver.

- values are masked where the policy masks them — a card number, an email, an SSN bound
  as a parameter or written as a literal never reaches an approver's view, the webhook or
  the audit store — while the approval still binds to the exact values;
- a requester sees only their own requests, an approver those they may decide, and
  nobody is shown a session id.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

import aiohttp
import asyncpg
import pytest
from pdp_harness import REGO, free_port
from pg_harness import running_gateway
from test_approvals import SECURITY, approvals_cli, webhook_at

CARD = "4111111111111111"
OTHER_CARD = "5555555555554444"  # masked exactly like CARD: only the binding tells them apart
EMAIL = "ada@example.com"
SSN = "123-45-6789"
LITERAL_EMAIL = "mallory.secret@example.net"
SECRETS = (CARD, OTHER_CARD, EMAIL, SSN, LITERAL_EMAIL, "4111 1111 1111 1111")
READER = ("readonly",)


def leaked(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


async def pending(gw, count: int, timeout: float = 15) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in gw.pdp.approvals.requests.values() if r.state == "pending"]
        if len(found) >= count:
            return sorted(found, key=lambda r: r.created_at)
        await asyncio.sleep(0.1)
    raise AssertionError(f"{count} approval requests never appeared")


def gateway(tmp_path, http_port: int, **approvals):
    return running_gateway(
        tmp_path,
        approvals={"timeout_seconds": 60, **approvals},
        pdp={
            "listen": f"127.0.0.1:{free_port()}",
            "http_listen": f"127.0.0.1:{http_port}",
            "engine": {"type": "embedded", "policies": str(REGO), "workers": 2},
            "store": {"type": "sqlite", "path": str(tmp_path / "audit.db")},
            "signing_key": str(tmp_path / "signing.key"),
        },
    )


async def get_approvals(http_port: int, token: str, query: str = "") -> dict:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"http://127.0.0.1:{http_port}/v1/approvals{query}",
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        assert response.status == 200
        return await response.json()


async def test_approvers_see_sensitive_values_masked_and_the_approval_binds_to_the_real_ones(
    tmp_path,
):
    received: list[dict] = []
    hook_port, http_port = free_port(), free_port()

    async with (
        webhook_at(hook_port, received),
        gateway(tmp_path, http_port, webhook=f"http://127.0.0.1:{hook_port}/hook") as gw,
    ):
        with gw.admin() as admin:
            admin.execute("ALTER TABLE customers ADD COLUMN card_number text")
        conn = await asyncpg.connect(gw.dsn(gw.token("alice@example.com", READER)))
        bound = "UPDATE customers SET card_number = $1, note = $3 WHERE email = $2"
        update = asyncio.ensure_future(conn.execute(bound, CARD, EMAIL, "renewed"))
        (request,) = await pending(gw, 1)
        # a literal in the text: the SSN assigned to ssn, an email anywhere (detector)
        other = await asyncpg.connect(gw.dsn(gw.token("alice@example.com", READER)))
        literal = asyncio.ensure_future(
            other.execute(
                f"UPDATE customers SET ssn = '{SSN}', note = 'mail {LITERAL_EMAIL}' WHERE id = 2"
            )
        )
        _, literal_request = await pending(gw, 2)

        # what approvers are shown: the CLI (gRPC), the HTTP API, the webhook
        assert request.parameters == ["[REDACTED]", "[REDACTED]", "renewed"]
        approver = gw.token("sam@example.com", SECURITY)
        views = [("list",), ("list", "--format", "json"), ("show", request.id)]
        views += [("show", literal_request.id), ("show", request.id, "--format", "json")]
        for args in views:
            shown = await asyncio.to_thread(approvals_cli, gw, tmp_path, approver, *args)
            assert shown.returncode == 0, shown.stderr
            assert leaked(shown.stdout) == [], (args, shown.stdout)
            assert request.id in shown.stdout or literal_request.id in shown.stdout
        listed = await asyncio.to_thread(approvals_cli, gw, tmp_path, approver, "list")
        assert "$2 = [REDACTED]" in listed.stdout and "$3 = renewed" in listed.stdout
        assert "SET ssn = '[REDACTED]'" in listed.stdout
        assert "UPDATE customers SET card_number = $1" in listed.stdout
        api = await get_approvals(http_port, approver)
        assert leaked(json.dumps(api)) == []
        assert {a["id"] for a in api["approvals"]} == {request.id, literal_request.id}
        deadline = time.monotonic() + 20
        while len(received) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert len(received) == 2
        assert leaked(json.dumps(received)) == []
        assert all("session_id" not in r["approval"] for r in received)
        # nor does the audit store (and what forwards it) hold the bound values (the
        # exact text stays, as in the decision records: reuse compares it)
        for record in await gw.pdp.store.query(kind="approval"):
            assert [s for s in (CARD, EMAIL) if s in json.dumps(record.body)] == []

        # approved, it runs with the real values...
        await gw.pdp.approvals.decide(
            request.id,
            {"subject": "sam@example.com", "groups": ["security"], "issuer": "dev"},
            True,
            "card renewal, ticket 7",
        )
        assert await asyncio.wait_for(update, 15) == "UPDATE 1"
        with gw.admin() as admin:
            stored = admin.execute("SELECT card_number FROM customers WHERE id = 1")
            assert stored.fetchone()[0] == CARD
        # ...and only with them: the same view with another card asks again
        assert await conn.execute(bound, CARD, EMAIL, "renewed") == "UPDATE 1"
        again = asyncio.ensure_future(conn.execute(bound, OTHER_CARD, EMAIL, "renewed"))
        _, asked = await pending(gw, 2)  # the literal one, and this one
        assert asked.parameters == request.parameters  # the same view...
        assert asked.parameters_digest != request.parameters_digest  # ...not the same values
        await gw.pdp.approvals.decide(
            asked.id,
            {"subject": "sam@example.com", "groups": ["security"], "issuer": "dev"},
            False,
            "not this card",
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await asyncio.wait_for(again, 15)
        await conn.close()
        other.terminate()
        await asyncio.gather(literal, return_exceptions=True)


async def test_requesters_see_only_their_own_requests_and_nobody_a_session_id(tmp_path):
    http_port = free_port()
    async with gateway(tmp_path, http_port) as gw:
        alice = gw.token("alice@example.com", READER)
        bob = gw.token("bob@example.com", READER)
        carol = gw.token("carol@example.com", READER)
        sam = gw.token("sam@example.com", SECURITY)
        alice_conn = await asyncpg.connect(gw.dsn(alice))
        bob_conn = await asyncpg.connect(gw.dsn(bob))
        waits = [
            asyncio.ensure_future(
                alice_conn.execute("UPDATE customers SET note = 'alice was here' WHERE id = 1")
            )
        ]
        (alice_request,) = await pending(gw, 1)
        waits.append(asyncio.ensure_future(bob_conn.execute("DELETE FROM orders WHERE id = 11")))
        _, bob_request = await pending(gw, 2)
        session_ids = {alice_request.session_id, bob_request.session_id}
        assert all(session_ids)

        def ids(body: dict) -> set[str]:
            return {a["id"] for a in body["approvals"]}

        # the HTTP API
        for query in ("", "?pending=1"):
            assert ids(await get_approvals(http_port, alice, query)) == {alice_request.id}
            assert ids(await get_approvals(http_port, bob, query)) == {bob_request.id}
            assert ids(await get_approvals(http_port, carol, query)) == set()
            assert ids(await get_approvals(http_port, sam, query)) == {
                alice_request.id, bob_request.id,
            }  # fmt: skip
        for who in (alice, bob, carol, sam):
            body = json.dumps(await get_approvals(http_port, who))
            assert not any(s in body for s in session_ids) and "session_id" not in body
        # the same subject with another case is not the requester
        shouted = gw.token("ALICE@EXAMPLE.COM", READER)
        assert ids(await get_approvals(http_port, shouted)) == set()

        # gRPC ListApprovals, through the CLI
        async def cli(token: str, *args: str):
            return await asyncio.to_thread(approvals_cli, gw, tmp_path, token, *args)

        mine = await cli(alice, "list", "--format", "json")
        assert mine.returncode == 0, mine.stderr
        assert {a["id"] for a in json.loads(mine.stdout)} == {alice_request.id}
        assert not any(s in mine.stdout for s in session_ids)
        assert "alice was here" in mine.stdout  # a requester sees their own command
        theirs = await cli(carol, "list")
        assert theirs.returncode == 0 and theirs.stdout.strip() == ""
        peek = await cli(bob, "show", alice_request.id)
        assert peek.returncode != 0 and "alice was here" not in peek.stdout + peek.stderr
        everything = await cli(sam, "list", "--format", "json")
        assert {a["id"] for a in json.loads(everything.stdout)} == {
            alice_request.id, bob_request.id,
        }  # fmt: skip
        assert not any(s in everything.stdout for s in session_ids)

        # a reader may not decide another reader's request, nor learn its text by trying
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"http://127.0.0.1:{http_port}/v1/approvals/{alice_request.id}/approve",
                json={"reason": "mutual favour"},
                headers={"Authorization": f"Bearer {bob}"},
            ) as response:
                assert response.status == 403
                assert "alice was here" not in await response.text()
            async with http.post(
                f"http://127.0.0.1:{http_port}/v1/approvals/{bob_request.id}/deny",
                json={"reason": "not now"},
                headers={"Authorization": f"Bearer {sam}"},
            ) as response:
                assert response.status == 200
                decided = await response.text()
                assert bob_request.session_id not in decided and "session_id" not in decided
        # decided requests stay visible to their requester only
        assert ids(await get_approvals(http_port, bob)) == {bob_request.id}
        assert ids(await get_approvals(http_port, alice)) == {alice_request.id}
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await asyncio.wait_for(waits[1], 15)
        await bob_conn.close()
        alice_conn.terminate()
        await asyncio.gather(*waits, return_exceptions=True)


async def test_an_approval_of_a_long_value_does_not_approve_another_with_the_same_start(tmp_path):
    """The proxy shows an approver the first 4096 bytes of a value; the approval binds to the
    whole of it (its size and SHA-256 travel with the cut value), and the SQL NULL and the
    text 'NULL' are two values."""
    approver = {"subject": "sam@example.com", "groups": ["security"], "issuer": "dev"}
    start = "x" * 4096
    approved_value, other_value = start + "a" * 904, start + "b" * 904
    async with gateway(tmp_path, free_port()) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token("alice@example.com", READER)))
        bound = "UPDATE customers SET note = $1 WHERE id = $2"
        update = asyncio.ensure_future(conn.execute(bound, approved_value, 1))
        (request,) = await pending(gw, 1)
        # shown: the start, and that it was cut; never the digest the binding covers
        assert request.parameters == [f"{start} (the first 4096 of 5000 bytes)", "1"]
        record = json.dumps([r.body for r in await gw.pdp.store.query(kind="approval")])
        assert hashlib.sha256(approved_value.encode()).hexdigest() not in record
        await gw.pdp.approvals.decide(request.id, approver, True, "long note, ticket 9")
        assert await asyncio.wait_for(update, 15) == "UPDATE 1"
        assert await conn.execute(bound, approved_value, 1) == "UPDATE 1"  # the same: reused

        # the same statement, a value with the same first 4096 bytes: asked again
        again = asyncio.ensure_future(conn.execute(bound, other_value, 1))
        (asked,) = await pending(gw, 1)
        assert asked.id != request.id and asked.parameters == request.parameters
        assert asked.parameters_digest != request.parameters_digest
        await gw.pdp.approvals.decide(asked.id, approver, False, "not this one")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await asyncio.wait_for(again, 15)
        with gw.admin() as admin:
            stored = admin.execute("SELECT note FROM customers WHERE id = 1").fetchone()[0]
        assert stored == approved_value

        # SQL NULL approved does not approve the text 'NULL'
        clear = asyncio.ensure_future(conn.execute(bound, None, 2))
        (null_request,) = await pending(gw, 1)
        assert null_request.parameters == ["NULL", "2"]
        await gw.pdp.approvals.decide(null_request.id, approver, True, "clear note")
        assert await asyncio.wait_for(clear, 15) == "UPDATE 1"
        text = asyncio.ensure_future(conn.execute(bound, "NULL", 2))
        (text_request,) = await pending(gw, 1)
        assert text_request.parameters == ["NULL (the text 'NULL', not SQL NULL)", "2"]
        await gw.pdp.approvals.decide(text_request.id, approver, False, "no")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await asyncio.wait_for(text, 15)
        await conn.close()
