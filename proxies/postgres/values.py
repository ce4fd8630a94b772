"""A masked or detected value written back in its column's type and format (no IO here).

Owns the rule that masking never corrupts data and never fails open:

- a value a mask rule covers becomes the mask string only in a text-like column (text,
  varchar, bpchar, name, unknown), in text or binary format alike (their binary form is
  the UTF-8 text); in any other type (numbers, uuid, json, arrays, records, bytea...) no
  mask string is a valid value, so it becomes SQL NULL;
- the value detectors (email, card, SSN, token) read text: text-like columns, the
  string leaves, keys and numbers of json and jsonb (parsed, masked, written back, so the
  document stays valid JSON: a number found becomes the masked string; keys named like a
  masked field are masked too), and the elements of text arrays (binary arrays element by
  element; a text array literal whose elements hold something is sent as NULL); an array
  of JSON documents (json[], jsonb[], text[] of JSON) one of whose elements has a key
  named like a masked field is sent as NULL; a COPY row has such documents masked field by
  field (masked_copy_row);
- text naming a masked field beside its value (`password: ...`, `pw=...`, hstore's
  `"password"=>"..."`: labelled_values, as the HTTP proxy reads a text body's labels) has
  that value masked by the field's rule in a text-like value and a text array's binary
  elements, and is sent as NULL in any other type (a text array literal included); a COPY
  row's fields are read so too (masked_copy_row); a COPY row longer than the detectors
  read (MAX_READ_CHARS) has its largest fields masked whole until it is not, its other
  fields and its shape kept (_copy_row_within);
- bytea (and bytea[]) is read as the text its bytes spell in UTF-8: a card number or a
  password stored as bytes (convert_to's) is text to whoever decodes it, so its hex or
  escape form (text format) or its raw bytes (binary format) are decoded first, and a
  value a detector finds anything in is sent as NULL (bytes holding NULs are also read
  without them: UTF-16's ASCII); a text-like value that is a bytea's hex form
  (`data::text`, an uncut cast lineage passes as it is) is read so too, and written back
  as the hex of its text masked;
- bigint, numeric and double precision values (and arrays of them: NUMBERS,
  NUMBER_ARRAYS) are read as a JSON number is (Masker.mask_json: an integer's digits, a
  whole float's digits, a fraction's integer part): a card number kept as a number is the
  card to whoever reads it; one a detector finds anything in is sent as NULL (as in JSON,
  about one in ten numbers of 13 to 19 digits passes the card check: the safe mistake);
- every other type not known to hold no text (NO_TEXT: numbers, dates, uuids, network
  addresses...) is read as text too, in either format: an extension's type over
  text (citext), xml, tsvector, a record, an array of those, a type made since initdb
  (its OID is the database's, so nothing here can know it). The proxy cannot write a
  masked value of a type it does not know, so a value a detector finds anything in is
  sent as NULL (fail closed);
- a card number, an SSN or an IBAN split across the values beside each other of one
  JSON object or array (`{"a": "4111", "b": "1111", ...}`: substr() of it as columns) is
  read as the whole it is to whoever reads them in order (masked_split_values: every
  proxy's JSON, a json or jsonb value here), each of its parts masked; so is one found
  across the strings of one object or array read as lines, or down a column of an
  array's objects, or in an array's numbers with padding around them (_padded); an
  email address cut at its `@` into sibling strings (_emails_found).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import json
import math
import re
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from portcullis.card_groupings import issued_length
from portcullis.masking import (
    MAX_READ_CHARS,
    REDACTED,
    Masker,
    detect,
    luhn_valid,
    stricter,
)
from portcullis.verdict import MaskRule
from proxies.postgres import server_messages

TEXT_LIKE = frozenset({25, 1043, 1042, 19, 705})  # text varchar bpchar name unknown
JSON, JSONB = 114, 3802
TEXT_ARRAYS = frozenset({1009, 1015, 1014, 1003})  # text[] varchar[] bpchar[] name[]
JSON_ARRAYS = frozenset({199, 3807})  # json[] jsonb[]
XML, XML_ARRAY = 142, 143
# Built-in types whose values hold no text a detector could read (their text and binary
# forms are numbers, dates, addresses, bits or raw bytes); arrays and ranges of them too.
# fmt: off
NO_TEXT = frozenset({
    0,  # no type: a value past the row's description, which RowMask leaves as it came
    16, 18, 21, 22, 23, 24, 26, 27, 28, 29, 30,  # bool "char" int2 int4 oid reg...
    650, 700, 774, 829, 869,  # cidr float4 macaddr8 macaddr inet
    1082, 1083, 1114, 1184, 1186, 1266, 1560, 1562,  # dates, times, bits
    2202, 2203, 2204, 2205, 2206, 2950, 3220, 3734, 3769, 4089, 4096, 4191, 5069,  # uuid...
    3904, 3908, 3910, 3912,  # ranges of int4 and times
    1000, 1005, 1007, 1021, 1028, 1115, 1182, 1183, 1185, 1187,  # arrays
    1270, 2951, 1041, 651, 1040,
})
# fmt: on
# Numbers wide enough to hold a card number (13 to 19 digits), and their arrays (element
# type): read as a JSON number is (Masker.mask_json), a value found sent as NULL
# (real, float4, keeps 7 digits: no card survives in one)
INT8, NUMERIC, FLOAT8 = 20, 1700, 701
NUMBERS = frozenset({INT8, NUMERIC, FLOAT8})
NUMBER_ARRAYS = {1016: INT8, 1231: NUMERIC, 1022: FLOAT8}
# Types made of such numbers under another form (HELD_NUMBERS: money's cents, a range's
# bounds, a geometric value's coordinates), and their arrays: `$4,111,111,111,111,111.00`,
# `[4111111111111111,4111111111111112)`, `(4.111111111111111e+15,0)` are the card to whoever
# reads them, and their binary forms are its number as bytes. Read as NUMBERS are (each
# number a detector finds anything in: the value sent as NULL).
MONEY = 790
GEOMETRIC = {600: 0, 601: 0, 603: 0, 628: 0, 718: 0, 602: 5, 604: 4}  # first float8's offset
RANGES = {3926: INT8, 3906: NUMERIC}  # int8range, numrange: their bound's type
MULTIRANGES = {4536: 3926, 4532: 3906}  # int8multirange, nummultirange: their range's
HELD_NUMBERS = frozenset({MONEY, *GEOMETRIC, *RANGES, *MULTIRANGES})
HELD_NUMBER_ARRAYS = {
    791: MONEY, 1017: 600, 1018: 601, 1019: 602, 1020: 603, 1027: 604, 629: 628, 719: 718,
    3927: 3926, 3907: 3906, 6157: 4536, 6151: 4532,
}  # fmt: skip
_RANGE_EMPTY, _RANGE_LB_INF, _RANGE_UB_INF = 0x01, 0x08, 0x10
# a money text's amount (`$4,111,111,111,111,111.00`, `4.111.111,00 €`, `-$1 234,5`)
_AMOUNT = re.compile(rb"[0-9](?:[0-9.,' \xa0]*[0-9])?")
BYTEA, BYTEA_ARRAY = 17, 1001
_INT32 = struct.Struct("!i")
_HEX_RUN = re.compile(rb"\\\\?x([0-9A-Fa-f]*)")
_HEX_TEXT = re.compile(rb"\\x(?:[0-9A-Fa-f]{2})+")
# an element of a bytea[] literal in hex (`"\\x3431"`, its backslash doubled)
_HEX_ELEMENT = re.compile(rb'\\\\x(?:[0-9A-Fa-f]{2})+"')
_ESCAPED = re.compile(rb"\\(\\|[0-7]{3})")
REDACTED_BYTES = REDACTED.encode()  # the redact strategy's mask, as a text-like value


def count_key(name: str) -> str:
    """The evidence's key for what detected_value counted: a detector's name (mask_text's
    counts) as `detector:<name>`; Masker.mask_json's keys, `detector:<name>` and
    `field:<rule field>` (a JSON key named like a masked field), as they are."""
    return name if name.startswith(("detector:", "field:")) else f"detector:{name}"


def masked_value(
    masker: Masker, rule: MaskRule, value: bytes, type_oid: int, binary: bool
) -> bytes | None:
    """The value a mask rule leaves: the mask string where the type is text-like, else
    NULL."""
    if type_oid not in TEXT_LIKE:
        return None
    return masker.mask_field(rule, value.decode("utf-8", "replace")).encode()


def detected_value(
    masker: Masker, value: bytes, type_oid: int, binary: bool
) -> tuple[bytes | None, Counter[str]] | None:
    """The value with what the detectors find masked, and their counts; None when the
    type holds no text or nothing was found (the value goes as it came)."""
    if type_oid in TEXT_LIKE:
        if value[:2] == b"\\x" and _HEX_TEXT.fullmatch(value):
            return _detected_hex_text(masker, value)
        if value[:1] == b"{" and _HEX_ELEMENT.search(value):
            # a bytea[]'s text cast (`many::text`: `{"\\x3431…"}`): its elements' bytes
            # read as the bytea[] column's own are, NULL when a detector finds anything
            _, held = masker.mask_text(_bytes_text(value, False, True))
            if held:
                return None, held
        if value.lstrip()[:1] in (b"{", b"["):
            document = _json_text(value)
            if document is not None:
                # profile::text, a JSON document as text: its keys named like a masked
                # field are masked as in the document itself, where they would go by
                # their name as text
                masked, counts = _masked_document(masker, document)
                if not counts:
                    return None
                out = json.dumps(masked, ensure_ascii=False, separators=(", ", ": "))
                return out.encode(), counts
        if value.lstrip()[:1] == b"<":
            # XML held as text: an element named like a masked field holds its value
            named = _xml_names(masker, _utf8(value))
            if named:
                return None, named
        text, counts = masker.mask_text(value.decode("utf-8", "replace"))
        if may_label(value):
            text = labelled_values(masker, text, counts)
        return (text.encode(), counts) if counts else None
    if type_oid in (XML, XML_ARRAY):
        _, counts = masker.mask_text(_utf8(value))
        counts.update(_xml_names(masker, _utf8(value)))
        return (None, counts) if counts else None
    if type_oid in (JSON, JSONB):
        return _detected_json(masker, value, binary and type_oid == JSONB)
    if type_oid in TEXT_ARRAYS or type_oid in JSON_ARRAYS:
        held = _held_documents(masker, value, binary, type_oid == 3807)
        if held:
            # an element that is a JSON document with a key named like a masked field
            # (`ARRAY['{"password": ...}'::jsonb]`, a text[] of JSON): the whole value
            return None, held
        if type_oid in JSON_ARRAYS:
            _, counts = masker.mask_text(_bytes_text(value, binary, True))
            return (None, counts) if counts else None
        return _detected_array(masker, value, binary)
    if type_oid in (BYTEA, BYTEA_ARRAY):
        _, counts = masker.mask_text(_bytes_text(value, binary, type_oid == BYTEA_ARRAY))
        return (None, counts) if counts else None
    if type_oid in NUMBERS:
        return _detected_number(masker, value, type_oid, binary) if masker.detects else None
    if type_oid in NUMBER_ARRAYS:
        if not masker.detects:
            return None
        return _detected_numbers(masker, value, NUMBER_ARRAYS[type_oid], binary)
    if type_oid in HELD_NUMBERS or type_oid in HELD_NUMBER_ARRAYS:
        return _detected_held(masker, value, type_oid, binary) if masker.detects else None
    if type_oid in NO_TEXT:
        return None
    if type_oid in (TSVECTOR, TSQUERY) and masker.detects:
        # its words in the order they were written (`'1111':3,4,5 '4111':2` is 4111 1111
        # 1111 1111 to whoever reads the positions): read as that text too
        try:
            words = _search_words(value, type_oid, binary)
        except (struct.error, IndexError, ValueError):
            return None, Counter({"unreadable_text_search": 1})
        found = _search_words_found(masker, words)
        if found:
            return None, found
    # a type the proxy cannot write a masked value of: NULL when a detector finds anything,
    # or it holds a JSON document with a key named like a masked field (an array of one),
    # or a label naming one (hstore's `"password"=>"..."`, citext's `pw: ...`)
    _, counts = masker.mask_text(value.decode("utf-8", "replace"))
    if not binary and may_label(value):
        labelled_values(masker, _utf8(value), counts)
    if not binary and value.lstrip()[:1] in (b"{", b"["):
        counts.update(_document_keys(masker, [_utf8(value)]))
        counts.update(_document_keys(masker, array_literal_elements(_utf8(value)) or ()))
    return (None, counts) if counts else None


TSVECTOR, TSQUERY = 3614, 3615
# a tsvector's lexeme and its positions (`'card':1 '4111':2A,5`), a tsquery's lexeme
_LEXEME = re.compile(rb"'((?:[^']|'')*)'(?::([0-9A-D,]+))?")
_POSITION = struct.Struct("!H")


def _search_words(value: bytes, type_oid: int, binary: bool) -> str:
    """A tsvector's lexemes in the order of their positions, a space apart (lexemes with
    none last); a tsquery's in the order written (binary: tsquery_send's operands)."""
    placed: list[tuple[int, bytes]] = []
    if not binary:
        for lexeme, positions in _LEXEME.findall(value):
            lexeme = lexeme.replace(b"''", b"'")
            for position in (positions or b"").split(b",") if type_oid == TSVECTOR else ():
                if position:
                    placed.append((int(position.rstrip(b"ABCD")), lexeme))
            if not positions or type_oid == TSQUERY:
                placed.append((1 << 16, lexeme))
    elif type_oid == TSVECTOR:
        (count,) = _INT32.unpack_from(value, 0)
        pos = 4
        for _ in range(count):
            end = value.index(b"\0", pos)
            lexeme = value[pos:end]
            (npos,) = _POSITION.unpack_from(value, end + 1)
            pos = end + 3
            for i in range(npos):
                (position,) = _POSITION.unpack_from(value, pos + 2 * i)
                placed.append((position & 0x3FFF, lexeme))
            if not npos:
                placed.append((1 << 16, lexeme))
            pos += 2 * npos
    else:
        (count,) = _INT32.unpack_from(value, 0)
        pos = 4
        for _ in range(count):
            kind = value[pos]
            if kind == 1:  # QI_VAL: weight, prefix, the operand's text (prefix order:
                # the last operand written comes first)
                end = value.index(b"\0", pos + 3)
                placed.insert(0, (1 << 16, value[pos + 3 : end]))
                pos = end + 1
            else:  # QI_OPR: its operator, and a phrase's distance
                pos += 4 if value[pos + 1] == 4 else 2
    placed.sort(key=lambda p: p[0])  # (stable: a tsquery's in the order written)
    return " ".join(lexeme.decode("utf-8", "replace") for _, lexeme in placed)


# Fewer characters than this in a number's text form: fewer digits than any detector reads
# in a number (Masker.mask_json: below 9 digits a number is left unread)
NUMBER_TEXT_MIN = 9
_INT64 = struct.Struct("!q")
_FLOAT8 = struct.Struct("!d")
CARD_DIGITS = (13, 19)  # how many digits a card number has
_NUMERIC_HEAD = struct.Struct("!hhHh")
_NUMERIC_SPECIAL = 0xC000  # NaN (0xC000) and the infinities (0xD000, 0xF000)
# the numbers of an array's text form (`{1,4111111111111111,NULL}`, `{{1.5},{-2e+15}}`)
_NUMBER_TOKEN = re.compile(rb"[-+]?[0-9][0-9.]*(?:[eE][-+]?[0-9]+)?")


def _detected_number(
    masker: Masker, value: bytes, type_oid: int, binary: bool
) -> tuple[bytes | None, Counter[str]] | None:
    """A number column's value read as the detectors read a JSON number: an integer's
    digits, a whole float's digits, a fraction's integer part (a card number kept as
    bigint or numeric is the card to whoever reads it); NULL when they find anything (a
    masked number is no number). Short values stop at the first comparison."""
    if not binary and len(value) < NUMBER_TEXT_MIN:
        return None
    try:
        number = _number(value, type_oid, binary)
    except (ValueError, struct.error, UnicodeDecodeError):
        return None, Counter({"unreadable_number": 1})
    if isinstance(number, str):
        if not may_hold_a_card(number):
            return None
        _, counts = masker.mask_text(number)
    elif number is None:
        return None
    else:
        _, counts = masker.mask_json(number)
    return (None, counts) if counts else None


def may_hold_a_card(digits: str) -> bool:
    """Whether an integer's digits (as str() writes it: a sign, no leading zero) may be
    what a detector finds anything in: of the detectors only the card's reads a run of
    bare digits, and only 13 to 19 of them passing the Luhn check (test_pg_probe_p13 holds
    Masker.mask_text to this over random integers). Most integers stop here, unread:
    mask_text over 13 digits costs about 16 us."""
    bare = digits[1:] if digits[:1] == "-" else digits
    return CARD_DIGITS[0] <= len(bare) <= CARD_DIGITS[1] and luhn_valid(bare)


def _detected_numbers(
    masker: Masker, value: bytes, element_oid: int, binary: bool
) -> tuple[bytes | None, Counter[str]] | None:
    """An array of numbers: NULL when a detector finds anything in one of its elements."""
    try:
        elements = _binary_array_elements(value) if binary else _NUMBER_TOKEN.findall(value)
    except (struct.error, IndexError, ValueError):
        return None, Counter({"unreadable_array": 1})
    total: Counter[str] = Counter()
    for element in elements:
        found = _detected_number(masker, element, element_oid, binary)
        if found is not None:
            total.update(found[1])
    return (None, total) if total else None


def _detected_held(
    masker: Masker, value: bytes, type_oid: int, binary: bool
) -> tuple[bytes | None, Counter[str]] | None:
    """A value of HELD_NUMBERS (or an array of one): NULL when a detector finds anything
    in one of its numbers, read as NUMBERS' are, or in its text."""
    try:
        numbers = _held_numbers(value, type_oid, binary)
    except (struct.error, IndexError, ValueError, UnicodeDecodeError):
        return None, Counter({"unreadable_number": 1})
    total: Counter[str] = Counter()
    for number in numbers:
        if isinstance(number, str):
            if may_hold_a_card(number):
                total.update(masker.mask_text(number)[1])
        elif math.isfinite(number):
            total.update(masker.mask_json(number)[1])
    if not binary:
        total.update(masker.mask_text(value.decode("utf-8", "replace"))[1])
    return (None, total) if total else None


def _held_numbers(value: bytes, type_oid: int, binary: bool) -> list[str | float]:
    """The numbers a value of HELD_NUMBERS (or an array of one) is made of, as the
    detectors read a number: an integer's digits, a float."""
    if type_oid in HELD_NUMBER_ARRAYS:
        element = HELD_NUMBER_ARRAYS[type_oid]
        if binary:
            out: list[str | float] = []
            for item in _binary_array_elements(value):
                out += _held_numbers(item, element, True)
            return out
        type_oid = element  # (the text form: every number of the literal is read)
    if type_oid == MONEY:
        if binary:
            cents = _INT64.unpack(value)[0]
        else:
            out = []
            for amount in _AMOUNT.findall(value):
                digits = amount.translate(None, b".,' \xa0").decode("ascii")
                # the amount's digits as written, and without its cents
                out += [digits, digits[:-2] or "0"]
            return out
        sign = "-" if cents < 0 else ""
        return [f"{sign}{abs(cents)}", f"{sign}{abs(cents) // 100}"]
    if not binary:
        tokens = _NUMBER_TOKEN.findall(value)
        if type_oid in GEOMETRIC:
            return [float(t) for t in tokens]
        return [t.decode("ascii").partition(".")[0] for t in tokens]
    if type_oid in GEOMETRIC:
        start = GEOMETRIC[type_oid]
        count = (len(value) - start) // 8
        return list(struct.unpack_from(f"!{count}d", value, start))
    if type_oid in MULTIRANGES:
        (count,) = _INT32.unpack_from(value, 0)
        pos, out = 4, []
        for _ in range(count):
            (length,) = _INT32.unpack_from(value, pos)
            out += _held_numbers(value[pos + 4 : pos + 4 + length], MULTIRANGES[type_oid], True)
            pos += 4 + length
        return out
    bound = RANGES[type_oid]
    flags, pos, out = value[0], 1, []
    for infinite in (_RANGE_LB_INF, _RANGE_UB_INF):
        if flags & (_RANGE_EMPTY | infinite):
            continue
        (length,) = _INT32.unpack_from(value, pos)
        number = _number(value[pos + 4 : pos + 4 + length], bound, True)
        if number is not None:
            out.append(number)
        pos += 4 + length
    return out


def _number(value: bytes, type_oid: int, binary: bool) -> str | float | None:
    """What of a value of one of NUMBERS the detectors read: the digits of a bigint's or a
    numeric's integer part (exact at any width, its sign kept, as str() writes an int), a
    float for double precision; None for NaN and the infinities."""
    if type_oid == INT8:
        return str(_INT64.unpack(value)[0]) if binary else value.decode("ascii")
    if type_oid == FLOAT8:
        number = _FLOAT8.unpack(value)[0] if binary else float(value)
        return number if math.isfinite(number) else None
    if binary:
        return _numeric_integer(value)
    text = value.decode("ascii")
    if not text[-1:].isdigit():
        return None  # NaN, Infinity, -Infinity
    return text.partition(".")[0]


def _numeric_integer(value: bytes) -> str | None:
    """The digits of a numeric's integer part, from numeric_send's layout: ndigits, weight
    (of the first base-10000 digit), sign, dscale, then the digits."""
    ndigits, weight, sign, _ = _NUMERIC_HEAD.unpack_from(value, 0)
    if sign & _NUMERIC_SPECIAL == _NUMERIC_SPECIAL:
        return None
    if len(value) != _NUMERIC_HEAD.size + 2 * ndigits:
        raise ValueError("numeric's length is not its digits'")
    digits = struct.unpack_from(f"!{ndigits}h", value, _NUMERIC_HEAD.size)
    whole = "".join(f"{digits[i] if i < ndigits else 0:04d}" for i in range(weight + 1))
    whole = whole.lstrip("0") or "0"
    return "-" + whole if sign == 0x4000 else whole


def _detected_hex_text(masker: Masker, value: bytes) -> tuple[bytes, Counter[str]] | None:
    """A text value that is a bytea's hex form (`data::text`, an uncut cast lineage lets
    through as it is): its bytes are read as the text they spell too, and written back as
    hex of that text masked when a detector finds anything there (NULs left out)."""
    text, counts = masker.mask_text(value.decode("ascii"))
    found = masked_hex_bytes(masker, value[2:].decode("ascii"))
    if found is None:
        return (text.encode(), counts) if counts else None
    masked, more = found
    return b"\\x" + masked.encode(), counts + more


def masked_hex_bytes(masker: Masker, digits: str) -> tuple[str, Counter[str]] | None:
    """A bytea's hex digits (its hex form, `\\x` left out) read as the text its bytes spell
    and masked, as hex again, with the detectors' counts; None when they find nothing. Its
    text is written back whole, so read once: without NULs (UTF-16's ASCII)."""
    data = bytes.fromhex(digits).replace(b"\0", b"")
    masked, found = masker.mask_text(data.decode("utf-8", "replace"))
    return (masked.encode().hex(), found) if found else None


def _utf8(data: bytes) -> str:
    """Bytes as the text they spell in UTF-8 (undecodable bytes replaced); bytes holding
    NULs (UTF-16's ASCII, a C string's padding) are read without them too, a line apart."""
    text = data.decode("utf-8", "replace")
    if b"\0" in data:
        text += "\n" + data.replace(b"\0", b"").decode("utf-8", "replace")
    return text


def _bytes_text(value: bytes, binary: bool, array: bool) -> str:
    """The text a bytea value's bytes spell (UTF-8, undecodable bytes replaced): binary
    format is the bytes themselves; text format is bytea_output's hex (`\\x6361…`) or
    escape form (`card\\000…`). An array's elements are each decoded, a line apart
    (binary: array_send's layout; text: every hex run, or the literal unescaped)."""
    if array and binary:
        try:
            elements = _binary_array_elements(value)
        except (struct.error, IndexError, ValueError):
            return value.decode("utf-8", "replace")
        return "\n".join(_utf8(e) for e in elements)
    if binary:
        return _utf8(value)
    runs = _HEX_RUN.findall(value)
    if runs and (array or value.startswith(b"\\x")):
        parts = [bytes.fromhex(r.decode()) if len(r) % 2 == 0 else r for r in runs]
        return "\n".join(_utf8(p) for p in parts)
    unescaped = _ESCAPED.sub(
        lambda m: b"\\" if m.group(1) == b"\\" else bytes([int(m.group(1), 8) & 0xFF]), value
    )
    return _utf8(unescaped)


def _binary_array_elements(value: bytes) -> list[bytes]:
    """The elements of an array in array_send's layout (NULLs left out)."""
    (ndim,) = _INT32.unpack_from(value, 0)
    if ndim < 0 or ndim > 6:
        raise ValueError("array dimensions")
    count = 0 if ndim == 0 else 1
    for d in range(ndim):
        (size,) = _INT32.unpack_from(value, 12 + 8 * d)
        count *= max(size, 0)
    pos = 12 + 8 * ndim
    elements = []
    for _ in range(count):
        (length,) = _INT32.unpack_from(value, pos)
        pos += 4
        if length < 0:
            continue
        element = value[pos : pos + length]
        if len(element) != length:
            raise ValueError("array element cut short")
        elements.append(element)
        pos += length
    return elements


def array_literal_elements(literal: str) -> list[str] | None:
    """The elements of an array's text form (array_out: `{a,"b c",NULL}`, nested braces for
    more dimensions, a `[1:2]=` bounds prefix), quoted ones unescaped; NULLs left out.
    None when the text is not one."""
    text = literal.strip()
    if text.startswith("["):
        text = text.partition("=")[2]
    if not text.startswith("{"):
        return None
    elements: list[str] = []
    depth, i, n = 0, 0, len(text)
    while i < n:
        char = text[i]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == '"':
            out, i = [], i + 1
            while i < n and text[i] != '"':
                if text[i] == "\\":
                    i += 1
                out.append(text[i : i + 1])
                i += 1
            elements.append("".join(out))
        elif char not in ", \t\n":
            start = i
            while i < n and text[i] not in ",{}":
                i += 1
            word = text[start:i].strip()
            if word.upper() != "NULL":
                elements.append(word)
            continue
        i += 1
    return elements if depth == 0 else None


def _document_keys(masker: Masker, texts: list[str] | tuple[str, ...]) -> Counter[str]:
    """What Masker.mask_json masks in those of `texts` that are JSON objects or arrays."""
    total: Counter[str] = Counter()
    for text in texts:
        if text.lstrip()[:1] in ("{", "["):
            document = _json_text(text.encode())
            if document is not None:
                total.update(masker.mask_json(document)[1])
    return total


# an XML element's or attribute's name (a namespace prefix is read past)
_XML_NAME = re.compile(r"<\s*(?:[\w.\-]+:)?([\w.\-]+)|(?:[\w.\-]+:)?([\w.\-]+)\s*=\s*[\"']")


def _xml_names(masker: Masker, text: str) -> Counter[str]:
    """The masked fields XML elements or attributes in `text` are named like
    (`<password>hunter2</password>`, `<user password="...">`): a document's names as
    its JSON keys are (Masker.rule_for_key)."""
    total: Counter[str] = Counter()
    if "<" not in text:
        return total
    for found in _XML_NAME.finditer(text):
        name = found.group(1) or found.group(2)
        rule = masker.rule_for_key((name,), name)
        if rule is not None:
            total[f"field:{rule.field or name}"] += 1
    return total


# Free text naming a masked field beside its value: `password: hunter2` (a label, YAML, a
# log line), `pw=hunter2; ok` (properties, a query string, a connection string), `"token":
# "..."` outside a document, hstore's `"password"=>"..."`. The HTTP proxy masks such text
# by the field its label names (proxies/http/bodies.py); a text column (`notes`) gave it
# to a reader as it was. A label is up to three words, quoted or not, before `:`, `=` or
# `=>`; the masker names its field as it names a JSON key (Masker.rule_for_key: other
# words, languages and spellings too). Its value goes to the line's end when the label
# opens the line and is followed by `:` (`Phone Number: 555 0100`), else to the next
# space, `,`, `;` or `&` (or its closing quote). More, never less: the safe mistake.
_LABELLED = re.compile(
    r"""(?P<open>(?:^|(?<=\n))[ \t]*(?:[-*][ \t]+)?)?(?<![\w\\])(?P<q>""|["']?)"""
    r"""(?P<key>[^\W\d][\w.\-]*(?:[ \t][^\W\d][\w.\-]*){0,2})(?P=q)"""
    r"""[ \t]*(?P<sep>=>|:|=)[ \t]*"""
    r"""(?P<value>""(?:[^"\n]|"(?!"))*""|"[^"\n]*"|'[^'\n]*'|[^\s,;&"']+)"""
)

_COPY_OPENS = r"""(?:^|(?<=\n)|(?<=\\n)|(?<=\t)|(?<=,)|(?<=,"))"""
# In a COPY row a line's indentation is spaces alone: every tab opens a field, so an
# indentation holding one opens after it anyway (the same key, value and openness). With
# tabs in it, a run of tabs was read from each of its openers to its end: `,"`, 16,000
# tabs and `x` took 16.6 s of the event loop every session of the proxy shares, from a
# reader's own COPY (quadratic); now linear (1 MiB: ~0.5 s), tests/test_redos_p2.py.
_LINE_OPENS = r"(?:^|(?<=\n))[ \t]*"
assert _LINE_OPENS in _LABELLED.pattern
_COPY_LABELLED = re.compile(_LABELLED.pattern.replace(_LINE_OPENS, _COPY_OPENS + "[ ]*", 1))
_LINE_END = re.compile(r"\n")
_COPY_LINE_END = re.compile(r'\n|\\n|\t|"')
_CSV_LINE_END = re.compile(r'\n|,|"')


def may_label(value: bytes) -> bool:
    """Whether a text may hold a label's value (labelled_values): a `:` or `=` in it."""
    return b":" in value or b"=" in value


@functools.lru_cache(maxsize=4096)
def _label_rule(masker: Masker, key: str) -> MaskRule | None:
    """The field rule a label names (its last word alone too: `login pw`), as a key."""
    rule = masker.rule_for_key((key,), key)
    words = key.split()
    if rule is None and len(words) > 1:
        rule = masker.rule_for_key((words[-1],), words[-1])
    return rule


def labelled_values(masker: Masker, text: str, counts: Counter[str], copy: bool = False) -> str:
    """`text` with the value of every label naming a masked field masked by that field's
    rule (counted as `field:<field>` in counts). copy: `text` is a COPY row, whose fields
    (after a tab, a comma or a CSV quote) and escaped line breaks (`\\n`) open lines too,
    and whose tabs, quotes and escaped line breaks end them (a row without a tab is read
    as CSV: a comma ends them too)."""
    pattern = _COPY_LABELLED if copy else _LABELLED
    ends = (_COPY_LINE_END if "\t" in text else _CSV_LINE_END) if copy else _LINE_END
    if not masker.strictest_field_rule():
        return text
    out: list[str] = []
    pos = 0
    masked = False
    while (found := pattern.search(text, pos)) is not None:
        rule = _label_rule(masker, found["key"])
        if rule is None:
            # (a label may begin inside what this match took as a value: `a?token=...`)
            out.append(text[pos : found.end("sep")])
            pos = found.end("sep")
            continue
        start, end = found.span("value")
        value = found["value"]
        quote = ""
        if value[:1] in ("'", '"'):
            quote = '""' if value.startswith('""') and len(value) > 3 else value[:1]
        elif found["open"] is not None and found["sep"] == ":":
            # `Phone Number: 555 0100`: a label opening a line holds the rest of it
            line_end = ends.search(text, end)
            end = len(text) if line_end is None else line_end.start()
            value = text[start:end]
        inner = value[len(quote) : len(value) - len(quote)] if quote else value
        hidden = masker.mask_field(rule, inner)
        if hidden == inner:  # (masked already: a document's key the row's pass masked)
            out.append(text[pos:end])
            pos = end
            continue
        out += [text[pos:start], quote, hidden, quote]
        counts[f"field:{rule.field}"] += 1
        masked = True
        pos = end
    if not masked:
        return text
    out.append(text[pos:])
    return "".join(out)


def _held_documents(masker: Masker, value: bytes, binary: bool, jsonb: bool) -> Counter[str]:
    """What the JSON documents an array value's elements hold would have masked."""
    if b"{" not in value[1:] and b"[" not in value[1:]:
        return Counter()  # no element can be a document (the common array, unparsed)
    try:
        if binary:
            raw = _binary_array_elements(value)
            texts = [_utf8(e[1:] if jsonb and e[:1] == b"\x01" else e) for e in raw]
        else:
            texts = array_literal_elements(_utf8(value)) or []
    except (struct.error, IndexError, ValueError):
        return Counter({"unreadable_array": 1})
    return _document_keys(masker, texts)


def _json_text(value: bytes) -> dict[str, object] | list[object] | None:
    """A text value that is a JSON object or array, else None."""
    try:
        document = json.loads(value.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, (dict, list)) else None


def _detected_json(
    masker: Masker, value: bytes, versioned: bool
) -> tuple[bytes | None, Counter[str]] | None:
    body = value[1:] if versioned else value
    if versioned and value[:1] != b"\x01":
        return None, Counter({"unreadable_json": 1})
    text = body.decode("utf-8", "replace")
    try:
        document = json.loads(text)
    except ValueError:
        _, counts = masker.mask_text(text)
        return (None, counts) if counts else None
    masked, counts = _masked_document(masker, document)
    if not counts:
        return None
    out = json.dumps(masked, ensure_ascii=False, separators=(", ", ": ")).encode()
    return (b"\x01" + out if versioned else out), counts


def _detected_array(
    masker: Masker, value: bytes, binary: bool
) -> tuple[bytes | None, Counter[str]] | None:
    if not binary:
        _, counts = masker.mask_text(value.decode("utf-8", "replace"))
        if may_label(value):
            labelled_values(masker, _utf8(value), counts)
        # a text array literal cannot be rewritten inside safely: the whole value goes
        return (None, counts) if counts else None
    try:
        return _detected_binary_array(masker, value)
    except (struct.error, IndexError, ValueError):
        _, counts = masker.mask_text(value.decode("utf-8", "replace"))
        return (None, counts or Counter({"unreadable_array": 1}))


def _detected_binary_array(
    masker: Masker, value: bytes
) -> tuple[bytes | None, Counter[str]] | None:
    """array_send's layout: ndim, has-null flag, element type, (size, lower bound) per
    dimension, then each element as a length (-1: NULL) and its bytes."""
    (ndim,) = _INT32.unpack_from(value, 0)
    if ndim < 0 or ndim > 6:
        raise ValueError("array dimensions")
    header_end = 12 + 8 * ndim
    count = 1
    for d in range(ndim):
        (size,) = _INT32.unpack_from(value, 12 + 8 * d)
        count *= max(size, 0)
    if ndim == 0:
        count = 0
    pos = header_end
    parts = [value[:header_end]]
    total: Counter[str] = Counter()
    for _ in range(count):
        (length,) = _INT32.unpack_from(value, pos)
        pos += 4
        if length < 0:
            parts.append(_INT32.pack(-1))
            continue
        element = value[pos : pos + length]
        if len(element) != length:
            raise ValueError("array element cut short")
        pos += length
        text, counts = masker.mask_text(element.decode("utf-8", "replace"))
        if may_label(element):
            text = labelled_values(masker, text, counts)
        if counts:
            total.update(counts)
            element = text.encode()
        parts.append(_INT32.pack(len(element)) + element)
    if pos != len(value):
        raise ValueError("array has trailing bytes")
    if not total:
        return None
    return b"".join(parts), total


# Fields of an ErrorResponse or NoticeResponse that can quote a value: message, detail,
# hint, context, and the internal query's text.
_QUOTING_FIELDS = ("M", "D", "H", "W", "q")


# SQLSTATE classes whose detail, hint and context describe the statement, the session or
# the server, never a value the statement read: connection, feature, cardinality,
# transaction, cursor and savepoint state, catalog names, syntax and access rules,
# resources, object state, operator intervention. An allow-list: class 22 (data
# exception) and 23 (integrity violation) describe values (`Failing row contains (1, ...,
# hunter2)`, `JSON data, line 1: ["card ebbb...`, libxml's echo of the document's line),
# and the others (P0 RAISE, XX, 38/39 routines, warnings, notices) may say anything.
_DESCRIBING_CLASSES = frozenset(
    {"08", "0A", "0B", "21", "24", "25", "26", "2B", "2D", "34", "3B", "3D", "3F", "40"}
    | {"42", "53", "54", "55", "57"}
)
# What only code prints: PL/pgSQL's RAISE and ASSERT (the server sets the routine field,
# the code chooses the SQLSTATE and writes the message as it likes, unquoted)
_RAISING_ROUTINES = frozenset({"exec_stmt_raise", "exec_stmt_assert"})
WITHHELD = "[withheld by portcullis: it may quote values the masks cover]"


def masked_fields(masker: Masker, fields: dict[str, str]) -> dict[str, str] | None:
    """An error or notice of a statement whose results are masked, with what could quote a
    value hidden: its internal query withheld; outside _DESCRIBING_CLASSES its detail, hint
    and context too (a RAISE's message as well: code wrote it); what is left kept only as
    one of the server's own message templates with every argument redacted
    (proxies/postgres/server_messages.py: an allow-list of texts; a value quoted with a
    double quote in it, or printed unquoted, read as an argument too), withheld when no
    template makes it. None when nothing changed. (`masker` is the statement's: its
    masks decided that the answer is read under masks; the server's texts need none.)"""
    changed = False
    out = dict(fields)
    withheld: tuple[str, ...] = ("q",)  # text code made (EXECUTE's), in every class
    if out.get("R") in _RAISING_ROUTINES:
        withheld = _QUOTING_FIELDS
    elif out.get("C", "")[:2] not in _DESCRIBING_CLASSES:
        withheld = ("D", "H", "W", "q")
    for code in withheld:
        if code in out:
            out[code] = WITHHELD
            changed = True
    for code in _QUOTING_FIELDS:
        text = out.get(code)
        if not text or text == WITHHELD:
            continue
        masked = server_messages.rewrite(text)
        if masked is None:
            # not a text the server makes: a value's, another version's or language's
            masked = WITHHELD
        if masked != text:
            out[code] = masked
            changed = True
    return out if changed else None


# COPY TO rows. A COPY row carries no column types, and the proxy masked it by the value
# detectors only: a json/jsonb column (or text holding JSON) whose document has a key named
# like a masked field went out in clear (`COPY people(id, profile) TO STDOUT` gave
# {"password": "hunter2-json"} where SELECT gives {"password": "[REDACTED]"}). Each field
# of a row that is a JSON object or array is now masked by its keys as a SELECT masks it.
# Under masks the policy lets COPY out only in the text format or CSV with their default
# delimiter, quote and escape (postgres.rego: other options are refused), so those two
# spellings are all a row can be in; both are read (the text format's first: a CSV field
# holding JSON is quoted, its quotes doubled, and never parses as JSON read the other way).
_COPY_TEXT_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_COPY_TEXT_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|(.))", re.DOTALL)
_COPY_TEXT_SPECIAL = re.compile(r"[\\\b\f\n\r\t\v]")
_COPY_TEXT_NAMES = {"\\": "\\\\", **{v: f"\\{k}" for k, v in _COPY_TEXT_ESCAPES.items()}}
# a CSV field: quoted ("" inside is one quote) or bare, up to the next comma
_CSV_FIELD = re.compile(r'"((?:[^"]|"")*)"(?=,|\r?\n?\Z)|([^,"\r\n]*)(?=,|\r?\n?\Z)')


def _copy_text_value(raw: str) -> str:
    """A text-format field's value (COPY's backslash escapes read back)."""

    def one(found: re.Match[str]) -> str:
        octal, hexa, char = found.groups()
        if octal is not None:
            return chr(int(octal, 8) & 0xFF)
        if hexa is not None:
            return chr(int(hexa, 16))
        return _COPY_TEXT_ESCAPES.get(char, char)

    return _COPY_TEXT_ESCAPE.sub(one, raw)


def _text_spans(row: str) -> list[tuple[int, int, str]]:
    """(start, end, value) of each field of a text-format row."""
    spans: list[tuple[int, int, str]] = []
    end = len(row) - 1 if row.endswith("\n") else len(row)
    start = 0
    while True:
        tab = row.find("\t", start, end)
        stop = end if tab < 0 else tab
        spans.append((start, stop, _copy_text_value(row[start:stop])))
        if tab < 0:
            return spans
        start = tab + 1


def _csv_spans(row: str) -> list[tuple[int, int, str]]:
    """(start, end, value) of each field of a CSV row (default delimiter and quote); []
    when the row is not one (the text format's)."""
    spans: list[tuple[int, int, str]] = []
    pos = 0
    while True:
        found = _CSV_FIELD.match(row, pos)
        if found is None:
            return []
        quoted = found.group(1)
        value = quoted.replace('""', '"') if quoted is not None else found.group(2)
        spans.append((found.start(), found.end(), value))
        pos = found.end()
        if not row.startswith(",", pos):
            return spans
        pos += 1


def _copy_text_field(value: str) -> str:
    return _COPY_TEXT_SPECIAL.sub(lambda c: _COPY_TEXT_NAMES[c.group()], value)


def _csv_field(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def masked_copy_row(masker: Masker, row: str) -> tuple[str, Counter[str]] | None:
    """One COPY TO row (a CopyData's text) with its JSON and XML documents masked by their
    names (_copy_documents), then every label naming a masked field beside its value
    (labelled_values, read across the row's fields: a field's start and an escaped line
    break open a line); None when nothing changed. The detectors' pass over the whole row
    is the caller's (Masker.mask_text). A row longer than that pass reads has its largest
    fields masked whole first (_copy_row_within, counted as `oversized`), so the pass reads
    the rest and the client still gets the row's fields: Masker.mask_text masks a longer
    text whole, one mask string for the row, its tabs, commas and line end gone."""
    counts: Counter[str] = Counter()
    found: tuple[str, Counter[str]] | None = None
    if len(row) > MAX_READ_CHARS:
        within = _copy_row_within(row)
        if within is not None:
            row, cut = within
            counts["oversized"] += cut
            found = row, counts
    documents = _copy_documents(masker, row)
    if documents is not None:
        row, more = documents
        counts.update(more)
        found = row, counts
    searched = _copy_search_fields(masker, row) if "'" in row else None
    if searched is not None:
        row, more = searched
        counts.update(more)
        found = row, counts
    if (":" in row or "=" in row) and masker.strictest_field_rule() is not None:
        named: Counter[str] = Counter()
        row = _labelled_fields(masker, row, named)
        row = labelled_values(masker, row, named, copy=True)
        if named:
            counts.update(named)
            return row, counts
    return found


def _copy_row_within(row: str) -> tuple[str, int] | None:
    """row with its largest fields masked whole, each the mask string, until it is no
    longer than MAX_READ_CHARS, and how many were; None when it cannot be cut so. The COPY
    format is not told: a row holding a tab is read as the text format (the server's CSV
    quotes no tab, but a text field never holds one raw), one holding none as CSV where it
    reads as CSV (a text-format row of one column then has parts of its one field masked),
    else as one field. The row's line end stays."""
    body = len(row) - 1 if row.endswith("\n") else len(row)
    if row.find("\t", 0, body) >= 0:
        spans = _tab_spans(row)
    else:
        spans = [(start, end) for start, end, _ in _csv_spans(row)] or [(0, body)]
    excess = len(row) - MAX_READ_CHARS
    chosen: list[tuple[int, int]] = []
    for start, end in sorted(spans, key=lambda span: span[0] - span[1]):  # largest first
        if excess <= 0 or end - start <= len(REDACTED):
            break
        chosen.append((start, end))
        excess -= end - start - len(REDACTED)
    if excess > 0:
        return None
    out: list[str] = []
    last = 0
    for start, end in sorted(chosen):
        out += [row[last:start], REDACTED]
        last = end
    out.append(row[last:])
    return "".join(out), len(chosen)


def _tab_spans(row: str) -> list[tuple[int, int]]:
    """(start, end) of each field of a text-format row, not read back."""
    spans: list[tuple[int, int]] = []
    end = len(row) - 1 if row.endswith("\n") else len(row)
    start = 0
    while True:
        tab = row.find("\t", start, end)
        if tab < 0:
            spans.append((start, end))
            return spans
        spans.append((start, tab))
        start = tab + 1


def _labelled_fields(masker: Masker, row: str, counts: Counter[str]) -> str:
    """`row` with each field's labels masked as a SELECT masks the value (labelled_values
    over the field's own text, its spelling read back and written again): a CSV field is
    quoted when it holds a comma, a quote or a line break (`"password: a,b"`), a
    text-format field escapes its line breaks (`x\\npassword: a`),
    which the row read as it is cut or hid. Read as the text format, then as CSV (more,
    never less); a row holding a line break before its end is CSV's alone."""
    body = row[:-1] if row.endswith("\n") else row
    readings = [(_csv_spans, _csv_field)]
    if "\n" not in body and "\r" not in body:
        readings.insert(0, (_text_spans, _copy_text_field))
    for spans_of, spell in readings:
        out: list[str] = []
        last = 0
        for start, end, value in spans_of(row):
            if ":" not in value and "=" not in value:
                continue
            masked = labelled_values(masker, value, counts)
            if masked != value:
                out += [row[last:start], spell(masked)]
                last = end
        if out:
            out.append(row[last:])
            row = "".join(out)
    return row


# a tsvector's text form (`'card':1 '4111':2`), a tsquery's (`'4111' & !'1111' <-> ...`)
_TSVECTOR_TEXT = re.compile(r"'(?:[^']|'')*'(?::[0-9A-D,]+)?(?: '(?:[^']|'')*'(?::[0-9A-D,]+)?)*")
_TSQUERY_TEXT = re.compile(
    r"[(!]*'(?:[^']|'')*'(?::\*?[A-D]*)?(?:[ )]*(?:&|\||<->|<\d+>)[ (!]*"
    r"'(?:[^']|'')*'(?::\*?[A-D]*)?)*\)*"
)


def _search_words_found(masker: Masker, words: str) -> Counter[str]:
    """What the detectors find in a tsvector's or tsquery's words (_search_words)."""
    _, found = masker.mask_text(words)
    if not found and " -" in words:
        # the parser's signed numbers (`078-05-1120` is 078, -05, -1120) written joined
        _, found = masker.mask_text(words.replace(" -", "-"))
    return found


def _copy_search_fields(masker: Masker, row: str) -> tuple[str, Counter[str]] | None:
    """One COPY TO row with every field that reads as a tsvector or tsquery whose words
    (in the order of their positions, _search_words) hold anything a detector finds sent
    as NULL; None when no field changed."""
    for spans, spell in ((_text_spans(row), _copy_text_field), (_csv_spans(row), _csv_field)):
        counts: Counter[str] = Counter()
        out: list[str] = []
        last = 0
        for start, end, value in spans:
            if _TSVECTOR_TEXT.fullmatch(value):
                kind = TSVECTOR
            elif _TSQUERY_TEXT.fullmatch(value):
                kind = TSQUERY
            else:
                continue
            found = _search_words_found(masker, _search_words(value.encode(), kind, False))
            if found:
                counts.update(found)
                out += [row[last:start], "\\N" if spell is _copy_text_field else ""]
                last = end
        if counts:
            out.append(row[last:])
            return "".join(out), counts
    return None


def _copy_documents(masker: Masker, row: str) -> tuple[str, Counter[str]] | None:
    """One COPY TO row (a CopyData's text) with every field that is a JSON object or array
    masked by its keys (Masker.mask_json, as detected_value masks json, jsonb and text
    holding JSON in a SELECT), written back in the row's spelling; None when no field
    changed. The detectors' pass over the whole row is the caller's (Masker.mask_text)."""
    if "{" not in row and "[" not in row and "<" not in row:
        return None
    for spans, spell in ((_text_spans(row), _copy_text_field), (_csv_spans(row), _csv_field)):
        counts: Counter[str] = Counter()
        out: list[str] = []
        last = 0
        for start, end, value in spans:
            head = value.lstrip()[:1]
            if head == "<":
                # XML (the xml type, or text holding it): named like a masked field, NULL
                named = _xml_names(masker, value)
                if named:
                    counts.update(named)
                    out += [row[last:start], "\\N" if spell is _copy_text_field else ""]
                    last = end
                continue
            if head not in ("{", "["):
                continue
            document = _json_text(value.encode())
            if document is None:
                # an array of documents (jsonb[], text[] of JSON): the field goes as NULL
                held = _document_keys(masker, array_literal_elements(value) or [])
                if held:
                    counts.update(held)
                    out += [row[last:start], "\\N" if spell is _copy_text_field else ""]
                    last = end
                continue
            masked, found = _masked_document(masker, document)
            if not found:
                continue
            counts.update(found)
            text = json.dumps(masked, ensure_ascii=False, separators=(", ", ": "))
            out += [row[last:start], spell(text)]
            last = end
        if counts:
            out.append(row[last:])
            return "".join(out), counts
    return None


# -- values split across siblings

# A card number, an SSN or an IBAN a reader splits across the values beside each other
# of one JSON object or array (`{"a": "4111", "b": "1111", "c": "1111", "d": "1111"}`:
# substr() of it as four columns; `["4111 1111", "1111 1111"]`) is whole to whoever reads
# them in order, though no one value holds it. A part: a short string of letters and
# digits in groups, or a whole number; the values between parts are read past.
SPLIT_DETECTORS = ("credit_card", "ssn", "iban")
# (not a dot: a version, 10.7, is no group of a value)
_SPLIT_PART = re.compile(r"[0-9A-Za-z]+(?:[ \-_/][0-9A-Za-z]+)*")
_SPLIT_GAP = re.compile(r"[ \-_/]")
MAX_SPLIT_PART = 24
MAX_SPLIT_WINDOW = 34  # letters and digits of a window read (an IBAN's longest)
MAX_PADDING = 3  # items around a card's numbers in an array read past (_padded)
_IBAN_OPENING = re.compile(r"[A-Za-z]{2}[0-9]{2}")
_Slot = str | int
OBJECT, ARRAY, COLUMN = "object", "array", "column"  # how siblings are read (_split_found)


def split_rules(masker: Masker) -> dict[str, MaskRule]:
    """The masker's detector rules for the values a split hides (SPLIT_DETECTORS), the
    strictest of each."""
    return {d: r for d, r in masker.detector_rules.items() if d in SPLIT_DETECTORS}


def masked_split_values(masker: Masker, doc: Any) -> tuple[Any, Counter[str]]:
    """`doc` (decoded JSON) with every part of a card number, an SSN or an IBAN split
    across sibling values masked whole, each part by its detector's rule (a partial one
    stars every letter and digit of it: each part keeping its last four would show it
    all); and the strings of one object or array read as lines, in order (_lines_found:
    `["card 4111 1111", "1111 1111"]`), such a value found across them masked into
    them. Counts as `detector:<name>`, one per value found. A value found within one
    value is Masker.mask_json's: only what spans two or more is read here. The document
    is not modified; containers holding a part found are copied."""
    rules = split_rules(masker)
    counts: Counter[str] = Counter()
    if not masker.detects or not isinstance(doc, dict | list):
        return doc, counts
    changes: dict[int, dict[_Slot, str]] = {}
    parents: dict[int, Any] = {}
    order: list[Any] = []
    stack: list[Any] = [doc]
    while stack:
        node = stack.pop()
        order.append(node)
        slots: list[tuple[_Slot, Any]] = [
            *(node.items() if isinstance(node, dict) else enumerate(node))
        ]
        for _, child in slots:
            if isinstance(child, dict | list) and child:
                parents[id(child)] = node
                stack.append(child)
        found = _split_found(
            masker, slots, ARRAY if isinstance(node, list) else OBJECT, rules, counts
        )
        if found:
            changes.setdefault(id(node), {}).update(found)
        if isinstance(node, list):
            for row, key, masked in _columns_found(masker, node, rules, counts):
                changes.setdefault(id(row), {})[key] = masked
    if not changes:
        return doc, counts
    dirty: set[int] = set()
    for changed in changes:
        at: Any = changed
        while at is not None and at not in dirty:
            dirty.add(at)
            parent = parents.get(at)
            at = id(parent) if parent is not None else None
    rebuilt: dict[int, Any] = {}
    for node in reversed(order):  # (children before their parents)
        if id(node) not in dirty:
            continue
        copy: Any = dict(node) if isinstance(node, dict) else list(node)
        for slot, child in list(node.items()) if isinstance(node, dict) else enumerate(node):
            if id(child) in rebuilt:
                copy[slot] = rebuilt[id(child)]
        for slot, masked in changes.get(id(node), {}).items():
            copy[slot] = masked
        rebuilt[id(node)] = copy
    return rebuilt[id(doc)], counts


def _masked_document(masker: Masker, document: Any) -> tuple[Any, Counter[str]]:
    """Masker.mask_json over a document whose split values are masked first."""
    split, counts = masked_split_values(masker, document)
    masked, found = masker.mask_json(split)
    counts.update(found)
    return masked, counts


class _Part(NamedTuple):
    slot: _Slot
    text: str
    compact: str  # its letters and digits
    groups: tuple[int, ...]  # the sizes of its groups of letters and digits
    written: bool  # a string (not a number)


def _split_part(slot: _Slot, value: Any) -> _Part | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        text = str(value)
        return _Part(slot, text, text, (len(text),), False) if 0 <= value < 10**19 else None
    if isinstance(value, str) and len(value) <= MAX_SPLIT_PART:
        text = value.strip()
        if text and _SPLIT_PART.fullmatch(text):
            groups = _SPLIT_GAP.split(text)
            return _Part(slot, text, "".join(groups), tuple(map(len, groups)), True)
    return None


def _split_found(
    masker: Masker,
    slots: list[tuple[_Slot, Any]],
    reading: str,
    rules: dict[str, MaskRule],
    counts: Counter[str],
) -> dict[_Slot, str]:
    """The slots of the parts of values split across these siblings (`reading`: an
    OBJECT's values, an ARRAY's items, a COLUMN's values down an array's objects),
    masked."""
    out = _emails_found(masker, slots, counts)
    # (the parts in order, whatever stands between them: `true`, a name, an object are
    # read past as a reader reads past them)
    if not rules:
        return _lines_found(masker, slots, out, counts)
    # (a card's and an SSN's parts are digits: the words between them are read past too)
    parts = [part for slot, value in slots if (part := _split_part(slot, value)) is not None]
    digits = [part for part in parts if part.compact.isdigit()]
    # (an IBAN's groups hold digits but for its bank's letters, `GB82 WEST 1234`: a word
    # between its groups, `["DE89", "3704", "x", "0044", ...]`, is read past too)
    numbered = [part for part in parts if any(c.isdigit() for c in part.compact)]
    runs = ((digits, ("credit_card", "ssn")), (parts, ("iban",)), (numbered, ("iban",)))
    for run, kinds in runs:
        read = {kind: rule for kind, rule in rules.items() if kind in kinds}
        if len(run) < 2 or not read:
            continue
        for detector, start, end in _split_hits(run, reading, read):
            if all(p.slot in out for p in run[start:end]):
                continue  # (a window of a value found already)
            counts[f"detector:{detector}"] += 1
            for p in run[start:end]:
                out[p.slot] = _part_masked(masker, rules[detector], p.text)
    return _lines_found(masker, slots, out, counts)


MAX_EMAIL_PART = 254  # (an address's longest)


def _emails_found(
    masker: Masker, slots: list[tuple[_Slot, Any]], counts: Counter[str]
) -> dict[_Slot, str]:
    """The slots of an email address cut into sibling strings at its `@` (`["ada@",
    "example.com"]`, `{"a": "ada", "at": "@", "b": "example.com"}`), masked: two or three
    strings one after another, their seam at the `@`, read joined. A name beside a domain
    with no `@` between (`{"user": "ada", "domain": "example.com"}`) is no address cut:
    a record's name and its tenant's domain, a host beside a user, are what many records
    hold, and an address a reader puts together there is theirs to make."""
    rule = masker.detector_rules.get("email")
    texts = [(slot, v) for slot, v in slots if isinstance(v, str) and 0 < len(v) <= MAX_EMAIL_PART]
    out: dict[_Slot, str] = {}
    if rule is None or len(texts) < 2:
        return out
    for n in range(len(texts) - 1):
        for size in (2, 3):
            group = texts[n : n + size]
            if len(group) < size or any(slot in out for slot, _ in group):
                continue
            pieces = [text for _, text in group]
            if not any(a.endswith("@") or b.startswith("@") for a, b in itertools.pairwise(pieces)):
                continue
            joined = "".join(pieces)
            bounds = list(itertools.accumulate(len(p) for p in pieces))
            for a, b in detect("email", joined):
                first = bisect.bisect_right(bounds, a)
                last = bisect.bisect_right(bounds, b - 1)
                if first == last:
                    continue  # (in one string: mask_json's)
                counts["detector:email"] += 1
                for slot, text in group[first : last + 1]:
                    out[slot] = masker.mask_field(rule, text)
    return out


def _columns_found(
    masker: Masker, rows: list[Any], rules: dict[str, MaskRule], counts: Counter[str]
) -> Iterator[tuple[dict[str, Any], str, str]]:
    """(row, key, masked value) of the parts of values split down a column: the values
    under one key of an array's objects, in order (`[{"p": "4111"}, {"p": "1111"}, ...]`:
    substr() of it as rows), its parts read only as a whole: a column of codes (ISO's
    country numbers, postcodes) holds many windows, some of which pass for a card."""
    objects = [row for row in rows if isinstance(row, dict)]
    if len(objects) < 2:
        return
    keys = dict.fromkeys(key for row in objects for key in row)
    for key in keys:
        column: list[tuple[_Slot, Any]] = [(n, row.get(key)) for n, row in enumerate(objects)]
        for n, masked in _split_found(masker, column, COLUMN, rules, counts).items():
            yield objects[int(n)], key, masked


def _lines_found(
    masker: Masker, slots: list[tuple[_Slot, Any]], out: dict[_Slot, str], counts: Counter[str]
) -> dict[_Slot, str]:
    """`out` and the strings among these siblings (those `out` has not masked) read as
    lines in order (masked_lines: `["card 4111 1111", "1111 1111"]`), a card number, an
    SSN or an IBAN found across them masked into them."""
    texts = [(slot, v) for slot, v in slots if isinstance(v, str) and v and slot not in out]
    if len(texts) < 2:
        return out
    if not any(_may_join(a, b) for (_, a), (_, b) in itertools.pairwise(texts)):
        return out  # (the usual row: no value could go on from one string to the next)
    # (numbers written as strings alone are _split_found's parts, read by an issued card's
    # prefix: joined as text, a list of ZIP codes reads as printed cards one time in ten)
    masked, found = masked_lines(masker, [text for _, text in texts], _digit_part, _LINE_DETECTORS)
    counts.update(found)
    out.update((slot, now) for (slot, text), now in zip(texts, masked, strict=True) if now != text)
    return out


# what is read across strings: the values a reader cuts into digits (an address joined
# with its neighbours as text reads `m @example.com` in a record's model and its text)
_LINE_DETECTORS = frozenset(SPLIT_DETECTORS)
_DIGIT = re.compile(r"[0-9]")


def _may_join(left: str, right: str) -> bool:
    """Whether a value may go on from the end of `left` into the start of `right`: digits
    on both sides of the break (a card's, an SSN's, an IBAN's groups)."""
    return bool(_DIGIT.search(left[-6:]) and _DIGIT.search(right[:6]))


def _digit_part(text: str) -> bool:
    part = _split_part(0, text)
    return part is not None and part.compact.isdigit()


def _split_hits(
    run: list[_Part], reading: str, rules: dict[str, MaskRule]
) -> list[tuple[str, int, int]]:
    """(detector, first part, end part) of each value read across two parts or more. In
    an array, numbers are read as the whole run, or it but for padding (_padded): a list
    of ordinary numbers (ids, counts) holds many windows, one in ten of which passes the
    check digit, where the
    columns of an object are few and named (a run of strings is read through: numbers
    written as strings are rarer, and what a reader cutting a card makes); down a column
    every part is read as the whole run, or it but for padding, too."""
    hits: list[tuple[str, int, int]] = []
    for start in range(len(run)):
        compact = run[start].compact
        for end in range(start + 1, len(run)):
            compact += run[end].compact
            if len(compact) > MAX_SPLIT_WINDOW:
                break
            parts = run[start : end + 1]
            whole = (start, end + 1) == (0, len(run))
            if not whole and (
                (reading == COLUMN and not _padded(run, start, end + 1, alike=False))
                or (
                    reading == ARRAY
                    and not all(p.written for p in parts)
                    and not _padded(run, start, end + 1)
                )
            ):
                continue
            detector = _split_value(compact, parts, rules)
            if detector is not None:
                hits.append((detector, start, end + 1))
    return hits


def _padded(run: list[_Part], start: int, end: int, alike: bool = True) -> bool:
    """Whether run[start:end] is the run of an array's numbers but for padding a reader
    put around a card's groups (`[7, 4111, 1111, 1111, 1111]`, `[..., 0]`): at most one
    item at either end (`alike`: of any size), or up to MAX_PADDING whose sizes are not
    the groups'. Reading every window of an array's numbers would find a card in one
    list of ordinary numbers in a few (ids, counts: the check digit passes one window in
    ten); these windows keep that to about the rate of the whole run's, and down a
    column (its rows, more alike) to none in ids of one size (test_masking_probe_p11
    measures it)."""
    before, after = run[:start], run[end:]
    if alike and len(before) <= 1 and len(after) <= 1:
        return True
    size = len(run[start].compact)
    return (
        len(before) <= MAX_PADDING
        and len(after) <= MAX_PADDING
        and all(len(p.compact) != size for p in (*before, *after))
    )


def _split_value(compact: str, parts: list[_Part], rules: dict[str, MaskRule]) -> str | None:
    """The detector that reads `compact` (the parts' letters and digits, joined) as its
    value, if any: a card's digits (13 to 19, as an issued card begins and is long, the
    check digit right; numbers only in groups as a card is cut: a list of ordinary
    numbers is not), an SSN's as strings in its groups (078|05|1120), an IBAN (its
    account mostly digits, as the ones banks issue are)."""
    if compact.isdigit():
        if (
            "credit_card" in rules
            and 13 <= len(compact) <= 19
            and issued_length(compact)
            and len(set(compact)) > 1
            and luhn_valid(compact)
            and (all(p.written for p in parts) or _card_cut([len(p.compact) for p in parts]))
        ):
            return "credit_card"
        if (
            "ssn" in rules
            and len(compact) == 9
            and all(p.written for p in parts)
            and [g for p in parts for g in p.groups] == [3, 2, 4]
            and detect("ssn", f"{compact[:3]}-{compact[3:5]}-{compact[5:]}")
        ):
            return "ssn"
        return None
    if (
        "iban" in rules
        and len(compact) >= 15
        and _IBAN_OPENING.match(compact)
        and 2 * sum(c.isdigit() for c in compact[4:]) >= len(compact) - 4
    ):
        return "iban" if detect("iban", compact.upper()) else None
    return None


def _card_cut(sizes: list[int]) -> bool:
    """Whether numbers of these sizes are a card's digits cut as a program cuts them:
    groups of one size, the last maybe shorter, or a printed layout (4-6-5, 4-6-4)."""
    if sizes in ([4, 6, 5], [4, 6, 4]):
        return True
    return all(s == sizes[0] for s in sizes[1:-1]) and sizes[-1] <= sizes[0]


def _part_masked(masker: Masker, rule: MaskRule, text: str) -> str:
    if rule.strategy == "partial":
        return _ALNUM.sub("*", text)
    return masker.mask_field(rule, text)


_ALNUM = re.compile(r"[0-9A-Za-z]")


EDGE = 128  # characters of a long text's either end read with its neighbours (masked_lines)


def masked_lines(
    masker: Masker,
    texts: list[str],
    owned: Callable[[str], bool] | None = None,
    kinds: frozenset[str] | None = None,
    cut: Callable[[str, str], bool] | None = None,
) -> tuple[list[str], Counter[str]]:
    """Texts a client shows one after another (log lines, a result's text items, a
    prompt's messages, a JSON array's strings) read together as one line, a space
    between: each value a detector finds across two texts or more has the part of it in
    each masked (by that detector's rule; a partial one stars every letter and digit of
    the part). Only where texts meet is read so: a long text's first and last EDGE
    characters (its middle is no neighbour's, and was read alone), so that the lines
    read stay short whatever the texts. A value whose every text `owned` says is read
    otherwise (_split_found's digit parts) is left; `kinds`: the detectors read (all the
    masker's when None); `cut`: whether a value found across texts, by its detector and
    text, is one a reader cut (cut_as_split), None: every one. Counts as
    `detector:<name>`. (Also
    the MCP proxy's, for its lines: proxies/http/mcp_pieces.py.)"""
    rules = {k: r for k, r in masker.detector_rules.items() if kinds is None or k in kinds}
    if len(texts) < 2 or not rules:
        return texts, Counter()
    runs: list[list[tuple[int, int, int]]] = [[]]  # (text, start, end) of each piece
    for n, text in enumerate(texts):
        if len(text) <= 2 * EDGE:
            runs[-1].append((n, 0, len(text)))
            continue
        runs[-1].append((n, 0, EDGE))
        runs.append([(n, len(text) - EDGE, len(text))])
    hidden: dict[int, dict[int, MaskRule]] = {}  # text → its characters to mask, by rule
    counts: Counter[str] = Counter()
    for run in runs:
        if len(run) < 2:
            continue
        starts, at = [], 0
        for _, start, end in run:
            starts.append(at)
            at += end - start + 1
        flat = " ".join(texts[n][start:end] for n, start, end in run)
        for name, rule in rules.items():
            for a, b in detect(name, flat):
                # (the pieces the value reaches into: two or more, or it was read alone)
                first = bisect.bisect_right(starts, a) - 1
                last = bisect.bisect_right(starts, b - 1) - 1
                if first == last or (
                    owned is not None
                    and all(owned(texts[run[k][0]]) for k in range(first, last + 1))
                ):
                    continue
                if cut is not None and not cut(name, flat[a:b]):
                    continue
                counts[f"detector:{name}"] += 1
                for k in range(first, last + 1):
                    n, start, end = run[k]
                    low = max(a - starts[k], 0) + start
                    high = min(b - starts[k], end - start) + start
                    marks = hidden.setdefault(n, {})
                    for c in range(low, high):
                        marks[c] = stricter(marks.get(c, rule), rule)
    if not hidden:
        return texts, counts
    out = list(texts)
    for n, marks in hidden.items():
        out[n] = _marked(masker, texts[n], marks)
    return out, counts


def cut_as_split(detector: str, value: str) -> bool:
    """Whether a value a detector found across texts is cut as a reader cuts one (the
    split values' rules, _split_value): a card's digits in groups of one size, the last
    maybe shorter, or a printed layout, as an issued card begins and is long; an SSN's
    as 3|2|4; an IBAN as its check found it. Numbers in groups of other sizes one line
    after another (a stream's references, `233 7061`, then `718 8766`) read as a card
    to the text detector one time in five."""
    groups = _ALNUM_GROUPS.findall(value)
    sizes = [len(g) for g in groups]
    if detector == "credit_card":
        return _card_cut(sizes) and issued_length("".join(groups))
    if detector == "ssn":
        return sizes == [3, 2, 4]
    return True


_ALNUM_GROUPS = re.compile(r"[0-9A-Za-z]+")


def _marked(masker: Masker, text: str, marks: dict[int, MaskRule]) -> str:
    """`text` with each run of its marked characters masked by their rule."""
    out: list[str] = []
    at = 0
    for start, end, rule in _marked_runs(marks):
        out += [text[at:start], _part_masked(masker, rule, text[start:end])]
        at = end
    out.append(text[at:])
    return "".join(out)


def _marked_runs(marks: dict[int, MaskRule]) -> Iterator[tuple[int, int, MaskRule]]:
    run: list[int] = []
    for c in sorted(marks):
        if run and (c != run[-1] + 1 or marks[c] is not marks[run[0]]):
            yield run[0], run[-1] + 1, marks[run[0]]
            run = []
        run.append(c)
    if run:
        yield run[0], run[-1] + 1, marks[run[0]]
