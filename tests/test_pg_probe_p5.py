"""Probe P5's findings against the real stack (tests/adversary.py: a gateway whose upstream
credential is the `postgres` SUPERUSER; customers.password is a sensitive column, the note
holds a card number only the value detectors find).

- A dba outside pii-readers (masked like a reader, DDL without approval) stored or computed
  masked values where they are read unmasked: a generated column over password, a rule or
  trigger copying it, a function made mid-session, a renamed column the masks no longer
  name, a CHECK constraint or index expression as an oracle. Now only listed DDL without
  expressions over columns runs without approval for everyone not in pii-readers
  (rego/portcullis/postgres_lineage.rego), and renaming a sensitive column needs approval
  for every dba. The arena's approvals time out after a second: refused.
"""

from __future__ import annotations

import pytest
from adversary import (
    CARD,
    Answer,
    assert_no_secret,
    bind,
    describe,
    execute,
    parse,
    sync,
)
from pg_probe_stack import arena_fixture, probe_client

pytestmark = pytest.mark.integration


arena = arena_fixture()
client = probe_client("p5", ("dba",))


# (the DDL, then the read that would show what it stored or renamed)
LAUNDERING = [
    (
        "ALTER TABLE customers ADD COLUMN pw2 text GENERATED ALWAYS AS (password) STORED",
        "SELECT pw2 FROM customers",
    ),
    (
        "CREATE FUNCTION public.p5f() RETURNS text LANGUAGE sql"
        " AS $$ SELECT string_agg(password, ',') FROM customers $$",
        "SELECT p5f()",
    ),
    ("ALTER TABLE customers RENAME COLUMN password TO pw", "SELECT pw FROM customers"),
    ("ALTER TABLE customers RENAME password TO pw", "SELECT pw FROM customers"),
    (
        "CREATE TEMP TABLE sink (v text); CREATE RULE p5r AS ON INSERT TO sink"
        " DO INSTEAD SELECT password FROM customers",
        "INSERT INTO sink VALUES ('x')",
    ),
    (
        "CREATE VIEW public.p5v AS SELECT password AS pw FROM customers",
        "SELECT pw FROM p5v",
    ),
    (
        "ALTER TABLE customers ALTER COLUMN note TYPE text USING reverse(note)",
        "SELECT note FROM customers",
    ),
]

# DDL that runs code later, answers a question, or renames what the masks name
NEEDS_APPROVAL = [
    "CREATE TRIGGER p5t BEFORE INSERT ON audit_log FOR EACH ROW"
    " EXECUTE FUNCTION suppress_redundant_updates_trigger()",
    "ALTER TABLE customers ADD CONSTRAINT p5c CHECK (password <> 'hunter2-ada')",
    "CREATE INDEX p5i ON customers ((substr(password, 1, 1)))",
    "CREATE TEMP TABLE p5g (g text PRIMARY KEY); ALTER TABLE customers"
    " ADD CONSTRAINT p5fk FOREIGN KEY (password) REFERENCES p5g (g)",
    "CREATE UNIQUE INDEX p5u ON customers (id) WHERE password LIKE 'h%'",
    "ALTER TABLE customers RENAME TO clients",
    "ALTER VIEW innocent RENAME TO guilty",
    "COMMENT ON COLUMN customers.password IS 'x'",
    "CREATE CAST (int AS bool) WITH INOUT",
    "CREATE OPERATOR public.=== (LEFTARG = text, RIGHTARG = text, FUNCTION = texteq)",
    "CREATE POLICY p5p ON customers USING (true)",
    "CREATE PUBLICATION p5pub FOR TABLE customers",
    "CREATE PROCEDURE public.p5proc() LANGUAGE sql AS $$ SELECT 1 $$",
]


@pytest.mark.parametrize(("ddl", "read"), LAUNDERING)
def test_a_masked_dba_cannot_store_or_rename_a_masked_value_unreviewed(
    arena, ddl: str, read: str
) -> None:
    c = client(arena)
    try:
        answer = c.query(ddl)
        assert answer.refused, answer.messages
        assert_no_secret(c.query(read))
    finally:
        c.close()


@pytest.mark.parametrize("ddl", NEEDS_APPROVAL)
def test_code_or_lineage_changing_ddl_needs_approval_under_the_masks(arena, ddl: str) -> None:
    c = client(arena)
    try:
        answer = c.query(ddl)
        assert answer.refused, answer.messages
        assert any("approval" in e for e in answer.errors) or answer.closed, answer.errors
    finally:
        c.close()


def test_a_pii_reading_dba_renames_a_sensitive_column_only_once_approved(arena) -> None:
    c = client(arena, ("dba", "pii-readers"))
    try:
        answer = c.query("ALTER TABLE customers RENAME COLUMN password TO pw")
        assert answer.refused, answer.messages
        # a column the masks do not name is renamed as before
        ok = c.query("CREATE TEMP TABLE p5n (a text); ALTER TABLE p5n RENAME COLUMN a TO b")
        assert not ok.errors, ok.errors
    finally:
        c.close()


def test_listed_ddl_runs_for_a_masked_dba(arena) -> None:
    c = client(arena)
    try:
        for sql in (
            "CREATE TEMP TABLE p5ok (id int PRIMARY KEY, v text DEFAULT 'x')",
            "ALTER TABLE p5ok ADD COLUMN w text, ALTER COLUMN v SET NOT NULL",
            "CREATE INDEX ON p5ok (w)",
            "CREATE TEMP SEQUENCE p5seq",
            "CREATE TEMP TABLE p5copy AS SELECT id, name FROM customers",
        ):
            answer = c.query(sql)
            assert not answer.errors, (sql, answer.errors)
    finally:
        c.close()


# --- values the detectors did not read -----------------------------------------------
#
# A card stored as a JSON number in a json/jsonb column went to a reader as it was
# (values.py read json strings only), and a citext, xml or record value (citext's OID is
# the database's, not a fixed one) was never read by the detectors at all.

DOCS = """
CREATE EXTENSION IF NOT EXISTS citext;
CREATE DOMAIN p5memo AS text;
CREATE TABLE IF NOT EXISTS p5docs (
  id int PRIMARY KEY, j json, jb jsonb, ci citext, memo p5memo, x xml, cis citext[]);
TRUNCATE p5docs;
INSERT INTO p5docs VALUES (1, '{"paid": 4111111111111111, "n": 12}',
  '{"paid": 4111111111111111, "n": 12, "f": 4111111111111111.0}',
  'card 4111 1111 1111 1111', 'card 4111 1111 1111 1111', '<n>card 4111 1111 1111 1111</n>',
  ARRAY['ada@example.com']::citext[]);
"""

DIGITS = b"4111111111111111"


@pytest.fixture(scope="module")
def docs(arena):
    with arena.admin() as admin:
        admin.execute(DOCS)
    return arena


def assert_masked(answer: Answer) -> None:
    assert not answer.refused, answer.messages
    assert answer.rows, answer.messages
    for secret in (CARD, DIGITS, b"4.111111111111111e+15", b"ada@example.com"):
        assert secret not in answer.raw, (secret, answer.messages)


@pytest.mark.parametrize("column", ["j", "jb", "ci", "memo", "x", "cis"])
@pytest.mark.parametrize("groups", [("readonly",), ("dba",)])
def test_the_detectors_read_json_numbers_and_text_of_any_type(docs, column, groups) -> None:
    c = client(docs, groups)
    try:
        sql = f"SELECT id, {column} FROM p5docs"
        assert_masked(c.query(sql))
        binary = c.send(
            parse("", sql), bind("", "", result_format=1), describe("P", ""), execute(), sync()
        )
        assert_masked(binary)
    finally:
        c.close()


def test_json_numbers_without_a_card_stay_numbers(docs) -> None:
    c = client(docs)
    try:
        answer = c.query("SELECT jb FROM p5docs")
        (value,) = answer.rows[0]
        assert value is not None and b'"n": 12' in value, value
    finally:
        c.close()
