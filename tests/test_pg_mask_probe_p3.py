"""Probe P3 of the Postgres masks (helper pgmask3) against the real stack
(tests/adversary.py: a gateway whose upstream credential is the `postgres` SUPERUSER), as a
reader outside pii-readers.

A document's values asked about. `profile->>'password'` is the password (lineage names a
constant key as a column), but a path or an expansion of the document reached the value
under any key with nothing sensitive named: `WHERE profile @? '$ ? (@.password starts
with "h")'`, `@@`, jsonb_path_exists over `$.*`, a jsonb_path_query in FROM whose filter
decides the rows, `jsonb_each_text(profile) e WHERE e.value LIKE 'h%'`, jsonb_pretty's
text in a LIKE; for XML, xpath_exists, XMLEXISTS and XMLTABLE row filters. Each counted
rows by the password inside the document. pdp/sql/lineage.py now reads a constant jsonpath
for the keys it names (its filters' too: `$.password ? (...)` is a question about
password) and takes a path reaching any key (`.*`, `.**`, `.keyvalue()`, one computed at
run time), an expansion of a document into keys, values or records, and XML paths as
giving any column's value: masked whole, and a question about any column in a condition.
How many keys or elements a document has is still no question.
"""

from __future__ import annotations

import pytest
from adversary import assert_no_secret
from pg_probe_stack import arena_fixture, reader_fixture

pytestmark = pytest.mark.integration

DOCUMENTS = """
CREATE TABLE people (id int, profile jsonb, page xml);
INSERT INTO people VALUES (1, '{"password": "hunter2-json", "status": "ok", "tags": ["ci"]}',
  '<user><password>hunter2-xml</password></user>');
"""


arena = arena_fixture(DOCUMENTS)
reader = reader_fixture("mask-p3")


# each gave count 1 when the password inside the document starts with `h`
QUESTIONS = [
    "SELECT count(*) FROM people WHERE profile @? '$ ? (@.password starts with \"h\")'",
    "SELECT count(*) FROM people WHERE profile @? '$.password ? (@ like_regex \"^h\")'",
    'SELECT count(*) FROM people WHERE profile @? \'$."pass\\u0077ord" ? (@ starts with "h")\'',
    "SELECT count(*) FROM people WHERE profile @@ '$.password starts with \"h\"'",
    "SELECT count(*) FROM people WHERE profile @? '$.** ? (@ starts with \"hunter2-j\")'",
    "SELECT count(*) FROM people WHERE jsonb_path_exists(profile, '$.* ? (@ starts with \"h\")')",
    "SELECT count(*) FROM people"
    " WHERE jsonb_path_match(profile, 'exists($.password ? (@ starts with \"h\"))')",
    "SELECT count(*) FROM people, jsonb_path_query(profile, '$.* ? (@ starts with \"h\")') x",
    "SELECT count(*) FROM people, jsonb_each_text(profile) e WHERE e.value LIKE 'h%'",
    "SELECT count(*) FROM people"
    " WHERE (SELECT bool_or(v LIKE 'h%') FROM jsonb_each_text(profile) AS t(k, v))",
    "SELECT count(*) FROM people WHERE jsonb_pretty(profile) LIKE '%hunter2%'",
    "SELECT count(*) FROM people WHERE xpath_exists('/user/password[starts-with(., \"h\")]', page)",
    "SELECT count(*) FROM people"
    " WHERE xmlexists('/user/password[starts-with(., \"h\")]' PASSING page)",
    "SELECT count(*) FROM people, xmltable('/user[starts-with(password, \"h\")]'"
    " PASSING page COLUMNS p text PATH 'password') x",
]


@pytest.mark.parametrize("sql", QUESTIONS)
def test_a_question_about_a_value_inside_a_document_is_refused(reader, sql) -> None:
    answer = reader.query(sql)
    assert answer.errors, answer.rows
    assert_no_secret(answer)


# what a reader still does with documents: keys named, a path naming harmless keys, the
# document's own keys masked, how many keys there are
STILL_ANSWERED = [
    ("SELECT count(*) FROM people WHERE profile->>'status' = 'ok'", [[b"1"]]),
    ("SELECT count(*) FROM people WHERE jsonb_path_exists(profile, '$.tags[*] ? (@ == \"ci\")')",
     [[b"1"]]),
    ("SELECT count(*) FROM people WHERE profile @? '$.status'", [[b"1"]]),
    ("SELECT count(*) FROM people, jsonb_each_text(profile) e", [[b"3"]]),
    ("SELECT profile FROM people",
     [[b'{"tags": ["ci"], "status": "ok", "password": "[REDACTED]"}']]),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "rows"), STILL_ANSWERED)
def test_a_document_is_still_read_by_its_harmless_keys(reader, sql, rows) -> None:
    answer = reader.query(sql)
    assert not answer.errors, answer.errors
    assert answer.rows == rows
    assert_no_secret(answer)


def test_a_value_a_path_reaches_is_masked(reader) -> None:
    answer = reader.query("SELECT e.key, e.value FROM people, jsonb_each_text(profile) e")
    assert not answer.errors, answer.errors
    assert b"hunter2" not in answer.raw, answer.rows
    assert_no_secret(answer)
