"""Probing the HTTP proxy's encoded text (P41, helper webmask23): base32.

Real PDP with the shipped policy and the HTTP proxy before a raw upstream, read by a
reader outside pii-readers. Text written as base64 or hex was decoded for masking (a
JSON string, a run in a line of text); base32 (RFC 4648 §6, what `base32`, TOTP
secrets and some queues write; upper or lower case, padded or not) came through: a
card or an email in base32 was read as letters. Now a string (or a run in a line) of
16 or more base32 characters of one case, whose bytes are printable UTF-8 text, is
read as that text and written back as base32, as hex is (lines as `base32` wraps them
read joined); a response header's base32 run holding what the masks hide is refused,
as its base64 is; ordinary words in capitals are not base32 of text (their bytes are
no UTF-8 text) and stay.
"""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import pytest
from http_upstream import read_cases

from portcullis.verdict import MaskRule
from proxies.http.bodies import BodyMask, Unmaskable, _coded_clear, masker_for

CARD = "4111 1111 1111 1111"


def b32(text: str, *, lower: bool = False, pad: bool = True) -> str:
    coded = base64.b32encode(text.encode()).decode()
    coded = coded if pad else coded.rstrip("=")
    return coded.lower() if lower else coded


def _wrapped(text: str) -> str:
    coded = b32("customer Ann Smith, since 2019, " + text)
    return "\n".join(coded[k : k + 76] for k in range(0, len(coded), 76)) + "\n"


CASES = {
    "json": ("application/json", json.dumps({"note": b32(f"card {CARD}")})),
    "lower": ("application/json", json.dumps({"note": b32(CARD, lower=True)})),
    "unpadded": ("application/json", json.dumps({"note": b32(f"pay {CARD}", pad=False)})),
    # (as the `base32` tool writes it: lines of 76, the email on the second)
    "wrapped": (
        "application/json",
        json.dumps({"note": _wrapped(f"card {CARD}, mail ann@example.com")}),
    ),
    "line": ("text/plain", f"payload={b32('card ' + CARD + ' ok')}\n"),
}
KEPT = {
    "words": ("text/plain", "STATUS: CUSTOMERSERVICEREQUESTPENDING APPROVED\n"),
    "plain": ("application/json", '{"note":"' + b32("hello world, nothing here") + '"}'),
}


def _decoded_cards(body: bytes) -> bool:
    """Whether the card is in the body, as written or as any base32 run decoded."""
    text = body.decode()
    if "4111111111111111" in "".join(c for c in text if c.isdigit()):
        return True
    joined = json.loads(text)["note"].replace("\n", "") if text.startswith("{") else ""
    for word in [joined, *text.replace('"', " ").replace("=", " = ").split()]:
        word = word.strip("= ")
        try:
            raw = base64.b32decode(word.upper() + "=" * (-len(word) % 8))
        except ValueError:
            continue
        if any(t in raw.decode("utf-8", "replace") for t in (CARD, "ann@example.com")):
            return True
    return False


@pytest.mark.integration
async def test_base32_text_is_read_for_masking(tmp_path: Path) -> None:
    got = await read_cases(tmp_path, {**CASES, **KEPT})
    for name in CASES:
        status, body = got[name]
        assert status == 200, (name, body)
        assert not _decoded_cards(body), (name, body)
    assert (
        "ann@example.com"
        not in base64.b32decode(json.loads(got["wrapped"][1])["note"].replace("\n", "")).decode()
    )
    for name, (_, sent) in KEPT.items():
        assert got[name] == (200, sent.encode()), (name, got[name])


def test_words_in_capitals_are_not_read_as_base32() -> None:
    # (words in capitals run together, as logs, codes and enums write them)
    masker = masker_for(
        [MaskRule(detector=d, strategy="redact") for d in ("credit_card", "ssn", "email")],
        b"k" * 32,
    )
    rng = random.Random(41)
    words = [
        *("CUSTOMER", "SERVICE", "REQUEST", "PENDING", "APPROVED", "STATUS", "ORDER"),
        *("INVOICE", "PAYMENT", "REFUND", "ACCOUNT", "BALANCE", "TRANSFER", "ERROR"),
        *("WARNING", "INFO", "DEBUG", "USER", "ADMIN", "READ", "WRITE", "DELETE"),
        *("UPDATE", "CREATE", "TABLE", "INDEX", "QUEUE", "TOPIC", "EVENT", "SESSION"),
    ]
    lines = [
        " ".join(
            "".join(rng.choice(words) for _ in range(rng.randint(2, 6)))
            + rng.choice(("", "2", "3", "4", "5", "6", "7", "=="))
            for _ in range(3)
        )
        for _ in range(5000)
    ]
    body = ("\n".join(lines) + "\n").encode()
    mask = BodyMask(masker, "lines", media="text/plain")
    assert mask.feed(body) + mask.finish() == body and not mask.counts


def test_a_header_whose_base32_holds_a_card_is_unmaskable() -> None:
    # (a response header's value is read decoded, base64 and hex runs as base32 now)
    masker = masker_for([MaskRule(detector="credit_card", strategy="redact")], b"k" * 32)
    with pytest.raises(Unmaskable):
        _coded_clear(masker, "session=" + b32(f"card {CARD}"))
    _coded_clear(masker, "session=" + b32("nothing to hide here"))
