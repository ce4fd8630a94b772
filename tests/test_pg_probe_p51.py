"""Probe P51 (helper pgattack22) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER), as a masked dba.

P46-P49 denied everyone outside pii-readers SET of the settings that choose how values
are written (bytea_output, extra_float_digits, lc_monetary, lc_numeric), and started every
session with bytea_output hex and extra_float_digits 1. Storing one for the sessions that
start later only needed an approval:

    ALTER DATABASE db SET lc_monetary = 'ar_BH.UTF-8'   -- approval required (a chore)

once approved, every reader's session wrote a card kept as money with three fraction
digits (`411,111,111,111,111.100`), and behind a transaction pooler, where no start-up
packet carries the proxy's own bytea_output and extra_float_digits, every one wrote bytes
and doubles as no detector reads them. Storing such a setting is now what SET of it is
outside pii-readers: denied, not an approver's to allow; removing a stored value, and
storing any other setting, still asks one. (Readers were denied these statements
already: no rule allows them.)
"""

from __future__ import annotations

import pytest
from adversary import Arena
from pg_probe_stack import arena_fixture, probe_client
from pooler_stack import stored_settings

pytestmark = pytest.mark.integration

arena = arena_fixture()
client = probe_client("p51")

STORED = [
    "ALTER DATABASE {db} SET lc_monetary = 'ar_BH.UTF-8'",
    "ALTER DATABASE {db} SET bytea_output TO escape",
    "ALTER ROLE {role} SET extra_float_digits = 0",
    "ALTER USER {role} IN DATABASE {db} SET lc_numeric = 'de_DE.UTF-8'",
    "ALTER ROLE ALL SET \"ByteA_Output\" = 'escape'",
    "ALTER ROLE {role} SET lc_monetary FROM CURRENT",
    "ALTER SYSTEM SET extra_float_digits = 0",
]


def _stored(arena: Arena) -> list[object]:
    with arena.admin() as admin:
        return stored_settings(admin, arena.database, arena.role)


@pytest.mark.parametrize("sql", STORED)
def test_a_masked_dba_may_not_store_a_writing_setting(arena: Arena, sql: str) -> None:
    before = _stored(arena)
    c = client(arena, ("dba",))
    try:
        answer = c.query(sql.format(db=arena.database, role=arena.role))
        assert answer.errors, answer.messages
        assert "denied by policy" in answer.errors[0], answer.errors
        assert "for the sessions that start later" in answer.errors[0], answer.errors
    finally:
        c.close()
    assert _stored(arena) == before


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER DATABASE {db} RESET bytea_output",
        "ALTER ROLE {role} SET extra_float_digits TO DEFAULT",
        "ALTER ROLE {role} SET work_mem = '8MB'",
    ],
)
def test_removing_one_or_storing_another_still_asks_an_approver(arena: Arena, sql: str) -> None:
    c = client(arena, ("dba",))
    try:
        answer = c.query(sql.format(db=arena.database, role=arena.role))
        assert answer.errors and "approval required" in answer.errors[0], answer.messages
    finally:
        c.close()


def test_a_pii_reading_dba_is_asked_as_before(arena: Arena) -> None:
    c = client(arena, ("dba", "pii-readers"))
    try:
        answer = c.query(f"ALTER DATABASE {arena.database} SET bytea_output = escape")
        assert answer.errors and "approval required" in answer.errors[0], answer.messages
    finally:
        c.close()
