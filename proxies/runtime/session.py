"""The session lifecycle every proxy shares, written once.

Owns: token → `OpenSession` → credentials from the provider → per command `Decide` (or
the decision cache) → recording → on close `CloseSession` and release of the credential.
A protocol proxy supplies only its wire format: how to read a command, how to say
"denied", how to mask a response. `ProxyRuntime` is what one listening proxy holds for
all its sessions (PDP client, credential provider, the sessions it must drain).

Evidence before work: a session opens only when the proxy's spool can promise room for its
close, and a statement runs only when it can promise room for the session's undelivered
events and the statement's own (SessionRecorder.admit); otherwise the session is refused,
or the statement denied, with a reason the client reads.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from portcullis.config import Config, ConnectionSettings, VaultSettings
from portcullis.events import TRUNCATED_PREFIX, longer_than
from portcullis.logs import session_context
from portcullis.reuse import ReuseTable, reuse_key
from portcullis.v1 import pdp_pb2
from portcullis.verdict import Verdict, VerdictKind
from proxies.runtime.credentials import (
    CredentialLease,
    CredentialProvider,
    CredentialUnavailable,
    choose_ref,
    provider_for,
)
from proxies.runtime.deadlines import Deadlines
from proxies.runtime.drain import Drain
from proxies.runtime.listener import in_session
from proxies.runtime.metrics import ProxyMetrics
from proxies.runtime.pdp_auth import client_auth
from proxies.runtime.pdp_client import (
    PDPClient,
    ReuseTally,
    Ruling,
    SessionGrant,
    SessionRefused,
    close_request,
    withdrawn_ruling,
)
from proxies.runtime.recorder import RecordingTick, SessionRecorder
from proxies.runtime.spool import (
    DEFAULT_MAX_BYTES,
    DEFAULT_SPOOL_DIR,
    UNREACHABLE,
    Entry,
    Spool,
    SpoolFull,
)

if TYPE_CHECKING:
    from proxies.runtime.process import ProcessRuntime

# each verdict kind's name in metrics and records (VerdictKind.wire, looked up per statement)
_WIRE = {kind: kind.wire for kind in VerdictKind}

log = logging.getLogger("portcullis.session")

DEFAULT_PDP_TIMEOUT = 2.0  # seconds a proxy waits for the PDP (option pdp_timeout_seconds)
MAX_STATEMENT_BYTES = 1024 * 1024  # a longer command is denied and recorded cut (option)
CLOSE_ROOM = 2048  # spool bytes promised at open to a session's close (a line of counters)
NO_ROOM = (
    "evidence spool full: the PDP cannot take this session's events now and the proxy "
    "has no room left to keep them — denied until the PDP has taken them"
)


@dataclass
class ProxyRuntime:
    """What one listening proxy (one connection) holds for all its sessions. Made by the
    launcher over the process's ProcessRuntime (its PDP client and recording tick shared
    with the process's other proxies), or standalone (`process` None: a client of its own,
    for a proxy built alone, as tests do)."""

    connection: ConnectionSettings
    pdp: PDPClient
    provider: CredentialProvider
    cache_enabled: bool = True
    recording_enabled: bool = True
    approval_timeout: float = 120.0
    sessions: set[ProxySession] = field(default_factory=set)
    recording_tick: RecordingTick | None = field(default=None, repr=False)
    # undelivered evidence waits here (None: a session whose events the PDP cannot take halts)
    spool: Spool | None = field(default=None, repr=False)
    max_statement_bytes: int = MAX_STATEMENT_BYTES
    # the PDP's clock-skew leeway on token times (identity.leeway_seconds): a session ends
    # that long after its token's expiry, when the PDP stops honouring the token
    token_leeway: float = 2.0
    # how long a Decide of this connection waits (option pdp_timeout_seconds)
    decide_timeout: float = DEFAULT_PDP_TIMEOUT
    process: ProcessRuntime | None = field(default=None, repr=False)
    # what operators see (proxies.runtime.metrics, .health) and how it drains (.drain)
    metrics: ProxyMetrics = field(default=None, repr=False)  # type: ignore[assignment]
    drain: Drain = field(default_factory=Drain, repr=False)
    # when its sessions' grants and tokens end, on one timer (proxies.runtime.deadlines)
    deadlines: Deadlines = field(default_factory=Deadlines, repr=False)
    serving: bool = False  # its health server is up, so its listener is (the launcher's order)

    def __post_init__(self) -> None:
        if self.recording_tick is None:
            self.recording_tick = RecordingTick(self.pdp)
        if self.metrics is None:
            c = self.connection
            self.metrics = ProxyMetrics(c.name, c.type, c.worker)
        self.metrics.watch_pdp(lambda: self.pdp.answered and self.pdp.reachable)

    def not_ready(self) -> str:
        """Why this proxy should get no new clients now ("": it may)."""
        if self.drain.started:
            return "draining: the proxy is shutting down"
        if not self.serving:
            return "not listening yet"
        if not self.pdp.answered:
            return "the policy decision point has not answered yet"
        if not self.pdp.reachable:
            return "the policy decision point is unreachable: every command would be denied"
        return ""

    @classmethod
    def build(
        cls,
        connection: ConnectionSettings,
        pdp_address: str,
        vault: VaultSettings | None = None,
        approval_timeout: float = 120.0,
        config: Config | None = None,
        process: ProcessRuntime | None = None,
        token_leeway: float = 2.0,
    ) -> ProxyRuntime:
        """config: where the proxy's credential or certificate for the PDP comes from
        (proxies.pdp); without it the PDP will refuse every session call. process: the
        process's shared PDP client and recording tick (None: its own)."""
        options = connection.options
        decide_timeout = float(options.get("pdp_timeout_seconds", DEFAULT_PDP_TIMEOUT))
        if process is not None:
            pdp, tick = process.pdp, process.recording_tick
        else:
            auth = client_auth(config, pdp_address) if config is not None else {}
            pdp, tick = PDPClient(pdp_address, timeout=decide_timeout, **auth), None
        return cls(
            connection=connection,
            pdp=pdp,
            recording_tick=tick,
            decide_timeout=decide_timeout,
            process=process,
            provider=provider_for(connection, vault),
            cache_enabled=bool(options.get("decision_cache", True)),
            # `recording: false` exists to measure what recording costs; never in production
            recording_enabled=bool(options.get("recording", True)),
            spool=Spool(
                Path(options.get("spool_dir", DEFAULT_SPOOL_DIR)),
                connection.name,
                int(options.get("spool_max_bytes", DEFAULT_MAX_BYTES)),
            ),
            max_statement_bytes=int(options.get("max_statement_bytes", MAX_STATEMENT_BYTES)),
            approval_timeout=approval_timeout,
            token_leeway=token_leeway,
        )

    @classmethod
    def standalone(
        cls, connection: ConnectionSettings, config: Config, pdp_address: str
    ) -> ProxyRuntime:
        """The runtime of a proxy built alone, not by the launcher: a PDP client of its own."""
        return cls.build(
            connection,
            pdp_address,
            vault=config.vault,
            approval_timeout=config.approvals.timeout_seconds,
            config=config,
            token_leeway=config.identity.leeway_seconds,
        )

    async def start(self) -> None:
        if self.spool is not None:
            self.spool.open()
            self.spool.on_refused = self._spool_refused
            self.spool.start(self._deliver)
        if self.process is not None:
            await self.process.start()
            self.process.attach(self)
            return
        self.pdp.on_late = self.late
        await self.pdp.start()
        self.pdp.on_change(self.policy_changed)

    def _session(self, session_id: str) -> ProxySession | None:
        return next((s for s in self.sessions if s.id == session_id), None)

    def late(self, session_id: str, ruling: Ruling) -> None:
        """A decision that came after its deadline, for a session of this proxy's (or not)."""
        session = self._session(session_id)
        if session is not None and session.recorder is not None:
            session.recorder.unenforced(ruling)

    def _spool_refused(self, session_id: str, why: str) -> None:
        session = self._session(session_id)
        if session is not None and session.recorder is not None:
            session.recorder.refused = session.recorder.unavailable = True
            log.error("session %s halted: %s", session_id, why)

    async def _deliver(self, entry: Entry) -> str:
        """One spooled entry to the PDP, as it would have gone: under its session's key
        while this process holds it, else under the entry's seal (a dead process's)."""
        sid = entry.session_id
        if entry.close is not None:
            reason, abnormal, summary, reused = spooled_close(entry.close)
            return await self.pdp.close_session(
                sid, reason, abnormal, summary, reused, sealed=entry.seal
            )
        return await self.pdp.deliver(sid, entry.events_request(), sealed=entry.seal)

    def policy_changed(self) -> None:
        for session in self.sessions:
            session.cache.clear()

    async def stop(self) -> None:
        """Close every open session (revoking its credential), then the PDP client."""
        await asyncio.gather(
            *(s.close("proxy_shutdown") for s in list(self.sessions)), return_exceptions=True
        )
        self.deadlines.stop()
        if self.recording_tick is not None and self.process is None:
            await self.recording_tick.close()
        if self.spool is not None:
            await self.spool.stop()
            await self.spool.deliver_some(self._deliver)  # what is left waits on disk
            self.spool.close()
        await self.provider.close()
        if self.process is not None:
            self.process.detach(self)  # the process closes the shared client last
        else:
            await self.pdp.close()

    async def drain_sessions(
        self, tasks: Collection[asyncio.Task[None]], grace: float, name: str
    ) -> None:
        """The drain (proxies.runtime.drain) of this connection's client tasks: /readyz
        says not ready from here on."""
        self.metrics.draining()
        await self.drain.run(tasks, grace, name)

    def wire_connection(self) -> pdp_pb2.Connection:
        c = self.connection
        return pdp_pb2.Connection(name=c.name, type=c.type, zone=c.zone, labels=c.labels)


LeaseWatch = tuple["asyncio.Future[None]", Callable[["asyncio.Future[None]"], None]]


class ProxySession:
    def __init__(self, runtime: ProxyRuntime, client_addr: str, client: str) -> None:
        self.runtime = runtime
        self.client_addr = client_addr
        self.client = client
        self.grant: SessionGrant | None = None
        self.lease: CredentialLease | None = None
        self.recorder: SessionRecorder | None = None
        # its own decision cache, of one scope: no per-scope index (portcullis.reuse)
        self.cache: ReuseTable[Ruling] = ReuseTable(scoped=False)
        self._counters: Counter[str] = Counter()
        # the two counts every statement moves (commands, cache_hits), as plain ints: a
        # Counter's item is no plain dict's, and `+= 1` on it costs several times as much.
        # Added into the counters whenever they are read (the counters property)
        self._commands = 0
        self._cache_hits = 0
        # egress budgets: rows and bytes the client took since the last decision (reported
        # with the next), and what that decision left (None: no budget)
        self.egress_rows = 0
        self.egress_bytes = 0
        self.egress_left: tuple[int, int] | None = None
        # the PDP's last answer did not allow: the next command is asked (decide())
        self.ask_next = False
        # the runaway-loop breaker: verdicts the session may still answer from its cache
        # before it asks (None: no bound, nothing counted), and the tallies of the
        # verdicts it reused since its last Decide (reported with the next)
        self.reuses_left: int | None = None
        self._reused: list[ReuseTally] = []
        self._closed = False
        self._close_room = 0  # spool bytes promised to this session's close
        # a command waiting for a person's approval, and whether its client cancelled it
        self._approval_wait: asyncio.Future[Any] | None = None
        self._wait_canceled = False
        # the last reuse key built: (attributes, a copy of them, kind, key)
        self._last_key: tuple[dict[str, Any], dict[str, Any], str, str] | None = None
        # its end at its grant's or token's expiry, in runtime.deadlines (end_at_expiry)
        self._expiry: int | None = None
        # the callback end_at_expiry put on its lease's `lost` (stop_expiry takes it off)
        self._lease_watch: LeaseWatch | None = None

    @property
    def id(self) -> str:
        return self.grant.session_id if self.grant else ""

    @property
    def counters(self) -> Counter[str]:
        """The session's counts (its close record's summary): commands, cache_hits,
        decisions, denied, ... — the hot two added in first."""
        counters = self._counters
        if self._commands:
            counters["commands"] += self._commands
            self._commands = 0
        if self._cache_hits:
            counters["cache_hits"] += self._cache_hits
            self._cache_hits = 0
        return counters

    async def open(
        self,
        token: str,
        attributes: dict[str, Any] | None = None,
        tell: Callable[[str], None] | None = None,
    ) -> SessionGrant:
        """Verify the client at the PDP and obtain the upstream credential.

        Raises SessionRefused (reason safe for the client) when either fails.
        """
        runtime = self.runtime
        if runtime.spool is not None and runtime.recording_enabled:
            # its close must always find a place, so it is promised one first
            if not runtime.spool.reserve(CLOSE_ROOM):
                raise SessionRefused(
                    "the proxy's evidence spool is full (the PDP has not taken what it "
                    "holds): no new session until it has"
                )
            self._close_room = CLOSE_ROOM
        try:
            grant = await self._open(token, attributes, tell)
        except BaseException as exc:
            self._give_back_close_room()
            if isinstance(exc, SessionRefused):
                runtime.metrics.session_refused()
                log.info(
                    "session refused: %s",
                    exc.reason,
                    extra={"decision_id": exc.decision_id, "connection": runtime.connection.name},
                )
            raise
        in_session()  # its connection is past start-up: no longer held to the listener's cap
        runtime.metrics.session_opened()
        session_context(grant.session_id, runtime.connection.name)
        log.info(
            "session opened for %s",
            grant.subject,
            extra={
                "session_id": grant.session_id,
                "decision_id": grant.ruling.decision_id,
                "connection": runtime.connection.name,
                "subject": grant.subject,
            },
        )
        return grant

    async def _open(
        self,
        token: str,
        attributes: dict[str, Any] | None,
        tell: Callable[[str], None] | None,
    ) -> SessionGrant:
        runtime = self.runtime
        try:
            grant = await runtime.pdp.open_session(
                token, runtime.wire_connection(), self.client_addr, self.client, attributes
            )
        except SessionRefused as refused:
            if not refused.approval_id or tell is None:
                raise
            # just-in-time access: a person may grant this session; wait, then ask again
            tell(
                f"portcullis: access to {runtime.connection.name} needs approval "
                f"({refused.reason}); waiting for request {refused.approval_id} — an "
                f"approver runs: portcullis approvals approve {refused.approval_id} "
                "--reason '...'"
            )
            approval = await runtime.pdp.await_approval(
                "", refused.approval_id, runtime.approval_timeout
            )
            if approval is None or approval.state != "approved":
                state = approval.state if approval is not None else "unavailable"
                raise SessionRefused(
                    f"access request {refused.approval_id} {state}",
                    refused.decision_id,
                    refused.approval_id,
                ) from None
            grant = await runtime.pdp.open_session(
                token, runtime.wire_connection(), self.client_addr, self.client, attributes
            )
        self.grant = grant
        try:
            ref = choose_ref(runtime.connection, grant.credential_ref)
            self.lease = await runtime.provider.acquire(ref, grant.session_id)
        except CredentialUnavailable as exc:
            sid, reason = grant.session_id, "credential_unavailable"
            if await runtime.pdp.close_session(sid, reason, True) == UNREACHABLE:
                runtime.pdp.close_when_answered(sid, reason)
            self.grant, self._closed = None, True  # closed at the PDP: close() has nothing to do
            runtime.metrics.upstream_error("credential_unavailable")
            raise SessionRefused(f"no upstream credential: {exc}") from None
        except BaseException:
            # cancelled (or failed) with the session open at the PDP and nothing of it used:
            # closed there as soon as it answers
            runtime.pdp.close_when_answered(grant.session_id, "open_failed")
            self.grant, self._closed = None, True
            raise
        runtime.metrics.lease_acquired(self._provider)
        self.recorder = SessionRecorder(
            runtime.pdp,
            grant.session_id,
            enabled=runtime.recording_enabled,
            tick=runtime.recording_tick,
            spool=runtime.spool,
        )
        self.recorder.start()
        runtime.sessions.add(self)
        return grant

    def grant_expiry(self, tell: Callable[[str], None]) -> asyncio.Future[str] | None:
        """The end of what the session was granted: a future that, at the earlier of a
        just-in-time grant's end and the client token's expiry, has the protocol tell its
        client why (`tell(text)`) and end the session, and resolves to the close reason
        ("grant_expired" or "token_expired"); None for a session with neither. Cancelling
        it withdraws it. (No task sleeping: every idle session holds one; the runtime's
        Deadlines keep every session's on one timer.)

        Past its token's expiry the PDP refuses every command of a session, but what is
        not decided command by command — a shell, a forwarded port, a WebSocket, a stream
        — would go on under an identity nobody vouches for any more; so the session ends
        then (as a gateway that disconnects on an expired certificate does)."""
        end = self._end()
        lost = self.lease.lost if self.lease is not None else None
        if end is None and lost is None:
            return None
        ends: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        if end is not None:
            at, reason, text = end
            deadlines = self.runtime.deadlines
            key = deadlines.add(at, functools.partial(_session_ended, ends, reason, text, tell))
            ends.add_done_callback(lambda _: deadlines.withdraw(key))
        if lost is not None:
            told = functools.partial(_session_ended, ends, *CREDENTIAL_ENDED, tell)

            def credential_ended(lost: asyncio.Future[None]) -> None:
                if not lost.cancelled():
                    told()

            lost.add_done_callback(credential_ended)
            ends.add_done_callback(lambda _: lost.remove_done_callback(credential_ended))
        return ends

    def end_at_expiry(self, end: Callable[[str, str], None]) -> bool:
        """grant_expiry without a future, for a protocol that ends its sessions itself (the
        cheapest: an idle session holds its place in the runtime's Deadlines and nothing
        else): at the earlier of the grant's end and the token's expiry, `end(reason,
        text)` — tell the client `text`, close as `reason`. False: the session has
        neither. Withdrawn by stop_expiry() or the session's close."""
        self.stop_expiry()
        watched = self._watch_lease(end)
        found = self._end()
        if found is None:
            return watched
        at, reason, text = found
        self._expiry = self.runtime.deadlines.add(at, functools.partial(end, reason, text))
        return True

    def stop_expiry(self) -> None:
        """The end armed by end_at_expiry will not come (the session is ending anyway)."""
        if self._expiry is not None:
            self.runtime.deadlines.withdraw(self._expiry)
            self._expiry = None
        watch, self._lease_watch = self._lease_watch, None
        if watch is not None:
            watch[0].remove_done_callback(watch[1])

    def _watch_lease(self, end: Callable[[str, str], None]) -> bool:
        """end(*CREDENTIAL_ENDED) once the session's credential ends before the session
        does (its lease could not be renewed, or reached its maximum TTL); False: it
        cannot end so."""
        lost = self.lease.lost if self.lease is not None else None
        if lost is None:
            return False

        def credential_ended(lost: asyncio.Future[None]) -> None:
            self._lease_watch = None
            if not lost.cancelled():
                end(*CREDENTIAL_ENDED)

        lost.add_done_callback(credential_ended)
        self._lease_watch = (lost, credential_ended)
        return True

    def _end(self) -> tuple[float, str, str] | None:
        grant = self.grant
        if grant is None:
            return None
        token_ends = grant.token_expires_at and grant.token_expires_at + self.runtime.token_leeway
        return session_end(grant.expires_at, token_ends)

    def ruling_now(
        self,
        kind: str,
        raw: str,
        shape_of: Callable[[str], str | None] | None = None,
        attributes: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> Ruling | None:
        """The verdict when it needs no PDP round trip — a deny for a session that is not
        open or whose recording is halted, or a verdict the policy allowed to be reused —
        else None (ask the PDP: decide()). `key`: reuse_key(kind, attributes) when the
        caller has it already (a protocol that sees the same command again)."""
        grant = self.grant
        if grant is None or self._closed:
            return Ruling(Verdict.deny("session is not open — denied"))
        recorder = self.recorder  # halted(raw), its usual answer (None) spelt out
        if recorder is not None and (not recorder.admit(len(raw)) or recorder.unavailable):
            halt = self.halted(raw)  # (admit() again: the same answer, nothing moved since)
            if halt is not None:
                return halt
        runtime = self.runtime
        # each check's cheap half first: this runs for every command
        if len(raw) * 4 > runtime.max_statement_bytes and self._oversized(raw) is not None:
            return None  # never from the cache: decide() records and denies it
        if (
            runtime.cache_enabled
            and shape_of is not None
            and runtime.pdp.reachable
            # _token_expired(), spelt out
            and not (grant.token_expires_at and time.time() >= grant.token_expires_at)
            and not (self.egress_left is not None and self._egress_spent())
            and not self.ask_next
            and self.reuses_left != 0
        ):
            if key is None:
                key = self._reuse_key(kind, attributes)
            cached = self.cache.lookup("", key, raw, runtime.pdp.revision, shape_of)
            if cached is not None:
                if self.reuses_left is not None:
                    self._tally(cached)
                self._cache_hits += 1  # (counters["cache_hits"])
                runtime.metrics.cache_hits += 1  # (ProxyMetrics.cache_hit)
                return cached
        return None

    def _tally(self, cached: Ruling) -> None:
        """Count a verdict answered from the cache under a breaker: the PDP, which counts
        the breaker's rates, is told with the next Decide (asked, at the latest, once
        reuses_left are spent)."""
        tally = cached.tally
        if tally is None:
            return
        now = time.monotonic()
        if not tally.count:
            tally.first = now
            self._reused.append(tally)
        tally.count += 1
        tally.last = now
        if self.reuses_left:
            self.reuses_left -= 1

    def _take_reused(self) -> list[tuple[str, int, float, float]]:
        """The tallies to report with a Decide (raw, count, seconds since the first and
        the last), each started again."""
        if not self._reused:
            return []
        now = time.monotonic()
        report = [(t.raw, t.count, now - t.first, now - t.last) for t in self._reused]
        for tally in self._reused:
            tally.count = 0
        self._reused = []
        return report

    def _keep_reused(self, report: list[tuple[str, int, float, float]]) -> None:
        """A report the PDP did not take: counted again, reported with the next Decide."""
        now = time.monotonic()
        for raw, count, first, last in report:
            tally = ReuseTally(raw)
            tally.count, tally.first, tally.last = count, now - first, now - last
            self._reused.append(tally)

    def _reuse_key(self, kind: str, attributes: dict[str, Any] | None) -> str:
        """reuse_key(kind, attributes), remembered for the last attributes of only strings
        while they are the same object with the same items (a protocol passes one constant
        mapping per kind of command: its key is not built again for every command)."""
        last = self._last_key
        if last is not None and last[0] is attributes and last[1] == attributes and last[2] == kind:
            return last[3]
        key = reuse_key(kind, attributes)
        if attributes and all(type(v) is str for v in attributes.values()):
            # a copy to compare with: its values, strings, cannot change under it
            self._last_key = (attributes, dict(attributes), kind, key)
        return key

    def _egress_spent(self) -> bool:
        """A budget's allowance is used up: the PDP, which counts it, must be asked."""
        left = self.egress_left
        return left is not None and (self.egress_rows >= left[0] or self.egress_bytes >= left[1])

    def _allowance(self, ruling: Ruling, reported: tuple[int, int]) -> tuple[int, int] | None:
        """What reused verdicts may take until the PDP is asked again: the allowance the
        PDP gave with this answer (None: no budget). A deny carries none, whatever the
        budget: a budget the session had stays, less what was just reported, so a denied
        statement never lifts it from the verdicts reused after it."""
        given, left = ruling.egress_left, self.egress_left
        if given is not None or left is None or ruling.verdict.allowed:
            return given
        return (max(0, left[0] - reported[0]), max(0, left[1] - reported[1]))

    def _oversized(self, raw: str) -> tuple[int, str] | None:
        """(size, SHA-256) of a command larger than max_statement_bytes, else None."""
        whole = longer_than(raw, self.runtime.max_statement_bytes)
        return None if whole is None else (len(whole), hashlib.sha256(whole).hexdigest())

    def _token_expired(self) -> bool:
        """Past the client token's expiry nothing is answered from the cache: the PDP,
        which refuses every command of such a session, is asked."""
        expires_at = self.grant.token_expires_at if self.grant is not None else 0.0
        return bool(expires_at) and time.time() >= expires_at

    async def decide(
        self,
        kind: str,
        raw: str,
        attributes: dict[str, Any] | None = None,
        shape_of: Callable[[str], str | None] | None = None,
        key: str | None = None,
        *,
        looked_up: bool = False,
    ) -> Ruling:
        """The verdict for one command: from the cache when the policy allowed it, else the
        PDP (`key` as ruling_now's). looked_up: the caller's ruling_now() for this command
        answered None just now, with nothing awaited since: not asked again (its answer,
        and the recorder's admit(), would be the same)."""
        in_session()  # (a connection reusing a session opened on another, as HTTP's do)
        if not looked_up:
            known = self.ruling_now(kind, raw, shape_of, attributes, key)
            if known is not None:
                return known
        assert self.grant is not None
        runtime = self.runtime
        whole = self._oversized(raw)
        if whole is not None:
            # bounded here: the PDP gets the start and the whole text's size and SHA-256,
            # and records the attempt; whatever it answers, the command does not run
            ruling = await runtime.pdp.decide(
                self.grant.session_id,
                kind,
                raw[:TRUNCATED_PREFIX],
                attributes,
                whole,
                timeout=runtime.decide_timeout,
            )
            if ruling.kind is VerdictKind.DENY:
                return ruling
            reason = f"command of {whole[0]} bytes is larger than this proxy takes — denied"
            return Ruling(Verdict.deny(reason), ruling.decision_id, ruling.policy_revision)
        asked = time.perf_counter()
        egress = (self.egress_rows, self.egress_bytes)
        self.egress_rows = self.egress_bytes = 0
        reused = self._take_reused()
        ruling = await runtime.pdp.decide(
            self.grant.session_id,
            kind,
            raw,
            attributes,
            timeout=runtime.decide_timeout,
            egress=egress,
            reused=reused,
        )
        if ruling.decision_id:
            # the breaker's bound on reuse (None: no breaker), counted from now
            self.reuses_left = ruling.reuses_left
            self.egress_left = self._allowance(ruling, egress)
            # the runaway-loop breaker counts denials, and pauses the identity, only in
            # what the PDP decides, judging them with the next verdict it makes: after a
            # deny or a held command, the next command is asked, never answered from
            # the cache (and while a pause holds every command, every one is asked)
            self.ask_next = not ruling.verdict.allowed
        else:  # not delivered: reported with the next decision
            self.egress_rows += egress[0]
            self.egress_bytes += egress[1]
            self._keep_reused(reused)
        runtime.metrics.decided(time.perf_counter() - asked)
        self.counters["decisions"] += 1
        if shape_of is not None and runtime.cache_enabled and ruling.decision_id:
            # what a later lookup answers, made once, with the count of its reuses
            hit = replace(ruling, cached=True, tally=ReuseTally(raw))
            if key is None:
                key = reuse_key(kind, attributes)
            self.cache.store("", key, raw, ruling.verdict, ruling.policy_revision, hit, shape_of)
        return ruling

    async def decide_or_wait(
        self,
        kind: str,
        raw: str,
        attributes: dict[str, Any] | None,
        shape_of: Callable[[str], str | None] | None,
        tell: Callable[[str], None],
        *,
        looked_up: bool = False,
    ) -> Ruling:
        """decide(), and when a person must approve: tell the client, wait for the decision
        (up to the PDP's approvals.timeout_seconds), and decide again once approved
        (looked_up as decide()'s)."""
        ruling = await self.decide(kind, raw, attributes, shape_of, looked_up=looked_up)
        return await self.wait_if_held(ruling, kind, raw, attributes, tell)

    async def wait_if_held(
        self,
        ruling: Ruling,
        kind: str,
        raw: str,
        attributes: dict[str, Any] | None,
        tell: Callable[[str], None],
    ) -> Ruling:
        """decide_or_wait() for a command decided already (ruling, from decide()): the ruling
        itself, unless a person must approve it; then the wait, and the decision asked again
        once approved."""
        if ruling.kind is not VerdictKind.REQUIRE_APPROVAL or not ruling.approval_id:
            return ruling
        assert self.grant is not None
        approval_id = ruling.approval_id
        tell(
            f"portcullis: approval required ({'; '.join(ruling.verdict.reasons)}); "
            f"waiting for request {approval_id} — an approver runs: "
            f"portcullis approvals approve {approval_id} --reason '...'"
        )
        self.counters["approval_waits"] += 1
        metrics, began, outcome = self.runtime.metrics, time.monotonic(), "unavailable"
        metrics.approval_wait_started()
        log.info(
            "waiting for approval %s",
            approval_id,
            extra={
                "session_id": self.grant.session_id,
                "decision_id": ruling.decision_id,
                "approval_id": approval_id,
            },
        )
        waiting = asyncio.ensure_future(
            self.runtime.pdp.await_approval(
                self.grant.session_id, approval_id, self.runtime.approval_timeout
            )
        )
        self._approval_wait = waiting
        try:
            approval = await waiting
            outcome = approval.state if approval is not None else "unavailable"
        except asyncio.CancelledError:
            outcome = "canceled"
            if not self._wait_canceled:
                raise  # the session itself is going away
            self._wait_canceled = False
            withdrawn = await self.runtime.pdp.withdraw_approval(
                self.grant.session_id, approval_id, "the client cancelled while waiting"
            )
            return withdrawn_ruling(
                ruling, approval_id, "canceling statement due to user request", withdrawn
            )
        finally:
            if self._approval_wait is waiting:  # not a wait begun since (another channel's)
                self._approval_wait = None
            metrics.approval_wait_ended(outcome, time.monotonic() - began)
        state = approval.state if approval is not None else "unknown"
        if state == "approved":
            rerun = await self.decide(kind, raw, attributes, None)
            if rerun.verdict.allowed:
                return rerun
            return Ruling(
                Verdict.deny(
                    f"approval request {approval_id} was approved, but the "
                    f"policy now says: {'; '.join(rerun.verdict.reasons)}"
                ),
                rerun.decision_id,
                rerun.policy_revision,
            )
        if state == "denied" and approval is not None:
            reason = (
                f"denied by {approval.approver}: {approval.decision_reason or 'no reason given'}"
                f" (approval request {approval_id})"
            )
        elif state == "expired":
            reason = (
                f"approval required: request {approval_id} expired, nobody decided within "
                f"{self.runtime.approval_timeout:g} s; run the command again to ask again"
            )
        elif state == "pending":
            reason = (
                f"approval required: request {approval_id} is still pending; run the "
                "command again once it is approved"
            )
        else:
            reason = f"approval request {approval_id} {state if approval else 'unavailable'}"
        return Ruling(
            Verdict.deny(reason),
            ruling.decision_id,
            ruling.policy_revision,
            approval_id=approval_id,
        )

    def cancel_wait(self) -> bool:
        """The client cancelled (Postgres: a CancelRequest with this session's key): a
        command waiting for approval stops waiting, and its request is withdrawn. False
        when nothing was waiting."""
        waiting = self._approval_wait
        if waiting is None or waiting.done():
            return False
        self._wait_canceled = True
        waiting.cancel()
        return True

    def halted(self, raw: str = "") -> Ruling | None:
        """A deny for a command (text raw) that must not run: the session's recording cannot
        be stored, or the spool cannot promise room for its events. Asked right before a
        command is forwarded (also for a verdict reused from the cache); None: it may run."""
        recorder = self.recorder
        if recorder is None:
            return None
        if not recorder.admit(len(raw)):
            self.counters["halted_no_room"] += 1
            return Ruling(Verdict.deny(NO_ROOM))
        if recorder.unavailable:
            # evidence first: a session whose events cannot be stored does not go on
            why = self.runtime.pdp.recording_failure
            return Ruling(
                Verdict.deny(
                    f"recording unavailable{f' ({why})' if why else ''} — denied until the "
                    "session recording can be stored again"
                )
            )
        return None

    def record_command(self, raw: str, ruling: Ruling, **details: Any) -> None:
        self.counters["commands"] += 1
        metrics = self.runtime.metrics
        metrics.command(ruling.kind.wire)
        error = details.get("error")
        if error and str(error).startswith("upstream"):
            metrics.upstream_error(str(error))
        if ruling.kind is VerdictKind.DENY:
            self.counters["denied"] += 1
            log.info(
                "command denied",
                extra={
                    "session_id": self.id,
                    "decision_id": ruling.decision_id,
                    "verdict": "deny",
                    "reason": "; ".join(ruling.verdict.reasons)[:512],
                },
            )
            if self.recorder is not None and not self.recorder.admit(len(raw)):
                # a denial while the spool has no room: counted in the close record (which
                # has its room), not one by one, so a client cannot fill the disk with them
                self.counters["denied_unrecorded"] += 1
                return
        if self.recorder is not None:
            self.recorder.command(raw, ruling, **details)

    def record_statement(
        self,
        raw: str,
        ruling: Ruling,
        tag: str,
        rows: int,
        protocol: str,
        prepared: str | None = None,
    ) -> None:
        """record_command(raw, ruling, tag=tag, rows=rows, protocol=protocol[,
        prepared=prepared]) for a statement that completed without error under a verdict
        that is not a deny, with nothing masked in it (SessionRecorder.statement): the same
        counters, metrics and event. `prepared`: the prepared statement an Execute ran."""
        if ruling.kind is VerdictKind.DENY:
            extra = {} if prepared is None else {"prepared": prepared}
            self.record_command(raw, ruling, tag=tag, rows=rows, protocol=protocol, **extra)
            return
        self._commands += 1  # (counters["commands"])
        # metrics.command(ruling.kind.wire), spelt out
        counted, wire = self.runtime.metrics.commands, _WIRE[ruling.kind]
        if wire in counted:
            counted[wire] += 1
        if self.recorder is not None:
            self.recorder.statement(raw, ruling, tag, rows, protocol, prepared)

    def record_response(self, **details: Any) -> None:
        error = details.get("error")
        if error and str(error).startswith("upstream"):
            self.runtime.metrics.upstream_error(str(error))
        if self.recorder is not None:
            self.recorder.response(**details)

    def record_masking(self, counts: dict[str, int], decision_id: str) -> None:
        if counts:
            self.runtime.metrics.masked(counts)
        if counts and self.recorder is not None:
            self.counters["masked_values"] += sum(counts.values())
            self.recorder.masking(counts, decision_id)

    async def close(self, reason: str, abnormal: bool = False) -> None:
        """End the session once: flush the recording, release the credential, tell the PDP."""
        if self._closed:
            return
        self._closed = True
        self.stop_expiry()
        runtime = self.runtime
        if self in runtime.sessions:
            runtime.metrics.session_closed()
        runtime.sessions.discard(self)
        if reason.startswith("upstream"):
            runtime.metrics.upstream_error(reason)
        lease = self.lease
        try:
            if self.recorder is not None:
                await self.recorder.close()
        finally:
            # whatever the recording's flush did (failed, cancelled), the credential goes
            # back: a lease kept would be renewed for as long as the proxy runs
            if lease is not None:
                await self._release(lease)
        summary: dict[str, Any] = dict(self.counters)
        if self.egress_rows or self.egress_bytes:  # taken since the last decision
            summary["egress_rows"], summary["egress_bytes"] = self.egress_rows, self.egress_bytes
        if lease is not None:
            summary["credential_ref"] = lease.ref  # the reference, never the secret
        if self.recorder is not None and self.recorder.batch_seq:
            # the batches it numbered: verify names those that never reached the store
            summary["batches"] = self.recorder.batch_seq
        if self.grant is not None:
            log.info(
                "session closed: %s",
                reason,
                extra={"session_id": self.id, "connection": runtime.connection.name},
            )
        if self.grant is not None:
            # answered from the cache since the last Decide: no Decide will carry them now
            await self._close_at_pdp(reason, abnormal, summary, self._take_reused())
        self._give_back_close_room()

    async def _release(self, lease: CredentialLease) -> None:
        runtime = self.runtime
        self.lease = None
        try:
            await runtime.provider.release(lease)
        except Exception:
            log.exception("session %s: releasing the credential failed", self.id)
        runtime.metrics.lease_released(self._provider)

    @property
    def _provider(self) -> str:
        return str(self.runtime.connection.credentials.get("provider", "static"))

    def _give_back_close_room(self) -> None:
        if self._close_room and self.runtime.spool is not None:
            self.runtime.spool.release(self._close_room)
        self._close_room = 0

    async def _close_at_pdp(
        self,
        reason: str,
        abnormal: bool,
        summary: dict[str, Any],
        reused: list[tuple[str, int, float, float]],
    ) -> None:
        """CloseSession, or into the spool behind the session's spooled events when the
        PDP cannot take it now (delivered, in order, once it is back)."""
        assert self.grant is not None
        runtime, sid = self.runtime, self.grant.session_id
        spool = runtime.spool
        if spool is not None and spool.holds(sid):
            outcome = UNREACHABLE
        else:
            outcome = await runtime.pdp.close_session(sid, reason, abnormal, summary, reused)
        if outcome != UNREACHABLE or spool is None:
            return
        close = {"reason": reason, "abnormal": abnormal, "summary": summary}
        if reused:  # (their ages, as of now)
            close["reused"] = [list(one) for one in reused]
        entry = Entry(sid, close=close)  # sealed as it will be read back and delivered
        request = close_request(sid, *spooled_close(entry.again().close or {}))
        entry = replace(entry, seal=runtime.pdp.seal(sid, "CloseSession", request))
        room, self._close_room = self._close_room, 0
        try:
            # written against the room promised at open, whatever the spool holds now
            await spool.add([entry], claim=room)
        except SpoolFull as exc:
            self._close_room = room
            log.error("session %s: its close is lost: %s", sid, exc)


def spooled_close(
    close: dict[str, Any],
) -> tuple[str, bool, dict[str, Any] | None, list[tuple[str, int, float, float]]]:
    """A spooled close's reason, abnormal, summary and reused verdicts, as delivered."""
    summary = close.get("summary")
    return (
        str(close.get("reason", "")),
        bool(close.get("abnormal")),
        summary if isinstance(summary, dict) else None,
        spooled_reuses(close.get("reused")),
    )


def spooled_reuses(kept: Any) -> list[tuple[str, int, float, float]]:
    """A spooled close's reused verdicts, as _close_at_pdp wrote them (the spool is the
    proxy's own file: an entry not of that form is left out, not guessed at)."""
    out: list[tuple[str, int, float, float]] = []
    for one in kept if isinstance(kept, list) else []:
        if (
            isinstance(one, list)
            and len(one) == 4
            and isinstance(one[0], str)
            and type(one[1]) is int
            and all(isinstance(n, int | float) for n in one[2:])
        ):
            out.append((one[0], one[1], float(one[2]), float(one[3])))
    return out


# a session whose upstream credential ended under it: its close reason, what its client is told
CREDENTIAL_ENDED = (
    "credential_expired",
    "the upstream credential of this session ended (its lease could not be renewed); "
    "reconnect for a fresh one",
)


def session_end(grant_ends: float, token_expires: float) -> tuple[float, str, str] | None:
    """When a session must end, why (its close reason) and what its client is told: the
    earlier of a just-in-time grant's end and the client token's expiry (0: none)."""
    grant = (grant_ends, "grant_expired", "the approved access window has ended")
    expiry = (token_expires, "token_expired", "the token of this session has expired; "
              "reconnect with a fresh token")  # fmt: skip
    ends = [end for end in (grant, expiry) if end[0]]
    return min(ends) if ends else None


def _session_ended(
    ends: asyncio.Future[str], reason: str, text: str, tell: Callable[[str], None]
) -> None:
    if ends.done():
        return
    try:
        tell(f"portcullis: {text}")
    except Exception as exc:
        ends.set_exception(exc)
        return
    if not ends.done():  # (tell may have ended the session, cancelling it)
        ends.set_result(reason)
