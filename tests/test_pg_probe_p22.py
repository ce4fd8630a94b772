"""Probe P22 (helper pgattack6) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER), as a reader outside pii-readers.

Code made a member of an installed extension. The catalogue facts leave out an installed
extension's non-volatile functions (and the operators, casts and operator families built
on them): CREATE EXTENSION is a superuser's reviewed act. But membership is one pg_depend
row any superuser writes with `ALTER EXTENSION citext ADD FUNCTION public.f(money)`, long
after CREATE EXTENSION: a hand-made PL/pgSQL function marked IMMUTABLE (its side effects
notwithstanding) dropped out of user_functions, view_functions and user_casts alike, and a
reader's `SELECT DISTINCT total::money FROM orders` (a DEFAULT hash class of money calling
it) or `SELECT h FROM v` (a view calling it) ran it unjudged. A member now counts as the
extension's only when its pg_depend row is no newer than the extension's own row (CREATE
EXTENSION and ALTER EXTENSION ... UPDATE write both; ADD writes only pg_depend). Left: a
member added in the very transaction that made or updated the extension, or after a
superuser wrote the extension's row again (ALTER EXTENSION ... SET SCHEMA).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from adversary import Arena, running_arena
from pg_probe_stack import assert_read_refused_unrun

pytestmark = pytest.mark.integration

# made after the extension (its own transaction: CREATE EXTENSION, long before)
MADE = """
CREATE FUNCTION public.p22_mhash(money) RETURNS int LANGUAGE plpgsql IMMUTABLE AS
  $$ BEGIN RAISE NOTICE 'p22 ran'; PERFORM set_config('application_name', 'p22', false);
  RETURN hashtext($1::text); END $$;
CREATE OPERATOR CLASS public.p22_money_hash DEFAULT FOR TYPE money USING hash AS
  OPERATOR 1 pg_catalog.= (money, money), FUNCTION 1 public.p22_mhash(money);
CREATE VIEW public.p22_v AS SELECT id, public.p22_mhash(total::money) AS h FROM orders;
ALTER EXTENSION citext ADD FUNCTION public.p22_mhash(money);
"""


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    with running_arena(tmp_path_factory.mktemp("arena")) as gateway:
        with gateway.admin() as admin:
            admin.execute("CREATE EXTENSION IF NOT EXISTS citext")
            admin.execute(MADE)
        yield gateway


READS = ["SELECT DISTINCT total::money FROM orders", "SELECT h FROM p22_v"]


@pytest.mark.parametrize("sql", READS)
@pytest.mark.parametrize("groups", [("readonly",), ("dba",)], ids=["reader", "masked dba"])
def test_code_added_to_an_extension_after_it_was_made_is_still_the_databases(
    arena: Arena, groups: tuple[str, ...], sql: str
) -> None:
    assert_read_refused_unrun(arena, groups, "p22", sql)
