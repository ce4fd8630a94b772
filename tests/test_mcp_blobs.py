"""MCP resource blobs (base64) are masked like the text they carry: a CSV or JSON export
inside a `blob` must not walk a sensitive value past the masking a `text` would get."""

from __future__ import annotations

import base64
import json
from collections import Counter

from portcullis.masking import DETECTORS, Masker
from portcullis.verdict import MaskRule
from proxies.http.mcp import _mask_tree

MASKER = Masker(
    [
        MaskRule(field="email", strategy="redact"),
        *(MaskRule(detector=n, strategy="partial") for n in DETECTORS),
    ],
    b"k" * 32,
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _read(result: dict) -> bytes:
    return base64.b64decode(result["contents"][0]["blob"])


def _resource(blob: str, mime: str = "text/csv") -> dict:
    return {"contents": [{"uri": "file:///export", "mimeType": mime, "blob": blob}]}


def test_text_in_a_blob_is_masked_and_counted() -> None:
    counts: Counter[str] = Counter()
    csv = b"id,email,card\n7,ann@example.com,4111 1111 1111 1111\n"
    out = _mask_tree(_resource(_b64(csv)), MASKER, counts)
    text = _read(out)
    assert b"ann@example.com" not in text and b"4111 1111 1111 1111" not in text
    assert text.startswith(b"id,email,card\n7,")
    assert sum(counts.values()) >= 2


def test_json_in_a_blob_is_masked_by_field_too() -> None:
    counts: Counter[str] = Counter()
    doc = {"customer": {"email": "no-at-sign-here", "name": "Ann"}}
    out = _mask_tree(_resource(_b64(json.dumps(doc).encode()), "application/json"),
                     MASKER, counts)  # fmt: skip
    masked = json.loads(_read(out))
    assert masked["customer"]["email"] == "[REDACTED]" and masked["customer"]["name"] == "Ann"
    assert counts["field:email"] == 1


def test_a_blob_inside_a_tool_result_is_masked() -> None:
    counts: Counter[str] = Counter()
    result = {"content": [{"type": "resource", "resource": {"uri": "x:1", "blob":
              _b64(b"mail ann@example.com")}}]}  # fmt: skip
    out = _mask_tree(result, MASKER, counts)
    assert b"ann@example.com" not in base64.b64decode(out["content"][0]["resource"]["blob"])


def test_binary_and_clean_blobs_go_as_they_came_and_what_cannot_be_masked_is_withheld() -> None:
    counts: Counter[str] = Counter()
    png = _b64(b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x10 plain pixels")  # not UTF-8
    clean = _b64(b"nothing sensitive here")
    assert _read(_mask_tree(_resource(png), MASKER, counts)) == base64.b64decode(png)
    assert _mask_tree(_resource(clean), MASKER, counts)["contents"][0]["blob"] == clean
    assert not counts
    # an email inside bytes that are not text: masking would break the file, so it is withheld
    leaky = _b64(b"\x89PNG\r\n\x1a\n\x00\xff\xfe tEXt ann@example.com")
    assert _mask_tree(_resource(leaky), MASKER, counts)["contents"][0]["blob"] == ""
    assert counts["blob:withheld"] == 1
    garbage = _mask_tree(_resource("not base64 at all!"), MASKER, counts)
    assert garbage["contents"][0]["blob"] == "" and counts["blob:unreadable"] == 1
