"""Probe P39 (helper pgattack14) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER), as a reader.

The settings the database keeps for roles and databases (ALTER ROLE ... SET, ALTER ROLE
... IN DATABASE ... SET) hold whatever a superuser stored there, an application's own
credentials among them (`app.api_key`), which a reader may not read as a setting
(`current_setting('app.secret')` is refused: not a readable setting). Selected, the
arrays come back masked whole; but conditions on them were answered:

    SELECT count(*) FROM pg_db_role_setting
      WHERE array_to_string(setconfig, ',') LIKE '%hunter2-r%'       -- 1

a character at a time. Any use of setconfig, rolconfig or useconfig in a condition,
grouping or computation is now refused to readers (rego/portcullis/postgres.rego).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from adversary import Arena, RawClient, assert_no_secret
from pg_probe_stack import arena_fixture, probe_client

pytestmark = pytest.mark.integration

arena = arena_fixture()
client = probe_client("p39")
DENIED = "denied by policy"
SECRET = "hunter2-role"


@pytest.fixture(scope="module")
def stored(arena: Arena) -> Iterator[str]:
    """A role (its name this arena's: roles are the cluster's) with settings stored."""
    role = f"pgattack14_p39_{arena.database.rsplit('_', 1)[-1]}"
    with arena.admin() as admin:
        admin.execute(f"CREATE ROLE {role} NOLOGIN")
        admin.execute(f"ALTER ROLE {role} SET app.secret = '{SECRET}'")
        admin.execute(f"ALTER ROLE {role} IN DATABASE {arena.database} SET app.other = '{SECRET}'")
    yield role
    with arena.admin() as admin:
        admin.execute(f"ALTER ROLE {role} IN DATABASE {arena.database} RESET ALL")
        admin.execute(f"ALTER ROLE {role} RESET ALL")
        admin.execute(f"DROP ROLE {role}")


QUESTIONS = {
    "db_role_setting_pattern": "SELECT count(*) FROM pg_db_role_setting"
    " WHERE array_to_string(setconfig, ',') LIKE '%hunter2-r%'",
    "db_role_setting_equality": "SELECT count(*) FROM pg_catalog.pg_db_role_setting"
    " WHERE 'app.other=hunter2-role' = ANY(setconfig)",
    "roles_pattern": "SELECT rolname FROM pg_roles WHERE rolconfig::text LIKE '%hunter2%'",
    "user_range": "SELECT usename FROM pg_user WHERE useconfig[1] > 'app.secret=h'",
    "ordered": "SELECT rolname FROM pg_roles WHERE rolconfig IS NOT NULL ORDER BY rolconfig",
    "through_a_subquery": "SELECT count(*) FROM (SELECT setconfig c FROM pg_db_role_setting) s"
    " WHERE c::text ~ 'hunter2'",
    "a_partial_use": "SELECT count(*) FROM pg_roles"
    " WHERE 1/(ascii(substr(rolconfig[1], 12, 1)) - 104) = 1",
}


def test_the_settings_are_there(arena: Arena, stored: str) -> None:
    with arena.admin() as admin:
        rows = admin.execute(QUESTIONS["db_role_setting_pattern"]).fetchall()
    assert rows == [(2,)], rows


@pytest.mark.parametrize("groups", [("readonly",), ("readonly", "pii-readers")])
@pytest.mark.parametrize("sql", list(QUESTIONS.values()), ids=list(QUESTIONS))
def test_questions_about_role_settings_are_refused_to_readers(
    arena: Arena, stored: str, groups: tuple[str, ...], sql: str
) -> None:
    c: RawClient = client(arena, groups)
    try:
        answer = c.query(sql)
        assert_no_secret(answer)
        assert answer.errors and DENIED in answer.errors[0], answer.messages
        assert not answer.rows
    finally:
        c.close()


def test_a_reader_still_lists_roles_and_their_settings_masked(arena: Arena, stored: str) -> None:
    c = client(arena, ("readonly",))
    try:
        answer = c.query(f"SELECT rolname, rolconfig FROM pg_roles WHERE rolname = '{stored}'")
        assert not answer.errors, answer.errors
        assert answer.rows and answer.rows[0][0] == stored.encode(), answer.rows
        assert SECRET.encode() not in answer.raw
    finally:
        c.close()
