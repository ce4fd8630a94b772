"""Probe P47 (helper pgattack21) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER), as a reader.

A card number kept in a money column (4111111111111111, stored as 411111111111111100
cents) reads `$4,111,111,111,111,111.00` as m::text at lc_monetary C, which the value
detectors read as the card and mask. lc_monetary was a setting readers could give any
value (postgres.reader_settings: how values are shown), and the server takes the count
of fraction digits from the locale when it writes the value, not when it stored it:

    SET lc_monetary = 'ar_BH.UTF-8'; SELECT m::text FROM p47_money
        -- د.ب. 411,111,111,111,111.100

the card's sixteen digits then two zeros, grouped where no card is, unmasked (the same
by set_config and by the start-up packet's `options=-c lc_monetary=...`; fr_FR's U+202F
and de_CH's U+2019 separators, read today, are the same choice). lc_numeric is to_char's
separator and decimal point alike. A reader may now only RESET lc_monetary (P48: even C
shifts the point where the database writes yen), and set lc_numeric only to a locale
writing groups of three joined by "," (C, POSIX, C.UTF-8, en_US.UTF-8), by SET or at
start-up (rego/portcullis/postgres.rego pg_reader_locales); set_config of them, whose
value the policy does not read, is refused.

bytea_output is the same choice: `escape` writes a byte outside printable ASCII as three
octal digits, so b::text of bytes holding a card's groups a NUL apart read
`4111\\0001111\\000...`, digits glued to the card's; readers now write bytea in hex only.
And a dba outside pii-readers, masked as a reader is, chose any value of all four
(extra_float_digits too): the values that write what the detectors read bind everyone
not in pii-readers.

The refusals do not need the locale on the server (the proxy refuses before it is asked);
the hole showed where it is (`localedef -i ar_BH -f UTF-8 ar_BH.UTF-8`).
"""

from __future__ import annotations

import pytest
from adversary import Arena, RawClient, assert_none_of
from pg_probe_stack import arena_fixture, assert_refused, probe_client, reader_fixture

pytestmark = pytest.mark.integration

arena = arena_fixture(
    setup=(
        "CREATE TABLE public.p47_money (id int, m money);"
        " INSERT INTO public.p47_money VALUES (1, 4111111111111111);"
        "CREATE TABLE public.p47_kept (b bytea, x xml, f float8);"
        " INSERT INTO public.p47_kept VALUES (convert_to('4111111111111111', 'UTF8'),"
        " '<n>4111111111111111</n>', 4111111111111111);"
        # the card's groups a NUL apart, as bytes: `4111\0001111\000...` in escape form
        "CREATE TABLE public.p47_bytes (b bytea, many bytea[]);"
        " INSERT INTO public.p47_bytes VALUES ('\\x34313131003131313100313131310031313131',"
        " ARRAY['\\x34313131003131313100313131310031313131'::bytea])"
    ),
    teardown="DROP TABLE public.p47_money, public.p47_kept, public.p47_bytes",
)
client = probe_client("p47", ("readonly",))
reader = reader_fixture("p47")
# the card's digits under any grouping a locale writes (1, 2, 3 or 4 digits a group)
SHOWN = (b"4111111111111111", b"411,111,111", b"41,11,11", b"4111,1111", b"111.100")
READS = ("SELECT m FROM p47_money", "SELECT m::text FROM p47_money")
# locales writing money otherwise than C: three fraction digits, none, other separators
OTHER_LOCALES = ("ar_BH.UTF-8", "ja_JP.UTF-8", "en_IN.UTF-8", "fr_FR.UTF-8", "de_CH.UTF-8", "")


def _assert_masked(c: RawClient) -> None:
    for sql in READS:
        answer = c.query(sql)
        assert not answer.errors, answer.errors
        assert_none_of(answer, SHOWN)


@pytest.mark.parametrize("setting", ["lc_monetary", "lc_numeric"])
@pytest.mark.parametrize("locale", OTHER_LOCALES)
def test_a_reader_may_not_choose_how_money_is_written(
    reader: RawClient, setting: str, locale: str
) -> None:
    assert_refused(reader, f"SET {setting} = '{locale}'", "denied by policy")
    assert_refused(reader, f"SET LOCAL {setting} TO '{locale}'", "denied by policy")
    _assert_masked(reader)


@pytest.mark.parametrize("setting", ["lc_monetary", "lc_numeric"])
def test_nor_by_set_config(reader: RawClient, setting: str) -> None:
    assert_refused(
        reader,
        f"SELECT set_config('{setting}', 'ar_BH.UTF-8', false)",
        f"set_config may not change {setting}",
    )
    _assert_masked(reader)


START_UPS = ("-c lc_monetary=ar_BH.UTF-8", "--lc_monetary=ar_BH.UTF-8", "-clc_numeric=fr_FR.UTF-8")


@pytest.mark.parametrize("options", START_UPS)
def test_nor_at_start_up(arena: Arena, options: str) -> None:
    tok = arena.token("p47-start@example.com", ("readonly",))
    c = RawClient(arena.port, tok, arena.database, options=options)
    try:
        assert not c.ready, c.startup.messages
        assert_none_of(c.startup, SHOWN)
    finally:
        c.close()


@pytest.mark.parametrize("locale", ["C", "POSIX", "C.UTF-8"])
def test_the_c_writing_of_numbers_is_still_a_readers_to_choose(
    reader: RawClient, locale: str
) -> None:
    assert reader.query(f"SET lc_numeric = '{locale}'").tags == ["SET"]
    _assert_masked(reader)
    assert reader.query("RESET lc_numeric").tags == ["RESET"]
    assert reader.query("RESET lc_monetary").tags == ["RESET"]
    assert reader.query("SET lc_time = 'C'").tags == ["SET"]


def test_nor_as_a_start_up_parameter(arena: Arena) -> None:
    tok = arena.token("p47-param@example.com", ("readonly",))
    c = RawClient(arena.port, tok, arena.database, lc_monetary="ar_BH.UTF-8")
    try:
        assert not c.ready, c.startup.messages
        assert_none_of(c.startup, SHOWN)
    finally:
        c.close()


# The other settings readers give any value write dates, times and intervals (DateStyle,
# IntervalStyle, TimeZone, lc_time) or read XML (xmloption): none writes the digits of a
# card kept as text, bytes, XML, a number or money otherwise (nor bytea_output's hex, nor
# extra_float_digits' 1-3).
OTHER_SETTINGS = (
    "bytea_output = 'hex'",
    "DateStyle = 'SQL, DMY'",
    "IntervalStyle = 'sql_standard'",
    "TimeZone = 'Asia/Kathmandu'",
    "lc_time = 'C'",
    "xmloption = 'document'",
    "extra_float_digits = 3",
)


@pytest.mark.parametrize("setting", OTHER_SETTINGS)
def test_the_settings_readers_choose_leave_a_kept_card_masked(
    reader: RawClient, setting: str
) -> None:
    assert reader.query(f"SET {setting}").tags == ["SET"]
    _assert_masked(reader)
    answer = reader.query("SELECT b, b::text, x, x::text, f, f::text FROM p47_kept")
    assert not answer.errors, answer.errors
    assert_none_of(answer, (*SHOWN, b"34313131", b"4.111111111111111e+15"))


def test_an_allowed_locale_answers_for_no_other(reader: RawClient) -> None:
    """The verdict on SET lc_numeric = 'C' is not reused for another value (a SET's
    verdict is never cached: its value is what the policy reads)."""
    for _ in range(2):
        assert reader.query("SET lc_numeric = 'C'").tags == ["SET"]
    assert_refused(reader, "SET lc_numeric = 'fr_FR.UTF-8'", "denied by policy")
    _assert_masked(reader)


# bytea_output 'escape' writes a byte outside printable ASCII as `\ooo`: the card's groups
# a NUL apart read `4111\0001111\000...` as b::text or b::varchar, the octal digits glued
# to the card's (the bytea[] column itself doubles the backslash), which no detector reads
ESCAPED = (b"4111\\0001111", b"4111\\\\0001111", b"1111\\0001111")
BYTES_READS = (
    "SELECT b::text FROM p47_bytes",
    "SELECT b::varchar FROM p47_bytes",
    "SELECT many FROM p47_bytes",
    "SELECT b, many FROM p47_bytes",
)


@pytest.mark.parametrize("sql", BYTES_READS)
def test_a_reader_may_not_write_bytes_as_octal_escapes(reader: RawClient, sql: str) -> None:
    assert_refused(reader, "SET bytea_output = 'escape'", "denied by policy")
    assert_refused(reader, "SET bytea_output TO escape", "denied by policy")
    assert_refused(
        reader,
        "SELECT set_config('bytea_output', 'escape', false)",
        "set_config may not change bytea_output",
    )
    answer = reader.query(sql)
    assert not answer.errors, answer.errors
    assert_none_of(answer, (*ESCAPED, b"34313131003131313100"))


def test_nor_bytes_as_octal_escapes_from_the_start(arena: Arena) -> None:
    tok = arena.token("p47-bytes@example.com", ("readonly",))
    c = RawClient(arena.port, tok, arena.database, options="-c bytea_output=escape")
    try:
        assert not c.ready, c.startup.messages
    finally:
        c.close()


# A dba outside pii-readers is masked as a reader is, and chose any value of these: SET
# extra_float_digits = 0, lc_monetary = 'ar_BH.UTF-8' or bytea_output = escape, and a
# double, money or bytes holding a card came back unmasked.
DBA_SETS = (
    ("extra_float_digits = 0", "SELECT f FROM p47_kept", b"4.11111111111111e+15"),
    ("lc_monetary = 'ar_BH.UTF-8'", "SELECT m::text FROM p47_money", b"411,111,111"),
    ("bytea_output = 'escape'", "SELECT b::text FROM p47_bytes", b"4111\\0001111"),
)


@pytest.mark.parametrize(("setting", "sql", "shown"), DBA_SETS)
def test_a_masked_dba_may_not_choose_them_either(
    arena: Arena, setting: str, sql: str, shown: bytes
) -> None:
    c = client(arena, ("dba",))
    try:
        assert_refused(c, f"SET {setting}", "denied to everyone not in pii-readers")
        name = setting.split(" ")[0]
        assert_refused(
            c, f"SELECT set_config('{name}', 'x', false)", "denied to everyone not in pii-readers"
        )
        answer = c.query(sql)
        assert not answer.errors, answer.errors
        assert_none_of(answer, (shown, *SHOWN))
    finally:
        c.close()
    tok = arena.token("p47-dba-start@example.com", ("dba",))
    started = RawClient(arena.port, tok, arena.database, options=f"-c {setting.replace(' ', '')}")
    try:
        assert not started.ready, started.startup.messages
    finally:
        started.close()
