"""Attacks on the PDP's approvals, tokens and evidence (third probe).

Each test drives real components: the PDP over gRPC (tests/pdp_harness.py) with the
embedded OPA evaluator, its real audit store (sqlite) and real policy reloads.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from pdp_harness import decide_sql, open_session, pdp_config, pdp_stub, running_pdp, token

from portcullis.v1 import pdp_pb2

SAM = {"subject": "sam@example.com", "groups": ["security"], "issuer": "portcullis-dev"}

# a small policy whose postgres.query verdict (without an approval) is REQUIRED; an
# approved re-run is allowed, as the shipped decision.rego does
_POLICY = """package portcullis

approvers := {"allowed": true, "reasons": ["listed"]} if {
  some spec in input.request.approvers
  startswith(spec, "group:")
  substring(spec, 6, -1) in input.approver.groups
  lower(input.approver.subject) != lower(input.request.requester.subject)
} else := {"allowed": false, "reasons": ["not an approver"]}

decision := {"verdict": "allow", "reasons": ["open"]} if input.command.kind == "session.open"

decision := REQUIRED if {
  input.command.kind == "postgres.query"
  not input.approval
}

decision := {"verdict": "allow", "reasons": ["approved"]} if {
  input.command.kind == "postgres.query"
  input.approval.state == "approved"
}
"""


def _require(approvers: str, reason: str) -> str:
    return (
        f'{{"verdict": "require_approval", "reasons": ["{reason}"],'
        f' "approval": {{"approvers": ["{approvers}"], "ttl_seconds": 600}}}}'
    )


def _policy(required: str) -> str:
    return _POLICY.replace("REQUIRED", required)


def _reloadable(tmp_path: Path, text: str):
    policies = tmp_path / "policies"
    policies.mkdir(exist_ok=True)
    (policies / "policy.rego").write_text(text)
    engine = {"type": "embedded", "policies": str(policies), "workers": 1, "timeout_ms": 2000}
    return pdp_config(tmp_path, engine=engine), policies / "policy.rego"


async def _reload(pdp, path: Path, text: str) -> None:
    before = pdp.decider.engine.revision
    path.write_text(text)
    assert await pdp.decider.engine.reload()
    assert pdp.decider.engine.revision != before


# -- known hole 1: an approval outliving the policy that asked for it --------------------


UPDATE = "UPDATE orders SET total = 0 WHERE id = 5"


async def _approved_update(pdp, stub, config):  # type: ignore[no-untyped-def]
    """alice's session, her UPDATE asked about and approved by sam, and run again with
    that approval: (the session opened, the decision that asked)."""
    opened = await open_session(stub, token(config, "alice@example.com", ("readonly",)))
    asked = await decide_sql(stub, opened.session_id, UPDATE)
    assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL
    await pdp.approvals.decide(asked.approval_id, SAM, True, "ok")
    reused = await decide_sql(stub, opened.session_id, UPDATE)
    assert reused.verdict == pdp_pb2.ALLOW and reused.approval_id == asked.approval_id
    return opened, asked


async def test_an_approval_does_not_outlive_the_approvers_the_policy_names(tmp_path):
    """Attack (reader with an approved UPDATE): the security team reloads a policy under
    which the UPDATE needs a dba lead's approval (group:dba-leads) instead of security's.
    The approval security gave under the old revision was still reused: settle() saw a
    require_approval and an approved request for the same text and re-ran it with the
    approval, so the UPDATE ran without anyone the new policy names. Now an approval
    given under another revision holds only while the new policy asks for the same
    approval (reasons, approvers, TTL) and still lets its approver give it; else the
    command is asked about again. A reload to a policy that denies it denies it."""
    first = _policy(_require("group:security", "updates need approval"))
    config, path = _reloadable(tmp_path, first)
    sql = UPDATE
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened, asked = await _approved_update(pdp, stub, config)

        # an unrelated change to the policy: the same approval is still asked for
        await _reload(pdp, path, first + "\n# a comment\n")
        same = await decide_sql(stub, opened.session_id, sql)
        assert same.verdict == pdp_pb2.ALLOW and same.approval_id == asked.approval_id

        # other approvers: the old approval does not let it run
        await _reload(pdp, path, _policy(_require("group:dba-leads", "updates need approval")))
        leads = await decide_sql(stub, opened.session_id, sql)
        assert leads.verdict == pdp_pb2.REQUIRE_APPROVAL, leads.reasons
        assert leads.approval_id and leads.approval_id != asked.approval_id

        # another reason (the same approvers): asked again as well
        await _reload(pdp, path, _policy(_require("group:security", "frozen: ask again")))
        frozen = await decide_sql(stub, opened.session_id, sql)
        assert frozen.verdict == pdp_pb2.REQUIRE_APPROVAL
        assert frozen.approval_id not in (asked.approval_id, "")

        # a policy that denies it: denied, whatever was approved
        deny = '{"verdict": "deny", "reasons": ["no updates"]}'
        await _reload(pdp, path, _policy(deny))
        denied = await decide_sql(stub, opened.session_id, sql)
        assert denied.verdict == pdp_pb2.DENY and not denied.approval_id


async def test_an_approval_does_not_outlive_its_approver_s_right_to_give_it(tmp_path):
    """Attack (as above): the new policy asks for the same approval, but its approvers
    rule no longer lets sam (security) approve requests on this connection. The approval
    sam gave before the reload was still reused. Now the approver is asked about again
    under the new policy, with the groups they held when deciding."""
    first = _policy(_require("group:security", "updates need approval"))
    config, path = _reloadable(tmp_path, first)
    alice = token(config, "alice@example.com", ("readonly",))
    sql = "DELETE FROM orders WHERE id = 9"
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, alice)
        asked = await decide_sql(stub, opened.session_id, sql)
        await pdp.approvals.decide(asked.approval_id, SAM, True, "ok")
        spec = "  some spec in input.request.approvers\n"
        not_sam = '  input.approver.subject != "sam@example.com"\n'
        stricter = first.replace(spec, spec + not_sam)
        await _reload(pdp, path, stricter)
        again = await decide_sql(stub, opened.session_id, sql)
        assert again.verdict == pdp_pb2.REQUIRE_APPROVAL
        assert again.approval_id != asked.approval_id


async def test_an_opa_that_names_no_revision_still_has_approvals_asked_again(tmp_path):
    """Attack (as above, the PDP deciding through a remote OPA that reports no bundle
    revision, as OPA does for policies it loaded without a bundle): every answer is
    revision "opa:unknown", so no reload can be seen, and the approval security gave was
    reused after OPA's policy named other approvers. Now, with an engine that cannot tell
    a reload, every reuse checks that the verdict still names the approval's approvers
    and TTL and that its approver may still give it."""
    from aiohttp import web
    from pdp_harness import free_port

    from pdp.engine.bundle import load_bundle
    from pdp.engine.opa import evaluate, new_engine

    def engine_of(text: str):
        folder = tmp_path / f"opa-{len(text)}-{abs(hash(text))}"
        folder.mkdir()
        (folder / "policy.rego").write_text(text)
        return new_engine(load_bundle(folder).without_tests())

    serving = {"engine": engine_of(_policy(_require("group:security", "updates need approval")))}

    async def data(request: web.Request) -> web.Response:
        path = request.match_info["path"].strip("/").replace("/", ".")
        result = evaluate(serving["engine"], (await request.json()).get("input"), path)
        answer: dict = {} if result is None else {"result": result}
        answer["provenance"] = {"version": "test-data-api"}  # no bundle, no revision
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/v1/data/{path:.*}", data)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        engine = {"type": "remote", "url": f"http://127.0.0.1:{port}", "timeout_ms": 2000}
        config = pdp_config(tmp_path, engine=engine)
        sql = UPDATE
        async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
            opened, asked = await _approved_update(pdp, stub, config)
            serving["engine"] = engine_of(
                _policy(_require("group:dba-leads", "updates need approval"))
            )
            leads = await decide_sql(stub, opened.session_id, sql)
            assert leads.policy_revision == asked.policy_revision  # nothing says it changed
            assert leads.verdict == pdp_pb2.REQUIRE_APPROVAL
            assert leads.approval_id not in (asked.approval_id, "")
    finally:
        await runner.cleanup()


# -- known hole 2: the approval book grows without bound -----------------------------------


async def test_asking_and_withdrawing_cannot_grow_the_approval_book(tmp_path, monkeypatch):
    """Attack (reader, their own token): at most 16 of one identity's requests wait at
    once, but a requester may withdraw their own, and a withdrawn (or denied, expired)
    request stayed in every PDP's memory and every listing for good: ask 16, withdraw 16,
    repeat, and the book grew without end (each request up to three copies of a megabyte
    of SQL). Now the book keeps the MAX_SETTLED most recently settled requests (an
    approval still usable stays), also when a PDP reads them back from the store."""
    from pdp.domain import approvals

    monkeypatch.setattr(approvals, "MAX_SETTLED", 8, raising=False)
    config = pdp_config(tmp_path)
    alice = token(config, "alice@example.com", ("readonly",))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, alice)
        keep = await decide_sql(stub, opened.session_id, "INSERT INTO orders VALUES (-1)")
        await pdp.approvals.decide(keep.approval_id, SAM, True, "still usable")
        for n in range(40):
            asked = await decide_sql(stub, opened.session_id, f"INSERT INTO orders VALUES ({n})")
            assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL
            await stub.WithdrawApproval(
                pdp_pb2.WithdrawApprovalRequest(approval_id=asked.approval_id, token=alice)
            )
        assert len(pdp.approvals.requests) <= 8 + 1
        # the approval still usable was kept, and is still used
        again = await decide_sql(stub, opened.session_id, "INSERT INTO orders VALUES (-1)")
        assert again.approval_id == keep.approval_id and again.verdict != pdp_pb2.REQUIRE_APPROVAL
    async with running_pdp(pdp_config(tmp_path)) as pdp:  # read back from the store
        assert len(pdp.approvals.requests) <= 8 + 1
        assert keep.approval_id in pdp.approvals.requests


# -- known hole 3: an approved statement and the session's search_path -----------------


@pytest.mark.parametrize(
    "change",
    [
        "SET search_path = public",
        "SELECT pg_catalog.set_config('search_path', 'public', false)",
        "RESET ALL",
        "SET ROLE app",
        "DISCARD ALL",
    ],
)
async def test_an_approved_statement_is_bound_to_the_names_it_resolved(tmp_path, change):
    """Attack (dba): an approval binds the text and the bound values, not what its
    unqualified names mean. With search_path set to a scratch schema, 'TRUNCATE orders'
    (scratch.orders, the approver is told) is approved; then SET search_path = public
    (allowed to a dba) and the same text re-run in the session within the TTL truncated
    public.orders under that approval. Now a statement that may change name resolution
    (SET search_path / SCHEMA, set_config, SET ROLE, RESET ALL, DISCARD, DO, unreadable
    text) run in the session after the request voids the approval: asked again."""
    config = pdp_config(tmp_path)
    dana = token(config, "dana@example.com", ("dba", "pii-readers"))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, dana)
        sid = opened.session_id
        scratch = await decide_sql(stub, sid, "SET search_path = scratch")
        assert scratch.verdict == pdp_pb2.ALLOW
        asked = await decide_sql(stub, sid, "TRUNCATE orders")
        assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL
        await pdp.approvals.decide(asked.approval_id, SAM, True, "scratch copy only")
        same = await decide_sql(stub, sid, "TRUNCATE orders")
        assert same.verdict == pdp_pb2.ALLOW and same.approval_id == asked.approval_id
        moved = await decide_sql(stub, sid, change)
        assert moved.verdict == pdp_pb2.ALLOW, moved.reasons
        after = await decide_sql(stub, sid, "TRUNCATE orders")
        assert after.verdict == pdp_pb2.REQUIRE_APPROVAL
        assert after.approval_id != asked.approval_id


@pytest.mark.parametrize(
    ("kept", "later"),
    [
        ("PREPARE p AS SELECT set_config('search_path', 'public', false)", "EXECUTE p"),
        (
            "DECLARE c CURSOR WITH HOLD FOR SELECT set_config('search_path', 'public', false)",
            "FETCH c",
        ),
        ("extended:SET search_path = public", "extended:"),
    ],
)
async def test_a_change_kept_for_later_also_unbinds_the_approval(tmp_path, kept, later):
    """Attack (dba, as above, without a change after the request that the PDP decides):
    PREPARE (or DECLARE a cursor over) set_config('search_path', 'public', false), or
    Parse a SET with the extended protocol, before asking; after the approval, EXECUTE
    (FETCH, or Bind and Execute the prepared statement, which the proxy runs on the
    verdict it holds) sets the path with no new decision, and the approved text ran on
    public.orders. Now a change kept for later anywhere in the session unbinds it."""
    from google.protobuf import struct_pb2

    config = pdp_config(tmp_path)
    dana = token(config, "dana@example.com", ("dba", "pii-readers"))

    async def run(stub, sid: str, sql: str) -> pdp_pb2.Decision:
        if not sql.startswith("extended:"):
            return await decide_sql(stub, sid, sql)
        attributes = struct_pb2.Struct()
        attributes.update({"protocol": "extended", "phase": "parse"})
        command = pdp_pb2.Command(kind="postgres.query", raw=sql[9:], attributes=attributes)
        return (await stub.Decide(pdp_pb2.DecideRequest(session_id=sid, command=command))).decision

    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, dana)
        sid = opened.session_id
        assert (await run(stub, sid, kept)).verdict == pdp_pb2.ALLOW
        assert (await decide_sql(stub, sid, "SET search_path = scratch")).verdict == pdp_pb2.ALLOW
        asked = await decide_sql(stub, sid, "TRUNCATE orders")
        assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL
        await pdp.approvals.decide(asked.approval_id, SAM, True, "scratch copy only")
        if later != "extended:":
            assert (await decide_sql(stub, sid, later)).verdict == pdp_pb2.ALLOW
        after = await decide_sql(stub, sid, "TRUNCATE orders")
        assert after.verdict == pdp_pb2.REQUIRE_APPROVAL
        assert after.approval_id != asked.approval_id


async def test_statements_that_keep_the_search_path_keep_the_approval(tmp_path):
    """The binding is not a new way to lose approvals: reads and writes between runs
    leave an approved statement usable."""
    config = pdp_config(tmp_path)
    dana = token(config, "dana@example.com", ("dba", "pii-readers"))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, dana)
        sid = opened.session_id
        asked = await decide_sql(stub, sid, "TRUNCATE orders")
        await pdp.approvals.decide(asked.approval_id, SAM, True, "ok")
        for sql in ("SELECT 1", "SHOW search_path", "UPDATE orders SET total = 1 WHERE id = 1"):
            assert (await decide_sql(stub, sid, sql)).verdict in (pdp_pb2.ALLOW, pdp_pb2.MASK)
        again = await decide_sql(stub, sid, "TRUNCATE orders")
        assert again.verdict == pdp_pb2.ALLOW and again.approval_id == asked.approval_id


_ = grpc  # (used by later probes)


# -- the egress ledger's read of the store ------------------------------------------------


async def test_a_bound_nul_cannot_stop_every_pdp_reading_egress(tmp_path, pg_database):
    """Attack (reader, through the Postgres proxy, PostgreSQL audit store): Bind a text
    value holding a NUL byte to a statement that needs approval, after a SELECT that took
    rows. The decision record carries both the egress report and the value ("\\u0000" in
    its canonical JSON); the store's guard_facts parsed each egress record's body with
    PostgreSQL's json, which refuses to turn \\u0000 into text, so every read of the
    others' egress failed from then on, at every replica, for the hour the record stayed
    in the window: after MAX_LAG every command of every identity under a budget (the
    shipped readonly and analyst) was held for approval. Now the read replaces a NUL
    escape before parsing (the egress numbers hold none) and counts the report."""
    import time as clock

    from google.protobuf import struct_pb2

    config = pdp_config(tmp_path, store={"type": "postgres", "dsn": pg_database})
    alice = token(config, "alice@example.com", ("readonly",))
    attributes = struct_pb2.Struct()
    attributes.update({"protocol": "extended", "parameters": ["a\x00b", "x\\u0000"]})
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, alice)
        asked = await stub.Decide(
            pdp_pb2.DecideRequest(
                session_id=opened.session_id,
                command=pdp_pb2.Command(
                    kind="postgres.query",
                    raw="INSERT INTO orders (note, id) VALUES ($1, $2)",
                    attributes=attributes,
                ),
                egress_rows=7,
                egress_bytes=700,
            )
        )
        assert asked.decision.verdict == pdp_pb2.REQUIRE_APPROVAL
        now = clock.time()
        facts = await pdp.store.guard_facts(0, now - 3600, now - 3600)
        assert sum(e[-2] for e in facts.egress if e[2] == "alice@example.com") == 7


# -- tokens -------------------------------------------------------------------------------


@pytest.mark.parametrize("subject", ["mallory\x00", "mallory\n2026-12-05 ok", "m\x1b[2Jallory"])
async def test_a_subject_with_control_characters_is_no_identity(tmp_path, pg_database, subject):
    """Attack (a token whose sub holds a NUL, from an issuer that lets users shape it):
    every record of the identity names it in the store's subject column, and PostgreSQL
    text refuses a NUL, so each of its records failed the group commit's whole batch:
    the decisions of everyone else written with it were denied ("decision log
    unavailable") and the PDP reported itself not ready, for as long as the holder kept
    sending. Line breaks and escapes in a subject forge lines in plain-text logs and
    SIEM lines. Now a subject holding a control character is rejected at logon."""
    import asyncio

    config = pdp_config(tmp_path, store={"type": "postgres", "dsn": pg_database})
    alice = token(config, "alice@example.com", ("readonly",))
    odd = token(config, subject, ("readonly",))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        hers = await open_session(stub, alice)

        async def flood() -> None:
            for _ in range(20):
                try:
                    await open_session(stub, odd)
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAUTHENTICATED

        async def reads() -> list[int]:
            return [
                (await decide_sql(stub, hers.session_id, "SELECT id FROM orders")).verdict
                for _ in range(20)
            ]

        _, first, second = await asyncio.gather(flood(), reads(), reads())
        assert set(first + second) <= {pdp_pb2.ALLOW, pdp_pb2.MASK}, (first, second)
        with pytest.raises(grpc.aio.AioRpcError) as rejected:
            await open_session(stub, odd)
        assert rejected.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "subject" in (rejected.value.details() or "")


# -- what an approver reads -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("groups", "sql", "hidden"),
    [
        (("dba", "pii-readers"), "UPDATE orders SET total = 123-45-6789", "123-45-6789"),
        (
            ("dba", "pii-readers"),
            "TRUNCATE orders, sk_live_abcdefghijklmnopqrstu",
            "sk_live_abcdefghijklmnopqrstu",
        ),
    ],
)
async def test_an_approver_reads_the_code_the_detectors_took_for_values(
    tmp_path, groups, sql, hidden
):
    """Attack (reader or dba asking for an approval): the approver's view ran the value
    detectors over the whole statement text, code included, so code shaped like a value
    was masked: 'UPDATE orders SET total = 123-45-6789' (every order's total set to
    -6711) was shown as 'total = ***-**-6789', and a table named like an API key was
    shown as '****rstu' in 'TRUNCATE orders, ****rstu'. The approver approved a
    statement they could not read. Now the detectors run over constants, comments and
    the space between tokens, one at a time, never over code; values stay masked."""
    config = pdp_config(tmp_path)
    dana = token(config, "dana@example.com", groups)
    sam = token(config, "sam@example.com", ("security",))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, dana)
        asked = await decide_sql(stub, opened.session_id, sql + " /* card 4111 1111 1111 1111 */")
        assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL, asked.reasons
        listed = await stub.ListApprovals(pdp_pb2.ListApprovalsRequest(token=sam))
        shown = next(a for a in listed.approvals if a.id == asked.approval_id)
        assert hidden in shown.command and all(hidden in s.text for s in shown.statements)
        assert "4111 1111 1111 1111" not in shown.command  # a value in a comment: masked
