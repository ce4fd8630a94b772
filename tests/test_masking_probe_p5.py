"""Probe P5 of the value detectors: what a mask keeps, joined to what follows it.

A partial mask keeps a card's last four digits (`************1111`). In
`4111 1111111111114111 1111 1111 1111` the detectors found the card of the first two
groups' digits and masked it, keeping `4111`; those four digits and the groups after them
are the card `4111 1111 1111 1111`, which began inside a group, where no pass looks: it
went out whole (found by the SSH probe p4's random cuts of terminal output). The masked
text is now read again until nothing more is found (portcullis.masking RESCANS; one that
still changes after them goes whole).
"""

from __future__ import annotations

import re

import pytest

from portcullis.masking import REDACTED, Masker, luhn_valid
from portcullis.verdict import MaskRule

DETECTORS = ("email", "credit_card", "ssn", "phone", "token")
PARTIAL = Masker([MaskRule(detector=d, strategy="partial") for d in DETECTORS], b"k" * 32)
REDACT = Masker([MaskRule(detector=d, strategy="redact") for d in DETECTORS], b"k" * 32)


def cards_in(text: str) -> list[str]:
    """Every run of 13-19 digits (separators between groups of 4 dropped) that is a card."""
    digits = re.sub(r"(?<=[0-9]) (?=[0-9])", "", text)
    found = []
    for run in re.findall(r"[0-9]{13,}", digits):
        for size in range(13, 20):
            for start in range(0, len(run) - size + 1):
                if luhn_valid(run[start : start + size]):
                    found.append(run[start : start + size])
    return found


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111111111114111 1111 1111 1111",
        "card 4111111111111111 4111 1111 1111 1111 on file",
        "4111 1111111111114111 1111 1111 1111, 4111 1111111111114111 1111 1111 1111",
    ],
)
def test_the_digits_a_mask_keeps_do_not_begin_a_card_shown_whole(text):
    masked, counts = PARTIAL.mask_text(text)
    assert counts["credit_card"] >= 2, (masked, counts)
    assert "4111 1111 1111 1111" not in masked, masked
    assert not any(len(c) >= 15 for c in cards_in(masked)), masked


def test_a_text_masked_once_is_left_as_it_was_masked():
    masked, counts = PARTIAL.mask_text("card 4111 1111 1111 1111, mail ann@example.com")
    assert counts == {"credit_card": 1, "email": 1}
    assert masked != REDACTED and masked.startswith("card ") and "ann@example.com" not in masked
    assert REDACT.mask_text("nothing to see") == ("nothing to see", {})


@pytest.mark.parametrize("name", ["phonenumber", "PhoneNumber", "mobilephone", "phone_number"])
def test_a_phone_field_named_as_one_word_is_masked(name):
    """`phone` is too short to be read inside a joined word: `phonenumber` and
    `mobilephone` went as they came under a phone field rule (webmask15)."""
    masker = Masker([MaskRule(field="phone", strategy="redact")], b"k" * 32)
    out, _ = masker.mask_json({name: "5550100", "city": "Oslo"})
    assert out[name] != "5550100" and out["city"] == "Oslo", out
