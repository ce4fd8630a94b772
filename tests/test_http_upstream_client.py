"""The HTTP proxy's upstream client (proxies/http/upstream.py) against a scripted server:
each answer framing read as RFC 9112 says, kept-alive connections reused, ambiguous
framing refused, a stale kept connection retried only for an idempotent method."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from proxies.http.upstream import (
    UpstreamCut,
    UpstreamError,
    UpstreamPool,
    body_framing,
    read_head,
)

Script = Callable[[bytes], bytes | None]  # a request's bytes → the answer (None: close)


class Server:
    """Answers each request on a connection from a script; counts connections."""

    def __init__(self, answer: Script, close_after: bool = False) -> None:
        self.answer = answer
        self.close_after = close_after  # close each connection after one answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + (await reader.readexactly(length) if length else b"")
                self.requests.append(request)
                out = self.answer(request)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


async def fetch(pool: UpstreamPool, method: str = "GET", body: bytes | None = None):
    response = await pool.request(method, "/x", [("host", "up")], body)
    data = await response.content.read()
    response.release()
    return response, data


def test_a_head_reads_status_reason_and_fields_and_refuses_junk() -> None:
    head = read_head(b"HTTP/1.1 200 OK\r\nContent-Type: a/b\r\nX-A: 1\r\nx-a: 2")
    assert (head.status, head.reason) == (200, "OK")
    assert head.headers.getall("x-a") == ["1", "2"]
    assert head.raw_headers[0] == (b"Content-Type", b"a/b")
    for bad in (b"HTTP/2 200 OK", b"HTTP/1.1 20 OK", b"HTTP/1.1 200 OK\r\nBad Name: x",
                b"HTTP/1.1 200 OK\r\nnocolon"):  # fmt: skip
        with pytest.raises(UpstreamError):
            read_head(bad)


def test_framing_is_one_way_or_refused() -> None:
    def framing(method: str, block: bytes) -> tuple[str, int]:
        return body_framing(method, read_head(block))

    assert framing("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5") == ("length", 5)
    assert framing("GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked") == ("chunked", 0)
    assert framing("GET", b"HTTP/1.1 200 OK") == ("close", 0)
    assert framing("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5") == ("none", 0)
    assert framing("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5") == ("none", 0)
    for bad in (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked",
    ):
        with pytest.raises(UpstreamError):
            framing("GET", bad)


async def test_every_framing_is_read_and_kept_alive_connections_are_reused() -> None:
    answers = iter(
        [
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        ]
    )
    async with Server(lambda _: next(answers)) as server:
        pool = UpstreamPool("127.0.0.1", server.port, None)
        assert (await fetch(pool))[1] == b"hello"
        assert (await fetch(pool))[1] == b"abcde"
        response, data = await fetch(pool)
        assert (response.status, data) == (204, b"")
        assert (await fetch(pool))[1] == b"ok"
        assert server.connections == 1  # one connection until the server said close
        await pool.close()


async def test_a_repeated_answer_head_is_read_as_the_first_and_a_changed_one_anew() -> None:
    """The connection keeps its last answer head by its bytes: the same bytes read the same
    way (for another method too: HEAD has no body), different bytes are read again."""
    same = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    answers = iter(
        [
            same + b"hello",
            same + b"again",
            same,  # to a HEAD: the same head, no body
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        ]
    )
    async with Server(lambda _: next(answers)) as server:
        pool = UpstreamPool("127.0.0.1", server.port, None)
        first, data = await fetch(pool)
        second, again = await fetch(pool)
        head_response, nothing = await fetch(pool, "HEAD")
        assert (data, again, nothing) == (b"hello", b"again", b"")
        assert second.head is first.head and head_response.head is first.head
        with pytest.raises(UpstreamError):
            await fetch(pool)  # the ambiguous head is read, and refused
        assert server.connections == 1
        await pool.close()


async def test_bytes_past_an_answer_are_not_read_as_the_next_answer() -> None:
    """An upstream that sends more than its answer (a second answer nobody asked for) does
    not get to answer the next request with it: the connection is not kept."""
    answers = iter(
        [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nright",
        ]
    )
    async with Server(lambda _: next(answers)) as server:
        pool = UpstreamPool("127.0.0.1", server.port, None)
        first = (await fetch(pool))[1]
        second = (await fetch(pool))[1]
        assert (first, second) == (b"hello", b"right")
        assert server.connections == 2
        await pool.close()


async def test_a_body_cut_short_is_an_upstream_cut_and_the_connection_is_not_kept() -> None:
    short = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"
    async with Server(lambda _: short, close_after=True) as server:
        pool = UpstreamPool("127.0.0.1", server.port, None)
        response = await pool.request("GET", "/x", [("host", "up")], None)
        with pytest.raises(UpstreamCut):
            await response.content.read()
        response.release()
        assert pool._idle == []
        await pool.close()


async def test_a_stale_kept_connection_is_retried_for_get_only() -> None:
    served: list[int] = []

    def once_then_close(_: bytes) -> bytes | None:
        served.append(1)
        return b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na" if len(served) % 2 else None

    async with Server(once_then_close) as server:
        pool = UpstreamPool("127.0.0.1", server.port, None)
        await fetch(pool)  # kept; the server will close it on the next request
        assert (await fetch(pool))[1] == b"a"  # GET: sent again on a new connection
        assert server.connections == 2
        with pytest.raises(UpstreamError):  # POST: never sent twice
            await fetch(pool, "POST", b"{}")
        await pool.close()


async def test_the_request_goes_in_one_write_with_its_length() -> None:
    async with Server(lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") as server:
        pool = UpstreamPool("127.0.0.1", server.port, None)
        await fetch(pool, "POST", b'{"a":1}')
        await fetch(pool, "GET")
        post, get = server.requests
        assert post.startswith(b"POST /x HTTP/1.1\r\nhost: up\r\ncontent-length: 7\r\n\r\n")
        assert post.endswith(b'{"a":1}')
        assert b"content-length" not in get
        await pool.close()
