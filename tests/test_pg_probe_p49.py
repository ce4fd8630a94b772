"""Probe P49 (helper pgattack21) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER), as a reader and as a masked dba.

The settings that write values the value detectors read (P46, P47) bound what a session
may SET, but a session started with what the database, the role or the server is
configured with, and RESET ALL returned there. A database configured as older servers
and applications often are:

    ALTER DATABASE db SET bytea_output = escape;  ALTER DATABASE db SET extra_float_digits = 0
    SELECT b::text FROM p49_kept   -- 4111\\0001111\\0001111\\0001111
    SELECT f FROM p49_kept         -- 4.11111111111111e+15

showed a card kept as bytes or as a double to every masked session, unmasked. The proxy
now starts every session with bytea_output hex and extra_float_digits 1 unless the client
asks for another value the policy allows (proxies/postgres/startup.py WRITING_DEFAULTS),
so RESET ALL returns there too.
"""

from __future__ import annotations

import pytest
from adversary import Arena, RawClient, assert_none_of
from pg_probe_stack import arena_fixture, probe_client

pytestmark = pytest.mark.integration

arena = arena_fixture(
    setup=(
        "CREATE TABLE public.p49_kept (id int, f float8, b bytea);"
        " INSERT INTO public.p49_kept VALUES"
        " (1, 4111111111111111, '\\x34313131003131313100313131310031313131');"
        " DO $$ BEGIN"
        "   EXECUTE format('ALTER DATABASE %I SET bytea_output = escape', current_database());"
        "   EXECUTE format('ALTER DATABASE %I SET extra_float_digits = 0', current_database());"
        " END $$"
    ),
    teardown="DROP TABLE public.p49_kept",
)
client = probe_client("p49")
SHOWN = (b"4.11111111111111e+15", b"4111\\0001111", b"4111111111111111")
READ = "SELECT f, b, b::text, CAST(b AS varchar) FROM p49_kept"


def _assert_masked(c: RawClient) -> None:
    answer = c.query(READ)
    assert not answer.errors, answer.errors
    assert answer.rows and answer.rows[0][0] is None, answer.rows
    assert_none_of(answer, SHOWN)


@pytest.mark.parametrize("groups", [("readonly",), ("dba",)])
def test_a_masked_session_writes_values_as_the_detectors_read_them(
    arena: Arena, groups: tuple[str, ...]
) -> None:
    c = client(arena, groups)
    try:
        assert c.show("bytea_output") == "hex"
        assert c.show("extra_float_digits") == "1"
        _assert_masked(c)
        assert c.query("RESET ALL").tags == ["RESET"]
        _assert_masked(c)
        assert c.query("DISCARD ALL").tags == ["DISCARD ALL"]
        _assert_masked(c)
    finally:
        c.close()


def test_a_clients_own_allowed_value_still_goes(arena: Arena) -> None:
    tok = arena.token("p49-jdbc@example.com", ("readonly",))
    c = RawClient(arena.port, tok, arena.database, extra_float_digits="3")
    try:
        assert c.ready, c.startup.messages
        assert c.show("extra_float_digits") == "3"
        _assert_masked(c)
    finally:
        c.close()


def test_a_pii_reader_may_still_choose_escape(arena: Arena) -> None:
    c = client(arena, ("dba", "pii-readers"))
    try:
        assert c.query("SET bytea_output = escape").tags == ["SET"]
        answer = c.query("SELECT b::text FROM p49_kept")
        assert answer.rows == [[b"4111\\0001111\\0001111\\0001111"]], answer.rows
    finally:
        c.close()
