"""The Postgres proxy's asyncio side: start-up, and the protocol's half of an open session.

Stands on the runtime (proxies.runtime): its Listener accepts (plain TCP: TLS is
negotiated after SSLRequest, here), its Relay owns both sockets once a session is open
(backpressure, holds, the statement watchdog), ClientOutput is the one writer of bytes to
the client, ProxySession the session's lifecycle and its grant's end. Start-up (on
streams): SSLRequest answered (TLS with the configured certificate, `N` without),
GSSENCRequest refused, CancelRequest mapped from the proxy-issued key to the upstream's
(as pgbouncer does), cleartext password auth carrying the client's JWT. Then the
session's _Relay (a runtime Relay with Postgres's callbacks) works in the sockets'
callbacks: client bytes through the Enforcer, server bytes through the ResponseTracker
(results through its plain lane when nothing masks them, its masked lane when something
does: frames checked, not decoded one by one; only masked rows are rewritten).
What reaches the client passes the secret scanner. A malformed or oversized frame ends
that connection with an ErrorResponse, never the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from portcullis.config import Config, ConnectionSettings
from portcullis.masking import masking_key
from portcullis.protocols import workers_of
from proxies.postgres import codec
from proxies.postgres.catalog_watch import (
    NO_FACTS,
    PINNED_PATH,
    CatalogWatch,
    Facts,
    same_catalogue,
)
from proxies.postgres.columns import (
    MAX_VIEW_DEPTH,
    VIEW_KINDS,
    CatalogRows,
    ColumnOrigin,
    attributes_sql,
    dependencies_sql,
    resolve,
    view_origins,
)
from proxies.postgres.commands import COMPUTED, VIEW_COMPUTED
from proxies.postgres.driver import EnforcerDriver, carry_out
from proxies.postgres.enforcer import Enforcer
from proxies.postgres.frame_budget import BUDGET, LARGE
from proxies.postgres.startup import (
    StartupRefused,
    pinned_settings,
    requested_settings,
    role_pins,
    session_pins,
    statement_limit,
    upstream_params,
)
from proxies.postgres.tracker import ResponseTracker
from proxies.postgres.upstream import (
    Upstream,
    UpstreamError,
    catalog_name,
    connect,
    described_fields,
    pooler_refusal,
    relation_oids,
    session_rows,
    side_query,
)
from proxies.runtime.credentials import CredentialLease
from proxies.runtime.drain import SHUTDOWN_MESSAGE
from proxies.runtime.exposure import ClientOutput
from proxies.runtime.listener import Listener, split_address
from proxies.runtime.pdp_client import SessionRefused
from proxies.runtime.relay import CLIENT, SERVER, Relay, server_streams
from proxies.runtime.session import ProxyRuntime, ProxySession
from proxies.runtime.workers import CancelRoute, key_worker, worker_key

log = logging.getLogger("portcullis.postgres")

_QUERY = ord("Q")  # a simple Query's type byte

_NO_SETTINGS: dict[str, str] = {}  # (never changed: a session's settings are replaced)

READ_SIZE = 256 * 1024
FRAMES = "frames"  # a hold: the process's budget of large frames is spent (frame_budget)
FRAMES_POLL = 0.05  # how often a session holding large frames looks whether they went
# how often the socket of a client whose command waits for a person is looked at (gone?)
CLIENT_WATCH_SECONDS = 0.5
_PEER_GONE = getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR
CATALOG_TTL = 60.0
# after the catalog could not be read for masking, how long results mask the columns
# they cannot name without asking again (no connection attempt per result)
CATALOG_RETRY = 5.0
STARTUP_TIMEOUT = 30.0
# the PasswordMessage carries the client's token: the PDP takes none longer than 16 KiB
# (pdp.domain.identity.MAX_TOKEN_BYTES), so a longer frame is refused from its header, not
# buffered (before any authentication: up to the 64 MiB of a session's frames each)
MAX_PASSWORD_FRAME = 16 * 1024 + 5
# A CancelRequest the proxy forwards opens a connection to the server, a process its
# postmaster forks: per peer address, at most CANCEL_BURST at once and CANCELS_PER_SECOND
# after (each worker counts its own); the rest are dropped, as the server drops a key it
# does not know
CANCEL_BURST = 16
CANCELS_PER_SECOND = 4.0
# ...and per session key (wherever they come from: a key cancels one statement, and an
# address of its own for each request would pass the per-address budget), at most
# KEY_CANCEL_BURST at once and KEY_CANCELS_PER_SECOND after
KEY_CANCEL_BURST = 4
KEY_CANCELS_PER_SECOND = 1.0
# peers whose budget is full again are forgotten once this many are remembered
CANCEL_PEERS_KEPT = 4096
# distinct settings dicts (start-up parameters, pins) kept to be shared between sessions
SHARED_SETTINGS_KEPT = 256

__all__ = ["PostgresProxy", "masking_key"]


class PostgresProxy:
    """One listening Postgres proxy for one configured connection."""

    def __init__(
        self,
        connection: ConnectionSettings,
        config: Config,
        pdp_address: str,
        runtime: ProxyRuntime | None = None,
    ) -> None:
        self.connection = connection
        # the launcher's (over the process's PDP client), or one of its own when built alone
        self.runtime = runtime or ProxyRuntime.standalone(connection, config, pdp_address)
        self.listener = Listener(
            f"postgres proxy {connection.name}",
            connection.listen,
            reuse_port=workers_of(connection.options) > 1,
            # start-up reads through streams of the proxy's own (relay.server_streams),
            # dropped once the session's relay owns the socket
            take_transport=self._serve,
        )
        self.upstream_host, self.upstream_port = split_address(connection.upstream)
        self.database = connection.database
        # "transaction" behind pgbouncer in transaction mode (startup.role_pins)
        self.pooler: str = connection.options.get("upstream_pooler") or ""
        self.tls = self._server_tls(connection.options)
        self.upstream_tls = self._upstream_tls(connection.options)
        self.hash_key = masking_key(config.masking_hash_key, connection.name)
        self.cancels = CancelKeys(self.upstream_host, self.upstream_port, connection)
        # what the proxy knows of each database its sessions reached (one, where the
        # connection names its database)
        self.databases: dict[str, DatabaseKnowledge] = {}
        # settings dicts sessions share (shared()), and the policy revision every
        # session's enforcer reads, one callable for all
        self._shared: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        pdp = self.runtime.pdp
        self.pdp_revision: Callable[[], str] = lambda: pdp.revision

    def shared(self, settings: dict[str, str]) -> dict[str, str]:
        """One dict for every session whose settings of a kind are these, in this order
        (start-up parameters, pins: read, never changed, and alike for thousands of idle
        sessions of one identity; a few hundred kinds are kept)."""
        key = tuple(settings.items())
        found = self._shared.get(key)
        if found is None:
            if len(self._shared) >= SHARED_SETTINGS_KEPT:
                self._shared.clear()
            found = self._shared[key] = settings
        return found

    def knowledge(self, database: str) -> DatabaseKnowledge:
        """What the proxy knows of `database` (made on first use: a session that reached
        it)."""
        known = self.databases.get(database)
        if known is None:
            # its questions prepared once per connection, unless a transaction pooler may
            # run each on another server connection
            watch = CatalogWatch(
                self.upstream_host, self.upstream_port, self.upstream_tls, prepared=not self.pooler
            )
            known = self.databases[database] = DatabaseKnowledge(watch)
        return known

    @staticmethod
    def _server_tls(options: dict[str, Any]) -> ssl.SSLContext | None:
        cert, key = options.get("tls_cert_file"), options.get("tls_key_file")
        if not cert:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert, key)
        return context

    @staticmethod
    def _upstream_tls(options: dict[str, Any]) -> ssl.SSLContext | None:
        mode = options.get("upstream_tls")
        if not mode:
            return None
        context = ssl.create_default_context(cafile=options.get("upstream_ca_file"))
        if mode == "require":  # encrypted, server identity not checked (libpq's sslmode=require)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    @property
    def port(self) -> int:
        return self.listener.port

    async def start(self) -> None:
        await self.runtime.start()
        if self.cancels.route is not None:
            await self.cancels.route.start()
        await self.listener.start()
        log.info(
            "postgres proxy %s on %s:%d → %s:%d",
            self.connection.name,
            self.listener.host,
            self.port,
            self.upstream_host,
            self.upstream_port,
        )

    async def drain(self, grace: float) -> None:
        """SIGTERM: accept no more; each session ends once its statement has answered
        (FATAL 57P01), at the latest after `grace` seconds (proxies.runtime.drain)."""
        self.listener.close()
        await self.runtime.drain_sessions(self.listener.clients, grace, self.listener.name)

    async def stop(self) -> None:
        await self.listener.stop()
        for known in self.databases.values():
            await known.catalog.stop()
        if self.cancels.route is not None:
            await self.cancels.route.stop()
        await self.runtime.stop()

    def _serve(
        self, transport: asyncio.Transport
    ) -> tuple[asyncio.BaseProtocol, Coroutine[Any, Any, None]]:
        reader, protocol, writer = server_streams(transport, READ_SIZE)
        # the drain's coroutine itself, not one awaiting it: a frame less per session
        return protocol, self.runtime.drain.serving(ClientConnection(self, reader, writer))


class DatabaseKnowledge:
    """What the proxy knows of one database: its tables' columns (for masking) and the
    catalogue facts its watch keeps new. One per database, never shared between two: a
    connection that names no database serves whichever one each client asks for, and
    one database's facts (the code it holds) or table OIDs (a database made from a
    template shares its tables' OIDs) judging another's statements would let its code
    run unseen or its columns go unmasked."""

    def __init__(self, catalog: CatalogWatch) -> None:
        # what each table column is, by (table OID, attribute number), learnt from the
        # catalog once per table and forgotten every CATALOG_TTL seconds (a view redefined
        # or a column renamed is seen again within that)
        self.column_origins: dict[tuple[int, int], ColumnOrigin] = {}
        self.unnamed_tables: set[int] = set()
        # RowDescriptions (their bytes) whose every table column is in column_origins
        self.known_descriptions: set[bytes] = set()
        self._catalog_learnt_at = time.monotonic()
        self.catalog_failed_at = -CATALOG_RETRY
        # the newest catalogue facts (code made while sessions are open)
        self.catalog = catalog

    def catalog_stale(self) -> bool:
        return time.monotonic() - self._catalog_learnt_at > CATALOG_TTL

    def forget_columns(self) -> None:
        """Learn every table's columns afresh (schema changes, policy changes)."""
        self.column_origins.clear()
        self.unnamed_tables.clear()
        self.known_descriptions.clear()
        self._catalog_learnt_at = time.monotonic()


class CancelBudget:
    """How many CancelRequests each peer address may still have forwarded: a bucket of
    `burst` per peer, refilled at `rate` a second (sans-IO: the clock is given)."""

    def __init__(
        self,
        burst: int = CANCEL_BURST,
        rate: float = CANCELS_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst, self.rate, self.clock = burst, rate, clock
        # peer → (requests it may still send, when that was counted)
        self._left: dict[str, tuple[float, float]] = {}
        self.refused = 0

    def admit(self, peer: str) -> bool:
        now = self.clock()
        left, at = self._left.get(peer, (float(self.burst), now))
        left = min(float(self.burst), left + (now - at) * self.rate)
        if left < 1:
            self._left[peer] = (left, now)
            self.refused += 1
            return False
        self._left[peer] = (left - 1, now)
        if len(self._left) > CANCEL_PEERS_KEPT:
            self._forget_full(now)
        return True

    def should_log_refusal(self) -> bool:
        """The 1st, 10th, 100th and every 1,000th refusal: a flood does not flood the log."""
        return self.refused in (1, 10, 100) or self.refused % 1000 == 0

    def _forget_full(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._left = {p: v for p, v in self._left.items() if now - v[1] < full_after}


class CancelKeys:
    """The keys this proxy hands its clients in BackendKeyData, each mapped to its
    upstream's key (as pgbouncer does) and to its session: a CancelRequest may end an
    approval wait instead of reaching the server. With several workers, a key names the
    worker that issued it, and a CancelRequest for another worker's key goes to it
    (proxies.runtime.workers)."""

    def __init__(
        self, upstream_host: str, upstream_port: int, connection: ConnectionSettings
    ) -> None:
        self.upstream_host, self.upstream_port = upstream_host, upstream_port
        self.worker = connection.worker
        self.route = (
            CancelRoute(connection, self.forward) if workers_of(connection.options) > 1 else None
        )
        self._upstream: dict[tuple[int, int], tuple[int, int]] = {}
        self._sessions: dict[tuple[int, int], ProxySession] = {}
        self._background: set[asyncio.Future[None]] = set()
        # what clients' CancelRequests may still open upstream, per peer address and per key
        self.budget = CancelBudget()
        self.key_budget = CancelBudget(KEY_CANCEL_BURST, KEY_CANCELS_PER_SECOND)

    async def requested(self, key: tuple[int, int], peer: str) -> None:
        """A client's CancelRequest (on a connection of its own, from `peer`): forwarded
        within the peer's budget, else dropped (logged now and then). The proxy's own
        cancels (a statement past its bound, a session ending) are not counted."""
        if self.budget.admit(peer):
            await self.forward(key)
        elif self.budget.should_log_refusal():
            log.warning(
                "CancelRequest from %s dropped: past %d at once and %g a second per address"
                " (%d dropped so far)",
                peer,
                self.budget.burst,
                self.budget.rate,
                self.budget.refused,
            )

    def issue(self, upstream_key: tuple[int, int], session: ProxySession | None) -> tuple[int, int]:
        key = worker_key(self.worker)
        while key in self._upstream:
            key = worker_key(self.worker)
        self._upstream[key] = upstream_key
        if session is not None:
            self._sessions[key] = session
        return key

    def forget(self, key: tuple[int, int]) -> None:
        self._upstream.pop(key, None)
        self._sessions.pop(key, None)

    async def forward(self, key: tuple[int, int], client: bool = True) -> None:
        """Cancel what the session of `key` runs (or its approval wait). A client's request
        (client: from a CancelRequest, here or handed on by another worker) counts against
        the key's budget; the proxy's own (a statement past its bound, a session ending)
        does not."""
        if self.route is not None and key_worker(key) != self.worker:
            await self.route.hand_on(key)
            return
        session = self._sessions.get(key)
        if session is not None and session.cancel_wait():
            return  # it was waiting for a person, not running upstream
        upstream_key = self._upstream.get(key)
        if upstream_key is None:
            return  # like the server: an unknown key is ignored silently
        if client and not self.key_budget.admit(f"{key[0]}:{key[1]}"):
            if self.key_budget.should_log_refusal():
                log.warning(
                    "CancelRequest for a session dropped: past %d at once and %g a second"
                    " per key (%d dropped so far)",
                    self.key_budget.burst,
                    self.key_budget.rate,
                    self.key_budget.refused,
                )
            return
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
            writer.write(codec.CancelRequest(*upstream_key).encode())
            await writer.drain()
            writer.close()

    def forward_soon(self, key: tuple[int, int]) -> None:
        """forward() in a task kept referenced until it ends (from a callback)."""
        task = asyncio.ensure_future(self.forward(key, client=False))
        self._background.add(task)
        task.add_done_callback(self._background.discard)


class ClientConnection:
    """One client connection: its start-up, then its open session (thousands may idle in
    one worker: slotted)."""

    __slots__ = ("_draining", "_params", "_relay", "_watch_params", "client_addr", "facts",
                 "key", "known", "outbound", "output", "parser", "proxy", "reader", "session",
                 "session_settings", "to_client", "to_upstream", "transaction_limit", "upstream",
                 "writer")  # fmt: skip

    def __init__(
        self, proxy: PostgresProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.proxy = proxy
        # what the proxy knows of the session's database (set once it is reached)
        self.known = proxy.knowledge(proxy.database)
        # the start-up's streams, dropped once the session's relay owns the sockets
        self.reader: asyncio.StreamReader | None = reader
        self.writer: asyncio.StreamWriter | None = writer
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.client_addr = f"{peer[0]}:{peer[1]}"
        self.parser = codec.FrontendParser(startup=True)
        # every byte to the client goes through output.write (to_client)
        self.output = ClientOutput(writer.write)
        self.to_client = self.output.write
        self.session: ProxySession | None = None
        self.upstream: Upstream | None = None
        # how bytes go upstream: the upstream StreamWriter's write, then (the session open,
        # its TLS if any set up) its transport's own
        self.to_upstream: Callable[[bytes], object] | None = None
        self.key: tuple[int, int] | None = None
        # messages for the server: the enforcer queues them, flush_upstream sends them
        self.outbound: list[bytes] = []
        self._params: dict[str, str] | None = None
        # the catalogue watch's: the same but for the settings the client chose
        self._watch_params: dict[str, str] | None = None
        self.session_settings: dict[str, str] = _NO_SETTINGS
        self.transaction_limit = 0.0  # seconds one transaction may stay open (0: no bound)
        # the catalogue facts its statements are judged with (catalog_watch.Facts): names
        # of pg_catalog functions also defined elsewhere in the database, view columns
        # and what they carry (columns.py), operator and type names the database defines
        # outside pg_catalog (user_code.py)
        self.facts = NO_FACTS
        # the open session's relay, and the task ending it once quiet (a drain)
        self._relay: _Relay | None = None
        self._draining: asyncio.Future[None] | None = None

    # -- writing -------------------------------------------------------------------------

    def _notice(self, text: str) -> None:
        """A NoticeResponse during start-up (the protocol allows one at any time)."""
        self.to_client(codec.notice_response(text).encode())

    def fatal(self, message: str, sqlstate: str) -> None:
        self.to_client(codec.error_response(message, sqlstate, severity="FATAL").encode())

    # -- start-up ------------------------------------------------------------------------

    async def _next_message(self) -> codec.Message | None:
        pending: list[codec.Message] = []
        reader = self.reader
        assert reader is not None
        while not pending:
            data = await reader.read(READ_SIZE)
            if not data:
                return None
            pending = self.parser.feed(data)
        if len(pending) > 1:
            raise codec.ProtocolViolation("client sent more than one start-up message at once")
        return pending[0]

    async def _startup(self) -> codec.StartupMessage | None:
        while True:
            message = await self._next_message()
            if message is None:
                return None
            if isinstance(message, codec.SSLRequest):
                if self.proxy.tls is None:
                    self.to_client(codec.SSL_REFUSED)
                    continue
                self.to_client(codec.SSL_ACCEPTED)
                writer = self.writer
                assert writer is not None
                await writer.drain()
                await writer.start_tls(self.proxy.tls)
                continue
            if isinstance(message, codec.GSSENCRequest):
                self.to_client(codec.SSL_REFUSED)
                continue
            if isinstance(message, codec.CancelRequest):
                peer = self.client_addr.rpartition(":")[0]
                await self.proxy.cancels.requested((message.pid, message.secret), peer)
                return None
            if isinstance(message, codec.StartupMessage):
                if message.protocol & 0xFFFF:
                    # 3.2 and later: the proxy speaks 3.0 to both sides (upstream too), and
                    # says so as the server would, before authentication; else the client
                    # would take its minor version to be in effect (3.2's longer keys)
                    self.to_client(codec.NegotiateProtocolVersion(0, []).encode())
                return message
            raise codec.ProtocolViolation(f"unexpected {type(message).__name__} in start-up")

    async def _token(self) -> str | None:
        self.to_client(codec.AuthenticationCleartextPassword().encode())
        limit, self.parser.max_frame = self.parser.max_frame, MAX_PASSWORD_FRAME
        try:
            message = await self._next_message()
        finally:
            self.parser.max_frame = limit
        if not isinstance(message, codec.PasswordMessage):
            return None
        return message.password()

    async def run(self) -> None:
        try:
            if await self._start():
                await self._serve()
        finally:
            self._close_client()

    def _close_client(self) -> None:
        """The client's socket closed: by its relay once that owns it, else its stream."""
        relay = self._relay
        if relay is not None and relay.close(CLIENT):
            return
        if self.writer is not None:
            self.writer.close()

    async def _start(self) -> bool:
        """Start-up to an open session; True once open. Its own frame: the start-up packet
        and the token are gone once it returns, not held for the session's life."""
        try:
            async with asyncio.timeout(STARTUP_TIMEOUT):
                startup = await self._startup()
                if startup is None:
                    return False
                writer = self.writer
                assert writer is not None
                if self.proxy.tls is not None and writer.get_extra_info("ssl_object") is None:
                    # the password is the client's token: with a certificate to offer, it
                    # is never asked for over plaintext (sslmode=disable, or a MITM's 'N')
                    self.fatal("portcullis: this proxy requires TLS (sslmode=require)", "28000")
                    return False
                token = await self._token()
                if not token:
                    self.fatal("portcullis: a token is required as the password", "28000")
                    return False
                return await self._open(startup, token)
        except codec.ProtocolViolation as exc:
            self.fatal(f"portcullis: protocol violation: {exc}", "08P01")
            return False
        except TimeoutError:
            self.fatal("portcullis: start-up took too long", "08006")
            return False

    async def _open(self, startup: codec.StartupMessage, token: str) -> bool:
        params = startup.params
        runtime = self.proxy.runtime
        if runtime.drain.started:  # as the server says while it shuts down
            self.fatal("portcullis: the proxy is shutting down", "57P03")
            return False
        try:
            requested = requested_settings(params)
            self._check_database(params)
        except StartupRefused as exc:
            self.fatal(f"portcullis: {exc}", "22023")
            return False
        self.session = ProxySession(
            runtime, self.client_addr, params.get("application_name", "")[:256]
        )
        try:
            await self.session.open(
                token,
                {
                    "user": params.get("user", ""),
                    "database": params.get("database", ""),
                    # judged by policy at session.open like SET; a refusal names one
                    "settings": {name.lower(): value for name, value in requested.items()},
                },
                tell=self._notice,
            )
        except SessionRefused as exc:
            self.fatal(f"portcullis: session refused: {exc.reason}", "28000")
            self.session = None
            return False
        lease = self.session.lease
        assert lease is not None
        self.output.guard(lease.secrets())
        database = self.proxy.database or params.get("database") or params.get("user", "")
        grant = self.session.grant
        assert grant is not None
        shared = self.proxy.shared
        chosen = dict(grant.ruling.verdict.session_settings)
        self.transaction_limit = statement_limit(
            {k.lower(): v for k, v in chosen.items()}, "transaction_timeout"
        )
        self.session_settings = shared(session_pins(chosen, self.proxy.pooler))
        self._params = shared(
            upstream_params(
                lease.username, database, requested, self.session_settings, self.proxy.pooler
            )
        )
        self._watch_params = shared(
            upstream_params(lease.username, database, {}, self.session_settings, self.proxy.pooler)
        )
        try:
            self.upstream = await connect(
                self.proxy.upstream_host,
                self.proxy.upstream_port,
                self._params,
                lease,
                self.proxy.upstream_tls,
            )
        except UpstreamError as exc:
            self.fatal(f"portcullis: {exc}", "08006")
            await self.session.close("upstream_unavailable", abnormal=True)  # counted there
            self.session = None
            return False
        pins = role_pins(self.session_settings, self.proxy.pooler)
        refused = await pooler_refusal(self.upstream, pins, lease.username, database)
        if refused is not None:
            self.fatal(f"portcullis: {refused}", "55000")
            self.upstream.writer.close()
            await self.session.close("upstream_settings_unpinned", abnormal=True)
            self.session = None
            return False
        self.known = self.proxy.knowledge(database)
        # the catalogue facts the policy needs (catalog_watch.read_facts), kept new by the
        # database's catalogue watch while the session is open
        facts = await self.known.catalog.session_facts(self.upstream)
        if facts is None:
            self.fatal("portcullis: the upstream catalog could not be read", "08006")
            await self.session.close("upstream_unavailable", abnormal=True)
            self.session = None
            return False
        self.take_facts(facts)
        self.known.catalog.adopt(facts)
        await self.known.catalog.opened(self.credentials)
        if self.proxy.pooler:
            await self._prefetch_columns(self.upstream)
        self._greet(self.upstream)
        return True

    def credentials(self) -> tuple[dict[str, str], CredentialLease] | None:
        """This session's upstream parameters and lease while it is open, for the catalogue
        watch, which every session shares: without the settings the client chose (a
        reader's shorter statement_timeout or deferrable serializable default could fail or
        stall the watch's questions for everyone, each failure refusing every session's
        statements)."""
        session = self.session
        if session is None or session.lease is None or self._watch_params is None:
            return None
        return self._watch_params, session.lease

    def take_facts(self, facts: Facts) -> None:
        """The catalogue facts this session's statements are judged with from now on."""
        self.facts = facts
        relay = self._relay
        if relay is not None:
            relay.enforcer.take_facts(
                facts.shadowed, facts.view_columns, facts.relation_sources, facts.user_code
            )

    async def fresh_facts(self) -> bool | None:
        """For a statement being decided: the catalogue asked again, and its facts taken
        when they are newer than this session's (code made since it started): True then;
        None when it could not be read (the session then reuses no verdict until it is)."""
        facts = await self.known.catalog.fresh(self.credentials)
        relay = self._relay
        if facts is None:
            if relay is not None:
                relay.enforcer.facts_unknown()
            return None
        if relay is not None:
            relay.enforcer.facts_known()
        return self.newer_facts(facts)

    def newer_facts(self, facts: Facts) -> bool:
        """Facts the watch read: taken when newer and of another catalogue (True), else
        only remembered as what this session's are (no statement asked again)."""
        if facts.read_at <= self.facts.read_at:
            return False
        if same_catalogue(facts, self.facts):
            self.facts = facts
            return False
        self.take_facts(facts)
        return True

    def _check_database(self, params: dict[str, str]) -> None:
        """A database the client names must be the connection's (libpq names the user's
        own when none is given): a session never lands elsewhere without a word."""
        configured = self.proxy.database
        asked = params.get("database", "")
        if configured and asked and asked not in (configured, params.get("user", "")):
            raise StartupRefused(
                f"start-up parameter database = {asked[:64]!r} is refused: connection "
                f"{self.proxy.connection.name} serves database {configured!r}"
            )

    def _greet(self, upstream: Upstream) -> None:
        """AuthenticationOk, the server's parameters, a proxy-issued key, ReadyForQuery."""
        out = codec.AuthenticationOk().encode()
        for status in upstream.parameters:
            out += status.encode()
        if upstream.key is not None:
            key = self.proxy.cancels.issue((upstream.key.pid, upstream.key.secret), self.session)
            self.key = key
            out += codec.BackendKeyData(*key).encode()
        out += codec.ready_for_query(upstream.status).encode()
        self.to_client(out)

    # -- the session -----------------------------------------------------------------------

    async def _serve(self) -> None:
        assert self.session is not None and self.upstream is not None
        upstream = self.upstream
        tracker = ResponseTracker()
        tracker.status = upstream.status
        tracker.column_origins = self.known.column_origins
        tracker.on_catalog_written = self.known.catalog.written
        tracker.code_names = lambda: self.facts.code_names
        tracker.pinned = self.proxy.shared(pinned_settings(self.session_settings))
        for status in upstream.parameters:
            tracker.watch(status.name, status.value)
        enforcer = Enforcer(
            tracker,
            self.proxy.hash_key,
            self.session.ruling_now,
            self.session_settings,
            self.session.halted,
            self.proxy.pdp_revision,
            self.outbound,
        )
        facts = self.facts
        enforcer.shadowed = tuple(facts.shadowed)
        enforcer.view_columns = facts.view_columns
        enforcer.relation_sources = facts.relation_sources
        enforcer.user_code = facts.user_code
        if self.proxy.pooler:
            enforcer.pooler = self.proxy.pooler
            # no read-only lift for an approved write: its SET would stay on a server
            # connection whose next transaction may be another session's
            enforcer.read_only = False
            tracker.notifications = False  # (another session's: ResponseTracker)
        relay = _Relay(self, enforcer, tracker, statement_limit(self.session_settings))
        self._relay = relay
        # the session ends when its relay does: a grant's or token's end ends the relay
        # (one future awaited; the end is a place in the runtime's Deadlines, no timer,
        # future or callbacks per session)
        self.session.end_at_expiry(self._window_closed)
        reason, abnormal = "client_disconnect", False
        del upstream  # (this frame lives as long as the session: the relay drops its streams)
        try:
            if tracker.broken:  # the server did not take a pin at start-up
                relay.stop_pinned()
            relay.start()
            drain = self.proxy.runtime.drain
            if drain.started:  # it opened while the proxy began to drain
                self.drain(drain.forced)
            reason = await relay.ended
            abnormal = reason not in (
                "client_disconnect", "client_terminate", "grant_expired", "token_expired",
                "proxy_shutdown",
            )  # fmt: skip
            if not tracker.idle and self.key is not None:
                # the client left mid-query: stop the query, not just the socket
                await self.proxy.cancels.forward(self.key, client=False)
        except asyncio.CancelledError:
            reason, abnormal = "proxy_shutdown", False
            raise
        finally:
            self.session.stop_expiry()
            draining = self._draining
            if draining is not None:
                draining.cancel()
                await asyncio.gather(draining, return_exceptions=True)
            await relay.stop()
            relay.forget_frames()
            if not relay.close(SERVER) and self.upstream is not None:
                self.upstream.writer.close()  # the relay never took it
            if self.key is not None:
                self.proxy.cancels.forget(self.key)
            await self._close_session(reason, abnormal)

    def unknown_tables(self, messages: Sequence[codec.Message]) -> set[int]:
        """Tables in these results whose columns masking does not know yet."""
        db = self.known
        if db.catalog_stale():
            db.forget_columns()
        if time.monotonic() - db.catalog_failed_at < CATALOG_RETRY:
            return set()  # what cannot be named is masked until asking again
        known, whole = db.column_origins, db.known_descriptions
        unknown: set[int] = set()
        for m in messages:
            if type(m) is not codec.RowDescription or m.raw in whole:
                continue
            tables = {
                f.table_oid
                for f in m.fields
                if f.table_oid and (f.table_oid, f.column) not in known
            } - db.unnamed_tables
            if tables:
                unknown |= tables
            elif m.raw:
                # a session's results describe themselves alike: once known, by their bytes
                if len(whole) >= 256:
                    whole.clear()
                whole.add(m.raw)
        return unknown

    async def _prefetch_columns(self, upstream: Upstream) -> None:
        """Behind a pooler, while what the proxy knows of the columns is empty or stale: the
        columns of the database's relations, learnt on the session's own connection
        before the client is let in, so masking needs no connection of its own."""
        db = self.known
        if db.column_origins and not db.catalog_stale():
            return
        oids = await relation_oids(upstream)
        if oids:
            db.forget_columns()
            await self.learn_columns(oids, lambda sql: session_rows(upstream, PINNED_PATH + sql))

    async def learn_columns(
        self,
        unknown: set[int],
        ask: Callable[[str], Awaitable[list[list[str | None]] | None]] | None = None,
    ) -> bool:
        """Before rows are masked: what each of the result's table columns is (views
        resolved through their stored queries, proxies.postgres.columns), asked on a
        connection of the proxy's own unless `ask` says where. False when the catalog
        could not be read: masking then treats those columns as unknown (masked), and
        does not ask again for CATALOG_RETRY seconds."""
        ask = ask or self._side_query
        attributes: dict[tuple[int, int], tuple[str, str, str | None]] = {}
        dependencies: dict[int, set[str]] = {}
        pending, seen = set(unknown), set[int]()
        known_tables = {table for table, _ in self.known.column_origins}
        for _ in range(MAX_VIEW_DEPTH):
            if not pending:
                break
            rows = await ask(attributes_sql(pending))
            if rows is None:
                self.known.catalog_failed_at = time.monotonic()
                return False
            seen |= pending
            views: set[int] = set()
            reached: set[int] = set()
            for table, attnum, name, kind, action in rows:
                key = (int(table or 0), int(attnum or 0))
                attributes[key] = (name or "", kind or "", action)
                if kind in VIEW_KINDS:
                    views.add(key[0])
                    reached |= {t for t, _ in view_origins(action or "").values() if t}
            if views:
                needs = await ask(dependencies_sql(views))
                if needs is None:
                    self.known.catalog_failed_at = time.monotonic()
                    return False
                for view, table, _, name in needs:
                    dependencies.setdefault(int(view or 0), set()).add(name or "")
                    reached.add(int(table or 0))
            pending = reached - seen - known_tables
        origins = resolve(CatalogRows(attributes, dependencies, set()), self.known.column_origins)
        self.known.column_origins.update(origins)
        found = {table for table, _ in origins}
        self.known.unnamed_tables |= {oid for oid in unknown if oid not in found}
        return True

    async def _side_query(self, sql: str) -> list[list[str | None]] | None:
        session = self.session
        if session is None or session.lease is None or self._params is None:
            return None
        return await side_query(
            self.proxy.upstream_host,
            self.proxy.upstream_port,
            self._params,
            session.lease,
            PINNED_PATH + sql,  # the proxy's catalogue question: pg_catalog's names only
            self.proxy.upstream_tls,
        )

    async def source_columns(self, sql: str) -> list[str] | None:
        """The names of the columns a query returns, each as its table calls it where it
        is a table's column (so an alias hides nothing), else as the result calls it; a
        computed view column adds every column its view reads. A column that is no stored
        table column as it is (an expression, aggregate, function output, computed view
        column) adds COMPUTED as well: the derived rule masks such a column in a SELECT,
        and a COPY cannot. None when a column cannot be told."""
        session = self.session
        if session is None or session.lease is None or self._params is None:
            return None
        fields = await described_fields(
            self.proxy.upstream_host,
            self.proxy.upstream_port,
            self._params,
            session.lease,
            sql,
            self.proxy.upstream_tls,
        )
        if fields is None:
            return None
        origins = self.known.column_origins
        unknown = {f.table_oid for f in fields if f.table_oid} - self.known.unnamed_tables
        if {t for t in unknown if not any((t, f.column) in origins for f in fields)}:
            await self.learn_columns(unknown)
        names = []
        computed = False
        for f in fields:
            names.append(f.name)
            if not f.table_oid:
                computed = True
                continue
            origin = origins.get((f.table_oid, f.column))
            if origin is None or "*" in origin.derived_from:
                return None
            computed = computed or origin.derived
            names.extend((origin.name, *origin.derived_from))
            if origin.derived:
                names.append(VIEW_COMPUTED)
        if computed:
            names.append(COMPUTED)
        return names

    async def resolve_function(self, oid: int) -> str | None:
        return await self._catalog_name("function", oid)

    async def resolve_type(self, oid: int) -> str | None:
        return await self._catalog_name("type", oid)

    async def _catalog_name(self, kind: str, oid: int) -> str | None:
        session = self.session
        if session is None or session.lease is None or self._params is None:
            return None
        return await catalog_name(
            self.proxy.upstream_host,
            self.proxy.upstream_port,
            self._params,
            session.lease,
            kind,
            oid,
            self.proxy.upstream_tls,
        )

    # -- a drain (proxies.runtime.drain) -------------------------------------------------

    def drain(self, force: bool) -> None:
        """The proxy drains: end this session once nothing it sent is unanswered (at once
        when forced) with FATAL 57P01 admin_shutdown, as the server does on a fast
        shutdown. Still starting up: told only when forced (else it ends once open)."""
        relay = self._relay
        if relay is None:
            if force:
                self.fatal(f"portcullis: {SHUTDOWN_MESSAGE}", "57P01")
                self._close_client()
            return
        if force or relay.quiet():
            self._shut_down(relay)
        elif self._draining is None:
            self._draining = asyncio.ensure_future(self._end_when_quiet(relay))

    async def _end_when_quiet(self, relay: _Relay) -> None:
        # woken when the server's answers leave the session idle; looked at again now and
        # then as well (a statement denied by the proxy never reaches the server)
        while not relay.ended.done() and not relay.quiet():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await relay.until_idle(relay.quiet)
        self._shut_down(relay)

    def _shut_down(self, relay: _Relay) -> None:
        if relay.ended.done():
            return
        # what still runs upstream is cancelled as the session ends (_serve); the socket
        # closes right after the error, as the server's does (a client that reads the
        # error while idle then sees the connection gone, not a half-open one)
        self.fatal(f"portcullis: {SHUTDOWN_MESSAGE}", "57P01")
        relay.end("proxy_shutdown")
        self._close_client()

    def _window_closed(self, reason: str, text: str) -> None:
        """A just-in-time grant ran out, or the client's token expired: the session ends
        (57P01, as an administrator's shutdown of the backend)."""
        relay = self._relay
        try:
            self.fatal(f"portcullis: {text}", "57P01")
        except Exception:
            reason = "error: grant expiry"
            raise
        finally:
            if relay is not None:
                relay.end(reason)

    def cancel_statement(self) -> None:
        """Cancel what runs upstream (a CancelRequest, as the client could send)."""
        if self.key is not None:
            self.proxy.cancels.forward_soon(self.key)

    async def _close_session(self, reason: str, abnormal: bool) -> None:
        if self.facts is not NO_FACTS:  # the catalogue watch was told it opened
            self.facts = NO_FACTS
            self.known.catalog.closed()
        session = self.session
        if session is None:
            return
        self.output.account(session.counters)
        await asyncio.shield(session.close(reason, abnormal))

    def flush_upstream(self) -> None:
        """One write per client read: the messages a client pipelines go up together."""
        outbound = self.outbound
        if outbound:
            write = self.to_upstream
            if write is None:
                if self.upstream is None:
                    return
                write = self.upstream.writer.write
            write(outbound[0] if len(outbound) == 1 else b"".join(outbound))
            outbound.clear()

    @staticmethod
    def record(tracker: ResponseTracker, session: ProxySession) -> None:
        """One event per completed statement: the command, its verdict and its result."""
        completions = tracker.completions
        for done in completions:
            rows = done.rows
            session.egress_rows += rows  # egress budgets
            ruling = done.ruling
            if ruling is not None and not (done.part or done.error or done.masked):
                # the usual statement: its event without a details dict (same record)
                session.record_statement(
                    done.command, ruling, done.tag, rows, done.protocol, done.prepared
                )
                continue
            details: dict[str, Any] = {
                "tag": done.tag,
                "rows": done.rows,
                "protocol": done.protocol,
            }
            if done.prepared is not None:
                details["prepared"] = done.prepared
            if done.part:
                details["part"] = done.part
            if done.error:
                details["error"] = done.error
            if done.ruling is not None:
                session.record_command(done.command, done.ruling, **details)
            else:
                session.record_response(decision_id=done.decision_id, **details)
            if done.masked:
                session.record_masking(dict(done.masked), done.decision_id)
        completions.clear()


class _Relay(Relay):
    """The two directions of a Postgres session once it is open: the runtime's Relay with
    Postgres's callbacks.

    Client bytes → FrontendParser → Enforcer → upstream; server bytes → BackendParser →
    ResponseTracker → client, or, for a chunk of plain answers while nothing owed is
    masked or made up, BackendParser.plain_answers → ResponseTracker.plain, and the
    server's bytes unchanged → client (while something owed masks and nothing is made up,
    BackendParser.plain_answers with its rows → ResponseTracker.masked → client).
    Whatever needs no PDP round trip (a reused verdict, the Bind/Execute/Sync of an
    allowed statement, every server answer) is done inside the callback, with no task
    switch and no await. When a message must ask the PDP, or a result must wait for its
    column names, the chunk is finished in a task while that side is held (Relay.wait).
    """

    __slots__ = ("_client_watch", "_frames_held", "_frames_poll", "_frames_waiter",
                 "_transaction_began", "_transaction_idles", "chunks", "conn", "enforcer",
                 "parser", "tracker", "transaction_limit")  # fmt: skip

    def __init__(
        self,
        conn: ClientConnection,
        enforcer: Enforcer,
        tracker: ResponseTracker,
        statement_limit: float = 0.0,
    ) -> None:
        super().__init__(self._client_data, self._server_data, statement_limit, "postgres proxy")
        self.conn = conn
        self.enforcer = enforcer
        self.tracker = tracker
        self.chunks = 0  # the client's chunks so far (progress of a batch left open)
        # a transaction's age (startup.PROXY_KEPT): the bound, and since when the open one
        # is counted (the first client chunk after the tracker's idles last moved)
        self.transaction_limit = conn.transaction_limit
        self._transaction_idles = -1
        self._transaction_began = 0.0
        assert conn.upstream is not None
        self.parser = conn.upstream.parser  # the server's messages
        # bytes of large frames this session holds (frame_budget.BUDGET), the check that
        # gives them back as the client reads them, and what the budget calls to grant more
        self._frames_held = 0
        self._frames_poll: asyncio.TimerHandle | None = None
        self._frames_waiter = self._frames_granted
        # the look at the client's socket while a command waits for a person
        self._client_watch: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Take both sockets over from their streams (what a stream already holds first).
        From now on bytes are written to the transports themselves, not through their
        StreamWriters (a Python call less for each write; their TLS, if any, is set up by
        now, so a transport is the one the stream writes to), and the connection drops
        both sides' streams and its Upstream: an idle session holds its relay, not two
        sets of stream objects (relay.RelayWriter)."""
        conn = self.conn
        upstream, reader, writer = conn.upstream, conn.reader, conn.writer
        assert upstream is not None and reader is not None and writer is not None
        self.adopt(writer, upstream.writer)
        conn.output.write_with(writer.transport.write)
        conn.to_upstream = upstream.writer.transport.write
        if upstream.pending:
            self._answer(upstream.pending)
            upstream.pending = []
        self.catch_up(reader, upstream.reader)
        conn.reader = conn.writer = None
        conn.upstream = None

    async def settle(self) -> None:
        """Send what is queued (with a Flush inside an extended batch, so the server sends
        its answers) and wait until the server has answered everything sent."""
        if self.enforcer.batch_forwarded:
            self.conn.outbound.append(codec.Flush().encode())
        self.conn.flush_upstream()
        tracker = self.tracker
        await self.until_idle(lambda: tracker.idle)

    def stop_pinned(self) -> None:
        """The server reported a pinned setting moved: tell the client, record it, end."""
        reason = self.tracker.broken
        session = self.conn.session
        if session is not None:
            session.record_response(error="pinned_setting_changed", reason=reason)
        self.conn.fatal(f"portcullis: {reason}", "55000")
        self.end("pinned_setting_changed")

    def quiet(self) -> bool:
        """Nothing of the client's is unanswered or being decided: between statements."""
        return self.tracker.idle and not self.waiting(CLIENT) and not self.waiting(SERVER)

    # -- the statement watchdog (Relay.arm_watchdog) -----------------------------------------

    # A batch of the extended protocol left open (Execute, then Flush and no Sync) keeps
    # its implicit transaction, snapshot and locks while the client says nothing, and the
    # server arms its idle_in_transaction_session_timeout only before a ReadyForQuery,
    # which only a Sync brings: the watchdog watches it too, and a batch the client left
    # open for the statement bound, the server having answered all of it, ends the session
    # as the server ends one idle in a transaction.

    def busy(self) -> bool:
        return not self.tracker.idle or self._left_open()

    def _left_open(self) -> bool:
        """A batch the client left open: something of it went upstream, no Sync yet, and
        the proxy is not deciding what came next (an approval may take minutes)."""
        return self.enforcer.batch_forwarded and not self.waiting(CLIENT)

    def progress(self) -> int:
        return self.tracker.readies + self.chunks

    def overdue(self) -> None:
        conn = self.conn
        if self.tracker.idle and self._left_open():
            if conn.session is not None:
                conn.session.record_response(
                    error="idle_in_transaction_timeout", limit=self._statement_limit
                )
            conn.fatal(
                "portcullis: terminating connection due to idle-in-transaction timeout"
                " (an extended-protocol batch left without Sync)",
                "25P03",
            )
            self.end("idle_in_transaction_timeout")
            return
        if conn.key is None:
            return
        if conn.session is not None:
            conn.session.record_response(error="statement_timeout", limit=self._statement_limit)
        conn.cancel_statement()

    def _transaction_overdue(self) -> bool:
        """Whether the open transaction is older than policy's transaction_timeout; if so
        the session ends as PostgreSQL 17 ends one (FATAL 25P04), before this chunk goes
        on. Its age counts from the client's first chunk inside it: a transaction kept
        open by a statement every minute ends at the first one past the bound (a quiet
        one sooner, by the idle bound the server keeps)."""
        tracker, now = self.tracker, time.monotonic()
        if self._transaction_idles != tracker.idles:
            self._transaction_idles, self._transaction_began = tracker.idles, now
            return False
        if now - self._transaction_began <= self.transaction_limit:
            return False
        conn = self.conn
        if conn.session is not None:
            conn.session.record_response(error="transaction_timeout", limit=self.transaction_limit)
        conn.fatal("portcullis: terminating connection due to transaction timeout", "25P04")
        self.end("transaction_timeout")
        return True

    # -- client → server ---------------------------------------------------------------

    def _client_data(self, data: bytes) -> None:
        # held_back("client", data), spelt out: asked for every chunk
        if self.ended.done():
            return
        if self._client.waiting is not None:
            self._client.queue(data)
            return
        self.chunks += 1
        if self.transaction_limit and self.tracker.status != "I" and self._transaction_overdue():
            return
        conn, enforcer = self.conn, self.enforcer
        catalog = conn.known.catalog
        newest = catalog.facts
        if newest is not conn.facts and newest is not None and newest.read_at > conn.facts.read_at:
            conn.newer_facts(newest)  # the watch read the catalogue since (catalog_watch)
        if catalog.lost:
            enforcer.facts_unknown()  # fail closed until it is read again
        elif enforcer.unsure:
            enforcer.facts_known()
        try:
            parser = conn.parser
            # (a chunk that does not open with a Query is never one: no call for it)
            messages = parser.lone_query(data) if data[0] == _QUERY else None
            if messages is not None:
                # the simple protocol's statement: one Query, its verdict usually reused
                if not enforcer.simple_query(messages[0]):  # type: ignore[arg-type]
                    self.wait("client", self._ask(messages))
                    return
            else:
                # a prepared statement's run (Bind, then what came after the last one)
                messages = parser.bound_run(data)
                if messages is None:
                    messages = parser.feed(data)
                elif enforcer.bound_run(messages, data):
                    messages = []
                for n, message in enumerate(messages):
                    if not enforcer.now(message):
                        self.wait("client", self._ask(messages[n:]))
                        return
                    if enforcer.terminated:
                        break
        except codec.ProtocolViolation as exc:
            self._carry_out()
            self._violation(exc)
            return
        except Exception as exc:
            self.failed(exc)
            return
        # _sent(), spelt out: after every client chunk
        if enforcer.actions:
            self._carry_out()
        outbound = conn.outbound
        if outbound:
            write = conn.to_upstream
            if write is None:
                conn.flush_upstream()
            else:
                write(outbound[0] if len(outbound) == 1 else b"".join(outbound))
                outbound.clear()
        if enforcer.terminated:
            self.end("client_terminate")
        elif self._statement_limit and self._watchdog is None:
            self.arm_watchdog()

    async def _ask(self, messages: list[codec.Message]) -> None:
        """The rest of a chunk, from a message that must wait on (now() has already
        turned that one down: its steps run at once), the enforcer's requests performed
        by an EnforcerDriver."""
        conn, enforcer = self.conn, self.enforcer
        assert conn.session is not None
        driver = EnforcerDriver(
            enforcer,
            conn.session,
            conn.to_client,
            self.settle,
            conn.source_columns,
            conn.resolve_function,
            conn.resolve_type,
            # a decision is judged with the catalogue as it is now: a view, function or
            # operator made since the session started is known to it
            conn.fresh_facts,
            person_wait=self._watch_client,
        )
        try:
            await driver.finish(enforcer.ask(messages[0]))
            for message in messages[1:]:
                if enforcer.terminated:
                    break
                await driver.handle(message)
        except codec.ProtocolViolation as exc:
            driver.carry_out()
            self._violation(exc)
            return
        self._sent()

    def _watch_client(self) -> None:
        """A command began to wait for a person. The client's socket is not read while its
        chunk is finished (what it sends meanwhile waits its turn), so a client that left
        would be seen gone only once the wait ended: the request would stay pending, and
        an approval given then would run the command for nobody, its answer unread and
        unrecorded. So the socket is looked at, never read, until the wait ends: the peer
        gone (closed, reset) cancels the wait as a CancelRequest does (its request
        withdrawn; the session then ends as the client's close is read)."""
        session, transport = self.conn.session, self._client.transport
        if self._client_watch is not None or session is None or transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is None:
            return
        self._client_watch = asyncio.ensure_future(self._until_client_left(session, sock))

    async def _until_client_left(self, session: ProxySession, sock: Any) -> None:
        poller = select.poll()
        # the peer's FIN even with bytes unread (a TLS close_notify, a pipelined query);
        # POLLHUP and POLLERR (a reset) are reported whatever is asked
        poller.register(sock.fileno(), _PEER_GONE)
        try:
            while self._client.waiting is not None and not self.ended.done():
                await asyncio.sleep(CLIENT_WATCH_SECONDS)
                if poller.poll(0):
                    session.cancel_wait()
                    return
        except (OSError, ValueError):
            return  # the socket is gone already: the relay ends by itself
        finally:
            self._client_watch = None

    def _carry_out(self) -> None:
        """What the enforcer told besides bytes for the server (records, replies)."""
        session = self.conn.session
        if self.enforcer.actions and session is not None:
            carry_out(self.enforcer, session, self.conn.to_client)

    def _sent(self) -> None:
        enforcer = self.enforcer
        if enforcer.actions:
            self._carry_out()
        # conn.flush_upstream(), spelt out: after every client chunk
        conn = self.conn
        outbound = conn.outbound
        if outbound and conn.to_upstream is not None:
            conn.to_upstream(outbound[0] if len(outbound) == 1 else b"".join(outbound))
            outbound.clear()
        elif outbound:
            conn.flush_upstream()
        if enforcer.terminated:
            self.end("client_terminate")
        elif self._statement_limit and self._watchdog is None:
            self.arm_watchdog()

    def _violation(self, exc: codec.ProtocolViolation) -> None:
        self.conn.flush_upstream()
        self.conn.fatal(f"portcullis: protocol violation: {exc}", "08P01")
        self.end("protocol_violation")

    # -- server → client ---------------------------------------------------------------

    def _server_data(self, data: bytes) -> None:
        self._server_chunk(data)
        if self._frames_held or self.parser.pending_frame >= LARGE:
            self._account_frames()

    # -- large frames: memory the proxy holds for a session (frame_budget) -----------------

    def _account_frames(self) -> None:
        """Take from the process's budget what the frame under way and the client's unsent
        output hold beyond LARGE, or stop reading the server until it can be taken; give
        back what was sent. Checked again while anything is held (the client reading
        makes no callback here)."""
        if self.ended.done():
            self.forget_frames()
            return
        pending = self.parser.pending_frame
        transport = self._client.transport
        unsent = transport.get_write_buffer_size() if transport is not None else 0
        want = (pending if pending >= LARGE else 0) + (unsent if unsent >= LARGE else 0)
        held = self._frames_held
        if want > held:
            if not BUDGET.take(want - held, self._frames_waiter):
                # wait for all of it (holding part while waiting for more could wait forever)
                self.hold(SERVER, FRAMES)
                if held:
                    self._frames_held = 0
                    BUDGET.give(held)
                return
            self._frames_held = want
        elif want < held:
            self._frames_held = want
            BUDGET.give(held - want)
        if FRAMES in self.holds(SERVER):
            self.release(SERVER, FRAMES)
        if self._frames_held and self._frames_poll is None:
            loop = asyncio.get_running_loop()
            self._frames_poll = loop.call_later(FRAMES_POLL, self._frames_polled)

    def _frames_polled(self) -> None:
        self._frames_poll = None
        self._account_frames()

    def _frames_granted(self) -> None:
        # (the budget calls this inside another session's callback: take in a fresh one)
        asyncio.get_running_loop().call_soon(self._account_frames)

    def forget_frames(self) -> None:
        """The session ended: what it held or waited for goes back to the budget."""
        if self._frames_poll is not None:
            self._frames_poll.cancel()
            self._frames_poll = None
        BUDGET.forget(self._frames_waiter)
        held, self._frames_held = self._frames_held, 0
        if held:
            BUDGET.give(held)

    def _server_chunk(self, data: bytes) -> None:
        # held_back("server", data), spelt out: asked for every chunk
        if self.ended.done():
            return
        if self._server.waiting is not None:
            self._server.queue(data)
            return
        parser = self.parser
        tracker = self.tracker
        try:
            rows: list[codec.RowSpan] | None = [] if tracker.masking else None
            answers = parser.plain_answers(data, rows)
            if answers is not None:
                if rows is None and not tracker.quiet_owed and tracker.plain(answers):
                    # the usual case: rows nothing masks go on as the server sent them
                    # (their columns' names are learnt once a result that masks needs them)
                    self._forward(data)
                    return
                if rows is None and tracker.quiet_owed:
                    # a Query the proxy runs prepared: its Parse and Bind answers are its own
                    out = tracker.plain_quiet(answers, data)
                    if out is not None:
                        self._forward(out)
                        return
                if rows is not None and self._masked_lane(answers, rows, data):
                    return
        except Exception as exc:
            self.failed(exc)
            return
        try:
            messages = parser.feed(data)
        except codec.ProtocolViolation as exc:
            self.conn.fatal(f"portcullis: upstream protocol violation: {exc}", "08P01")
            self.end("upstream_protocol_violation")
            return
        self._answer(messages)

    def _masked_lane(
        self, answers: list[codec.PlainAnswer], rows: list[codec.RowSpan], data: bytes
    ) -> bool:
        """A plain chunk of a result that masks: its rows masked where they lie in the
        chunk (ResponseTracker.masked), when the columns of every table it describes are
        known; False, having changed nothing, when it must be parsed and answered message
        by message (a table to learn first, an answer to swallow or replace)."""
        described = [d for _, _, d in answers if d is not None]
        if described and self.conn.unknown_tables(described):
            return False
        out = self.tracker.masked(answers, rows, data)
        if out is None:
            return False
        self._forward(out)
        return True

    def _answer(self, messages: list[codec.Message]) -> None:
        try:
            unknown = self.conn.unknown_tables(messages)
            if unknown:
                self.wait("server", self._learn_then_answer(unknown, messages))
                return
            self._forward_answers(messages)
        except Exception as exc:
            self.failed(exc)

    async def _learn_then_answer(self, unknown: set[int], messages: list[codec.Message]) -> None:
        await self.conn.learn_columns(unknown)
        self._forward_answers(messages)

    def _forward_answers(self, messages: list[codec.Message]) -> None:
        self._forward(b"".join(map(self.tracker.on_backend, messages)))

    def _forward(self, data: bytes) -> None:
        conn = self.conn
        conn.to_client(data)
        session = conn.session
        assert session is not None
        session.egress_bytes += len(data)  # egress budgets: one add per chunk
        tracker = self.tracker
        completions = tracker.completions
        if completions:
            done = completions[0]
            ruling = done.ruling
            if (
                len(completions) == 1
                and ruling is not None
                and not (done.part or done.error or done.masked)
            ):  # record(), spelt out for the usual one statement completed in a chunk
                session.egress_rows += done.rows
                session.record_statement(
                    done.command, ruling, done.tag, done.rows, done.protocol, done.prepared
                )
                completions.clear()
            else:
                conn.record(tracker, session)
        if tracker.broken:
            self.stop_pinned()
        elif self._idle_waiters and tracker.idle:
            self.wake_idle()
