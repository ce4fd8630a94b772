"""An upstream session channel opened ahead of its request, requested only if allowed.

Owns the one place the SSH proxy reaches into asyncssh below its documented API. asyncssh
opens a session channel and sends its requests (pty-req, then exec / shell / subsystem)
in one coroutine (SSHClientConnection.create_session → SSHClientChannel.create). The
proxy wants the open — a round trip to the upstream that carries nothing of the client's
— made as soon as the client opened its channel (before its request is even known), so
that it overlaps the client's request and the PDP's decision, and the requests to follow
only an allow: `open_session` sends the open at once (`GatedChannel.open_ahead`) and
waits for the decision (`gate`): a `Request`, and the channel is created as asyncssh
creates it, its `_open` answering with the open already confirmed, so the requests go as
asyncssh sends them; None (or the wait cancelled), and the channel is closed having sent
the open alone, so a denied command never reaches the upstream.

A caller that holds a channel of `session_ahead` already and knows the decision itself
(proxies/ssh/channel.py, once the upstream connection is up) skips the gate: `request_on`
sends the request of an allowed channel, `close_ahead` closes a denied one.

A terminal's request (pty-req) is sent without waiting for its answer, the channel's own
request right behind it, as OpenSSH's client sends them (GatedChannel._make_request).

With an asyncssh whose channel does not take the arguments this module knows (`GATED`
false), `open_session` waits for the gate first and calls create_session: the same
order, without the overlap.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
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
    and hasattr(asyncssh.SSHClientChannel, "_make_request")
)


@dataclass(frozen=True)
class Request:
    """What an allowed channel asks of the upstream (the client's request, as decided)."""

    factory: Callable[[], asyncssh.SSHClientSession]  # type: ignore[type-arg]
    command: str | None = None
    subsystem: str | None = None
    term_type: str | None = None
    term_size: Any = None
    term_modes: dict[int, int] | None = None


class GatedChannel(asyncssh.SSHClientChannel):  # type: ignore[type-arg]
    """A client session channel whose open is sent ahead of its create()."""

    _ahead: asyncio.Future[Any] | None = None
    # the upstream's answer to the terminal's request, sent without waiting for it
    _terminal: asyncio.Future[bool] | None = None

    def open_ahead(self) -> asyncio.Future[Any]:
        """Send the channel's open now; create() then takes its confirmation."""
        self._ahead = asyncio.ensure_future(super()._open(b"session"))
        # a refusal is told to create() (or nobody: a spare never taken), not logged
        self._ahead.add_done_callback(lambda f: f.cancelled() or f.exception())
        return self._ahead

    def opening_failed(self) -> bool:
        """Its open sent ahead was refused (or the connection failed)."""
        ahead = self._ahead
        return ahead is not None and ahead.done() and (ahead.cancelled() or bool(ahead.exception()))

    async def _open(self, chantype: bytes, *args: bytes) -> Any:
        if self._ahead is None or chantype != b"session" or args:
            return await super()._open(chantype, *args)
        return await self._ahead

    async def _make_request(self, request: bytes, *args: bytes) -> bool | None:
        """asyncssh's, except that a terminal's request (pty-req) is not waited for: the
        channel's own request (exec, shell) goes right behind it, as OpenSSH's client sends
        them, instead of one upstream round trip later (sshd allocating the terminal). The
        answers come in order; the terminal's is read once the channel's came
        (terminal_refused)."""
        waiters = getattr(self, "_request_waiters", None)
        if request != b"pty-req" or not isinstance(waiters, list) or self._send_chan is None:
            return await super()._make_request(request, *args)
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        answer.add_done_callback(lambda f: f.cancelled() or f.exception())  # read or not
        waiters.append(answer)
        self._send_request(request, *args, want_reply=True)
        self._terminal = answer
        return True


def terminal_refused(chan: Any) -> bool:
    """The upstream refused the terminal a channel of request_on asked for ahead of its
    request (sshd's PermitTTY no, a no-pty key, no pty left): the request went anyway, so
    the command runs without one, as OpenSSH's client lets it."""
    answer = getattr(chan, "_terminal", None)
    if answer is None or not answer.done() or answer.cancelled():
        return False
    return answer.exception() is not None or not answer.result()


def _not_allowed() -> asyncssh.ChannelOpenError:
    return asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "not allowed")


def _abandon(chan: GatedChannel, opened: asyncio.Future[Any]) -> None:
    """A channel opened ahead and not wanted: closed once its open is answered (a failed
    open is nobody's error)."""

    def closed(done: asyncio.Future[Any]) -> None:
        if not done.cancelled() and done.exception() is None:
            chan.close()

    opened.add_done_callback(closed)


def session_ahead(conn: asyncssh.SSHClientConnection) -> GatedChannel | None:
    """A session channel of `conn` whose open is sent now, for a request to come
    (open_session's `ahead`); None with an asyncssh this module does not know."""
    if not GATED:
        return None
    options: Any = conn._options  # what create_session reads for these (its defaults)
    chan = GatedChannel(
        conn, asyncio.get_running_loop(), conn._utf8_decode_errors, None, "strict",
        options.window, options.max_pktsize,
    )  # fmt: skip
    chan.open_ahead()
    return chan


def close_ahead(chan: GatedChannel) -> None:
    """A channel of session_ahead not taken: closed once its open is answered."""
    if chan._ahead is not None:
        _abandon(chan, chan._ahead)


async def open_session(
    conn: asyncssh.SSHClientConnection,
    gate: asyncio.Future[Request | None],
    ahead: GatedChannel | None = None,
) -> Any:
    """The upstream channel of one request: opened now (or `ahead`, a channel of
    session_ahead), its request (the gate's Request) sent once the gate has one
    (asyncssh.ChannelOpenError once it is None). Returns the channel."""
    if gate.done() and gate.result() is None:  # denied while the connection was being made
        if ahead is not None:
            close_ahead(ahead)
        raise _not_allowed()
    if not GATED:
        request = await asyncio.shield(gate)
        if request is None:
            raise _not_allowed()
        created, _ = await conn.create_session(
            request.factory, command=request.command, subsystem=request.subsystem,
            term_type=request.term_type, term_size=request.term_size,
            term_modes=request.term_modes, encoding=None,
        )  # fmt: skip
        return created
    chan = ahead if ahead is not None else session_ahead(conn)
    assert chan is not None and chan._ahead is not None
    opened = chan._ahead
    try:
        request = await asyncio.shield(gate)
    except BaseException:
        _abandon(chan, opened)
        raise
    if request is None:
        _abandon(chan, opened)
        raise _not_allowed()
    return await request_on(chan, request)


async def request_on(chan: GatedChannel, request: Request) -> GatedChannel:
    """A channel of session_ahead, its open answered, then its request sent (the
    decision allowed it): returns the channel once the upstream said yes to the request
    (asyncssh.ChannelOpenError when the open was refused, asyncssh's errors as
    create_session's)."""
    await chan.create(
        request.factory, request.command, request.subsystem, {}, bool(request.term_type),
        request.term_type, request.term_size or None, request.term_modes or {}, False, None,
        None, False, False,
    )  # fmt: skip
    return chan
