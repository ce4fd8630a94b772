"""Probe P4 of the Postgres masks (helper pgwhole) against the real stack
(tests/adversary.py: a gateway whose upstream credential is the `postgres` SUPERUSER), as a
reader outside pii-readers.

A question about a whole document. The proxy masks a JSON key or XML element named like a
sensitive column in the document it sends (`{"password": "[REDACTED]"}`), and lineage
names `profile->>'password'` as password; but the document taken whole names no sensitive
column, so `WHERE profile::text LIKE '%"password": "h%'`, `ORDER BY profile`,
`md5(profile::text) = ...`, `profile @> '{"password": ...}'`, a window or DISTINCT ON over
it, a HAVING over string_agg(profile::text, ...), the same through a CTE, a sub-query, a
view, a domain or an array of documents, an XML page or a json column, each counted rows
by the password inside it; count(DISTINCT profile) came back (two documents alike but for
their passwords). Now the proxy lists the
database's document columns (json, jsonb, xml, arrays and domains of them) to the policy
(view_columns carrying "{}", proxies/postgres/columns.py), lineage tells a column met
whole from one met through a constant key, path or position (pdp/sql/lineage.py `keyed`),
and the policy judges a document met whole as a sensitive column: questions refused
(equality as data.portcullis.oracle.equality says), an aggregate over it masked whole.
The document itself (as text too: its keys masked), its keys and its shape are still read.
"""

from __future__ import annotations

import pytest
from adversary import assert_no_secret, bind, describe, execute, parse, sync
from pg_probe_stack import arena_fixture, probe_client, reader_fixture

pytestmark = pytest.mark.integration

DOCUMENTS = """
CREATE TABLE people (id int, profile jsonb, doc json, page xml);
INSERT INTO people VALUES
  (1, '{"password": "hunter2-json", "status": "ok"}', '{"password": "hunter2-doc", "n": 1}',
   '<user><password>hunter2-xml</password></user>'),
  (2, '{"password": "zzz", "status": "ok"}', '{"password": "zzz", "n": 2}',
   '<user><password>zzz</password></user>');
CREATE VIEW people_v AS SELECT id, profile AS prof FROM people;
CREATE VIEW people_t AS SELECT id, profile::text AS ptext FROM people;
CREATE DOMAIN doc_d AS jsonb;
CREATE TABLE wrapped (id int, d doc_d, ds doc_d[], docs jsonb[]);
INSERT INTO wrapped VALUES (1, '{"password": "hunter2-d"}',
  ARRAY['{"password": "hunter2-ds"}'::doc_d], ARRAY['{"password": "hunter2-docs"}'::jsonb]);
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE TABLE kv (id int, attrs hstore);
INSERT INTO kv VALUES (1, 'password=>hunter2-hs, status=>ok');
CREATE TABLE cards (id int, info jsonb);
INSERT INTO cards VALUES (1, '{"ssn": "123-45-6789", "status": "ok"}');
"""


arena = arena_fixture(DOCUMENTS)
reader = reader_fixture("mask-p4")
client = probe_client("mask-p4")


# each gave an answer that depends on the password inside a document (count 1 when it
# starts with `h`, the rows in its order, ...) before
QUESTIONS = [
    'SELECT count(*) FROM people WHERE profile::text LIKE \'%"password": "h%\'',
    "SELECT count(*) FROM people WHERE PROFILE::TEXT ~ 'hunter2'",
    "SELECT count(*) FROM public.people p WHERE p.profile::text ILIKE '%HUNTER2%'",
    "SELECT count(*) FROM people WHERE profile #>> '{}' LIKE '%hunter2%'",
    "SELECT count(*) FROM people WHERE jsonb_path_query_first(profile, '$')::text LIKE '%h%'",
    "SELECT count(*) FROM people WHERE md5(profile::text)"
    ' = md5(\'{"status": "ok", "password": "hunter2-json"}\')',
    "SELECT count(*) FROM people WHERE length(profile::text) > 44",
    'SELECT count(*) FROM people WHERE profile @> \'{"password": "hunter2-json"}\'',
    "SELECT count(*) FROM people WHERE profile ? 'password'",
    'SELECT count(*) FROM people WHERE profile > \'{"password": "h", "status": "ok"}\'',
    "SELECT id FROM people ORDER BY profile",
    "SELECT id FROM people ORDER BY 2, 1",  # not a column: refused as before
    "SELECT id, profile FROM people ORDER BY 2",
    "SELECT DISTINCT ON (profile) id FROM people",
    "SELECT id, row_number() OVER (PARTITION BY profile) FROM people",
    "SELECT id, rank() OVER (ORDER BY profile) FROM people",
    "SELECT count(*) FROM people GROUP BY profile->>'status'"
    " HAVING string_agg(profile::text, ',') LIKE '%hunter2%'",
    "SELECT count(*) FROM people WHERE CASE WHEN profile::text LIKE '%h%' THEN true END",
    "WITH x AS (SELECT profile AS p FROM people) SELECT count(*) FROM x WHERE p::text LIKE '%h%'",
    "SELECT count(*) FROM (SELECT profile AS p FROM people) s WHERE s.p::text LIKE '%hunter%'",
    "SELECT count(*) FROM people_v WHERE prof::text LIKE '%hunter2%'",
    "SELECT count(*) FROM people_t WHERE ptext LIKE '%hunter2%'",
    "SELECT count(*) FROM people WHERE doc::text LIKE '%hunter2%'",
    "SELECT count(*) FROM people WHERE page::text LIKE '%<password>h%'",
    "SELECT count(*) FROM wrapped WHERE d::text LIKE '%hunter2%'",
    "SELECT count(*) FROM wrapped WHERE ds::text LIKE '%hunter2%'",
    "SELECT count(*) FROM wrapped WHERE docs[1]::text LIKE '%hunter2%'",
    "SELECT count(*) FROM people WHERE row_to_json(people)::text LIKE '%hunter2%'",
    "SELECT format('%s', profile) FROM people",  # format may fail: a partial use
    "SELECT count(*) FROM kv WHERE attrs::text LIKE '%hunter2%'",
    "SELECT count(*) FROM kv WHERE attrs @> 'password=>hunter2-hs'",
    "DECLARE p4c CURSOR WITH HOLD FOR SELECT id FROM people ORDER BY profile",
    "COPY (SELECT id FROM people WHERE profile::text LIKE '%hunter2%') TO STDOUT",
    "PREPARE p4q AS SELECT count(*) FROM people WHERE profile::text LIKE $1",
    "EXPLAIN ANALYZE SELECT id FROM people WHERE profile::text LIKE '%hunter2%'",
    # which one comes back answers `>`: the ssn is compared before the status, which shows
    'SELECT greatest(info, \'{"ssn": "2", "status": "zz"}\'::jsonb) FROM cards',
    'SELECT least(info, \'{"ssn": "2", "status": "zz"}\') FROM cards',
    "SELECT count(*) FROM people WHERE (SELECT bool_or(p::text LIKE '%h%')"
    " FROM unnest(ARRAY[profile]) p)",
]


@pytest.mark.parametrize("sql", QUESTIONS)
def test_a_question_about_a_whole_document_is_refused(reader, sql) -> None:
    answer = reader.query(sql)
    assert answer.errors, answer.rows
    assert_no_secret(answer)


def test_a_question_about_a_whole_document_is_refused_in_the_extended_protocol(reader) -> None:
    sql = "SELECT count(*) FROM people WHERE profile::text LIKE '%hunter2%'"
    answer = reader.send(parse("", sql), bind("", ""), describe("P", ""), execute(), sync())
    assert answer.errors, answer.rows
    assert_no_secret(answer)


# values computed from a whole document: how many distinct documents there are (an
# aggregate), a comparison of it
COMPUTED = [
    "SELECT count(DISTINCT profile) FROM people",
    "SELECT count(DISTINCT profile::text) FROM people",
    'SELECT profile = \'{"password": "zzz", "status": "ok"}\'::jsonb FROM people',
    "SELECT json_build_object('k', profile) FROM people",
    "SELECT jsonb_build_array(profile, 1) FROM people",
    "SELECT array_to_string(ARRAY[profile::text], ',') FROM people",
]


@pytest.mark.parametrize("sql", COMPUTED)
def test_a_value_computed_from_a_whole_document_is_masked(reader, sql) -> None:
    answer = reader.query(sql)
    assert not answer.errors, answer.errors
    assert answer.rows
    for row in answer.rows:
        assert row[0] in (None, b"[REDACTED]"), answer.rows
    assert_no_secret(answer)


# what a reader still does with documents: the document itself (its keys masked), a key of
# it, how many keys it has, whether it is NULL
STILL_ANSWERED = [
    ("SELECT profile FROM people WHERE id = 1",
     [[b'{"status": "ok", "password": "[REDACTED]"}']]),
    ("SELECT profile::text FROM people WHERE id = 1",
     [[b'{"status": "ok", "password": "[REDACTED]"}']]),
    # (UNION, not ALL, sorts the documents: an ordering of them since test_pg_mask_probe_p11)
    ("SELECT profile FROM people WHERE id = 1 UNION ALL SELECT NULL",
     [[b'{"status": "ok", "password": "[REDACTED]"}'], [None]]),
    ("SELECT count(*) FROM people WHERE profile->>'status' = 'ok'", [[b"2"]]),
    # (ORDER BY profile->>'status' is a question now: a key's value may be a sub-document
    # holding masked keys, tests/test_pg_mask_probe_p6.py; a key cast to a number is not)
    ("SELECT id FROM people ORDER BY (doc->>'n')::int DESC, id", [[b"2"], [b"1"]]),
    ("SELECT count(*) FROM people WHERE profile['status'] = '\"ok\"'", [[b"2"]]),
    ("SELECT count(*) FROM people WHERE (doc->>'n')::int > 1", [[b"1"]]),
    ("SELECT count(*) FROM people WHERE profile @? '$.status'", [[b"2"]]),
    ("SELECT count(*) FROM people WHERE profile @> '{\"status\": \"ok\"}'", [[b"2"]]),
    ("SELECT count(*) FROM people WHERE profile ? 'status'", [[b"2"]]),
    ("SELECT count(*) FROM people WHERE profile IS NOT NULL", [[b"2"]]),
    ("SELECT attrs -> 'status' FROM kv WHERE attrs ? 'status'", [[b"ok"]]),
    ("SELECT count(*) FROM people, jsonb_each(profile) e", [[b"4"]]),
    ("SELECT profile->>'status' FROM people_v, people WHERE people.id = 1 AND people_v.id = 1",
     [[b"ok"]]),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "rows"), STILL_ANSWERED)
def test_a_document_is_still_read_by_its_keys(reader, sql, rows) -> None:
    answer = reader.query(sql)
    assert not answer.errors, answer.errors
    assert answer.rows == rows
    assert_no_secret(answer)


def test_a_whole_document_is_not_stored_where_it_is_no_longer_known_as_one(arena) -> None:
    # a dba outside pii-readers is masked like a reader, and may write
    dba = client(arena, ("dba",))
    try:
        answer = dba.query("CREATE TEMP TABLE p4_copy AS SELECT profile::text AS t FROM people")
        assert answer.errors, answer.tags
        assert "stores the whole of document column profile" in answer.errors[0]
        asked = dba.query("SELECT count(*) FROM p4_copy WHERE t LIKE '%hunter2%'")
        assert asked.errors, asked.rows
        assert_no_secret(asked)
    finally:
        dba.close()


def test_an_index_on_a_document_column_waits_for_approval(arena) -> None:
    # a read in the index's order shows the order of the values its masked keys hold
    dba = client(arena, ("dba",))
    try:
        answer = dba.query("CREATE INDEX p4_by_profile ON people (profile)")
        assert answer.errors, answer.tags
        assert "approval required" in answer.errors[0], answer.errors
    finally:
        dba.close()
    with arena.admin() as admin:
        made = admin.execute("SELECT count(*) FROM pg_indexes WHERE indexname = 'p4_by_profile'")
        assert made.fetchone() == (0,)
