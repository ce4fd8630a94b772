"""Hypothesis over raw request bytes against the running HTTP proxy (a real PDP, the real
upstream app): whatever a client sends, the proxy never forwards a request the PDP did not
decide (and allow), forwards only the path it decided, and never crashes — each connection
ends with an answer or a close, the listener logs no failed connection, and a plain request
still works at the end.

The proxy runs in its own event loop in a thread for the whole module, so each example is
one blocking socket exchange (Hypothesis drives synchronous tests)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from http_upstream import http_stack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pdp_harness import token

from portcullis.http_target import normalise

pytestmark = pytest.mark.integration


class Background:
    """The stack (PDP, upstream, proxy) served from a loop in another thread."""

    def __init__(self, tmp: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        # every forwarded request must show its own decision here, so no verdict is reused
        # (the shipped policy lets GETs be; test_http_proxy tests that reuse)
        self._stack = http_stack(tmp, decision_cache=False)
        self.stack = self.run(self._stack.__aenter__())

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    def close(self) -> None:
        self.run(self._stack.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


class Failures(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    failures = Failures()
    logging.getLogger("portcullis").addHandler(failures)
    background = Background(tmp_path_factory.mktemp("http-fuzz"))
    stack = background.stack
    background.tokens = {  # type: ignore[attr-defined]
        "reader": token(stack.config, "ann@example.com", ("readonly",)),
        "dba": token(stack.config, "dee@example.com", ("dba",)),
    }
    background.failures = failures  # type: ignore[attr-defined]
    try:
        yield background
    finally:
        background.close()
        logging.getLogger("portcullis").removeHandler(failures)


def exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the proxy may refuse before it has read it all
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return out


# sampled_from lists repeat what should come often (Hypothesis samples them evenly)
METHODS = st.sampled_from(
    ["GET"] * 8
    + ["HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] * 2
    + ["get", "G T", "CONNECT", "TRACE", "GET\x00", ""]
)
TARGET_PIECES = st.sampled_from(
    ["echo"] * 12
    + [
        "/",
        "v1",
        "invoices",
        "7",
        "..",
        ".",
        "%2e",
        "%2E%2e",
        "%2f",
        "%5c",
        "%00",
        "%",
        "%zz",
        ";",
        "..;",
        "//",
        "?",
        "&",
        "=",
        "#",
        "http://x",
        "*",
        "a b",
        "\\",
        "~",
        "%7e",
        "é",
    ]
)
PLAIN_HEADERS = st.sampled_from(
    [
        "Content-Length: 5",
        "Content-Length: 0",
        "Accept: */*",
        "Connection: close",
        "Content-Type: application/json",
        "X-Forwarded-For: 10.0.0.1",
        "Prefer: wait=0",
    ]
)
HEADERS = st.sampled_from(
    [
        "Content-Length: 5",
        "Content-Length: 0",
        "Content-Length: 5, 5",
        "Content-Length: -1",
        "Transfer-Encoding: chunked",
        "Transfer-Encoding: gzip",
        "Transfer-Encoding : chunked",
        "Host: x",
        "Host: y",
        "Host: a@b",
        " folded",
        "\tfolded",
        "X-A: \x01",
        "Expect: 100-continue",
        "Expect: nope",
        "Connection: close",
        "Connection: keep-alive, Upgrade",
        "Upgrade: websocket",
        "Prefer: wait=0",
        "Content-Type: application/json",
        "X-Forwarded-For: 10.0.0.1",
        "Authorization: Basic eDp5",
        "Proxy-Authorization: Bearer nope",
    ]
)
BODIES = st.sampled_from(
    [
        b"",
        b"hello",
        b"5\r\nhello\r\n0\r\n\r\n",
        b"zz\r\n",
        b'{"a":1}',
        b"0\r\n\r\nGET /echo/smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, bytes]:
    who = draw(st.sampled_from(["reader", "dba", ""]))
    if draw(st.integers(0, 9)) == 0:
        return who, draw(st.binary(max_size=300))
    method = draw(METHODS)
    target = "/" + "/".join(draw(st.lists(TARGET_PIECES, max_size=6)))
    version = draw(st.sampled_from(["HTTP/1.1"] * 6 + ["HTTP/1.0", "HTTP/2.0", "http/1.1"]))
    eol = draw(st.sampled_from(["\r\n"] * 6 + ["\n"]))
    lines = [f"{method} {target} {version}"]
    if draw(st.integers(0, 4)) != 4:  # Hypothesis leans to 0: mostly with a Host
        lines.append("Host: x")
    lines += draw(st.lists(PLAIN_HEADERS, max_size=3))
    if draw(st.booleans()):
        lines.insert(draw(st.integers(1, len(lines))), draw(HEADERS))
    if who:
        lines.append("Authorization: Bearer {" + who + "}")
    head = eol.join(lines) + eol + eol
    return who, head.encode("utf-8") + draw(BODIES)


@st.composite
def pipelines(draw: st.DrawFn) -> tuple[str, bytes]:
    """One to three requests on one connection, one after the other (pipelined)."""
    drawn = draw(st.lists(requests(), min_size=1, max_size=3))
    return drawn[0][0] or "reader", b"".join(data for _, data in drawn)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(pipelines())
def test_raw_requests_never_forwarded_undecided_and_never_crash(served, request_):
    _, data = request_
    for name, value in served.tokens.items():
        data = data.replace(b"{" + name.encode() + b"}", value.encode())
    stack = served.stack
    seen_before = len(stack.upstream.seen)
    decided_before = len(served.run(stack.pdp.store.query(kind="decision")))
    answer = exchange(stack.proxy.port, data)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 "), answer[:80]
    forwarded = stack.upstream.seen[seen_before:]
    decided = served.run(stack.pdp.store.query(kind="decision"))[decided_before:]
    # what this connection's requests were allowed, one entry per decision
    allowed = [
        normalise(d.body["raw"].split("\n")[0].split(" ")[1]).path
        for d in decided
        if d.body.get("kind") == "http.request" and d.body["verdict"] in ("allow", "mask")
    ]
    for request in forwarded:
        path = request["raw_path"].split("?")[0]
        assert path in allowed, (path, allowed)
        allowed.remove(path)  # each decision lets one request through
        assert b"smuggled" not in request["raw_path"].encode()
    assert served.failures.records == []


def test_after_the_fuzzing_a_plain_request_still_works(served):
    forwarded = served.stack.upstream.seen
    # the fuzzing reached the upstream, not only the codec: how many of the 200 pipelines
    # are allowed whole is Hypothesis's draw (6 to 23 in runs of seeds 1-4 and unseeded;
    # a bar of "more than 5" failed a CI run at exactly 5)
    assert len(forwarded) > 0
    print(f"{len(forwarded)} fuzzed requests were allowed and forwarded")
    data = (
        b"GET /echo/after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer " + served.tokens["reader"].encode() + b"\r\n\r\n"
    )
    assert exchange(served.stack.proxy.port, data).startswith(b"HTTP/1.1 200")
