"""Open sessions as the PDP knows them: who, to which connection, from where, since when.

Owns the in-memory session table and its recovery from the audit store: a PDP that
restarts finds a session again from its `session.open` record, so a proxy's session
survives a PDP restart (commands are denied while the PDP is away, then decided again).

Only a session record this PDP (or a replica with the same key) wrote is believed: the
`session` object of an open record carries an HMAC (`mac`) under `record_key`, derived
from the PDP's proxy key, which the store does not hold. The chain's hash is unkeyed and
the store's triggers refuse only UPDATE and DELETE: without it, anyone who can INSERT
into the store could append a later open record for a live session with other groups.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pdp.domain.claims import CLAIMS_KIND, committed, kept_claims, revealed
from pdp.domain.identity import Identity, identity_key
from pdp.plumbing.timestamps import rfc3339  # the one time form; policy_input takes it from here
from pdp.store import AuditRecord, AuditStore, Beside, StoreUnavailable
from pdp.store.chain import canonical_json

log = logging.getLogger("portcullis.sessions")

MAX_SESSIONS = 100_000
_PAGE = 1000  # records read at a time when a starting PDP looks for sessions left open
# closes the PDP makes itself (SessionReaper): the proxy may still deliver the last events
REAPED_REASONS = frozenset({"proxy_lost", "grant_expired"})
MAC = "mac"  # the field of a session record that proves this PDP wrote it
# the field of a reaped session's close record: when the PDP last heard from its proxy
LAST_HEARD = "last_heard_from_proxy"
# the field of a session.close record naming who ended the session: the PDP's reaper
# (BY_PDP) or the proxy's CloseSession (BY_PROXY). Its reason alone does not tell: a proxy
# closes as `grant_expired` too, and read back after a restart such a close was taken for
# the reaper's (its session then took events after its close, evidence said the PDP ended it)
CLOSED_BY = "closed_by"
BY_PDP, BY_PROXY = "pdp", "proxy"


def closed_by_reaper(body: Any) -> bool:
    """Whether a session.close record's body is the PDP reaper's close. Records written
    before CLOSED_BY was kept: a reaped reason without the policy revision every proxy
    close records (the reaper writes none), as they were read then."""
    if not isinstance(body, dict):
        return False
    by = body.get(CLOSED_BY)
    if by is not None:
        return by == BY_PDP
    return body.get("reason") in REAPED_REASONS and "policy_revision" not in body


def closed_reason_of(body: Any) -> str:
    """The reason a session closed by this record is held with (Session.closed_reason):
    a reaped reason the proxy gave is marked as the proxy's, so nothing takes it for the
    reaper's (events after it are refused)."""
    reason = str(body.get("reason", "")) if isinstance(body, dict) else ""
    if reason in REAPED_REASONS and not closed_by_reaper(body):
        return f"{reason} (by its proxy)"
    return reason


@dataclass
class Session:
    id: str
    identity: Identity
    connection: dict[str, Any]
    client_addr: str
    client: str
    started_at: float = field(default_factory=time.time)
    closed: bool = False
    last_seen: float = field(default_factory=time.monotonic)  # last word from its proxy
    # False: found again in the store (adopted at a PDP's start, or named by a call) and not
    # heard from its own proxy since: its last_seen is when it was found, not heard
    heard: bool = True
    grant_expires_at: float = 0.0  # a just-in-time grant ends the session then
    # the proxy identity that opened it (pdp/api/proxy_auth.py): the only one that speaks for it
    proxy: str = ""
    # SessionTable.key_digest of the key its proxy made for it (OpenSessionRequest.session_key):
    # every later call about it must carry that key, which the PDP never holds or records
    key_digest: str = field(default="", repr=False)
    # the key its proxy seals spooled deliveries with (spool_key), wrapped under the record
    # key (SessionTable.spool_wrap_of): what checks a delivery the proxy's process that
    # made it did not live to send (pdp.api.session_keys.standing); "" for a session
    # opened before it was kept, whose spooled deliveries need the key itself
    spool_wrap: str = field(default="", repr=False)
    closed_reason: str = ""
    # the numbers of its recorded batches the PDP stored (pdp.api.recording_rpc): "" for a
    # session opened here (none yet), None for one found again in the store (read there
    # when it first sends a numbered batch)
    batch_numbers: Any = field(default="", repr=False, compare=False)
    # started_at as rfc3339() wrote it, with the value it was written from: made once per
    # session, not on every decision's input (made again if started_at is ever replaced)
    _started_text: tuple[float, str] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    # (its token's claims as its session.open record keeps them, the values and salts of
    # those committed there: pdp.domain.claims), made once so every record of the open
    # (a grant's re-run re-seals it) commits with the one salt its session.claims holds
    claims_split: tuple[dict[str, Any], dict[str, dict[str, Any]]] | None = field(
        default=None, repr=False, compare=False
    )

    @property
    def grant_expired(self) -> bool:
        return bool(self.grant_expires_at) and self.grant_expires_at <= time.time()

    def to_input(self) -> dict[str, Any]:
        held = self._started_text
        if held is None or held[0] is not self.started_at:
            held = self._started_text = (self.started_at, rfc3339(self.started_at))
        return {
            "id": self.id,
            "started_at": held[1],
            "client_addr": self.client_addr,
            "client": self.client,
        }

    def to_record(self) -> dict[str, Any]:
        """What a session.open record keeps so the session can be found again."""
        ident = self.identity
        return {
            "identity": {
                "subject": ident.subject,
                "groups": list(ident.groups),
                "issuer": ident.issuer,
                "token_id": ident.token_id,
                "expires_at": ident.expires_at,
                "claims": self.claims_split[0] if self.claims_split else ident.claims,
            },
            "connection": self.connection,
            "client_addr": self.client_addr,
            "client": self.client,
            "started_at": self.started_at,
            "grant_expires_at": self.grant_expires_at,
            "proxy": self.proxy,
            "key_digest": self.key_digest,
            **({"spool_wrap": self.spool_wrap} if self.spool_wrap else {}),
        }

    @classmethod
    def from_record(
        cls, session_id: str, body: dict[str, Any], opened_claims: Any = None
    ) -> Session:
        """The session a session.open record's `session` object keeps; opened_claims: the
        bodies of its session.claims records, whose values replace the claims committed."""
        i = body["identity"]
        claims = i.get("claims", {})
        identity = Identity(
            subject=i["subject"],
            groups=tuple(i.get("groups", ())),
            issuer=i.get("issuer", ""),
            claims=revealed(claims, opened_claims) if isinstance(claims, dict) else {},
            token_id=i.get("token_id", ""),
            expires_at=int(i.get("expires_at", 0)),
        )
        return cls(
            session_id,
            identity,
            body["connection"],
            body.get("client_addr", ""),
            body.get("client", ""),
            body.get("started_at", time.time()),
            # a just-in-time grant ends the session wherever it is found again (a restart,
            # another replica): its end is in the record, not only in the memory of the
            # PDP that opened it
            grant_expires_at=float(body.get("grant_expires_at") or 0.0),
            proxy=str(body.get("proxy", "")),
            key_digest=str(body.get("key_digest", "")),
            spool_wrap=str(body.get("spool_wrap", "")),
            batch_numbers=None,  # (its batches may be in the store already)
        )


# the field of a session.events or session.close record delivered under its spool's seal
# (pdp.api.session_keys), not the session's key: by a process that did not open the session
FROM_SPOOL = "delivered_from_spool"


def spool_key(session_id: str, key: str) -> bytes:
    """The key a proxy seals a session's spooled deliveries with, made from the session's
    key (proxies.runtime.spool.spool_key makes the same): the seal speaks for one delivery
    of exactly what was spooled, and neither it nor this key gives the session's key."""
    content = f"portcullis-spool\0{session_id}".encode()
    return hmac.new(key.encode(), content, hashlib.sha256).digest()


SESSION_ID = re.compile(r"s-[0-9a-f]{32}")  # what new_session_id makes, a proxy too


def new_session_id() -> str:
    return "s-" + uuid.uuid4().hex


class SessionTable:
    def __init__(self, store: AuditStore, on_close: Callable[[str], object] | None = None) -> None:
        self.store = store
        # keys the MAC of the session records this PDP writes; the composition root sets
        # the PDP's own, stable across restarts and shared by replicas
        self.record_key = secrets.token_bytes(32)
        # told the id of each session that closes, to release what is held for it
        # elsewhere (the decider's evaluations filed for reuse under it)
        self.on_close = on_close
        # awaited with (session id, how it ended) once a session's close is recorded, by
        # its proxy or the reaper: what must end with it (its pending approval requests,
        # withdrawn at once: pdp.domain.approvals.ApprovalBook.withdraw_of_session)
        self.on_end: list[Callable[[str, str], Awaitable[object]]] = []
        self._open: dict[str, Session] = {}
        self._recently_closed: dict[str, Session] = {}
        # open sessions per (identity key, connection name): the policy's cap per identity
        # (Identity.key: 'RITA@example.com' holds rita@example.com's sessions)
        self._held: dict[tuple[str, str], int] = {}
        # opens being decided and recorded, by the id they give their session: a call
        # naming one (the close of an open whose answer was lost) waits for its outcome
        self._opening: dict[str, asyncio.Future[Any]] = {}
        # proposed ids id_taken found free, until their open is under way (opening): a
        # second open proposing one meanwhile finds it taken
        self._claimed: set[str] = set()
        # the claims a session.open record keeps in the clear (pdp.domain.claims); the
        # composition root names the configured groups claim
        self.kept_claims = kept_claims("groups")

    def sealed(self, session: Session) -> dict[str, Any]:
        """session.to_record() with its MAC: what a session.open record keeps, its token's
        claims other than the kept ones committed (their values: claims_record)."""
        if session.claims_split is None:
            session.claims_split = committed(dict(session.identity.claims), self.kept_claims)
        record = session.to_record()
        record[MAC] = self._mac(session.id, record)
        return record

    def claims_record(self, session: Session) -> list[Beside]:
        """The session.claims record of a session sealed() committed claims of (none
        without), which its open's decision record is written with, in one transaction
        (Decider.decide's `before`): an open is never in the chain without its claims."""
        opened = session.claims_split[1] if session.claims_split else {}
        if not opened:
            return []
        subject = session.identity.subject
        return [Beside(CLAIMS_KIND, {"claims": opened}, session_id=session.id, subject=subject)]

    async def opened_claims(self, session_id: str) -> list[Any]:
        """The bodies of a session's session.claims records (pdp.domain.claims.revealed)."""
        return [r.body for r in await self.store.query(kind=CLAIMS_KIND, session_id=session_id)]

    def _mac(self, session_id: str, record: dict[str, Any]) -> str:
        # the id is in it: a copy of another session's record (a dba's) must not be this
        content = canonical_json([session_id, {k: v for k, v in record.items() if k != MAC}])
        return hmac.new(self.record_key, content.encode(), hashlib.sha256).hexdigest()

    def key_digest(self, session_id: str, key: str) -> str:
        """What a session keeps of its key (Session.key_digest): an HMAC under the record
        key, so that neither the table nor its record holds anything that speaks for it."""
        content = f"session-key\0{session_id}\0{key}".encode()
        return hmac.new(self.record_key, content, hashlib.sha256).hexdigest()

    def keyed(self, session: Session, key: str) -> bool:
        """Whether `key` is the key session was opened with (compared in constant time; a
        session recorded without one, or a key that is no ASCII text, never is)."""
        if not session.key_digest or not key.isascii():
            return False
        return hmac.compare_digest(session.key_digest, self.key_digest(session.id, key))

    def _spool_pad(self, session_id: str) -> bytes:
        content = f"session-spool-wrap\0{session_id}".encode()
        return hmac.new(self.record_key, content, hashlib.sha256).digest()

    def spool_wrap_of(self, session_id: str, key: str) -> str:
        """What a session keeps of the key its proxy seals spooled deliveries with
        (Session.spool_wrap): spool_key(session_id, key) under a pad only the record key
        makes, so neither the table nor the session.open record lets a reader seal one."""
        sealing = spool_key(session_id, key)
        return bytes(a ^ b for a, b in zip(sealing, self._spool_pad(session_id), strict=True)).hex()

    def spool_key_of(self, session: Session) -> bytes | None:
        """The key session's spooled deliveries are sealed with (None: none kept)."""
        try:
            wrapped = bytes.fromhex(session.spool_wrap)
        except ValueError:
            return None
        if len(wrapped) != hashlib.sha256().digest_size:
            return None
        return bytes(a ^ b for a, b in zip(wrapped, self._spool_pad(session.id), strict=True))

    def authentic(self, session_id: str, record: Any) -> bool:
        """Whether a session.open record's `session` object carries this table's MAC for
        the session of that id."""
        if not isinstance(record, dict) or not isinstance(record.get(MAC), str):
            return False
        try:
            return hmac.compare_digest(record[MAC], self._mac(session_id, record))
        except (ValueError, TypeError):
            return False

    def _believed(self, opened: AuditRecord) -> bool:
        """An allowed open record this PDP wrote; a forged one is logged."""
        if opened.body.get("verdict") not in ("allow", "mask"):
            return False
        if self.authentic(opened.session_id, opened.body.get("session")):
            return True
        log.warning(
            "session.open record seq %d of %s has no valid MAC: not written by this PDP's"
            " key; ignored",
            opened.seq,
            opened.session_id[:64],
        )
        return False

    def opening(self, session_id: str, work: asyncio.Future[Any]) -> None:
        """An open of session_id under way until work is done."""
        self._claimed.discard(session_id)
        self._opening[session_id] = work
        work.add_done_callback(lambda _: self._opening.pop(session_id, None))

    async def id_taken(self, session_id: str) -> bool:
        """Whether an open under way, held or recorded (whatever its verdict) already has
        this id: StoreUnavailable if the store cannot be read. An id found free is claimed
        for the caller's open (opening) from then on: two opens proposing one id at once
        (each reading the store before either was under way) were both decided and
        recorded, two session.open records and two identities for one session, the later
        caller told it was open while the table held the other's identity under its id."""
        if session_id in self._opening or session_id in self._open:
            return True
        if session_id in self._recently_closed or session_id in self._claimed:
            return True
        self._claimed.add(session_id)
        try:
            recorded = await self.store.query(kind="session.open", session_id=session_id, limit=1)
        except BaseException:
            self._claimed.discard(session_id)
            raise
        if recorded:
            self._claimed.discard(session_id)
        return bool(recorded)

    def add(self, session: Session) -> None:
        if session.id in self._open:
            return
        if len(self._open) >= MAX_SESSIONS:
            # drop the oldest; it can still be recovered from the store if it is used again
            self._release(self._open.pop(next(iter(self._open))))
        self._open[session.id] = session
        key = _holder(session)
        self._held[key] = self._held.get(key, 0) + 1

    def open_count(self, subject: str, connection: str) -> int:
        """How many sessions the identity of subject holds open on the connection named,
        in this PDP: under its key, whatever the spelling (identity_key)."""
        return self._held.get((identity_key(subject), connection), 0)

    def _release(self, session: Session) -> None:
        key = _holder(session)
        left = self._held.get(key, 0) - 1
        if left > 0:
            self._held[key] = left
        else:
            self._held.pop(key, None)

    async def find(self, session_id: str, include_closed: bool = False) -> Session | None:
        """The open session with this id, from memory or recovered from the store.

        include_closed also finds a session that has ended (its last events may arrive
        after the close). Finding it is no word from its proxy: the caller, once it knows
        the proxy that opened the session is the one calling, says so (heard_from)."""
        pending = self._opening.get(session_id)
        if pending is not None:  # its open is still being decided: its outcome says
            await asyncio.wait([pending])
        session = self._open.get(session_id) or self._recently_closed.get(session_id)
        if session is not None and (include_closed or not session.closed):
            return session
        # the record that opened it: a just-in-time grant's open records the require_approval
        # asked first, then the approved re-run that opened the session (as adopt_unclosed
        # reads them: the last allowed one)
        opens = await self.store.query(kind="session.open", session_id=session_id)
        allowed = [r for r in opens if self._believed(r)]
        if not allowed:
            return None
        session = Session.from_record(
            session_id, allowed[-1].body["session"], await self.opened_claims(session_id)
        )
        session.heard = False  # (found again: its proxy is heard once a call proves it is)
        closed = await self.store.query(kind="session.close", session_id=session_id, limit=1)
        if closed:
            session.closed = True
            session.closed_reason = closed_reason_of(closed[0].body)
            return session if include_closed else None
        self.add(session)
        return session

    @staticmethod
    def heard_from(session: Session) -> None:
        """The session's own proxy spoke for it (a command, events, a heartbeat): the
        reaper counts its silence from now. Only after the caller was found to be the
        proxy that opened it: another proxy's refused calls must not keep a session whose
        proxy died from being ended as proxy_lost."""
        session.last_seen = time.monotonic()
        session.heard = True

    async def adopt_unclosed(self, heard_at: float) -> int:
        """Watch every session the store shows opened (allowed) and never closed, as if
        its proxy had last spoken at heard_at (monotonic): sessions left open when a PDP
        stopped, whose proxy may never come back. Each keeps the proxy that opened it.
        How many were added; StoreUnavailable if the store cannot be read."""
        # opens and closes read together in chain order: only sessions still open at the
        # point reached are held, never the whole history
        pending: dict[str, AuditRecord] = {}
        closes = _records(self.store, "session.close")
        close = await anext(closes, None)
        async for opened in _records(self.store, "session.open"):
            while close is not None and close.seq < opened.seq:
                pending.pop(close.session_id, None)
                close = await anext(closes, None)
            if opened.session_id and self._believed(opened):
                pending[opened.session_id] = opened
        while close is not None:
            pending.pop(close.session_id, None)
            close = await anext(closes, None)
        added = 0
        for session_id, opened in pending.items():
            if (
                session_id in self._open
                or session_id in self._recently_closed
                or session_id in self._opening
            ):
                # its proxy spoke (or closed it) while the store was being read, or it is
                # being opened now (its open record is written, the session not yet held):
                # adopted, it would be held as last heard at the reaper's start, reaped at
                # once, and the open's own session, finding its id held, never added
                continue
            try:
                session = Session.from_record(
                    session_id, opened.body["session"], await self.opened_claims(session_id)
                )
            except (KeyError, TypeError, ValueError):
                continue
            session.last_seen = heard_at
            session.heard = False
            self.add(session)
            added += 1
        return added

    def close(self, session_id: str, reason: str = "") -> Session | None:
        session = self._open.pop(session_id, None)
        if session is not None:
            self._release(session)
            session.closed = True
            session.closed_reason = reason
            self._recently_closed[session_id] = session
            while len(self._recently_closed) > 1000:
                self._recently_closed.pop(next(iter(self._recently_closed)))
        if self.on_close is not None:  # also for one no longer held here: O(1) if nothing
            self.on_close(session_id)
        return session

    async def ended(self, session_id: str, how: str) -> None:
        """What ends with a session whose close is recorded (on_end), each in turn; one
        that fails (a store refusing) is logged, never the close's failure: the close is
        recorded, and what was left is refused elsewhere (a request of an ended session
        is not approvable)."""
        for then in self.on_end:
            try:
                await then(session_id, how)
            except StoreUnavailable as exc:
                log.error("session %s ended; %r not done: %s", session_id, then, exc)

    def __len__(self) -> int:
        return len(self._open)

    def silent_since(self, seconds: float) -> list[Session]:
        """Open sessions whose proxy has said nothing (no command, no heartbeat) for seconds."""
        limit = time.monotonic() - seconds
        return [s for s in self._open.values() if s.last_seen < limit]

    @staticmethod
    def still_silent(session: Session, seconds: float) -> bool:
        """Whether an open session's proxy has still said nothing for seconds (now)."""
        return not session.closed and session.last_seen < time.monotonic() - seconds

    def grants_expired(self) -> list[Session]:
        return [s for s in self._open.values() if s.grant_expired]


async def _records(store: AuditStore, kind: str) -> AsyncIterator[AuditRecord]:
    """Every record of a kind, in chain order, read a page at a time."""
    after = 0
    while True:
        page = await store.query(kind=kind, after_seq=after, limit=_PAGE)
        for record in page:
            yield record
        if len(page) < _PAGE:
            return
        after = page[-1].seq


def _holder(session: Session) -> tuple[str, str]:
    return session.identity.key, str(session.connection.get("name", ""))


class SessionReaper:
    """Ends sessions whose proxy went silent: a proxy that crashed sends no heartbeat, so
    its sessions are closed here as ended abnormally ("proxy_lost").

    With adopt_unclosed it first takes on the sessions the store shows open (left so by
    a PDP that stopped or crashed), as heard from at start: whichever restarted, a
    session whose proxy does not speak for it within the timeout is closed. Only for a
    store this PDP writes alone: a replica sharing the store cannot tell them from the
    live sessions another replica holds (heartbeats are not stored)."""

    def __init__(
        self, table: SessionTable, timeout_seconds: float, *, adopt_unclosed: bool = False
    ) -> None:
        self.table = table
        self.timeout = timeout_seconds
        self._adopt = adopt_unclosed
        self._started = time.monotonic()
        # when a round last found this PDP's loop had stalled (sweep): -inf, never
        self._stalled_at = float("-inf")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._started = time.monotonic()
        self._task = asyncio.create_task(self._run())

    async def _adopt_unclosed(self) -> None:
        try:
            adopted = await self.table.adopt_unclosed(self._started)
        except StoreUnavailable:
            return  # try again on the next round
        self._adopt = False
        if adopted:
            log.info("watching %d session(s) left open in the store", adopted)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            if self._adopt:
                await self._adopt_unclosed()
            interval = min(self.timeout / 3, 1.0)
            asleep = time.monotonic()
            await asyncio.sleep(interval)
            await self.sweep(late=time.monotonic() - asleep - interval)

    async def sweep(self, late: float = 0.0) -> None:
        """One round: end the sessions silent for the timeout (proxy_lost) and those whose
        just-in-time grant has expired. `late`: how much later than asked this round woke.

        A PDP whose own loop stalled (a loaded machine, a pause of the process) heard
        nothing meanwhile, its proxies' heartbeats waiting unread on its sockets: a stall
        of half the timeout or more lets proxies be heard (a third of the timeout, past
        their heartbeat interval with the default timeout) before silence ends a session.
        A session heard while an earlier one was being closed (the store is slow under
        load) is not closed on the round's stale list."""
        now = time.monotonic()
        if late >= self.timeout / 2:
            self._stalled_at = now
            log.warning(
                "the session reaper woke %.1fs late: silent sessions are ended only once"
                " their proxies have had %.1fs to be heard",
                late,
                self.timeout / 3,
            )
        if now - self._stalled_at >= self.timeout / 3:
            for session in self.table.silent_since(self.timeout):
                if self.table.still_silent(session, self.timeout):
                    await self.reap(session)
        for session in self.table.grants_expired():
            if not session.closed:
                await self.reap(session, "grant_expired")

    async def reap(self, session: Session, reason: str = "proxy_lost") -> None:
        now = time.time()
        body: dict[str, Any] = {
            "connection": session.connection.get("name", ""),
            "reason": reason,
            CLOSED_BY: BY_PDP,
            "abnormal": reason == "proxy_lost",
            "duration_seconds": round(now - session.started_at, 3),
            "summary": {},
        }
        if session.heard:
            # when this PDP last heard from the proxy (a command, events, a heartbeat), by
            # its own clock: what the proxy did after it, the PDP cannot know
            body[LAST_HEARD] = round(now - (time.monotonic() - session.last_seen), 6)
        try:
            await self.table.store.append(
                "session.close",
                body,
                session_id=session.id,
                subject=session.identity.subject,
            )
        except StoreUnavailable:
            return  # try again on the next round; the session stays open meanwhile
        self.table.close(session.id, reason)
        await self.table.ended(session.id, reason)
