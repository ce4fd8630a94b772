"""Where the wall time of one exec through the SSH proxy goes, step by step.

Owns the breakdown the SSH proxy's per-exec target is reasoned with: sshd, the PDP and
the proxy in this process (tests/ssh_harness.py, tests/pdp_harness.py: as the tests run
them), `--execs` sequential execs over one connection — the same `uptime` (its answer
reused after the first) or, with `--distinct`, a new `df -B<n> /` each (each decided by
the PDP) — and, for each, the moments the proxy reached each step (channel opened by the
client, its exec request, the decision, the exec request written upstream and answered,
the next channel's upstream open written, the upstream's first output, EOF and exit
status, the client's exit status written, the client answered)
and the client's own start and end. Prints the median time from the client's start to
each step, and the proxy's own steps on the client's way: its exec request to the exec
written upstream, and the upstream's end (EOF and exit status) to the client's exit
status written. One process, one event loop: the PDP's CPU is on the same thread as the
proxy's (a Decide costs here what it costs there, but nothing runs beside it).
`--upstream-delay-ms`: the proxy reaches sshd through a relay holding each chunk that
long each way (an upstream across a network, not on the same host).

    python -u bench/ssh/exec_timeline.py [--execs 100] [--distinct] [--upstream-delay-ms D]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

import asyncssh  # noqa: E402
import test_ssh_proxy  # noqa: E402
from test_ssh_proxy import ssh_stack  # noqa: E402

from proxies.runtime.session import ProxySession  # noqa: E402
from proxies.ssh import channel as channel_module  # noqa: E402
from proxies.ssh import upstream as upstream_module  # noqa: E402

STEPS = ("channel_open", "exec_request", "decided", "upstream_exec_sent", "upstream_exec",
         "spare_open", "upstream_data", "upstream_eof", "exit_status", "client_exit_sent",
         "client_answered", "client_done")  # fmt: skip

marks: dict[str, float] = {}


def mark(step: str) -> None:
    marks.setdefault(step, time.perf_counter())


def wrap(owner: Any, name: str, step: str) -> None:
    original = getattr(owner, name)

    def marked(*args: Any, **kwargs: Any) -> Any:
        mark(step)
        return original(*args, **kwargs)

    setattr(owner, name, marked)


def instrument() -> None:
    Channel, Up = channel_module.Channel, channel_module.UpstreamChannel
    wrap(Channel, "connection_made", "channel_open")
    wrap(Channel, "exec_requested", "exec_request")
    wrap(Up, "data_received", "upstream_data")
    wrap(Channel, "upstream_eof", "upstream_eof")
    wrap(Up, "exit_status_received", "exit_status")
    wrap(Channel, "_end", "client_answered")
    # the packets themselves: the exec request written upstream, the exit status written
    # to the client, the next channel's upstream open (opened ahead) written
    wrap(asyncssh.SSHServerChannel, "exit", "client_exit_sent")
    wrap(asyncssh.SSHServerChannel, "exit_with_signal", "client_exit_sent")
    wrap(upstream_module.GatedChannel, "open_ahead", "spare_open")
    send_request = upstream_module.GatedChannel._send_request  # the proxy's, not the client's

    def sent(self: Any, request: bytes, *args: Any, **kwargs: Any) -> Any:
        if request == b"exec":
            mark("upstream_exec_sent")
        return send_request(self, request, *args, **kwargs)

    upstream_module.GatedChannel._send_request = sent  # type: ignore[method-assign]
    decide = ProxySession.decide_or_wait

    async def decided(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await decide(self, *args, **kwargs)
        finally:
            mark("decided")

    ProxySession.decide_or_wait = decided  # type: ignore[method-assign]
    # the upstream's answer to the exec request: through open_session (a channel opened
    # while the upstream connection was being made) or request_on (one opened ahead)
    for name in ("open_session", "request_on"):
        original = getattr(channel_module, name)

        async def answered(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            try:
                return await _original(*args, **kwargs)
            finally:
                mark("upstream_exec")

        setattr(channel_module, name, answered)


async def delayed_relay(target: dict[str, int], delay: float) -> tuple[asyncio.Server, int]:
    """A TCP relay to target["port"] that holds each chunk `delay` seconds each way (an
    upstream that far away), order kept. Returns the server and its port."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(1 << 16):
                loop.call_later(delay, writer.write, data)
        finally:
            loop.call_later(delay * 1.01, writer.close)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target["port"])
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def run(args: argparse.Namespace) -> None:
    instrument()
    if args.upstream_delay_ms:
        # the proxy reaches sshd through a relay that delays each way
        target: dict[str, int] = {}
        _relay, port = await delayed_relay(target, args.upstream_delay_ms / 1000)
        connection = test_ssh_proxy.ssh_connection

        def far(sshd: Any, tmp: Path, *rest: Any, **options: Any) -> dict[str, Any]:
            target["port"] = sshd.port
            return {**connection(sshd, tmp, *rest, **options), "upstream": f"127.0.0.1:{port}"}

        test_ssh_proxy.ssh_connection = far
    with tempfile.TemporaryDirectory(prefix="portcullis-timeline-") as tmp:
        async with ssh_stack(Path(tmp)) as stack, await stack.connect() as conn:
            for _ in range(5):
                await conn.run("uptime")
            rows: dict[str, list[float]] = {step: [] for step in STEPS}
            for n in range(args.execs):
                marks.clear()
                started = time.perf_counter()
                result = await conn.run(f"df -B{n + 1} /" if args.distinct else "uptime")
                mark("client_done")
                if result.exit_status != 0:
                    raise RuntimeError(f"exit status {result.exit_status}: {result.stderr}")
                for step in STEPS:
                    if step in marks:
                        rows[step].append((marks[step] - started) * 1000)
    what = "a new `df -B<n> /` each" if args.distinct else "the same `uptime`"
    print(f"{args.execs} execs of {what}: ms from the client's start (median, n)")
    way_in = [b - a for a, b in zip(rows["exec_request"], rows["upstream_exec"], strict=True)]
    way_out = [b - a for a, b in zip(rows["upstream_data"], rows["client_done"], strict=True)]
    print(f"  the proxy's way in (exec request to the upstream's answer to it): "
          f"{statistics.median(way_in):.2f} ms; its way out (the upstream's output to the "
          f"client's end): {statistics.median(way_out):.2f} ms")  # fmt: skip
    # the proxy's own steps: the client's exec request to the exec written upstream; the
    # upstream's end (its EOF and exit status, whichever came last) to the client's exit
    # status written
    ended = [max(e, x) for e, x in zip(rows["upstream_eof"], rows["exit_status"], strict=True)]
    steps_in = [b - a for a, b in zip(rows["exec_request"], rows["upstream_exec_sent"],
                                      strict=True)]  # fmt: skip
    steps_out = [b - a for a, b in zip(ended, rows["client_exit_sent"], strict=True)]
    print(f"  the proxy's own steps: exec request to the exec written upstream "
          f"{statistics.median(steps_in) * 1000:.0f} us; the upstream's end to the client's "
          f"exit status written {statistics.median(steps_out) * 1000:.0f} us")  # fmt: skip
    # what the client waits for besides the upstream's run of the command (the client's
    # own work included: it runs in this process): its start to the exec written upstream,
    # plus the upstream's end to the client's end
    around = [a + (d - e) for a, e, d in zip(rows["upstream_exec_sent"], ended,
                                             rows["client_done"], strict=True)]  # fmt: skip
    print(f"  around the upstream's run: {statistics.median(around) * 1000:.0f} us (median; "
          f"mean {statistics.mean(around) * 1000:.0f} us)")  # fmt: skip
    for step in sorted(STEPS, key=lambda s: statistics.median(rows[s]) if rows[s] else 1e9):
        if rows[step]:
            print(f"  {step:16} {statistics.median(rows[step]):8.2f}  ({len(rows[step])})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execs", type=int, default=100)
    parser.add_argument("--distinct", action="store_true")
    parser.add_argument("--upstream-delay-ms", type=float, default=0, help="each way")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
