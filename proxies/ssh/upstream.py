"""An upstream session channel opened while its request is decided, requested only if allowed.

Owns the one place the SSH proxy reaches into asyncssh below its documented API. asyncssh
opens a session channel and sends its requests (pty-req, then exec / shell / subsystem)
in one coroutine (SSHClientConnection.create_session → SSHClientChannel.create). The
proxy wants the open — a round trip to the upstream that carries nothing of the client's
— to overlap the PDP's decision, and the requests to follow only an allow:
`GatedChannel` is asyncssh's client channel whose open, once the upstream confirmed it,
waits for the decision (`gate`): True, and the requests go as asyncssh sends them; False
(or the wait cancelled), and the channel is closed having sent the open alone, so a
denied command never reaches the upstream. The override sits between the open and the
first request, which asyncssh sends only after `_open` returns.

`open_session` builds the channel as create_session does; with an asyncssh whose channel
does not take the arguments this module knows (`GATED` false), it waits for the gate
first and calls create_session: the same order, without the overlap.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import asyncssh

# the parameters of asyncssh's SSHClientChannel this module passes (asyncssh 2.15 and on)
_CHANNEL_ARGS = ("conn", "loop", "utf8_decode_errors", "encoding", "errors", "window",
                 "max_pktsize")  # fmt: skip
_CREATE_ARGS = ("session_factory", "command", "subsystem", "env", "request_pty", "term_type",
                "term_size", "term_modes", "x11_forwarding", "x11_display", "x11_auth_path",
                "x11_single_connection", "agent_forwarding")  # fmt: skip


def _parameters(function: Any) -> tuple[str, ...]:
    return tuple(inspect.signature(function).parameters)[1:]  # without self


GATED = (
    _parameters(asyncssh.SSHClientChannel.__init__) == _CHANNEL_ARGS
    and _parameters(asyncssh.SSHClientChannel.create) == _CREATE_ARGS
    and hasattr(asyncssh.SSHClientChannel, "_open")
)


class GatedChannel(asyncssh.SSHClientChannel):  # type: ignore[type-arg]
    """A client session channel whose requests wait, after the open, for `gate`."""

    def __init__(self, gate: asyncio.Future[bool], *args: Any) -> None:
        super().__init__(*args)
        self._gate = gate

    async def _open(self, chantype: bytes, *args: bytes) -> Any:
        packet = await super()._open(chantype, *args)
        try:
            allowed = await asyncio.shield(self._gate)
        except BaseException:
            self.close()
            raise
        if not allowed:
            self.close()
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "not allowed"
            )
        return packet


async def open_session(
    conn: asyncssh.SSHClientConnection,
    gate: asyncio.Future[bool],
    factory: Callable[[], asyncssh.SSHClientSession],  # type: ignore[type-arg]
    command: str | None,
    subsystem: str | None,
    term_type: str | None,
    term_size: Any,
    term_modes: dict[int, int] | None,
) -> Any:
    """The upstream channel of one request: opened now, its requests sent once `gate` is
    True (asyncssh.ChannelOpenError once it is False). Returns the channel."""
    if gate.done() and not gate.result():  # denied while the connection was being made
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "not allowed")
    if not GATED:
        if not await asyncio.shield(gate):
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "not allowed"
            )
        chan, _ = await conn.create_session(
            factory, command=command, subsystem=subsystem, term_type=term_type,
            term_size=term_size, term_modes=term_modes, encoding=None,
        )  # fmt: skip
        return chan
    options: Any = conn._options  # what create_session reads for these (its defaults)
    chan = GatedChannel(
        gate, conn, asyncio.get_running_loop(), conn._utf8_decode_errors, None, "strict",
        options.window, options.max_pktsize,
    )  # fmt: skip
    await chan.create(
        factory, command, subsystem, {}, bool(term_type), term_type, term_size or None,
        term_modes or {}, False, None, None, False, False,
    )  # fmt: skip
    return chan
