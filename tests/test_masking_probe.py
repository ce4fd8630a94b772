"""Card numbers the detectors missed (attack: a reader's answer carries a card the shape of
which no detector read): JSON numbers (floats, exponents), zero padding past 19 digits,
and digit groups joined by separators other than a space or a dash."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from portcullis.masking import Masker, detect
from portcullis.verdict import MaskRule

KEY = b"k" * 32
CARD = "4111111111111111"
CARD19 = "4111111111111111110"  # 19 digits, Luhn-valid, past a float's exact integers


def cards() -> Masker:
    return Masker([MaskRule(detector="credit_card"), MaskRule(detector="email")], KEY)


def test_card_19_is_valid_and_beyond_float_precision() -> None:
    assert len(detect("credit_card", CARD19)) == 1
    assert float(CARD19) != int(CARD19)


@pytest.mark.parametrize(
    "number",
    [
        CARD,  # an int: masked before too
        CARD + ".0",
        CARD + ".000",
        "4.111111111111111e15",
        "4.111111111111111E+15",
        "0.4111111111111111e16",
        "41111111111111110e-1",
        "411111111111111100E-2",
        "-4111111111111111.0",
        CARD19 + ".0",
        "4.11111111111111111e18",
    ],
)
def test_a_card_as_a_json_number_is_masked(number: str) -> None:
    text = '{"card": ' + number + ', "n": [1, 2.5]}'
    doc = json.loads(text)
    out, counts = cards().mask_json(doc)
    assert counts == Counter({"detector:credit_card": 1}), number
    assert out["card"] == "[REDACTED:credit_card]" or "[REDACTED:credit_card]" in out["card"]
    assert out["n"] == [1, 2.5]
    dumped = json.dumps(out)
    assert "4111111111111111" not in dumped and "4.111111111111111" not in dumped


def test_ordinary_json_numbers_stay_numbers() -> None:
    doc = json.loads('{"a": 1.5, "b": 1700000000.123456, "c": 12345678901234.0, "d": 1e300}')
    out, counts = cards().mask_json(doc)
    assert out == doc and not counts


def test_a_fractions_digits_are_not_read_for_cards() -> None:
    # one in ten random fractions of 16 digits passes the card check: scores, ratios and
    # coordinates must stay numbers (0.4111111111111111 among them)
    rng = random.Random(3)
    doc = [rng.random() for _ in range(2000)] + [rng.random() * 100 for _ in range(2000)]
    doc.append(0.4111111111111111)
    out, counts = cards().mask_json(doc)
    assert out == doc and not counts
    assert cards().mask_json(json.loads(CARD + ".0"), numbers=False)[0] == float(CARD)


@pytest.mark.parametrize(
    "text",
    [
        '{"card": 4.111111111111111e15}',  # JSON that reached the text detectors
        "amount=4.111111111111111E+15 ok",
        "card 0.4111111111111111e16",
        "n 41111111111111110e-1",
        "padded 0000004111111111111111 end",  # printf %022d
        "card 4,111,111,111,111,111 here",
        "card 4.111.111.111.111.111 here",
        "card 4 111 111 111 111 111 here",
        "card 4\u00a0111\u00a0111\u00a0111\u00a0111\u00a0111 here",
        "card 4111.1111.1111.1111 here",
        "card 4111_1111_1111_1111 here",
        "card 4111/1111/1111/1111 here",
    ],
)
def test_a_card_in_text_however_written_is_masked(text: str) -> None:
    masked, counts = cards().mask_text(text)
    assert counts == Counter({"credit_card": 1}), text
    assert "1111" not in masked.replace("[REDACTED:credit_card]", "")


@pytest.mark.parametrize(
    "text",
    [
        "pi 3.141592653589793e0 and 1.5e15",
        "ip 192.168.100.200 and 10.0.0.1",
        "version 1.2.3.4 date 2024.01.15",
        "ts 1700000000.123456",
        "1,234,567 rows",
        "25 digits 4111111111111111000000000",
        "n 4111111111111112e0",
    ],
)
def test_near_misses_stay(text: str) -> None:
    assert cards().mask_text(text) == (text, Counter())


def test_byte_gate_lets_every_new_shape_through() -> None:
    m = cards()
    for text in ("x 4.111111111111111e15", "4,111,111,111,111,111", "4111_1111_1111_1111"):
        assert m.may_detect(text.encode()), text


@pytest.mark.parametrize(
    "text",
    [
        "card 4111  1111  1111  1111 here",  # columns
        "card\t4111\t1111\t1111\t1111\tend",
        "card 4111\u20131111\u20131111\u20131111 here",  # en dash
        "card 4111\u20111111\u20111111\u20111111 here",  # non-breaking hyphen
        "| 4111   1111   1111   1111 |",
    ],
)
def test_a_card_in_columns_or_other_dashes_is_masked(text: str) -> None:
    masked, counts = cards().mask_text(text)
    assert counts == Counter({"credit_card": 1}), text
    assert "4111" not in masked


def test_columns_of_numbers_that_are_not_cards_stay() -> None:
    for text in (
        "Mem:       16303508     8123456     2345678",
        "  PID TTY          TIME CMD\n    1 ?        00:00:03 init",
        "2024-01-15  12:30:45  1234  ok",
        "12     34     56     78     90     12     34",
    ):
        assert cards().mask_text(text) == (text, Counter()), text


def everything() -> Masker:
    return Masker([MaskRule(detector=d) for d in ("email", "ssn", "credit_card", "token")], KEY)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail jörg@example.com", "mail [REDACTED:email]"),  # was: jö[REDACTED:email]
        ("mail bob@müller.de ok", "mail [REDACTED:email] ok"),
        ("用户@例子.广告", "[REDACTED:email]"),
        ("ssn 123 45 6789.", "ssn [REDACTED:ssn]."),
        ("ssn 123-45-6789.", "ssn [REDACTED:ssn]."),
    ],
)
def test_internationalised_addresses_and_spaced_ssns(text: str, expected: str) -> None:
    assert everything().mask_text(text)[0] == expected


@pytest.mark.parametrize(
    "text",
    [
        "ssn 123 45 67890",
        "tel 555 123 45 6789",
        "000 12 3456 and 123 00 4567 and 123-45 6789",
        "a@b.c and user@localhost and @handle",  # (ann(at)example.com: an address now)
    ],
)
def test_near_misses_of_addresses_and_ssns_stay(text: str) -> None:
    assert everything().mask_text(text) == (text, Counter())


def test_runs_of_short_groups_cost_little(monkeypatch: pytest.MonkeyPatch) -> None:
    """'1 1 1 1 ...' (400 KB of it took 5 s, 8 s with the wider separators): every start
    tried every window of 13-19 digits. A group after the first outside 3-6 digits ends
    the windows from a start, and the check digit is tested before the grouping."""
    import portcullis.masking as masking

    calls = 0
    real = masking.luhn_valid

    def counted(digits: str) -> bool:
        nonlocal calls
        calls += 1
        return real(digits)

    monkeypatch.setattr(masking, "luhn_valid", counted)
    masker = cards()
    for text in ("1 " * 2000, "1    " * 2000, "12 34 " * 1000):
        calls = 0
        assert masker.mask_text(text) == (text, Counter())
        assert calls == 0, (text[:10], calls)
    calls = 0
    masker.mask_text("123 " * 2000)
    assert calls <= 2 * 2000
