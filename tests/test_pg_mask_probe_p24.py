"""Mask probe P24 (helper pgattack17) against the real stack (tests/adversary.py: a gateway
whose upstream credential is the `postgres` SUPERUSER), as a reader.

A card number kept under a document's key, `{"card": "4111111111111111"}` in a jsonb column,
is masked by the value detectors when the document is selected (`************1111`). But a
value taken out of a document by a named key and cast to a number was "keyed" (lineage:
no document reads as a number, so the cast answers nothing about masked keys), and so
questioned freely:

    SELECT id FROM p24_docs WHERE (doc->>'card')::numeric > 4111111111111110

binary-searched the card in some fifty statements; `::bigint`, `::float8`, `::text::numeric`,
`(doc->'card')::numeric`, `doc['card']`, `#>>` paths, json and hstore the same, and ORDER BY
or GROUP BY of it. A key's value cast to a number type that holds a card or phone number's
digits is now questioned as a wide number column is (pdp/sql/lineage.py `Flow.wide`,
rego/portcullis/postgres_lineage.rego), unless postgres.plain_number_columns lists the
key; `(doc->>'n')::int > 6` still answers.

And a key the masks hide whole by its name (`tel`, `social_security`: another name of phone
or ssn, data.portcullis.field_aliases) was met keyed like any other, so `(doc->>'tel')::int
> 2125550190` searched a phone number that fits an int4, and `::date` a social security
number written without dashes ('078051120' is 7805-11-20): such keys are now questioned as
a sensitive column is (postgres_lineage.rego `pg_masked_key`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from adversary import Arena, RawClient, assert_no_secret
from pg_probe_stack import arena_fixture, assert_answered, assert_refused, probe_client

pytestmark = pytest.mark.integration

arena = arena_fixture()
client = probe_client("p24", ("readonly",))
CARD = b"4111111111111111"


@pytest.fixture(scope="module")
def docs(arena: Arena) -> Iterator[None]:
    with arena.admin() as admin:
        admin.execute(
            "CREATE EXTENSION IF NOT EXISTS hstore;"
            " CREATE TABLE public.p24_docs (id int, doc jsonb, js json, h hstore, x xml);"
            " INSERT INTO public.p24_docs VALUES"
            ' (1, \'{"card": "4111111111111111", "n": 5, "amount": 12,'
            ' "reach": "+14155550123", "tel": "2125550199", "at": "2024-05-01",'
            ' "social_security": "078051120", "customerPhone": "2125550188",'
            ' "pay": {"card": 4111111111111111}}\','
            " '{\"card\": \"4111111111111111\"}', 'card=>4111111111111111',"
            " '<r><card>4111111111111111</card></r>'),"
            ' (2, \'{"card": "5500000000000004", "n": 7, "amount": 30,'
            ' "reach": "+12125550199", "at": "2024-06-01",'
            ' "pay": {"card": 5500000000000004}}\','
            " '{\"card\": \"5500000000000004\"}', 'card=>5500000000000004',"
            " '<r><card>5500000000000004</card></r>')"
        )
    yield
    with arena.admin() as admin:
        admin.execute("DROP TABLE public.p24_docs")


@pytest.fixture
def reader(arena: Arena, docs: None) -> Iterator[RawClient]:
    c = client(arena)
    yield c
    c.close()


def assert_not_answered(reader: RawClient, sql: str) -> None:
    """`sql` refused (an error), the card nowhere in the answer."""
    answer = reader.query(sql)
    assert_no_secret(answer, CARD)
    assert answer.errors, (sql, answer.rows)
    assert not answer.rows, answer.rows


def test_the_card_is_masked_when_the_document_is_selected(reader: RawClient) -> None:
    answer = reader.query("SELECT id, doc FROM p24_docs WHERE id = 1")
    assert not answer.errors, answer.errors
    assert_no_secret(answer, CARD)
    assert answer.rows and b"1111" in (answer.rows[0][1] or b"")


WHERE = "SELECT id FROM p24_docs WHERE "
# each answered before: one row, the card above the constant
SEARCHES = {
    "numeric": "(doc->>'card')::numeric > 4111111111111110",
    "bigint": "(doc->>'card')::bigint > 4111111111111110",
    "int8_modulo": "(doc->>'card')::int8 % 10 = 1",
    "float8": "(doc->>'card')::float8 < 4.2e15",
    "double_precision": "CAST(doc->>'card' AS double precision) < 4.2e15",
    "real": "(doc->>'card')::real < 4.2e15",
    "decimal": "(doc->>'card')::decimal BETWEEN 4000000000000000 AND 4200000000000000",
    "interval": "(doc->>'reach')::interval > interval '3932097 hours'",
    "through_text": "(doc->>'card')::text::numeric > 4111111111111110",
    "jsonb_number": "(doc->'pay'->'card')::numeric > 4111111111111110",
    "path": "(doc #>> '{pay,card}')::numeric > 4111111111111110",
    "path_array": "(doc #>> ARRAY['pay','card'])::numeric > 4111111111111110",
    "subscript": "doc['pay']['card']::numeric > 4111111111111110",
    "json": "(js->>'card')::numeric > 4111111111111110",
    "hstore": "(h->'card')::numeric > 4111111111111110",
    "pg_catalog": "(doc->>'card')::pg_catalog.numeric > 4111111111111110",
    "greatest": "greatest((doc->>'card')::numeric, 0) > 4111111111111110",
    "in_subquery": "id IN (SELECT id FROM p24_docs WHERE (doc->>'card')::numeric > 4e15)",
    "exists_offset": "EXISTS (SELECT 1 FROM (SELECT (doc->>'card')::numeric c OFFSET 0) s"
    " WHERE c > 4111111111111110)",
}


@pytest.mark.parametrize("condition", list(SEARCHES.values()), ids=list(SEARCHES))
def test_a_keys_value_read_as_a_wide_number_is_not_questioned(
    reader: RawClient, condition: str
) -> None:
    answer = assert_refused(reader, WHERE + condition, "of a document, read as a type that holds")
    assert_no_secret(answer, CARD)


# refused before this probe too: the document met whole, or text computed upon
OTHER_SEARCHES = {
    "extract_path": "jsonb_extract_path_text(doc, 'card')::numeric > 4111111111111110",
    "jsonpath_match": "doc @@ '$.card > 4111111111111110'",
    "jsonpath_exists": "jsonb_path_exists(doc, '$.pay.card ? (@ > 4111111111111110)')",
    "jsonpath_query": "jsonb_path_query_first(doc, '$.pay.card')::numeric > 4111111111111110",
    "text_range": "doc->>'card' > '4111'",
    "substr": "substr(doc->>'card', 1, 4) = '4111'",
    "split_part": "split_part(doc->>'card', '1', 2) > ''",
    "to_number": "to_number(doc->>'card', '9999999999999999') > 4111111111111110",
    "money": "(doc->>'card')::money > 1::money",
    "xpath": "(xpath('/r/card/text()', x))[1]::text::numeric > 4111111111111110",
}


@pytest.mark.parametrize("condition", list(OTHER_SEARCHES.values()), ids=list(OTHER_SEARCHES))
def test_the_keys_text_and_jsonpath_comparisons_stay_refused(
    reader: RawClient, condition: str
) -> None:
    assert_not_answered(reader, WHERE + condition)


ORDERINGS = {
    "order_by": "SELECT id FROM p24_docs ORDER BY (doc->>'card')::numeric",
    "group_by": "SELECT min(id), count(*) FROM p24_docs GROUP BY (doc->>'card')::numeric,"
    " B'1'::varbit",
    "distinct_on": "SELECT DISTINCT ON ((doc->>'card')::numeric) id FROM p24_docs",
    "window": "SELECT id, rank() OVER (ORDER BY (doc->>'card')::bigint) FROM p24_docs",
    "join": "SELECT a.id FROM p24_docs a JOIN (VALUES (4111111111111111::numeric)) v(n)"
    " ON (a.doc->>'card')::numeric > v.n - 1",
    "failing_division": "SELECT 1 / ((doc->>'card')::numeric - 4111111111111110) FROM p24_docs",
}


@pytest.mark.parametrize("sql", list(ORDERINGS.values()), ids=list(ORDERINGS))
def test_a_keys_value_read_as_a_wide_number_is_not_ordered_grouped_or_computed_upon(
    reader: RawClient, sql: str
) -> None:
    answer = assert_refused(reader, sql, "key card")
    assert_no_secret(answer, CARD)


def test_a_keys_value_cast_alone_comes_back_masked(reader: RawClient) -> None:
    answer = reader.query("SELECT (doc->>'card')::numeric FROM p24_docs WHERE id = 1")
    assert_no_secret(answer, CARD)


# a reader's own questions about small numbers under keys, and about keys the team lists
ANSWERED = [
    ("SELECT id FROM p24_docs WHERE (doc->>'n')::int > 6 ORDER BY id", [[b"2"]]),
    ("SELECT id FROM p24_docs ORDER BY (doc->>'n')::int DESC", [[b"2"], [b"1"]]),
    ("SELECT id FROM p24_docs WHERE (doc->>'n')::smallint = 5", [[b"1"]]),
    ("SELECT id FROM p24_docs WHERE (doc->>'amount')::numeric > 20", [[b"2"]]),
    ("SELECT id FROM p24_docs ORDER BY (doc->>'amount')::bigint DESC", [[b"2"], [b"1"]]),
    ("SELECT count(*) FROM p24_docs WHERE (doc->>'card') IS NOT NULL", [[b"2"]]),
    ("SELECT id FROM p24_docs WHERE (doc->>'at')::date > '2024-05-15'", [[b"2"]]),
    ("SELECT id FROM p24_docs ORDER BY (doc->>'at')::timestamptz DESC", [[b"2"], [b"1"]]),
]


@pytest.mark.parametrize("sql,rows", ANSWERED, ids=[str(i) for i in range(len(ANSWERED))])
def test_small_numbers_and_listed_keys_are_still_compared(
    reader: RawClient, sql: str, rows: list[list[bytes | None]]
) -> None:
    assert_answered(reader, sql, rows)


# keys the masks hide whole by their name (another name of phone or ssn), met keyed: the
# policy listed no column so named, so a cast to int or date was compared freely
ALIASED = {
    "tel_int": "(doc->>'tel')::int > 2125550190",
    "tel_bigint": "(doc->>'tel')::bigint > 2125550190",
    "ssn_date": "(doc->>'social_security')::date > '7805-01-01'",
    "ssn_int": "(doc->>'social_security')::int BETWEEN 78000000 AND 79000000",
    "ssn_order": "true ORDER BY (doc->>'social_security')::int",
    "camel_case": "(doc->>'customerPhone')::int > 2125550180",
}


def test_the_aliased_keys_are_masked_when_selected(reader: RawClient) -> None:
    answer = reader.query("SELECT doc FROM p24_docs WHERE id = 1")
    assert not answer.errors, answer.errors
    text = answer.rows[0][0] or b""
    for value in (b"2125550199", b"078051120", b"2125550188"):
        assert value not in text, text


@pytest.mark.parametrize("condition", list(ALIASED.values()), ids=list(ALIASED))
def test_a_key_masked_by_its_name_is_not_questioned_keyed(
    reader: RawClient, condition: str
) -> None:
    answer = assert_refused(reader, WHERE + condition, "which the masks hide whole")
    assert b"2125550199" not in repr(answer.messages).encode()
