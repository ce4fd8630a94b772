"""Shadow mode (`enforce: false`): real clients through the real Postgres proxy to the
machine's PostgreSQL, the real PDP and OPA. What the policy would refuse runs, what it
would mask arrives as stored, and every decision record says what the policy said and
that it was not enforced — while what is not the policy's verdict stays enforced."""

from __future__ import annotations

import logging

import asyncpg
import pytest
from pg_harness import running_gateway

from pdp.domain.shadow import enforced, shadow_verdict
from portcullis.verdict import MaskRule, Verdict, VerdictKind

SHADOW = {"enforce": False}


async def _decisions(gw, raw_contains: str) -> list[dict]:
    records = await gw.pdp.store.query(kind="decision")
    return [r.body for r in records if raw_contains in r.body.get("raw", "")]


async def test_a_would_be_denied_statement_runs_and_the_would_be_deny_is_recorded(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="portcullis.shadow")
    async with running_gateway(tmp_path, SHADOW) as gw:
        assert any("orders-db is in shadow mode" in r.getMessage() for r in caplog.records)
        conn = await asyncpg.connect(gw.dsn(gw.token(groups=("readonly",))))
        # DDL by a reader: denied by the shipped policy, and here it runs
        await conn.execute("CREATE TABLE shadow_probe (i int)")
        # a write that would need approval runs without one
        await conn.execute("DELETE FROM orders WHERE id = 11")
        await conn.close()
        with gw.admin() as admin:
            assert admin.execute("SELECT to_regclass('shadow_probe')").fetchone()[0] is not None
            assert admin.execute("SELECT count(*) FROM orders").fetchone()[0] == 1
        [ddl] = await _decisions(gw, "CREATE TABLE shadow_probe")
        assert ddl["verdict"] == "deny"
        assert ddl["enforced"] is False
        assert ddl["policy_revision"]
        [delete] = await _decisions(gw, "DELETE FROM orders")
        assert delete["verdict"] == "require_approval"
        assert delete["enforced"] is False
        # nobody was asked: shadow mode creates no approval request
        assert gw.pdp.approvals is None or not gw.pdp.approvals.requests
        opens = await gw.pdp.store.query(kind="session.open")
        assert opens and all(o.body["enforced"] is False for o in opens)
        assert (await gw.pdp.store.verify()).ok


async def test_nothing_is_masked_the_client_gets_what_the_upstream_sent(tmp_path):
    async with running_gateway(tmp_path, SHADOW) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token(groups=("readonly",))))
        rows = await conn.fetch("SELECT id, email, note FROM customers ORDER BY id")
        assert rows[0]["email"] == "ada@example.com"
        assert "4111 1111 1111 1111" in rows[0]["note"]
        await conn.close()
        [select] = await _decisions(gw, "SELECT id, email, note")
        assert select["verdict"] == "mask"
        assert select["enforced"] is False
        assert select["mask"]  # what would have been masked is in the record


async def test_a_would_be_denied_session_opens_and_is_recorded_as_not_enforced(tmp_path):
    async with running_gateway(tmp_path, SHADOW) as gw:
        # not a member of any group the connection lists: session.open would be denied
        conn = await asyncpg.connect(gw.dsn(gw.token(groups=("marketing",))))
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
        [opened] = await gw.pdp.store.query(kind="session.open")
        assert opened.body["verdict"] == "deny"
        assert opened.body["enforced"] is False


async def test_identity_is_still_enforced_in_shadow_mode(tmp_path):
    async with running_gateway(tmp_path, SHADOW) as gw:
        forged = gw.token()[:-4] + "AAAA"
        with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
            await asyncpg.connect(gw.dsn(forged))
        assert not await gw.pdp.store.query(kind="session.open")


async def test_an_enforced_connection_beside_it_is_unchanged(tmp_path):
    async with running_gateway(tmp_path) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token(groups=("readonly",))))
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE enforced_probe (i int)")
        await conn.close()
        [ddl] = await _decisions(gw, "CREATE TABLE enforced_probe")
        assert ddl["verdict"] == "deny"
        assert "enforced" not in ddl
        assert enforced(gw.config, "orders-db")


def test_the_shadow_answer_drops_everything_that_would_block():
    would = Verdict(
        VerdictKind.MASK,
        ("email is sensitive",),
        mask=(MaskRule(field="email"),),
        credential_ref="database/creds/ro",
        session_settings=(("default_transaction_read_only", "on"),),
    )
    answer = shadow_verdict(would)
    assert answer.kind is VerdictKind.ALLOW
    assert not answer.mask and not answer.session_settings and answer.approval is None
    assert answer.credential_ref == "database/creds/ro"
    assert "would mask" in answer.reasons[0]
    plain = Verdict(VerdictKind.ALLOW)
    assert shadow_verdict(plain) is plain


async def test_the_http_proxy_gets_shadow_mode_without_code_of_its_own(tmp_path):
    """The same PDP answer serves every proxy: an HTTP DELETE the policy reserves to dba
    reaches the upstream, and a JSON field it would mask arrives as the upstream sent it."""
    import aiohttp
    from http_upstream import INVOICE, http_stack
    from pdp_harness import token

    async with http_stack(tmp_path, enforce=False) as s:
        headers = {"Authorization": f"Bearer {token(s.config, 'ann@example.com', ('readonly',))}"}
        async with aiohttp.ClientSession() as client:
            async with client.get(s.url + "/v1/invoices/7", headers=headers) as r:
                assert r.status == 200
                doc = await r.json()
            async with client.delete(s.url + "/echo/7", headers=headers) as r:
                assert r.status != 403
        assert doc["email"] == INVOICE["email"]
        assert any(seen["method"] == "DELETE" for seen in s.upstream.seen)
        records = [r.body for r in await s.pdp.store.query(kind="decision")]
        by_method = {r["raw"].split(" ")[0]: r for r in records if r["kind"] == "http.request"}
        assert by_method["GET"]["verdict"] == "mask" and by_method["GET"]["enforced"] is False
        assert by_method["DELETE"]["verdict"] == "deny"
        assert by_method["DELETE"]["enforced"] is False


def test_a_guards_rewrite_and_egress_budget_are_not_applied_in_shadow_mode():
    from pdp.domain.decisions import Decision
    from pdp.domain.shadow import shadowed

    guarded = Decision(
        "d-1",
        Verdict(VerdictKind.ALLOW),
        "git:abc",
        1.0,
        True,
        rewritten="SELECT * FROM (SELECT * FROM orders WHERE region = 'eu') orders",
        egress_left=(10, 1000),
    )
    answer = shadowed(guarded)
    assert answer.rewritten == "" and answer.egress_left is None
    assert answer.id == "d-1" and answer.policy_revision == "git:abc"
    # a decision that could not be recorded stays what it was (a deny): evidence first
    unrecorded = Decision("d-2", Verdict.deny("decision log unavailable"), "git:abc", 0.0, False)
    assert shadowed(unrecorded) is unrecorded
