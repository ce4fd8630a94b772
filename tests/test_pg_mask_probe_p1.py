"""Probe P1 of the Postgres masks (helper pgmask3) against the real stack
(tests/adversary.py: a gateway whose upstream credential is the `postgres` SUPERUSER), as a
reader outside pii-readers.

A composite inside another type. A column of a composite type is masked whole (its
record's fields are named by the type: `(zed,hunter2-zed)`), and so were an array of one
and a domain over one: the catalogue query followed one step from the column's type. Two
steps were read in clear: an array of a domain over a composite (`ds contact_d[]` gave
`{"(dd,hunter2-dd)"}`, `ds[1]` gave `(dd,hunter2-dd)`) and a domain over such a domain
(`(x,hunter2-ddd)`), and `ds::text LIKE '%hunter2%'` counted rows as a question about
nothing sensitive. proxies/postgres/columns.py now follows the type's chain (a domain's
base, an array's element, a range's subtype, a multirange's range) up to TYPE_STEPS steps,
and a longer chain counts as holding a composite.

The list of composite columns the policy is sent at every session start now comes from
pg_depend (a column depends on its type) instead of a type lookup per pg_attribute row:
the columns added later, of a partitioned table, or of a type made since, are still in it.
"""

from __future__ import annotations

import pytest
from adversary import assert_no_secret
from pg_probe_stack import arena_fixture, reader_fixture

from proxies.postgres.columns import COMPOSITE_SQL

pytestmark = pytest.mark.integration

NESTED = """
CREATE TYPE contact AS (nick text, password text);
CREATE DOMAIN contact_d AS contact;
CREATE DOMAIN contact_dd AS contact_d;
CREATE DOMAIN contacts_d AS contact_d[];
CREATE TABLE nested (id int, ds contact_d[], dd contact_dd, dsd contacts_d);
INSERT INTO nested VALUES (1, ARRAY[ROW('dd', 'hunter2-dd')::contact_d],
  ROW('x', 'hunter2-ddd'), ARRAY[ROW('y', 'hunter2-dsd')::contact_d]);
CREATE TABLE parted (id int, c contact) PARTITION BY RANGE (id);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);
INSERT INTO parted VALUES (1, ROW('p', 'hunter2-part'));
CREATE TABLE later (id int);
ALTER TABLE later ADD COLUMN c contact_dd;
INSERT INTO later VALUES (1, ROW('l', 'hunter2-later'));
"""


arena = arena_fixture(NESTED)
reader = reader_fixture("mask-p1")


NESTED_READS = [
    "SELECT ds FROM nested",
    "SELECT ds[1] FROM nested",
    "SELECT dd FROM nested",
    "SELECT dsd FROM nested",
    "SELECT * FROM nested",
    "SELECT c FROM parted",
    "SELECT c FROM parted_1",
    "SELECT * FROM later",
]


@pytest.mark.parametrize("sql", NESTED_READS)
def test_a_composite_held_inside_another_type_is_masked(reader, sql) -> None:
    answer = reader.query(sql)
    assert not answer.errors, answer.errors
    assert b"hunter2" not in answer.raw, answer.rows
    assert_no_secret(answer)


NESTED_QUESTIONS = [
    "SELECT count(*) FROM nested WHERE ds::text LIKE '%hunter2%'",
    "SELECT count(*) FROM nested WHERE dd::text < '(x,i'",
    "SELECT count(*) FROM nested WHERE dsd::text LIKE '%h%'",
    "SELECT count(*) FROM parted WHERE c::text LIKE '(p,h%'",
    "SELECT count(*) FROM later WHERE c::text LIKE '(l,h%'",
]


@pytest.mark.parametrize("sql", NESTED_QUESTIONS)
def test_a_composite_held_inside_another_type_answers_no_question(reader, sql) -> None:
    answer = reader.query(sql)
    assert answer.errors, answer.rows
    assert_no_secret(answer)


def test_every_kind_of_holder_is_found(arena) -> None:
    """The catalogue check itself, on the server: ranges and multiranges of a composite
    (their cast outside pg_catalog keeps them out of the gateway's reach today), chains of
    domains and arrays, and nothing of plain types."""
    with arena.admin() as admin:
        admin.execute(
            "CREATE TYPE contact_r AS RANGE (subtype = contact);"
            "CREATE DOMAIN d1 AS text; CREATE DOMAIN d2 AS d1; CREATE DOMAIN d3 AS d2[];"
            "CREATE TABLE kinds (r contact_r, m contact_r_multirange, rs contact_r[],"
            " deep contacts_d[], t text, n name, p point, ts tstzrange, j jsonb, d3 d3)"
        )
        try:
            rows = admin.execute(
                f"SELECT a.attname, {COMPOSITE_SQL} FROM pg_catalog.pg_attribute a "
                "WHERE a.attrelid = 'kinds'::regclass AND a.attnum > 0 ORDER BY a.attnum"
            ).fetchall()
        finally:
            admin.execute("DROP TABLE kinds; DROP TYPE contact_r; DROP DOMAIN d3, d2, d1")
    assert dict(rows) == {
        "r": True, "m": True, "rs": True, "deep": True,
        "t": False, "n": False, "p": False, "ts": False, "j": False, "d3": False,
    }  # fmt: skip
