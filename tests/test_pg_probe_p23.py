"""Probe P23 (helper pgattack7) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER), as a reader outside pii-readers.

Questions about the text the value detectors mask. A column no rule names (a note) may hold
free text the detectors mask inside it in every answer (`nothing to see SSN: [REDACTED]`),
but a condition on it was judged as on any column: `SELECT count(*) FROM customers WHERE
note LIKE '%078-05%'` answered 1 (and '%078-06%' 0), a row count at a time; so did `note ~`,
`note > 'nothing to see SSN: 078'`, `ORDER BY note`, `max(note)` beside a constant (which
of the two came back), and a jsonpath filter over a document's
value (`$.memo ? (@ like_regex "078")`: the document's text). The proxy now lists every
column of a string type to the policy as free text (view_columns carrying "''"), whose
questions are judged as a sensitive column's unless the team lists the name in
postgres.plain_text_columns; a jsonpath asking about a value otherwise than by == meets its
document whole.

And a sub-document compared whole. `profile->'contact' = '{"email": ...}'::jsonb` compared
the masked e-mail under `contact` as `profile->>'status' = 'gold'` compares a status: its
constant's keys are now compared columns (`email = '...'`: refused where
data.portcullis.oracle.equality is false), and a value lineage cannot read (a parameter)
meets the document whole in an equality test.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from adversary import Arena, assert_no_secret, bind, execute, parse, ready_client, running_arena
from pdp_harness import REGO

from proxies.postgres import codec

pytestmark = pytest.mark.integration

SETUP = """
ALTER TABLE customers ADD COLUMN profile jsonb;
ALTER TABLE customers ADD COLUMN tags text[];
UPDATE customers SET note = note || ' SSN: 078-05-1120',
  profile = '{"contact": {"email": "ada@example.com"}, "status": "gold",
              "memo": "SSN: 078-05-1120"}',
  tags = ARRAY['vip', 'SSN: 078-05-1120'] WHERE id = 1;
UPDATE customers SET profile = '{"contact": {"email": "bob@example.org"}, "status": "new"}',
  tags = ARRAY['new'] WHERE id = 2;
"""
SSN = b"078-05-1120"


def arena_with(tmp: Path, equality: bool) -> Iterator[Arena]:
    policies = tmp / "rego"
    shutil.copytree(REGO, policies, ignore=shutil.ignore_patterns("*_test.rego"))
    data = json.loads((policies / "data.json").read_text())
    data["portcullis"]["oracle"]["equality"] = equality
    (policies / "data.json").write_text(json.dumps(data))
    with running_arena(tmp, policies=policies) as gateway:
        with gateway.admin() as admin:
            admin.execute(SETUP)
        yield gateway


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    yield from arena_with(tmp_path_factory.mktemp("arena"), True)


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    """oracle.equality false: no equality test of a masked value either."""
    yield from arena_with(tmp_path_factory.mktemp("strict"), False)


# each answered 1 for the right guess and 0 for a wrong one before
QUESTIONS = [
    "SELECT count(*) FROM customers WHERE note LIKE '%078-05%'",
    "SELECT count(*) FROM customers WHERE note ILIKE '%ssn: 078%'",
    "SELECT count(*) FROM customers WHERE note ~ '078-0[5]'",
    "SELECT count(*) FROM customers WHERE note SIMILAR TO '%078-05%'",
    "SELECT count(*) FROM customers WHERE note > 'card 4111 1111 1111 1111 on file SSN: 078'",
    "SELECT count(*) FROM customers WHERE substr(note, 40, 3) = '078'",
    "SELECT count(*) FROM customers WHERE position('078' in note) > 0",
    "SELECT count(*) FROM customers WHERE lower(note) LIKE '%078%'",
    "SELECT count(*) FILTER (WHERE note LIKE '%078%') FROM customers",
    "SELECT CASE WHEN note LIKE '%078%' THEN 1 ELSE 0 END FROM customers",
    "SELECT id FROM customers ORDER BY note",
    "SELECT count(*) FROM customers WHERE array_to_string(tags, ',') LIKE '%078%'",
    "SELECT count(*) FROM customers WHERE jsonb_path_exists(profile,"
    " '$.memo ? (@ like_regex \"078\")')",
    "SELECT count(*) FROM customers WHERE profile @? '$.memo ? (@ starts with \"SSN: 07\")'",
    "SELECT count(*) FROM customers WHERE profile @@ '$.memo > \"SSN: 07\"'",
    "SELECT count(*) FROM customers c WHERE EXISTS"
    " (SELECT 1 FROM customers d WHERE d.id = c.id AND d.note LIKE '%078%')",
    # which of the two comes back (the constant as it is, or the note with its number
    # masked) answers `>`
    "SELECT max(x) FROM (SELECT note AS x FROM customers WHERE id = 1"
    " UNION ALL SELECT 'card 4111 1111 1111 1111 on file SSN: 078') s",
    "SELECT min(note) FROM customers",
]


@pytest.mark.parametrize("sql", QUESTIONS)
@pytest.mark.parametrize("groups", [("readonly",), ("dba",)], ids=["reader", "masked dba"])
def test_a_question_about_free_text_the_detectors_mask_is_refused(
    arena: Arena, groups: tuple[str, ...], sql: str
) -> None:
    c = ready_client(arena, groups, "p23")
    try:
        answer = c.query(sql)
        assert_no_secret(answer, SSN)
        assert answer.errors and "denied by policy" in answer.errors[0], answer.messages
        assert "free-text column" in answer.errors[0] or "document" in answer.errors[0]
    finally:
        c.close()


def test_the_same_question_prepared_is_refused(arena: Arena) -> None:
    c = ready_client(arena, ("readonly",), "p23")
    try:
        answer = c.send(
            parse("", "SELECT count(*) FROM customers WHERE note LIKE $1"),
            codec.Bind("", "", [0], [b"%078-05%"], [0]).encode(),
            execute(),
            codec.Sync().encode(),
        )
        assert answer.errors and "free-text column note" in answer.errors[0], answer.messages
        assert not answer.rows
    finally:
        c.close()


# what stays: the columns the team lists, equality, and what the detectors never read
STILL = [
    ("SELECT count(*) FROM customers WHERE name LIKE 'A%'", [[b"1"]]),
    ("SELECT id FROM customers ORDER BY name", [[b"1"], [b"2"]]),
    ("SELECT count(*) FROM customers WHERE note IS NOT NULL", [[b"2"]]),
    ("SELECT count(*) FROM customers WHERE 'vip' = ANY(tags)", [[b"1"]]),
    ("SELECT count(*) FROM customers WHERE tags @> ARRAY['vip']", [[b"1"]]),
    ("SELECT count(*) FROM customers WHERE profile->>'status' = 'gold'", [[b"1"]]),
    ("SELECT count(*) FROM customers WHERE jsonb_path_exists(profile,"
     " '$.status ? (@ == \"gold\")')", [[b"1"]]),
    ("SELECT count(*) FROM customers WHERE id::text LIKE '1%'", [[b"1"]]),
    ("SELECT max(name), min(id) FROM customers", [[b"Bob", b"1"]]),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "rows"), STILL)
def test_questions_the_detectors_have_no_part_in_still_run(
    arena: Arena, sql: str, rows: list[list[bytes]]
) -> None:
    c = ready_client(arena, ("readonly",), "p23")
    try:
        answer = c.query(sql)
        assert not answer.errors, answer.errors
        assert answer.rows == rows
    finally:
        c.close()


def test_a_pii_reader_still_asks_about_free_text(arena: Arena) -> None:
    c = ready_client(arena, ("readonly", "pii-readers"), "p23")
    try:
        answer = c.query(QUESTIONS[0])
        assert not answer.errors and answer.rows == [[b"1"]], answer.messages
    finally:
        c.close()


SUBDOCUMENT = [
    "SELECT count(*) FROM customers"
    " WHERE profile->'contact' = '{\"email\": \"ada@example.com\"}'::jsonb",
    "SELECT count(*) FROM customers WHERE profile->>'contact' = '{\"email\": \"ada@example.com\"}'",
    "SELECT count(*) FROM customers"
    " WHERE profile['contact'] IN ('{\"email\": \"ada@example.com\"}', '{}')",
    "SELECT count(*) FROM customers"
    " WHERE jsonb_extract_path(profile, 'contact') = '{\"email\": \"ada@example.com\"}'",
]


@pytest.mark.parametrize("sql", SUBDOCUMENT)
def test_a_sub_document_compared_whole_is_an_equality_test_of_its_keys(
    strict: Arena, sql: str
) -> None:
    c = ready_client(strict, ("readonly",), "p23")
    try:
        answer = c.query(sql)
        assert_no_secret(answer)
        assert answer.errors and "equality on sensitive column email" in answer.errors[0], (
            answer.messages
        )
    finally:
        c.close()


def test_a_sub_document_compared_with_a_parameter_is_the_document_met_whole(
    strict: Arena,
) -> None:
    c = ready_client(strict, ("readonly",), "p23")
    try:
        answer = c.send(
            parse("", "SELECT count(*) FROM customers WHERE profile->'contact' = $1::jsonb"),
            codec.Bind("", "", [0], [b'{"email": "ada@example.com"}'], [0]).encode(),
            execute(),
            codec.Sync().encode(),
        )
        assert answer.errors and "document column profile" in answer.errors[0], answer.messages
        assert not answer.rows
    finally:
        c.close()


def test_a_scalar_under_a_key_is_still_compared_where_equality_is_refused(strict: Arena) -> None:
    c = ready_client(strict, ("readonly",), "p23")
    try:
        answer = c.query("SELECT count(*) FROM customers WHERE profile->>'status' = 'gold'")
        assert not answer.errors and answer.rows == [[b"1"]], answer.messages
        answer = c.send(parse("", "SELECT 1"), bind("", ""), execute(), codec.Sync().encode())
        assert not answer.errors
    finally:
        c.close()


def test_where_equality_is_allowed_a_sub_document_compares_as_its_keys_would(
    arena: Arena,
) -> None:
    c = ready_client(arena, ("readonly",), "p23")
    try:
        answer = c.query(SUBDOCUMENT[0])
        assert not answer.errors and answer.rows == [[b"1"]], answer.messages
    finally:
        c.close()
