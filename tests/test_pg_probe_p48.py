"""Probe P48 (helper pgattack21) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER), as a reader.

money keeps a count of the smallest units of the currency the database writes (its
lc_monetary): in a database writing yen (ja_JP.UTF-8, no fraction digits) a card number
kept as money is 4111111111111111 units, `￥4,111,111,111,111,111` as m::text, which the
value detectors read and mask. The server takes the count of fraction digits from the
session's lc_monetary when it writes the value, so a reader choosing the C writing (two
fraction digits, which P47 still allowed) shifted the point:

    SET lc_monetary = 'C'; SELECT m::text FROM p48_yen   -- $41,111,111,111,111.11

the card's sixteen digits cut where no card is, unmasked. No locale is safe without
knowing the one the values were stored under: readers now only RESET lc_monetary, to the
database's own (rego/portcullis/postgres.rego).

The database writes yen where this server has the locale (`localedef -i ja_JP -f UTF-8
ja_JP.UTF-8`); elsewhere it keeps C's and the refusals are the same.
"""

from __future__ import annotations

import pytest
from adversary import Arena, RawClient, assert_none_of
from pg_probe_stack import arena_fixture, assert_refused, reader_fixture

pytestmark = pytest.mark.integration

arena = arena_fixture(
    setup=(
        "CREATE TABLE public.p48_yen (id int, m money);"
        " DO $$ BEGIN"
        "   EXECUTE format('ALTER DATABASE %I SET lc_monetary = %L', current_database(),"
        "                  'ja_JP.UTF-8');"
        "   PERFORM set_config('lc_monetary', 'ja_JP.UTF-8', true);"
        " EXCEPTION WHEN invalid_parameter_value THEN NULL;"
        " END $$;"
        " INSERT INTO public.p48_yen VALUES (1, 4111111111111111::numeric::money)"
    ),
    teardown="DROP TABLE public.p48_yen",
)
reader = reader_fixture("p48")
# the card's digits as any count of fraction digits cuts them
SHOWN = (b"4111111111111111", b"41,111,111", b"411,111,111", b"111.11", b"4,111,111")
READ = "SELECT m, m::text, CAST(m AS varchar) FROM p48_yen"


def _assert_masked(c: RawClient) -> None:
    answer = c.query(READ)
    assert not answer.errors, answer.errors
    assert answer.rows and answer.rows[0][0] is None, answer.rows
    assert_none_of(answer, SHOWN)


@pytest.mark.parametrize("locale", ["C", "C.UTF-8", "POSIX", "en_US.UTF-8", "ar_BH.UTF-8"])
def test_a_reader_may_not_shift_the_point_of_money(reader: RawClient, locale: str) -> None:
    _assert_masked(reader)
    assert_refused(reader, f"SET lc_monetary = '{locale}'", "denied by policy")
    _assert_masked(reader)


def test_nor_at_start_up(arena: Arena) -> None:
    tok = arena.token("p48-start@example.com", ("readonly",))
    c = RawClient(arena.port, tok, arena.database, options="-c lc_monetary=C")
    try:
        assert not c.ready, c.startup.messages
    finally:
        c.close()


def test_reset_returns_to_the_databases_own(reader: RawClient) -> None:
    assert reader.query("RESET lc_monetary").tags == ["RESET"]
    assert reader.query("SET lc_monetary TO DEFAULT").tags == ["SET"]
    _assert_masked(reader)
