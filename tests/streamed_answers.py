"""A raw upstream's answer for the HTTP proxy's tests: records written as a stream writes them.

One conversation (for http_upstream.raw_server) that reads a request's head and answers
200 with the records given: whole with a Content-Length, or chunked, one chunk a record,
each written and drained on its own, awaiting `between(n)` after record n (a stream's
pace: what the upstream waits on before its next record). test_masking_probe_p12 (an
answer the detectors read) and test_http_probe_p36 (records a value is split across).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from http_upstream import Conversation


async def next_record(_: int) -> None:
    """No wait between records but the loop's turn."""
    await asyncio.sleep(0)


def answering(
    kind: str,
    records: list[bytes],
    between: Callable[[int], Awaitable[None]] = next_record,
    *,
    chunked: bool = True,
) -> Conversation:
    """An upstream answering each request with `records` as a `kind` body: chunked, one
    chunk a record, awaiting `between(n)` after record n; or (chunked=False) whole, with
    a Content-Length."""

    async def converse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\n" % kind.encode()
        if not chunked:
            body = b"".join(records)
            writer.write(head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            return
        writer.write(head + b"Transfer-Encoding: chunked\r\n\r\n")
        for n, record in enumerate(records):
            writer.write(b"%x\r\n%s\r\n" % (len(record), record))
            await writer.drain()
            await between(n)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    return converse
