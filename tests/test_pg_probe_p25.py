"""Probe P25 (helper pgattack7) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER), as a reader outside pii-readers.

Code made a member of an extension in the transaction that made the extension. The facts
leave out an installed extension's non-volatile functions (and the operators and casts
built on them): CREATE EXTENSION is a superuser's reviewed act. A member counts as the
extension's only when its pg_depend row is no newer than the extension's own (5fe6759),
but ALTER EXTENSION citext ADD FUNCTION public.f(money) in the very transaction of CREATE
EXTENSION citext wrote a row exactly as new: a hand-made PL/pgSQL function marked
IMMUTABLE dropped out of user_functions, view_functions and user_casts, and a reader's
`SELECT DISTINCT total::money FROM orders` (a DEFAULT hash class of money calling it) or
`SELECT h FROM v` ran it unjudged. Such a member now counts as the extension's only when
the function's own catalogue row was written by the command that wrote its membership (the
extension's script makes each function and its membership in one command; ADD is a later
command: pg_proc's and pg_depend's cmin differ), and an operator or cast only when its
function so counts.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from adversary import Arena, running_arena
from pg_probe_stack import assert_read_refused_unrun

pytestmark = pytest.mark.integration

# one transaction: the extension made, and the database's code added to it
MADE = """
BEGIN;
CREATE EXTENSION citext;
CREATE FUNCTION public.p25_mhash(money) RETURNS int LANGUAGE plpgsql IMMUTABLE AS
  $$ BEGIN RAISE NOTICE 'p25 ran'; PERFORM set_config('application_name', 'p25', false);
  RETURN hashtext($1::text); END $$;
CREATE OPERATOR CLASS public.p25_money_hash DEFAULT FOR TYPE money USING hash AS
  OPERATOR 1 pg_catalog.= (money, money), FUNCTION 1 public.p25_mhash(money);
CREATE VIEW public.p25_v AS SELECT id, public.p25_mhash(total::money) AS h FROM orders;
CREATE FUNCTION public.p25_eq(int, int) RETURNS bool LANGUAGE plpgsql IMMUTABLE AS
  $$ BEGIN RAISE NOTICE 'p25 ran'; RETURN $1 = $2; END $$;
CREATE OPERATOR public.=== (leftarg = int, rightarg = int, function = public.p25_eq);
ALTER EXTENSION citext ADD FUNCTION public.p25_mhash(money);
ALTER EXTENSION citext ADD OPERATOR public.=== (int, int);
COMMIT;
"""


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    with running_arena(tmp_path_factory.mktemp("arena")) as gateway:
        with gateway.admin() as admin:
            admin.execute(MADE)
        yield gateway


READS = [
    "SELECT DISTINCT total::money FROM orders",
    "SELECT h FROM p25_v",
    "SELECT 1 === 1",
]


@pytest.mark.parametrize("sql", READS)
@pytest.mark.parametrize("groups", [("readonly",), ("dba",)], ids=["reader", "masked dba"])
def test_code_added_to_an_extension_in_the_transaction_that_made_it_is_the_databases(
    arena: Arena, groups: tuple[str, ...], sql: str
) -> None:
    assert_read_refused_unrun(arena, groups, "p25", sql)
