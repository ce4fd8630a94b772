"""Instructions per request of the HTTP proxy's client-side reading: asyncio streams
against proxies/http/client_io.py's ClientIO, under callgrind.

Owns one measurement: a server on uvloop reads kept-alive clients with the proxy's codec
(RequestReader) and answers each request with the same bytes through a ClientOutput, its
connection read either through the StreamReader a stream server makes (`streams`:
reader.read, writer.write, writer.drain, as the proxy read its clients before) or through a
ClientIO the runtime's Listener puts on the transport it accepted (`client_io`:
take_transport, io.read, transport.write, io.drain, as it reads them now); clients in the
same process and loop send N requests in all. Run under callgrind with N and 2N requests:
the difference over N is the instructions one request costs (start-up drops out), the same
on a loaded machine as on a quiet one. The client's share is the same code on both sides,
so the difference between the sides is the server's.

    python bench/http/client_io_cost.py [--requests 4000] [--connections 8]
    python bench/http/client_io_cost.py --run streams 4000   # one run (what callgrind runs)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "proto"))

from proxies.http.client_io import ClientIO  # noqa: E402
from proxies.http.codec import Head, RequestReader  # noqa: E402
from proxies.runtime.exposure import ClientOutput  # noqa: E402
from proxies.runtime.listener import Listener  # noqa: E402

REQUEST = (
    b"GET /doc.json HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer x.y.z\r\n"
    b"User-Agent: bench\r\n\r\n"
)
BODY = b'{"id": 1, "name": "a document", "tags": ["x", "y"]}' * 4
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)


async def serve_streams(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    codec, output = RequestReader(), ClientOutput(writer.write)
    while True:
        data = await reader.read(256 * 1024)
        if not data:
            break
        for event in codec.feed(data):
            if isinstance(event, Head):
                output.write(ANSWER)
        codec.next_request()
        if writer.transport.get_write_buffer_size():
            await writer.drain()
    writer.close()


async def serve_client_io(io: ClientIO, transport: asyncio.Transport) -> None:
    codec, output = RequestReader(), ClientOutput(transport.write)
    while True:
        data = await io.read(256 * 1024)
        if not data:
            break
        for event in codec.feed(data):
            if isinstance(event, Head):
                output.write(ANSWER)
        codec.next_request()
        if transport.get_write_buffer_size():
            await io.drain()


def take_transport(transport: asyncio.Transport) -> tuple[ClientIO, Any]:
    io = ClientIO(transport, over_ssl=False)
    return io, serve_client_io(io, transport)


async def client(port: int, count: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(count):
        writer.write(REQUEST)
        await reader.readexactly(len(ANSWER))
    writer.close()


async def run(side: str, requests: int, connections: int) -> None:
    if side == "streams":
        listener = Listener("bench", "127.0.0.1:0", serve_streams)
    else:
        listener = Listener("bench", "127.0.0.1:0", take_transport=take_transport)
    await listener.start()
    each = requests // connections
    await asyncio.gather(*(client(listener.port, each) for _ in range(connections)))
    await listener.stop()


def instructions(side: str, requests: int, connections: int, where: Path) -> int:
    out = where / f"callgrind.{side}.{requests}"
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
         __file__, "--run", side, str(requests), "--connections", str(connections)],
        check=True, capture_output=True,
    )  # fmt: skip
    totals = [ln for ln in out.read_text(errors="replace").splitlines() if ln.startswith("totals:")]
    return int(totals[0].split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--run", nargs=2, metavar=("SIDE", "REQUESTS"))
    args = parser.parse_args()
    if args.run:
        import uvloop

        uvloop.run(run(args.run[0], int(args.run[1]), args.connections))
        return
    n = args.requests
    per: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="portcullis-client-io-") as tmp:
        for side in ("streams", "client_io"):
            one = instructions(side, n, args.connections, Path(tmp))
            two = instructions(side, 2 * n, args.connections, Path(tmp))
            per[side] = (two - one) / n
            print(f"{side}: {per[side]:,.0f} instructions per request (client's included)")
    print(
        f"client_io - streams: {per['client_io'] - per['streams']:+,.0f} instructions per "
        f"request (client_io/streams {per['client_io'] / per['streams']:.3f}); pid {os.getpid()}"
    )


if __name__ == "__main__":
    main()
