"""Mask probe P26 (helper pgattack21) against the real stack (tests/adversary.py: a gateway
whose upstream credential is the `postgres` SUPERUSER), as a reader.

A bytea[] column whose element spells a card (its groups a NUL apart) is NULL to a reader,
and so is a bytea's text cast (`b::text`, `\\x3431…`): the value detectors read a bytea's
hex form as the bytes it spells. A bytea[]'s text cast is text holding an array literal
whose elements are such hex forms, their backslash doubled, and was read as plain text:

    SELECT many::text FROM p26_bytes   -- {"\\x34313131003131313100313131310031313131"}

every byte of the card in hex, unmasked. The detectors now read such a literal's elements
as the bytea[] column's own (proxies/postgres/values.py detected_value: patch
pgattack21-1 for its owner).
"""

from __future__ import annotations

import pytest
from adversary import RawClient, assert_none_of
from pg_probe_stack import arena_fixture, reader_fixture

pytestmark = pytest.mark.integration

CARD_HEX = "34313131003131313100313131310031313131"
arena = arena_fixture(
    setup=(
        "CREATE TABLE public.p26_bytes (id int, many bytea[]);"
        f" INSERT INTO public.p26_bytes VALUES (1, ARRAY['\\x{CARD_HEX}'::bytea]),"
        f" (2, ARRAY[NULL, 'ab'::bytea, '\\x{CARD_HEX}'::bytea]), (3, ARRAY['ab'::bytea])"
    ),
    teardown="DROP TABLE public.p26_bytes",
)
reader = reader_fixture("p26")
SHOWN = (CARD_HEX.encode(), b"31313131003131313131")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT many::text FROM p26_bytes WHERE id IN (1, 2) ORDER BY id",
        "SELECT CAST(many AS varchar) FROM p26_bytes WHERE id IN (1, 2) ORDER BY id",
    ],
)
def test_a_bytea_arrays_text_cast_is_read_as_its_bytes(reader: RawClient, sql: str) -> None:
    answer = reader.query(sql)
    assert not answer.errors, answer.errors
    assert_none_of(answer, SHOWN)
    assert answer.rows == [[None], [None]], answer.rows


def test_one_holding_no_card_is_shown_as_it_is(reader: RawClient) -> None:
    answer = reader.query("SELECT many::text FROM p26_bytes WHERE id = 3")
    assert answer.rows == [[b'{"\\\\x6162"}']], answer.rows
