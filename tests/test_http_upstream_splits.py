"""The upstream client's fast paths (proxies/http/upstream.py) read what its general path
reads: an answer head found in the bytes already here is taken in send()'s own frame, and
a Content-Length body already here is taken by Body.ready() without a wait; an answer
split anywhere (so that neither, one or both fast paths apply) reads the same status,
fields, body and keep-alive as one sent whole, and a cut answer is still refused."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxies.http.upstream import UpstreamCut, UpstreamError, UpstreamPool

ANSWERS = [
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n"
    + b'{"a": [1,2]}',
    b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n",
]


async def _read(answer: bytes, cuts: list[int], whole_body: bool) -> tuple[object, ...]:
    """Serve `answer` in pieces cut at `cuts` (a pause between them), read it through the
    pool: (status, fields, body, whether the connection went back to the pool)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        last = 0
        for cut in [*sorted(set(cuts)), len(answer)]:
            if cut > last:
                writer.write(answer[last:cut])
                await writer.drain()
                await asyncio.sleep(0.002)
                last = cut
        await reader.read()  # until the client goes
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    pool = UpstreamPool("127.0.0.1", server.sockets[0].getsockname()[1], None)
    try:
        response = await pool.request("GET", "/x", [("host", "up")], None)
        await asyncio.sleep(0.02 if whole_body else 0)  # the body may come meanwhile
        body = response.content.ready() if whole_body else None
        if body is None:
            body = await response.content.read()
        response.release()
        kept = len(pool._idle)
        return response.status, response.raw_headers, body, kept
    finally:
        await pool.close()
        server.close()


@given(
    st.sampled_from(ANSWERS),
    st.lists(st.integers(1, 160), max_size=4),
    st.booleans(),
)
@settings(max_examples=60, deadline=None)
def test_an_answer_split_anywhere_reads_as_the_answer_whole(
    answer: bytes, cuts: list[int], wait: bool
) -> None:
    cuts = [c for c in cuts if c < len(answer)]
    whole = asyncio.run(_read(answer, [], False))
    assert asyncio.run(_read(answer, cuts, wait)) == whole


@pytest.mark.parametrize("cut", [0, 10, 30])
def test_an_answer_cut_short_is_still_refused(cut: int) -> None:
    answer = ANSWERS[0]

    async def go() -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer[:cut] if cut < 30 else answer[:-3])  # head, or body, cut
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        pool = UpstreamPool("127.0.0.1", server.sockets[0].getsockname()[1], None)
        try:
            if cut < 30:
                with pytest.raises(UpstreamError):
                    await pool.request("GET", "/x", [("host", "up")], None)
            else:
                response = await pool.request("GET", "/x", [("host", "up")], None)
                await asyncio.sleep(0.05)
                assert response.content.ready() is None  # not all of it: no fast path
                with pytest.raises(UpstreamCut):
                    await response.content.read()
                response.release()
                assert not pool._idle
        finally:
            await pool.close()
            server.close()

    asyncio.run(go())
