"""Mask probe P23 (helper pgattack16) against the real stack (tests/adversary.py: a gateway
whose upstream credential is the `postgres` SUPERUSER), as a reader.

A card number kept alone in a free-text column is masked by the value detectors when
selected (`************1111`), and a question about the column's text is refused. But a
cast of the column's whole value to a number was read as a value taken out of a document
by a key (`(doc->>'n')::int`, which a document never is), so it was questioned freely:

    SELECT id FROM (SELECT id, info FROM p23_cards WHERE id = 1 OFFSET 0) s
     WHERE info::numeric > 4111111111111110          -- one row: the card is above

binary-searched the card in some fifty statements; `info::text::bigint % 10 = 1`,
`num::text::numeric` of a card kept in a bigint column,
`(info::jsonb #>> '{}')::numeric` (the empty path is the whole document) and
`(info::jsonb ->> 0)::numeric` (a position, no key) the same. Only a value a key was taken
out for now counts so (pdp/sql/lineage.py `_taken_out`); the column's whole value cast to
a number is a computation that can fail on its text, refused as `info::date` already was.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from adversary import Arena, RawClient, assert_no_secret
from pg_probe_stack import arena_fixture, assert_refused, probe_client

pytestmark = pytest.mark.integration

arena = arena_fixture()
client = probe_client("p23", ("readonly",))
CARD = b"4111111111111111"
BECAUSE = "goes into a computation that can fail"


@pytest.fixture(scope="module")
def cards(arena: Arena) -> Iterator[None]:
    with arena.admin() as admin:
        admin.execute(
            "CREATE TABLE public.p23_cards (id int, info text, doc jsonb, num bigint);"
            " INSERT INTO public.p23_cards VALUES"
            " (1, '4111111111111111', '{\"n\": 5}', 4111111111111111),"
            " (2, '4111111111111111', '{\"n\": 7}', 4111111111111111)"
        )
    yield
    with arena.admin() as admin:
        admin.execute("DROP TABLE public.p23_cards")


@pytest.fixture
def reader(arena: Arena, cards: None) -> Iterator[RawClient]:
    c = client(arena)
    yield c
    c.close()


WHERE = "SELECT id FROM p23_cards WHERE "
SEARCHES = {
    "numeric": "info::numeric > 4111111111111110",
    "bigint_modulo": "info::bigint % 10 = 1",
    "through_text": "info::text::int8 BETWEEN 4000000000000000 AND 4200000000000000",
    "varchar": "CAST(info AS varchar)::float8 < 4.2e15",
    "empty_path": "(info::jsonb #>> '{}')::numeric > 4111111111111110",
    "position": "(info::jsonb ->> 0)::numeric > 1",
    "boolean": "info::bool",
    "uuid": "info::uuid IS NULL",
    "ordered": "true ORDER BY info::numeric",
    # a card kept in a bigint, made text and read back as a number
    "wide_number": "num::text::numeric > 4111111111111110",
}


def test_the_card_is_masked_when_selected(reader: RawClient) -> None:
    answer = reader.query("SELECT id, info FROM p23_cards WHERE id = 1")
    assert not answer.errors, answer.errors
    assert_no_secret(answer, CARD)
    assert answer.rows and answer.rows[0][1] != CARD


@pytest.mark.parametrize("condition", list(SEARCHES.values()), ids=list(SEARCHES))
def test_a_free_text_columns_whole_value_cast_to_a_number_is_not_questioned(
    reader: RawClient, condition: str
) -> None:
    answer = assert_refused(reader, WHERE + condition, BECAUSE)
    assert_no_secret(answer, CARD)


def test_a_number_taken_out_of_a_document_by_a_key_is_still_compared(reader: RawClient) -> None:
    answer = reader.query("SELECT id FROM p23_cards WHERE (doc->>'n')::int > 6 ORDER BY id")
    assert not answer.errors, answer.errors
    assert answer.rows == [[b"2"]]
