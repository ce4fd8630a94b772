"""Mask probe P25 (helper pgattack20) against the real stack (tests/adversary.py: a gateway
whose upstream credential is the `postgres` SUPERUSER), as a reader.

The masks read a name by its words and a field's other names (portcullis.masking
name_words, FIELD_ALIASES): a column `"userPw"`, `tel` or `mobile_no`, and a document's
key `userPw`, `tel`, `customerSsn` or `contraseña`, are masked whole when selected as
password, phone or ssn. The policy knew a name as sensitive only when it was a sensitive
column's own name (lineage naming keys in lower case, `customerSsn` as customerssn, and
postgres_lineage.rego's pg_masked_key catching other names only for a predicate's key of
five letters or more), so what was computed from such a name, or taken out under it, came
back raw:

    SELECT doc->>'userPw', doc->>'tel', doc->>'customerSsn' FROM p25_docs  -- raw
    SELECT coalesce("userPw", ''), (SELECT tel FROM p25_cols) FROM p25_cols -- raw
    SELECT id FROM p25_docs WHERE (doc->>'customerSsn')::int > 78051119     -- an oracle

Lineage now names, beside such a name, the field the masks read it as (pdp/sql/lineage.py
`_named`), so the policy masks and questions it as that field's column.
"""

from __future__ import annotations

import pytest
from adversary import RawClient, assert_no_secret
from pg_probe_stack import (
    arena_fixture,
    assert_answered,
    assert_refused,
    reader_fixture,
)

pytestmark = pytest.mark.integration

DOC = (
    '{"customerSsn": "078051120", "userPw": "hunter2-doc", "tel": "2125550190",'
    ' "contraseña": "hunter2-es", "cardNumbers": "4111111111111111", "name": "Ada"}'
)
arena = arena_fixture(
    setup=(
        "CREATE TABLE public.p25_docs (id int, doc jsonb);"
        f" INSERT INTO public.p25_docs VALUES (1, '{DOC}');"
        ' CREATE TABLE public.p25_cols (id int, "userPw" text, tel text, mobile_no text);'
        " INSERT INTO public.p25_cols VALUES (1, 'hunter2-col', '2125550190', '2125550191')"
    ),
    teardown="DROP TABLE public.p25_docs, public.p25_cols",
)
reader = reader_fixture("p25")
RAW = (
    b"078051120", b"hunter2-doc", b"2125550190", b"hunter2-es", b"4111111111111111",
    b"hunter2-col", b"2125550191", b"5550190",
)  # fmt: skip


@pytest.mark.parametrize(
    "taken",
    [
        "doc->>'userPw'",
        "doc->>'tel'",
        "doc->>'customerSsn'",
        "doc->>'contraseña'",
        "doc->>'cardNumbers'",
        "doc->'userPw'",
        "doc #>> '{tel}'",
        "doc->'customerSsn'",
        "doc['userPw']",
        "coalesce(doc->>'tel', '')",
    ],
)
def test_a_value_taken_out_under_a_key_the_masks_hide_stays_hidden(
    reader: RawClient, taken: str
) -> None:
    answer = reader.query(f"SELECT {taken} FROM p25_docs")
    assert_no_secret(answer, *RAW)
    assert not answer.errors, answer.errors
    # masked whole: text redacted, a jsonb value (no text of its type stands for it) NULL
    assert answer.rows in ([[b"[REDACTED]"]], [[None]]), answer.rows


def test_a_key_of_no_field_still_answers(reader: RawClient) -> None:
    assert_answered(reader, "SELECT doc->>'name' FROM p25_docs", [[b"Ada"]])


@pytest.mark.parametrize(
    "condition",
    [
        "(doc->>'customerSsn')::int > 78051119",
        "(doc->>'tel')::int > 2125550180",
        "doc->>'userPw' LIKE 'hunter2%'",
        "(doc->>'userPw') > 'hunter2-c'",
    ],
)
def test_a_key_the_masks_hide_is_not_questioned(reader: RawClient, condition: str) -> None:
    assert_refused(reader, f"SELECT id FROM p25_docs WHERE {condition}", "denied by policy")


@pytest.mark.parametrize(
    "computed",
    [
        "coalesce(\"userPw\", '')",
        "coalesce(tel, '')",
        "(SELECT tel FROM p25_cols LIMIT 1)",
        'mobile_no COLLATE "C"',
    ],
)
def test_a_value_computed_from_a_column_the_masks_hide_stays_hidden(
    reader: RawClient, computed: str
) -> None:
    answer = reader.query(f"SELECT {computed} FROM p25_cols")
    assert_no_secret(answer, *RAW)
    assert not answer.errors, answer.errors
    assert answer.rows == [[b"[REDACTED]"]], answer.rows


def test_a_column_the_masks_hide_is_not_questioned(reader: RawClient) -> None:
    assert_refused(reader, "SELECT id FROM p25_cols WHERE tel > '2125550180'", "denied by policy")
    assert_refused(
        reader, "SELECT id FROM p25_cols WHERE \"userPw\" LIKE 'hunter2%'", "denied by policy"
    )
