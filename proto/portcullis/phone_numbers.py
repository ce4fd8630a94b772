"""Telephone numbers in free text: the `phone` detector's reading (portcullis.masking owns
the detector table, the byte gates and the strategies).

A number is read as a telephone number when it is written as one, never from digits alone
(a bare ten-digit number is an order number, an amount, a timestamp as often):

- international, with its `+` and an assigned country code (ITU-T E.164): `+1 415 555
  0100`, `+44 20 7946 0958`, `+33 1 23 45 67 89`, `+7 (495) 123-45-67`, `+14155550100`;
  9 to 15 digits, groups of 1 to 8 parted by one space, dash or dot (a `+1` number has
  the ten digits of a North American one);
- North American (NANP), its area code and exchange as assigned (area 2-9, not N9X;
  exchange 2-9): `(415) 555-0100`, `415-555-0100`, `415.555.0100`, `1-415-555-0100`;
- after a label on its line (`phone: 4155550100`, `Tel. 030 901820`, `mobile 07700
  900123`, `Telefon`, `teléfono`, `Handy`, `móvil`, `celular` ...): 9 to 15 digits,
  together or in groups parted by one space, dash or dot, not a date.

Not inside a longer number (the digits or separators continue: `415-555-0100-7`, a
card's `4111 111 111 1111 ...`).

No IO; nothing here imports portcullis.masking (which imports this).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

Span = tuple[int, int]

# ITU-T E.164 country codes in service (one, two and three digits)
_ONE = frozenset("17")
_TWO = frozenset(
    ("20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45",
     "46", "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61",
     "62", "63", "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94",
     "95", "98")
)  # fmt: skip
_THREE_ZONES = re.compile(
    r"2(?:1[1-8]|[2-6][0-9]|9[0-179])|3(?:5[0-9]|7[0-9]|8[0-35-9])|4(?:2[0-3])"
    r"|5(?:0[0-9]|9[0-9])|6(?:7[0-9]|8[0-35-9]|9[0-2])|8(?:5[0-6]|8[0-6])"
    r"|9(?:6[0-8]|7[0-7]|9[2-8])"
)

_NOT_BEFORE = r"(?<![\w+.\-/])(?<![0-9][ .\-])"
_NOT_AFTER = r"(?![0-9]|[ .\-/][0-9]|\w)"
_NANP_AREA = r"[2-9](?:[0-8][0-9])"
_NANP = re.compile(
    _NOT_BEFORE
    + rf"(?:\+?1[ .\-]?)?(?:\({_NANP_AREA}\)[ .\-]?|{_NANP_AREA}(?P<sep>[ .\-]))"
    + r"[2-9][0-9]{2}(?(sep)(?P=sep)|[ .\-])[0-9]{4}"
    + _NOT_AFTER
)
_INTERNATIONAL = re.compile(
    r"(?<![\w+])\+(?P<cc>[1-9][0-9]{0,2})"
    r"(?P<rest>(?:[ .\-]?\([0-9]{1,4}\))?(?:[ .\-][0-9]{1,8}){1,7}|[0-9]{6,14})" + _NOT_AFTER
)
_LABEL = re.compile(
    r"(?<![A-Za-z])(?i:phone|telephone|tel|mobile|cell|cellphone|fax|msisdn|whatsapp|ph"
    r"|tel[e\u00e9]f(?:on|ono|one|oon)|t\u00e9l\u00e9phone|t\u00e9l|handy|m[o\u00f3]vil|mobil"
    r"|celular|cellulare|rufnummer|natel|tlf|tfn)"
    r"(?:[ \t]*(?i:no|nr|number|nummer|n[u\u00fa]mero|#))?\.?[ \t]*[:=#\-]?[ \t]*"
    r"(?P<number>\(?[0-9]{2,5}\)?(?:[ .\-]?[0-9]{2,5}){0,5})" + _NOT_AFTER
)
_NANP_DIGITS = re.compile(r"1[2-9][0-8][0-9][2-9][0-9]{6}")
_DATE = re.compile(r"(?:19|20)[0-9]{2}[ .\-/]?[01][0-9][ .\-/]?[0-3][0-9]")
_DIGITS = re.compile(r"[0-9]")
# what every number this module reads holds: a `+` before a digit, a NANP grouping, or a
# label (a word of _LABEL_WORDS first: the label's pattern costs more to search)
_PLUS = re.compile(r"\+[1-9]")
# what a labelled number holds: nine digits with at most a bracket and a separator between
_NINE_DIGITS = re.compile(r"[0-9](?:[ .\-)]{0,2}[0-9]){8}")
_NINE_DIGITS_ASCII = re.compile(_NINE_DIGITS.pattern.encode())
_NANP_HINT = re.compile(r"[0-9]{3}(?:\)[ .\-]?|[ .\-]{1,2})[0-9]{3}[ .\-][0-9]{4}")
_LABEL_WORDS = ("ph", "tel", "t\u00e9l", "mob", "m\u00f3v", "movil", "cel", "fax", "msisdn",
                "whatsapp", "handy", "rufnummer", "natel", "tlf", "tfn")  # fmt: skip
_PLUS_ASCII = re.compile(_PLUS.pattern.encode())
_NANP_HINT_ASCII = re.compile(_NANP_HINT.pattern.encode())
# (over ASCII bytes: the letters past ASCII dropped from the pattern, a wider gate)
_LABEL_ASCII = re.compile(re.sub(r"\\u00[0-9a-f]{2}", "", _LABEL.pattern).encode())
_LABEL_WORDS_ASCII = tuple(word.encode() for word in _LABEL_WORDS)
LEAST_DIGITS = 9


def _country_code(digits: str) -> int:
    """The length of the country code `digits` begin with, 0 for none."""
    if digits[:1] in _ONE:
        return 1
    if digits[:2] in _TWO:
        return 2
    if _THREE_ZONES.fullmatch(digits[:3]):
        return 3
    return 0


def _international(found: re.Match[str]) -> bool:
    cc = found["cc"]
    digits = cc + "".join(_DIGITS.findall(found["rest"]))
    if not LEAST_DIGITS <= len(digits) <= 15:
        return False
    if found["rest"][:1].isdigit():  # (written together: the code is its first digits)
        size = _country_code(digits)
    else:
        size = len(cc) if _country_code(cc) == len(cc) else 0
    if size == 0:
        return False
    if size == 1 and digits[0] == "1":  # (North American: area and exchange as assigned)
        return _NANP_DIGITS.fullmatch(digits) is not None
    return True


def _labelled(text: str) -> bool:
    if _NINE_DIGITS.search(text) is None:
        return False
    lowered = text.lower()
    return any(word in lowered for word in _LABEL_WORDS)


def phone_gate(data: bytes) -> bool:
    """phone_precheck over the bytes of ASCII text."""
    if b"+" in data and _PLUS_ASCII.search(data) is not None:
        return True
    if _NANP_HINT_ASCII.search(data) is not None:
        return True
    if _NINE_DIGITS_ASCII.search(data) is None:
        return False
    lowered = data.lower()
    return any(w in lowered for w in _LABEL_WORDS_ASCII) and _LABEL_ASCII.search(data) is not None


def phone_precheck(text: str) -> bool:
    """Necessary for phone_spans to find anything (cheap)."""
    return (
        ("+" in text and _PLUS.search(text) is not None)
        or _NANP_HINT.search(text) is not None
        or (_labelled(text) and _LABEL.search(text) is not None)
    )


def phone_spans(text: str) -> Iterator[Span]:
    """Spans of `text` written as telephone numbers (module docstring)."""
    if "+" in text:
        for m in _INTERNATIONAL.finditer(text):
            if _international(m):
                yield m.span()
    for m in _NANP.finditer(text):
        yield m.span()
    if not _labelled(text):
        return
    for m in _LABEL.finditer(text):
        number = m["number"]
        digits = len(_DIGITS.findall(number))
        if LEAST_DIGITS <= digits <= 15 and _DATE.search(number) is None:
            yield m.span("number")
