"""Probing the HTTP proxy's masks (P28, helper webmask12): a value streamed in pieces
across events, and a value split by markup.

Real PDP with the shipped policy, the HTTP proxy, a raw upstream streaming each answer
(chunked, no length: the proxy masks it as it passes), a raw client: a reader outside
pii-readers (the detectors: cards, e-mails, SSNs partly masked). Before the fixes:

- an LLM's answer streamed token by token (OpenAI's `data: {"choices": [{"delta":
  {"content": "4111"}}]}`, Anthropic's `content_block_delta` events with `ping`s between,
  Ollama's NDJSON `{"response": ...}` lines, plain `data:` text): the client puts the
  pieces together, the detectors read each event apart, so a card in three pieces
  (`My card is 4111`, ` 1111 1111`, ` 1111`) or an address in two (`bob`,
  `@example.com`) went whole. An event whose piece ends as a value may go on (an LLM's
  piece: a word, digits; data as text: digits or a word, p29) is now held while the
  next adds to it, and a value found across the pieces is masked into the first piece's
  event, the pieces after it emptied (bodies.BodyMask._released);
- a value split by markup (`4111 <em>1111</em> 1111 1111`, a search's highlight of the
  term asked for; `bob<!-- -->@example.com`; in HTML, Markdown or a JSON string) went
  whole, though what a client renders shows it whole; the text is now read as rendered
  too, and goes rendered and masked when that finds a value (BodyMask._rendered_clear).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from http_upstream import read_cases

pytestmark = pytest.mark.integration

CARD, MAIL, SSN = "4111 1111 1111 1111", "bob@example.com", "078-05-1120"


def _openai(pieces: list[str]) -> str:
    events = [
        {"id": "c1", "object": "chat.completion.chunk", "choices": [{"delta": {"content": p}}]}
        for p in pieces
    ]
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"


def _anthropic(pieces: list[str]) -> str:
    out = 'event: message_start\ndata: {"type":"message_start"}\n\n'
    for n, piece in enumerate(pieces):
        delta = {"type": "content_block_delta", "index": 0, "delta": {"text": piece}}
        out += f"event: content_block_delta\ndata: {json.dumps(delta)}\n\n"
        if n == 0:
            out += 'event: ping\ndata: {"type": "ping"}\n\n'
    return out + 'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def _ollama(pieces: list[str]) -> str:
    lines = [{"model": "m", "response": p, "done": False} for p in pieces]
    lines.append({"model": "m", "response": "", "done": True})
    return "".join(json.dumps(line) + "\n" for line in lines)


PIECES = ["My card is 4111", " 1111 1111", " 1111, mail bob", "@example.com, and 078-05", "-1120."]
TEXT_PIECES = [
    "My card is 4111",
    " 1111 1111",
    " 1111, mail bob@",
    "example.com, and 078-05",
    "-1120.",
]
CASES = {
    "openai": ("text/event-stream", _openai(PIECES)),
    "anthropic": ("text/event-stream", _anthropic(PIECES)),
    "ollama": ("application/x-ndjson", _ollama(PIECES)),
    # (data as text: a feed's words are not held, only digits and a word with an `@`)
    "sse-text": ("text/event-stream", "".join(f"data: {p}\n\n" for p in TEXT_PIECES)),
    "html-highlight": ("text/html", "<li>4111 <em>1111</em> 1111 1111</li>\n"),
    "html-comment": ("text/html", "<p>write to bob<!-- x -->@example.com</p>\n"),
    "markdown": ("text/markdown", "card 4111 **1111** 1111 1111\n"),
    "json-highlight": (
        "application/json",
        json.dumps({"hits": [{"highlight": {"note": ["card 4111 <em>1111</em> 1111 1111"]}}]}),
    ),
}
KEPT = {
    "openai-words": ("text/event-stream", _openai(["Hello", " there", ", 42 apples."])),
    "html-words": ("text/html", "<p>Hello <b>Ann</b>, order <em>17</em></p>\n"),
}


async def _read_all(tmp_path: Path, cases: dict[str, tuple[str, str]]) -> dict[str, Any]:
    return await read_cases(tmp_path, cases, piece=11)  # (in pieces as a stream comes)


def _put_together(path: str, body: str) -> str:
    """What the client shows of an answer: a stream's pieces put together."""
    if path in ("openai", "anthropic", "sse-text"):
        texts = []
        for event in body.split("\n\n"):
            data = "\n".join(ln[6:] for ln in event.split("\n") if ln.startswith("data: "))
            if not data or data == "[DONE]":
                continue
            if path == "sse-text":
                texts.append(data)
                continue
            doc = json.loads(data)
            if path == "openai":
                texts.append(doc["choices"][0]["delta"]["content"])
            elif doc.get("type") == "content_block_delta":
                texts.append(doc["delta"]["text"])
        return "".join(texts)
    if path == "ollama":
        return "".join(json.loads(line)["response"] for line in body.splitlines())
    return body


def _clear(text: str) -> str:
    return text.replace("<em>", "").replace("</em>", "").replace("**", "")


async def test_values_in_pieces_or_split_by_markup_are_masked(tmp_path: Path) -> None:
    got = await _read_all(tmp_path, {**CASES, **KEPT})
    assert {p: code for p, (code, _) in got.items()} == {p: 200 for p in {**CASES, **KEPT}}
    for path in CASES:
        shown = _put_together(path, got[path][1].decode())
        for value in (CARD, MAIL, SSN, "41111111", "bob@"):
            assert value not in _clear(shown), (path, shown)
        # (a card's last four, an address's domain, as the masks show them)
        assert "1111" in shown or "@example.com" in shown, (path, shown)
    assert _put_together("openai", got["openai"][1].decode()) == (
        "My card is **** **** **** 1111, mail b***@example.com, and ***-**-1120."
    )
    # (words and short numbers go as they came, each piece in its event)
    words = got["openai-words"][1].decode()
    assert _put_together("openai", words) == "Hello there, 42 apples."
    assert words.count("\n\n") == KEPT["openai-words"][1].count("\n\n")
    assert got["html-words"][1].decode() == KEPT["html-words"][1]
