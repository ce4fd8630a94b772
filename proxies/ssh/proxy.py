"""The SSH proxy's asyncio side: an SSH server to clients, an SSH client to the upstream.

Stands on the runtime (proxies.runtime): ProxySession for the session's lifecycle (open
with the client's JWT, decide, approval waits, recording, close and release of the
credential), ClientOutput for every byte a client is sent (counted, scanned for the
upstream key). asyncssh speaks SSH on both sides; this module is the glue between them.

- Authentication: the JWT as the password, or as the answer of a keyboard-interactive
  prompt (no public-key login). A refusal is told in the authentication banner.
- Channels: each session channel's request (exec, shell, subsystem) is accepted on the
  wire and decided before anything reaches the upstream: denied → the reason on stderr
  and exit status 1; require_approval → the request id on stderr while it waits (Ctrl-C
  as \\x03, an INT signal or a break withdraws it; so does the client going away);
  allowed → a channel of the same request on the upstream connection, relayed with
  backpressure both ways, its exit status or signal passed back.
- The upstream connection is opened at the first allowed channel with the session's
  credential (a private key, a Vault-signed certificate, or a password), the upstream's
  host key checked (keys.UpstreamTrust); one per client connection.
- Output of a `mask` verdict passes the detectors (stream.MaskedOutput). Shells and
  commands run with a terminal are recorded as asciicast v2 events (stream.Cast).
- Forwarding: a direct-tcpip channel (`ssh -L`) is decided as ssh.forward and, when
  allowed, tunnelled through the upstream connection; remote forwarding (`ssh -R`) is
  decided and never relayed; agent and X11 forwarding are refused by the server options
  (the upstream is reached with the proxy's credential, not the client's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from typing import Any

import asyncssh

from portcullis.config import Config, ConnectionSettings
from portcullis.protocols import workers_of
from portcullis.verdict import Verdict, VerdictKind
from proxies.runtime.credentials import CredentialUnavailable
from proxies.runtime.exposure import ClientOutput
from proxies.runtime.listener import split_address
from proxies.runtime.masking import Masker, masking_key
from proxies.runtime.pdp_client import Ruling, SessionRefused
from proxies.runtime.secrets_scan import SecretScanner
from proxies.runtime.session import ProxyRuntime, ProxySession
from proxies.ssh import keys
from proxies.ssh.stream import Cast, MaskedOutput

log = logging.getLogger("portcullis.ssh")

MAX_AUTH_ATTEMPTS = 3
LOGIN_TIMEOUT = 60.0
UPSTREAM_TIMEOUT = 15.0
UPSTREAM_CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)
QUIET_FLUSH = 0.05  # an interactive upstream quiet this long: held output goes out
CAST_BATCH = 256  # asciicast events per recorded event
CAST_EVERY = 1.0  # seconds between recorded asciicast batches
MAX_PENDING_STDIN = 1024 * 1024  # stdin held while a channel is decided
CANCEL_SIGNALS = frozenset({"INT", "TERM", "HUP", "QUIT", "KILL"})
SFTP_REFUSED = "SFTP is decided per operation, which this proxy does not do yet: refused"
KBDINT_PROMPT = ("Portcullis", "Paste your access token (JWT).", "", [("Token: ", False)])


def _exec_details(
    kind: str, exit_status: int | None, out: int, err: int, inp: int, error: str = ""
) -> dict[str, Any]:
    """A channel's command event details (pdp.domain.timeline.ssh_exec_details's shape)."""
    details: dict[str, Any] = {
        "kind": "ssh.shell" if kind == "ssh.shell" else "ssh.exec",
        "exit_status": exit_status,
        "stdout_bytes": out,
        "stderr_bytes": err,
        "stdin_bytes": inp,
    }
    if kind == "ssh.subsystem":
        details["subsystem"] = True
    if error:
        details["error"] = error
    return details


class SshProxy:
    """One listening SSH proxy for one configured connection."""

    def __init__(
        self,
        connection: ConnectionSettings,
        config: Config,
        pdp_address: str,
        runtime: ProxyRuntime | None = None,
    ) -> None:
        self.connection = connection
        # the launcher's (over the process's PDP client), or one of its own when built alone
        self.runtime = runtime or ProxyRuntime.build(
            connection,
            pdp_address,
            vault=config.vault,
            approval_timeout=config.approvals.timeout_seconds,
            config=config,
        )
        self.host, self.requested_port = split_address(connection.listen)
        self.upstream_host, self.upstream_port = split_address(connection.upstream)
        self.host_key = keys.host_key(connection)
        self.trust = keys.UpstreamTrust(connection)
        self.hash_key = masking_key(config.masking_hash_key, connection.name)
        self.clients: set[ClientConnection] = set()
        self.closing: set[asyncio.Future[None]] = set()  # sessions of gone clients, closing
        self._changed = asyncio.Event()
        self._acceptor: asyncssh.SSHAcceptor | None = None

    @property
    def port(self) -> int:
        assert self._acceptor is not None, "not listening"
        return int(self._acceptor.get_port())

    @property
    def fingerprint(self) -> str:
        return keys.fingerprint(self.host_key)

    async def start(self) -> None:
        await self.runtime.start()
        self._acceptor = await asyncssh.listen(
            self.host,
            self.requested_port,
            server_factory=lambda: ClientConnection(self),
            server_host_keys=[self.host_key],
            agent_forwarding=False,
            x11_forwarding=False,
            line_editor=False,
            encoding=None,
            login_timeout=LOGIN_TIMEOUT,
            public_key_auth=False,
            config=None,
            reuse_port=workers_of(self.connection.options) > 1,
        )
        log.info(
            "ssh proxy %s on %s:%d → %s:%d (host key %s)",
            self.connection.name,
            self.host,
            self.port,
            self.upstream_host,
            self.upstream_port,
            self.fingerprint,
        )

    async def stop(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
        await asyncio.gather(
            *(c.shut("proxy_shutdown") for c in list(self.clients)), return_exceptions=True
        )
        await self.settled()
        await self.runtime.stop()

    async def settled(self) -> None:
        """No client connected, and every session of a gone client closed at the PDP (or
        spooled): what a test waits for after its clients disconnected."""
        while self.clients or self.closing:
            self._changed.clear()
            await self._changed.wait()

    def changed(self, *_: Any) -> None:
        self._changed.set()


class ClientConnection(asyncssh.SSHServer):
    """One client's SSH connection: its authentication, its session, its upstream."""

    def __init__(self, proxy: SshProxy) -> None:
        self.proxy = proxy
        self.conn: asyncssh.SSHServerConnection | None = None
        self.session: ProxySession | None = None
        self.upstream: asyncssh.SSHClientConnection | None = None
        self._upstream_lock = asyncio.Lock()
        self._client_keys: list[Any] = []
        self.scanner: SecretScanner | None = None
        self.outputs: list[ClientOutput] = []
        self.channels: set[Channel] = set()
        self.attempts = 0
        self.client_addr = ""
        self._closing: asyncio.Task[None] | None = None
        self._expiry: asyncio.Task[str] | None = None
        self._background: set[asyncio.Future[Any]] = set()

    # -- connection and authentication ---------------------------------------------------

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername") or ("", 0)
        self.client_addr = f"{peer[0]}:{peer[1]}"
        self.proxy.clients.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.proxy.clients.discard(self)
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close("client_closed", exc is not None))
            self.proxy.closing.add(self._closing)
            self._closing.add_done_callback(self.proxy.closing.discard)
            self._closing.add_done_callback(self.proxy.changed)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> Any:
        return self._open(username, password)

    def kbdint_auth_supported(self) -> bool:
        return True

    def get_kbdint_challenge(self, username: str, lang: str, submethods: str) -> Any:
        return KBDINT_PROMPT

    def validate_kbdint_response(self, username: str, responses: Any) -> Any:
        if len(responses) != 1:
            return False
        return self._open(username, responses[0])

    def public_key_auth_supported(self) -> bool:
        return False

    async def _open(self, username: str, token: str) -> bool:
        if self.session is not None or self.conn is None:
            return False
        self.attempts += 1
        if self.attempts > MAX_AUTH_ATTEMPTS:
            self.conn.disconnect(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE, "too many tokens")
            return False
        client = str(self.conn.get_extra_info("client_version") or "ssh")
        session = ProxySession(self.proxy.runtime, self.client_addr, client)
        try:
            await session.open(token.strip(), {"ssh_user": username}, tell=self._banner)
        except SessionRefused as refused:
            self._banner(f"portcullis: {refused.reason}")
            return False
        try:
            assert session.lease is not None
            self._client_keys = keys.client_keys(session.lease)
        except CredentialUnavailable as exc:
            self._banner(f"portcullis: no upstream credential: {exc}")
            await session.close("credential_unavailable", abnormal=True)
            return False
        self.scanner = SecretScanner(keys.key_secrets(session.lease, self._client_keys))
        self.session = session
        self._expiry = session.grant_expiry(self._grant_ended)
        return True

    def _banner(self, text: str) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.send_auth_banner(text + "\r\n")

    def _grant_ended(self) -> None:
        for channel in list(self.channels):
            channel.say("portcullis: the approved access window has ended")
        if self.conn is not None:
            self.conn.disconnect(asyncssh.DISC_BY_APPLICATION, "access window ended")

    def output(self, write: Any) -> ClientOutput:
        """A ClientOutput for one stream of one channel, scanned with the session's keys."""
        out = ClientOutput(write)
        out.scanner = self.scanner
        self.outputs.append(out)
        return out

    # -- channels ------------------------------------------------------------------------

    def session_requested(self) -> Any:
        if self.session is None:
            return False
        return Channel(self)

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> Any:
        return self._forward(dest_host, dest_port, orig_host, orig_port)

    def server_requested(self, listen_host: str, listen_port: int) -> Any:
        return self._remote_forward(listen_host, listen_port)

    async def _forward(self, host: str, port: int, orig_host: str, orig_port: int) -> Any:
        raw = f"direct-tcpip {host}:{port}"
        attributes = {"direction": "local", "host": host, "port": port,
                      "origin": f"{orig_host}:{orig_port}"}  # fmt: skip
        ruling = await self._decide_forward(raw, attributes)
        if not ruling.verdict.allowed:
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                f"portcullis: denied: {'; '.join(ruling.verdict.reasons)}",
            )
        assert self.conn is not None
        upstream = await self.connect_upstream()
        return await self.conn.forward_tunneled_connection(upstream, host, port)

    async def _remote_forward(self, host: str, port: int) -> bool:
        raw = f"tcpip-forward {host}:{port}"
        ruling = await self._decide_forward(raw, {"direction": "remote", "host": host,
                                                  "port": port})  # fmt: skip
        if ruling.verdict.allowed:
            log.warning("remote forwarding was allowed, but this proxy does not relay it")
        return False

    async def _decide_forward(self, raw: str, attributes: dict[str, Any]) -> Ruling:
        session = self.session
        if session is None:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, "no session")
        ruling = await session.decide("ssh.forward", raw, attributes)
        if ruling.kind is VerdictKind.REQUIRE_APPROVAL:
            ruling = Ruling(
                Verdict.deny("a forwarding that needs approval is not waited for"),
                ruling.decision_id,
                ruling.policy_revision,
            )
        session.record_command(raw, ruling, kind="ssh.forward", **attributes)
        return ruling

    async def connect_upstream(self) -> asyncssh.SSHClientConnection:
        """The session's upstream connection, opened once (at the first allowed channel)."""
        async with self._upstream_lock:
            if self.upstream is not None:
                return self.upstream
            session = self.session
            assert session is not None and session.lease is not None
            proxy = self.proxy
            lease = session.lease
            self.upstream = await asyncio.wait_for(
                asyncssh.connect(
                    proxy.upstream_host,
                    proxy.upstream_port,
                    username=lease.username or None,
                    client_keys=self._client_keys or None,
                    password=lease.password or None,
                    known_hosts=proxy.trust.known_hosts(),
                    agent_path=None,
                    agent_forwarding=False,
                    config=None,
                    kbdint_auth=False,
                    gss_auth=False,
                    host_based_auth=False,
                    preferred_auth="publickey,password",
                    # AES-GCM first: OpenSSL's, the cheapest of the two encryptions a relayed
                    # byte goes through here
                    encryption_algs=UPSTREAM_CIPHERS,
                ),
                UPSTREAM_TIMEOUT,
            )
            proxy.trust.pin(self.upstream.get_server_host_key())
            return self.upstream

    # -- the end -------------------------------------------------------------------------

    async def shut(self, reason: str) -> None:
        """Proxy shutdown: end the client connection and the session."""
        if self.conn is not None:
            self.conn.close()
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close(reason, False))
        await self._closing

    async def _close(self, reason: str, abnormal: bool) -> None:
        for channel in list(self.channels):
            channel.client_gone()
        if self.channels:
            await asyncio.gather(*(c.finished for c in list(self.channels)),
                                 return_exceptions=True)  # fmt: skip
        if self._expiry is not None:
            self._expiry.cancel()
        if self.upstream is not None:
            self.upstream.close()
            with contextlib.suppress(Exception):
                await self.upstream.wait_closed()
        session = self.session
        if session is None:
            return
        session.counters["bytes_to_client"] = sum(o.sent for o in self.outputs)
        session.counters["credential_exposed"] = int(
            self.scanner.exposed if self.scanner is not None else False
        )
        await session.close(reason, abnormal)


class Channel(asyncssh.SSHServerSession):  # type: ignore[type-arg]
    """One session channel: its request decided, then relayed to an upstream channel."""

    _numbers = 0

    def __init__(self, client: ClientConnection) -> None:
        self.client = client
        self.chan: Any = None
        self.kind = ""
        self.raw = ""
        self.term = ""
        self.size = (80, 24, 0, 0)
        self.modes: dict[int, int] = {}
        self.up: Any = None  # the upstream channel, once open
        self.ruling: Ruling | None = None
        self.stdout: ClientOutput | None = None
        self.stderr: ClientOutput | None = None
        self.masks: dict[str, MaskedOutput] = {}
        self.cast: Cast | None = None
        self.counts = Counter[str]()
        self.exit_status: int | None = None
        self.exit_signal: tuple[str, bool, str] | None = None
        self.waiting = False
        self._stdin: list[bytes] = []
        self._stdin_eof = False
        self._gone = False
        self._quiet: asyncio.TimerHandle | None = None
        self._cast_timer: asyncio.TimerHandle | None = None
        self._upstream_done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        Channel._numbers += 1
        self.number = Channel._numbers
        client.channels.add(self)

    # -- requests (asyncssh calls these before session_started) ---------------------------

    def connection_made(self, chan: Any) -> None:
        self.chan = chan
        self.stdout = self.client.output(chan.write)
        self.stderr = self.client.output(lambda data: chan.write_stderr(data))

    def pty_requested(self, term_type: str, term_size: Any, term_modes: Any) -> bool:
        self.term = term_type or "xterm"
        self.size = tuple(term_size)
        self.modes = dict(term_modes)
        return True

    def shell_requested(self) -> bool:
        self.kind, self.raw = "ssh.shell", ""
        return True

    def exec_requested(self, command: str) -> bool:
        self.kind, self.raw = "ssh.exec", command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        self.kind, self.raw = "ssh.subsystem", subsystem
        return True

    def session_started(self) -> None:
        task = asyncio.ensure_future(self._run())
        self.client._background.add(task)
        task.add_done_callback(self.client._background.discard)

    # -- client → upstream -----------------------------------------------------------------

    def data_received(self, data: bytes, datatype: Any) -> None:
        if self.waiting and b"\x03" in data:
            self._cancel_wait()
            return
        self.counts["stdin_bytes"] += len(data)
        if self.cast is not None:
            self.cast.input(time.time(), data)
        if self.up is not None:
            self.up.write(data)
            return
        self._stdin.append(data)
        if sum(map(len, self._stdin)) > MAX_PENDING_STDIN and self.chan is not None:
            self.chan.pause_reading()

    def eof_received(self) -> bool:
        if self.up is not None:
            self.up.write_eof()
        else:
            self._stdin_eof = True
        return True

    def break_received(self, msec: int) -> bool:
        if self.waiting:
            self._cancel_wait()
        elif self.up is not None:
            self.up.send_break(msec)
        return True

    def signal_received(self, signal_name: str) -> None:
        if self.waiting and signal_name in CANCEL_SIGNALS:
            self._cancel_wait()
        elif self.up is not None:
            self.up.send_signal(signal_name)

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        self.size = (width, height, pixwidth, pixheight)
        if self.cast is not None:
            self.cast.resize(time.time(), width, height)
        if self.up is not None:
            self.up.change_terminal_size(width, height, pixwidth, pixheight)

    def pause_writing(self) -> None:
        if self.up is not None:
            self.up.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None:
            self.up.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.client_gone()

    def client_gone(self) -> None:
        """The client's channel or connection went away: stop waiting, end the upstream."""
        self._gone = True
        if self.waiting:
            self._cancel_wait()
        if self.up is not None:
            self.up.close()

    def _cancel_wait(self) -> None:
        session = self.client.session
        if session is not None:
            session.cancel_wait()

    # -- upstream → client -------------------------------------------------------------------

    def upstream_data(self, data: bytes, stderr: bool) -> None:
        stream = "stderr_bytes" if stderr else "stdout_bytes"
        mask = self.masks.get(stream)
        if mask is not None:
            data = mask.feed(data)
            if mask.holding and self.cast is not None:
                self._flush_when_quiet()
        self._send(data, stderr)

    def _send(self, data: bytes, stderr: bool) -> None:
        if not data or self._gone:
            return
        self.counts["stderr_bytes" if stderr else "stdout_bytes"] += len(data)
        if self.cast is not None:
            self.cast.output(time.time(), data)
            self._cast_soon()
        out = self.stderr if stderr else self.stdout
        assert out is not None
        out.write(data)

    def _flush_masks(self) -> None:
        for stream, mask in self.masks.items():
            self._send(mask.flush(), stream == "stderr_bytes")

    def _flush_when_quiet(self) -> None:
        if self._quiet is not None:
            self._quiet.cancel()
        self._quiet = asyncio.get_running_loop().call_later(QUIET_FLUSH, self._flush_masks)

    def upstream_eof(self) -> None:
        self._flush_masks()
        if not self._gone and self.chan is not None:
            with contextlib.suppress(Exception):
                self.chan.write_eof()

    def upstream_closed(self) -> None:
        if not self._upstream_done.done():
            self._upstream_done.set_result(None)

    def say(self, text: str) -> None:
        """A line from Portcullis on stderr (CRLF under a terminal)."""
        end = "\r\n" if self.term else "\n"
        if self.stderr is not None and not self._gone:
            self.stderr.write((text + end).encode())
            self.counts["stderr_bytes"] += len(text) + len(end)

    # -- the channel's life -------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._serve()
        except Exception:
            log.exception("ssh channel failed")
            self._end(1, "the proxy failed")
        finally:
            self.client.channels.discard(self)
            if not self.finished.done():
                self.finished.set_result(None)

    def _attributes(self) -> dict[str, Any]:
        if self.kind == "ssh.shell" or (self.kind == "ssh.exec" and self.term):
            cols, rows = self.size[0], self.size[1]
            base = {"term": self.term, "cols": cols, "rows": rows} if self.term else {}
            return base if self.kind == "ssh.shell" else {"pty": True, **base}
        if self.kind == "ssh.subsystem":
            return {"subsystem": self.raw}
        return {}

    async def _serve(self) -> None:
        session = self.client.session
        if session is None or not self.kind:
            self._end(1, "no session")
            return
        self.waiting = True
        try:
            ruling = await session.decide_or_wait(
                self.kind, self.raw, self._attributes(), None, self.say
            )
        finally:
            self.waiting = False
        if self.kind == "ssh.subsystem" and self.raw == "sftp" and ruling.verdict.allowed:
            # the policy may allow SFTP, but a relayed SFTP stream would not be decided
            # operation by operation (read/write/remove with the path): refused until it is
            ruling = Ruling(Verdict.deny(SFTP_REFUSED), ruling.decision_id, ruling.policy_revision)
        self.ruling = ruling
        if not ruling.verdict.allowed or self._gone:
            self.say(f"portcullis: denied: {'; '.join(ruling.verdict.reasons)}")
            session.record_command(self.raw, ruling, **self._details(1))
            self._end(1)
            return
        self._masking(ruling)
        try:
            upstream = await self.client.connect_upstream()
            self.up, _ = await upstream.create_session(
                lambda: UpstreamChannel(self),
                command=self.raw if self.kind == "ssh.exec" else None,
                subsystem=self.raw if self.kind == "ssh.subsystem" else None,
                term_type=self.term or None,
                term_size=self.size if self.term else None,
                term_modes=self.modes or None,
                encoding=None,
            )
        except (TimeoutError, OSError, asyncssh.Error, CredentialUnavailable) as exc:
            why = _upstream_error(exc)
            self.say(f"portcullis: the upstream is unavailable: {why}")
            session.record_command(self.raw, ruling, **self._details(1, why))
            self._end(1)
            return
        if self.kind == "ssh.shell" or self.term:
            self.cast = Cast(self.size[0], self.size[1], self.term, time.time())
        self._catch_up()
        await self._upstream_done
        self._flush_masks()
        self._record_cast()
        status = self.exit_status
        session.record_command(self.raw, ruling, **self._details(status))
        counts = Counter[str]()
        for mask in self.masks.values():
            counts.update(mask.counts)
        if counts:
            session.record_masking(dict(counts), ruling.decision_id)
        if self.exit_signal is not None and not self._gone:
            name, core, message = self.exit_signal
            with contextlib.suppress(Exception):
                self.chan.exit_with_signal(name, core, message)
            return
        self._end(status if status is not None else 255)

    def _masking(self, ruling: Ruling) -> None:
        if ruling.kind is not VerdictKind.MASK or not ruling.verdict.mask:
            return
        masker = Masker(ruling.verdict.mask, self.client.proxy.hash_key)
        if masker.detects:
            streams = ("stdout_bytes", "stderr_bytes")
            self.masks = {stream: MaskedOutput(masker) for stream in streams}

    def _catch_up(self) -> None:
        pending, self._stdin = self._stdin, []
        for data in pending:
            if self.cast is not None:
                self.cast.input(time.time(), data)  # typed while the shell was decided
            self.up.write(data)
        if self._stdin_eof:
            self.up.write_eof()
        if self.chan is not None:
            self.chan.resume_reading()

    def _details(self, status: int | None, error: str = "") -> dict[str, Any]:
        c = self.counts
        return _exec_details(
            self.kind, status, c["stdout_bytes"], c["stderr_bytes"], c["stdin_bytes"], error
        )

    def _cast_soon(self) -> None:
        assert self.cast is not None
        if self.cast.pending >= CAST_BATCH:
            self._record_cast()
        elif self._cast_timer is None:
            self._cast_timer = asyncio.get_running_loop().call_later(CAST_EVERY, self._record_cast)

    def _record_cast(self) -> None:
        if self._cast_timer is not None:
            self._cast_timer.cancel()
            self._cast_timer = None
        cast, session = self.cast, self.client.session
        if cast is None or session is None or self.ruling is None:
            return
        first = not getattr(self, "_cast_started", False)
        events = cast.take()
        if not events and not first:
            return
        self._cast_started = True
        details: dict[str, Any] = {
            "kind": "ssh.asciicast",
            "decision_id": self.ruling.decision_id,
            "channel": self.number,
            "events": events,
        }
        if first:
            details["header"] = cast.header
        session.record_response(**details)

    def _end(self, status: int, error: str = "") -> None:
        if error:
            self.say(f"portcullis: {error}")
        if self._gone or self.chan is None:
            return
        with contextlib.suppress(Exception):
            self.chan.exit(status)


class UpstreamChannel(asyncssh.SSHClientSession):  # type: ignore[type-arg]
    """The upstream half of a channel: what the server sends, passed to the client half."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def data_received(self, data: bytes, datatype: Any) -> None:
        self.channel.upstream_data(data, datatype == asyncssh.EXTENDED_DATA_STDERR)

    def eof_received(self) -> bool:
        self.channel.upstream_eof()
        return True

    def exit_status_received(self, status: int) -> None:
        self.channel.exit_status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self.channel.exit_signal = (signal, core_dumped, msg)

    def pause_writing(self) -> None:
        if self.channel.chan is not None:
            self.channel.chan.pause_reading()

    def resume_writing(self) -> None:
        if self.channel.chan is not None:
            self.channel.chan.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.channel.upstream_closed()


def _upstream_error(exc: BaseException) -> str:
    """What went wrong upstream, in words safe for the client (no key, no secret)."""
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, asyncssh.PermissionDenied):
        return "the upstream refused the proxy's credential"
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return "the upstream's host key is not the one pinned"
    if isinstance(exc, CredentialUnavailable):
        return str(exc)
    if isinstance(exc, asyncssh.ChannelOpenError):
        return f"channel refused ({exc.reason})"
    return type(exc).__name__


__all__ = ["SshProxy"]
