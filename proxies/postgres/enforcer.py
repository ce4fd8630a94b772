"""Enforcing verdicts on the frontend messages of one Postgres session.

Owns what happens to each client message: simple Query decided as a whole (the PDP
classifies every statement in it; one denied statement denies the message), extended
protocol decided at Parse with Bind/Describe/Execute of a never-allowed statement
refused, the server's discard-until-Sync behaviour after a refusal, COPY and function
calls. Forwarded messages leave an expectation with the ResponseTracker.

A refusal is answered by the server itself: the proxy sends a statement the server
rejects without side effects (POISON_SQL) in place of the refused one and replaces the
server's error with the policy's, so the client's transaction fails exactly as the server
would fail it (status E inside a block; a later COMMIT rolls back) and an extended batch is
discarded until Sync by the server.

Lexing: every session is pinned to client_encoding=UTF8 and standard_conforming_strings=on
(proxies.postgres.startup), and the tracker stops the session when the server reports
another value. The server converts and lexes each message when it reaches it, after the
ones before it ran; so a statement whose text is not plain ASCII without backslashes (the
only texts another encoding or escaping could read differently) waits until everything
before it has been answered, and is refused when it follows an Execute in the same
pipeline (its answers, and any setting it changed, come only at Sync).

What the PDP tells of a command (Ruling.effects) keeps the proxy's knowledge of prepared
statements and portals true: SQL-level PREPARE, DEALLOCATE, DISCARD and CLOSE forget what
they replace, DECLARE makes a cursor a portal the client may Describe and Execute.
An SQL EXECUTE of a statement an SQL PREPARE made returns that PREPARE's query's rows, a
FETCH those of its cursor's DECLARE: a command that is one EXECUTE of it with constant
parameters, or one FETCH, is masked by the PREPARE's or DECLARE's verdict (joined with
its own rules, but for its mask of every computed column), once the server is known to
hold that very statement or cursor under the policy revision the command was decided by;
otherwise every computed column is masked.
What the proxy records at sending is only what the server will hold if it takes it: a
Parse, Bind or DECLARE under a name made before is sent after a Close of that name (so it
cannot fail for the name and leave the earlier one to be run under its verdict), and what
a batch made is trusted in a later batch only once the server is known to have made it
(the tracker marks it made, refused or discarded; a use waits for that answer). A
Describe's answer describes the very statement or portal it was sent for (Expect.owner),
never a later one given its name.

No IO here, and nothing that waits (proxies.postgres.commands): a message is handled by
now() when its verdict is known without waiting (a reused verdict, the messages of an
allowed statement); else its handler from ask() yields what it must wait for — a decision,
the server settling, a COPY source described, a function named — and the runtime sends the
results back in. The bytes for the server go into `to_server` with an expectation left in
the ResponseTracker; replies to the client and records of refusals into `actions`. What the
enforcer reads of its session without waiting (a verdict reused from the cache, whether
the evidence spool has room, the policy revision) it asks through the functions it was
given.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from portcullis.literals import fill
from portcullis.masking import Masker, MaskingError
from portcullis.parameters import MAX_SHOWN_PARAMETER, NULL, parameter_entry
from portcullis.reuse import reuse_key
from portcullis.shape import shaped
from portcullis.verdict import MaskRule, Verdict, VerdictKind
from proxies.postgres import codec, prepared_rewrites
from proxies.postgres.commands import (
    COMPUTED,
    VIEW_COMPUTED,
    Action,
    Decide,
    Record,
    Reply,
    Request,
    ResolveFunction,
    ResolveType,
    Settle,
    SourceColumns,
    Steps,
)
from proxies.postgres.prepared_rewrites import PreparedRewrites
from proxies.postgres.tracker import (
    _NO_FORMATS,
    _NOTHING_MASKED,
    CONFIRMED,
    FAILED,
    PENDING,
    Expect,
    ResponseTracker,
    ResultShape,
    owed,
)
from proxies.runtime.pdp_client import Ruling

# a handler's part that ends with a result (a Ruling) once its requests are answered
_Asking = Generator[Request, Any, Ruling]
# (kind, raw, shape_of, attributes, reuse key) → the verdict if it needs no round trip
# (ProxySession.ruling_now)
KnownRuling = Callable[
    [str, str, Callable[[str], str | None] | None, dict[str, Any] | None, str | None],
    Ruling | None,
]
_SETTLE = Settle()

# the names of statements or portals of a session that has made none: one empty set for
# every session (a set() is 216 bytes; thousands of idle sessions held two each)
_NO_NAMES: set[str] = frozenset()  # type: ignore[assignment]  # never added to

# the policy revision a prepared statement's verdict is marked with once the catalogue facts
# it was decided with are replaced (Enforcer.take_facts): stale, asked again at its Bind
FACTS_CHANGED = "\0catalogue facts changed"

# the attributes _attributes() takes from the start-up facts (user_code.user_code's keys)
_FACT_KEYS = frozenset(
    {
        "shadowed_functions", "view_columns", "relation_sources", "user_operators",
        "user_types", "user_casts", "row_functions", "user_functions", "event_triggers",
        "view_functions", "write_code", "stale_prepared", "pooler_session_code",
    }
)  # fmt: skip
# the fact of what may leave session state on a server connection (user_code.py): sent only
# behind a transaction pooler, where it is judged (rego/portcullis/postgres_pooler.rego)
_POOLER_CODE = "pooler_session_code"

# A statement the server rejects without side effects: sent in place of a denied Parse
# when part of the batch already went upstream, so the server aborts the batch exactly as
# if the denied statement had failed; its error is replaced by the policy's.
POISON_SQL = "portcullis policy refused this statement"

# what the policy sees of how a statement came (input.command.postgres.protocol)
_PROTOCOL = {
    "simple": {"protocol": "simple"},
    "extended": {"protocol": "extended"},
    # a Parse: the statement runs only once bound to values, so an approval it needs is
    # asked for at Bind, with them (the PDP makes no request for this phase)
    "parse": {"protocol": "extended", "phase": "parse"},
}


def shown_parameters(message: codec.Bind) -> list[str | dict[str, Any]]:
    """A Bind's values as the PDP binds an approval to them and an approver reads them:
    text as it is, binary rendered, NULL; a value cut for showing, or one whose rendering
    does not spell it exactly, with its exact size and SHA-256 (portcullis.parameters)."""
    out: list[str | dict[str, Any]] = []
    for i, value in enumerate(message.params):
        formats = message.param_formats
        binary = (formats[i] if len(formats) > 1 else formats[0] if formats else 0) == 1
        if value is None:
            out.append(parameter_entry(None, binary, NULL))
            continue
        start = value[:MAX_SHOWN_PARAMETER]
        shown = _shown_binary(start) if binary else start.decode("utf-8", "replace")
        out.append(parameter_entry(value, binary, shown))
    return out


def _shown_binary(value: bytes) -> str:
    """A binary-format value for a person: printable UTF-8 as text, a 2-, 4- or 8-byte
    value that is not as an integer, anything else as hex. (What is approved is the exact
    value; this is only how it is shown.)"""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and text.isprintable():
        return text
    if len(value) in (2, 4, 8):
        return str(int.from_bytes(value, "big", signed=True))
    return "\\x" + value.hex()


# The text of a query the proxy sends itself to lift (and put back) a reader session's
# read-only default for a write a person approved; answered to nobody.
LIFT_READ_ONLY = "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"
RESTORE_READ_ONLY = "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"


@dataclass(slots=True)
class PreparedStatement:
    """A statement the client prepared (Parse), and what allowed it. `shape`: its rows as
    the server described them, set by the answer to a Describe of this very statement
    (`shaped` once one came): a description answered after the name was parsed again
    describes the statement it replaced, never this one."""

    sql: str
    ruling: Ruling
    shape: ResultShape | None = field(default=None, compare=False, repr=False)
    shaped: bool = field(default=False, compare=False, repr=False)
    # whether the server took its Parse (tracker: PENDING until ParseComplete, FAILED on
    # its error or when it was discarded; CONFIRMED from the start when nothing else can
    # be under its name), and the batch it was sent in (Enforcer.batch)
    state: int = field(default=CONFIRMED, compare=False, repr=False)
    batch: int = field(default=-1, compare=False, repr=False)


@dataclass(slots=True)
class Portal:
    """A portal the client may Describe and Execute: made by Bind of an allowed statement,
    or by an allowed DECLARE (a cursor); `ruling` is what allowed it."""

    statement: str | None  # the statement it was bound from (None for a cursor)
    formats: list[int]
    sql: str
    ruling: Ruling
    described: bool = False  # a Describe of it went upstream since it was made
    # the statement it was bound from, as it was then (None for a cursor)
    source: PreparedStatement | None = field(default=None, compare=False, repr=False)
    # its rows as described for this very portal (PreparedStatement.shape): what masks
    # its Execute's rows, whatever the portal's name was given to since
    shape: ResultShape | None = field(default=None, compare=False, repr=False)
    shaped: bool = field(default=False, compare=False, repr=False)
    # whether the server made it (its Bind's BindComplete; a cursor's DECLARE completed),
    # and the batch it was made in (-1: a cursor a simple Query declared, never trusted
    # before its DECLARE is known to have run)
    state: int = field(default=CONFIRMED, compare=False, repr=False)
    batch: int = field(default=-1, compare=False, repr=False)
    # a cursor: the session's transactions ended when its DECLARE was sent (the tracker's
    # idles); a FETCH is masked by the DECLARE's verdict only before another ends
    transactions: int = field(default=-1, compare=False, repr=False)


def lexed_alike(sql: str) -> bool:
    """Whether every client encoding and string-escaping setting the server has reads sql
    as the same tokens: plain ASCII with no backslash. (All server-side client encodings
    are ASCII supersets; only bytes past ASCII can start a character that takes the next
    byte, and only a backslash escapes.)"""
    return sql.isascii() and "\\" not in sql


def refusal(ruling: Ruling) -> codec.ErrorResponse:
    """The ErrorResponse a client gets for a deny or an approval it cannot wait for."""
    reasons = "; ".join(dict.fromkeys(ruling.verdict.reasons)) or "denied by policy"
    detail = f"decision {ruling.decision_id}" if ruling.decision_id else None
    if ruling.kind is VerdictKind.REQUIRE_APPROVAL:
        approvers = ", ".join(ruling.verdict.approval.approvers) if ruling.verdict.approval else ""
        return codec.error_response(
            f"portcullis: approval required: {reasons}",
            detail=detail,
            hint=f"approvers: {approvers}; no approval request could be made for it",
        )
    if ruling.canceled:
        return codec.error_response(f"portcullis: {reasons}", "57014", detail=detail)
    if ruling.approval_id:
        # a person denied it, or nobody decided in time: the reason says which, not "policy"
        return codec.error_response(f"portcullis: {reasons}", detail=detail)
    if reasons == "denied by policy":
        return codec.error_response("portcullis: denied by policy", detail=detail)
    return codec.error_response(f"portcullis: denied by policy: {reasons}", detail=detail)


def _never_halted(raw: str = "") -> Ruling | None:
    return None


def _not_reused(
    kind: str,
    raw: str,
    shape_of: Callable[[str], str | None] | None,
    attributes: dict[str, Any] | None,
    key: str | None,
) -> Ruling | None:
    """Enforcer.known while the catalogue cannot be read: no verdict is reused."""
    return None


def _no_revision() -> str:
    return ""


# Maskers by rules and hash key, shared by every session of the process (a Masker is
# immutable): a group's sessions mask with one object, not one each
_MASKERS: dict[tuple[tuple[MaskRule, ...], bytes], Masker] = {}

_new = object.__new__  # (a prepared run's Portal, its slots set by bound_run)


class Enforcer:
    def __init__(
        self,
        tracker: ResponseTracker,
        hash_key: bytes,
        known: KnownRuling,
        session_settings: Mapping[str, str] | None = None,
        halted: Callable[[str], Ruling | None] = _never_halted,
        revision: Callable[[], str] = _no_revision,
        to_server: list[bytes] | None = None,
    ) -> None:
        """known: a command's verdict when it needs no PDP round trip (ProxySession.
        ruling_now); halted: a deny for a command the evidence spool has no room for
        (ProxySession.halted); revision: the policy revision the PDP serves now;
        session_settings: what the session was opened with (a read-only default)."""
        self.tracker = tracker
        self.known = known
        self._reuse = known  # known() while the catalogue cannot be read (facts_unknown)
        # the text now() found no reusable verdict for (known() answered None), for the
        # ask() that follows: its steps do not look it up again (_ruling)
        self._missed: str | None = None
        self.halted = halted
        self.revision = revision
        # bytes for the upstream server, in order: the runtime writes them at once
        self.to_server: list[bytes] = [] if to_server is None else to_server
        # everything else the runtime must do, in order (proxies.postgres.commands)
        self.actions: list[Action] = []
        # what _command() made by protocol, for the start-up facts below (None: to be made
        # again: setting any of them drops it)
        self._commands: dict[str, tuple[dict[str, Any], str]] | None = None
        # built-in function names the database also defines elsewhere (read at start-up):
        # the policy must know a call of one may not run the built-in
        self._shadowed: tuple[str, ...] = ()
        # view column names that carry other columns (read at start-up): the policy
        # follows a predicate or expression on `contact` to the `phone` it is
        self._view_columns: dict[str, list[str]] = {}
        # relation → relations whose rows it shows (read at start-up): row filters deny a
        # filtered table's rows read through a view, parent or partition
        self._relation_sources: dict[str, list[str]] = {}
        # operator and type names the database defines outside pg_catalog (read at
        # start-up, user_code.py): a reader's statement may run only pg_catalog's
        self._user_code: dict[str, Any] = {}
        # names of statements prepared before the facts last changed (take_facts)
        self._stale_prepared: tuple[str, ...] = ()
        # "transaction" behind a transaction pooler (connection option upstream_pooler):
        # the policy then refuses changes to settings the upstream role pins
        self._pooler = ""
        self.hash_key = hash_key
        self.statements: dict[str, PreparedStatement] = {}
        # statements an SQL PREPARE made, by name, with the PREPARE's verdict: PENDING
        # until the Query (or Execute) that made it completed without error; replaced or
        # dropped when anything sent after it may replace or drop that name at the server
        self.sql_prepared: dict[str, PreparedStatement] = {}
        self.portals: dict[str, Portal] = {}
        self.discarding = False  # after a refusal in a batch, until Sync
        # a statement that may be COPY FROM STDIN went upstream, and no CopyDone or
        # CopyFail since: a Sync now is one the server ignores if that COPY started
        # (its expectation is a "CopyInSync": ResponseTracker learns from CopyInResponse)
        self.copy_window = False
        self.batch_forwarded = False  # something of the current batch went upstream
        self.batch_executed = False  # an Execute of the current batch went upstream
        self.restore_at_sync = False  # read-only was lifted for this batch's approved write
        # the statement read-only was lifted for: nothing else runs in that batch
        self.lifted_for: PreparedStatement | None = None
        # extended batches ended (each Sync): what a batch made (a statement, a portal) is
        # trusted later in the same batch (the server discards the rest of a batch after
        # an error), and in a later one only once the server is known to have made it
        self.batch = 0
        # every statement and portal name made in the session (Parse, PREPARE, Bind,
        # DECLARE): the server may still hold one by that name, so it is closed first
        # (both made on the first name: until then the one shared empty set, _NO_NAMES)
        self._statement_names: set[str] = _NO_NAMES
        self._portal_names: set[str] = _NO_NAMES
        self.terminated = False
        # reused row-filtered simple Queries run as statements prepared on the server
        self.prepared = PreparedRewrites()
        self._last_masker: tuple[tuple[MaskRule, ...], Masker] | None = None
        # the expectations bound_run made last for a run with a Describe (Bind, DescribeP,
        # Execute, Sync), owed again by the next such run once the tracker's plain lane
        # answered them whole (ResponseTracker.answered)
        self._run: tuple[Expect, ...] | None = None
        # the expectation simple_query made last, owed again alike (a simple Query's)
        self._owed_query: Expect | None = None
        settings = session_settings or {}
        self.read_only = settings.get("default_transaction_read_only", "") == "on"

    # -- the start-up facts every statement's input carries: each replaced, never changed
    # in place (setting one drops what _command() made of them) ---------------------------

    @property
    def shadowed(self) -> tuple[str, ...]:
        return self._shadowed

    @shadowed.setter
    def shadowed(self, value: tuple[str, ...]) -> None:
        self._shadowed, self._commands = value, None

    @property
    def view_columns(self) -> dict[str, list[str]]:
        return self._view_columns

    @view_columns.setter
    def view_columns(self, value: dict[str, list[str]]) -> None:
        self._view_columns, self._commands = value, None

    @property
    def relation_sources(self) -> dict[str, list[str]]:
        return self._relation_sources

    @relation_sources.setter
    def relation_sources(self, value: dict[str, list[str]]) -> None:
        self._relation_sources, self._commands = value, None

    @property
    def user_code(self) -> dict[str, Any]:
        return self._user_code

    @user_code.setter
    def user_code(self, value: dict[str, Any]) -> None:
        self._user_code, self._commands = value, None

    def _statement_named(self, name: str) -> None:
        """A statement of this name may exist at the server from now on."""
        names = self._statement_names
        if names is _NO_NAMES:
            names = self._statement_names = set()
        names.add(name)

    def _portal_named(self, name: str) -> None:
        """A portal or cursor of this name may exist at the server from now on."""
        names = self._portal_names
        if names is _NO_NAMES:
            names = self._portal_names = set()
        names.add(name)

    def take_facts(
        self,
        shadowed: tuple[str, ...],
        view_columns: dict[str, list[str]],
        relation_sources: dict[str, list[str]],
        user_code: dict[str, Any],
    ) -> None:
        """Newer start-up facts (code the database gained while the session is open,
        proxies.postgres.catalog_watch): every statement is judged with them from now on,
        a prepared statement allowed with the old ones asked again at its next Bind."""
        self.shadowed, self.view_columns = shadowed, view_columns
        self.relation_sources, self.user_code = relation_sources, user_code
        # an SQL EXECUTE of one made before runs its body as the server plans it now
        # (a view it reads may run code since): the policy refuses it by name
        self._stale_prepared = tuple(sorted(n for n in self._statement_names if n))
        self.sql_prepared.clear()
        for statement in self.statements.values():
            statement.ruling = replace(statement.ruling, policy_revision=FACTS_CHANGED)

    def facts_unknown(self) -> None:
        """The catalogue cannot be read now (its watch lost its connection, or the server
        refuses it): the facts the session has may be old, so no verdict is reused and
        every prepared statement is asked again; the driver denies what it decides until
        facts_known()."""
        if self.known is not _not_reused:
            self._reuse, self.known = self.known, _not_reused
            for statement in self.statements.values():
                statement.ruling = replace(statement.ruling, policy_revision=FACTS_CHANGED)

    def facts_known(self) -> None:
        """The catalogue was read again: verdicts are reused again."""
        if self.known is _not_reused:
            self.known = self._reuse

    @property
    def unsure(self) -> bool:
        """Whether the catalogue could not be read when last asked (facts_unknown)."""
        return self.known is _not_reused

    def with_facts(self, kind: str, attributes: dict[str, Any]) -> dict[str, Any]:
        """A Decide's attributes made before take_facts, with the facts taken since in
        place of those they were made with (a function call carries only shadowed names)."""
        renewed = {k: v for k, v in attributes.items() if k not in _FACT_KEYS}
        if self.shadowed:
            renewed["shadowed_functions"] = list(self.shadowed)
        if self.pooler and _POOLER_CODE in self.user_code:
            renewed[_POOLER_CODE] = self.user_code[_POOLER_CODE]
        if kind == "postgres.function_call":
            return renewed
        if self.view_columns:
            renewed["view_columns"] = self.view_columns
        if self.relation_sources:
            renewed["relation_sources"] = self.relation_sources
        renewed.update(self._code_sent)
        if self._stale_prepared:
            renewed["stale_prepared"] = list(self._stale_prepared)
        return renewed

    @property
    def _code_sent(self) -> dict[str, Any]:
        """The start-up facts of user_code.py the policy is sent with each statement:
        pooler_session_code only behind a pooler."""
        code = self._user_code
        if self._pooler or _POOLER_CODE not in code:
            return code
        return {k: v for k, v in code.items() if k != _POOLER_CODE}

    @property
    def pooler(self) -> str:
        return self._pooler

    @pooler.setter
    def pooler(self, value: str) -> None:
        self._pooler, self._commands = value, None

    # -- helpers -------------------------------------------------------------------------

    def masker(self, ruling: Ruling) -> Masker | None:
        if ruling.kind is not VerdictKind.MASK:
            return None
        rules = ruling.verdict.mask
        last = self._last_masker
        if last is not None and last[0] is rules:
            return last[1]  # a reused verdict: the same rules, no tuple of them hashed again
        key = (rules, self.hash_key)
        found = _MASKERS.get(key)
        if found is None:
            if len(_MASKERS) >= 256:
                _MASKERS.clear()
            found = _MASKERS[key] = Masker(rules, self.hash_key)
        self._last_masker = (rules, found)
        return found

    def _whole(self, masker: Masker) -> Masker:
        """The masker with every computed value masked whole (a derived rule), as the
        policy's lineage rules mask a computed output that reaches columns (a derived
        rule naming positions masks only those: joined with _WHOLE it masks all)."""
        if masker.derived is not None and not masker.derived.outputs:
            return masker
        key = ((*masker.rules, _WHOLE), self.hash_key)
        found = _MASKERS.get(key)
        if found is None:
            if len(_MASKERS) >= 256:
                _MASKERS.clear()
            found = _MASKERS[key] = Masker(key[0], self.hash_key)
        return found

    def _attributes(
        self, protocol: str, parameters: list[str | dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """input.command.postgres beside the statements: how the text came, the values it
        was bound to (only where an approval binds to them), and the built-in names this
        database shadows, the operators and types it defines outside pg_catalog and the
        view columns that carry other columns (only when there are any)."""
        if (
            not self.shadowed
            and not self.view_columns
            and not self.relation_sources
            and not self.user_code
            and not self._stale_prepared
            and not self.pooler
            and parameters is None
        ):
            return _PROTOCOL[protocol]
        attributes: dict[str, Any] = dict(_PROTOCOL[protocol])
        if self.shadowed:
            attributes["shadowed_functions"] = list(self.shadowed)
        if self.view_columns:
            attributes["view_columns"] = self.view_columns
        if self.relation_sources:
            attributes["relation_sources"] = self.relation_sources
        attributes.update(self._code_sent)  # user_operators, user_types: only when any
        if self._stale_prepared:
            attributes["stale_prepared"] = list(self._stale_prepared)
        if self.pooler:
            attributes["pooler"] = self.pooler
        if parameters is not None:
            attributes["parameters"] = parameters
        return attributes

    def _command(self, protocol: str) -> tuple[dict[str, Any], str]:
        """_attributes(protocol) and its reuse key, made once per session and protocol:
        a database with views or partitions gives every statement its view columns and
        relation sources, and building and keying them cost more than the rest of a
        reused statement (tens of microseconds for a few dozen views)."""
        made = self._commands
        if made is None:
            made = self._commands = {}
        known = made.get(protocol)
        if known is None:
            attributes = self._attributes(protocol)
            known = made[protocol] = (attributes, reuse_key("postgres.query", attributes))
        return known

    def _decide(
        self, sql: str, protocol: str, parameters: list[str | dict[str, Any]] | None = None
    ) -> _Asking:
        """Ask for a statement's verdict; a person may have to approve it (waited for).
        A row-filtered verdict the Decide found reused for the statement's shape is
        refilled with its literals; when they cannot be put back (the lookup before the
        Decide said so too), the PDP decides this very text: never the shape's rewrite
        as another statement filled it."""
        attributes = self._attributes(protocol, parameters)
        ruling = yield Decide("postgres.query", sql, attributes, shaped, True)
        if ruling.rewritten and ruling.cached:
            refilled = self._refilled(ruling, sql, protocol)
            if refilled is None:
                ruling = yield Decide("postgres.query", sql, attributes, None, True)
            else:
                ruling = refilled
        return self._vetted(ruling)

    def _known(self, sql: str, protocol: str) -> Ruling | None:
        """The statement's verdict when no PDP round trip is needed (reused), else None."""
        attributes, key = self._command(protocol)
        ruling = self.known("postgres.query", sql, shaped, attributes, key)
        if ruling is None:
            return None
        return self._reused(ruling, sql, protocol)

    def _reused(self, ruling: Ruling, sql: str, protocol: str) -> Ruling | None:
        """What _known() makes of the verdict known() gave (refilled, vetted)."""
        if ruling.rewritten and ruling.cached:
            refilled = self._refilled(ruling, sql, protocol)  # row filters: its own literals
            if refilled is None:
                return None
            ruling = refilled
        if ruling.kind is not VerdictKind.MASK and not self.tracker.broken:
            return ruling  # what _vetted() answers for it, without the call
        return self._vetted(ruling)

    def _vetted(self, ruling: Ruling) -> Ruling:
        """A verdict the proxy cannot carry out becomes a deny: mask rules it cannot use,
        anything at all once the server reported that a pinned setting moved."""
        if self.tracker.broken:
            return _denied(ruling, self.tracker.broken)
        if ruling.kind is not VerdictKind.MASK:
            return ruling
        try:
            self.masker(ruling)
        except MaskingError as exc:
            return _denied(ruling, f"policy mask rules unusable ({exc}) — denied")
        return ruling

    @staticmethod
    def _copies_masked(ruling: Ruling) -> bool:
        """COPY ... TO STDOUT under column masks: its rows carry no column names, so its
        source must be described before it may run; in the binary format, under any mask."""
        return (
            ruling.kind is VerdictKind.MASK
            and "copy_out" in ruling.effects
            and ("copy_binary" in ruling.effects or any(r.field for r in ruling.verdict.mask))
        )

    def _copy_checked(self, ruling: Ruling) -> _Asking:
        """A COPY out under column masks runs only when none of the columns it sends is
        one the masks name (the value detectors still read every row); else a deny naming
        them. Its source is described first; what cannot be described is denied. Under
        any mask, a COPY in the binary format is denied."""
        if "copy_binary" in ruling.effects:
            # a binary value (an int8, a numeric) is no text a detector can read, and a
            # masked one would change the length its field declares
            return _denied(
                ruling, "COPY in the binary format cannot be masked; use the text or CSV format"
            )
        masker = self.masker(ruling)
        assert masker is not None
        sources = [e.partition(":")[2] for e in ruling.effects if e.startswith("copy_source:")]
        if not sources:
            return _denied(ruling, "COPY output could not be described, so it cannot be masked")
        for source in sources:
            names = yield SourceColumns(source)
            if names is None:
                return _denied(ruling, "COPY output could not be described, so it cannot be masked")
            if COMPUTED in names and (masker.derived is not None or VIEW_COMPUTED in names):
                # a SELECT's computed column is masked whole by the derived rule (its lineage
                # reached a sensitive column, or a table's); a COPY row cannot be
                return _denied(
                    ruling,
                    "COPY output would carry computed columns the masks cover whole "
                    "(derived from sensitive or table columns), and COPY rows cannot be "
                    "masked by column; SELECT them (masked) instead",
                )
            masked = sorted({names[i] for i in masker.columns_to_mask(names)})
            if masked:
                return _denied(
                    ruling,
                    f"COPY output would carry the masked column(s) {', '.join(masked)}, and "
                    "COPY rows cannot be masked by column; SELECT them (masked) instead",
                )
        return ruling

    def notice(self, text: str) -> None:
        """A NoticeResponse, in order with everything else the client is owed."""
        notice = codec.notice_response(text).encode()
        now = self.tracker.synthetic(lambda status: notice)
        if now:
            self.actions.append(Reply(now))

    def _record(self, command: str, ruling: Ruling, protocol: str) -> None:
        """A refused command, for the session recording."""
        self.actions.append(Record(command, ruling, protocol))

    def _copy_open(self) -> bool:
        """Whether a COPY FROM STDIN may still run: not once everything sent is answered
        (a running COPY's statement is owed until it ends), which closes the window."""
        if self.tracker.idle:
            self.copy_window = False
        return self.copy_window

    def _send(self, message: codec.Message, expect: Expect) -> None:
        if expect.kind in _MAY_COPY_IN and _may_copy_in(expect.command):
            self.copy_window = True
        self.tracker.expect(expect)
        self.to_server.append(message.raw or message.encode())

    def _send_quietly(self, sql: str) -> None:
        """A simple Query of the proxy's own, answered to nobody."""
        self._send(codec.Query(sql), Expect("Query", swallow=True))

    def _refuse_query(self, error: codec.ErrorResponse) -> None:
        """Refuse a simple Query (or a function call) the way the server fails one: the
        server gets a statement it rejects, and the client gets the policy's error in place
        of the server's, then ReadyForQuery with the status the server reports."""
        self._send(codec.Query(POISON_SQL), Expect("Query", replace_error=error, silent=True))

    def _refuse_in_batch(self, error: codec.ErrorResponse) -> None:
        """Refuse an extended-protocol message the way the server fails one: it discards
        the rest of the batch until Sync, and a transaction block is left failed."""
        self.discarding = True
        self.statements.pop("", None)  # the poison replaces the unnamed statement
        poison = codec.Parse("", POISON_SQL, [])
        self.batch_forwarded = True
        self._send(poison, Expect("Parse", replace_error=error, silent=True))

    def _lexing_unsafe(self, sql: str) -> str:
        """Why sql cannot be sent now ("" when it can): a text another encoding would read
        differently may not follow an Execute in the same pipeline."""
        if self.batch_executed and not lexed_alike(sql):
            return (
                "portcullis: a statement with non-ASCII characters or backslashes cannot "
                "follow an Execute before Sync (the server would read it under settings the "
                "proxy has not seen yet); send Sync first"
            )
        return ""

    def _must_settle(self, sql: str) -> bool:
        """Whether sql must wait until the server has answered everything before it."""
        return not self.tracker.idle and not self.batch_executed and not lexed_alike(sql)

    def _apply(
        self,
        effects: tuple[str, ...],
        ruling: Ruling,
        sql: str,
        made: list[Any] | None = None,
        batch: int = -1,
    ) -> None:
        """What a command does to prepared statements and portals (Ruling.effects); the
        cursors and SQL-prepared statements it makes go to `made` (confirmed once the
        command ran, Expect.made), as made in `batch`."""
        tracker = self.tracker
        for effect in effects:
            kind, _, name = effect.partition(":")
            if kind == "prepared":
                if name == "*":
                    self.statements.clear()
                    self.sql_prepared.clear()
                    tracker.statement_shapes.clear()
                    self.prepared.forget_all()
                else:
                    self.statements.pop(name, None)
                    self.sql_prepared.pop(name, None)
                    tracker.statement_shapes.pop(name, None)
                    self._statement_named(name)  # PREPAREd at the server, maybe
            elif kind == "prepare" and made is not None:
                # (a Parse's PREPARE makes it only at Execute: until then prepared: above
                # dropped what the name had)
                statement = PreparedStatement(sql, ruling, state=PENDING, batch=batch)
                self.sql_prepared[name] = statement
                made.append(statement)
            elif kind == "close":
                if name == "*":
                    self.portals.clear()
                    tracker.portal_shapes.clear()
                else:
                    self.portals.pop(name, None)
                    tracker.portal_shapes.pop(name, None)
            elif kind == "cursor" and name:
                cursor = self.portals[name] = Portal(
                    None, [], sql, ruling, state=PENDING, batch=batch,
                    transactions=tracker.idles,
                )  # fmt: skip
                if made is not None:
                    # made at the server as it runs: trusted unless an earlier cursor or
                    # portal of its name may still be there (a DECLARE of it could fail)
                    if name not in self._portal_names:
                        cursor.state = CONFIRMED
                    self._portal_named(name)
                    made.append(cursor)
                tracker.portal_shapes.pop(name, None)

    def _as_made(self, ruling: Ruling) -> Ruling:
        """The verdict the rows of an SQL EXECUTE or FETCH are masked by (effect
        execute:NAME, fetch:NAME), without that effect: its own rules but its mask of every
        computed column (the policy cannot see the rows' query in its text), joined with
        those of the PREPARE that made the statement or the DECLARE that made the cursor,
        when the server is known to hold that very one (_maker) under the policy revision
        of this verdict. Else its own rules."""
        effect = next(e for e in ruling.effects if e.startswith(_RUNS_MADE))
        kind, _, name = effect.partition(":")
        effects = tuple(e for e in ruling.effects if e is not effect)
        made = self._maker(kind, name)
        if (
            made is None
            or self.pooler
            or made.ruling.policy_revision != ruling.policy_revision
            or self._stale(made)
        ):
            return replace(ruling, effects=effects)
        own = tuple(rule for rule in ruling.verdict.mask if not rule.derived)
        rules = tuple(dict.fromkeys((*own, *made.ruling.verdict.mask)))
        return replace(ruling, effects=effects, verdict=replace(ruling.verdict, mask=rules))

    def _maker(self, kind: str, name: str) -> PreparedStatement | Portal | None:
        """What made the statement an EXECUTE runs (an SQL PREPARE whose making was
        answered without error, nothing sent since that may replace or drop it), or the
        cursor a FETCH reads (a DECLARE's, made, in the transaction still open: a cursor
        WITH HOLD, or one its transaction's end dropped, may since be another's by its
        name); None when neither is known."""
        if kind == "execute":
            statement = self.sql_prepared.get(name)
            return statement if statement is not None and statement.state == CONFIRMED else None
        cursor = self.portals.get(name)
        if (
            cursor is None
            or cursor.statement is not None  # (a Bind's portal: its slots may be bound_run's)
            or cursor.state != CONFIRMED
            or cursor.transactions != self.tracker.idles
        ):
            return None
        return cursor

    def _lifts_read_only(self, ruling: Ruling, asked: bool = False) -> bool:
        """Whether this approved write (or, `asked`, one that may be approved at Bind)
        needs the session's read-only default lifted, and can have it: only between
        transactions, with nothing else in flight."""
        return (
            self.read_only
            and (asked or (bool(ruling.approval_id) and ruling.verdict.allowed))
            and self.tracker.status == "I"
            and self.tracker.idle
            and not self.batch_forwarded
        )

    def _lift_read_only(self) -> None:
        self.tracker.lifted = True
        self._send_quietly(LIFT_READ_ONLY)

    def _awaits_lift(self, ruling: Ruling) -> bool:
        """Whether this approved write needs the read-only default lifted and would have
        it but for answers still owed from before its batch (the previous statement's, or
        the proxy's own putting read-only back after the previous approved write): it must
        wait for the server first, else it goes without the lift and fails there."""
        return (
            self.read_only
            and bool(ruling.approval_id)
            and ruling.verdict.allowed
            and not self.restore_at_sync
            and not self.batch_forwarded
            and not self.tracker.idle
        )

    # -- messages ------------------------------------------------------------------------
    # Each message is handled by now() when nothing needs waiting for (a reused verdict,
    # the messages of an allowed statement): plain calls, no generator, so a proxy's hot
    # path runs straight through. Otherwise ask() gives the steps that finish it.

    def now(self, message: codec.Message) -> bool:
        """Handle a message if nothing must be waited for; False: finish it with ask()."""
        handler = _NOW.get(type(message))
        if handler is None:
            raise codec.ProtocolViolation(f"unexpected {type(message).__name__} from client")
        return handler(self, message)

    def ask(self, message: codec.Message) -> Steps:
        """The steps that finish a message now() turned down: each request yielded is
        answered by send() with its result (proxies.postgres.commands); when they end,
        the message is handled."""
        return _ASKING[type(message)](self, message)

    def _ruling_now(self, sql: str, protocol: str) -> Ruling | None:
        """A statement's verdict when it can be enforced without waiting: nothing before it
        to settle, a reused verdict, no COPY source to describe; else None."""
        if self.tracker.queue and self._must_settle(sql):  # (nothing owed: nothing to settle)
            return None
        attributes, key = self._command(protocol)  # _known(), spelt out: a miss is noted
        found = self.known("postgres.query", sql, shaped, attributes, key)
        if found is None:
            self._missed = sql
            return None
        ruling = self._reused(found, sql, protocol)
        if ruling is None or (ruling.kind is VerdictKind.MASK and self._copies_masked(ruling)):
            return None
        return ruling

    def _ruling(self, sql: str, protocol: str) -> _Asking:
        """A statement's verdict after whatever it must wait for (_ruling_now's None).
        When now() just found no reusable verdict for it and nothing was waited for, the
        session is not asked again before the Decide: only the session's decide() stores
        a verdict in its cache, and the Decide's own lookup (the driver's, or decide()'s)
        checks again whether the session is open and its recording has room."""
        missed = self._missed is sql
        self._missed = None
        if self._must_settle(sql):
            yield _SETTLE
            missed = False
        ruling = None if missed else self._known(sql, protocol)
        if ruling is None:
            ruling = yield from self._decide(sql, protocol)
        if self._copies_masked(ruling):
            ruling = yield from self._copy_checked(ruling)
        return ruling

    def _query_now(self, message: codec.Query) -> bool:
        ruling = self._ruling_now(message.sql, "simple")
        if ruling is None or self._awaits_lift(ruling):
            return False
        self._query(message, ruling)
        return True

    def simple_query(self, message: codec.Query) -> bool:
        """now(message) for a simple Query (the lone Query of a client's chunk), with the
        least Python where its verdict stands: nothing of an extended batch pending, the
        server's settings as pinned, a reused verdict that allows it as it is (no mask, no
        effects, no row filter, no budget, no approval, no read-only default to lift). Then
        its one expectation is queued and its frame goes upstream as the client sent it,
        as _query() does; any other verdict is carried out by _query(), any other state
        handled by now(). Same answer as now(): False, the PDP must be asked (ask())."""
        tracker = self.tracker
        sql = message.sql
        if (
            self.batch_forwarded
            or self.batch_executed
            or self.discarding
            or self.restore_at_sync
            or tracker.broken
            or (tracker.queue and not lexed_alike(sql))
            or (self.copy_window and self._copy_open())
            or _may_copy_in(sql)
        ):
            return self._query_now(message)
        made = self._commands
        command = made.get("simple") if made is not None else None
        if command is None:
            command = self._command("simple")
        ruling = self.known("postgres.query", sql, shaped, command[0], command[1])
        if ruling is None:
            self._missed = sql  # (ask() does not look it up again)
            return False
        if (
            ruling.kind is not VerdictKind.ALLOW
            or ruling.effects
            or ruling.rewritten
            or ruling.rewrite is not None
            or ruling.egress_left is not None
            or (self.read_only and ruling.approval_id)
        ):  # the rest of _query_now's way with this verdict
            found = self._reused(ruling, sql, "simple")
            if (
                found is None
                or (found.kind is VerdictKind.MASK and self._copies_masked(found))
                or self._awaits_lift(found)
            ):
                return False
            self._query(message, found)
            return True
        # the verdict stands: what _query() does for it (recorded when it completes)
        query = self._owed_query
        if query is not None and tracker.answered is query and not tracker.queue:
            # the last Query this lane owed, off the queue and answered whole by the
            # tracker's plain lane, owed again (nothing else holds it): each slot set as
            # owed() sets it below. That lane changed only its parts; answers before its
            # own may have described rows to it (formats)
            tracker.answered = None
            query.decision_id = ruling.decision_id
            query.command = sql
            query.ruling = ruling
            query.parts = 0
            query.formats = _NO_FORMATS
        else:
            query = self._owed_query = owed(
                "Query", None, ruling.decision_id, None, None, sql, ruling, "simple"
            )
        tracker.expect_plain((query,), False)  # (nothing special, nothing masked)
        self.to_server.append(message.raw or message.encode())
        return True

    def _query_asking(self, message: codec.Query) -> Steps:
        ruling = yield from self._ruling(message.sql, "simple")
        if self._awaits_lift(ruling):
            yield _SETTLE
        self._query(message, ruling)

    def _query(self, message: codec.Query, ruling: Ruling) -> None:
        if self.restore_at_sync:
            self._refuse_query(codec.error_response(LIFTED))
            return
        unsafe = self.batch_executed and self._lexing_unsafe(message.sql)
        if unsafe:
            self._refuse_query(codec.error_response(unsafe))
            return
        if ruling.effects and _names_reserved(ruling.effects):
            ruling = _denied(ruling, RESERVED)
        if not ruling.verdict.allowed:
            self._record(message.sql, ruling, "simple")
            self._refuse_query(refusal(ruling))
            return
        made: list[Portal | PreparedStatement] = []
        if ruling.effects:
            self._apply(ruling.effects, ruling, message.sql, made)
            for cursor in made:
                if type(cursor) is Portal and cursor.state == PENDING:
                    self._close_first(cursor, ruling.effects)
            if ruling.kind is VerdictKind.MASK and _runs_made(ruling):
                ruling = self._as_made(ruling)
        lift = self.read_only and self._lifts_read_only(ruling)
        if lift:
            self._lift_read_only()
        # an allowed command is recorded when it completes, with its result
        expect = Expect(
            "Query",
            self.masker(ruling) if ruling.kind is VerdictKind.MASK else None,
            ruling.decision_id,
            command=message.sql,
            ruling=ruling,
            protocol="simple",
            made=tuple(made),
        )
        if ruling.bound is not None:  # row filters: the rewrite prepared, bound
            self._run_prepared(message.sql, ruling, expect)
        elif ruling.rewritten:  # row filters: the filtered text goes in its place
            self.copy_window = self.copy_window or _may_copy_in(ruling.rewritten)
            self.tracker.expect(expect)
            self.to_server.append(codec.Query.frame(ruling.rewritten))
        else:
            self._send(message, expect)
        if lift:
            self._send_quietly(RESTORE_READ_ONLY)

    def _parse_now(self, message: codec.Parse) -> bool:
        if self.discarding:
            return True
        if message.param_types and _made_types(message.param_types):
            return False  # its parameter types are judged as casts (_parse_asking)
        ruling = self._ruling_now(message.sql, "parse")
        if ruling is None:
            return False
        self._parse(message, ruling)
        return True

    def _parse_asking(self, message: codec.Parse) -> Steps:
        ruling = yield from self._ruling(message.sql, "parse")
        made = _made_types(message.param_types)
        if made and (ruling.verdict.allowed or ruling.kind is VerdictKind.REQUIRE_APPROVAL):
            ruling = yield from self._typed(made, ruling)
        self._parse(message, ruling)

    def _typed(self, made: list[int], ruling: Ruling) -> _Asking:
        """The statement's ruling once the types its Parse declares for parameters are
        judged. A parameter's value is read by its type's input function (a domain's
        CHECK expressions too), named nowhere in the text: each type made after initdb
        is decided as the cast `SELECT CAST(NULL AS schema.type)` that would run the
        same code, so the policy's rules on casts (readers cast only to pg_catalog's
        types) hold for it; one that cannot be named, or is refused, refuses the Parse."""
        for oid in made:
            if self.discarding or self.terminated:
                return ruling
            name = yield ResolveType(oid)
            if name is None:
                return _denied(ruling, f"parameter type OID {oid} could not be named: {TYPED}")
            cast = yield from self._decide(f"SELECT CAST(NULL AS {name})", "parse")
            if not cast.verdict.allowed:
                reasons = "; ".join(cast.verdict.reasons) or "denied"
                return _denied(ruling, f"parameter type {name}: {reasons}")
        return ruling

    def _parse(self, message: codec.Parse, ruling: Ruling) -> None:
        unsafe = (
            (self.restore_at_sync and LIFTED)
            or self._lexing_unsafe(message.sql)
            or (message.name and (self._pooled_name() or self._reserved_name(message.name)))
        )
        if unsafe:
            self.statements.pop(message.name, None)
            self._refuse_in_batch(codec.error_response(unsafe))
            return
        if ruling.effects and _names_reserved(ruling.effects):
            ruling = _denied(ruling, RESERVED)
        awaits_approval = ruling.kind is VerdictKind.REQUIRE_APPROVAL
        if not ruling.verdict.allowed and not awaits_approval:
            self._record(message.sql, ruling, "extended")
            self.statements.pop(message.name, None)
            self._refuse_in_batch(refusal(ruling))
            return
        if ruling.effects:
            self._apply(ruling.effects, ruling, message.sql)  # a cursor: made only at Execute
        if awaits_approval and self._lifts_read_only(ruling, asked=True):
            # a write that may be approved at Bind: a reader's read-only default is lifted
            # before its batch starts and put back at its Sync (a refusal runs nothing)
            self._lift_read_only()
            self.restore_at_sync = True
        statement = PreparedStatement(message.sql, ruling, state=PENDING, batch=self.batch)
        if self.restore_at_sync:
            self.lifted_for = statement
        name = message.name
        if name not in self._statement_names:
            statement.state = CONFIRMED  # nothing was under its name: nothing to mistake
            self._statement_named(name)
        else:
            # the server may still hold an earlier statement by this name (a Close of it
            # discarded, a PREPARE, a Parse the proxy refused after it): closed first, so
            # the Parse cannot fail for the name and leave that one to be bound. Sent first
            # in its batch, nothing before it can have it discarded either.
            if not self.batch_forwarded:
                statement.state = CONFIRMED
            if name:  # (an unnamed statement is replaced by any Parse)
                self._send(codec.Close("S", name), Expect("Close", swallow=True))
        self.statements[message.name] = statement
        self.sql_prepared.pop(message.name, None)  # (an SQL EXECUTE may run it too)
        self.tracker.statement_shapes.pop(message.name, None)
        self.batch_forwarded = True
        if ruling.rewritten:  # row filters: the same parameters, the filtered text
            message = codec.Parse(message.name, ruling.rewritten, message.param_types)
        self._send(message, Expect("Parse", statement=message.name, owner=statement))

    def _pooled_name(self) -> str:
        """Why a named statement cannot be prepared ("" when it can): behind a transaction
        pooler its Bind may reach another server connection, where the name may be
        another session's statement."""
        if not self.pooler:
            return ""
        return (
            "portcullis: named prepared statements cannot pass a transaction pooler (a "
            "later Bind may run on another server connection); use unnamed statements "
            "(asyncpg: statement_cache_size=0; psycopg: prepare_threshold=None)"
        )

    @staticmethod
    def _reserved_name(name: str) -> str:
        """Why a client may not name a statement so ("" when it may): the proxy's own
        prepared rewrites are named so (proxies.postgres.prepared_rewrites)."""
        if not prepared_rewrites.reserved(name):
            return ""
        return (
            f"portcullis: statement names starting with {prepared_rewrites.PREFIX} are the "
            "proxy's own"
        )

    def _refilled(self, ruling: Ruling, sql: str, protocol: str) -> Ruling | None:
        """A reused row-filtered verdict with this statement's text rewritten: its shape's
        rewrite filled with its literals, or (a simple Query whose literals are all small
        integers, outside a client's extended batch) bound to them as the parameters of
        the rewrite prepared on the server; None (ask the PDP) when neither can be done.
        A verdict without a shape's rewrite was reused for this very text (the PDP made
        its cache key exact), so its rewritten text is this text's."""
        rewrite = ruling.rewrite
        if rewrite is None:
            return ruling
        if (
            protocol == "simple"
            and not self._pooler
            and not self.batch_forwarded
            and not self.discarding
        ):
            if self.tracker.unprepared:
                self.prepared.forget(self.tracker.unprepared)
                self.tracker.unprepared.clear()
            values = self.prepared.values(rewrite, sql)
            if values is not None:
                return ruling.with_bound(values)
        text = fill(rewrite, sql)
        return None if text is None else ruling.with_rewritten(text)

    def _run_prepared(self, sql: str, ruling: Ruling, expect: Expect) -> None:
        """A simple Query run as its rewrite prepared (once per session) and bound to its
        literals, into the unnamed portal: [Parse,] Bind, Describe, Execute, Sync. The
        server answers [ParseComplete,] BindComplete, then what the Query would have
        given: the description, the rows and the completion, or the error, then
        ReadyForQuery; so one Query expectation follows it, whose ParseComplete and
        BindComplete are the proxy's (Expect.quiet)."""
        rewrite, values = ruling.rewrite, ruling.bound
        assert rewrite is not None and values is not None
        expect.statement, frames = self.prepared.frames(rewrite.text, values)
        expect.quiet = True
        self.copy_window = self.copy_window or _may_copy_in(rewrite.text)
        self.tracker.expect(expect)
        # the server's unnamed portal is this statement's now
        if "" in self.portals:
            del self.portals[""]
        self.tracker.portal_shapes.pop("", None)
        self.to_server.append(frames)

    def _stale(self, statement: PreparedStatement | Portal) -> bool:
        """The policy changed since this statement was allowed, whether its verdict was
        decided for it or reused from the cache: its next Bind asks again."""
        revision = self.revision()
        decided = statement.ruling.policy_revision
        return decided == FACTS_CHANGED or (bool(revision) and decided != revision)

    def _bind_now(self, message: codec.Bind) -> bool:
        if self.discarding:
            return True
        statement = self.statements.get(message.statement)
        if self.restore_at_sync and statement is not self.lifted_for:
            self._refuse_in_batch(codec.error_response(LIFTED))
            return True
        if statement is not None and (
            not self._trusted(statement)
            or self._stale(statement)
            or statement.ruling.kind is VerdictKind.REQUIRE_APPROVAL
        ):
            return False
        self._bind(message, statement)
        return True

    def _close_first(self, cursor: Portal, effects: tuple[str, ...]) -> None:
        """A simple Query declares a cursor under a name an earlier cursor or portal had:
        that one is closed first (unless the Query closes it itself), so the DECLARE
        cannot fail for the name and leave the earlier one under it. Either way nothing
        else than this cursor can then be there under its name."""
        name = next((n for n, p in self.portals.items() if p is cursor), None)
        if name is None:
            return  # (declared twice by one Query: left PENDING, never trusted)
        if f"close:{name}" not in effects and "close:*" not in effects:
            self._send(codec.Close("P", name), Expect("Close", swallow=True))
        cursor.state = CONFIRMED

    def _trusted(self, made: PreparedStatement | Portal) -> bool:
        """Whether the server holds this statement or portal under its name: it is known
        to have made it, or it was sent earlier in this very batch (were it refused, the
        server would discard the rest of the batch). A Parse or Bind the server refused
        or discarded (a name it held already, an error before it) leaves it holding what
        it held, which another verdict allowed."""
        return made.state == CONFIRMED or (made.state == PENDING and made.batch == self.batch)

    def _unmade(self, what: str) -> None:
        self._refuse_in_batch(
            codec.error_response(
                f"portcullis: {what} was not made at the server as the policy allowed it "
                "(its Parse, Bind or DECLARE was refused or discarded there); close it and "
                "make it again"
            )
        )

    def _settled(self, made: PreparedStatement | Portal) -> Generator[Request, Any, bool]:
        """Whether it may be used once the server has answered what made it (waited for
        when that answer is still owed)."""
        if made.state == PENDING and not self._trusted(made):
            yield _SETTLE
            if made.state == PENDING and self.tracker.idle:
                return False  # answered without ever being made (a Parse's cursor)
        return made.state != FAILED

    def _bind_asking(self, message: codec.Bind) -> Steps:
        """Bind of a statement allowed under an earlier policy (ask again first), or of one
        that needs approval: asked for now, for these values (an approval binds to them),
        and waited for; what is approved is this portal, never the statement."""
        statement = self.statements[message.statement]
        if self.restore_at_sync and statement is not self.lifted_for:
            self._refuse_in_batch(codec.error_response(LIFTED))
            return
        if not self._trusted(statement) and not (yield from self._settled(statement)):
            self._unmade(f"prepared statement {message.statement!r}")
            return
        if not (self._stale(statement) or statement.ruling.kind is VerdictKind.REQUIRE_APPROVAL):
            self._bind(message, statement)  # (it only waited for the server)
            return
        if statement.ruling.kind is VerdictKind.REQUIRE_APPROVAL:
            ruling = yield from self._decide(statement.sql, "extended", shown_parameters(message))
            if ruling.rewritten != statement.ruling.rewritten:
                ruling = _denied(ruling, REFILTERED)
            if not ruling.verdict.allowed:
                self._record(statement.sql, ruling, "extended")
                self._refuse_in_batch(refusal(ruling))
                return
            if self._awaits_lift(ruling):
                yield _SETTLE  # what is owed from before its batch answered first
            if not self.restore_at_sync and self._lifts_read_only(ruling):
                self._lift_read_only()  # a Bind that starts its batch: lifted from here
                self.restore_at_sync = True
                self.lifted_for = statement
            self._bind(message, PreparedStatement(statement.sql, ruling))
            return
        ruling = yield from self._decide(statement.sql, "parse")
        if ruling.rewritten != statement.ruling.rewritten:
            ruling = _denied(ruling, REFILTERED)
        if not ruling.verdict.allowed and ruling.kind is not VerdictKind.REQUIRE_APPROVAL:
            del self.statements[message.statement]
            self._record(statement.sql, ruling, "extended")
            self._refuse_in_batch(refusal(ruling))  # the policy's own reasons
            return
        statement.ruling = ruling
        if ruling.kind is VerdictKind.REQUIRE_APPROVAL:
            yield from self._bind_asking(message)
            return
        self._bind(message, statement)

    def _bind(self, message: codec.Bind, statement: PreparedStatement | None) -> None:
        if statement is None:
            self._never_allowed(f"prepared statement {message.statement!r}")
            return
        portal = Portal(
            message.statement,
            list(message.result_formats),
            statement.sql,
            statement.ruling,
            source=statement,
            state=PENDING,
            batch=self.batch,
        )
        name = message.portal
        if not name or name not in self._portal_names:
            # nothing was under its name (an unnamed portal ends with its transaction,
            # which an error before it in its batch leaves aborted)
            portal.state = CONFIRMED
            self._portal_named(name)
        else:
            # a cursor of this name may be held at the server: closed first (see _parse)
            if not self.batch_forwarded:
                portal.state = CONFIRMED
            self._send(codec.Close("P", name), Expect("Close", swallow=True))
        self.portals[message.portal] = portal
        self.tracker.portal_shapes.pop(message.portal, None)
        self.batch_forwarded = True
        self._send(message, Expect("Bind", owner=self.portals[message.portal]))

    def _never_allowed(self, what: str) -> None:
        self._refuse_in_batch(
            codec.error_response(f"portcullis: {what} was not allowed by policy in this session")
        )

    def _describe(self, message: codec.Describe) -> bool:
        if self.discarding:
            return True
        if message.kind == "S" and message.name not in self.statements:
            self._never_allowed(f"prepared statement {message.name!r}")
            return True
        if message.kind == "P" and message.name not in self.portals:
            self._never_allowed(f"portal {message.name!r}")
            return True
        self.batch_forwarded = True
        owner: PreparedStatement | Portal
        if message.kind == "P":
            owner = self.portals[message.name]
            owner.described = True
            kind = "DescribeP"
        else:
            owner, kind = self.statements[message.name], "DescribeS"
        self._send(message, Expect(kind, statement=message.name, owner=owner))
        return True

    def _execute_asking(self, message: codec.Execute) -> Steps:
        """Execute of a portal made in an earlier batch whose making is not yet answered:
        once it is, run as now() runs it, or refused if the server did not make it."""
        portal = self.portals[message.portal]
        if not (yield from self._settled(portal)):
            self._unmade(f"portal {message.portal!r}")
            return
        self._execute(message, True)

    def _execute(self, message: codec.Execute, settled: bool = False) -> bool:
        if self.discarding:
            return True
        portal = self.portals.get(message.portal)
        if portal is None:
            self._never_allowed(f"portal {message.portal!r}")
            return True
        if not settled and not self._trusted(portal):
            if portal.state == PENDING:
                return False  # wait for the server's answer to what made it
            self._unmade(f"portal {message.portal!r}")
            return True
        ruling = portal.ruling
        # checked at each Execute, a reused portal's too: the spool must have room for
        # what this run records before it may run
        halt = self.halted(portal.sql)
        if halt is not None:
            self._refuse_in_batch(refusal(halt))
            return True
        if self.tracker.broken:
            self._refuse_in_batch(refusal(_denied(ruling, self.tracker.broken)))
            return True
        made: list[Portal | PreparedStatement] = []
        if ruling.effects:
            self._apply(ruling.effects, ruling, portal.sql, made, self.batch)
            if ruling.kind is VerdictKind.MASK and _runs_made(ruling):
                # an SQL EXECUTE or FETCH runs what the server holds at this first Execute:
                # the portal keeps the rules chosen now for the rest of its rows
                ruling = portal.ruling = self._as_made(ruling)
        masker = self.masker(ruling) if ruling.kind is VerdictKind.MASK else None
        if masker is not None and not portal.described and not portal.shaped:
            # masking needs the portal's own columns: its statement's, when the server
            # has described that very statement (not one its name was given to before
            # or after) and the catalog has told what each of its table columns is (Bind
            # gives the formats); else the portal is described first, for the proxy only,
            # and its tables learnt (unless the client's own Describe of it is already on
            # its way)
            tracker, source = self.tracker, portal.source
            if source is not None and source.shaped and tracker.knows(source.shape):
                portal.shape, portal.shaped = source.shape, True
                tracker.portal_shapes[message.portal] = source.shape
            else:
                portal.described = True
                self._send(
                    codec.Describe("P", message.portal),
                    Expect("DescribeP", statement=message.portal, swallow=True, owner=portal),
                )
        self.batch_forwarded = True
        self.batch_executed = True
        executed = _executed(portal, message.portal, masker)
        executed.made = tuple(made)
        self._send(message, executed)
        return True

    def bound_run(self, messages: list[codec.Message], chunk: bytes) -> bool:
        """A prepared statement's run in one chunk: Bind, a Describe of its portal or none,
        an Execute of it, Sync (libpq's PQexecPrepared, pgbench -M prepared), `chunk`
        being exactly their frames (FrontendParser.bound_run). When the statement's
        verdict stands (allowed, or masked with the client's own Describe of the portal
        in the run, so the proxy describes nothing itself; no effects; the policy it was
        decided under; the server's settings as pinned), nothing is being discarded and
        nothing waits for Sync: handled as now() handles each message, in one call, the
        chunk going upstream as the client sent it. False, having done nothing, for
        anything else: now() then takes each message."""
        describe: codec.Message | None = None
        if len(messages) == 4:
            bind, describe, execute, sync = messages
        elif len(messages) == 3:
            bind, execute, sync = messages
        else:
            return False
        if (
            type(bind) is not codec.Bind
            or type(execute) is not codec.Execute
            or type(sync) is not codec.Sync
            or self.discarding
            or self.restore_at_sync
            or self.tracker.broken
            or (self.copy_window and self._copy_open())
        ):
            return False
        name = bind.portal
        if execute.portal != name or (name and name in self._portal_names):
            return False
        described = describe is not None
        if describe is not None and (
            type(describe) is not codec.Describe or describe.kind != "P" or describe.name != name
        ):
            return False
        statement = self.statements.get(bind.statement)
        # _trusted(statement) and not _stale(statement), spelt out: asked for every run
        if statement is None or not (
            statement.state == CONFIRMED
            or (statement.state == PENDING and statement.batch == self.batch)
        ):
            return False
        ruling = statement.ruling
        kind = ruling.kind
        if (
            not (kind is VerdictKind.ALLOW or (kind is VerdictKind.MASK and described))
            or ruling.effects
            or _may_copy_in(statement.sql)
        ):
            return False
        revision = self.revision()
        if ruling.policy_revision == FACTS_CHANGED or (
            revision and ruling.policy_revision != revision
        ):
            return False
        # the spool must have room for what this run records (asked once, as _execute asks)
        halt = self.halted(statement.sql)
        if halt is not None:  # the Execute refused, as now() refuses it
            self._bind(bind, statement)
            if describe is not None:
                self._describe(describe)
            self._refuse_in_batch(refusal(halt))
            self._sync(sync)
            return True
        masker = None if kind is VerdictKind.ALLOW else self.masker(ruling)
        sql = statement.sql
        formats = list(bind.result_formats)
        # Portal(bind.statement, formats, sql, ruling, described, statement, state=CONFIRMED,
        # batch=self.batch), its slots set here (no type.__call__, no frame for __init__;
        # every slot, its default too); CONFIRMED: unnamed, or a name never made before
        portal: Portal = _new(Portal)
        portal.statement = bind.statement
        portal.formats = formats
        portal.sql = sql
        portal.ruling = ruling
        portal.described = described
        portal.source = statement
        portal.shape = None
        portal.shaped = False
        portal.state = CONFIRMED
        portal.batch = self.batch
        portal.transactions = -1
        names = self._portal_names  # _portal_named(name), spelt out
        if names is _NO_NAMES:
            names = self._portal_names = set()
        names.add(name)
        self.portals[name] = portal
        tracker = self.tracker
        tracker.portal_shapes.pop(name, None)
        run = self._run
        if described and run is not None and tracker.answered is run[3] and not tracker.queue:
            # the last run's four expectations, off the queue and answered whole by the
            # tracker's plain lane, owed again (nothing else holds them): each slot set as
            # owed() sets it below. That lane changed only the Execute's parts; the Bind,
            # owed first, may have been counted into by answers before its BindComplete
            tracker.answered = None
            bound, describing, executed, _ = run
            bound.owner = portal
            bound.rows = bound.parts = 0
            bound.masked = _NOTHING_MASKED
            bound.shape = bound.row_mask = None
            bound.formats = _NO_FORMATS
            describing.statement = name
            describing.owner = portal
            executed.masker = masker
            executed.decision_id = ruling.decision_id
            executed.statement = bind.statement
            executed.portal = name
            executed.command = sql
            executed.ruling = ruling
            executed.owner = portal
            executed.formats = formats
            executed.parts = 0
        else:
            # what _executed(portal, name, masker) makes
            executed = owed("Execute", masker, ruling.decision_id, bind.statement, name, sql,
                            ruling, "extended", portal, formats)  # fmt: skip
            if described:
                run = self._run = (
                    owed("Bind", owner=portal),
                    owed("DescribeP", statement=name, owner=portal),
                    executed,
                    owed("Sync"),
                )
            else:
                run = (owed("Bind", owner=portal), executed, owed("Sync"))
        tracker.expect_plain(run, masker is not None)
        self.to_server.append(chunk)
        # as after Sync (nothing was discarded: discarding stays False)
        self.batch_forwarded = self.batch_executed = False
        self.batch += 1
        return True

    def _close(self, message: codec.Close) -> bool:
        if self.discarding:
            return True
        if message.kind == "S" and message.name and prepared_rewrites.reserved(message.name):
            self._refuse_in_batch(codec.error_response(self._reserved_name(message.name)))
            return True
        if message.kind == "S":
            self.statements.pop(message.name, None)
            self.sql_prepared.pop(message.name, None)
            self.tracker.statement_shapes.pop(message.name, None)
        else:
            self.portals.pop(message.name, None)
            self.tracker.portal_shapes.pop(message.name, None)
        self.batch_forwarded = True
        self._send(message, Expect("Close"))
        return True

    def _sync(self, message: codec.Sync) -> bool:
        self.batch += 1
        self.batch_forwarded = False
        self.batch_executed = False
        self.discarding = False
        in_copy = self.copy_window and self._copy_open()
        self._send(message, Expect("CopyInSync" if in_copy else "Sync"))
        if self.restore_at_sync:
            self.restore_at_sync = False
            self.lifted_for = None
            self._send_quietly(RESTORE_READ_ONLY)
        return True

    def _flush(self, message: codec.Flush) -> bool:
        if not self.discarding:
            self.to_server.append(message.raw or message.encode())
        return True

    def _copy(self, message: codec.Message) -> bool:
        # CopyData/CopyDone/CopyFail belong to a COPY FROM STDIN that was already allowed
        if type(message) is not codec.CopyData:
            self.copy_window = False  # the server reads what follows after the COPY
        self.to_server.append(message.raw or message.encode())
        return True

    def _terminate(self, message: codec.Terminate) -> bool:
        self.terminated = True
        self.to_server.append(message.raw or message.encode())
        return True

    def _function_call_asking(self, message: codec.FunctionCall) -> Steps:
        """A fast-path call names its function by OID: decide on the function's name."""
        name = _made_in_pg_catalog(message.oid, (yield ResolveFunction(message.oid)))
        raw = f"<function call {name or f'oid {message.oid}'}>"
        if self.tracker.broken:
            ruling = Ruling(Verdict.deny(self.tracker.broken))
        elif name is None:
            ruling = Ruling(
                Verdict.deny(
                    f"function OID {message.oid} could not be named, so it cannot be decided"
                )
            )
        else:
            attributes: dict[str, Any] = {"function": name, "protocol": "function_call"}
            if self.shadowed:
                attributes["shadowed_functions"] = list(self.shadowed)
            if self.pooler:
                attributes["pooler"] = self.pooler
                if _POOLER_CODE in self.user_code:
                    attributes[_POOLER_CODE] = self.user_code[_POOLER_CODE]
            ruling = yield Decide("postgres.function_call", raw, attributes)
        masker = self.masker(ruling)
        if ruling.verdict.allowed and masker is not None and not _built_in(message.oid, name):
            # A function the database defines may return what it reads from any table, and
            # a fast-path call carries no statement whose lineage could say which: under
            # masks its result is masked whole, as `SELECT public.f(...)` is (in SQL,
            # lineage reads such a call as computed from every table). A binary result
            # is the type's own bytes, which no mask can stand in for: refused.
            if message.result_format != 0:
                ruling = _denied(ruling, FAST_PATH_BINARY)
            else:
                masker = self._whole(masker)
        if ruling.verdict.allowed and self.restore_at_sync:
            ruling = _denied(ruling, LIFTED.removeprefix("portcullis: "))
        if not ruling.verdict.allowed:
            self._record(raw, ruling, "function_call")
            self._refuse_query(refusal(ruling))
            return
        self._send(
            message,
            Expect(
                "Call",
                masker,
                command=raw,
                ruling=ruling,
                decision_id=ruling.decision_id,
                protocol="function_call",
            ),
        )


# A prepared statement runs the text sent at Parse: when a later decision filters it
# otherwise (the policy or its row filter changed), it must be prepared again.
REFILTERED = "the statement's row filter changed since it was prepared; prepare it again"


# A client's PREPARE or DEALLOCATE of a name the proxy's prepared rewrites use
RESERVED = (
    f"statement names starting with {prepared_rewrites.PREFIX} are the proxy's own; "
    "choose another name"
)


# A statement other than the write awaiting approval, in the batch read-only was lifted for
LIFTED = (
    "portcullis: the session's read-only default is lifted in this batch for a write "
    "awaiting approval; nothing else runs in it: send other statements after its Sync"
)

# What a fast-path call of a function outside pg_catalog returns under masks (_whole)
FAST_PATH_BINARY = (
    "a fast-path call of a function defined outside pg_catalog returns what it may read from "
    "any table, masked whole under your masks: a binary result cannot be masked; ask for its "
    "text or call the function in SQL"
)
# The first OID the server gives an object made after initdb (FirstNormalObjectId)
FIRST_NORMAL_OID = 16384
TYPED = "declare the parameter untyped (0) and cast it in the statement, where it is judged"


# COPY FROM STDIN spells the keyword STDIN as it is (a keyword is never quoted or escaped):
# a text without these letters, any case, starts no COPY from the client
_MAY_COPY_IN = ("Query", "Execute")
_STDIN = re.compile("stdin", re.IGNORECASE)


def _may_copy_in(sql: str) -> bool:
    return _STDIN.search(sql) is not None


def _made_types(param_types: list[int]) -> list[int]:
    """The parameter types a Parse declares that were made after initdb, once each."""
    return list(dict.fromkeys(t for t in param_types if t >= FIRST_NORMAL_OID))


_WHOLE = MaskRule(derived=True, strategy="redact")


def _made_in_pg_catalog(oid: int, name: str | None) -> str | None:
    """A function's name as the PDP is to judge a fast-path call of it: one a superuser made
    in pg_catalog after initdb (`pg_catalog.lower(int)` running set_config of every password)
    is named `pg_catalog."lower (created after initdb)"`, which no list of built-ins holds,
    as the proxy names such a function in a view (user_code.py); a call in SQL is judged by
    the session's user_functions, which a FunctionCall's input does not carry."""
    if name is None or oid < FIRST_NORMAL_OID or not name.startswith("pg_catalog."):
        return name
    function = name.removeprefix("pg_catalog.")
    if function.startswith('"') and function.endswith('"'):
        function = function[1:-1].replace('""', '"')
    marked = f"{function} (created after initdb)".replace('"', '""')
    return f'pg_catalog."{marked}"'


def _built_in(oid: int, name: str | None) -> bool:
    """Whether the function is one of pg_catalog's own (made by initdb): its result then
    derives from its arguments alone, which a fast-path call gives as values."""
    return oid < FIRST_NORMAL_OID and bool(name) and str(name).startswith("pg_catalog.")


# the effects of a command whose rows another command's query makes (_as_made)
_RUNS_MADE = ("execute:", "fetch:")


def _runs_made(ruling: Ruling) -> bool:
    """Whether the command is one SQL EXECUTE of a prepared statement or FETCH from a
    cursor (execute:NAME, fetch:NAME)."""
    return any(e.startswith(_RUNS_MADE) for e in ruling.effects)


def _names_reserved(effects: tuple[str, ...]) -> bool:
    return any(e.startswith("prepared:") and prepared_rewrites.reserved(e[9:]) for e in effects)


def _denied(ruling: Ruling, reason: str) -> Ruling:
    """A deny in place of ruling, naming the same decision."""
    return Ruling(Verdict.deny(reason), ruling.decision_id, ruling.policy_revision)


def _executed(portal: Portal, name: str, masker: Masker | None) -> Expect:
    """What an Execute of the portal `name` leaves owed: its rows, its completion, the
    command and verdict it is recorded with."""
    ruling = portal.ruling
    return Expect(
        "Execute",
        masker,
        ruling.decision_id,
        formats=portal.formats,
        statement=portal.statement,
        portal=name,
        command=portal.sql,
        ruling=ruling,
        protocol="extended",
        owner=portal,
    )


def _never_now(enforcer: Enforcer, message: codec.Message) -> bool:
    return False  # always asks the PDP


# what each client message does without waiting (False: it must ask the PDP) ...
_NOW: dict[type, Callable[[Enforcer, Any], bool]] = {
    codec.Query: Enforcer._query_now,
    codec.Parse: Enforcer._parse_now,
    codec.Bind: Enforcer._bind_now,
    codec.Describe: Enforcer._describe,
    codec.Execute: Enforcer._execute,
    codec.Close: Enforcer._close,
    codec.Sync: Enforcer._sync,
    codec.Flush: Enforcer._flush,
    codec.CopyData: Enforcer._copy,
    codec.CopyDone: Enforcer._copy,
    codec.CopyFail: Enforcer._copy,
    codec.FunctionCall: _never_now,
    codec.Terminate: Enforcer._terminate,
}
# ... and what it does after asking
_ASKING: dict[type, Callable[[Enforcer, Any], Steps]] = {
    codec.Query: Enforcer._query_asking,
    codec.Parse: Enforcer._parse_asking,
    codec.Bind: Enforcer._bind_asking,
    codec.Execute: Enforcer._execute_asking,
    codec.FunctionCall: Enforcer._function_call_asking,
}
