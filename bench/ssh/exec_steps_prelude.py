"""Prelude for the SSH proxy in bench/ssh/exec_steps.py: the moments of an exec's steps
inside the proxy, one line per channel appended to the file PORTCULLIS_EXEC_STEPS.

Run by bench/http/profiled_proxy.py before the proxy serves (its
PORTCULLIS_BENCH_PRELUDE); wraps the proxy's, the runtime's and asyncssh's methods,
changing nothing they do: the client's channel opened (its confirmation just written),
its exec request, the session started (asyncssh's answer to the request written), the
channel's task running, its decision asked of the session; a decided line's Decide asked
of the PDP client, written to the decision stream and that write done, its answer read
from the stream (grpc's read returned, before the reader hands it on), the caller's ask
and the stream's decide returned, and the PDP client's answer (none for a reused
answer); the next channel's upstream channel opened ahead, the terminal's request
(pty-req) and the exec written upstream, the upstream's EOF and exit status, the
client's exit status written.
Never for production.
"""

from __future__ import annotations

import os
import time
from typing import Any

import asyncssh

from proxies.runtime import decide_calls, pdp_client, session
from proxies.ssh import channel, upstream
from proxies.ssh import proxy as ssh_proxy

_out = open(os.environ["PORTCULLIS_EXEC_STEPS"], "a", buffering=1)  # noqa: SIM115
_current: dict[str, float] = {}


def _mark(step: str) -> None:
    _current.setdefault(step, time.perf_counter())


def _wrap(owner: Any, name: str, step: str, request: bytes | None = None) -> None:
    original = getattr(owner, name)

    def marked(self: Any, *args: Any, **kwargs: Any) -> Any:
        if request is None or (args and args[0] == request):
            _mark(step)
        return original(self, *args, **kwargs)

    setattr(owner, name, marked)


def _wrap_async(owner: Any, name: str, step: str, done: str = "") -> None:
    original = getattr(owner, name)

    async def marked(self: Any, *args: Any, **kwargs: Any) -> Any:
        _mark(step)
        try:
            return await original(self, *args, **kwargs)
        finally:
            if done:
                _mark(done)

    setattr(owner, name, marked)


_opened = channel.Channel.connection_made


def _connection_made(self: Any, chan: Any) -> None:
    if _current:  # the previous channel's steps: one line
        _out.write(" ".join(f"{step}={at:.6f}" for step, at in _current.items()) + "\n")
        _current.clear()
    _mark("open")
    _opened(self, chan)


channel.Channel.connection_made = _connection_made  # type: ignore[method-assign]
_wrap(channel.Channel, "exec_requested", "exec_request")
_wrap(channel.Channel, "session_started", "session_started")
_wrap_async(channel.Channel, "_run", "run")
_wrap_async(session.ProxySession, "decide_or_wait", "decide_or_wait")
_wrap_async(pdp_client.PDPClient, "decide", "decide_asked", "decided")
_wrap_async(decide_calls._Stream, "ask", "ask", "ask_done")
_wrap_async(decide_calls.DecideCalls, "decide", "calls_decide", "calls_done")
_wrap(upstream.GatedChannel, "_send_request", "exec_sent", b"exec")
_wrap(upstream.GatedChannel, "_send_request", "pty_sent", b"pty-req")
_wrap(channel.UpstreamChannel, "exit_status_received", "exit_status")
_wrap(channel.Channel, "upstream_eof", "eof")
_wrap(asyncssh.SSHServerChannel, "exit", "exit_sent")

_stream_init = decide_calls._Stream.__init__


def _stream(self: Any, *args: Any, **kwargs: Any) -> None:
    """A decision stream whose writes are marked (the call object is made per stream)."""
    _stream_init(self, *args, **kwargs)
    write = self.call.write

    async def written(message: Any) -> Any:
        _mark("decide_write")
        try:
            return await write(message)
        finally:
            _mark("decide_written")

    self.call.write = written
    read = self.call.read

    async def answered() -> Any:
        message = await read()
        _mark("decide_read")
        return message

    self.call.read = answered


decide_calls._Stream.__init__ = _stream  # type: ignore[method-assign]
_ahead = ssh_proxy.session_ahead


def _session_ahead(conn: Any) -> Any:
    _mark("spare")
    return _ahead(conn)


ssh_proxy.session_ahead = _session_ahead
