"""What masking does to each column of one result's rows, decided once per result shape
(no IO here).

A RowMask is made from a RowDescription, the result's formats, the statement's Masker and
the lineage plan (column → MaskRule, ResponseTracker._columns_to_mask). It sorts the
columns once by what must happen to their values, so a row costs a pass over the columns
that can change, not a decision per value:

- masked by a rule: the rule's value in the column's type (values.masked_value) — for
  the `redact` strategy a constant, the mask string or NULL; counted as `field:<name>`
  (`derived:<name>` when the derived rule masked it: its lineage reached a sensitive
  column);
- read by the detectors: text-like columns whose value carries a detector's hint
  (Masker.may_detect: a value without one is left as it came, unread) or, under field
  rules, a `:` or `=` (a label naming a field beside its value: values.labelled_values),
  and json, jsonb,
  text arrays and every type not known to hold no text (values.NO_TEXT: citext, xml,
  records, types made since initdb) always (values.detected_value); counted as
  `detector:<name>`;
- bigint, numeric and double precision (and their arrays): read as a JSON number is (a
  card number kept as a number), those of fewer than 9 characters in text format unread;
- any value of these a column's masking would read past MAX_READ_VALUE (1 MiB): masked
  whole, unread (the mask string, or NULL where the type is not text-like), counted as its
  rule's or as `detector:oversized` — reading it would hold the event loop;
- other numbers, uuids, dates... (values.NO_TEXT), and text-like columns when no detector
  applies, pass untouched.

NULL: a stored table column output as itself keeps its NULLs (that a stored value is
missing is a fact of the row, as `IS NULL` would tell, not of any value; clients and ORMs
rely on it for nullable columns). Every other masked column — an expression, aggregate or
function output, a computed view column, a column the catalog could not place — masks a
NULL as it masks a value: otherwise an expression whose NULL-ness depends on a sensitive
value (`nullif(left(email, 1), 'a')`, `CASE WHEN ssn LIKE '1%' THEN 1 END`) would answer a
question about it. In a text-like column that is the rule's mask of the empty value (the
mask string for `redact`); in any other type the mask is NULL already, so NULL and a value
look alike there.

It applies values.py's rules and nothing of its own: a Hypothesis test holds a row it
masks to the value-by-value reference (masked_value / detected_value for every column).
"""

from __future__ import annotations

from collections.abc import Sequence

from portcullis.masking import Masker
from portcullis.verdict import MaskRule
from proxies.postgres import codec
from proxies.postgres.codec.wire import INT32, UINT16
from proxies.postgres.values import (
    NO_TEXT,
    NUMBER_ARRAYS,
    NUMBER_TEXT_MIN,
    NUMBERS,
    REDACTED_BYTES,
    TEXT_LIKE,
    count_key,
    detected_value,
    masked_value,
    may_label,
)

# the largest value masking reads (detectors, a rule's strategy); a larger one is masked
# whole, counted as its rule's or as OVERSIZED
MAX_READ_VALUE = 1024 * 1024
OVERSIZED = "detector:oversized"

_Column = tuple[int, int, str, bytes | None, MaskRule | None, int, bool, bytes | None]
# a column rewrite() may change: the column, its constant and its NULL's mask as value fields
_Step = tuple[_Column, bytes | None, bytes | None]

# what happens to one column's values
CONSTANT = 0  # replaced by one value (the redact mask string, or NULL)
RULE = 1  # masked by its rule's strategy, value by value
TEXT = 2  # text the detectors read where it carries a hint
DOCUMENT = 3  # json, jsonb, text arrays: the detectors read inside it
NUMBER = 4  # bigint, numeric, double precision (and arrays): read as a JSON number is


class RowMask:
    """The columns of one result shape that masking may change, and how."""

    __slots__ = ("columns", "constants", "labels", "masker", "plan", "readers")

    def __init__(
        self,
        masker: Masker,
        fields: Sequence[codec.Field],
        formats: Sequence[int],
        rules: dict[int, MaskRule],
        stored: frozenset[int] = frozenset(),
    ) -> None:
        """rules: column → the rule that masks it; stored: those of them that are a stored
        table column as it is (their NULLs stay NULL, every other's are masked)."""
        self.masker = masker
        # (index, action, count key, constant, rule, type OID, binary, what a NULL becomes)
        columns: list[_Column] = []
        detects = masker.detects
        # field rules: a text may name one beside its value (values.labelled_values)
        self.labels = labels = masker.strictest_field_rule() is not None
        for i, f in enumerate(fields):
            binary = _format(formats, i) == 1
            rule = rules.get(i)
            oid = f.type_oid
            if rule is not None:
                # which rule: a field rule by the policy's name for it (a result name is
                # the client's alias), or the derived rule by the output it masked
                key = f"derived:{f.name}" if rule.derived else f"field:{rule.field or f.name}"
                null = None
                if i not in stored and oid in TEXT_LIKE:
                    null = masked_value(masker, rule, b"", oid, binary)
                if oid not in TEXT_LIKE:
                    columns.append((i, CONSTANT, key, None, None, oid, binary, None))
                elif rule.strategy == "redact" and not rule.detector:
                    columns.append((i, CONSTANT, key, REDACTED_BYTES, None, oid, binary, null))
                else:
                    columns.append((i, RULE, key, None, rule, oid, binary, null))
            elif oid in TEXT_LIKE:
                if detects or labels:
                    columns.append((i, TEXT, "", None, None, oid, binary, None))
            elif oid in NUMBERS or oid in NUMBER_ARRAYS:
                if detects:
                    columns.append((i, NUMBER, "", None, None, oid, binary, None))
            elif oid not in NO_TEXT:
                # json, jsonb, text arrays, and any type that may hold text (citext, xml,
                # records, types made since initdb): values.detected_value reads them
                columns.append((i, DOCUMENT, "", None, None, oid, binary, None))
        self.columns = tuple(columns)
        # the row's pass in two: constants (most masked columns: a store per value, no
        # call) and the columns whose values are read (rules, detectors)
        self.constants = tuple(
            (i, constant, key, null)
            for i, action, key, constant, _, _, _, null in columns
            if action == CONSTANT
        )
        self.readers = tuple(column for column in columns if column[1] != CONSTANT)
        # for rewrite(): per column index up to the last one masking may change, None or
        # (its column, its constant and its NULL's mask as value fields on the wire;
        # None: a NULL that stays NULL)
        plan: list[_Step | None] = [None] * (columns[-1][0] + 1 if columns else 0)
        for column in columns:
            plan[column[0]] = (
                column,
                _field(column[3]),
                _field(column[7]) if column[7] is not None else None,
            )
        self.plan = tuple(plan)

    def apply(self, values: list[bytes | None], counts: dict[str, int]) -> bool:
        """Mask values (one DataRow's, in place) and count what was masked (counts: a
        defaultdict(int), or any mapping whose missing keys count from 0); False when no
        value changed."""
        changed = False
        size = len(values)
        for i, constant, key, null in self.constants:
            if i >= size:
                break
            if values[i] is not None:
                values[i] = constant
            elif null is not None:  # a derived column's NULL, masked like a value
                values[i] = null
            else:
                continue  # a stored column's NULL stays NULL
            counts[key] += 1
            changed = True
        for column in self.readers:
            i = column[0]
            if i >= size:
                break
            value = values[i]
            if value is None:
                null = column[7]
                if null is not None:  # a derived column's NULL, masked like a value
                    values[i] = null
                    counts[column[2]] += 1
                    changed = True
                continue
            masked = self._read(column, value, counts)
            if not isinstance(masked, _Unchanged):
                values[i] = masked
                changed = True
        return changed

    def rewrite(self, chunk: bytes, start: int, end: int, counts: dict[str, int]) -> bytes | None:
        """The DataRow frame chunk[start:end] (well-formed: plain_answers checked it) masked
        as apply() masks its values, the values nothing changes copied as they lie in the
        chunk, not decoded and encoded again; None when no value changed."""
        unpack = INT32.unpack_from
        (count,) = UINT16.unpack_from(chunk, start + 5)
        plan = self.plan
        pos = copied = start + 7
        parts: list[bytes] = []
        for i in range(min(count, len(plan))):
            (n,) = unpack(chunk, pos)
            after = pos + 4 + n if n > 0 else pos + 4
            step = plan[i]
            if step is not None:
                column, constant, null = step
                new: bytes | None = None
                if n < 0:
                    new = null  # None: a NULL that stays NULL
                elif column[1] == CONSTANT:
                    new = constant
                elif column[1] == NUMBER and n < NUMBER_TEXT_MIN and not column[6]:
                    pass  # a number too short for any detector, not sliced out
                else:
                    masked = self._read(column, chunk[pos + 4 : after], counts)
                    if not isinstance(masked, _Unchanged):
                        new = _field(masked)
                if new is not None:
                    if column[1] == CONSTANT or n < 0:
                        counts[column[2]] += 1
                    parts.append(chunk[copied:pos])
                    parts.append(new)
                    copied = after
            pos = after
        if not parts:
            return None
        parts.append(chunk[copied:end])
        body = b"".join(parts)
        if len(body) + 6 > 0x7FFFFFFF:
            raise ValueError("DataRow: value out of range: the row is too large")
        return b"D" + INT32.pack(len(body) + 6) + UINT16.pack(count) + body

    def _read(
        self, column: _Column, value: bytes, counts: dict[str, int]
    ) -> bytes | _Unchanged | None:
        """A value of a column masking reads (not a constant), masked by its rule's
        strategy or by the detectors where they find something (counted); _UNCHANGED
        when it goes as it came."""
        _, action, key, _, rule, type_oid, binary, _ = column
        if len(value) > MAX_READ_VALUE:
            # masked whole, unread: reading costs the event loop every session shares
            # time in proportion to the value (a reader's repeat('1234 5678 ', 10^7), 100
            # MB, held it for minutes), and a value this large is no field's
            counts[key if action == RULE else OVERSIZED] += 1
            return REDACTED_BYTES if type_oid in TEXT_LIKE else None
        masker = self.masker
        if action == RULE:
            assert rule is not None
            counts[key] += 1
            return masked_value(masker, rule, value, type_oid, binary)
        if action == NUMBER and not binary and len(value) < NUMBER_TEXT_MIN:
            return _UNCHANGED
        if (
            action >= DOCUMENT
            or masker.may_detect(value)
            or (action == TEXT and self.labels and may_label(value))
        ):
            found = detected_value(masker, value, type_oid, binary)
            if found is not None:
                masked, detected = found
                for detector, n in detected.items():
                    counts[count_key(detector)] += n
                return masked
        return _UNCHANGED


class _Unchanged:
    """RowMask._read's answer for a value that goes as it came."""


_UNCHANGED = _Unchanged()
_NULL_FIELD = INT32.pack(-1)


def _field(value: bytes | None) -> bytes:
    """A DataRow value field on the wire: its length word and bytes, -1 for SQL NULL."""
    return _NULL_FIELD if value is None else INT32.pack(len(value)) + value


def _format(formats: Sequence[int], column: int) -> int:
    """A column's format code from a Bind's (or RowDescription's) list: none → text, one →
    every column, else one per column."""
    if not formats:
        return 0
    if len(formats) == 1:
        return formats[0]
    return formats[column] if column < len(formats) else 0
