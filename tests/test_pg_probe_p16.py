"""Probe P16 (helper pgmask) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER; customers.password is a sensitive column
no value detector recognises), as a reader outside pii-readers.

Row counts are answers. A set operation or DISTINCT compares rows for equality, and how
many rows come back says whether two values were equal: `SELECT password::varchar(1) FROM
customers WHERE id = 1 UNION SELECT 'h'` gave one row when Ada's password starts with
`h` and two otherwise (its one output masked, its count not), and `left(password, 2)`,
`left(password, 3)` ... read it a character at a time. GROUP BY of such a value was
already a question (denied); DISTINCT, UNION, INTERSECT, EXCEPT (and their ALL but UNION
ALL) now record each output they compare as a GROUP BY of it would (pdp/sql/lineage.py):
the column itself stays an equality test (allowed while oracle.equality is), anything
computed from it is a question, denied.

A sensitive name is a key too. The proxy masks a JSON document's keys named like a
sensitive column (`{"password": "[REDACTED]"}`), but `profile->>'password'`,
`profile #>> '{password}'`, `profile['password']`, `jsonb_extract_path_text(profile,
'password')` took the value out of the document, by a key no mask read: given in clear
(`coalesce(...)`, `array_agg(...)` alike), and compared (`< 'i'`) as nothing sensitive;
`profile::text` gave the whole document as text, read by the detectors only. A field of a
composite column (`(p.info).password AS x`) alike, and the composite column itself
(`SELECT info`: `(zed,hunter2-zed)`, a record whose field names no rule reads): a column
of a composite type (an array of one, a domain over one) is now read by the proxy as
derived from any column (proxies/postgres/columns.py), masked whole outside pii-readers,
and sent to the policy as a column carrying any (view_columns: `info::text LIKE '(zed,h%'`
is refused as a condition on a sensitive column).
Lineage now counts a constant key, path element or field name as a column of that name (a
computed key of the operators as any: masked whole), and a text value that is a JSON object
or array has its keys masked as a document's.
"""

from __future__ import annotations

import pytest
from adversary import assert_no_secret, ready_client
from pg_probe_stack import arena_fixture

pytestmark = pytest.mark.integration


PEOPLE = """
CREATE TYPE contact AS (nick text, password text);
CREATE DOMAIN contact_d AS contact;
CREATE TABLE people (id int, info contact, profile jsonb, infos contact[], d contact_d);
INSERT INTO people VALUES
  (1, ROW('zed', 'hunter2-zed'), '{"password": "hunter2-json", "status": "ok"}',
   ARRAY[ROW('arr', 'hunter2-arr')::contact], ROW('dom', 'hunter2-dom'));
"""

arena = arena_fixture(PEOPLE)


@pytest.fixture
def reader(arena):
    c = ready_client(arena, ("readonly",), "p16")
    yield c
    c.close()


# each holds {guess}: the row count told whether the first characters of Ada's password
# are the guess ('h' right, 'x' wrong)
COUNTING = [
    "SELECT password::varchar(1) FROM customers WHERE id = 1 UNION SELECT '{guess}'",
    "SELECT left(password, 1) FROM customers WHERE id = 1 INTERSECT SELECT '{guess}'",
    "SELECT '{guess}' EXCEPT SELECT substr(password, 1, 1) FROM customers WHERE id = 1",
    "SELECT left(password, 1) FROM customers WHERE id = 1 INTERSECT ALL SELECT '{guess}'",
    "SELECT DISTINCT v FROM (SELECT left(password, 1) AS v FROM customers WHERE id = 1"
    " UNION ALL SELECT '{guess}') s",
    "SELECT count(*) FROM (SELECT DISTINCT v FROM (SELECT left(password, 1) AS v"
    " FROM customers WHERE id = 1 UNION ALL SELECT '{guess}') s) q",
    "(SELECT left(password, 1) FROM customers WHERE id = 1 UNION ALL SELECT 'q')"
    " UNION SELECT '{guess}'",
    "SELECT * FROM (SELECT left(password, 1) FROM customers WHERE id = 1) s UNION SELECT '{guess}'",
    "WITH RECURSIVE r(v) AS (SELECT left(password, 1) FROM customers WHERE id = 1"
    " UNION SELECT '{guess}') SELECT * FROM r",
    "SELECT DISTINCT unnest(ARRAY[left(password, 1), '{guess}']) FROM customers WHERE id = 1",
    "SELECT DISTINCT left(password, 1), 1 FROM customers WHERE id IN (1, 2)",
]


@pytest.mark.parametrize("sql", COUNTING)
def test_a_row_count_answers_no_question_about_a_masked_value(reader, sql: str) -> None:
    right = reader.query(sql.format(guess="h"))
    wrong = reader.query(sql.format(guess="x"))
    assert right.errors and wrong.errors, (len(right.rows), len(wrong.rows))
    assert_no_secret(right)
    assert_no_secret(wrong)


# the column itself compared for equality stays allowed (oracle.equality), and values of
# columns no one masks are grouped as before
ALLOWED = [
    # (a UNION sorts its rows: an ordering since test_pg_mask_probe_p11, refused)
    ("SELECT password FROM customers WHERE password = 'hunter2-ada'", 1),
    ("SELECT DISTINCT password FROM customers", 2),
    ("SELECT DISTINCT name FROM customers", 2),
    ("SELECT DISTINCT upper(name) FROM customers", 2),
    ("SELECT name FROM customers UNION SELECT 'Ada'", 2),
    ("SELECT left(password, 1) FROM customers UNION ALL SELECT 'h'", 3),
    ("SELECT DISTINCT * FROM customers", 2),
]


@pytest.mark.parametrize(("sql", "rows"), ALLOWED)
def test_comparing_a_column_itself_still_runs(reader, sql: str, rows: int) -> None:
    answer = reader.query(sql)
    assert not answer.errors, answer.errors
    assert len(answer.rows) == rows
    assert_no_secret(answer)


# each gave hunter2-json or hunter2-zed in clear, or answered a question about it
KEYED = [
    "SELECT profile->>'password' FROM people",
    "SELECT profile->'password' AS p FROM people",
    "SELECT profile #>> '{password}' FROM people",
    "SELECT profile['password'] FROM people",
    "SELECT coalesce(profile->>'password', '') FROM people",
    "SELECT array_agg(profile->>'password') FROM people",
    "SELECT profile::text FROM people",
    "SELECT (p.info).password AS x FROM people p",
    "SELECT profile->>$$password$$ FROM people",
    "SELECT profile[('pass' || 'word')] FROM people",
    "SELECT profile[k] FROM people, (VALUES ('password')) v(k)",
    "SELECT profile[s] FROM people, unnest(ARRAY['password']) s",
    "SELECT x[k] FROM (SELECT profile AS x FROM people) t, (VALUES ('password')) v(k)",
    "SELECT p.profile[lower('PASSWORD')] FROM people p",
]


@pytest.mark.parametrize("sql", KEYED)
def test_a_sensitive_key_or_field_taken_out_of_its_document_is_masked(reader, sql) -> None:
    answer = reader.query(sql)
    assert b"hunter2" not in answer.raw, answer.rows
    assert_no_secret(answer)


QUESTIONS = [
    "SELECT count(*) FROM people WHERE profile->>'password' < 'i'",
    "SELECT count(*) FROM people WHERE profile #>> '{password}' LIKE 'h%'",
    "SELECT count(*) FROM people WHERE jsonb_extract_path_text(profile, 'password') < 'i'",
    "SELECT count(*) FROM people WHERE (info).password < 'i'",
    "SELECT count(*) FROM people p WHERE (p.info).password >= 'h'",
    "SELECT count(*) FROM people WHERE profile->>('pass' || 'word') < 'i'",
    "SELECT count(*) FROM people WHERE profile[lower('PASSWORD')]::text < '\"i'",
]


@pytest.mark.parametrize("sql", QUESTIONS)
def test_a_sensitive_key_or_field_answers_no_question(reader, sql) -> None:
    answer = reader.query(sql)
    assert answer.errors, answer.rows


def test_other_keys_and_documents_read_as_before(reader) -> None:
    answer = reader.query("SELECT profile->>'status', profile FROM people")
    assert not answer.errors, answer.errors
    assert answer.rows == [[b"ok", b'{"status": "ok", "password": "[REDACTED]"}']]
    assert reader.query("SELECT count(*) FROM people WHERE profile->>'status' = 'ok'").rows == [
        [b"1"]
    ]


COMPOSITE = [
    "SELECT info FROM people",
    "SELECT * FROM people",
    "SELECT p.info AS x FROM people p",
    "SELECT infos FROM people",
    "SELECT d FROM people",
    "SELECT id, info FROM (SELECT * FROM people) s",
]


@pytest.mark.parametrize("sql", COMPOSITE)
def test_a_composite_column_holding_a_sensitive_field_is_masked(reader, sql) -> None:
    answer = reader.query(sql)
    assert not answer.errors, answer.errors
    assert b"hunter2" not in answer.raw, answer.rows
    assert_no_secret(answer)


# the composite's text compared: a question about the password inside it
COMPOSITE_QUESTIONS = [
    "SELECT count(*) FROM people WHERE info::text < '(zed,i'",
    "SELECT count(*) FROM people WHERE info::text LIKE '(zed,h%'",
    "SELECT count(*) FROM people p WHERE p.d::text >= '(dom,h'",
    "SELECT id FROM people ORDER BY info",
]


@pytest.mark.parametrize("sql", COMPOSITE_QUESTIONS)
def test_a_composite_column_answers_no_question(reader, sql) -> None:
    answer = reader.query(sql)
    assert answer.errors, answer.rows
