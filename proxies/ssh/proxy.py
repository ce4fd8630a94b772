"""The SSH proxy's asyncio side: an SSH server to clients, an SSH client to the upstream.

Stands on the runtime (proxies.runtime): ProxySession for the session's lifecycle (open
with the client's JWT, decide, approval waits, recording, close and release of the
credential), ClientOutput for every byte a client is sent (counted, scanned for the
upstream key). asyncssh speaks SSH on both sides; this module is the glue between them.

- Authentication: the JWT as the password, or as the answer of a keyboard-interactive
  prompt (a refusal is told in the authentication banner); or, when the connection has an
  `authorized_keys_file`, a public key: the proxy accepts at the SSH level only keys of
  that file, and once the client proved it holds one (its signature, checked by asyncssh)
  the session is opened with no token and the public key presented: the PDP maps it to a
  subject and groups from its own reading of the file (pdp/domain/ssh_identity.py). A
  refusal then ends the connection, saying why. The key's line is read again at each
  channel the session opens and every KEY_RECHECK_SECONDS: a key removed, or mapped anew,
  ends its session (KEY_REVOKED).
- A session ends at its token's expiry or its grant's end (the runtime's), and at the end
  of the Vault-signed certificate its upstream connection logged in with
  (CERTIFICATE_ENDED): sshd reads a certificate's validity at login only.
- Channels: each session channel is a channel.Channel — its request decided before
  anything reaches the upstream, then relayed to a channel of the same request upstream.
- The upstream connection (one per client connection: its session's, never shared with
  another session or identity) is started as soon as the session is open (the PDP allowed
  it and the session's credential is leased), so its key exchange and authentication with
  that credential (a private key, a Vault-signed certificate, or a password; the
  upstream's host key checked, keys.UpstreamTrust) overlap the client's own steps after
  its login (its first channel, its request, that request's decision) instead of
  following them. Once up, it opens one session channel ahead for the client's first
  channel (upstream.py: the open alone). It carries nothing before a decision allows a
  request: a session whose requests are all denied leaves at most a login (and a channel
  opened and closed, carrying nothing) in the upstream's log, never a command or a byte
  of the client's. A client refused at login (or not yet logged in) starts nothing upstream.
- A password (the JWT) is taken without asyncssh's SASLprep when it is printable ASCII,
  which SASLprep leaves as it is (proxies/ssh/passwords.py); one of other characters
  longer than any token the PDP takes ends the login before that work.
- asyncssh's own INFO lines (one per channel, naming its command) are not logged unless
  configured otherwise (the logger "asyncssh"): the proxy's session events say what ran;
  and while they are off they are not even formatted (proxies/ssh/asyncssh_logs.py).
- Forwarding: a direct-tcpip channel (`ssh -L`) is decided as ssh.forward and, when
  allowed, tunnelled through the upstream connection; remote forwarding (`ssh -R`) is
  decided as ssh.forward too and, when allowed, the upstream listens and each connection
  there is bridged to the client (proxies/ssh/remote_forward.py). Either's host is read
  first (proxies/ssh/destinations.py): one spelling of an address (`0x7f000001`, `127.1`
  and `::ffff:127.0.0.1` are 127.0.0.1 to the upstream's resolver) or a name, lower-cased;
  anything else is refused undecided; the policy gets an IP literal as `address` too, and
  the upstream the host as decided. Agent and X11 forwarding are refused (the server
  options: the upstream is reached with the proxy's credential, not the client's); UNIX
  socket forwards (streamlocal) and tunnels (tun, tap) are refused to everyone and
  recorded as refused ssh.forward commands (tests/test_ssh_probe_p53.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import math
import time
from typing import Any

import asyncssh

from portcullis.config import Config, ConnectionSettings
from portcullis.masking import masking_key
from portcullis.protocols import workers_of
from portcullis.verdict import Verdict, VerdictKind
from proxies.runtime.credentials import CredentialUnavailable
from proxies.runtime.drain import SHUTDOWN_MESSAGE
from proxies.runtime.exposure import ClientOutput
from proxies.runtime.listener import on_twin, split_address
from proxies.runtime.pdp_client import Ruling, SessionRefused
from proxies.runtime.secrets_scan import SecretScanner
from proxies.runtime.session import ProxyRuntime, ProxySession
from proxies.ssh import destinations, keys
from proxies.ssh.asyncssh_logs import quiet_when_off
from proxies.ssh.channel import (
    EXEC_SECONDS,
    MAX_CHANNELS,
    SHELL_SECONDS,
    Channel,
    small_packets,
)
from proxies.ssh.packets import without_chaff
from proxies.ssh.passwords import quick_saslprep
from proxies.ssh.reaper import reap_command, sweep_command
from proxies.ssh.remote_forward import relay_remote_forward
from proxies.ssh.upstream import GatedChannel, Request, request_on, session_ahead

log = logging.getLogger("portcullis.ssh")

MAX_AUTH_ATTEMPTS = 3
LOGIN_TIMEOUT = 60.0
UPSTREAM_TIMEOUT = 15.0
REAP_TIMEOUT = 15.0  # the most a reap (reaper.py) may take before the session goes on closing
UPSTREAM_CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)
# What clients may encrypt with: OpenSSL's AES (GCM, or CTR with an HMAC), not
# chacha20-poly1305, which asyncssh assembles per packet in Python (a cipher object and a
# Poly1305 per packet: 1.7 ms of CPU per MB received against AES-GCM's 1.1, measured
# here). Every OpenSSH since 6.2 and every asyncssh speaks these; a client's own order
# picks among them.
CLIENT_CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
)
LEAVE_SECONDS = 2.0  # a drain: how long a client whose channels ended may take to leave
UNREAD_FORWARD = (
    "relayed unread: the proxy cannot read a forwarded connection; its bytes were not decided"
    " or masked"
)
# why a session whose upstream certificate expired ends (its close reason, as a lost lease's),
# and what its channels are told
CERTIFICATE_ENDED = (
    "credential_expired",
    "the upstream certificate of this session expired (its validity is the SSH role's ttl, "
    "or credentials.certificate_ttl); reconnect for a fresh one",
)
# why a public-key login's session ends once its key is no longer mapped as it was (its
# close reason), what its channels are told, and how often an open session checks
KEY_REVOKED = (
    "key_revoked",
    "the key of this session was removed from the mapping file (authorized_keys_file), or "
    "mapped anew: log in again",
)
KEY_RECHECK_SECONDS = 30.0
# forwards the proxy does not relay (ClientConnection.unix_connection_requested), and how
# much of a socket's path their record keeps
UNRELAYED = "the proxy does not forward UNIX sockets or tunnels (tun, tap)"
MAX_SHOWN_PATH = 1024
KBDINT_PROMPT = ("Portcullis", "Paste your access token (JWT).", "", [("Token: ", False)])


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
        self.runtime = runtime or ProxyRuntime.standalone(connection, config, pdp_address)
        self.host, self.requested_port = split_address(connection.listen)
        self.upstream_host, self.upstream_port = split_address(connection.upstream)
        self.host_key = keys.host_key(connection)
        self.trust = keys.UpstreamTrust(connection)
        self.hash_key = masking_key(config.masking_hash_key, connection.name)
        self.clients: set[ClientConnection] = set()
        self.closing: set[asyncio.Future[None]] = set()  # sessions of gone clients, closing
        self._changed = asyncio.Event()
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._twin: asyncssh.SSHAcceptor | None = None  # the other loopback's port

    @property
    def port(self) -> int:
        assert self._acceptor is not None, "not listening"
        return int(self._acceptor.get_port())

    @property
    def fingerprint(self) -> str:
        return keys.fingerprint(self.host_key)

    async def start(self) -> None:
        quiet = logging.getLogger("asyncssh")
        if quiet.level == logging.NOTSET:
            quiet.setLevel(logging.WARNING)
        quiet_when_off()  # and its log calls cost nothing while their level is off
        quick_saslprep()  # a JWT password is not stringprepped character by character
        await self.runtime.start()
        options: dict[str, Any] = {
            "server_factory": lambda: ClientConnection(self),
            "server_host_keys": [self.host_key],
            "encryption_algs": CLIENT_CIPHERS,
            "agent_forwarding": False,
            "x11_forwarding": False,
            "line_editor": False,
            "encoding": None,
            "login_timeout": LOGIN_TIMEOUT,
            "public_key_auth": bool(self.connection.options.get("authorized_keys_file")),
            "config": None,
            "reuse_port": workers_of(self.connection.options) > 1,
        }
        self._acceptor = await asyncssh.listen(self.host, self.requested_port, **options)
        try:
            # the other loopback's port too: left free, another local user could listen
            # there and take the token of a client dialling localhost (::1 first)
            self._twin = await on_twin(
                self.host, self.port, lambda twin: asyncssh.listen(twin, self.port, **options)
            )
        except OSError:
            self._acceptor.close()
            raise
        log.info(
            "ssh proxy %s on %s:%d → %s:%d (host key %s)",
            self.connection.name,
            self.host,
            self.port,
            self.upstream_host,
            self.upstream_port,
            self.fingerprint,
        )
        if self.connection.credentials.get("username") == "root":
            # sshd takes a signal request only with privilege separation after login, which
            # it skips for root: the KILL a channel sends as its client leaves (channel.py
            # Channel._end_upstream) is refused there, and each exec runs after a line of
            # the proxy's that reports its session, which the proxy ends itself (reaper.py)
            log.warning(
                "ssh proxy %s: the upstream account is root, to which sshd sends no signal:"
                " each exec runs after a line of the proxy's reporting its session, ended by"
                " another exec when it must; an unprivileged account needs neither",
                self.connection.name,
            )

    async def drain(self, grace: float) -> None:
        """SIGTERM: accept no more; each client is disconnected (SSH_MSG_DISCONNECT, by
        application, saying why) once no channel of its runs, at the latest after `grace`
        seconds (proxies.runtime.drain)."""
        self._close_acceptors()
        gone = asyncio.ensure_future(self.settled())
        try:
            await self.runtime.drain_sessions({gone}, grace, f"ssh proxy {self.connection.name}")
        finally:
            gone.cancel()

    def _close_acceptors(self) -> None:
        for acceptor in (self._acceptor, self._twin):
            if acceptor is not None:
                acceptor.close()

    async def stop(self) -> None:
        self._close_acceptors()
        for acceptor in (self._acceptor, self._twin):
            if acceptor is not None:
                await acceptor.wait_closed()
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
        self._connecting: asyncio.Task[asyncssh.SSHClientConnection] | None = None
        self._spare: GatedChannel | None = None  # an upstream channel opened for the next
        self._client_keys: list[Any] = []
        self.scanner: SecretScanner | None = None
        self.outputs: list[ClientOutput] = []  # of the channels open
        self.sent_before = 0  # bytes sent to the client by channels that have finished
        self.channels: set[Channel] = set()
        self.attempts = 0
        self.client_addr = ""
        self._closing: asyncio.Task[None] | None = None
        self._expiry: asyncio.Future[str] | None = None
        self._certificate_end: int | None = None  # the deadline at the certificate's end
        # a public-key login: the mapping file's line for its key, checked again at each
        # channel and every KEY_RECHECK_SECONDS (the deadline's key)
        self._key_line: str | None = None
        self._offered_line: str | None = None
        self._key_check: int | None = None
        self._background: set[asyncio.Future[Any]] = set()
        self._draining: asyncio.Future[None] | None = None
        self._username = ""
        self._offered_key: asyncssh.SSHKey | None = None
        self._opening: asyncio.Task[bool] | None = None  # a public-key login's session
        # remote forwards listening on the upstream (a connection reaching the upstream's
        # port before its listener is in this list may be refused: asyncssh registers it
        # only once the upstream has said yes)
        self.remote_listeners: list[asyncssh.SSHListener] = []
        self._reaps: set[asyncio.Future[str]] = set()  # commands being ended (reaper.py)
        # a root account: an upstream session channel held for the next reap (opened ahead,
        # carrying nothing), so a reap finds room under the upstream's MaxSessions however
        # many channels the client holds; reaps go one at a time through it
        self._reserve: GatedChannel | None = None
        self._reaping = asyncio.Lock()
        self._ended_why = ""  # why the proxy ended the connection (the session's close reason)

    # -- connection and authentication ---------------------------------------------------

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        without_chaff(conn)
        peer = conn.get_extra_info("peername") or ("", 0)
        self.client_addr = f"{peer[0]}:{peer[1]}"
        self.proxy.clients.add(self)
        self.proxy.runtime.drain.register(self, self.drain)

    def connection_lost(self, exc: Exception | None) -> None:
        self.proxy.clients.discard(self)
        self.proxy.runtime.drain.unregister(self)
        if self._draining is not None:
            self._draining.cancel()
        if self._closing is None:
            reason, expiry = self._ended_why or "client_closed", self._expiry
            # ended by a grant's end or the token's expiry: that is why
            if expiry is not None and expiry.done() and not expiry.cancelled():
                reason = expiry.result() if expiry.exception() is None else reason
            self._closing = asyncio.ensure_future(self._close(reason, exc is not None))
            self.proxy.closing.add(self._closing)
            self._closing.add_done_callback(self.proxy.closing.discard)
            self._closing.add_done_callback(self.proxy.changed)

    def begin_auth(self, username: str) -> bool:
        self._username = username
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
        return bool(self.proxy.connection.options.get("authorized_keys_file"))

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        """A key of the mapping file (a filter; the PDP's reading of it decides). Asked
        before and after the client's signature: the last key asked is the one signed."""
        if self.session is not None or self._opening is not None:
            return False
        line = keys.mapped_line(self.proxy.connection, keys.fingerprint(key))
        if line is None:
            return False
        self._offered_key, self._offered_line = key, line
        return True

    def auth_completed(self) -> None:
        key = self._offered_key
        if self.session is None and key is not None and self._opening is None:
            text = key.export_public_key("openssh").decode().strip()
            self._opening = asyncio.ensure_future(
                self._open(self._username, "", {"ssh_public_key": text}, after_auth=True)
            )

    async def ready(self) -> ProxySession | None:
        """The session, once a public-key login's is opened (None: refused)."""
        if self.session is None and self._opening is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._opening)
        return self.session

    async def _open(
        self,
        username: str,
        token: str,
        presented: dict[str, str] | None = None,
        after_auth: bool = False,
    ) -> bool:
        if self.session is not None or self.conn is None:
            return False
        self.attempts += 1
        if self.attempts > MAX_AUTH_ATTEMPTS:
            self.conn.disconnect(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE, "too many tokens")
            return False
        client = str(self.conn.get_extra_info("client_version") or "ssh")
        session = ProxySession(self.proxy.runtime, self.client_addr, client)
        tell = self._refused_after_auth if after_auth else self._banner
        try:
            await session.open(token.strip(), {"ssh_user": username, **(presented or {})},
                               tell=self._banner)  # fmt: skip
        except SessionRefused as refused:
            tell(f"portcullis: {refused.reason}")
            return False
        try:
            assert session.lease is not None
            self._client_keys = keys.client_keys(session.lease)
        except CredentialUnavailable as exc:
            tell(f"portcullis: no upstream credential: {exc}")
            await session.close("credential_unavailable", abnormal=True)
            return False
        self.scanner = SecretScanner(keys.key_secrets(session.lease, self._client_keys))
        self.session = session
        self._expiry = session.grant_expiry(self._grant_ended)
        ends = keys.certificate_end(session.lease)
        if ends is not None:
            self._certificate_end = self.proxy.runtime.deadlines.add(ends, self._certificate_ended)
        if presented and "ssh_public_key" in presented:
            self._key_line = self._offered_line
            self._check_key_later()
        # the session is open: its upstream connection starts now, while the client is told
        # and opens its first channel and that channel's request is decided
        self.upstream_soon()
        return True

    def _refused_after_auth(self, text: str) -> None:
        """A public-key login the PDP refused: SSH has already said yes, so the connection
        ends, saying why."""
        if self.conn is not None:
            self.conn.disconnect(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE, text[:200])

    def _banner(self, text: str) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.send_auth_banner(text + "\r\n")

    def _grant_ended(self, text: str) -> None:
        """A just-in-time grant ran out, or the client's token expired: every channel is
        told why, and the connection ends."""
        for channel in list(self.channels):
            channel.say(text)
        if self.conn is not None:
            self.conn.disconnect(asyncssh.DISC_BY_APPLICATION, text.removeprefix("portcullis: "))

    def _certificate_ended(self) -> None:
        """The certificate the upstream connection logged in with (Vault's SSH CA signed it
        for the role's ttl) expired: sshd would go on running whatever the connection asks,
        so the session ends here, as it does when a leased credential is lost."""
        self._certificate_end = None
        if self._closing is not None:
            return
        self._ended_why = CERTIFICATE_ENDED[0]
        self._grant_ended(f"portcullis: {CERTIFICATE_ENDED[1]}")

    def key_still_mapped(self) -> bool:
        """Whether the session may go on as the identity of its login: for a public-key
        login, the mapping file still maps its key by the line it logged in with (a key
        removed, or given another subject or groups, is revoked: the PDP maps a key once, at
        the session's open, and its session, a dba's shell too, went on for as long as the
        client kept the connection). A revoked key's session ends here, told why."""
        key, line = self._offered_key, self._key_line
        if self.session is None or key is None or line is None:
            return True
        if keys.mapped_line(self.proxy.connection, keys.fingerprint(key)) == line:
            return True
        if self._closing is None and not self._ended_why:
            log.info("ssh session ended: its key %s is no longer mapped as it was at login",
                     keys.fingerprint(key))  # fmt: skip
            self._ended_why = KEY_REVOKED[0]
            self._grant_ended(f"portcullis: {KEY_REVOKED[1]}")
        return False

    def _check_key_later(self) -> None:
        self._key_check = self.proxy.runtime.deadlines.add(
            time.time() + KEY_RECHECK_SECONDS, self._check_key
        )

    def _check_key(self) -> None:
        self._key_check = None
        if self._closing is None and self.key_still_mapped():
            self._check_key_later()

    def output(self, write: Any) -> ClientOutput:
        """A ClientOutput for one stream of one channel, scanned with the session's keys."""
        out = ClientOutput(write)
        out.scanner = self.scanner
        self.outputs.append(out)
        return out

    def retire(self, *outputs: ClientOutput | None) -> None:
        """A finished channel's outputs: their bytes counted, the outputs (and the channel
        they hold) let go — a long connection of many execs keeps none of them."""
        for out in outputs:
            if out is not None and out in self.outputs:
                self.outputs.remove(out)
                self.sent_before += out.sent

    # -- channels ------------------------------------------------------------------------

    def session_requested(self) -> Any:
        if self.session is None and self._opening is None:
            return False
        if not self.key_still_mapped():
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, f"portcullis: {KEY_REVOKED[1]}"
            )
        cap = self.max_channels()
        if cap and len(self.channels) >= cap:
            why = f"at most {cap} channels at once in a session ({MAX_CHANNELS})"
            log.info("ssh channel refused: the session holds %d channels (%s)", cap, MAX_CHANNELS)
            if self.session is not None:
                # evidence, as any refusal: a denied command the auditor sees (no decision of
                # the PDP's: the proxy refused it under the session's setting)
                self.session.record_command(
                    "session channel",
                    Ruling(Verdict.deny(why)),
                    kind="ssh.channel",
                    open_channels=cap,
                    reason=why,
                )
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, f"portcullis: {why}"
            )
        return Channel(self)

    def max_channels(self) -> int:
        """The policy's cap on the session's open channels (session.open's session_settings
        ssh_max_channels); 0: none. A value that is no whole number caps at one."""
        grant = self.session.grant if self.session is not None else None
        if grant is None:
            return 0
        raw = dict(grant.ruling.verdict.session_settings).get(MAX_CHANNELS, "0")
        return int(raw) if raw.isdigit() else 1

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> Any:
        if self.conn is None or not self.key_still_mapped():
            return False
        # the channel made here (asyncssh's own otherwise), so that the forward, once
        # asyncssh read the client's open into it, can check its maximum packet size
        chan = self.conn.create_tcp_channel()
        return chan, self._forward(chan, dest_host, dest_port, orig_host, orig_port)

    def server_requested(self, listen_host: str, listen_port: int) -> Any:
        if not self.key_still_mapped():
            return False
        return self._remote_forward(listen_host, listen_port)

    # forwards the proxy does not relay, to anyone: a UNIX socket's (direct-streamlocal,
    # `ssh -L x:/run/docker.sock`; streamlocal-forward, `ssh -R /path:...`) and a tunnel's
    # (tun or tap, `ssh -w`). asyncssh refused them unrecorded: an attempt on the upstream's
    # docker or database socket left no evidence. Refused undecided, and recorded.

    def unix_connection_requested(self, dest_path: str) -> Any:
        where = dest_path[:MAX_SHOWN_PATH]
        self._unrelayed(f"direct-streamlocal {where!r}", {"direction": "local", "path": where})
        raise asyncssh.ChannelOpenError(
            asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, f"portcullis: refused: {UNRELAYED}"
        )

    def unix_server_requested(self, listen_path: str) -> bool:
        where = listen_path[:MAX_SHOWN_PATH]
        self._unrelayed(f"streamlocal-forward {where!r}", {"direction": "remote", "path": where})
        return False

    def tun_requested(self, unit: int | None) -> Any:
        return self._tunnel("tun", unit)

    def tap_requested(self, unit: int | None) -> Any:
        return self._tunnel("tap", unit)

    def _tunnel(self, mode: str, unit: int | None) -> Any:
        shown = "any" if unit is None else str(unit)
        self._unrelayed(f"tunnel {mode} {shown}", {"direction": "tunnel", "mode": mode})
        raise asyncssh.ChannelOpenError(
            asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, f"portcullis: refused: {UNRELAYED}"
        )

    def _unrelayed(self, raw: str, attributes: dict[str, Any]) -> None:
        """A forward the proxy does not relay, recorded as refused (once the session is
        open: a public-key login's may still be opening)."""
        log.info("ssh forward refused: %s", UNRELAYED)
        if self.session is not None:
            refusal = Ruling(Verdict.deny(f"refused: {UNRELAYED}"))
            self.session.record_command(
                raw, refusal, kind="ssh.forward", **attributes, refused=UNRELAYED
            )
            return
        task = asyncio.ensure_future(self._refuse_forward(raw, UNRELAYED, attributes))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _forward(
        self, chan: Any, host: str, port: int, orig_host: str, orig_port: int
    ) -> Any:
        small = small_packets(chan)  # relayed a few bytes a packet (channel.py)
        if small:
            log.info("ssh forward refused: %s", small)
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, f"portcullis: {small}"
            )
        attributes = {"direction": "local", "host": host, "port": port,
                      "origin": f"{orig_host}:{orig_port}"}  # fmt: skip
        try:
            # the host as the policy decides it and the upstream receives it (one spelling
            # of an address: destinations.py)
            host, address = destinations.destination(host)
        except destinations.Refused as exc:
            await self._refuse_forward(f"direct-tcpip {host!r}:{port}", str(exc), attributes)
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, f"portcullis: refused: {exc}"
            ) from None
        attributes.update(host=host, **({"address": address} if address else {}))
        raw = f"direct-tcpip {destinations.shown(host, port)}"
        ruling = await self._decide_forward(raw, attributes)
        if not ruling.verdict.allowed:
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                f"portcullis: denied: {'; '.join(ruling.verdict.reasons)}",
            )
        assert self.conn is not None
        upstream = await self.connect_upstream()
        return await self.conn.forward_tunneled_connection(upstream, host, port)

    async def _remote_forward(self, host: str, port: int) -> Any:
        attributes: dict[str, Any] = {"direction": "remote", "host": host, "port": port}
        asked = host
        try:
            host, address = destinations.destination(host, remote=True)
        except destinations.Refused as exc:
            await self._refuse_forward(f"tcpip-forward {host!r}:{port}", str(exc), attributes)
            return False
        attributes.update(host=host, **({"address": address} if address else {}))
        raw = f"tcpip-forward {destinations.shown(host, port)}"
        ruling = await self._decide_forward(raw, attributes)
        if not ruling.verdict.allowed or self.conn is None or self.session is None:
            return False
        try:
            upstream = await self.connect_upstream()
            listener = await relay_remote_forward(
                self.conn, upstream, host, port, self.session.record_response, asked
            )
        except (asyncssh.Error, OSError, CredentialUnavailable, TimeoutError) as exc:
            log.info("remote forward %s:%d refused upstream: %s", host, port, type(exc).__name__)
            return False
        self.remote_listeners.append(listener)
        return listener

    async def _refuse_forward(self, raw: str, why: str, attributes: dict[str, Any]) -> None:
        """A forward whose host does not read (destinations.py): recorded as denied, never
        decided nor sent upstream."""
        log.info("ssh forward refused: %s", why)
        session = await self.ready()
        if session is not None:
            session.record_command(raw, Ruling(Verdict.deny(f"refused: {why}")),
                                   kind="ssh.forward", **attributes, refused=why)  # fmt: skip

    async def _decide_forward(self, raw: str, attributes: dict[str, Any]) -> Ruling:
        session = await self.ready()
        if session is None:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, "no session")
        self.upstream_soon()
        ruling = await session.decide("ssh.forward", raw, attributes)
        if ruling.kind is VerdictKind.REQUIRE_APPROVAL:
            ruling = Ruling(
                Verdict.deny("a forwarding that needs approval is not waited for"),
                ruling.decision_id,
                ruling.policy_revision,
            )
        unread = {"unread": UNREAD_FORWARD} if ruling.verdict.allowed else {}
        session.record_command(raw, ruling, kind="ssh.forward", **attributes, **unread)
        return ruling

    def upstream_soon(self) -> None:
        """Start connecting to the upstream (once the session is open), while a request
        is decided: no channel is opened there until one is allowed. A failed attempt is
        started again by the next caller."""
        task = self._connecting
        if self.upstream is not None or self.session is None or self._closing is not None:
            return
        if task is not None and not (task.done() and (task.cancelled() or task.exception())):
            return
        self._connecting = asyncio.ensure_future(self._connect())
        # its failure is told to the channel that awaits it; unawaited, it is not an error
        self._connecting.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def connect_upstream(self) -> asyncssh.SSHClientConnection:
        """The session's upstream connection, opened once (started by upstream_soon)."""
        if self.upstream is not None:
            return self.upstream
        self.upstream_soon()
        if self._connecting is None:
            raise ConnectionError("no session")
        return await asyncio.shield(self._connecting)

    def session_ahead(self) -> GatedChannel | None:
        """An upstream session channel already opened (or being opened) for a channel of
        the client's, and another opened for the next one: a channel's open is not a
        round trip on its way (it carries nothing; its request goes only once allowed,
        proxies/ssh/upstream.py). None: none ready (open_session opens one)."""
        taken, self._spare = self._spare, None
        if taken is not None and taken.opening_failed():
            taken = None  # refused (the upstream's limit of sessions?): opened anew
        if self.upstream is not None and self._closing is None and self.conn is not None:
            self._spare = session_ahead(self.upstream)
        return taken

    def channel_ahead(self) -> GatedChannel | None:
        """The upstream session channel for a client's channel just opened: the one opened
        ahead or, none being ready, one opened now; None while the upstream connection is
        not up (or with an asyncssh proxies/ssh/upstream.py does not know). The next one
        is not opened here, where the client waits for its channel's confirmation and then
        for its request's way upstream, but by spare_soon once that request is answered
        (and on its way upstream, if allowed)."""
        taken, self._spare = self._spare, None
        if taken is not None and taken.opening_failed():
            taken = None  # refused (the upstream's limit of sessions?): opened anew
        if taken is None and self.upstream is not None and self._closing is None:
            taken = session_ahead(self.upstream)
        return taken

    def spare_soon(self) -> None:
        """An upstream session channel opened ahead for the client's next channel, if none
        is, once the loop is done with what is ready now (the answered request's way
        upstream): it carries nothing (proxies/ssh/upstream.py)."""
        asyncio.get_running_loop().call_soon(self._open_spare)

    def _open_spare(self) -> None:
        if (
            self._spare is None
            and self.upstream is not None
            and self._closing is None
            and self.conn is not None
        ):
            self._spare = session_ahead(self.upstream)

    async def _connect(self) -> asyncssh.SSHClientConnection:
        session = self.session
        assert session is not None and session.lease is not None
        proxy = self.proxy
        lease = session.lease
        upstream = await asyncio.wait_for(
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
                client_factory=UpstreamClient,
                # AES-GCM first: OpenSSL's, the cheapest of the two encryptions a relayed
                # byte goes through here
                encryption_algs=UPSTREAM_CIPHERS,
            ),
            UPSTREAM_TIMEOUT,
        )
        if self._closing is not None:  # the client left while it was being opened
            upstream.close()
            raise ConnectionError("the client has gone")
        proxy.trust.pin(upstream.get_server_host_key())
        self.upstream = upstream
        if self.signals_refused():
            self._reserve = session_ahead(upstream)  # first: a reap's room before any command's
        # the client's first channel finds its upstream channel opened (or being opened)
        # ahead; one whose request was asked before now opened its own (open_session)
        self._open_spare()
        return upstream

    # -- ending commands sshd will not signal ----------------------------------------------

    def signals_refused(self) -> bool:
        """Whether the upstream account is one sshd sends no signal request to (root:
        without privilege separation after login); asyncssh logs in as the local user when
        the credential names none."""
        lease = self.session.lease if self.session is not None else None
        if lease is None:
            return False
        return self.upstream_account() == "root"

    def upstream_account(self) -> str:
        """The upstream account's name: the credential's, else the local user's (whom
        asyncssh logs in as when the credential names none)."""
        lease = self.session.lease if self.session is not None else None
        return (lease.username if lease is not None else "") or getpass.getuser()

    def shell_reaped(self) -> bool:
        """Whether a shell runs after the proxy's report line, to be reaped at its end
        (reaper.SHELL_LINE): always on a root account, else unless the connection's
        option shell_reaped is false (a login shell that is no POSIX shell)."""
        reaped = self.proxy.connection.options.get("shell_reaped", True)
        return self.signals_refused() or bool(reaped)

    def time_limit(self, kind: str) -> float:
        """The policy's wall-clock limit of one exec (session.open's session_settings
        ssh_exec_seconds) or one shell (ssh_shell_seconds), in seconds; 0: none (or a
        subsystem; unusable: unusable_limit denies)."""
        grant = self.session.grant if self.session is not None else None
        key = _LIMITS.get(kind)
        if grant is None or key is None:
            return 0.0
        raw = dict(grant.ruling.verdict.session_settings).get(key, "0")
        try:
            seconds = float(raw)
        except ValueError:
            return 0.0
        return seconds if math.isfinite(seconds) and seconds > 0 else 0.0

    def unusable_limit(self, kind: str) -> str:
        """Why an exec (a shell) cannot run under the policy's limit (a value that is no
        number of seconds: fail closed), or ""."""
        grant = self.session.grant if self.session is not None else None
        key = _LIMITS.get(kind)
        if key is None or grant is None:
            return ""
        raw = dict(grant.ruling.verdict.session_settings).get(key)
        if raw is None:
            return ""
        try:
            seconds = float(raw)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or seconds < 0:
            return f"the policy's {key} ({raw[:32]!r}) is no number of seconds"
        return ""

    def reap(
        self, sid: int, audit: int | None = None, shared: int | None = None
    ) -> asyncio.Future[str]:
        """End every process of upstream session `sid` (a command of this connection's that
        sshd will not signal) and of audit session `audit` (what left that session: None,
        the upstream drew none), or of the connection's audit session `shared` but its live
        channels' and sshd's (reaper.sweep_command), by an exec of the proxy's on the same
        connection, on the channel held for it (_reserve); the session's close waits for it
        before closing that connection. Its outcome: "", or why the session's processes may
        run on (the channel records it, then reap_failed)."""
        task = asyncio.ensure_future(self._reap(sid, audit, shared))
        self._reaps.add(task)
        task.add_done_callback(self._reaps.discard)
        return task

    async def _reap(self, sid: int, audit: int | None, shared: int | None) -> str:
        async with self._reaping:
            upstream = self.upstream
            if upstream is None:
                return _reap_failure(sid, "no upstream connection")
            chan, self._reserve = self._reserve, None
            if chan is None or chan.opening_failed():
                chan = session_ahead(upstream)  # (refused when the upstream has no room)
            try:
                # what left the session first
                if audit is None and shared is not None:
                    line = sweep_command(shared, shared_by=sid) + reap_command(sid)
                else:
                    line = sweep_command(audit) + reap_command(sid)
                reaping = _reap_on(upstream, chan, line)
                why = await asyncio.wait_for(reaping, REAP_TIMEOUT)
            except (OSError, asyncssh.Error, TimeoutError) as exc:
                why = type(exc).__name__
                if isinstance(exc, asyncssh.ChannelOpenError):
                    why = f"the upstream refused the reap's channel ({exc.reason})"
            if self._closing is None and self.upstream is not None:
                self._reserve = session_ahead(self.upstream)  # the next reap's room
            return _reap_failure(sid, why) if why else ""

    def reap_failed(self, channel: int, why: str) -> None:
        """A reap failed (recorded in its channel's event): a command the proxy had to end
        may run on upstream, beyond the proxy's reach. The operator is signalled (an
        error logged, metric upstream_errors{reason="ssh_reap_failed"}), and the session
        ends (fail closed: it runs no more commands the proxy could not end), its client
        told why; the session's close reason says it (upstream_reap_failed)."""
        log.error("ssh proxy: channel %d: %s; the session is closed", channel, why)
        if self.session is not None:
            self.session.runtime.metrics.upstream_error("ssh_reap_failed")
        text = f"portcullis: {why}: the session is closed"
        for open_channel in list(self.channels):
            open_channel.say(text)
        self._ended_why = "upstream_reap_failed"
        if self.conn is not None:
            self.conn.disconnect(asyncssh.DISC_BY_APPLICATION, text.removeprefix("portcullis: "))

    # -- the end -------------------------------------------------------------------------

    def drain(self, force: bool) -> None:
        """The proxy drains: disconnect once no channel runs (at once when forced)."""
        if force or not self.channels:
            self._disconnect()
        elif self._draining is None:
            self._draining = asyncio.ensure_future(self._disconnect_when_quiet())

    async def _disconnect_when_quiet(self) -> None:
        ended: list[Channel] = []
        while self.channels:
            running = list(self.channels)
            ended += running
            await asyncio.gather(*(c.finished for c in running), return_exceptions=True)
        if ended:
            # a client whose last channel closed usually leaves by itself (and has read its
            # exit status by then): it is told only if it stays (connection_lost cancels)
            for channel in ended:
                with contextlib.suppress(Exception):
                    await channel.chan.wait_closed()
            await asyncio.sleep(LEAVE_SECONDS)
        self._disconnect()

    def _disconnect(self) -> None:
        if self.conn is not None:
            self.conn.disconnect(asyncssh.DISC_BY_APPLICATION, f"portcullis: {SHUTDOWN_MESSAGE}")

    async def shut(self, reason: str) -> None:
        """Proxy shutdown: end the client connection and the session."""
        if self.conn is not None:
            self.conn.close()
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close(reason, False))
        await self._closing

    async def _close(self, reason: str, abnormal: bool) -> None:
        if self._opening is not None:
            await self.ready()  # a public-key login's session still opening: closed too
        for channel in list(self.channels):
            channel.client_gone()
        if self.channels:
            await asyncio.gather(*(c.finished for c in list(self.channels)),
                                 return_exceptions=True)  # fmt: skip
        if self._expiry is not None:
            self._expiry.cancel()
        for deadline in (self._certificate_end, self._key_check):
            if deadline is not None:
                self.proxy.runtime.deadlines.withdraw(deadline)
        self._certificate_end = self._key_check = None
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            with contextlib.suppress(BaseException):
                await self._connecting
        if self._reaps:  # commands being ended need the upstream connection
            await asyncio.gather(*list(self._reaps), return_exceptions=True)
        if self.upstream is not None:
            self.upstream.close()
            with contextlib.suppress(Exception):
                await self.upstream.wait_closed()
        session = self.session
        if session is None:
            return
        session.counters["bytes_to_client"] = self.sent_before + sum(o.sent for o in self.outputs)
        session.counters["credential_exposed"] = int(
            self.scanner.exposed if self.scanner is not None else False
        )
        await session.close(reason, abnormal)


# a subsystem (an SFTP session) is interactive as a shell is: it runs under the shell's limit
_LIMITS = {"ssh.exec": EXEC_SECONDS, "ssh.shell": SHELL_SECONDS, "ssh.subsystem": SHELL_SECONDS}


async def _reap_on(
    upstream: asyncssh.SSHClientConnection, chan: GatedChannel | None, line: str
) -> str:
    """A reaper.reap_command `line` on `chan` (a channel of session_ahead; None: a channel
    of its own): "" once it ended the session, else why not."""
    if chan is None:  # an asyncssh upstream.py does not know
        result = await upstream.run(line, check=False)
        status = result.exit_status
    else:
        request = Request(asyncssh.SSHClientSession, command=line)
        await request_on(chan, request)
        await chan.wait_closed()
        status = chan.get_exit_status()
    return "" if status == 0 else f"the reap exited {status}"


def _reap_failure(sid: int, why: str) -> str:
    return f"upstream session {sid} could not be ended ({why}): its processes may run on"


class UpstreamClient(asyncssh.SSHClient):
    """The proxy's side of an upstream connection, from its first packet."""

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        without_chaff(conn)


__all__ = ["SshProxy"]
