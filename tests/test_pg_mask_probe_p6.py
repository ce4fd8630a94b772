"""Probe P6 of the Postgres masks (helper pgattack5) against the real stack
(tests/adversary.py: a gateway whose upstream credential is the `postgres` SUPERUSER), as a
reader outside pii-readers.

A sub-document under a harmless key. Lineage met a JSON document "keyed" (not whole) when a
constant key was taken out of it, and the policy judged a keyed column by the key's name:
`profile->>'contact' LIKE '%hunter2%'` counted rows by the password inside
{"contact": {"password": ...}} (so did `#>>`, `profile['contact']`, jsonb_path_query_first,
jsonb_extract_path_text, `->` chains, ORDER BY and length()), the value under a key being a
document of its own. Now a value taken out under a key is met whole (pdp/sql/lineage.py):
compared with = to a value it is still keyed (`profile->>'status' = 'ok'`), and so is one
cast to a number, date or boolean straight from the document (`(doc->>'n')::int > 1`): no
JSON object, array or XML element reads as one, so neither the value nor the cast's
failure says anything of the masked keys a sub-document holds.

JSON in a text column. `notes` (text) holding {"password": ...} is sent with the key
masked (proxies/postgres/values.py), but `(notes::jsonb)->>'contact' LIKE ...` asked about
it as about a document: a column the statement casts to json, jsonb, xml or hstore (or
reads as one: jsonb_in(notes::cstring), XMLPARSE) is met as a document (lineage's
`document`, postgres_lineage.rego). Left: `notes LIKE '%"password": "h%'` on the text
itself, as any condition on free text the value detectors read only in the answer.
"""

from __future__ import annotations

import pytest
from adversary import assert_no_secret, bind, copied, describe, execute, parse, sync
from pg_probe_stack import arena_fixture, reader_fixture

pytestmark = pytest.mark.integration

PEOPLE = """
CREATE TABLE people (id int, profile jsonb, doc json, notes text, v varchar(300));
INSERT INTO people VALUES
  (1, '{"status": "ok", "n": 1,
        "contact": {"email": "ada@example.com", "password": "hunter2-nested"}}',
   '{"n": 1, "contact": {"password": "hunter2-json"}}',
   '{"n": 1, "contact": {"password": "hunter2-notes"}}',
   '{"contact": {"password": "hunter2-varchar"}}'),
  (2, '{"status": "ok", "n": 2, "contact": {"password": "zzz"}}', '{"n": 2, "contact": {}}',
   '{"n": 2}', '{}');
"""

arena = arena_fixture(PEOPLE)
reader = reader_fixture("mask-p6")

# each counted (or ordered) rows by the password inside a sub-document before
QUESTIONS = [
    "SELECT id FROM people WHERE profile->>'contact' LIKE '%hunter2%'",
    "SELECT id FROM people WHERE profile->'contact'::text LIKE '%hunter2%'",
    "SELECT id FROM people WHERE (profile->'contact')::text ~ 'hunter'",
    "SELECT id FROM people WHERE profile #>> '{contact}' LIKE '%hunter2%'",
    "SELECT id FROM people WHERE profile #> '{contact}' > '{\"password\": \"h\"}'",
    "SELECT id FROM people WHERE profile['contact']::text LIKE '%hunter2%'",
    "SELECT id FROM people WHERE jsonb_path_query_first(profile, '$.contact')::text LIKE '%h%'",
    "SELECT id FROM people WHERE jsonb_extract_path_text(profile, 'contact') LIKE '%hunter%'",
    "SELECT id FROM people WHERE length(profile->>'contact') > 40",
    "SELECT id FROM people ORDER BY profile->>'contact'",
    "SELECT id FROM people WHERE doc->>'contact' LIKE '%hunter2%'",
    "SELECT id FROM people WHERE (substr(doc->>'contact', 14, 1))::int > 1",
    "SELECT id FROM people p WHERE (p.profile -> 'contact' ->> 'email') IS NOT NULL"
    " AND p.profile->>'contact' ILIKE '%HUNTER2%'",
    "SELECT count(DISTINCT profile->'contact') FROM people WHERE profile->>'contact' > '{'",
    # JSON held in text, read as a document
    "SELECT id FROM people WHERE (notes::jsonb)->>'contact' LIKE '%hunter2%'",
    "SELECT id FROM people WHERE (notes::json)->'contact'::text LIKE '%hunter2%'",
    "SELECT id FROM people WHERE (v::jsonb) #>> '{contact}' LIKE '%hunter2%'",
    "SELECT id FROM people WHERE CAST(notes AS jsonb)::text LIKE '%hunter2%'",
    "SELECT id FROM people WHERE jsonb_extract_path_text(notes::jsonb, 'contact') > '{\"p'",
    "SELECT id FROM people ORDER BY (notes::jsonb)->'contact'",
    # ...read as one by the types' input functions, or XMLPARSE
    "SELECT id FROM people WHERE jsonb_in(notes::cstring)->>'contact' LIKE '%hunter2%'",
    "SELECT id FROM people WHERE json_in(v::cstring)->>'contact' LIKE '%hunter2%'",
    "SELECT id FROM people WHERE xmlparse(document '<a>' || notes || '</a>')::text"
    " LIKE '%hunter2%'",
]


@pytest.mark.parametrize("sql", QUESTIONS)
def test_a_question_about_a_sub_document_is_denied(reader, sql) -> None:
    answer = reader.query(sql)
    assert answer.errors, answer.rows
    assert "denied by policy" in answer.errors[0], answer.errors
    assert_no_secret(answer, b"hunter2")


# what a reader still does: a key compared with =, a key cast to a number, key tests, the
# document and its sub-document sent with their masked keys masked
STILL_ANSWERED = [
    ("SELECT id FROM people WHERE profile->>'status' = 'ok' ORDER BY id", [[b"1"], [b"2"]]),
    ("SELECT id FROM people WHERE profile['status'] = '\"ok\"' ORDER BY id", [[b"1"], [b"2"]]),
    ("SELECT id FROM people WHERE (doc->>'n')::int > 1", [[b"2"]]),
    ("SELECT id FROM people ORDER BY (profile->>'n')::int DESC", [[b"2"], [b"1"]]),
    ("SELECT id FROM people WHERE ((notes::jsonb)->>'n')::int = 2", [[b"2"]]),
    ("SELECT id FROM people WHERE profile ? 'contact' ORDER BY id", [[b"1"], [b"2"]]),
    (
        "SELECT profile->'contact' FROM people WHERE id = 1",
        [[b'{"email": "[REDACTED]", "password": "[REDACTED]"}']],
    ),
]


@pytest.mark.parametrize(("sql", "rows"), STILL_ANSWERED)
def test_a_document_is_still_read_by_its_keys(reader, sql, rows) -> None:
    answer = reader.query(sql)
    assert not answer.errors, answer.errors
    assert answer.rows == rows
    assert_no_secret(answer, b"hunter2")


# A COPY row's labels were read in the row as it is spelt: CSV quotes a field holding a
# comma (`"password: a,b"`), and a comma ended the label's value, so what followed it went
# out; the text format escapes a line break (`x\npassword: a`), and the escape's `n` kept
# the label from being read at all. Each field is now read back and masked as a SELECT
# masks the value (proxies/postgres/values.py _labelled_fields).
LABELLED_NOTES = """
CREATE TABLE labelled (id int, note text);
INSERT INTO labelled VALUES
  (1, 'password: hunter2a,hunter2b'),
  (2, 'password: "hunter2c,hunter2d"'),
  (3, E'x\\npassword: hunter2e,hunter2f\\ny'),
  (4, E'deploy\\r\\npassword: hunter2g, hunter2h\\r\\nok'),
  (5, 'pw: hunter2i;k');
"""


@pytest.fixture(scope="module")
def labelled(arena):
    with arena.admin() as admin:
        admin.execute(LABELLED_NOTES)
    yield
    with arena.admin() as admin:
        admin.execute("DROP TABLE labelled")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT id, note FROM labelled ORDER BY id",
        "COPY labelled TO STDOUT",
        "COPY labelled TO STDOUT (FORMAT csv)",
        "COPY labelled TO STDOUT (FORMAT csv, HEADER)",
        "COPY (SELECT note FROM labelled) TO STDOUT",
        "COPY (SELECT note FROM labelled) TO STDOUT (FORMAT csv)",
        "COPY (SELECT note, id, note FROM labelled) TO STDOUT (FORMAT csv)",
    ],
)
def test_a_labelled_value_in_a_copy_field_is_masked_whole(labelled, reader, sql) -> None:
    answer = reader.query(sql)
    assert not answer.errors, answer.errors
    assert b"hunter2" not in answer.raw, answer.messages
    assert_no_secret(answer)


def test_a_copy_row_stays_a_row_of_its_format(labelled, reader) -> None:
    csv = copied(reader.query("COPY labelled TO STDOUT (FORMAT csv)"))
    assert csv[0] == b'1,"password: [REDACTED]"\n'
    assert csv[2] == b'3,"x\npassword: [REDACTED]\ny"\n'
    text = copied(reader.query("COPY labelled TO STDOUT"))
    assert text[0] == b"1\tpassword: [REDACTED]\n"
    assert text[2] == b"3\tx\\npassword: [REDACTED]\\ny\n"


@pytest.mark.parametrize("result_format", [0, 1])
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT profile->'contact', doc->'contact', (notes::jsonb)->'contact' FROM people",
        "SELECT profile #> '{contact}', jsonb_path_query_first(profile, '$.contact') FROM people",
        "SELECT max(profile->>'contact'), min(doc->>'contact') FROM people",
    ],
)
def test_a_sub_document_sent_in_either_format_has_its_keys_masked(
    reader, sql, result_format
) -> None:
    answer = reader.send(
        parse("", sql), bind("", "", result_format), describe("P", ""), execute(), sync()
    )
    assert not answer.errors, answer.errors
    assert b"hunter2" not in answer.raw
    assert_no_secret(answer)
