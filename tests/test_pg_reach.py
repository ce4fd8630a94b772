"""What a privileged identity runs through the superuser upstream that reaches past the
database, or makes a way in that bypasses the gateway, waits for approval.

The upstream credential is the server's superuser. Before, a dba in pii-readers ran, with
no one asked: a C function bound to libc's system() (programs as the server's OS user),
a login role with a password (a standing credential that never meets Portcullis), an
extension, LOAD, file_fdw's foreign tables, subscriptions, tablespaces, role attributes
and settings that run on everyone's sessions. Real PDP, proxy and PostgreSQL; the raw
wire client of tests/adversary.py.
"""

from __future__ import annotations

import secrets

import pytest
from adversary import marker_path, ready_client
from pg_probe_stack import arena_fixture

pytestmark = pytest.mark.integration

DBA = ("dba",)
UNMASKED_DBA = ("dba", "pii-readers")


arena = arena_fixture()


def _refused_for_approval(arena, groups: tuple[str, ...], sql: str) -> None:
    c = ready_client(arena, groups, "reach")
    try:
        answer = c.query(sql)
        assert answer.refused, (sql, answer.messages)
        assert any("approval" in e for e in answer.errors), (sql, answer.errors)
    finally:
        c.close()


@pytest.mark.parametrize("groups", [DBA, UNMASKED_DBA])
def test_a_login_role_with_a_password_waits_for_approval(arena, groups) -> None:
    role = "reach_" + secrets.token_hex(4)
    try:
        for sql in (
            f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD 'known'",
            f"CREATE USER {role} PASSWORD 'known'",
        ):
            _refused_for_approval(arena, groups, sql)
        with arena.admin() as admin:
            made = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchall()
            assert made == []
            admin.execute(f"CREATE ROLE {role}")  # an existing role: its password, attributes
        for sql in (
            f"ALTER ROLE {role} LOGIN PASSWORD 'known'",
            f"ALTER USER {role} SUPERUSER",
            f"GRANT pg_read_server_files TO {role}",
            f"ALTER ROLE {role} SET session_preload_libraries = 'auto_explain'",
        ):
            _refused_for_approval(arena, groups, sql)
        with arena.admin() as admin:
            sql = "SELECT rolcanlogin, rolsuper, rolpassword IS NULL FROM pg_authid"
            (row,) = admin.execute(sql + " WHERE rolname = %s", (role,)).fetchall()
        assert row == (False, False, True)
    finally:
        with arena.admin() as admin:
            admin.execute(f"DROP ROLE IF EXISTS {role}")


@pytest.mark.parametrize("groups", [DBA, UNMASKED_DBA])
def test_code_outside_the_trusted_languages_waits_for_approval(arena, groups) -> None:
    marker = marker_path()
    name = "reach_" + secrets.token_hex(4)
    for sql in (
        f"CREATE FUNCTION {name}(cstring) RETURNS int "
        "AS '/lib/x86_64-linux-gnu/libc.so.6', 'system' LANGUAGE C STRICT",
        f"CREATE FUNCTION {name}(text) RETURNS int LANGUAGE internal AS 'textlen'",
        "CREATE EXTENSION IF NOT EXISTS file_fdw",
        "LOAD 'auto_explain'",
        f"CREATE TABLESPACE {name} LOCATION '/tmp'",
        f"CREATE SUBSCRIPTION {name} CONNECTION 'host=127.0.0.1 dbname=x' PUBLICATION p",
    ):
        _refused_for_approval(arena, groups, sql)
    assert not marker.exists()
    with arena.admin() as admin:
        assert admin.execute("SELECT 1 FROM pg_proc WHERE proname = %s", (name,)).fetchall() == []


@pytest.mark.parametrize("groups", [DBA, UNMASKED_DBA])
def test_a_function_body_written_as_a_string_waits_for_approval(arena, groups) -> None:
    """COPY ... TO PROGRAM and pg_read_file are denied to everyone, but wrapped in a function
    whose body is a string the classifier never read, they ran once the function was called."""
    marker = marker_path()
    name = "reach_" + secrets.token_hex(4)
    quoted = "''touch " + str(marker) + "''"
    for sql in (
        f"CREATE FUNCTION {name}() RETURNS void LANGUAGE sql "
        f"AS $$ COPY (SELECT 1) TO PROGRAM 'touch {marker}' $$",
        f"CREATE FUNCTION {name}(text) RETURNS text LANGUAGE plpgsql "
        "AS $$ BEGIN RETURN pg_read_file($1); END $$",
        f"CREATE PROCEDURE {name}() LANGUAGE plpgsql "
        f"AS $$ BEGIN EXECUTE 'COPY (SELECT 1) TO PROGRAM {quoted}'; END $$",
    ):
        _refused_for_approval(arena, groups, sql)
    assert not marker.exists()
    with arena.admin() as admin:
        assert admin.execute("SELECT 1 FROM pg_proc WHERE proname = %s", (name,)).fetchall() == []


def test_a_function_in_sql_standard_form_runs_without_approval(arena) -> None:
    name = "reach_" + secrets.token_hex(4)
    c = ready_client(arena, UNMASKED_DBA, "reach")
    try:
        answer = c.query(f"CREATE FUNCTION {name}() RETURNS int LANGUAGE sql RETURN 1")
        assert not answer.refused, answer.errors
    finally:
        c.close()
        with arena.admin() as admin:
            admin.execute(f"DROP FUNCTION IF EXISTS {name}()")
