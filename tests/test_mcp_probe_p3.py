"""Probing the MCP exchange as a reader (brief P3): what got past a guardrail, kept as tests.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`; the upstream is given
as a transcript (test_mcp_exchange's Agent), so each answer of a server is exact. Every
case is a reader's (mallory, outside pii-readers: tool results masked):

- content the masking did not read: an image's or audio's base64 `data` holding text,
  a text content or resource text that is JSON after a newline or a byte order mark (its
  fields, `password` say, went whole), a blob of UTF-16 text (NULs between the letters,
  with or without a byte order mark).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from test_mcp_exchange import SSE, agent_of, chunks, event, read, sse_messages, tool_call
from test_mcp_proxy import mcp_stack

from proxies.http.mcp import Forward

pytestmark = pytest.mark.integration

SECRET_TEXT = "ann@example.com card 4111 1111 1111 1111"
PLAIN = ("ann@example.com", "4111 1111 1111 1111", "hunter2", "k-123")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _revealed(data: bytes) -> list[str]:
    """What a client would read in the answer: its text, and every base64 string in it
    decoded (standard or URL-safe, NULs dropped)."""
    views = [data.decode()]
    for message in sse_messages(data):
        stack: list[Any] = [message]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
            elif isinstance(node, str) and len(node) >= 8:
                for decode in (base64.b64decode, base64.urlsafe_b64decode):
                    try:
                        views.append(decode(node + "==").replace(b"\0", b"").decode("latin-1"))
                    except ValueError:
                        pass
    return [secret for secret in PLAIN if any(secret in view for view in views)]


async def _answers(stack: Any, results: dict[str, Any]) -> dict[str, bytes]:
    mallory = await agent_of(stack, "mallory@example.com", "readonly")
    await mallory.start("sid-m")
    out = {}
    for n, (name, result) in enumerate(results.items()):
        call = await mallory.send("POST", tool_call(10 + n, "find_customer", name="Ann"))
        assert isinstance(call, Forward), name
        answer = event({"jsonrpc": "2.0", "id": 10 + n, "result": result})
        out[name] = await read(await call.response(200, list(SSE), chunks(answer)))
    return out


def _resource(**contents: str) -> dict[str, Any]:
    resource = {"uri": "invoice://1", **contents}
    return {"content": [{"type": "resource", "resource": resource}]}


async def test_base64_and_json_texts_in_a_result_are_read_to_be_masked(tmp_path: Path) -> None:
    utf16 = SECRET_TEXT.encode("utf-16")  # with its byte order mark: not UTF-8
    fields = '{"password": "hunter2", "api_key": "k-123"}'
    results = {
        "image": {"content": [{"type": "image", "data": b64(SECRET_TEXT.encode()),
                               "mimeType": "image/png"}]},
        "audio": {"content": [{"type": "audio", "data": b64(SECRET_TEXT.encode()),
                               "mimeType": "audio/wav"}]},
        "json after a newline": {"content": [{"type": "text", "text": "\n " + fields}]},
        "json after a BOM": {"content": [{"type": "text", "text": "\ufeff" + fields}]},
        "resource json": _resource(mimeType="application/json", text="\r\n" + fields),
        "utf-16 blob": _resource(blob=b64(utf16)),
        "utf-16le blob": _resource(blob=b64(SECRET_TEXT.encode("utf-16-le"))),
    }  # fmt: skip
    async with mcp_stack(tmp_path) as stack:
        answers = await _answers(stack, results)
    leaked = {name: _revealed(data) for name, data in answers.items()}
    assert leaked == {name: [] for name in results}, leaked
    # what was masked is still what the client expects: JSON stays JSON, an image an image
    text = sse_messages(answers["json after a newline"])[0]["result"]["content"][0]["text"]
    assert json.loads(text) == {"password": "[REDACTED]", "api_key": "[REDACTED]"}
    image = sse_messages(answers["image"])[0]["result"]["content"][0]
    assert b"a***@example.com" in base64.b64decode(image["data"])


async def test_clean_images_and_blobs_go_as_they_came_others_are_withheld(tmp_path: Path) -> None:
    utf16 = SECRET_TEXT.encode("utf-16")
    png = b64(b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x10 plain pixels")
    wrapped = b64(b"plain text, nothing sensitive, " * 4)
    results = {
        "png": {"content": [{"type": "image", "data": png, "mimeType": "image/png"}]},
        "text blob, MIME lines": _resource(blob=wrapped[:40] + "\r\n" + wrapped[40:]),
        "base64url blob": _resource(blob=base64.urlsafe_b64encode(b"\xfb\xff" + utf16).decode()),
    }
    async with mcp_stack(tmp_path) as stack:
        answers = await _answers(stack, results)
    image = sse_messages(answers["png"])[0]["result"]["content"][0]
    assert image["data"] == png
    blob = sse_messages(answers["text blob, MIME lines"])[0]["result"]["content"][0]
    assert base64.b64decode(blob["resource"]["blob"]) == base64.b64decode(wrapped)
    # base64 of another alphabet is not read as other bytes than the client reads: withheld
    other = sse_messages(answers["base64url blob"])[0]["result"]["content"][0]
    assert other["resource"]["blob"] == ""
