"""Probe P8's findings at the wire-protocol level against the real stack (tests/adversary.py:
a gateway whose upstream credential is the `postgres` SUPERUSER; customers.password is a
sensitive column no value detector recognises).

- The fast path (FunctionCall, 'F') names a function by OID and gives its arguments as
  values. The policy judges it by the function's name; its result was masked by the value
  detectors only. A dba outside pii-readers called a function the database defines
  (`public.pw_of(int)`, returning customers.password) and read the password in clear,
  where `SELECT public.pw_of(1)` is masked whole (lineage reads a call outside pg_catalog
  as computed from every table). Now, under masks, the result of a fast-path call of a
  function outside pg_catalog (or made after initdb) is masked whole, and refused when
  the client asks for it in binary (no mask can stand in for a type's bytes).
"""

from __future__ import annotations

import struct

import pytest
from adversary import RawClient, assert_no_secret, oid_of, ready_client, running_arena

from proxies.postgres import codec

pytestmark = pytest.mark.integration

FUNCTIONS = """
CREATE FUNCTION public.pw_of(int) RETURNS text LANGUAGE sql STABLE
  AS $$ SELECT password FROM customers WHERE id = $1 $$;
CREATE FUNCTION public.pw_bytes(int) RETURNS bytea LANGUAGE sql STABLE
  AS $$ SELECT convert_to(password, 'UTF8') FROM customers WHERE id = $1 $$;
-- made after initdb in pg_catalog itself: a superuser may, and the name says pg_catalog
CREATE FUNCTION pg_catalog.p8_pw(int) RETURNS text LANGUAGE sql STABLE
  AS $$ SELECT password FROM public.customers WHERE id = $1 $$;
"""


@pytest.fixture(scope="module")
def arena(tmp_path_factory):
    with running_arena(tmp_path_factory.mktemp("arena")) as gateway:
        with gateway.admin() as admin:
            admin.execute(FUNCTIONS)
        yield gateway


def client(arena, groups: tuple[str, ...]) -> RawClient:
    return ready_client(arena, groups, "p8")


def oid(arena, signature: str) -> int:
    with arena.admin() as admin:
        return oid_of(admin, signature)


def call(c: RawClient, function: int, customer: int, result_format: int = 0):
    """A fast-path call with one int4 argument in binary."""
    return c.send(
        codec.FunctionCall(function, [1], [struct.pack("!i", customer)], result_format).encode()
    )


def results(answer) -> list[bytes | None]:
    return [m.value for m in answer.messages if isinstance(m, codec.FunctionCallResponse)]


@pytest.mark.parametrize("signature", ["public.pw_of(int)", "pg_catalog.p8_pw(int)"])
def test_a_masked_dbas_fast_path_call_of_a_database_function_is_masked_whole(
    arena, signature: str
) -> None:
    c = client(arena, ("dba",))
    try:
        answer = call(c, oid(arena, signature), 1)
        assert_no_secret(answer)
        assert results(answer) == [b"[REDACTED]"], answer.messages
        # the same function in SQL is masked whole too
        sql = c.query(f"SELECT {signature.split('(')[0]}(1)")
        assert_no_secret(sql)
    finally:
        c.close()


@pytest.mark.parametrize("signature", ["public.pw_of(int)", "public.pw_bytes(int)"])
def test_a_masked_dbas_binary_fast_path_result_is_refused(arena, signature: str) -> None:
    c = client(arena, ("dba",))
    try:
        answer = call(c, oid(arena, signature), 1, result_format=1)
        assert_no_secret(answer)
        assert answer.errors and "binary result cannot be masked" in answer.errors[0]
        assert not results(answer)
        # the session goes on
        assert c.query("SELECT 1").rows == [[b"1"]]
    finally:
        c.close()


def test_a_masked_dbas_fast_path_call_of_a_built_in_is_unchanged(arena) -> None:
    c = client(arena, ("dba",))
    try:
        answer = c.send(
            codec.FunctionCall(oid(arena, "pg_catalog.textout(text)"), [0], [b"plain"], 0).encode()
        )
        assert results(answer) == [b"plain"], answer.messages
    finally:
        c.close()


def test_a_pii_reading_dba_reads_the_fast_path_result(arena) -> None:
    c = client(arena, ("dba", "pii-readers"))
    try:
        assert results(call(c, oid(arena, "public.pw_of(int)"), 1)) == [b"hunter2-ada"]
        assert results(call(c, oid(arena, "public.pw_of(int)"), 2, 1)) == [b"hunter2-bob"]
    finally:
        c.close()
