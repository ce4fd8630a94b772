"""Remote forwarding (`ssh -R`) relayed through the proxy, once the policy allowed it.

Owns the two halves of an allowed remote forward: the listener is asked of the upstream
(the proxy's SSH connection to it requests `tcpip-forward` there, so the port opens on the
upstream host, where the client asked for it), and each connection the upstream reports on
it becomes a `forwarded-tcpip` channel the proxy opens to the client, the two channels
bridged byte for byte with backpressure (unless the client takes packets below
channel.MIN_CLIENT_PACKET on its channel: both are then closed, nothing relayed). Each
connection is recorded in the session's
events (kind ssh.forward.connection: the listener, the originator, bytes each way). The
decision itself (ssh.forward, direction remote) is the caller's (proxies/ssh/proxy.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncssh

from proxies.ssh.channel import small_packets

log = logging.getLogger("portcullis.ssh")


class _Half(asyncssh.SSHTCPSession):  # type: ignore[type-arg]
    """One side of a bridged pair of TCP channels: what it receives goes to the other
    (held until the other side's channel is open)."""

    def __init__(self, done: Callable[[], None]) -> None:
        self.chan: Any = None
        self.peer: _Half | None = None
        self.bytes = 0
        self._done = done
        self._pending: list[bytes] = []
        self._eof = False
        self.refused = False  # the pair is not relayed (the client's packets too small)

    def connection_made(self, chan: Any) -> None:
        small = small_packets(chan)  # (the upstream's side: sshd's usual size)
        if small or self.refused:
            if small:
                log.info("ssh remote forward connection refused: %s", small)
            self.refused = True
            if self.peer is not None:
                self.peer.refused = True
                if self.peer.chan is not None:
                    self.peer.chan.close()
            chan.close()
            return
        self.chan = chan
        if self.peer is not None:
            self.peer.flush()

    def flush(self) -> None:
        """The peer's channel is open: what arrived before it goes out."""
        peer = self.peer
        if peer is None or peer.chan is None:
            return
        pending, self._pending = self._pending, []
        for data in pending:
            peer.chan.write(data)
        if self._eof:
            with contextlib.suppress(Exception):
                peer.chan.write_eof()

    def data_received(self, data: bytes, datatype: Any) -> None:
        if self.refused:
            return
        self.bytes += len(data)
        peer = self.peer
        if peer is None or peer.chan is None:
            self._pending.append(data)
        else:
            peer.chan.write(data)

    def eof_received(self) -> bool:
        peer = self.peer
        if peer is None or peer.chan is None:
            self._eof = True
        else:
            with contextlib.suppress(Exception):
                peer.chan.write_eof()
        return True

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.chan is not None:
            self.peer.chan.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.chan is not None:
            self.peer.chan.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.chan is not None:
            self.peer.chan.close()
        self._done()


async def relay_remote_forward(
    client: asyncssh.SSHServerConnection,
    upstream: asyncssh.SSHClientConnection,
    host: str,
    port: int,
    record: Callable[..., None],
    asked: str | None = None,
) -> asyncssh.SSHListener:
    """Listen on the upstream at host:port; each connection there is bridged to a new
    forwarded-tcpip channel to the client, which names the address as the client asked it
    (`asked`, when the proxy sent the upstream another spelling: a client matches the
    channel to its request by that text). Raises asyncssh.ChannelListenError when the
    upstream refuses to listen."""
    listener: asyncssh.SSHListener | None = None

    async def accepted(orig_host: str, orig_port: int) -> _Half:
        bound = listener.get_port() if listener is not None else port
        ended: list[bool] = []

        def done() -> None:
            ended.append(True)
            if len(ended) == 2:
                record(
                    kind="ssh.forward.connection",
                    listen=f"{host}:{bound}",
                    origin=f"{orig_host}:{orig_port}",
                    bytes_to_client=from_upstream.bytes,
                    bytes_to_upstream=from_client.bytes,
                )

        from_upstream, from_client = _Half(done), _Half(done)
        from_upstream.peer, from_client.peer = from_client, from_upstream
        named = host if asked is None else asked
        await client.create_connection(lambda: from_client, named, bound, orig_host, orig_port)
        return from_upstream

    listener = await upstream.create_server(accepted, host, port)
    return listener
