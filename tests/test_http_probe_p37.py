"""Probing the HTTP proxy's masks (P37, helper webmask20): a JSON answer's strings that
carry text under the detectors alone; a value across a string's lines, or across a line
break other than CR and LF (below).

A verdict's masks are the sensitive columns' field rules and the detectors
(decision.rego's pii_masks); a deployment whose data names no sensitive column (or a
policy's mask_rules of detectors only) masks by the detectors alone. Under field rules a
JSON answer's string carrying text (base64, hex, a `data:` URI, a JSON document in a
string) is read as that text too (bodies.BodyMask._named_values, _string); under the
detectors alone that walk was skipped, so `{"blob": "Y2FyZCA0MTExIDExMTEgMTExMSAxMTEx"}`
(`card 4111 1111 1111 1111` in base64) or its hex went to the client as it came (an
NDJSON line's alike), while the same base64 on a line of text or in a CSV cell was
masked. The walk now runs for the detectors alone too (BodyMask._mask_doc).

Through the proxy this is the answer the stack's BodyMask gives (forwarding._masked): the
tests read it there, with the detectors of the shipped policy and no field rule.
"""

from __future__ import annotations

import base64
import json

import pytest

from portcullis.verdict import MaskRule
from proxies.http.bodies import BodyMask, masker_for

DETECTORS = ("credit_card", "email", "iban", "phone", "ssn", "token")
RULES = tuple(MaskRule(detector=d, strategy="partial") for d in DETECTORS)
CARD_TEXT = "card on file 4111 1111 1111 1111"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _masked(kind: str, body: bytes) -> tuple[bytes, dict[str, int]]:
    mask = BodyMask(masker_for(RULES, b"k" * 32), kind)
    out = mask.feed(body) + mask.finish()
    return out, dict(mask.counts)


@pytest.mark.parametrize(
    "carried",
    [
        _b64(CARD_TEXT),
        _b64("4111111111111111"),
        base64.urlsafe_b64encode(b"ann@example.com wrote ??>>").decode(),
        CARD_TEXT.encode().hex(),
        "data:text/plain;base64," + _b64("mail ann@example.com"),
        json.dumps({"note": CARD_TEXT}),
        _b64(_b64(CARD_TEXT)),
    ],
)
def test_text_carried_in_a_json_string_is_masked_under_the_detectors_alone(
    carried: str,
) -> None:
    out, counts = _masked("json", json.dumps({"id": 7, "blob": carried}).encode())
    assert counts, out
    shown = json.loads(out)["blob"]
    assert shown != carried, out
    for layer in range(3):  # (what the client decodes, however many times)
        assert "4111 1111 1111 1111" not in shown and "4111111111111111" not in shown
        assert "ann@example.com" not in shown
        try:
            shown = base64.b64decode(shown.removeprefix("data:text/plain;base64,")).decode()
        except ValueError:
            break
        assert layer < 2


def test_ordinary_strings_are_left_as_they_came() -> None:
    doc = {
        "id": "Zm9vYmFy",
        "uuid": "695955b7-b439-4b5a-9e2a-0123456789ab",
        "sha": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "name": "hello world",
        "n": 5,
    }
    out, counts = _masked("json", json.dumps(doc).encode())
    assert json.loads(out) == doc and not counts, out


def test_the_same_text_in_an_ndjson_line_is_masked() -> None:
    coded = _b64(CARD_TEXT)
    out, counts = _masked("lines", json.dumps({"blob": coded}).encode() + b"\n")
    assert counts and coded.encode() not in out, out


def test_the_same_text_on_a_line_or_in_a_cell_was_masked_already() -> None:
    coded = _b64(CARD_TEXT)
    for kind, body in (("lines", f"{coded}\n".encode()), ("csv", f"id,blob\n1,{coded}\n".encode())):
        out, counts = _masked(kind, body)
        assert counts and coded.encode() not in out, (kind, out)


# -- a value across the lines of a JSON string, or across a line break other than CR/LF
#
# A text body's lines are read together (a card on two lines is masked), but a JSON
# answer's string was read alone, and the detectors read no value across a line break:
# `{"note": "card 4111 1111\n1111 1111"}` went whole to a client printing the note on two
# lines. Now a string's lines are read together as a text body's are (BodyMask._lines_read,
# values.masked_lines). And a text's line breaks other than CR and LF (a vertical tab, a
# form feed, NEL, U+2028, U+2029: lines on a reader's screen, where the proxies part lines
# at CR and LF alone) are read as a space by the detectors (Masker._one_line_hits):
# `4111 1111<U+2028>1111 1111` went whole on a line of text and in a JSON string alike.

FIELDS = ("api_key", "card_number", "email", "iban", "password", "phone", "ssn", "token")
SHIPPED = tuple(MaskRule(field=f) for f in FIELDS) + RULES


@pytest.mark.parametrize("rules", [SHIPPED, RULES], ids=["fields-and-detectors", "detectors"])
@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_a_card_across_a_json_string_s_lines_is_masked(
    rules: tuple[MaskRule, ...], newline: str
) -> None:
    doc = {"note": f"card on file 4111 1111{newline}1111 1111{newline}thanks", "id": 7}
    mask = BodyMask(masker_for(rules, b"k" * 32), "json")
    out = mask.feed(json.dumps(doc).encode()) + mask.finish()
    shown = json.loads(out)
    assert mask.counts["detector:credit_card"] == 1, out
    assert "".join(c for c in shown["note"] if c.isdigit()) in ("", "1111"), out
    assert shown["note"].count(newline) == 2 and shown["id"] == 7, out


def test_an_address_across_a_json_string_s_lines_is_masked() -> None:
    mask = BodyMask(masker_for(SHIPPED, b"k" * 32), "json")
    out = mask.feed(b'{"to": ["x", "ann@\\nexample.com"]}') + mask.finish()
    assert b"ann" not in out and mask.counts["detector:email"] == 1, out


def test_lines_of_a_string_that_hold_no_value_are_left_as_they_came() -> None:
    doc = {"log": "step 1 of 12\n34 files\norder 2024-01-05\n17:00 done"}
    mask = BodyMask(masker_for(SHIPPED, b"k" * 32), "json")
    out = mask.feed(json.dumps(doc).encode()) + mask.finish()
    assert json.loads(out) == doc and not mask.counts, out


@pytest.mark.parametrize("brk", ["\v", "\f", "\x85", "\u2028", "\u2029", "\x1c"])
def test_a_card_across_another_line_break_is_masked(brk: str) -> None:
    line = f"card 4111 1111{brk}1111 1111\n".encode()
    out, counts = _masked("lines", line)
    assert counts == {"detector:credit_card": 1} and b"4111" not in out, out
    doc = json.dumps({"note": f"card 4111 1111{brk}1111 1111"}).encode()
    out, counts = _masked("json", doc)
    assert counts == {"detector:credit_card": 1}, out
    assert "4111" not in json.loads(out)["note"], out
