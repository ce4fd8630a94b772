"""What a round trip between two processes costs when it comes after an idle spell.

Owns the figure behind bench_ssh.py's two Decide p50s (back to back, and one per exec's
length, about twice as long): is the difference the PDP's, or what any exchange between
processes pays on this machine once its threads went to sleep? Two round trips without
any policy or store: a TCP echo between two asyncio processes (uvloop, as the proxies
run: one wake-up on each side), and a DecideStream echo over gRPC between two grpc.aio
processes (the proxy's decision stream and the PDP's server, with an empty answer: gRPC's
own threads on each side — on receipt its EventEngine's poller, a reader, the completion
queue's poller, then the asyncio loop). Each is timed back to back and `--spacing` ms
apart (the caller asleep between, as a decided exec leaves the PDP for an exec's length).
Prints the median of each and what the spacing added. Not a test: nothing asserts.

    python -u bench/ssh/idle_wake.py [--samples 200] [--spacing 0 1 10 100]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "proto"), str(REPO / "tests")]

from pdp_harness import free_port  # noqa: E402


def _tcp_server(port: int) -> None:
    import uvloop

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(4096):
            writer.write(data)

    async def main() -> None:
        server = await asyncio.start_server(echo, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(main())


def _grpc_server(port: int) -> None:
    import grpc

    from portcullis.v1 import pdp_pb2, pdp_pb2_grpc

    class Echo(pdp_pb2_grpc.DecisionServiceServicer):  # type: ignore[misc]
        async def DecideStream(self, calls, context):  # type: ignore[no-untyped-def]
            async for call in calls:
                yield pdp_pb2.DecideAnswer(call_id=call.call_id)

    async def main() -> None:
        server = grpc.aio.server()
        pdp_pb2_grpc.add_DecisionServiceServicer_to_server(Echo(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


def _listening(port: int, server: multiprocessing.process.BaseProcess) -> None:
    """Once the spawned server (its imports slow on a loaded machine) takes connections."""
    deadline = time.monotonic() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if not server.is_alive() or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


async def _tcp_client(port: int) -> Callable[[], Awaitable[None]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def once() -> None:
        writer.write(b"x" * 64)
        await reader.readexactly(64)

    return once


async def _grpc_client(port: int) -> Callable[[], Awaitable[None]]:
    import grpc

    from portcullis.v1 import pdp_pb2, pdp_pb2_grpc

    stub = pdp_pb2_grpc.DecisionServiceStub(grpc.aio.insecure_channel(f"127.0.0.1:{port}"))
    call = stub.DecideStream()
    n = 0

    async def once() -> None:
        nonlocal n
        n += 1
        await call.write(pdp_pb2.DecideCall(call_id=n))
        await call.read()

    return once


async def _medians(
    once: Callable[[], Awaitable[None]], samples: int, spacings: list[float]
) -> dict[float, float]:
    """Median µs of one round trip at each spacing (ms), two passes interleaved."""
    for _ in range(50):
        await once()
    times: dict[float, list[float]] = {s: [] for s in spacings}
    for _ in range(2):
        for spacing in spacings:
            for _ in range(samples // 2):
                started = time.perf_counter()
                await once()
                times[spacing].append((time.perf_counter() - started) * 1e6)
                if spacing:
                    await asyncio.sleep(spacing / 1000)
    return {s: statistics.median(v) for s, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--spacing", type=float, nargs="+", default=[0, 1, 10, 100])
    args = parser.parse_args()
    spacings = sorted(set([0.0, *args.spacing]))
    for name, serve, connect in (
        ("tcp echo (uvloop)", _tcp_server, _tcp_client),
        ("gRPC DecideStream echo", _grpc_server, _grpc_client),
    ):
        port = free_port()
        # spawned, not forked: a fork of a process that loaded gRPC is not one gRPC supports
        spawn = multiprocessing.get_context("spawn")
        server = spawn.Process(target=serve, args=(port,), daemon=True)
        server.start()
        try:
            _listening(port, server)

            async def run(connect=connect, port=port):  # type: ignore[no-untyped-def]
                return await _medians(await connect(port), args.samples, spacings)

            medians = asyncio.run(run())
        finally:
            server.kill()
            server.join()
        said = ", ".join(
            f"{s:g} ms apart {m:.0f} µs ({m - medians[0.0]:+.0f})" for s, m in medians.items() if s
        )
        print(f"{name}: back to back {medians[0.0]:.0f} µs; {said}")


if __name__ == "__main__":
    main()
