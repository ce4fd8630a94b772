"""Transcripts of the Postgres enforcer's state machine, driven directly (no sockets).

Each test plays client messages (codec) into an Enforcer, answers the requests it yields
(proxies.postgres.commands) with canned rulings as the runtime would, and reads what it
tells: the messages it sends the server with their expectations, the refusals it records,
and, played through the ResponseTracker beside it, what the client receives once the
server answers. The end-to-end tests (test_pg_proxy, test_pg_adversarial, ...) hold the
same behaviour against a real server; these hold each turn of the state machine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from portcullis.shape import shaped
from portcullis.verdict import ApprovalSpec, MaskRule, Verdict, VerdictKind
from proxies.postgres import codec
from proxies.postgres.commands import (
    Decide,
    Record,
    Reply,
    Request,
    ResolveFunction,
    Settle,
    SourceColumns,
)
from proxies.postgres.enforcer import (
    LIFT_READ_ONLY,
    POISON_SQL,
    RESTORE_READ_ONLY,
    Enforcer,
)
from proxies.postgres.tracker import Expect, ResponseTracker
from proxies.runtime import Ruling

KEY = b"k" * 32
SELECT = "SELECT id, name FROM customers"
DELETE = "DELETE FROM customers"
UPDATE = "UPDATE orders SET status = 'paid' WHERE id = $1"


def allow(decision: str = "d-allow", **kw: Any) -> Ruling:
    return Ruling(Verdict(VerdictKind.ALLOW), decision, "rev-1", **kw)


def deny(reason: str = "writes are not allowed", **kw: Any) -> Ruling:
    return Ruling(Verdict.deny(reason), "d-deny", "rev-1", **kw)


def mask(*rules: MaskRule, **kw: Any) -> Ruling:
    return Ruling(Verdict(VerdictKind.MASK, mask=rules), "d-mask", "rev-1", **kw)


def needs_approval(**kw: Any) -> Ruling:
    verdict = Verdict(
        VerdictKind.REQUIRE_APPROVAL,
        ("writes need a second person",),
        approval=ApprovalSpec(("dba",)),
    )
    return Ruling(verdict, "d-approve", "rev-1", **kw)


class Runtime:
    """What the asyncio driver is to the enforcer, with canned answers: the verdicts the
    cache would reuse, the PDP's verdict per statement text, the server's answers."""

    def __init__(self, **settings: str) -> None:
        self.tracker = ResponseTracker()
        self.reused: dict[str, Ruling] = {}  # text → a verdict the cache holds
        self.verdicts: dict[str, Ruling | Callable[[Decide], Ruling]] = {}
        self.columns: dict[str, list[str] | None] = {}
        self.functions: dict[int, str] = {}
        self.revision = "rev-1"
        self.halt: Ruling | None = None
        self.requests: list[Request] = []
        self.looked_up: list[tuple[str, str, dict[str, Any] | None]] = []
        self.settled: Callable[[], None] = lambda: None
        self.enforcer = Enforcer(
            self.tracker,
            KEY,
            self._ruling_now,
            settings,
            lambda raw: self.halt,
            lambda: self.revision,
        )

    def _ruling_now(
        self,
        kind: str,
        raw: str,
        shape_of: Callable[[str], str | None] | None,
        attributes: dict[str, Any] | None,
        key: str | None = None,
    ) -> Ruling | None:
        self.looked_up.append((kind, raw, attributes))
        return self.reused.get(raw)

    def play(self, *messages: codec.Message) -> list[Request]:
        """Each message as the relay hands it on: at once, or through its steps."""
        asked: list[Request] = []
        for message in messages:
            if self.enforcer.now(message):
                continue
            steps = self.enforcer.ask(message)
            result: Any = None
            while True:
                try:
                    request = steps.send(result)
                except StopIteration:
                    break
                asked.append(request)
                result = self._perform(request)
        self.requests += asked
        return asked

    def _perform(self, request: Request) -> Any:
        if isinstance(request, Decide):
            verdict = self.verdicts[request.raw]
            return verdict(request) if callable(verdict) else verdict
        if isinstance(request, Settle):
            return self.settled()
        if isinstance(request, SourceColumns):
            return self.columns.get(request.sql)
        if isinstance(request, ResolveFunction):
            return self.functions.get(request.oid)
        raise AssertionError(request)

    def upstream(self) -> list[codec.Message]:
        """What went to the server since the last look, as the server reads it."""
        parser = codec.FrontendParser(startup=False)
        sent = parser.feed(b"".join(self.enforcer.to_server))
        self.enforcer.to_server.clear()
        return sent

    def expected(self) -> list[Expect]:
        return [item for item in self.tracker.queue if isinstance(item, Expect)]

    def actions(self) -> list[Any]:
        done = list(self.enforcer.actions)
        self.enforcer.actions.clear()
        return done

    def server(self, *answers: codec.Message) -> list[codec.Message]:
        """The server's answers through the tracker: what the client receives."""
        data = b"".join(self.tracker.on_backend(answer) for answer in answers)
        return codec.BackendParser().feed(data)


def rfq(status: str = "I") -> codec.ReadyForQuery:
    return codec.ready_for_query(status)


def server_error(code: str, text: str) -> codec.ErrorResponse:
    return codec.error_response(text, code)


# -- simple protocol ----------------------------------------------------------------------


def test_an_allowed_query_is_decided_once_and_forwarded_as_sent() -> None:
    rt = Runtime()
    rt.verdicts[SELECT] = allow()
    asked = rt.play(codec.Query(SELECT))
    assert asked == [Decide("postgres.query", SELECT, {"protocol": "simple"}, shaped, True)]
    assert rt.upstream() == [codec.Query(SELECT)]
    [expect] = rt.expected()
    assert (expect.kind, expect.command, expect.protocol) == ("Query", SELECT, "simple")
    assert expect.ruling == allow() and expect.replace_error is None and expect.masker is None
    assert rt.actions() == []  # recorded when it completes, with its result


def test_a_denied_query_never_reaches_the_server_and_the_client_reads_the_policy() -> None:
    rt = Runtime()
    rt.verdicts[DELETE] = deny()
    rt.play(codec.Query(DELETE))
    assert rt.upstream() == [codec.Query(POISON_SQL)]  # the server fails it, nothing runs
    assert rt.actions() == [Record(DELETE, deny(), "simple")]
    # the server's own error for the poison is replaced; its status is what the client gets
    seen = rt.server(server_error("42601", 'syntax error at or near "portcullis"'), rfq("I"))
    assert [type(m) for m in seen] == [codec.ErrorResponse, codec.ReadyForQuery]
    error = seen[0]
    assert isinstance(error, codec.ErrorResponse)
    assert error.message == "portcullis: denied by policy: writes are not allowed"
    assert error.sqlstate == "42501" and "portcullis" not in (error.fields.get("P") or "")
    assert rt.tracker.idle


def test_a_denied_query_inside_a_transaction_leaves_it_failed_as_the_server_would() -> None:
    rt = Runtime()
    rt.verdicts[DELETE] = deny()
    rt.tracker.status = "T"
    rt.play(codec.Query(DELETE))
    seen = rt.server(server_error("42601", "syntax error"), rfq("E"))
    assert seen[-1] == rfq("E")


def test_a_reused_verdict_is_enforced_at_once_without_asking() -> None:
    rt = Runtime()
    rt.reused[SELECT] = allow(cached=True)
    assert rt.enforcer.now(codec.Query(SELECT)) is True
    assert rt.upstream() == [codec.Query(SELECT)]
    assert rt.requests == []
    # a reused deny too: refused at once, and recorded
    rt.reused[DELETE] = deny(cached=True)
    assert rt.enforcer.now(codec.Query(DELETE)) is True
    assert rt.upstream() == [codec.Query(POISON_SQL)]
    assert rt.actions() == [Record(DELETE, deny(cached=True), "simple")]


def test_the_cache_is_asked_with_everything_the_policy_sees_besides_the_text() -> None:
    rt = Runtime()
    rt.verdicts[SELECT] = allow()
    rt.play(codec.Query(SELECT), codec.Parse("", SELECT))
    # (looked up at now() and again when its steps begin: a verdict may be reused by then)
    assert {(kind, raw, tuple(a.items()) if a else ()) for kind, raw, a in rt.looked_up} == {
        ("postgres.query", SELECT, (("protocol", "simple"),)),
        ("postgres.query", SELECT, (("protocol", "extended"), ("phase", "parse"))),
    }
    # a database that shadows built-ins, or has views renaming columns, says so too: a
    # verdict reused across sessions never skips what the policy would have seen
    rt.enforcer.shadowed = ("lower",)
    rt.enforcer.view_columns = {"contact": ["phone"]}
    rt.play(codec.Query(SELECT))
    assert rt.looked_up[-1][2] == {
        "protocol": "simple",
        "shadowed_functions": ["lower"],
        "view_columns": {"contact": ["phone"]},
    }
    [*_, decide] = rt.requests
    assert isinstance(decide, Decide) and decide.attributes == rt.looked_up[-1][2]


def test_a_reused_mask_verdict_shares_one_masker_per_rule_set() -> None:
    rt = Runtime()
    rules = (MaskRule(field="email"),)
    rt.reused[SELECT] = mask(*rules, cached=True)
    rt.play(codec.Query(SELECT), codec.Query(SELECT))
    first, second = rt.expected()
    assert first.masker is not None and first.masker is second.masker


def test_mask_rules_the_proxy_cannot_use_are_a_deny() -> None:
    rt = Runtime()
    rt.verdicts[SELECT] = mask(MaskRule(field="email", strategy="no-such-strategy"))
    rt.play(codec.Query(SELECT))
    assert rt.upstream() == [codec.Query(POISON_SQL)]
    [record] = rt.actions()
    assert "policy mask rules unusable" in record.ruling.verdict.reasons[0]


def test_once_a_pinned_setting_moved_nothing_runs() -> None:
    rt = Runtime()
    rt.reused[SELECT] = allow(cached=True)
    rt.tracker.broken = "the server reports client_encoding = 'LATIN1'"
    rt.play(codec.Query(SELECT))
    assert rt.upstream() == [codec.Query(POISON_SQL)]
    [record] = rt.actions()
    assert record.ruling.kind is VerdictKind.DENY


def test_a_text_another_setting_could_read_otherwise_waits_for_the_server_to_settle() -> None:
    rt = Runtime()
    accented = "SELECT 'café'"
    rt.verdicts[SELECT] = allow()
    rt.verdicts[accented] = allow()
    rt.play(codec.Query(SELECT))
    rt.upstream()

    def settle() -> None:  # the server answers what was in flight
        rt.server(codec.CommandComplete("SELECT 0"), rfq("I"))

    rt.settled = settle
    asked = rt.play(codec.Query(accented))
    assert [type(r) for r in asked] == [Settle, Decide]
    assert [e.command for e in rt.expected()] == [accented]  # the one before it answered
    assert rt.upstream() == [codec.Query(accented)]
    # an ASCII text without backslashes does not wait
    rt.verdicts["SELECT 2"] = allow()
    assert [type(r) for r in rt.play(codec.Query("SELECT 2"))] == [Decide]


# -- extended protocol --------------------------------------------------------------------


def test_a_pipeline_with_a_denied_parse_in_the_middle_is_discarded_until_sync() -> None:
    rt = Runtime()
    rt.verdicts[SELECT] = allow()
    rt.verdicts[DELETE] = deny()
    asked = rt.play(
        codec.Parse("s1", SELECT),
        codec.Bind("p1", "s1"),
        codec.Describe("P", "p1"),
        codec.Execute("p1"),
        codec.Parse("s2", DELETE),
        codec.Bind("", "s2"),
        codec.Execute(""),
        codec.Parse("s3", "SELECT 2"),  # discarded as the server would: never decided
        codec.Sync(),
    )
    parse_phase = {"protocol": "extended", "phase": "parse"}
    assert asked == [
        Decide("postgres.query", SELECT, parse_phase, shaped, True),
        Decide("postgres.query", DELETE, parse_phase, shaped, True),
    ]
    assert rt.upstream() == [
        codec.Parse("s1", SELECT),
        codec.Bind("p1", "s1"),
        codec.Describe("P", "p1"),
        codec.Execute("p1"),
        codec.Parse("", POISON_SQL),
        codec.Sync(),
    ]
    assert rt.actions() == [Record(DELETE, deny(), "extended")]
    assert set(rt.enforcer.statements) == {"s1"}
    described = codec.RowDescription([codec.Field("id", 0, 0, 23, 4, -1, 0)])
    seen = rt.server(
        codec.ParseComplete(),
        codec.BindComplete(),
        described,
        codec.DataRow([b"1"]),
        codec.CommandComplete("SELECT 1"),
        server_error("42601", "syntax error"),
        rfq("I"),
    )
    assert [type(m) for m in seen] == [
        codec.ParseComplete,
        codec.BindComplete,
        codec.RowDescription,
        codec.DataRow,
        codec.CommandComplete,
        codec.ErrorResponse,
        codec.ReadyForQuery,
    ]
    error = seen[5]
    assert isinstance(error, codec.ErrorResponse)
    assert error.message == "portcullis: denied by policy: writes are not allowed"
    assert rt.tracker.idle and not rt.enforcer.discarding and not rt.enforcer.batch_forwarded


def test_an_error_of_the_server_inside_a_batch_discards_the_rest_and_the_next_batch_runs() -> None:
    rt = Runtime()
    divide = "SELECT 1 / 0"
    rt.verdicts[divide] = allow()
    rt.verdicts[SELECT] = allow()
    rt.play(
        codec.Parse("s1", divide),
        codec.Bind("", "s1"),
        codec.Execute(""),
        codec.Parse("s2", SELECT),
        codec.Bind("", "s2"),
        codec.Execute(""),
        codec.Sync(),
    )
    assert len(rt.upstream()) == 7  # the proxy refused nothing: all of it went
    seen = rt.server(
        codec.ParseComplete(),
        codec.BindComplete(),
        server_error("22012", "division by zero"),
        rfq("I"),  # the server skipped everything until Sync
    )
    assert [type(m) for m in seen] == [
        codec.ParseComplete,
        codec.BindComplete,
        codec.ErrorResponse,
        codec.ReadyForQuery,
    ]
    assert isinstance(seen[2], codec.ErrorResponse) and seen[2].sqlstate == "22012"
    assert rt.tracker.idle and rt.actions() == []
    # the next batch binds an allowed statement again: nothing to ask
    assert rt.play(codec.Bind("", "s1"), codec.Execute(""), codec.Sync()) == []
    assert [type(m) for m in rt.upstream()] == [codec.Bind, codec.Execute, codec.Sync]


def test_messages_for_statements_and_portals_never_allowed_are_refused() -> None:
    rt = Runtime()
    for message in (
        codec.Bind("p", "never-parsed"),
        codec.Describe("S", "never-parsed"),
        codec.Describe("P", "never-bound"),
        codec.Execute("never-bound"),
    ):
        rt.play(message, codec.Sync())
        poison, sync = rt.upstream()
        assert (poison, sync) == (codec.Parse("", POISON_SQL), codec.Sync())
        refused = rt.expected()[0].replace_error
        assert refused is not None and "was not allowed by policy" in refused.message
        rt.server(server_error("42601", "syntax error"), rfq("I"))
    assert rt.requests == []


def test_a_masked_portal_is_described_for_the_proxy_before_it_runs() -> None:
    rt = Runtime()
    rt.verdicts[SELECT] = mask(MaskRule(field="name"))
    rt.play(codec.Parse("", SELECT), codec.Bind("", ""), codec.Execute(""), codec.Sync())
    assert rt.upstream() == [
        codec.Parse("", SELECT),
        codec.Bind("", ""),
        codec.Describe("P", ""),
        codec.Execute(""),
        codec.Sync(),
    ]
    describe = rt.expected()[2]
    assert describe.kind == "DescribeP" and describe.swallow  # the client never sees it
    execute = rt.expected()[3]
    assert execute.masker is not None and execute.command == SELECT


def test_a_masked_portal_of_a_described_statement_takes_its_columns_from_the_statement() -> None:
    """asyncpg's way: Parse and Describe once, then Bind (binary results) and Execute for
    each run. The statement's description names the columns; Bind gives the formats: no
    Describe of each portal goes up, and the rows are still masked, in binary too."""
    rt = Runtime()
    rt.verdicts[SELECT] = mask(MaskRule(field="name"))
    rt.play(codec.Parse("s1", SELECT), codec.Describe("S", "s1"), codec.Sync())
    rt.upstream()
    fields = [codec.Field("id", 0, 0, 23), codec.Field("name", 0, 0, 25)]
    rt.server(
        codec.ParseComplete(),
        codec.ParameterDescription([]),
        codec.RowDescription(fields),
        rfq(),
    )
    for _ in range(2):
        rt.play(codec.Bind("", "s1", result_formats=[1]), codec.Execute(""), codec.Sync())
        assert rt.upstream() == [
            codec.Bind("", "s1", result_formats=[1]),
            codec.Execute(""),
            codec.Sync(),
        ]
        got = rt.server(
            codec.BindComplete(),
            codec.DataRow([b"\0\0\0\x07", b"Ada Lovelace"]),
            codec.CommandComplete("SELECT 1"),
            rfq(),
        )
        assert got[1] == codec.DataRow([b"\0\0\0\x07", b"[REDACTED]"])
    # parsed again under the same name: its old description no longer speaks for it
    rt.play(codec.Close("S", "s1"), codec.Parse("s1", SELECT), codec.Bind("", "s1"))
    rt.play(codec.Execute(""), codec.Sync())
    sent = rt.upstream()
    assert codec.Describe("P", "") in sent


def test_a_statements_table_columns_the_catalog_has_not_told_are_described_per_portal() -> None:
    """Execute rows carry no description: a statement's columns stand for its portal's
    only once the catalog has said what each table column is (learnt from a portal's
    own description), so `name` is never masked as an unknown column, nor email passed."""
    from proxies.postgres.columns import ColumnOrigin

    rt = Runtime()
    rt.verdicts[SELECT] = mask(MaskRule(field="email"))
    rt.play(codec.Parse("s1", SELECT), codec.Describe("S", "s1"), codec.Sync())
    rt.upstream()
    fields = [codec.Field("id", 16400, 1, 23), codec.Field("name", 16400, 2, 25)]
    rt.server(
        codec.ParseComplete(), codec.ParameterDescription([]), codec.RowDescription(fields), rfq()
    )
    rt.play(codec.Bind("", "s1"), codec.Execute(""), codec.Sync())
    assert codec.Describe("P", "") in rt.upstream()  # the proxy learns the table from it
    rt.tracker.column_origins[(16400, 1)] = ColumnOrigin("id")
    rt.tracker.column_origins[(16400, 2)] = ColumnOrigin("name")
    rt.play(codec.Bind("", "s1"), codec.Execute(""), codec.Sync())
    assert codec.Describe("P", "") not in rt.upstream()
    rt.tracker.column_origins.clear()  # the catalog forgotten: described and learnt again
    rt.play(codec.Bind("", "s1"), codec.Execute(""), codec.Sync())
    assert codec.Describe("P", "") in rt.upstream()


def test_a_cursor_portal_never_takes_the_unnamed_statements_columns() -> None:
    rt = Runtime()
    rt.verdicts[SELECT] = mask(MaskRule(field="name"))
    rt.play(codec.Parse("", SELECT), codec.Describe("S", ""), codec.Sync())
    rt.upstream()
    rt.server(
        codec.ParseComplete(),
        codec.ParameterDescription([]),
        codec.RowDescription([codec.Field("id", 0, 0, 23), codec.Field("name", 0, 0, 25)]),
        rfq(),
    )
    declare = "DECLARE c CURSOR FOR SELECT name, id FROM customers"
    rt.verdicts[declare] = mask(MaskRule(field="name"), effects=("cursor:c",))
    rt.play(codec.Query(declare))
    rt.upstream()
    rt.server(codec.CommandComplete("DECLARE CURSOR"), rfq("T"))
    rt.play(codec.Execute("c"), codec.Sync())
    assert codec.Describe("P", "c") in rt.upstream()


def test_an_execute_the_evidence_spool_has_no_room_for_is_refused() -> None:
    rt = Runtime()
    rt.verdicts[SELECT] = allow()
    rt.play(codec.Parse("", SELECT), codec.Bind("", ""))
    rt.halt = Ruling(Verdict.deny("evidence spool full"))
    rt.play(codec.Execute(""), codec.Sync())
    assert [type(m) for m in rt.upstream()] == [codec.Parse, codec.Bind, codec.Parse, codec.Sync]
    poison = rt.expected()[2]
    assert poison.replace_error is not None
    assert poison.replace_error.message == "portcullis: denied by policy: evidence spool full"


def test_a_text_read_otherwise_after_an_execute_in_the_same_pipeline_is_refused() -> None:
    rt = Runtime()
    accented = "SELECT 'naïve'"
    rt.verdicts[SELECT] = allow()
    rt.verdicts[accented] = allow()
    rt.play(codec.Parse("", SELECT), codec.Bind("", ""), codec.Execute(""))
    rt.play(codec.Parse("s", accented), codec.Sync())
    sent = rt.upstream()
    assert sent[-2:] == [codec.Parse("", POISON_SQL), codec.Sync()]
    refused = rt.expected()[3].replace_error
    assert refused is not None and "cannot follow an Execute before Sync" in refused.message
    assert "s" not in rt.enforcer.statements


# -- statements replaced under it ---------------------------------------------------------


def test_a_statement_closed_and_parsed_again_with_other_sql_is_decided_again() -> None:
    rt = Runtime()
    rt.verdicts[SELECT] = allow()
    rt.verdicts[DELETE] = deny()
    rt.play(codec.Parse("s", SELECT), codec.Sync())
    rt.play(codec.Close("S", "s"), codec.Parse("s", DELETE), codec.Bind("p", "s"), codec.Sync())
    assert [r.raw for r in rt.requests if isinstance(r, Decide)] == [SELECT, DELETE]
    assert [type(m) for m in rt.upstream()] == [
        codec.Parse,
        codec.Sync,
        codec.Close,
        codec.Parse,  # the poison, in place of the DELETE
        codec.Sync,
    ]
    # what the client binds to that name later is refused: it was never allowed as it is
    rt.play(codec.Bind("p", "s"), codec.Sync())
    assert rt.upstream()[0] == codec.Parse("", POISON_SQL)


def test_a_bind_after_close_in_the_same_pipeline_is_refused() -> None:
    rt = Runtime()
    rt.verdicts[SELECT] = allow()
    rt.play(codec.Parse("s", SELECT), codec.Close("S", "s"), codec.Bind("p", "s"), codec.Sync())
    assert [type(m) for m in rt.upstream()] == [
        codec.Parse,
        codec.Close,
        codec.Parse,
        codec.Sync,
    ]
    assert (
        "prepared statement 's'"
        in (rt.expected()[2].replace_error or codec.ErrorResponse({})).message
    )


def test_the_unnamed_statement_replaced_by_other_sql_is_decided_again() -> None:
    rt = Runtime()
    rt.verdicts[SELECT] = allow()
    rt.verdicts[DELETE] = deny()
    rt.play(
        codec.Parse("", SELECT),
        codec.Bind("", ""),
        codec.Execute(""),
        codec.Parse("", DELETE),
        codec.Bind("", ""),
        codec.Execute(""),
        codec.Sync(),
    )
    assert [r.raw for r in rt.requests if isinstance(r, Decide)] == [SELECT, DELETE]
    assert [type(m) for m in rt.upstream()][-2:] == [codec.Parse, codec.Sync]
    # the poison took the unnamed statement's place: binding it again is refused
    assert "" not in rt.enforcer.statements
    rt.play(codec.Bind("", ""), codec.Execute(""), codec.Sync())
    assert rt.upstream()[0] == codec.Parse("", POISON_SQL)


def test_deallocate_and_discard_forget_the_statements_they_replace() -> None:
    rt = Runtime()
    rt.verdicts[SELECT] = allow()
    rt.verdicts["SELECT 2"] = allow()
    rt.verdicts["DEALLOCATE s1"] = allow(effects=("prepared:s1",))
    rt.verdicts["DISCARD ALL"] = allow(effects=("prepared:*", "close:*"))
    rt.play(codec.Parse("s1", SELECT), codec.Parse("s2", "SELECT 2"), codec.Sync())
    rt.play(codec.Query("DEALLOCATE s1"))
    assert set(rt.enforcer.statements) == {"s2"}
    rt.play(codec.Bind("p", "s2"), codec.Sync())
    assert set(rt.enforcer.portals) == {"p"}
    rt.play(codec.Query("DISCARD ALL"))
    assert rt.enforcer.statements == {} and rt.enforcer.portals == {}
    rt.upstream()
    rt.play(codec.Bind("p", "s2"), codec.Execute("p"), codec.Sync())
    assert rt.upstream() == [codec.Parse("", POISON_SQL), codec.Sync()]


def test_a_declared_cursor_becomes_a_portal_the_client_may_execute() -> None:
    rt = Runtime()
    declare = "DECLARE c CURSOR FOR SELECT id FROM customers"
    rt.verdicts[declare] = allow(effects=("cursor:c",))
    rt.play(codec.Query(declare))
    assert rt.play(codec.Execute("c"), codec.Sync()) == []
    assert [type(m) for m in rt.upstream()] == [codec.Query, codec.Execute, codec.Sync]
    assert rt.expected()[1].command == declare


def test_a_statement_allowed_under_an_older_policy_is_asked_again_at_bind() -> None:
    rt = Runtime()
    rt.verdicts[SELECT] = allow()
    rt.play(codec.Parse("s", SELECT), codec.Sync())
    rt.revision = "rev-2"  # the policy changed since
    rt.verdicts[SELECT] = Ruling(Verdict.deny("customers are off limits"), "d-2", "rev-2")
    asked = rt.play(codec.Bind("p", "s"), codec.Execute("p"), codec.Sync())
    assert asked == [
        Decide("postgres.query", SELECT, {"protocol": "extended", "phase": "parse"}, shaped, True)
    ]
    assert rt.upstream()[-2:] == [codec.Parse("", POISON_SQL), codec.Sync()]
    assert "s" not in rt.enforcer.statements
    # allowed again under the new policy: the statement carries the new verdict
    rt.verdicts[SELECT] = Ruling(Verdict(VerdictKind.ALLOW), "d-3", "rev-2")
    rt.play(codec.Parse("s", SELECT), codec.Sync())
    assert rt.play(codec.Bind("p", "s"), codec.Sync()) == []


# -- approvals ------------------------------------------------------------------------------


def test_an_approval_is_asked_for_at_bind_with_the_values_and_waited_for() -> None:
    rt = Runtime()
    waited: list[Decide] = []

    def approve(request: Decide) -> Ruling:
        waited.append(request)
        rt.enforcer.notice("portcullis: approval required; waiting for request a-1")
        return allow("d-approved", approval_id="a-1")

    rt.verdicts[UPDATE] = needs_approval()
    rt.play(codec.Parse("", UPDATE), codec.Sync())  # parse phase: no request for a person
    rt.upstream()
    rt.server(codec.ParseComplete(), rfq("I"))
    rt.verdicts[UPDATE] = approve
    rt.play(codec.Bind("", "", [0], [b"42"]), codec.Execute(""), codec.Sync())
    [request] = waited
    assert request.may_wait and request.attributes["protocol"] == "extended"
    assert request.attributes["parameters"] == ["42"]  # an approval binds to these values
    assert [type(m) for m in rt.upstream()] == [codec.Bind, codec.Execute, codec.Sync]
    execute = rt.expected()[1]
    assert execute.ruling is not None and execute.ruling.approval_id == "a-1"
    # the notice reached the client before the wait, nothing being owed then
    [reply] = rt.actions()
    assert isinstance(reply, Reply)
    [notice] = codec.BackendParser().feed(reply.data)
    assert isinstance(notice, codec.NoticeResponse) and "a-1" in notice.message


def test_a_notice_while_answers_are_owed_waits_its_turn() -> None:
    rt = Runtime()
    rt.verdicts[SELECT] = allow()
    rt.play(codec.Query(SELECT))
    rt.enforcer.notice("portcullis: waiting")
    assert rt.actions() == []
    seen = rt.server(codec.CommandComplete("SELECT 0"), rfq("I"))
    assert [type(m) for m in seen] == [
        codec.CommandComplete,
        codec.ReadyForQuery,
        codec.NoticeResponse,
    ]


def test_a_cancel_during_an_approval_wait_fails_the_statement_with_57014() -> None:
    rt = Runtime()
    canceled = Ruling(
        Verdict.deny("canceling statement due to user request: approval request a-2 withdrawn"),
        "d-approve",
        "rev-1",
        approval_id="a-2",
        canceled=True,
    )
    rt.verdicts[UPDATE] = needs_approval()
    rt.play(codec.Parse("", UPDATE), codec.Sync())
    rt.server(codec.ParseComplete(), rfq("I"))
    rt.upstream()
    rt.verdicts[UPDATE] = canceled
    rt.play(codec.Bind("", "", [0], [b"7"]), codec.Execute(""), codec.Sync())
    assert rt.upstream() == [codec.Parse("", POISON_SQL), codec.Sync()]
    assert rt.actions() == [Record(UPDATE, canceled, "extended")]
    seen = rt.server(server_error("42601", "syntax error"), rfq("I"))
    error = seen[0]
    assert isinstance(error, codec.ErrorResponse) and error.sqlstate == "57014"
    assert "canceling statement due to user request" in error.message
    # and in the simple protocol the same
    rt.verdicts[DELETE] = Ruling(canceled.verdict, "d-4", "rev-1", approval_id="a-3", canceled=True)
    rt.play(codec.Query(DELETE))
    assert rt.upstream() == [codec.Query(POISON_SQL)]
    replaced = rt.expected()[0].replace_error
    assert replaced is not None and replaced.sqlstate == "57014"


def test_a_person_who_denies_is_named_not_the_policy() -> None:
    rt = Runtime()
    rt.verdicts[DELETE] = Ruling(
        Verdict.deny("denied by alice@example.com: not today (approval request a-5)"),
        "d-5",
        "rev-1",
        approval_id="a-5",
    )
    rt.play(codec.Query(DELETE))
    replaced = rt.expected()[0].replace_error
    assert replaced is not None
    assert (
        replaced.message
        == "portcullis: denied by alice@example.com: not today (approval request a-5)"
    )


def test_an_approval_nobody_could_be_asked_for_says_who_approves() -> None:
    rt = Runtime()
    rt.verdicts[DELETE] = needs_approval()  # no approval_id: no request was made
    rt.play(codec.Query(DELETE))
    replaced = rt.expected()[0].replace_error
    assert replaced is not None and replaced.message.startswith("portcullis: approval required")
    assert "approvers: dba" in replaced.fields["H"]


def test_a_readers_read_only_default_is_lifted_around_a_write_that_may_be_approved() -> None:
    rt = Runtime(default_transaction_read_only="on")
    rt.verdicts[UPDATE] = needs_approval()
    rt.play(codec.Parse("", UPDATE))
    rt.verdicts[UPDATE] = allow("d-approved", approval_id="a-6")
    rt.play(codec.Bind("", "", [0], [b"1"]), codec.Execute(""), codec.Sync())
    assert rt.upstream() == [
        codec.Query(LIFT_READ_ONLY),
        codec.Parse("", UPDATE),
        codec.Bind("", "", [0], [b"1"], []),
        codec.Execute(""),
        codec.Sync(),
        codec.Query(RESTORE_READ_ONLY),
    ]
    lift, restore = rt.expected()[0], rt.expected()[-1]
    assert lift.swallow and restore.swallow  # answered to nobody
    assert rt.tracker.lifted


# -- COPY and function calls ---------------------------------------------------------------

COPY = "COPY customers TO STDOUT"
COPY_MASKED = mask(
    MaskRule(field="ssn"), effects=("copy_out", "copy_source:SELECT * FROM customers")
)


@pytest.mark.parametrize(
    ("columns", "refused"),
    [
        (["id", "ssn"], "COPY output would carry the masked column(s) ssn"),
        (None, "COPY output could not be described"),
        (["id", "name"], ""),
    ],
)
def test_a_copy_out_under_column_masks_runs_only_when_no_masked_column_is_sent(
    columns: list[str] | None, refused: str
) -> None:
    rt = Runtime()
    rt.verdicts[COPY] = COPY_MASKED
    rt.columns["SELECT * FROM customers"] = columns
    asked = rt.play(codec.Query(COPY))
    assert [type(r) for r in asked] == [Decide, SourceColumns]
    [sent] = rt.upstream()
    if refused:
        assert sent == codec.Query(POISON_SQL)
        [record] = rt.actions()
        assert refused in record.ruling.verdict.reasons[0]
    else:
        assert sent == codec.Query(COPY)
        assert rt.expected()[0].masker is not None


def test_a_reused_copy_verdict_is_still_checked_against_its_source() -> None:
    rt = Runtime()
    rt.reused[COPY] = COPY_MASKED
    rt.columns["SELECT * FROM customers"] = ["id", "ssn"]
    asked = rt.play(codec.Query(COPY))
    assert asked == [SourceColumns("SELECT * FROM customers")]
    assert rt.upstream() == [codec.Query(POISON_SQL)]


def test_copy_in_data_goes_to_the_server_as_sent() -> None:
    rt = Runtime()
    copy_in = "COPY orders FROM STDIN"
    rt.verdicts[copy_in] = allow()
    rt.play(codec.Query(copy_in), codec.CopyData(b"1\tpaid\n"), codec.CopyDone())
    assert rt.upstream() == [codec.Query(copy_in), codec.CopyData(b"1\tpaid\n"), codec.CopyDone()]


def test_a_fast_path_function_call_is_decided_on_its_name() -> None:
    rt = Runtime()
    rt.functions[1234] = "pg_catalog.lo_export"
    raw = "<function call pg_catalog.lo_export>"
    rt.verdicts[raw] = deny("large objects are off limits")
    call = codec.FunctionCall(1234, [0], [b"1"], 0)
    asked = rt.play(call)
    assert asked == [
        ResolveFunction(1234),
        Decide(
            "postgres.function_call",
            raw,
            {"function": "pg_catalog.lo_export", "protocol": "function_call"},
        ),
    ]
    assert rt.upstream() == [codec.Query(POISON_SQL)]
    assert rt.actions() == [Record(raw, rt.verdicts[raw], "function_call")]  # type: ignore[arg-type]
    # allowed: forwarded as sent, answered as a call
    rt.verdicts[raw] = allow()
    rt.play(call)
    assert rt.upstream() == [call]
    assert rt.expected()[-1].kind == "Call"


def test_a_function_call_whose_oid_cannot_be_named_is_refused_without_asking() -> None:
    rt = Runtime()
    asked = rt.play(codec.FunctionCall(99999, [], [], 0))
    assert asked == [ResolveFunction(99999)]
    assert rt.upstream() == [codec.Query(POISON_SQL)]
    [record] = rt.actions()
    assert "could not be named" in record.ruling.verdict.reasons[0]


def test_a_function_call_tells_the_policy_which_built_ins_are_shadowed() -> None:
    rt = Runtime()
    rt.enforcer.shadowed = ("lower",)
    rt.functions[870] = "pg_catalog.lower"
    raw = "<function call pg_catalog.lower>"
    rt.verdicts[raw] = allow()
    [_, decide] = rt.play(codec.FunctionCall(870, [0], [b"A"], 0))
    assert isinstance(decide, Decide)
    assert decide.attributes["shadowed_functions"] == ["lower"]


# -- the rest of the session -----------------------------------------------------------------


def test_flush_and_terminate_go_to_the_server_and_other_messages_are_a_violation() -> None:
    rt = Runtime()
    rt.play(codec.Flush(), codec.Terminate())
    assert rt.upstream() == [codec.Flush(), codec.Terminate()]
    assert rt.enforcer.terminated
    with pytest.raises(codec.ProtocolViolation):
        rt.enforcer.now(codec.PasswordMessage(b"token\x00"))


def test_a_refusal_in_a_batch_replaces_the_unnamed_statement_as_the_poison_does() -> None:
    rt = Runtime()
    rt.verdicts[SELECT] = allow()
    rt.verdicts[DELETE] = deny()
    rt.play(codec.Parse("", SELECT), codec.Sync())
    rt.play(codec.Parse("named", DELETE), codec.Sync())
    # the server dropped its unnamed statement for the poison: the proxy forgot it too
    assert rt.enforcer.statements == {}
    rt.upstream()
    rt.play(codec.Bind("", ""), codec.Execute(""), codec.Sync())
    assert rt.upstream() == [codec.Parse("", POISON_SQL), codec.Sync()]
