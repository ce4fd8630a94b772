"""Probe P13's findings against the real stack (tests/adversary.py: a gateway whose upstream
credential is the `postgres` SUPERUSER; customers.password is a sensitive column no value
detector recognises).

- The policy's parser is newer than the server: pglast 8 parses with PostgreSQL 18's
  grammar, the server is PostgreSQL 15. PostgreSQL 16-18 made `system_user`, the SQL/JSON
  words (`json`, `json_scalar`, `json_value`, `json_arrayagg`, ...) and `merge_action`
  keywords; to the server they are plain names. A dba outside pii-readers read the
  passwords with `SELECT upper(system_user) FROM (SELECT password AS system_user FROM
  customers) s` (pglast: the function SYSTEM_USER, no column; the server: the subquery's
  column) and asked `... WHERE system_user LIKE 'hunter2-a%'`; a reader called a function
  the database defines, unqualified, as `merge_action()` or `json_scalar(name)` (pglast: a
  MERGE or SQL/JSON node naming no function, so neither the readers' allow-list nor the
  rule on the database's own functions saw it), and got what it returns: every password.
  Now such text is denied as one the policy cannot read as the server will
  (pdp/sql/grammar.py).
- A view the database defines that calls a volatile built-in ran it for whoever read the
  view: pg_depend records no dependency on pg_catalog's functions, so the proxy's
  view_functions never named them. `CREATE VIEW v AS SELECT id, set_config(
  'application_name', password, false) AS s FROM customers` gave a reader (and a dba
  outside pii-readers) every password: the column came back masked, but the server
  reported the setting's new value (ParameterStatus) and SHOW application_name read it.
  Now the proxy reads the functions a view's own query calls from its rule's tree
  (proxies/postgres/user_code.py), and a view running a volatile built-in readers may not
  call is denied outside pii-readers (rego/portcullis/postgres_lineage.rego).
- A card number kept as a number (bigint, numeric, double precision, or an array of them)
  in a column not named as sensitive came back whole to everyone outside pii-readers, in
  text and binary format: the value detectors never read numbers (values.NO_TEXT), though
  they read the same number in a JSON document. Now such values are read as a JSON number
  is, and one a detector finds anything in is sent as NULL (proxies/postgres/values.py).
"""

from __future__ import annotations

import random
from collections import Counter

import pglast
import pytest
from adversary import (
    assert_no_secret,
    assert_none_of,
    bind,
    execute,
    parse,
    ready_client,
    sync,
)
from pg_probe_stack import arena_fixture

from pdp.sql.classify import classify
from pdp.sql.grammar import newer_nodes
from pdp.sql.reference import classify_reference
from portcullis.masking import Masker
from portcullis.verdict import MaskRule
from proxies.postgres import codec
from proxies.postgres.row_mask import RowMask
from proxies.postgres.values import may_hold_a_card

pytestmark = pytest.mark.integration

# functions "a dba made earlier", named by words newer grammars made keywords: each returns
# every password, which nothing but lineage protects
LEAKS = "$$SELECT string_agg(password, ',') FROM customers$$"
EXTRA = f"""
CREATE FUNCTION public.merge_action() RETURNS text LANGUAGE sql STABLE AS {LEAKS};
CREATE FUNCTION public.json_scalar(text) RETURNS text LANGUAGE sql STABLE AS {LEAKS};
CREATE FUNCTION public.json(text) RETURNS text LANGUAGE sql STABLE AS {LEAKS};
CREATE FUNCTION public.json_serialize(text) RETURNS text LANGUAGE sql STABLE AS {LEAKS};
CREATE FUNCTION public.json_value(text, text) RETURNS text LANGUAGE sql STABLE AS {LEAKS};
CREATE FUNCTION public.json_arrayagg(text) RETURNS text LANGUAGE sql STABLE AS {LEAKS};
CREATE TABLE p13_numbers (
  id int, pan bigint, ref numeric, f float8, pans bigint[], refs numeric[], total numeric);
INSERT INTO p13_numbers VALUES
  (1, 4111111111111111, 5500005555555559.25, 4111111111111111, ARRAY[7, 4111111111111111],
   ARRAY[1.5, 5500005555555559], 99.50),
  (2, 1234567890123, 12345678901234.5, 1234567890123456, ARRAY[1, 2], ARRAY[1.5], 12.00);
CREATE VIEW public.p13_vset AS
  SELECT id, set_config('application_name', password, false) AS s FROM customers;
CREATE VIEW public.p13_vstash AS
  SELECT id, pg_catalog.set_config('p13.stash', password, false) AS s FROM customers;
CREATE VIEW public.p13_vnest AS SELECT * FROM public.p13_vset;
CREATE VIEW public.p13_vrandom AS SELECT id, random() AS r FROM orders;
"""


arena = arena_fixture(EXTRA)


READ_AS_NEWER_SYNTAX = [
    "SELECT upper(system_user) FROM (SELECT password AS system_user FROM customers) s",
    "SELECT system_user || '' FROM (SELECT password AS system_user FROM customers) AS s",
    "SELECT id FROM (SELECT id, password AS system_user FROM customers) s"
    " WHERE system_user LIKE 'hunter2-a%'",
    "WITH s AS (SELECT password AS system_user FROM customers) SELECT lower(SYSTEM_USER) FROM s",
    "SELECT merge_action()",
    "SELECT MERGE_ACTION() AS x",
    "SELECT json_scalar(name) FROM customers",
    "SELECT json(name) FROM customers",
    "SELECT json_serialize(name) FROM customers",
    "SELECT json_value(name, '$') FROM customers",
    "SELECT json_arrayagg(name) FROM customers",
    "SELECT 1; SELECT merge_action()",
]


@pytest.mark.parametrize("groups", [("readonly",), ("dba",)])
@pytest.mark.parametrize("sql", READ_AS_NEWER_SYNTAX)
def test_a_word_the_servers_grammar_reads_as_a_name_is_not_read_as_newer_syntax(
    arena, groups, sql: str
) -> None:
    c = ready_client(arena, groups, "p13")
    try:
        answer = c.query(sql)
        assert answer.errors, answer.messages
        assert "reads a SQL/JSON, MERGE_ACTION or SYSTEM_USER word" in answer.errors[0]
        assert not answer.rows, answer.rows
        assert_no_secret(answer, b"HUNTER2")
    finally:
        c.close()


def test_the_names_quoted_or_qualified_are_read_as_names(arena) -> None:
    """Written so that both grammars read a name, they are judged as names: a column of a
    subquery, and the database's function called with its schema (a pii-reading dba)."""
    c = ready_client(arena, ("readonly",), "p13")
    try:
        answer = c.query('SELECT "system_user" FROM (SELECT name AS system_user FROM customers) s')
        assert not answer.errors, answer.messages
        assert sorted(r[0] for r in answer.rows) == [b"Ada", b"Bob"]
        answer = c.query(
            'SELECT "system_user" FROM (SELECT password AS system_user FROM customers) s'
        )
        assert not answer.errors, answer.messages
        assert_no_secret(answer)
    finally:
        c.close()
    c = ready_client(arena, ("dba", "pii-readers"), "p13")
    try:
        answer = c.query("SELECT public.merge_action(), public.json_scalar('x')")
        assert not answer.errors, answer.messages
        ((merged, scalar),) = answer.rows
        assert merged == scalar and sorted(merged.split(b",")) == [b"hunter2-ada", b"hunter2-bob"]
    finally:
        c.close()


@pytest.mark.parametrize(
    "sql", [*READ_AS_NEWER_SYNTAX, "SELECT 1 FROM json_table(x, '$' COLUMNS (a int))"]
)
def test_both_classifier_paths_read_newer_syntax_as_unparseable(sql: str) -> None:
    """The JSON walk, the reference walk, and the reference's walk of a tree too deep for
    json (newer_nodes) name the same construct."""
    fast, reference = classify(sql), classify_reference(sql)
    assert fast == reference
    assert [e["type"] for e in fast] == ["unparseable"], fast
    statements = [s.stmt for s in pglast.parse_sql(sql)]
    assert newer_nodes(statements) is not None
    assert newer_nodes([s.stmt for s in pglast.parse_sql('SELECT "system_user", 1')]) is None


NUMBERS = "SELECT pan, ref, f, pans, refs, total FROM p13_numbers ORDER BY id"
CARDS = (b"4111111111111111", b"5500005555555559", b"4.111111111111111e+15")


def _numbers(c, result_format: int):
    if result_format == 0:
        return c.query(NUMBERS)
    return c.send(parse("", NUMBERS), bind("", "", 1), execute(), sync())


@pytest.mark.parametrize("result_format", [0, 1])
@pytest.mark.parametrize("groups", [("readonly",), ("dba",)])
def test_a_card_number_kept_as_a_number_is_read_by_the_detectors(
    arena, groups, result_format: int
) -> None:
    c = ready_client(arena, groups, "p13")
    try:
        answer = _numbers(c, result_format)
        assert not answer.errors, answer.messages
        first, second = answer.rows
        assert first[:5] == [None] * 5, first
        assert first[5] is not None  # 99.50: no detector reads so short a number
        assert None not in second, second  # numbers that are no card's come back
        assert_none_of(answer, CARDS)
    finally:
        c.close()
    with arena.admin() as admin:
        direct = admin.execute(NUMBERS + " OFFSET 1").fetchone()
    if result_format == 0:
        assert [v.decode() for v in second] == [
            "1234567890123",
            "12345678901234.5",
            "1.234567890123456e+15",
            "{1,2}",
            "{1.5}",
            "12.00",
        ], (second, direct)


@pytest.mark.parametrize("result_format", [0, 1])
def test_a_pii_reader_reads_a_card_kept_as_a_number(arena, result_format: int) -> None:
    c = ready_client(arena, ("dba", "pii-readers"), "p13")
    try:
        answer = _numbers(c, result_format)
        assert not answer.errors, answer.messages
        assert None not in answer.rows[0]
        if result_format == 0:
            assert answer.rows[0][0] == b"4111111111111111"
    finally:
        c.close()


def test_what_the_detectors_find_in_a_json_value_is_counted_under_their_own_names() -> None:
    """The evidence's masking counts (details.masked) named a JSON document's card
    `detector:detector:credit_card` and a key named like a masked field
    `detector:field:email`: RowMask prefixed Masker.mask_json's keys, prefixed already."""
    masker = Masker(
        [
            MaskRule(field="email", strategy="redact"),
            MaskRule(detector="credit_card", strategy="partial"),
        ],
        b"k" * 32,
    )
    fields = [codec.Field("doc", 0, 0, 3802), codec.Field("pan", 0, 0, 20)]
    values: list[bytes | None] = [
        b'{"n": 4111111111111111, "email": "x", "note": "card 4111 1111 1111 1111"}',
        b"4111111111111111",
    ]
    counts: Counter[str] = Counter()
    assert RowMask(masker, fields, [0], {}).apply(values, counts)
    assert counts == {"detector:credit_card": 3, "field:email": 1}, counts
    assert values[1] is None


VIEWS_RUNNING_SET_CONFIG = [
    "SELECT * FROM p13_vset",
    "SELECT s FROM public.p13_vset WHERE id = 2",
    "SELECT count(s) FROM p13_vstash",
    "SELECT * FROM p13_vnest",
    'SELECT * FROM "p13_vset"',
]


@pytest.mark.parametrize("groups", [("readonly",), ("dba",)])
@pytest.mark.parametrize("sql", VIEWS_RUNNING_SET_CONFIG)
def test_a_view_running_set_config_keeps_nothing_past_the_masks(arena, groups, sql: str) -> None:
    c = ready_client(arena, groups, "p13")
    try:
        answer = c.query(sql)
        assert answer.errors, answer.messages
        assert "runs pg_catalog.set_config" in answer.errors[0], answer.errors
        after = c.query("SHOW application_name")
        assert_no_secret(answer)
        assert_no_secret(after)
        if groups == ("dba",):
            assert_no_secret(c.query("SELECT current_setting('p13.stash', true)"))
    finally:
        c.close()


def test_a_view_running_what_readers_may_call_is_read(arena) -> None:
    c = ready_client(arena, ("readonly",), "p13")
    try:
        answer = c.query("SELECT count(r) FROM p13_vrandom")
        assert not answer.errors, answer.messages
    finally:
        c.close()
    c = ready_client(arena, ("dba", "pii-readers"), "p13")
    try:
        answer = c.query("SELECT s FROM p13_vset ORDER BY id")
        assert not answer.errors, answer.messages
        assert answer.rows == [[b"hunter2-ada"], [b"hunter2-bob"]]
    finally:
        c.close()


def test_an_integer_the_gate_skips_is_one_no_detector_reads() -> None:
    """values.may_hold_a_card skips mask_text for most integers: it must never skip one
    any detector would find something in (a detector added later that reads bare digits
    fails this)."""
    masker = Masker(
        [
            MaskRule(detector=d, strategy="partial")
            for d in ("email", "credit_card", "ssn", "token")
        ],
        b"k" * 32,
    )
    rng = random.Random(13)
    samples = ["4111111111111111", "-5500005555555559", "123456789", "1733450000000"]
    for _ in range(20000):
        digits = rng.choice("123456789") + "".join(
            rng.choice("0123456789") for _ in range(rng.randrange(0, 40))
        )
        samples.append(("-" if rng.random() < 0.1 else "") + digits)
    for number in samples:
        _, found = masker.mask_text(number)
        assert not found or may_hold_a_card(number), (number, found)
