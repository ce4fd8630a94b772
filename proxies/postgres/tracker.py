"""What each server message answers, and what the client may see of it (no IO here).

Owns the order of responses on one proxied connection. Every frontend message the proxy
forwards leaves an expectation; every answer the proxy makes up itself (a policy deny) is
queued in the same line, so the client receives exactly the sequence a server would
send. From the expectations the tracker knows which statement a DataRow belongs to and
therefore which mask applies; it rewrites rows (masked columns, detectors over text),
counts rows and masking per command, and follows the transaction status. Results that
nothing masks take plain(), which reads the frames the parser checked without a message
for each row and leaves every state on_backend would; results that mask take masked(),
which rewrites only the rows that change, where they lie in the server's chunk, through a
RowMask planned once per result shape (differential Hypothesis tests hold both lanes to
on_backend).
"""

from __future__ import annotations

import re
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from portcullis.masking import Masker
from portcullis.verdict import MaskRule
from proxies.postgres import codec
from proxies.postgres.code_names import CodeNames
from proxies.postgres.codec.wire import UINT16
from proxies.postgres.columns import ColumnOrigin
from proxies.postgres.row_mask import RowMask
from proxies.postgres.startup import same_value
from proxies.postgres.values import count_key, masked_copy_row, masked_fields, masked_hex_bytes
from proxies.runtime.pdp_client import Ruling

# what masks a computed view column no other rule covers (the derived rule's own)
VIEW_DERIVED = MaskRule(derived=True, strategy="redact")

# what a completion without masking carries (shared, never changed: only an Expect's
# own counter is ever incremented)
_NOTHING_MASKED: defaultdict[str, int] = defaultdict(int)  # never counted into

# the answers plain() reads
_DATA_ROW, _READY_FOR_QUERY = b"DZ"
_COMPLETIONS = frozenset(b"CI")  # CommandComplete, EmptyQueryResponse
_DONE = frozenset(b"123")  # ParseComplete, BindComplete, CloseComplete
_BIND_COMPLETE = ord("2")
_ROW_DESCRIPTION, _COMMAND_COMPLETE = b"TC"
_DESCRIPTIONS = frozenset(b"Tn")  # RowDescription, NoData
_DESCRIBES = ("DescribeS", "DescribeP")
_ENDED_BY_READY = ("Query", "Sync", "CopyInSync", "Call")  # what a ReadyForQuery answers last
_SYNCS = ("Sync", "CopyInSync")
# what starts a statement of the client's: a Sync queued after one is none the COPY before
# it ignored
_STATEMENTS = ("Query", "Execute", "Call")
# command tags (their first word) of statements that write no catalogue row themselves:
# any other (CREATE, ALTER, UPDATE of pg_proc, DO, CALL, ...) may have changed the code the
# policy judges by, which the catalogue watch is told of once its transaction ends
# (on_catalog_written). So does a statement of any tag whose text may name code the
# database made (a function whose body runs DDL or UPDATE pg_proc, a view calling one, a
# table whose trigger or rule does: proxies/postgres/code_names.py, from the session's
# catalogue facts; checked as its completion is kept, _complete), rather than the watch's
# next poll finding it (a reused verdict ran with the old facts meanwhile); a read naming
# none of it is not counted (every read of a privileged session would ask again).
_READ_TAGS = frozenset(
    {
        "SELECT", "SHOW", "FETCH", "MOVE", "BEGIN", "START", "COMMIT", "ROLLBACK",
        "SAVEPOINT", "RELEASE", "SET", "RESET", "DISCARD", "DEALLOCATE", "PREPARE",
        "DECLARE", "CLOSE", "LISTEN", "UNLISTEN", "NOTIFY", "LOCK", "",
    }
)  # fmt: skip
# writes of rows: of the catalogue only when the statement names a catalogue table (an
# UPDATE of pg_proc; every write of a write-heavy workload would otherwise ask the
# catalogue again), or may hide the name it writes: a quoted or escaped name, an SQL
# EXECUTE of a statement prepared before
_ROW_TAGS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "COPY"})
_MAY_NAME_CATALOG = re.compile(r'pg_|["\\]|u&|execute|^$', re.IGNORECASE)
_NO_DATA = ord("n")

_Origin = tuple[int, int]  # a table column: (table OID, attribute number)


@dataclass
class ResultShape:
    """A RowDescription and what masking makes of its rows."""

    fields: list[codec.Field]
    # what names the description among others: its bytes as the server sent them (a
    # session's results describe themselves alike again and again)
    key: bytes = b""
    formats: list[int] = field(default_factory=list)  # each column's, as described


# what the server made of a Parse, a Bind or a cursor's DECLARE (the enforcer's
# PreparedStatement.state and Portal.state): not yet answered, made, refused or discarded
PENDING, CONFIRMED, FAILED = 0, 1, 2

# what an Expect's formats are until a description or Bind gives them (only ever
# replaced, never changed in place)
_NO_FORMATS: list[int] = []


class Expect:
    """The answer still owed for one forwarded frontend message.

    Slotted, with its __init__ spelt out: several are made for every statement (a
    prepared statement's Bind, Describe, Execute and Sync), and a dataclass's __init__
    with default factories cost twice as much. Which kind it is, its masker and whether
    it is swallowed, replaced or silent are never changed once made (the tracker counts
    the owed answers that are not plain when they are queued)."""

    __slots__ = ("command", "decision_id", "formats", "kind", "made", "masked", "masker",
                 "owner", "parts", "portal", "protocol", "quiet", "replace_error", "row_mask",
                 "rows", "ruling", "shape", "silent", "statement", "swallow")  # fmt: skip

    def __init__(
        self,
        kind: str,  # Query | Parse | Bind | DescribeS | DescribeP | Execute | Close | Sync | Call
        masker: Masker | None = None,
        decision_id: str = "",
        shape: ResultShape | None = None,  # Execute: the portal's row shape
        row_mask: RowMask | None = None,  # how its rows are masked, from its first masked row
        formats: list[int] = _NO_FORMATS,  # Execute: Bind's result formats
        statement: str | None = None,  # DescribeS/Execute: statement name; DescribeP: portal
        portal: str | None = None,  # Execute: the portal it runs
        swallow: bool = False,  # internal message: its answer never reaches the client
        silent: bool = False,  # its answer reaches the client but is no command of the session's
        replace_error: codec.ErrorResponse | None = None,  # poison Parse: the policy's error
        command: str = "",
        ruling: Ruling | None = None,  # what allowed it, recorded with its completion
        protocol: str = "",
        parts: int = 0,  # results completed so far (a simple Query may hold several statements)
        rows: int = 0,
        # the shared empty counts until something is masked (see _tally): most statements
        # mask nothing, and a dict per forwarded message is measurable
        masked: defaultdict[str, int] = _NOTHING_MASKED,
        # a simple Query the proxy runs as a statement it prepared (proxies.postgres.
        # prepared_rewrites): its ParseComplete and BindComplete never reach the client,
        # and an error before its BindComplete names `statement` in `unprepared` (the one
        # field changed once made: False from its BindComplete on)
        quiet: bool = False,
        # DescribeS/DescribeP: the enforcer's statement or portal described (its `shape`
        # and `shaped` are set from the answer); Execute: the portal run (its rows are
        # masked as described for it). The very object, not its name: a description
        # answered after the name was given to another statement or portal is that
        # other's, never the newer one's
        owner: Any = None,
        # Query/Execute: the cursors it declares (their `state` CONFIRMED once it ran,
        # FAILED on its error or when it was discarded). Parse/Bind: `owner` is what it
        # makes, CONFIRMED by its ParseComplete or BindComplete, else FAILED
        made: tuple[Any, ...] = (),
    ) -> None:
        self.kind = kind
        self.masker = masker
        self.decision_id = decision_id
        self.shape = shape
        self.row_mask = row_mask
        self.formats = formats
        self.statement = statement
        self.portal = portal
        self.swallow = swallow
        self.silent = silent
        self.replace_error = replace_error
        self.command = command
        self.ruling = ruling
        self.protocol = protocol
        self.parts = parts
        self.rows = rows
        self.masked = masked
        self.quiet = quiet
        self.owner = owner
        self.made = made

    def __repr__(self) -> str:
        return f"Expect({self.kind!r}, command={self.command[:40]!r}, rows={self.rows})"


_new_slotted = object.__new__  # (the slotted classes made on every statement)


def owed(
    kind: str,
    masker: Masker | None = None,
    decision_id: str = "",
    statement: str | None = None,
    portal: str | None = None,
    command: str = "",
    ruling: Ruling | None = None,
    protocol: str = "",
    owner: Any = None,
    formats: list[int] = _NO_FORMATS,
) -> Expect:
    """Expect(kind, masker, decision_id, statement=statement, portal=portal, command=command,
    ruling=ruling, protocol=protocol, owner=owner, formats=formats), for the lanes that
    make one per message of every statement (a simple Query, a prepared run's four): a
    plain function call, where making a class instance goes through type.__call__ and a
    second interpreter frame for __init__. The same slots, the same values
    (tests/test_pg_hot_lanes.py holds the two equal)."""
    item: Expect = _new_slotted(Expect)
    item.kind = kind
    item.masker = masker
    item.decision_id = decision_id
    item.shape = None
    item.row_mask = None
    item.formats = formats
    item.statement = statement
    item.portal = portal
    item.swallow = False
    item.silent = False
    item.replace_error = None
    item.command = command
    item.ruling = ruling
    item.protocol = protocol
    item.parts = 0
    item.rows = 0
    item.masked = _NOTHING_MASKED
    item.quiet = False
    item.owner = owner
    item.made = ()
    return item


@dataclass
class Synthetic:
    """An answer the proxy makes up; built when its turn comes (for the current status)."""

    build: Callable[[str], bytes]


@dataclass(slots=True)
class Completion:
    """A finished command, for the session recording."""

    command: str
    tag: str
    rows: int
    masked: defaultdict[str, int]
    decision_id: str
    error: str = ""
    ruling: Ruling | None = None
    protocol: str = ""
    part: int = 0
    # an Execute of the extended protocol: the name of the prepared statement it ran ("" the
    # unnamed one), under whose Parse's decision it ran (`audit verify` takes a decision's
    # repeated runs only as one statement's executions); None for anything else
    prepared: str | None = None


# result shapes by their description's bytes, for every session of the process (a shape
# is never changed once made; the sessions of one server describe their results alike)
_SHAPES: dict[bytes, ResultShape] = {}
_SHAPES_KEPT = 1024


class _NothingOwed(deque):  # type: ignore[type-arg]
    """The queue of a tracker owed nothing: one for the process, never added to (a deque
    takes 760 bytes; thousands of idle sessions need none of their own)."""

    def _refuse(self, *_: object) -> None:
        raise RuntimeError("the shared empty queue is never added to")

    append = appendleft = extend = extendleft = insert = _refuse  # type: ignore[assignment]


_NOTHING_OWED: deque[Expect | Synthetic] = _NothingOwed()


class ResponseTracker:
    def __init__(self) -> None:
        # what the server owes, in order; the shared empty one while nothing is (idle)
        self.queue: deque[Expect | Synthetic] = _NOTHING_OWED
        # of what was queued since the queue was last empty: the answers made up or not
        # plain but for masking (swallowed, replaced, a function call), and those masked.
        # Never fewer than the queue holds (counted as queued, forgotten only once it is
        # empty), so plain() and masked() need not look at each item for every chunk
        self._special = 0
        self._masking = 0
        # of those, the simple Queries run prepared (Expect.quiet) whose BindComplete has
        # not come (never fewer than are owed): the relay then reads plain answers with
        # plain_quiet()
        self.quiet_owed = 0
        self.status = "I"
        self.statement_shapes: dict[str, ResultShape | None] = {}
        self.portal_shapes: dict[str, ResultShape | None] = {}
        self.completions: list[Completion] = []
        self.in_copy_out = False
        self._discarding_to_sync = False
        # (table OID, attribute number) → what the column is (proxies.postgres.columns),
        # filled by the proxy from the catalog before a result that masks is read
        self.column_origins: dict[tuple[int, int], ColumnOrigin] = {}
        # reported settings the session must keep (proxies.postgres.startup), and why the
        # session must stop once the server reports another value of one ("" while none)
        self.pinned: dict[str, str] = {}
        self.broken = ""
        # COPY FROM STDIN: the server ignores a Sync it reads while it runs (libpq sends one
        # right after the COPY's Execute). The enforcer queues a Sync the client sent after
        # a statement that may be one, before its CopyDone or CopyFail, as a "CopyInSync";
        # once the server answers that statement with CopyInResponse, those are owed
        # nothing (else each would take the answer of what comes after it: a masked
        # result taken for a Sync's passes unmasked). The statement whose COPY runs, and
        # how many Syncs were so taken off: ambiguous if the COPY then fails (the server
        # may have stopped it before reading them), which stops the session.
        self._copy_head: Expect | None = None
        self._copy_ignored = 0
        # the proxy lifted default_transaction_read_only for an approved write: the server
        # reports it off until the proxy puts it back
        self.lifted = False
        self.readies = 0  # ReadyForQuery messages seen: the statement watchdog's clock
        # of those, the ones saying no transaction is open: a transaction's age is
        # counted from the first client message after the last of them (the relay's)
        self.idles = 0
        # the Query, or the Sync of the prepared run, whose whole answer plain() read last
        # in one chunk (its own lanes, below): of the Query, or the run's four
        # expectations, it changed only the parts of the one that completed, so their
        # maker may owe them again (Enforcer.simple_query, Enforcer.bound_run)
        self.answered: Expect | None = None
        # a statement of the open transaction may have written the catalogue (_READ_TAGS);
        # told to on_catalog_written (the catalogue watch's) once the transaction ends
        self._wrote = False
        self.on_catalog_written: Callable[[], None] | None = None
        # the names of the database's code in the session's facts as they are now (None:
        # nothing to ask; the callable's None: the database has no such code)
        self.code_names: Callable[[], CodeNames | None] | None = None
        # statements the proxy prepared whose Parse or Bind failed: the server may not hold
        # them as made, so they are never bound again (the enforcer reads and clears it)
        self.unprepared: list[str] = []
        # the masker of the last thing owed that had one: an error or notice answering what
        # has none (the Sync whose implicit COMMIT fails a deferred constraint, `Key (a)=
        # (card ...)`; the server speaking unprompted) is masked with it, since the session
        # is masked (fail closed: a later unmasked statement's errors are masked too)
        self.error_masker: Masker | None = None
        # whether the server's notifications (NotificationResponse) reach the client: not
        # behind a transaction pooler, where LISTEN is refused to every session and a
        # notification is one that arrived for another session's LISTEN left on the server
        # connection (its payload another session's text, unmasked)
        self.notifications = True
        # (masker, description, formats) → the table columns the RowMask was planned on,
        # what the catalog said of them then, and the RowMask (see _row_mask)
        self._row_masks: dict[
            tuple[object, ...], tuple[tuple[_Origin, ...], tuple[object, ...], RowMask]
        ] = {}

    # -- what the client side registers ------------------------------------------------

    def expect(self, item: Expect) -> None:
        if item.kind == "CopyInSync" and self._copy_ignores(item):
            return
        queue = self.queue
        if not queue:  # nothing owed: nothing counted is left in it
            if queue is _NOTHING_OWED:
                queue = self.queue = deque()
            self._special = self._masking = self.quiet_owed = 0
        if item.masker is not None:
            self._masking += 1
            self.error_masker = item.masker
        if item.quiet:
            self.quiet_owed += 1
        if item.swallow or item.replace_error is not None or item.kind == "Call":
            self._special += 1
        queue.append(item)

    def _copy_ignores(self, sync: Expect) -> bool:
        """Whether the server ignores this Sync, sent inside the COPY FROM STDIN it runs
        now (no statement queued after that COPY's)."""
        head = self._copy_head
        if head is None or any(e.kind in _STATEMENTS for e in self._after(head)):
            return False
        self._copy_ignored += 1
        return True

    def _after(self, head: Expect) -> list[Expect]:
        items = list(self.queue)
        at = next((n for n, e in enumerate(items) if e is head), None)
        return [] if at is None else [e for e in items[at + 1 :] if isinstance(e, Expect)]

    def _copy_started(self, head: Expect) -> None:
        """CopyInResponse: the Syncs sent inside this COPY, queued before any statement
        after it, are ignored by the server."""
        self._copy_head, self._copy_ignored = head, 0
        for item in self._after(head):
            if item.kind in _STATEMENTS:
                break
            if item.kind == "CopyInSync":
                self.queue.remove(item)
                self._copy_ignored += 1

    def _copy_ended(self, head: Expect, failed: bool) -> None:
        if failed and self._copy_ignored and not self.broken:
            self.broken = (
                "a COPY FROM STDIN failed with a Sync sent inside it, which the server may "
                "have read before or after the failure; the session is stopped"
            )
        self._copy_head, self._copy_ignored = None, 0

    def expect_plain(self, items: tuple[Expect, ...], masks: bool) -> None:
        """expect() for each of items, none of which is swallowed, replaced, quiet or a
        function call; `masks`: one of them has a masker (none otherwise)."""
        queue = self.queue
        if not queue:
            if queue is _NOTHING_OWED:
                queue = self.queue = deque()
            self._special = self._masking = self.quiet_owed = 0
        if masks:
            self._masking += 1
            self.error_masker = next(i.masker for i in items if i.masker is not None)
        queue.extend(items)

    def synthetic(self, build: Callable[[str], bytes]) -> bytes:
        """Queue a made-up answer; returns its bytes now if nothing is owed before it."""
        if not self.queue:
            return build(self.status)
        self._special += 1
        self.queue.append(Synthetic(build))
        return b""

    @property
    def idle(self) -> bool:
        return not self.queue

    def knows(self, shape: ResultShape | None) -> bool:
        """Whether a statement's description may stand for its portal's rows: it was
        described (None: no rows) and the catalog has told what each of its table
        columns is (after a catalog refresh, not until described and learnt again)."""
        if shape is None:
            return True
        origins = self.column_origins
        return all((f.table_oid, f.column) in origins for f in shape.fields if f.table_oid)

    @property
    def masking(self) -> bool:
        """Whether the rows of something owed may be masked (True also for a while after
        the last such answer, until nothing is owed: the masked lane reads any result)."""
        return self._masking > 0

    # -- what the server sends ---------------------------------------------------------

    def on_backend(self, message: codec.Message) -> bytes:
        """Bytes for the client in answer to one server message (may be empty)."""
        queue = self.queue
        out = self._release_synthetic() if queue and type(queue[0]) is Synthetic else b""
        head = queue[0] if queue else None
        if isinstance(message, codec.ReadyForQuery):
            finished_swallowed = self._ready(message.status, head)
            out += b"" if finished_swallowed else message.raw or message.encode()
            return out + self._release_synthetic()
        if isinstance(message, codec.ParameterStatus):
            self.watch(message.name, message.value)
            return out + (message.raw or message.encode())
        if isinstance(message, codec.NoticeResponse):
            masker = head.masker if isinstance(head, Expect) else None
            masker = masker or self.error_masker
            if masker is not None:
                fields = masked_fields(masker, message.fields)
                if fields is not None:
                    return out + codec.NoticeResponse(fields).encode()
            return out + (message.raw or message.encode())
        if isinstance(message, codec.NotificationResponse):
            if not self.notifications:
                return out  # another session's (test_pg_probe_p53)
            return out + (message.raw or message.encode())
        if not isinstance(head, Expect):
            # nothing owed: the server speaks unprompted (e.g. a FATAL before closing)
            if isinstance(message, codec.ErrorResponse) and self.error_masker is not None:
                fields = masked_fields(self.error_masker, message.fields)
                if fields is not None:
                    return out + codec.ErrorResponse(fields).encode()
            return out + (message.raw or message.encode())
        if isinstance(message, codec.ErrorResponse):
            return out + self._on_error(head, message)
        return out + self._on_answer(head, message)

    def plain(self, answers: list[codec.PlainAnswer]) -> bool:
        """What on_backend does with each of answers (codec.BackendParser.plain_answers),
        when nothing owed is anything but plain: no rows to mask, no answer to swallow,
        replace or make up, no function call, no Query run prepared (plain_quiet). The
        client then gets the server's bytes unchanged. False, having changed nothing,
        when something owed is not plain: on_backend answers those."""
        if self._special or self._masking or self.quiet_owed:
            return False
        queue = self.queue
        # the usual chunks of pgbench -S and its like, one statement's whole answer with
        # one row: a simple Query's (description, row, tag, status; the Query owed) and a
        # prepared run's (BindComplete, description, row, tag, status; its Bind, DescribeP,
        # Execute and Sync owed): what the loop below does for them, spelt out
        # (tests/test_pg_plain_runs.py holds the two equal)
        owed = len(queue)
        if owed == 1 and len(answers) == 4:
            query: Expect = queue[0]  # type: ignore[assignment]  # (nothing special: no Synthetic)
            described, row, ended, ready = answers
            if (
                described[0] == _ROW_DESCRIPTION
                and row[0] == _DATA_ROW
                and ended[0] == _COMMAND_COMPLETE
                and ready[0] == _READY_FOR_QUERY
                and query.kind == "Query"  # (not a Describe: the description is the rows')
            ):
                query.rows += 1
                self._ended(query, ended[1])  # (a Query's: nothing popped)
                # _ready(status, query): the Query the last thing owed
                self._ready_alone(ready[1], query)
                self.answered = query
                return True
        elif owed == 4 and len(answers) == 5:
            bound, described, row, ended, ready = answers
            bind: Expect
            describe: Expect
            execute: Expect
            sync: Expect
            bind, describe, execute, sync = queue  # type: ignore[assignment]
            description = described[2]
            if (
                bound[0] == _BIND_COMPLETE
                and described[0] == _ROW_DESCRIPTION
                and row[0] == _DATA_ROW
                and ended[0] == _COMMAND_COMPLETE
                and ready[0] == _READY_FOR_QUERY
                and bind.kind == "Bind"
                and describe.kind == "DescribeP"
                and execute.kind == "Execute"
                and sync.kind == "Sync"
                and description is not None
            ):
                # _done(bind)
                owner = bind.owner
                if owner is not None and owner.state == PENDING:
                    owner.state = CONFIRMED
                # _described(describe, shape)
                shape = self._shape(description)
                self.portal_shapes[describe.statement or ""] = shape
                owner = describe.owner
                if owner is not None:
                    owner.shape, owner.shaped = shape, True
                execute.rows += 1
                self._ended(execute, ended[1])  # (an Execute's: pops one of the three)
                # _ready(status, sync): the Sync the last thing owed
                queue.popleft()
                queue.popleft()
                self._ready_alone(ready[1], sync)
                self.answered = sync
                return True
        # what is owed first (None: nothing, the server speaks unprompted), looked at again
        # only after an answer that may have taken it off the queue (nothing special is
        # owed, so it is an Expect)
        # (checked once, not after every answer: only plain() and on_backend take items
        # off the queue, and nothing special queued means no Synthetic)
        head: Expect | None = queue[0] if queue else None  # type: ignore[assignment]
        assert head is None or type(head) is Expect
        for kind, text, description in answers:
            if kind == _DATA_ROW:
                if head is not None:
                    head.rows += 1
                continue
            if kind == _READY_FOR_QUERY:
                self._ready(text, head)
            elif head is None:
                continue
            elif kind in _COMPLETIONS:
                self._ended(head, text)
            elif kind in _DONE:
                self._done(head)
            elif kind in _DESCRIPTIONS and head.kind in _DESCRIBES:
                self._described(head, self._shape(description) if description else None)
            else:
                # a ParameterDescription, or rows described for a Query or Execute: nothing
                # masks them, so nothing is kept of their description
                continue
            head = queue[0] if queue else None  # type: ignore[assignment]
        return True

    def plain_quiet(self, answers: list[codec.PlainAnswer], chunk: bytes) -> bytes | None:
        """plain() while a simple Query the proxy runs prepared may be owed (quiet_owed):
        chunk for the client, without that Query's ParseComplete and BindComplete. None,
        having changed nothing, when something owed is otherwise not plain."""
        if self._special or self._masking:
            return None
        queue = self.queue
        head = queue[0] if queue else None
        assert head is None or type(head) is Expect
        if (
            self.quiet_owed == 1
            and head is not None
            and head.quiet
            and answers
            and answers[0][0] == _BIND_COMPLETE
        ):
            # the usual: the chunk opens with the BindComplete of the one Query run
            # prepared; past it nothing owed is quiet, so the rest is plain()'s
            head.quiet = False
            self.quiet_owed = 0
            self._done(head)
            self.plain(answers[1:])
            return chunk[1 + int.from_bytes(chunk[1:5], "big") :]
        cut: list[int] = []  # the places (one answer per frame) of the frames left out
        for place, (kind, text, description) in enumerate(answers):
            if kind == _DATA_ROW:
                if head is not None:
                    head.rows += 1
                continue
            if kind == _READY_FOR_QUERY:
                self._ready(text, head)
            elif head is None:
                continue
            elif kind in _COMPLETIONS:
                self._ended(head, text)
            elif kind in _DONE:
                if head.quiet:
                    cut.append(place)
                    if kind == _BIND_COMPLETE:
                        head.quiet = False
                        self.quiet_owed -= 1
                self._done(head)
            elif kind in _DESCRIPTIONS and head.kind in _DESCRIBES:
                self._described(head, self._shape(description) if description else None)
            else:
                continue
            head = queue[0] if queue else None
            assert head is None or type(head) is Expect
        if cut == _FIRST:  # the usual: the chunk opens with the Query's BindComplete
            return chunk[1 + int.from_bytes(chunk[1:5], "big") :]
        return without_frames(chunk, cut)

    def masked(
        self, answers: list[codec.PlainAnswer], rows: list[codec.RowSpan], chunk: bytes
    ) -> bytes | None:
        """What on_backend sends the client for each of answers (plain_answers of chunk,
        with its rows), when rows may be masked but nothing owed is swallowed, replaced,
        made up or a function call: the chunk with each masked row rewritten in place,
        and without the ParseComplete and BindComplete of a Query run prepared (quiet)
        when the chunk opens with them. None, having changed nothing, when something owed
        is not of that kind, or a quiet Query's answers stand elsewhere in the chunk. The
        caller has learnt the described tables' columns first, as before on_backend."""
        if self._special:
            return None
        queue = self.queue
        copied = 0  # chunk bytes before this are in parts (or left out)
        if self.quiet_owed:
            copied = self._quiet_opening(answers, chunk)
            if copied < 0:
                return None
        parts: list[bytes] = []
        next_row = 0
        for kind, text, description in answers:
            if kind == _DATA_ROW:
                start, end = rows[next_row]
                next_row += 1
                if not queue:
                    continue  # nothing owed: the server speaks unprompted
                head = queue[0]
                assert type(head) is Expect
                head.rows += 1
                if head.masker is not None:
                    row = self._masked_frame(head, chunk, start, end)
                    if row is not None:
                        parts.append(chunk[copied:start])
                        parts.append(row)
                        copied = end
                continue
            if kind == _READY_FOR_QUERY:
                self._ready(text, queue[0] if queue else None)
                continue
            if not queue:
                continue
            head = queue[0]
            assert type(head) is Expect
            if kind in _COMPLETIONS:
                self._ended(head, text)
            elif kind in _DONE:
                if head.quiet and kind == _BIND_COMPLETE:
                    head.quiet = False
                    self.quiet_owed -= 1
                self._done(head)
            elif description is not None:
                self._rows_described(head, description)
            elif kind == _NO_DATA and head.kind in _DESCRIBES:
                self._described(head, None)
        if not parts:
            return chunk[copied:] if copied else chunk
        parts.append(chunk[copied:])
        return b"".join(parts)

    def _quiet_opening(self, answers: list[codec.PlainAnswer], chunk: bytes) -> int:
        """masked() while a Query run prepared may be owed: how many bytes the chunk opens
        with that are that Query's ParseComplete and BindComplete (0: none), or -1 when
        some ParseComplete, BindComplete or CloseComplete stands elsewhere (on_backend
        reads it). Only the Query owed first can have its answers open the chunk, and it
        has at most those two before its description."""
        opening = 0
        while opening < len(answers) and answers[opening][0] in _DONE:
            opening += 1
        for kind, _text, _description in answers[opening:]:
            if kind in _DONE:
                return -1
        if not opening:
            return 0
        head = self.queue[0] if self.queue else None
        if not (type(head) is Expect and head.quiet and opening <= 2):
            return -1
        # on_backend drops them only until the BindComplete (the Query is not quiet after
        # it): one after it is the client's to read, so the lane leaves that chunk alone
        if any(answers[i][0] == _BIND_COMPLETE for i in range(opening - 1)):
            return -1
        end = 0
        for _ in range(opening):
            end += 1 + int.from_bytes(chunk[end + 1 : end + 5], "big")
        return end

    # -- what an answer changes, whichever way it was read (on_backend or plain) -------

    def watch(self, name: str, value: str) -> None:
        """A setting the server reports (ParameterStatus): a pinned one that moved stops
        the session — a function or statement changed how the server reads SQL, or what
        policy pinned, and nothing the policy judged on the old terms may run after."""
        key = name.lower()
        pinned = self.pinned.get(key)
        if pinned is None:
            return
        if same_value(key, value, pinned):
            if key == "default_transaction_read_only":
                self.lifted = False  # put back after an approved write
            return
        if key == "default_transaction_read_only" and self.lifted:
            return
        if not self.broken:
            self.broken = (
                f"the server reports {name} = {value[:64]!r}, but this session is pinned to "
                f"{pinned!r}; the session is stopped"
            )

    def _ready(self, status: str, head: Expect | Synthetic | None) -> bool:
        """ReadyForQuery: the new status; True if what it ended was swallowed."""
        self.status = status
        self.readies += 1
        if status == "I":
            self.idles += 1
            if self._wrote:
                self._written()
        self._discarding_to_sync = False
        self.in_copy_out = False
        # what it ends comes off the queue: every answer owed up to the Query, Sync or
        # function call it finishes (a made-up answer stays, for its turn)
        queue = self.queue
        swallowed = False
        while queue:
            item = queue[0]
            if not isinstance(item, Expect):
                break
            queue.popleft()
            if item.kind in _ENDED_BY_READY:
                swallowed = item.swallow
                if item.made:
                    _made(item, CONFIRMED)  # (a Query that failed made them FAILED first)
                break
            _failed(item)  # owed, yet never answered
        if not queue:
            self.queue = _NOTHING_OWED  # idle: its own queue goes until the next statement
            self._special = self._masking = self.quiet_owed = 0
        return swallowed

    def _ready_alone(self, status: str, last: Expect) -> None:
        """_ready(status, last) when the queue holds `last` alone, an Expect of a kind a
        ReadyForQuery ends (its Query or Sync)."""
        self.status = status
        self.readies += 1
        if status == "I":
            self.idles += 1
            if self._wrote:
                self._written()
        self._discarding_to_sync = False
        self.in_copy_out = False
        self.queue.popleft()
        if last.made:
            _made(last, CONFIRMED)
        self.queue = _NOTHING_OWED
        self._special = self._masking = self.quiet_owed = 0

    def _written(self) -> None:
        """A transaction that may have written the catalogue ended (status idle): what it
        wrote is committed (or rolled back), and the watch reads the catalogue again before
        any session reuses a verdict."""
        self._wrote = False
        if self.on_catalog_written is not None:
            self.on_catalog_written()

    def _ended(self, head: Expect, tag: str) -> None:
        """A statement's result ended (CommandComplete, EmptyQueryResponse, ...)."""
        if head is self._copy_head:
            self._copy_ended(head, False)
        if not tag.startswith("SELECT"):
            self._ended_write(head, tag)
        self._complete(head, tag)
        head.shape = None
        head.row_mask = None
        self.in_copy_out = False
        if head.kind == "Execute":
            if head.made:
                _made(head, CONFIRMED)
            self.queue.popleft()

    def _ended_write(self, head: Expect, tag: str) -> None:
        """_ended's reading of a tag other than SELECT: whether its statement may have
        written the catalogue."""
        word = tag.partition(" ")[0]
        if word not in _READ_TAGS and (
            word not in _ROW_TAGS or _MAY_NAME_CATALOG.search(head.command or "")
        ):
            self._wrote = True

    def _done(self, head: Expect) -> None:
        """ParseComplete, BindComplete or CloseComplete."""
        if head.kind in ("Parse", "Bind", "Close"):
            owner = head.owner
            if owner is not None and head.kind != "Close" and owner.state == PENDING:
                owner.state = CONFIRMED
            self.queue.popleft()

    def _rows_described(self, head: Expect, description: codec.RowDescription) -> None:
        """A RowDescription: what a Describe asked, or the rows of the Query or Execute
        running (their formats as the description gives them)."""
        shape = self._shape(description)
        if head.kind in _DESCRIBES:
            self._described(head, shape)
        else:
            head.shape = shape
            head.formats = shape.formats
            head.row_mask = None

    def _shape(self, description: codec.RowDescription) -> ResultShape:
        """The shape of a description, the same one for a description the server sent
        before byte for byte (shapes are never changed once made)."""
        raw = description.raw
        shapes = _SHAPES
        shape = shapes.get(raw) if raw else None
        if shape is None:
            fields = list(description.fields)
            shape = ResultShape(fields, raw, [f.format for f in fields])
            if raw:
                if len(shapes) >= _SHAPES_KEPT:
                    shapes.clear()
                shapes[raw] = shape
        return shape

    def _described(self, head: Expect, shape: ResultShape | None) -> None:
        """A Describe's answer: the rows its statement or portal returns (None: none)."""
        if head.kind == "DescribeS":
            self.statement_shapes[head.statement or ""] = shape
        else:
            self.portal_shapes[head.statement or ""] = shape
        owner = head.owner
        if owner is not None:
            owner.shape, owner.shaped = shape, True
        self.queue.popleft()

    def _release_synthetic(self) -> bytes:
        out = b""
        while self.queue and isinstance(self.queue[0], Synthetic):
            item = self.queue.popleft()
            assert isinstance(item, Synthetic)
            out += item.build(self.status)
        return out

    def _on_error(self, head: Expect, message: codec.ErrorResponse) -> bytes:
        if head is self._copy_head:
            self._copy_ended(head, True)
        error = message
        if head.replace_error is not None:
            error = head.replace_error
        elif (masker := head.masker or self.error_masker) is not None:
            # the server's error of a statement whose results are masked may quote a value
            # (and the error of a Sync, the transaction's commit, any of its statements')
            fields = masked_fields(masker, message.fields)
            if fields is not None:
                error = codec.ErrorResponse(fields)
        self._complete(head, "", error.fields.get("C", "") or "error")
        _failed(head)
        if head.quiet:
            self.unprepared.append(head.statement or "")
        if head.kind == "Query" or head.kind == "Call":
            # the rest of a simple Query is skipped by the server; RFQ follows
            head.shape = None
            if head.swallow:
                return b""
            return message.raw or message.encode() if error is message else error.encode()
        # extended protocol: the server discards everything until Sync
        owed = False  # a message of the client's is discarded: it is owed this error
        while self.queue and isinstance(self.queue[0], Expect) and self.queue[0].kind not in _SYNCS:
            dropped = self.queue.popleft()
            owed = owed or not dropped.swallow  # type: ignore[union-attr]
            _failed(dropped)  # type: ignore[arg-type]
        self._discarding_to_sync = True
        if head.swallow and not owed:
            return b""
        return message.raw or message.encode() if error is message else error.encode()

    def _on_answer(self, head: Expect, message: codec.Message) -> bytes:
        raw = message.raw or message.encode()
        kind = head.kind
        if isinstance(message, codec.RowDescription):
            self._rows_described(head, message)
            return b"" if head.swallow else raw
        if isinstance(message, codec.NoData):
            if kind in _DESCRIBES:
                self._described(head, None)
            return b"" if head.swallow else raw
        if isinstance(message, codec.ParameterDescription):
            return b"" if head.swallow else raw  # DescribeS: RowDescription/NoData follows
        if isinstance(message, codec.DataRow):
            head.rows += 1
            if head.masker is None:
                return raw
            return self._mask_row(head, message)
        if isinstance(
            message, (codec.CommandComplete, codec.EmptyQueryResponse, codec.PortalSuspended)
        ):
            self._ended(head, message.tag if isinstance(message, codec.CommandComplete) else "")
            return b"" if head.swallow else raw
        if isinstance(message, codec.CopyOutResponse):
            self.in_copy_out = True
            return raw
        if isinstance(message, (codec.CopyData, codec.CopyDone)):
            if isinstance(message, codec.CopyData) and head.masker is not None:
                return self._mask_copy(head, message)
            return raw
        if isinstance(message, (codec.ParseComplete, codec.BindComplete, codec.CloseComplete)):
            self._done(head)
            if head.quiet:
                if type(message) is codec.BindComplete:
                    head.quiet = False
                    self.quiet_owed -= 1
                return b""
            return b"" if head.swallow else raw
        if isinstance(message, codec.FunctionCallResponse):
            if head.masker is not None and message.value is not None:
                raw = self._mask_call_result(head, message)
            self._wrote = True  # (a function the fast path calls may write the catalogue)
            self._complete(head, "FUNCTION CALL")
            return raw
        if isinstance(message, codec.CopyInResponse):
            self._copy_started(head)
        # CopyInResponse, CopyBothResponse and anything else pass as they are
        return raw

    def _complete(self, head: Expect, tag: str, error: str = "") -> None:
        if head.swallow or head.silent:
            return
        if not self._wrote and self.code_names is not None:
            names = self.code_names()
            if names is not None and names.named(head.command):
                self._wrote = True  # (told once its transaction ends, as DDL is)
        # Completion(head.command, tag, ...) without type.__call__ and a frame for __init__
        # (one per statement; the same slots, every one set)
        done: Completion = _new_slotted(Completion)
        done.command = head.command
        done.tag = tag
        done.rows = head.rows
        done.masked = head.masked or _NOTHING_MASKED
        done.decision_id = head.decision_id
        done.error = error
        done.ruling = head.ruling
        done.protocol = head.protocol
        done.part = head.parts
        done.prepared = (
            head.statement if head.kind == "Execute" and head.protocol == "extended" else None
        )
        self.completions.append(done)
        head.parts += 1
        head.rows = 0
        # the completion keeps its counts; the next part starts afresh
        head.masked = _NOTHING_MASKED

    # -- masking ------------------------------------------------------------------------

    def _mask_row(self, head: Expect, row: codec.DataRow) -> bytes:
        values = list(row.values)
        masked = self._masked_values(head, values)
        return row.raw or row.encode() if masked is None else masked

    def _masked_frame(self, head: Expect, chunk: bytes, start: int, end: int) -> bytes | None:
        """_masked_values for a DataRow frame where it lies in a chunk: the DataRow to
        send, or None when it goes as the server sent it (RowMask.rewrite)."""
        row_mask = head.row_mask or self._head_row_mask(head)
        if row_mask is None:
            (count,) = UINT16.unpack_from(chunk, start + 5)
            _tally(head)["unknown_columns"] += count
            return codec.data_row([None] * count)
        if not row_mask.columns:
            return None
        return row_mask.rewrite(chunk, start, end, _tally(head))

    def _masked_values(self, head: Expect, values: list[bytes | None]) -> bytes | None:
        """The DataRow to send for a row of head's result (values, changed in place), or
        None when it goes as the server sent it."""
        row_mask = head.row_mask or self._head_row_mask(head)
        if row_mask is None:
            # no description of these rows: no column can be named, so every value goes
            _tally(head)["unknown_columns"] += len(values)
            return codec.data_row([None] * len(values))
        if not row_mask.columns or not row_mask.apply(values, _tally(head)):
            return None
        return codec.data_row(values)

    def _head_row_mask(self, head: Expect) -> RowMask | None:
        """How head's rows are masked, planned at its first row (None: its rows were
        never described, so no column can be named)."""
        masker = head.masker
        assert masker is not None
        if head.shape is None and head.kind == "Execute":
            owner = head.owner
            if owner is not None:  # the portal as described for itself, never by its name
                head.shape = owner.shape if owner.shaped else None
            else:
                head.shape = self.portal_shapes.get(head.portal or "")
            if head.shape is not None and not head.formats:
                # a cursor's portal: its description says how each column comes
                head.formats = head.shape.formats
        shape = head.shape
        if shape is None:
            return None
        head.row_mask = self._row_mask(shape, masker, head.formats)
        return head.row_mask

    def _row_mask(self, shape: ResultShape, masker: Masker, formats: list[int]) -> RowMask:
        """The RowMask of a result shape (its plan from _columns_to_mask), remembered per
        masker, description and formats, and planned anew once the catalog says something
        else of one of its table columns: a simple Query's results describe themselves
        anew each time."""
        origins = self.column_origins
        key = (masker, shape.key or tuple(shape.fields), tuple(formats))
        known = self._row_masks.get(key)
        if known is not None:
            columns, seen, row_mask = known
            if tuple(map(origins.get, columns)) == seen:
                return row_mask
        if len(self._row_masks) >= 256:
            self._row_masks.clear()
        fields = shape.fields
        rules, stored = self._columns_to_mask(fields, masker)
        row_mask = RowMask(masker, fields, formats, rules, stored)
        columns = tuple((f.table_oid, f.column) for f in fields if f.table_oid)
        self._row_masks[key] = (columns, tuple(map(origins.get, columns)), row_mask)
        return row_mask

    def _columns_to_mask(
        self, fields: list[codec.Field], masker: Masker
    ) -> tuple[dict[int, MaskRule], frozenset[int]]:
        """Column → the rule that masks it, and which of them are stored table columns as
        they are (whose NULL stays NULL: every other masked column's NULL is masked too,
        RowMask), from what each column is:

        - a stored table column: masked by its name in the result AND by its name in its
          table (through views), so `SELECT phone AS p` cannot walk it past its rule;
        - a table column the catalog could not tell the proxy about: masked by the
          strictest field rule (never passed on a guess);
        - a computed view column: masked by the rule of what its view reads, else whole
          (the derived rule: the detectors cannot read what its expression made of a
          column's text, reverse(note));
        - anything else (an expression, aggregate, function output, set operation):
          masked by the `derived` rule when the statement's lineage reached a protected
          column (only at the positions it names, when it names them for a result of
          this width: MaskRule), else by its result name."""
        strictest = masker.strictest_field_rule()
        masked: dict[int, MaskRule] = {}
        stored: set[int] = set()
        derived = masker.derived
        # the computed columns the derived rule masks: its positions when they are of a
        # result this wide (the policy's outputs, one column each, in order), else all
        positions: frozenset[int] | None = None
        if derived is not None and derived.outputs and derived.outputs == len(fields):
            positions = frozenset(derived.positions)
        for i, f in enumerate(fields):
            names = [f.name]
            rule: MaskRule | None = None
            if f.table_oid:
                origin = self.column_origins.get((f.table_oid, f.column))
                if origin is None:
                    rule = strictest
                elif origin.derived:
                    rule = masker.rule_for_any(origin.derived_from) or (
                        strictest if "*" in origin.derived_from else None
                    )
                    # whatever else: its view's expression may have changed text the
                    # value detectors would have read in the column it was made from
                    rule = rule or masker.derived or VIEW_DERIVED
                else:
                    names.append(origin.name)
                    stored.add(i)
            elif derived is not None and (positions is None or i in positions):
                rule = derived
            if rule is None:
                rule = masker.rule_for_any(names)
            if rule is not None:
                masked[i] = rule
        return masked, frozenset(stored & masked.keys())

    def _mask_call_result(self, head: Expect, message: codec.FunctionCallResponse) -> bytes:
        """A fast-path call's result has no column to name: masked whole when the masker
        masks computed values (a function outside pg_catalog, the enforcer's choice), else
        the detectors read it when it is text (anything else is the function's bytes, which
        no detector can read: the enforcer asks for text where that matters)."""
        masker = head.masker
        assert masker is not None and message.value is not None
        if masker.derived is not None:
            _tally(head)["derived:function_call"] += 1
            whole = masker.mask_field(masker.derived, message.value.decode("utf-8", "replace"))
            return codec.FunctionCallResponse(whole.encode()).encode()
        try:
            text = message.value.decode("utf-8")
        except UnicodeDecodeError:
            return message.raw or message.encode()
        masked, counts = masker.mask_text(text)
        if not counts:
            return message.raw or message.encode()
        for name, n in counts.items():
            _tally(head)[f"detector:{name}"] += n
        return codec.FunctionCallResponse(masked.encode()).encode()

    def _mask_copy(self, head: Expect, data: codec.CopyData) -> bytes:
        masker = head.masker
        assert masker is not None
        text = data.data.decode("utf-8", "replace")
        documents = masked_copy_row(masker, text)
        if documents is not None:
            # a JSON document's keys named like a masked field, as a SELECT masks them
            text, keys = documents
            for name, n in keys.items():
                _tally(head)[count_key(name)] += n
        masked, counts = masker.mask_text(text)
        if "\\t" in text:
            # the text format writes a tab inside a value as \t, which no detector takes
            # for a separator ('card 4111<TAB>1111<TAB>...' a SELECT shows masked): the row
            # is read with each such tab as two spaces too, and sent so when that finds more
            spaced = _COPY_ESCAPE.sub(_spaced_tab, text)
            found, more = masker.mask_text(spaced)
            if sum(more.values()) > sum(counts.values()):
                masked, counts = found, more
        if "\\x" in masked:
            masked = _COPY_BYTEA.sub(lambda run: _masked_bytea_run(masker, run, counts), masked)
        for name, n in counts.items():
            _tally(head)[f"detector:{name}"] += n
        if not counts and documents is None:
            return data.raw or data.encode()
        return codec.CopyData(masked.encode()).encode()


# one escape of COPY's text format: a backslash and the character after it
_COPY_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


# a bytea value as COPY writes it: \\x<hex> in the text format, \x<hex> in CSV (and inside
# an array's text); its bytes are what a detector must read, not their hex
_COPY_BYTEA = re.compile(r"(\\?\\x)((?:[0-9A-Fa-f]{2})+)")


def _masked_bytea_run(masker: Masker, run: re.Match[str], counts: dict[str, int]) -> str:
    """A bytea's hex run with its bytes read as text (values.masked_hex_bytes): as it is
    when no detector finds anything, else the hex of the masked text, the detections added
    to counts."""
    found = masked_hex_bytes(masker, run.group(2))
    if found is None:
        return run.group(0)
    masked, detected = found
    for name, n in detected.items():
        counts[name] = counts.get(name, 0) + n
    return run.group(1) + masked


def _spaced_tab(escape: re.Match[str]) -> str:
    """An escaped tab as two spaces (the same width), any other escape as it is."""
    return "  " if escape.group(1) == "t" else escape.group(0)


def _made(item: Expect, state: int) -> None:
    """The cursors item declares are `state` now (a FAILED one stays so)."""
    for made in item.made:
        if made.state == PENDING:
            made.state = state


def _failed(item: Expect) -> None:
    """What item makes was not made: refused, discarded or never answered."""
    if item.kind in ("Parse", "Bind") and item.owner is not None:
        item.owner.state = FAILED
    for made in item.made:
        made.state = FAILED


def _tally(head: Expect) -> defaultdict[str, int]:
    """The masking counts of head, its own from the first count on (a defaultdict: a
    first count per key costs no Python-level __missing__, as a Counter's does)."""
    if head.masked is _NOTHING_MASKED:
        head.masked = defaultdict(int)
    return head.masked


_FIRST = [0]


def without_frames(chunk: bytes, places: list[int]) -> bytes:
    """chunk (whole frames, as plain_answers read it) without the frames at these places,
    ascending (ResponseTracker.plain_quiet)."""
    if not places:
        return chunk
    parts: list[bytes] = []
    pos = copied = frame = 0
    for place in places:
        while frame < place:
            pos += 1 + int.from_bytes(chunk[pos + 1 : pos + 5], "big")
            frame += 1
        parts.append(chunk[copied:pos])
        pos += 1 + int.from_bytes(chunk[pos + 1 : pos + 5], "big")
        frame += 1
        copied = pos
    parts.append(chunk[copied:])
    return b"".join(parts)
