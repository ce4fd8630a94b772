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
  (Masker.may_detect: a value without one is left as it came, unread), and json, jsonb
  and text arrays always (values.detected_value); counted as `detector:<name>`;
- anything else (numbers, uuids, bytea... and every column when no detector applies)
  passes untouched.

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

from collections import Counter
from collections.abc import Sequence

from portcullis.masking import Masker
from portcullis.verdict import MaskRule
from proxies.postgres import codec
from proxies.postgres.values import (
    JSON,
    JSONB,
    REDACTED_BYTES,
    TEXT_ARRAYS,
    TEXT_LIKE,
    detected_value,
    masked_value,
)

_Column = tuple[int, int, str, bytes | None, MaskRule | None, int, bool, bytes | None]

# what happens to one column's values
CONSTANT = 0  # replaced by one value (the redact mask string, or NULL)
RULE = 1  # masked by its rule's strategy, value by value
TEXT = 2  # text the detectors read where it carries a hint
DOCUMENT = 3  # json, jsonb, text arrays: the detectors read inside it


class RowMask:
    """The columns of one result shape that masking may change, and how."""

    __slots__ = ("columns", "masker")

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
        for i, f in enumerate(fields):
            binary = _format(formats, i) == 1
            rule = rules.get(i)
            oid = f.type_oid
            if rule is not None:
                # which rule: a field rule, or the derived rule (the column's lineage)
                key = f"{'derived' if rule.derived else 'field'}:{f.name}"
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
                if detects:
                    columns.append((i, TEXT, "", None, None, oid, binary, None))
            elif oid in (JSON, JSONB) or oid in TEXT_ARRAYS:
                columns.append((i, DOCUMENT, "", None, None, oid, binary, None))
        self.columns = tuple(columns)

    def apply(self, values: list[bytes | None], counts: Counter[str]) -> bool:
        """Mask values (one DataRow's, in place) and count what was masked; False when
        no value changed."""
        masker = self.masker
        changed = False
        size = len(values)
        for i, action, key, constant, rule, type_oid, binary, null in self.columns:
            if i >= size:
                break
            value = values[i]
            if value is None:
                if null is not None:  # a derived column's NULL, masked like a value
                    values[i] = null
                    counts[key] += 1
                    changed = True
                continue
            if action == CONSTANT:
                values[i] = constant
                counts[key] += 1
                changed = True
            elif action == RULE:
                assert rule is not None
                values[i] = masked_value(masker, rule, value, type_oid, binary)
                counts[key] += 1
                changed = True
            elif action == DOCUMENT or masker.may_detect(value):
                found = detected_value(masker, value, type_oid, binary)
                if found is not None:
                    values[i], detected = found
                    for detector, n in detected.items():
                        counts[f"detector:{detector}"] += n
                    changed = True
        return changed


def _format(formats: Sequence[int], column: int) -> int:
    """A column's format code from a Bind's (or RowDescription's) list: none → text, one →
    every column, else one per column."""
    if not formats:
        return 0
    if len(formats) == 1:
        return formats[0]
    return formats[column] if column < len(formats) else 0
