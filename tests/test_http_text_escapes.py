"""HTTP text answers read as a terminal shows them (proxies/http/bodies.py): a value split by
ANSI escape sequences or backspace overstrike is masked, as SSH output is
(proxies/ssh/stream.mask_shown, the one reading both proxies call)."""

from __future__ import annotations

import pytest

from portcullis.verdict import MaskRule
from proxies.http.bodies import BodyMask, masker_for
from proxies.ssh.stream import shown

KEY = b"k" * 32
RULES = [
    MaskRule(detector="credit_card", strategy="partial"),
    MaskRule(detector="email", strategy="partial"),
]
SPLIT = [
    "card 4111\x1b[0m 1111 1111 1111 ok",
    "card \x1b[01;31m\x1b[K4111\x1b[m\x1b[K 1111 1111 1111",
    "card 4\b41\b11\b11\b1 1111 1111 1111",
    "mail bob\x1b[4m@\x1b[24mexample.com",
    "title \x1b]0;4111 1111 1111 1111\x07 shown",
]


def masked(kind: str, body: bytes) -> bytes:
    mask = BodyMask(masker_for(RULES, KEY), kind)
    out = b""
    for i in range(0, len(body), 7):  # in pieces, as a body comes
        out += mask.feed(body[i : i + 7])
    return out + mask.finish()


@pytest.mark.parametrize("text", SPLIT)
@pytest.mark.parametrize("kind", ["lines", "sse"])
def test_a_value_split_by_escapes_is_masked(kind, text):
    body = (f"data: {text}\n\n" if kind == "sse" else f"{text}\n").encode()
    out = masked(kind, body).decode()
    for value in ("4111 1111 1111 1111", "4111111111111111", "bob@example.com"):
        assert value not in out
        assert value not in shown(out)  # nor on the screen that shows the answer
    assert "1111" in out or "example.com" in out or "REDACTED" in out or "*" in out


def test_styled_text_without_values_keeps_its_sequences():
    body = b"\x1b[1mbold\x1b[0m and 4\b4 nroff\n"
    assert masked("lines", body) == body
