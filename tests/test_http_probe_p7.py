"""Probing the HTTP proxy as a reader and as a dba outside pii-readers (brief P7): what got
past a mask, the credential guard or the decision, or held every other session up, kept
as tests.

Real PDP with the shipped policy, the HTTP proxy, and an upstream of the test's own (an
aiohttp app, or a raw server answering exactly what a case needs); real clients (raw
sockets: the bytes are the attack). Each test is one way around a guardrail that worked
before its fix:

- a large request body was read for the policy (decoded, split into words, each escape
  undone: request_words) on the event loop that serves every session of the process: 8
  MiB of `a&amp;%41\\u0041` held it for 14 s of CPU, a few KiB of gzip that decode to
  megabytes of words alike, and every other client (any identity) waited. Such a body is
  now read in a thread, and its reading is bounded (MAX_WORDS_READ over every reading:
  past that it is unread, which needs approval for anyone masked);
"""

from __future__ import annotations

import asyncio
import gzip
import threading
from typing import Any

import pytest
from http_upstream import exchange, http_stack, request, status
from test_http_probe_p5 import app_upstream
from test_http_probe_p6 import postgrest_app

from proxies.http import request_words

pytestmark = pytest.mark.integration

# a body past what is read on the loop, plain or as a few KiB of gzip
LARGE_BODIES = {
    "plain": ("Content-Type: text/plain\r\n", b"name Ann " * 20000),
    "gzip": (
        "Content-Type: text/plain\r\nContent-Encoding: gzip\r\n",
        gzip.compress(b"name Ann " * 20000),
    ),
}


@pytest.mark.parametrize("case", sorted(LARGE_BODIES))
async def test_another_session_is_answered_while_a_large_body_is_read(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    fields, body = LARGE_BODIES[case]
    loop = asyncio.get_running_loop()
    reading = asyncio.Event()
    served = threading.Event()
    waited: list[bool] = []
    read_words = request_words.body_runs

    def body_runs(media_type: str, data: bytes) -> list[str]:
        # the reading goes on until another client has been answered meanwhile (or a
        # while has passed: on the loop, nobody else can be)
        loop.call_soon_threadsafe(reading.set)
        waited.append(served.wait(20))
        return read_words(media_type, data)

    monkeypatch.setattr(request_words, "body_runs", body_runs)
    async with (
        app_upstream(postgrest_app()) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        line = "PUT /customers HTTP/1.1"
        large = asyncio.create_task(
            exchange(s.proxy.port, request(s, line, fields, body, ("dba",)))
        )
        await asyncio.wait_for(reading.wait(), 30)
        other = await exchange(s.proxy.port, request(s, "GET /customers HTTP/1.1"))
        served.set()
        answer = await large
    assert waited == [True]
    assert status(other) == 200, other[:300]
    assert status(answer) == 200, answer[:300]


def test_a_body_too_costly_to_read_is_unread() -> None:
    # 8 MiB of escapes: every reading (as written, JSON, HTML, percent) 4 M words; was
    # read whole (14 s of CPU), now unread past MAX_WORDS_READ
    body = b"a&amp;%41\\u0041 " * (7 * 1024 * 1024 // 17)
    with pytest.raises(request_words.Unread) as unread:
        request_words.body_runs("text/plain", body)
    assert unread.value.kind == "size"
    # a large body of few words is still read
    assert request_words.body_runs("text/plain", b"name Ann " * 200000) == [
        "ann",
        "ann name",
        "ann name ann",
        "name",
        "name ann",
        "name ann name",
    ]
