"""Keeping a session's catalogue facts as new as the database's code.

What the policy knows of the database's own code (the facts: built-in names shadowed,
view columns, relation sources, user_code.py's operators, types, casts, view and write
code) is read when a session starts. Code a superuser adds while the session is open (a
function made in pg_catalog under a built-in's name, a view or operator that runs a
function, a trigger, a cast) was unknown to it for the rest of its life: a reader's
`SELECT lower(5)` ran `pg_catalog.lower(integer)` made a second earlier, `SELECT * FROM
late_view` the function the view calls, both read as pg_catalog's own code.

Owns CatalogWatch, one per proxy: a connection of its own (opened with a live session's
credentials, closed LINGER_SECONDS after the last session) asks the server's snapshot
(SNAPSHOT_SQL: while it is the same, nothing committed), and once it moved MARK_SQL, a
fingerprint of every catalogue row made after initdb (the catalogues that hold code, and
what says where code runs: count, xmin sum and the sum of keyed xmin hashes, read through
the OID indexes, so its cost grows with the database's own objects only), and reads the
facts again when that moved.
It asks alongside every decision the PDP makes (EnforcerDriver: a decision made meanwhile
is made again with newer facts, so a name first used after the code was made is judged
with it), and every POLL_SECONDS with COLUMNS_MARK_SQL too (the columns of those
relations: a view column renamed). A session takes newer facts before its next chunk
of messages (the facts are part of a cached verdict's key, so a statement reused is
decided again), and a prepared statement allowed with older facts is asked again
(Enforcer.take_facts).

A built-in's own catalogue row written since initdb (CREATE OR REPLACE FUNCTION
pg_catalog.age(timestamp), an UPDATE of pg_cast: user_code.AFTER_INITDB) is fingerprinted by
the poll (COLUMNS_MARK_SQL), not alongside each decision: those rows are read by a scan.
Left: a verdict reused within POLL_SECONDS of a change no decision has asked about, and a
built-in changed in place within POLL_SECONDS of a statement using it.

Before any facts, the built-in rows the questions stand on must be as initdb wrote them
(builtin_rows.changed_builtins: an operator, aggregate, type, cast or index support row,
or a called function's row, written in place since leaves the catalogue unread: sessions
refused).

No policy here: this module says what the catalogue holds, never whether code may run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from proxies.postgres import codec
from proxies.postgres.builtin_rows import (
    BUILTIN_ROWS_SQL,
    CODE_ROWS_SQL,
    DATABASE_ROWS_SQL,
    changed_builtins,
    initdb_boundary,
    parse_rows,
)
from proxies.postgres.code_names import CodeNames, code_names
from proxies.postgres.columns import VIEW_COLUMNS_SQL, renamed_view_columns
from proxies.postgres.relations import RELATION_SOURCES_SQL, relation_sources
from proxies.postgres.session_code import session_code
from proxies.postgres.upstream import (
    SHADOWED_SQL,
    Answer,
    Upstream,
    UpstreamError,
    connect,
    prepared_rows,
    session_answer,
    session_query,
)
from proxies.postgres.user_code import (
    AFTER_INITDB,
    FIRST_NORMAL_OID,
    OVERLOADED_SQL,
    QUESTION_FUNCTIONS,
    USER_CODE_SQL,
    user_code,
    xid_number,
)
from proxies.runtime.credentials import CredentialLease

log = logging.getLogger("portcullis.postgres")

# the policy's facts, in order: shadowed built-in names, view columns, relation sources
# (row filters), operators, types and view code
FACT_QUERIES = (SHADOWED_SQL, VIEW_COLUMNS_SQL, RELATION_SOURCES_SQL, USER_CODE_SQL)
# each fact query runs with the server's JIT off, in its own implicit transaction (a pooler
# keeps it on one server connection): on a database of thousands of tables their plans'
# estimates pass jit_above_cost, and compiling them took ~13 s of a start-up that reads
# the catalogue in under 3 s without it
FACTS_PLANNED = "SET LOCAL jit = off; "
# ...and every question the proxy asks of the catalogue runs with only pg_catalog on its
# search path (pg_temp last, where it cannot come first): the database's or the upstream
# role's default may put another schema before pg_catalog (ALTER DATABASE ... SET
# search_path = public, pg_catalog), and the questions' unqualified casts, functions and
# operators (`count(*)::text`) then ran the database's code: a domain public.text's CHECK
# ran at every session's start on the session's own connection, as the superuser (p28),
# and a public.count or public.json_agg of its own could have answered the facts. A
# session's connection asks before the client is let in (SET LOCAL ends with the implicit
# transaction of the Query). The facts then spell a type of the database with its schema
# (a cast "public.slot -> public.slot_multirange by ...", as postgres.reviewed_casts lists
# it), whatever the session's path. The questions the watch prepares (SNAPSHOT_SQL, MARK_SQL,
# COLUMNS_MARK_SQL) cannot be sent behind a SET, nor may the path be set for the watch's
# whole connection (a transaction pooler hands it to the clients' transactions): they name
# every function, cast and operator with its schema instead.
PINNED_PATH = "SET LOCAL search_path = pg_catalog, pg_temp; "

POLL_SECONDS = 0.25
# how long the watch's connection outlives the last open session (a client that connects
# per statement does not pay for a new one each time)
LINGER_SECONDS = 5.0

# catalogue → the column holding the OID of the object a row is (an index leads with it)
_CODE_CATALOGS = {
    "pg_proc": "oid",
    "pg_class": "oid",
    "pg_rewrite": "oid",
    "pg_operator": "oid",
    "pg_cast": "oid",
    "pg_type": "oid",
    "pg_trigger": "oid",
    "pg_attrdef": "oid",
    "pg_constraint": "oid",
    "pg_policy": "oid",
    "pg_namespace": "oid",
    "pg_opclass": "oid",
    "pg_opfamily": "oid",
    "pg_amop": "oid",
    "pg_amproc": "oid",
    "pg_statistic_ext": "oid",
    "pg_event_trigger": "oid",
    "pg_extension": "oid",
    "pg_language": "oid",
    "pg_transform": "oid",
    "pg_conversion": "oid",
    "pg_collation": "oid",
    "pg_am": "oid",
    "pg_aggregate": "aggfnoid",
    "pg_index": "indexrelid",
    "pg_inherits": "inhrelid",
    "pg_partitioned_table": "partrelid",
    "pg_range": "rngtypid",
    # a foreign table runs its wrapper's handler when read (user_code's read code): ALTER
    # FOREIGN DATA WRAPPER ... HANDLER writes that wrapper's row alone, which no mark
    # counted (a session start took facts naming the handler before, test_pg_probe_p42)
    "pg_foreign_data_wrapper": "oid",
    "pg_foreign_server": "oid",
    "pg_foreign_table": "ftrelid",
}

# A mark's sum: the xmins' sum (it grows with every row written), and beside it, in the
# lower digits, the sum of each xmin hashed with a key of this process. The plain sum alone
# was matched by a superuser outside the proxy: a transaction that took its xid before two
# functions were made rewrites the first (its xmin falls by c - a), one whose xid is later
# by just as much rewrites the second (it rises by c - a), and count and sum stay as they
# were, so a session start took the facts from before the first function's new body
# (test_pg_probe_p42). Rows whose xmins hash alike to a key nobody outside knows do not
# come from choosing xids.
_MARK_KEY = secrets.randbelow(2**62)
_MARK_SUM = (
    # (OPERATOR() binds all alike, left to right: each product in parentheses)
    "COALESCE((pg_catalog.sum(x) OPERATOR(pg_catalog.*)"
    " '1000000000000000000000000000000'::pg_catalog.numeric)"
    " OPERATOR(pg_catalog.+) pg_catalog.sum(pg_catalog.hashint8extended(x,"
    f" '{_MARK_KEY}'::pg_catalog.int8)) OPERATOR(pg_catalog.+) (pg_catalog.count(*)"
    " OPERATOR(pg_catalog.*) '9223372036854775808'::pg_catalog.numeric),"
    " '0'::pg_catalog.numeric)"
)

# one text: the catalogues' rows made after initdb (OID 16384 and up), counted, and the sum
# of their xmins (an insert or an update, CREATE OR REPLACE among them, moves it); one
# aggregate over all of them, which the server plans in a fraction of one per catalogue
MARK_SQL = (
    "SELECT pg_catalog.textin(pg_catalog.int8out(pg_catalog.count(*))) OPERATOR(pg_catalog.||)"
    " '.' OPERATOR(pg_catalog.||) pg_catalog.textin(pg_catalog.numeric_out("
    f"{_MARK_SUM})) FROM ("
    + " UNION ALL ".join(
        f"SELECT {xid_number('xmin')} AS x FROM pg_catalog.{catalog}"
        f" WHERE {column}::pg_catalog.oid OPERATOR(pg_catalog.>=) {FIRST_NORMAL_OID}"
        for catalog, column in _CODE_CATALOGS.items()
    )
    + ") AS made"
)
# the same of the columns of relations made after initdb (a view's column renamed, a column
# given a domain with a CHECK of its own): its cost grows with every column, so asked by the
# watch's own poll and at start-up, not before each decision
_MARK = re.compile(r"[0-9]+\.[0-9]+")
# COLUMNS_MARK_SQL's: its count and sum, then the boundary of initdb's rows it read by
_COLUMNS_MARK = re.compile(r"[0-9]+\.[0-9]+\.([0-9]+)")

# the least initdb boundary (user_code.AFTER_INITDB) read of each server, by its address: a
# later one means template0's row (and those of every database made since) was written
# again, which would hide built-ins changed before: no facts then (sessions refused)
_BOUNDARIES: dict[object, int] = {}

# the server's snapshot (xmin:xmax:in-progress xids): the same text twice means no
# transaction committed or took an xid in between, so no catalogue row changed (a
# read-only database's watch asks this alone, planned and run in microseconds)
# (by pg_snapshot's own output function: pg_cast has no row for pg_snapshot to text, so a
# superuser's CREATE CAST (pg_snapshot AS text) WITH FUNCTION answering a constant would
# have been picked, and no change ever seen again)
SNAPSHOT_SQL = (
    "SELECT pg_catalog.textin(pg_catalog.pg_snapshot_out(pg_catalog.pg_current_snapshot()))"
)
_SNAPSHOT = re.compile(r"[0-9]+:[0-9]+:[0-9,]*")

# and of the built-in rows (made by initdb) that hold code, once written since (a superuser's
# CREATE OR REPLACE FUNCTION pg_catalog.age(timestamp), ALTER OPERATOR, UPDATE pg_cast; a
# deleted one moves the count): they are read by a scan, not an index, so asked with the
# columns (every POLL_SECONDS), not alongside each decision. pg_amproc and pg_amop: a
# built-in operator family's member pointed at the database's function (UPDATE pg_amproc)
# runs it wherever the type is sorted, grouped or hashed (user_code's code_casts)
_BUILT_IN_CODE = {
    "pg_proc": "oid",
    "pg_operator": "oid",
    "pg_cast": "oid",
    "pg_amproc": "oid",
    "pg_amop": "oid",
    "pg_rewrite": "oid",
    "pg_aggregate": "aggfnoid",
    "pg_type": "oid",
    "pg_range": "rngtypid",
    # and every other built-in row the facts read: a column of one of pg_catalog's views
    # renamed (ALTER VIEW pg_catalog.pg_views RENAME COLUMN definition TO viewname writes
    # that view's pg_attribute rows alone, which no mark counted: a session start took the
    # facts from before it, which trusted viewname, columns.py UNTRUSTED_SQL,
    # test_pg_probe_p42), and a built-in relation or schema written in place (renamed,
    # moved): the facts name relations by schema and name
    "pg_attribute": "attrelid",
    "pg_class": "oid",
    "pg_namespace": "oid",
}
COLUMNS_MARK_SQL = (
    "SELECT pg_catalog.textin(pg_catalog.int8out(pg_catalog.count(*))) OPERATOR(pg_catalog.||)"
    " '.' OPERATOR(pg_catalog.||) pg_catalog.textin(pg_catalog.numeric_out("
    f"{_MARK_SUM}))"
    " OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) "
    + f"pg_catalog.textin(pg_catalog.int8out({AFTER_INITDB})) FROM ("
    f"SELECT {xid_number('xmin')} AS x FROM pg_catalog.pg_attribute"
    f" WHERE attrelid OPERATOR(pg_catalog.>=) {FIRST_NORMAL_OID}"
    + "".join(
        f" UNION ALL SELECT CASE WHEN {xid_number('xmin')} OPERATOR(pg_catalog.>)"
        f" {AFTER_INITDB} THEN {xid_number('xmin')} ELSE '0' END"
        f" FROM pg_catalog.{catalog}"
        f" WHERE {column}::pg_catalog.oid OPERATOR(pg_catalog.<) {FIRST_NORMAL_OID}"
        for catalog, column in _BUILT_IN_CODE.items()
    )
    + ") AS made"
)


# the watch's questions by the name each is prepared as on its connection
_QUESTIONS = {
    SNAPSHOT_SQL: "portcullis_catalog_snapshot",
    MARK_SQL: "portcullis_catalog_mark",
    COLUMNS_MARK_SQL: "portcullis_catalog_columns_mark",
}


@dataclass(frozen=True, slots=True)
class Facts:
    """What the policy knows of the database's code, the mark it was read at and when
    its reading began (time.monotonic(): of two, the later is the newer)."""

    mark: str
    read_at: float
    columns_mark: str
    shadowed: tuple[str, ...]
    view_columns: dict[str, list[str]]
    relation_sources: dict[str, list[str]]
    user_code: dict[str, Any]
    # what a statement may name to run the database's code (None: it has none), which
    # may write the catalogue under a SELECT's tag (proxies.postgres.code_names)
    code_names: CodeNames | None = None


Ask = Callable[[Upstream, str], Awaitable["list[str] | None"]]
AskWhole = Callable[[Upstream, str], Awaitable["Answer | None"]]

# what the built-in rows' answers were found to say (changed_builtins), by the answer's own
# bytes and the boundary they were weighed with: the same bytes, the same rows
_WEIGHED_ANSWERS: dict[tuple[bytes, int], list[str]] = {}
_WEIGHED_ANSWERS_MAX = 4


async def _changed_builtins(
    upstream: Upstream, ask: Ask, whole: AskWhole | None, bound: int
) -> list[str] | None:
    """changed_builtins of the built-in rows asked on `upstream` (None: not read). With
    `whole`, the pg_database rows are asked apart (as text: a few) and the code rows as
    their answer's bytes, read into messages only when those bytes were not met before
    with the same boundary (a database made anywhere on the server changes the first,
    not the second)."""
    if whole is not None:
        databases = await ask(upstream, PINNED_PATH + DATABASE_ROWS_SQL)
        if databases is None:
            return None
        answer = await whole(upstream, PINNED_PATH + CODE_ROWS_SQL)
        if answer is not None:
            rows = parse_rows(databases)
            boundary = initdb_boundary(rows) if rows is not None else None
            key = None if boundary is None else (answer.raw, min(boundary, bound))
            known = _WEIGHED_ANSWERS.get(key) if key is not None else None
            if known is None:
                texts = answer.first_column()
                if texts is None:
                    return None
                known = changed_builtins(texts + databases, QUESTION_FUNCTIONS, bound)
                if key is not None:
                    if len(_WEIGHED_ANSWERS) >= _WEIGHED_ANSWERS_MAX:
                        _WEIGHED_ANSWERS.clear()
                    _WEIGHED_ANSWERS[key] = known
            return list(known)
    texts = await ask(upstream, PINNED_PATH + BUILTIN_ROWS_SQL)
    return None if texts is None else changed_builtins(texts, QUESTION_FUNCTIONS, bound)


async def read_facts(
    upstream: Upstream,
    ask: Ask = session_query,
    known: Facts | None = None,
    whole: AskWhole | None = None,
) -> Facts | None:
    """The mark, then the facts, asked on a connection nothing else is in flight on (a
    change between the two leaves facts newer than their mark: read again later).
    `known`: facts read before, taken instead of the facts' questions when both marks
    are still theirs (the watch's own test of the same catalogue), once the built-in rows
    the marks are computed through were read whole and found as initdb wrote them.
    `whole`: how the built-in rows' answer is asked as bytes (session_answer; None, or
    None from it: by `ask`)."""
    read_at = time.monotonic()
    mark = _marked(await ask(upstream, PINNED_PATH + MARK_SQL))
    if mark is None:
        return None
    columns = _marked(await ask(upstream, PINNED_PATH + COLUMNS_MARK_SQL), _COLUMNS_MARK)
    if columns is None or not _boundary_kept(upstream, columns):
        return None
    overloaded = await ask(upstream, PINNED_PATH + OVERLOADED_SQL)
    if overloaded is None:
        return None
    if overloaded:
        log.error(
            "pg_catalog holds functions made after initdb named as the proxy's catalogue"
            " questions call them (%s): their answers may be the database's, so the"
            " catalogue is not judged by (sessions are refused)",
            ", ".join(sorted(set(overloaded))),
        )
        return None
    changed = await _changed_builtins(upstream, ask, whole, _kept_boundary(upstream, columns))
    if changed is None:
        return None
    if changed:
        log.error(
            "built-in catalogue rows the proxy's catalogue questions stand on were written"
            " since initdb (%s): their answers may be the database's, so the catalogue is"
            " not judged by (sessions are refused)",
            ", ".join(changed[:20]),
        )
        return None
    if known is not None and known.mark == mark and known.columns_mark == columns:
        return known
    rows: list[list[str]] = []
    for sql in FACT_QUERIES:
        found = await ask(upstream, FACTS_PLANNED + PINNED_PATH + sql)
        if found is None:
            return None
        rows.append(found)
    shadowed, views, sources, code = rows
    facts = user_code(code)
    # what may leave session state on a server connection: sent only behind a transaction
    # pooler (the enforcer leaves it out elsewhere)
    pooled = session_code(code, facts)
    if pooled:
        facts["pooler_session_code"] = pooled
    # a built-in function whose catalogue row was written since initdb (CREATE OR REPLACE
    # FUNCTION pg_catalog.age(timestamp) ... LANGUAGE plpgsql) may not run the built-in:
    # judged as a name the database also defines
    changed = facts.pop("changed_functions", [])
    shadowed_names = tuple(sorted({*shadowed, *changed}))
    return Facts(
        mark,
        read_at,
        columns,
        shadowed_names,
        renamed_view_columns(views),
        relation_sources(sources),
        facts,
        code_names(shadowed_names, facts),
    )


def _marked(rows: list[str] | None, form: re.Pattern[str] = _MARK) -> str | None:
    """A mark's one value, or None when the answer is not one (a failure, or an answer
    out of step with its question: the connection is closed then)."""
    if rows is None or len(rows) != 1 or not form.fullmatch(rows[0]):
        return None
    return rows[0]


def _kept_boundary(upstream: Upstream, columns_mark: str) -> int:
    """The least initdb boundary read of this server (the columns mark's at the least)."""
    found = _COLUMNS_MARK.fullmatch(columns_mark)
    boundary = int(found.group(1)) if found else 0
    kept = _BOUNDARIES.get(upstream.writer.get_extra_info("peername"))
    return boundary if kept is None else min(kept, boundary)


def _boundary_kept(upstream: Upstream, columns_mark: str) -> bool:
    """Whether the initdb boundary a columns mark was read by is no later than the least
    this process read of the same server (kept the least: never moved forward)."""
    found = _COLUMNS_MARK.fullmatch(columns_mark)
    if found is None:
        return False
    boundary = int(found.group(1))
    server = upstream.writer.get_extra_info("peername")
    kept = _BOUNDARIES.get(server)
    if kept is None or boundary <= kept:
        _BOUNDARIES[server] = boundary
        return True
    log.error(
        "template0's catalogue row (and those of the databases made since initdb) was written"
        " again since this proxy first read it (%s, now %s): built-ins changed in place are"
        " no longer told apart, so the catalogue is not judged by (sessions are refused)",
        kept,
        boundary,
    )
    return False


def same_catalogue(a: Facts, b: Facts) -> bool:
    """Read of the same catalogue (their marks agree): nothing to judge differently."""
    return a.mark == b.mark and a.columns_mark == b.columns_mark


NO_FACTS = Facts("", float("-inf"), "", (), {}, {}, {})

Credentials = Callable[[], "tuple[dict[str, str], CredentialLease] | None"]


class CatalogWatch:
    """The newest facts of one proxy's database, asked on a connection of its own."""

    def __init__(
        self,
        host: str,
        port: int,
        tls: ssl.SSLContext | None,
        poll: float = POLL_SECONDS,
        linger: float = LINGER_SECONDS,
        prepared: bool = True,
    ) -> None:
        """prepared: its questions go as statements prepared once per connection (False
        behind a transaction pooler, where the next question may reach another server
        connection)."""
        self.host, self.port, self.tls = host, port, tls
        self.poll, self.linger = poll, linger
        self.prepared = prepared
        # the questions prepared on the current connection (by their names)
        self._made: set[str] = set()
        self.sessions = 0  # open sessions: the watch runs while there are any
        self.facts: Facts | None = None  # the newest read
        # the last question failed (the connection killed, the server refusing it): until
        # one is answered, no session may judge with the facts it has (fail closed)
        self._lost = False
        # sessions through this proxy ended transactions that may have written the
        # catalogue (written()), counted: until a question sent after the last one is
        # answered, no session reuses a verdict (lost) and a decision asks the columns too
        self._written = 0
        self._read_written = 0
        self._credentials: Credentials | None = None
        self._upstream: Upstream | None = None
        self._asking: asyncio.Future[Facts | None] | None = None
        self._asking_columns = False  # whether the question asking asks COLUMNS_MARK_SQL
        # the server's snapshot when the facts were last found current (with the columns
        # mark or not): while it is the same, no transaction has committed since
        self._seen: tuple[str, bool, Facts] | None = None
        self._task: asyncio.Task[None] | None = None
        self._lingering: asyncio.TimerHandle | None = None
        # the facts last read whole (read_facts: the built-in rows weighed too), with the
        # server (its address) and the snapshot asked of it just before: a session starting
        # while that snapshot is still the server's takes them (session_facts)
        self._whole: tuple[object, str, Facts] | None = None

    @property
    def lost(self) -> bool:
        """Whether the facts may be older than the catalogue: the last question failed,
        or a session wrote the catalogue since the last answer (written())."""
        return self._lost or self._written != self._read_written

    def written(self) -> None:
        """A session's transaction that may have written the catalogue ended (its DDL, an
        UPDATE of pg_proc): the facts are asked again, with the built-in rows and columns,
        before any verdict is reused, rather than at the next poll (within POLL_SECONDS a
        reused verdict, or a built-in changed in place, was judged with the old facts)."""
        self._written += 1

    async def opened(self, credentials: Credentials) -> None:
        """A session opened (`credentials` names its upstream parameters and lease): the
        watch runs, connected before the session's client is let in (once, not per
        session; a failure is tried again at the next question)."""
        self.sessions += 1
        self._credentials = credentials
        if self._lingering is not None:
            self._lingering.cancel()
            self._lingering = None
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        await self._connection()

    def closed(self) -> None:
        """A session ended: with none left, the watch stops after LINGER_SECONDS."""
        self.sessions -= 1
        if self.sessions <= 0 and self._lingering is None:
            self.sessions = 0
            loop = asyncio.get_running_loop()
            self._lingering = loop.call_later(self.linger, self._idle)

    def _idle(self) -> None:
        self._lingering = None
        if self.sessions == 0:
            task, self._task = self._task, None
            if task is not None:
                task.cancel()
            self._close()

    def adopt(self, facts: Facts) -> None:
        """Facts a session read at its start-up: kept when newer than the watch's and of
        another catalogue (the sessions open already need not take them again)."""
        known = self.facts
        if known is None or (facts.read_at > known.read_at and not same_catalogue(facts, known)):
            self.facts = facts

    async def session_facts(self, upstream: Upstream) -> Facts | None:
        """The facts for a session starting on `upstream` (its own connection, nothing in
        flight on it yet): those last read whole, when the server's snapshot is still the
        one asked just before they were read (no transaction committed or took an xid
        since, anywhere on that server, so no catalogue row changed), else read on it
        (read_facts: the marks and the built-in rows always, the facts' questions only
        when the marks are not the newest facts'). A start-up used to ask every question
        every time: USER_CODE_SQL alone took ~30 ms to plan and ~20 to run on an empty
        database, for every session, though nothing had changed since the last one.
        None when it could not be read.

        The snapshot question calls its functions by name, on a connection new to them:
        a superuser who renamed `pg_catalog.pg_current_snapshot()` and made one (an SQL
        function) answering an old snapshot would have it taken for the server's
        (test_pg_probe_p43). So a start-up taking the
        facts read before asks OVERLOADED_SQL too (functions made after initdb in
        pg_catalog under a question's name: such a one found, read whole, and refused)."""
        answer = await session_query(upstream, SNAPSHOT_SQL)
        snapshot = answer[0] if answer and len(answer) == 1 else ""
        server = upstream.writer.get_extra_info("peername")
        whole = self._whole
        if _SNAPSHOT.fullmatch(snapshot) and whole is not None and whole[:2] == (server, snapshot):
            overloaded = await session_query(upstream, PINNED_PATH + OVERLOADED_SQL)
            if overloaded == []:
                return whole[2]
        facts = await read_facts(upstream, session_query, self.facts, session_answer)
        self._read_whole(server, snapshot, facts)
        return facts

    def _read_whole(self, server: object, snapshot: str, facts: Facts | None) -> None:
        """Facts read whole after `snapshot` was the server's (None: refused, forgotten)."""
        if facts is not None and _SNAPSHOT.fullmatch(snapshot):
            self._whole = (server, snapshot, facts)
        else:
            self._whole = None

    async def stop(self) -> None:
        if self._lingering is not None:
            self._lingering.cancel()
            self._lingering = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._close()

    async def fresh(
        self, credentials: Credentials | None = None, columns: bool = False
    ) -> Facts | None:
        """The facts as the catalogue holds them once this is asked: the mark asked by a
        question sent after this call (one in flight, sent earlier, is not enough), the
        facts read again when it moved. None when the catalogue could not be read.
        `credentials`: the asking session's, should the watch have to connect again;
        `columns`: COLUMNS_MARK_SQL asked too (unless a question sent after this call
        without it answers first)."""
        if credentials is not None:
            self._credentials = credentials
        written = self._written
        columns = columns or written != self._read_written
        earlier = self._asking
        if earlier is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(earlier)
        asking = self._asking
        while asking is not None and asking is not earlier and not asking.done():
            if not columns or self._asking_columns:
                break  # sent after this call, and asks what this call needs
            # sent after this call without the columns: answered first (one question at a
            # time on the connection), then asked again with them
            earlier = asking
            with contextlib.suppress(Exception):
                await asyncio.shield(asking)
            asking = self._asking
        else:
            asking = self._asking = asyncio.ensure_future(self._ask(columns))
            self._asking_columns = columns
            asking.add_done_callback(self._asked)
        try:
            found = await asyncio.shield(asking)
        except Exception:
            found = None
        self._lost = found is None
        if found is not None and self._read_written < written:
            self._read_written = written  # read after those writes ended, columns too
        return found

    def _asked(self, asking: asyncio.Future[Facts | None]) -> None:
        if self._asking is asking:
            self._asking = None

    async def _run(self) -> None:
        # asked whatever decisions are asking meanwhile (theirs leave out the columns and
        # the built-in rows: under steady decisions the poll would never ask for them)
        while True:
            await asyncio.sleep(self.poll)
            await self.fresh(columns=True)

    async def _ask(self, columns: bool) -> Facts | None:
        held = self._upstream is not None
        found = await self._ask_on(columns)
        if found is None and held:
            # the connection the watch held may have ended under it (the session whose
            # credential it connected with ended, and Vault revoked that dynamic role,
            # terminating its backends; an idle timeout; a restart): asked once more on a
            # new one, with the credentials of the session asking now
            found = await self._ask_on(columns)
        return found

    async def _ask_on(self, columns: bool) -> Facts | None:
        upstream = await self._connection()
        if upstream is None:
            return None
        answer = await self._question(upstream, SNAPSHOT_SQL)
        snapshot = answer[0] if answer and len(answer) == 1 else ""
        if not _SNAPSHOT.fullmatch(snapshot):
            self._close()
            return None
        known, seen = self.facts, self._seen
        if (
            known is not None
            and seen is not None
            and seen[2] is known
            and seen[0] == snapshot
            and (seen[1] or not columns)
        ):
            return known  # nothing committed since they were found current: the same
        mark = _marked(await self._question(upstream, MARK_SQL))
        if mark is None:
            self._close()
            return None
        if known is not None and known.mark == mark:
            if not columns:
                self._seen = (snapshot, False, known)
                return known
            found = _marked(await self._question(upstream, COLUMNS_MARK_SQL), _COLUMNS_MARK)
            if found is None:
                self._close()
                return None
            if found == known.columns_mark:
                self._seen = (snapshot, True, known)
                return known
        facts = await read_facts(upstream, whole=session_answer)
        self._read_whole(upstream.writer.get_extra_info("peername"), snapshot, facts)
        if facts is None:
            # the facts known are no longer the catalogue's, and none could be read (a
            # built-in row written in place refuses them): forgotten, so that no later
            # question whose mark has not moved (a decision's, without the columns) is
            # answered with them; asked again, they are read again or refused
            self.facts = self._seen = None
            self._close()
            return None
        known = self.facts
        if known is None or (facts.read_at > known.read_at and not same_catalogue(facts, known)):
            known = self.facts = facts
        self._seen = (snapshot, True, known)
        return known

    async def _question(self, upstream: Upstream, sql: str) -> list[str] | None:
        """The first column of one of the watch's questions, asked on its connection: as
        a statement prepared there (Parse the first time), which the server plans once;
        MARK_SQL's 28 catalogues took it about ten times as long to plan as to run, every
        time a decision asked it. None when it failed."""
        if not self.prepared:
            return await session_query(upstream, PINNED_PATH + sql)
        name = _QUESTIONS[sql]
        refused: list[codec.ErrorResponse] = []
        rows = await prepared_rows(upstream, name, sql, name not in self._made, refused)
        if rows is None and refused and refused[0].fields.get("V", "ERROR") == "ERROR":
            # the server (or a pooler in front of it, undeclared) would not keep or run
            # it: the same question as a simple Query, from now on (the answer the same);
            # a FATAL (the connection terminated) says nothing of prepared statements
            error = refused[0].fields
            log.info(
                "the catalogue watch asks without prepared statements: %s (%s)",
                error.get("M", ""),
                error.get("C", ""),
            )
            self.prepared = False
            return await session_query(upstream, PINNED_PATH + sql)
        if rows is None:
            return None
        self._made.add(name)
        return [row[0] or "" for row in rows if row]

    async def _connection(self) -> Upstream | None:
        if self._upstream is not None and not self._upstream.writer.is_closing():
            return self._upstream
        self._upstream = None
        found = self._credentials() if self._credentials is not None else None
        if found is None:
            return None
        params, lease = found
        self._made = set()  # nothing prepared on a new connection
        try:
            upstream = await connect(self.host, self.port, params, lease, self.tls)
        except UpstreamError as exc:
            # once per loss: the poll tries again every POLL_SECONDS while it lasts
            (log.debug if self._lost else log.warning)(
                "the catalogue watch could not connect (sessions are refused until it does): %s",
                exc,
            )
            return None
        self._upstream = upstream
        return upstream

    def _close(self) -> None:
        upstream, self._upstream = self._upstream, None
        self._made = set()
        if upstream is not None:
            upstream.writer.close()
