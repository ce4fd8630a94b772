"""The Postgres proxy's two shortest lanes (issue 27) leave every state as the long way
does: ResponseTracker.plain's spelt-out reading of one statement's whole answer in one
chunk (a simple Query's description, row, tag and status; a prepared run's BindComplete
before them) is on_backend for each of its messages, and Enforcer.bound_run's owing again
of the last run's four expectations, once that lane answered them, owes what fresh ones
would be, whatever the server answered before."""

from __future__ import annotations

import types
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from portcullis.verdict import MaskRule, Verdict, VerdictKind
from proxies.postgres import codec
from proxies.postgres.codec.parsers import BackendParser, FrontendParser
from proxies.postgres.enforcer import Enforcer, Portal, PreparedStatement
from proxies.postgres.tracker import (
    _NOTHING_OWED,
    CONFIRMED,
    PENDING,
    Completion,
    Expect,
    ResponseTracker,
)
from proxies.runtime.pdp_client import Ruling

_ALLOWED = Ruling(Verdict(VerdictKind.ALLOW), "d-1", "rev-1")
_MASKED = Ruling(
    Verdict(VerdictKind.MASK, mask=(MaskRule(field="email", strategy="redact"),)), "d-m", "rev-1"
)
_DESCRIPTION = codec.RowDescription([codec.Field("aid", 16400, 1, 23, 4, -1, 0)])
_TAGS = ["SELECT 1", "SELECT 1", "INSERT 0 1", "UPDATE 1", "CREATE TABLE", "UPDATE pg_proc"]


# -- the tracker's lane: one answer in one chunk ------------------------------------------


def _answer(prepared: bool, tag: str, status: str, shape: str) -> bytes:
    """One statement's answer as the server sends it: `shape` says which frames."""
    frames: list[codec.Message] = [codec.BindComplete()] if prepared else []
    frames += {
        "usual": [_DESCRIPTION, codec.DataRow([b"7"])],
        "no row": [_DESCRIPTION],
        "two rows": [_DESCRIPTION, codec.DataRow([b"7"]), codec.DataRow([None])],
        "no data": [codec.NoData()],
        "row first": [codec.DataRow([b"7"]), _DESCRIPTION],
    }[shape]
    frames += [codec.CommandComplete(tag), codec.ReadyForQuery(status)]
    return b"".join(m.encode() for m in frames)


def _owed(tracker: ResponseTracker, prepared: bool, flags: dict[str, Any]) -> list[Any]:
    """The expectations of a simple Query or of a prepared run (Bind, DescribeP, Execute,
    Sync), and the things they make (owners and declared cursors)."""
    made = tuple(
        types.SimpleNamespace(state=PENDING) for _ in range(flags["cursors"])
    )  # a declared cursor
    if not prepared:
        kind = flags["kind"]
        tracker.expect(Expect(kind, decision_id="d-1", command=flags["command"],
                              ruling=_ALLOWED, protocol="simple", made=made))  # fmt: skip
        return list(made)
    portal = types.SimpleNamespace(state=flags["portal_state"], shape=None, shaped=False)
    items = [
        Expect("Bind", owner=portal),
        Expect("DescribeP", statement=flags["portal"], owner=portal),
        Expect("Execute", None, "d-1", statement="S_1", portal=flags["portal"],
               command=flags["command"], ruling=_ALLOWED, protocol="extended", owner=portal,
               made=made),
        Expect("Sync", made=made if flags["sync_makes"] else ()),
    ]  # fmt: skip
    if flags["kind"] != "Query":
        items[1].kind = flags["kind"]  # not the run's own: the lane must not take it
    for item in items:
        tracker.expect(item)
    return [portal, *made]


def _tracked(tracker: ResponseTracker, things: list[Any], told: list[int]) -> tuple[Any, ...]:
    def slot(value: Any) -> Any:
        if isinstance(value, types.SimpleNamespace):
            return ("made thing", things.index(value))
        if isinstance(value, tuple):
            return tuple(slot(v) for v in value)
        return value

    return (
        tracker.status, tracker.readies, tracker._wrote, tracker.in_copy_out,
        tracker._discarding_to_sync, dict(tracker.statement_shapes),
        dict(tracker.portal_shapes), tracker._special, tracker._masking, tracker.quiet_owed,
        tracker.queue is _NOTHING_OWED,
        [tuple(slot(getattr(e, n)) for n in Expect.__slots__) for e in tracker.queue],
        [tuple(getattr(d, n) for n in Completion.__slots__) for d in tracker.completions],
        [(t.state, getattr(t, "shape", None), getattr(t, "shaped", None)) for t in things],
        told[0],
    )  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(
    st.booleans(),  # prepared
    st.sampled_from(_TAGS),
    st.sampled_from(["I", "I", "T", "E"]),
    st.sampled_from(["usual", "usual", "usual", "no row", "two rows", "no data", "row first"]),
    st.fixed_dictionaries(
        {
            "kind": st.sampled_from(["Query", "Query", "Query", "Execute", "DescribeS"]),
            "command": st.sampled_from(["SELECT 1", "UPDATE pg_proc SET x = 1", ""]),
            "cursors": st.integers(0, 2),
            "portal": st.sampled_from(["", "p1"]),
            "portal_state": st.sampled_from([PENDING, CONFIRMED]),
            "sync_makes": st.booleans(),
            "wrote": st.booleans(),
            "watched": st.booleans(),
        }
    ),
)
def test_a_statement_s_answer_in_one_chunk_is_on_backend_s(
    prepared: bool, tag: str, status: str, shape: str, flags: dict[str, Any]
) -> None:
    chunk = _answer(prepared, tag, status, shape)
    sides = []
    for _ in range(2):
        tracker, told = ResponseTracker(), [0]
        tracker._wrote = flags["wrote"]
        if flags["watched"]:
            tracker.on_catalog_written = lambda told=told: told.__setitem__(0, told[0] + 1)
        things = _owed(tracker, prepared, flags)
        sides.append((tracker, things, told))
    (lane, lane_things, lane_told), (slow, slow_things, slow_told) = sides
    answers = BackendParser().plain_answers(chunk)
    assert answers is not None and lane.plain(answers)
    assert b"".join(slow.on_backend(m) for m in BackendParser().feed(chunk)) == chunk
    assert _tracked(lane, lane_things, lane_told) == _tracked(slow, slow_things, slow_told)


def test_pgbench_s_answers_take_the_spelt_out_lanes() -> None:
    """The bench's two chunks are the ones the spelt-out reading takes, not the loop (which
    ends a statement through _ready)."""
    for prepared in (False, True):
        tracker = ResponseTracker()
        _owed(tracker, prepared, {"kind": "Query", "command": "SELECT 1", "cursors": 0,
                                  "portal": "", "portal_state": CONFIRMED,
                                  "sync_makes": False})  # fmt: skip
        tracker._ready = _no_loop  # type: ignore[method-assign]
        answers = BackendParser().plain_answers(_answer(prepared, "SELECT 1", "I", "usual"))
        assert answers is not None and tracker.plain(answers)
        assert tracker.queue is _NOTHING_OWED and len(tracker.completions) == 1
        assert tracker.answered is not None


def _no_loop(*_: object) -> bool:
    raise AssertionError("plain() took the loop")


# -- the enforcer's lane: a run's expectations owed again ----------------------------------


class _Session:
    """An enforcer, its tracker, the server's answers read as the relay reads them, and
    everything that can be told of their state. `fresh`: every run's expectations made
    anew (the reference)."""

    def __init__(self, fresh: bool, known: Ruling | None = None) -> None:
        self.fresh = fresh
        self.enforcer = Enforcer(ResponseTracker(), b"k" * 32, lambda *a: known, None,
                                 lambda raw="": None, lambda: "rev-1")  # fmt: skip
        self.enforcer.statements["S_1"] = PreparedStatement("SELECT $1::int", _ALLOWED)
        self.enforcer.statements["S_M"] = PreparedStatement("SELECT $1::int", _MASKED)
        self.parser = BackendParser()
        self.frontend = FrontendParser(startup=False)

    def run(self, statement: str, portal: str, described: bool) -> bool:
        messages: list[codec.Message] = [codec.Bind(portal, statement, [0], [b"7"], [0])]
        if described:
            messages.append(codec.Describe("P", portal))
        messages += [codec.Execute(portal, 0), codec.Sync()]
        chunk = b"".join(m.encode() for m in messages)
        for message in messages:
            object.__setattr__(message, "raw", message.encode())
        if self.fresh:
            self.enforcer._run = None
        taken = self.enforcer.bound_run(messages, chunk)
        if not taken:
            for message in messages:
                assert self.enforcer.now(message)
        self.enforcer.to_server.clear()
        return taken

    def query(self, sql: str) -> bool:
        message = codec.Query(sql)
        object.__setattr__(message, "raw", message.encode())
        if self.fresh:
            self.enforcer._owed_query = None
        taken = self.enforcer.simple_query(message)
        self.enforcer.to_server.clear()
        return taken

    def answer(self, chunk: bytes) -> None:
        """As _Relay._server_data reads a chunk: the plain lane, else each message."""
        tracker = self.enforcer.tracker
        if not tracker.masking and not tracker.quiet_owed:
            answers = self.parser.plain_answers(chunk)
            if answers is not None and tracker.plain(answers):
                return
        for message in self.parser.feed(chunk):
            tracker.on_backend(message)

    def state(self) -> tuple[Any, ...]:
        e, tracker = self.enforcer, self.enforcer.tracker
        portals = list(e.portals.values())

        def slot(value: Any) -> Any:
            if isinstance(value, Portal):
                place = next((i for i, p in enumerate(portals) if p is value), None)
                return (
                    "portal",
                    place,
                    tuple(getattr(value, n) for n in Portal.__slots__ if n != "source"),
                )
            return value  # fmt: skip

        owed = [
            (*(slot(getattr(item, n)) for n in Expect.__slots__ if n != "masker"),
             item.masker is None)
            for item in tracker.queue
        ]  # fmt: skip
        return (
            owed, [slot(p) for p in portals], dict(tracker.portal_shapes), tracker.status,
            tracker.readies, e.batch, e.discarding, e.batch_forwarded, e.batch_executed,
            [tuple(getattr(d, n) for n in Completion.__slots__) for d in tracker.completions],
            tracker._special, tracker._masking, tracker.quiet_owed,
        )  # fmt: skip


def _frames(*messages: codec.Message) -> bytes:
    return b"".join(m.encode() for m in messages)


_ROW, _DONE, _READY = codec.DataRow([b"7"]), codec.CommandComplete("SELECT 1"), codec.ReadyForQuery
# what the server answers a run with: whole, cut in two, with answers it owes nothing for
# before the BindComplete (the Bind owed first counts them), failed at Bind
_ANSWERS = {
    "whole": [_frames(codec.BindComplete(), _DESCRIPTION, _ROW, _DONE, _READY("I"))],
    "whole in a transaction": [
        _frames(codec.BindComplete(), _DESCRIPTION, _ROW, _DONE, _READY("T"))
    ],
    "cut": [
        _frames(codec.BindComplete(), _DESCRIPTION),
        _frames(_ROW, _DONE, _READY("I")),
    ],
    "a row before": [
        _frames(_ROW),
        _frames(codec.BindComplete(), _DESCRIPTION, _ROW, _DONE, _READY("I")),
    ],
    "described before, read message by message": [
        _frames(codec.NoticeResponse({"S": "NOTICE", "M": "hi"}), _DESCRIPTION),
        _frames(codec.BindComplete(), _DESCRIPTION, _ROW, _DONE, _READY("I")),
    ],
    "rows before": [
        _frames(_ROW, _DESCRIPTION, codec.CommandComplete("SELECT 9")),
        _frames(codec.BindComplete(), _DESCRIPTION, _ROW, _DONE, _READY("I")),
    ],
    "refused": [
        _frames(
            codec.ErrorResponse({"S": "ERROR", "C": "22P02", "M": "invalid input"}),
            _READY("I"),
        )
    ],
}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["S_1", "S_1", "S_1", "S_M"]),
            st.sampled_from(["", "", "", "p1"]),
            st.sampled_from([True, True, True, False]),  # described
            st.sampled_from(list(_ANSWERS) + ["whole"] * 3),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_a_run_s_expectations_owed_again_are_owed_as_new_ones(
    steps: list[tuple[str, str, bool, str]],
) -> None:
    again, fresh = _Session(fresh=False), _Session(fresh=True)
    for statement, portal, described, answered in steps:
        assert again.run(statement, portal, described) == fresh.run(statement, portal, described)
        assert again.state() == fresh.state()
        for chunk in _ANSWERS[answered]:
            again.answer(chunk)
            fresh.answer(chunk)
            assert again.state() == fresh.state()


def test_pgbench_s_runs_owe_the_same_four_expectations_again() -> None:
    """Run after run of pgbench -M prepared, answered whole, owes the same four objects."""
    session = _Session(fresh=False)
    session.run("S_1", "", True)
    first = list(session.enforcer.tracker.queue)
    for _ in range(3):
        session.answer(_ANSWERS["whole"][0])
        assert session.enforcer.tracker.queue is _NOTHING_OWED
        assert session.run("S_1", "", True)
        assert all(a is b for a, b in zip(session.enforcer.tracker.queue, first, strict=True))
    assert [c.rows for c in session.enforcer.tracker.completions] == [1, 1, 1]


# a simple Query's answers: whole, cut, with answers it owes nothing for before its own,
# refused, and a Query of several statements
_QUERY_ANSWERS = {
    "whole": [_frames(_DESCRIPTION, _ROW, _DONE, _READY("I"))],
    "whole in a transaction": [_frames(_DESCRIPTION, _ROW, _DONE, _READY("T"))],
    "cut": [_frames(_DESCRIPTION, _ROW), _frames(_DONE, _READY("I"))],
    "a row before": [_frames(_ROW), _frames(_DESCRIPTION, _ROW, _DONE, _READY("I"))],
    "described before": [
        _frames(_DESCRIPTION),
        _frames(_DESCRIPTION, _ROW, _DONE, _READY("I")),
    ],
    "described before, read message by message": [
        _frames(codec.NoticeResponse({"S": "NOTICE", "M": "hi"}), _DESCRIPTION),
        _frames(_DESCRIPTION, _ROW, _DONE, _READY("I")),
    ],
    "a tag before": [
        _frames(_ROW, codec.CommandComplete("INSERT 0 1")),
        _frames(_DESCRIPTION, _ROW, _DONE, _READY("I")),
    ],
    "two statements": [_frames(_DESCRIPTION, _ROW, _DONE, _DESCRIPTION, _ROW, _DONE, _READY("I"))],
    "refused": [_frames(codec.ErrorResponse({"S": "ERROR", "C": "42P01", "M": "no"}), _READY("I"))],
}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["SELECT 1", "SELECT 2", "UPDATE pg_proc SET x = 1"]),
            st.sampled_from(list(_QUERY_ANSWERS) + ["whole"] * 4),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_a_query_s_expectation_owed_again_is_owed_as_a_new_one(
    steps: list[tuple[str, str]],
) -> None:
    again, fresh = _Session(False, _ALLOWED), _Session(True, _ALLOWED)
    for sql, answered in steps:
        assert again.query(sql) and fresh.query(sql)
        assert again.state() == fresh.state()
        for chunk in _QUERY_ANSWERS[answered]:
            again.answer(chunk)
            fresh.answer(chunk)
            assert again.state() == fresh.state()


def test_pgbench_s_queries_owe_the_same_expectation_again() -> None:
    session = _Session(False, _ALLOWED)
    session.query("SELECT 1")
    first = session.enforcer.tracker.queue[0]
    for _ in range(3):
        session.answer(_QUERY_ANSWERS["whole"][0])
        assert session.enforcer.tracker.queue is _NOTHING_OWED
        assert session.query("SELECT 2")
        assert session.enforcer.tracker.queue[0] is first
    assert [c.rows for c in session.enforcer.tracker.completions] == [1, 1, 1]
