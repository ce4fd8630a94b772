"""Readable, consistent output (issue 23 §8), end to end: a real PDP, a real Postgres proxy,
asyncpg as the client, the HTTP API, a real webhook receiver and the `portcullis` CLI.

- one time form everywhere (RFC 3339 UTC with milliseconds) and snake_case keys: the
  approvals CLI JSON, the HTTP API, the webhook, `sessions list` and `replay` JSON;
- replay reasons that match the verdict: a mask says what it masked (never "every
  statement is allowed"), a deny gives its reason once, a person's denial reads
  "denied by <approver>: <reason>"; no "0 bytes" when bytes were not recorded;
- the client reads a person's denial as theirs, not as "denied by policy".
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from typing import Any

import aiohttp
import asyncpg
import pytest
import yaml
from pdp_harness import REGO, REPO, free_port
from pg_harness import running_gateway
from test_approvals import approvals_cli, pending_id, webhook_at

RFC3339_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def times_and_keys(value: Any, path: str = "") -> list[str]:
    """Every problem with the output's form: a camelCase key, a time not RFC 3339."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}"
            if key != key.lower():
                found.append(f"{where}: key is not snake_case")
            is_time = key == "time" or key.endswith("_at")
            if is_time and item is not None and not RFC3339_MS.fullmatch(str(item)):
                found.append(f"{where}: {item!r} is not RFC 3339 with milliseconds")
            found += times_and_keys(item, where)
    elif isinstance(value, list):
        for n, item in enumerate(value):
            found += times_and_keys(item, f"{path}[{n}]")
    return found


def portcullis(config, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pdp.cli", "-c", str(config), *args],
        capture_output=True, text=True, cwd=REPO, env=dict(os.environ), timeout=60,
    )  # fmt: skip


async def test_outputs_share_one_time_form_and_reasons_match_verdicts(tmp_path):
    received: list[dict[str, Any]] = []
    hook_port, http_port = free_port(), free_port()

    async with (
        webhook_at(hook_port, received),
        running_gateway(
            tmp_path,
            approvals={"timeout_seconds": 60, "webhook": f"http://127.0.0.1:{hook_port}/hook"},
            pdp={
                "listen": f"127.0.0.1:{free_port()}",
                "http_listen": f"127.0.0.1:{http_port}",
                "engine": {"type": "embedded", "policies": str(REGO), "workers": 2},
                "store": {"type": "sqlite", "path": str(tmp_path / "audit.db")},
                "signing_key": str(tmp_path / "signing.key"),
            },
        ) as gw,
    ):
        conn = await asyncpg.connect(gw.dsn(gw.token("alice@example.com", ("readonly",))))
        assert len(await conn.fetch("SELECT id, name FROM customers")) == 2
        assert len(await conn.fetch("SELECT id, email FROM customers")) == 2
        with pytest.raises(asyncpg.InsufficientPrivilegeError) as dropped:
            await conn.execute("DROP TABLE orders")
        # the reason is given once, not again as a generic "no rule allows ..."
        assert dropped.value.args[0] == (
            "portcullis: denied by policy: no rule allows drop statement (DropStmt)"
            " for alice@example.com"
        )
        update = asyncio.ensure_future(conn.execute("UPDATE customers SET name = 'R' WHERE id = 2"))
        approval_id = await pending_id(gw)
        deadline = time.monotonic() + 20
        while not received and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert received, "the webhook was not delivered"
        assert times_and_keys(received[0]) == []
        assert RFC3339_MS.fullmatch(received[0]["approval"]["created_at"])

        dave = gw.token("dave@example.com", ("security",))
        listed = await asyncio.to_thread(
            approvals_cli, gw, tmp_path, dave, "list", "--format", "json"
        )
        cli_view = json.loads(listed.stdout)
        assert cli_view and times_and_keys(cli_view) == []
        assert cli_view[0]["created_at"] == received[0]["approval"]["created_at"]
        shown = await asyncio.to_thread(
            approvals_cli, gw, tmp_path, dave, "show", approval_id, "--format", "json"
        )
        assert times_and_keys(json.loads(shown.stdout)) == []

        base = f"http://127.0.0.1:{http_port}/v1/approvals"
        headers = {"Authorization": f"Bearer {dave}"}
        async with aiohttp.ClientSession() as http:
            async with http.get(base, headers=headers) as response:
                api = await response.json()
            assert times_and_keys(api) == []
            (pending,) = api["approvals"]
            assert pending["created_at"] == cli_view[0]["created_at"]
            assert pending["decided_at"] is None  # not decided yet: null, not 0
            async with http.post(
                f"{base}/{approval_id}/deny",
                json={"reason": "not during the freeze"},
                headers=headers,
            ) as response:
                assert response.status == 200
                decided = (await response.json())["approval"]
        assert times_and_keys(decided) == []
        assert RFC3339_MS.fullmatch(decided["decided_at"])

        # the client reads a person's denial as theirs
        with pytest.raises(asyncpg.InsufficientPrivilegeError) as denied:
            await asyncio.wait_for(update, 15)
        message = denied.value.args[0]
        assert message == (
            "portcullis: denied by dave@example.com: not during the freeze"
            f" (approval request {approval_id})"
        )
        await conn.close()
        await asyncio.sleep(0.5)
        session_id = (await gw.pdp.store.query(kind="session.open"))[0].session_id

        config = tmp_path / "reader.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "pdp": {
                        "listen": gw.pdp.address,
                        "store": {"type": "sqlite", "path": str(tmp_path / "audit.db")},
                        "signing_key": str(tmp_path / "signing.key"),
                        "engine": {"policies": str(REGO)},
                    },
                    "identity": {"dev": True, "dev_key": str(gw.config.identity.dev_key)},
                }
            )
        )
        listing = await asyncio.to_thread(
            portcullis, config, "sessions", "list", "--format", "json"
        )
        assert times_and_keys(json.loads(listing.stdout)) == []
        as_json = await asyncio.to_thread(
            portcullis, config, "replay", session_id, "--format", "json"
        )
        as_text = await asyncio.to_thread(portcullis, config, "replay", session_id)

    replay = json.loads(as_json.stdout)
    assert times_and_keys(replay) == []
    commands = {e["command"]: e for e in replay["events"] if e["type"] == "command"}
    plain = commands["SELECT id, name FROM customers"]
    assert plain["verdict"] == "mask"
    assert len(plain["reasons"]) == 1
    assert plain["reasons"][0].endswith("mask rules applied, no value in the result matched")
    masked = commands["SELECT id, email FROM customers"]
    assert masked["reasons"] == ["masked field email (redact): 2 values"]
    # the counts are the statement's own (details.masked), not an entry of their own
    assert masked["masking"] == {"field:email": 2} and "masked" not in masked["result"]
    assert not [e for e in replay["events"] if e["type"] == "masking"]
    drop = commands["DROP TABLE orders"]
    assert drop["reasons"] == ["no rule allows drop statement (DropStmt) for alice@example.com"]
    update_entry = commands["UPDATE customers SET name = 'R' WHERE id = 2"]
    assert update_entry["verdict"] == "deny" and update_entry["approval_id"] == approval_id
    assert update_entry["reasons"][0] == "denied by dave@example.com: not during the freeze"

    totals = replay["totals"]
    assert totals["rows"] == 4
    assert totals["masked"] == {"field:email": 2}
    assert totals["bytes"] is None, "Postgres events carry no byte counts: null, not 0"
    assert totals["bytes_to_client"] > 0

    text = as_text.stdout
    assert "every statement is allowed" not in text
    assert " 0 bytes" not in text
    assert f"4 rows, {totals['bytes_to_client']} bytes to the client" in text
    assert "— denied by dave@example.com: not during the freeze" in text
    assert "— masked field email (redact): 2 values" in text
    assert "for alice@example.com; no rule allows" not in text


async def test_replay_says_an_approval_expired_and_the_client_is_not_told_policy(tmp_path):
    async with running_gateway(tmp_path, approvals={"timeout_seconds": 2}) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token("alice@example.com", ("readonly",))))
        with pytest.raises(asyncpg.InsufficientPrivilegeError) as waited:
            await conn.execute("UPDATE customers SET name = 'R' WHERE id = 2")
        assert waited.value.args[0].startswith("portcullis: approval required: request a-")
        assert "denied by policy" not in waited.value.args[0]
        await conn.close()
        await asyncio.sleep(0.5)
        from pdp.domain.timeline import build_timeline

        store = gw.pdp.store
        (opened,) = await store.query(kind="session.open")
        sid = opened.session_id
        timeline = build_timeline(
            opened,
            (await store.query(kind="session.close", session_id=sid))[0],
            await store.query(kind="session.events", session_id=sid),
            await store.query(kind="decision", session_id=sid),
            await store.query(kind="approval", session_id=sid),
        )
    (update,) = [e for e in timeline.entries if e.type == "command"]
    assert update.verdict == "deny" and update.approval_id.startswith("a-")
    assert (
        update.reasons[0]
        == f"approval request {update.approval_id} expired: nobody decided in time"
    )
