"""Probe P46 (helper pgattack20) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER), as a reader.

A card number kept in a double precision column (4111111111111111) is shown whole at
extra_float_digits 1, the default (`4.111111111111111e+15`), which the value detectors
read as the card and mask. extra_float_digits was a setting readers could give any value
(postgres.reader_settings: how values are shown), and at 0 or below the server rounds
what it shows:

    SET extra_float_digits = 0; SELECT f FROM p46_nums    -- 4.11111111111111e+15

fifteen of the sixteen digits, which no detector reads as a card, and the card's Luhn
check digit gives the last (the same by set_config and by the start-up packet's
`options=-c extra_float_digits=0`). A reader may now set it only to 1, 2 or 3, where
every digit shows, by SET or at start-up, or RESET it (rego/portcullis/postgres.rego
pg_value_checked_settings); set_config of it, whose value the policy does not read, is
refused.
"""

from __future__ import annotations

import pytest
from adversary import Arena, RawClient, assert_none_of
from pg_probe_stack import arena_fixture, assert_refused, reader_fixture

pytestmark = pytest.mark.integration

arena = arena_fixture(
    setup=(
        "CREATE TABLE public.p46_nums (id int, f float8);"
        " INSERT INTO public.p46_nums VALUES (1, 4111111111111111)"
    ),
    teardown="DROP TABLE public.p46_nums",
)
reader = reader_fixture("p46")
# the card's digits as any extra_float_digits shows them (15, 14, ... significant)
ROUNDED = (b"4111111111111111", b"4.11111111111111", b"4.1111111111111", b"4.111111111111")
READ = "SELECT f FROM p46_nums"


@pytest.mark.parametrize("value", ["0", "-1", "-3", "'0'", "1.5", "'0x1'"])
def test_a_reader_may_not_round_what_a_double_shows(reader: RawClient, value: str) -> None:
    assert_refused(reader, f"SET extra_float_digits = {value}", "denied by policy")
    answer = reader.query(READ)
    assert_none_of(answer, ROUNDED)
    assert answer.rows == [[None]], answer.rows


def test_nor_by_set_config(reader: RawClient) -> None:
    assert_refused(
        reader,
        "SELECT set_config('extra_float_digits', '0', false)",
        "set_config may not change extra_float_digits",
    )
    answer = reader.query(READ)
    assert_none_of(answer, ROUNDED)


def test_nor_at_start_up(arena: Arena) -> None:
    tok = arena.token("p46-start@example.com", ("readonly",))
    c = RawClient(arena.port, tok, arena.database, options="-c extra_float_digits=0")
    try:
        assert not c.ready, c.startup.messages
        assert_none_of(c.startup, ROUNDED)
    finally:
        c.close()


@pytest.mark.parametrize("value", ["1", "2", "3"])
def test_every_digit_shown_is_still_a_readers_to_choose(reader: RawClient, value: str) -> None:
    assert reader.query(f"SET extra_float_digits = {value}").tags == ["SET"]
    answer = reader.query(READ)
    assert_none_of(answer, ROUNDED)
    assert answer.rows == [[None]], answer.rows
    assert reader.query("RESET extra_float_digits").tags == ["RESET"]


def test_a_jdbc_style_start_up_is_accepted(arena: Arena) -> None:
    tok = arena.token("p46-jdbc@example.com", ("readonly",))
    c = RawClient(arena.port, tok, arena.database, extra_float_digits="3")
    try:
        assert c.ready, c.startup.messages
        assert_none_of(c.query(READ), ROUNDED)
    finally:
        c.close()
