"""Probe P27 (helper pgattack8) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER), as a reader outside pii-readers.

A verdict reused for a literal it never read. Verdicts are reused for every text of one
shape (portcullis.shape: the text with its literal values replaced), which DESIGN.md allows
only to rules whose answer does not depend on literal values. Lineage reads a constant key,
path or jsonpath as a column's name (pdp/sql/lineage.py): `profile->>'password'` is masked
as the column password is, `profile->>'status'` passes as status does. So a reader who
asked `SELECT profile->'status' FROM p27_docs` (allowed, unmasked, reused for its shape)
and then `SELECT profile->'password' FROM p27_docs` had the second answered by the first's
verdict: the password under the document's key came back in clear, through the simple and
the extended protocol, by ->, ->>, #>, #>>, or a subscript.

The classifier now flags every statement of a text in which a constant stands where lineage
reads keys (`literal_keys`: the document operators, a subscript by a string, the json/jsonb
/xml functions; found by position, so every text of one shape alike), and the policy offers
no reuse by shape for it (rego/portcullis/postgres.rego's pg_uncached), as for set_config.
"""

from __future__ import annotations

import asyncpg
import pytest
from adversary import Arena, assert_no_secret, ready_client
from pg_probe_stack import arena_fixture

from pdp.sql import classify
from portcullis.shape import shape

pytestmark = pytest.mark.integration

arena = arena_fixture(
    """
CREATE TABLE p27_docs (id int, profile jsonb);
INSERT INTO p27_docs VALUES (1, '{"status": "gold", "password": "hunter2-doc"}');
"""
)

READER = ("readonly",)

# (the text asking for the status, then the same text asking for the password)
SPELLINGS = [
    "SELECT profile->'{}' AS x FROM p27_docs",
    "SELECT profile->>'{}' AS x FROM p27_docs",
    "SELECT id, profile #> '{{{}}}' AS x FROM p27_docs WHERE id = 1",
    "SELECT profile #>> '{{{}}}' FROM p27_docs",
    "SELECT profile['{}'] FROM p27_docs",
]
# (jsonb_extract_path_text and OPERATOR(pg_catalog.->>) are refused for both keys: a
# document's partial use; the flag still covers them, test_..._flags_the_text)


@pytest.mark.parametrize("template", SPELLINGS)
def test_a_verdict_for_one_key_does_not_answer_another(arena: Arena, template: str) -> None:
    status, password = template.format("status"), template.format("password")
    assert shape(status) == shape(password)  # one shape: the cache must not join them
    c = ready_client(arena, READER, "p27")
    try:
        for _ in range(2):  # allowed, and its verdict kept for reuse
            answer = c.query(status)
            assert not answer.errors and b"gold" in answer.raw, answer.messages
        answer = c.query(password)
        assert_no_secret(answer, b"hunter2-doc")
    finally:
        c.close()


async def test_the_same_through_the_extended_protocol(arena: Arena) -> None:
    conn = await asyncpg.connect(arena.dsn(arena.token("p27-x@example.com", READER)))
    try:
        for _ in range(2):
            row = await conn.fetchrow(
                "SELECT profile->>'status' AS x FROM p27_docs WHERE id = $1", 1
            )
            assert row is not None and row["x"] == "gold"
        try:
            row = await conn.fetchrow(
                "SELECT profile->>'password' AS x FROM p27_docs WHERE id = $1", 1
            )
        except asyncpg.PostgresError:
            row = None  # refused: as good as masked
        assert row is None or row["x"] != "hunter2-doc"
    finally:
        await conn.close()


def test_the_flag_leaves_what_lineage_says_as_it_was() -> None:
    # (lineage's answer for the same text is unchanged: only its reuse by shape is)
    entry = classify("SELECT profile->>'password' AS x FROM p27_docs")[0]
    assert entry["literal_keys"] is True
    assert "password" in entry["outputs"][0]["columns"]


FLAGGED = [
    "SELECT profile->'a' FROM t",
    "SELECT id FROM t WHERE profile @> '{\"a\": 1}'",
    "SELECT id FROM t WHERE profile ? 'a'",
    "SELECT id FROM t WHERE profile @? '$.a'",
    "SELECT jsonb_path_query(profile, '$.a') FROM t",
    "SELECT profile['a'] FROM t",
    "SELECT U&\"\\006Asonb_extract_path_text\"(profile, 'a') FROM t",
    "SELECT xpath('/a/b', doc) FROM t",
    "SELECT pg_catalog.jsonb_extract_path(profile, 'a') FROM t",
    "SELECT OPERATOR(pg_catalog.->>)(profile, 'a') FROM t",
    "SELECT 1; SELECT profile->>'a' FROM t",
]
NOT_FLAGGED = [
    "SELECT * FROM t WHERE name = 'a'",
    "SELECT arr[1], (c).field FROM t",
    "SELECT 1",
    "SELECT email FROM t WHERE id = 5 ORDER BY 1",
]


@pytest.mark.parametrize("sql", FLAGGED)
def test_a_constant_where_lineage_reads_keys_flags_the_text(sql: str) -> None:
    entries = classify(sql)
    assert entries and all(e.get("literal_keys") for e in entries), entries


@pytest.mark.parametrize("sql", NOT_FLAGGED)
def test_other_texts_keep_their_reuse_by_shape(sql: str) -> None:
    assert not any(e.get("literal_keys") for e in classify(sql))


def test_texts_of_one_shape_classified_otherwise_are_flagged() -> None:
    """What reuse by shape relies on: two texts of one shape whose classifications differ
    hold a literal the classifier read, so both are flagged (never reused by shape)."""
    pairs = [(t.format("status"), t.format("password")) for t in SPELLINGS]
    pairs += [
        (
            "SELECT id FROM t WHERE profile @> '{\"a\": 1}'",
            "SELECT id FROM t WHERE profile @> '{}'",
        ),
        ("SELECT id FROM t WHERE profile ? 'a'", "SELECT id FROM t WHERE profile ? 'email'"),
    ]
    for first, second in pairs:
        assert shape(first) == shape(second)
        if classify(first) != classify(second):
            assert classify(first)[0].get("literal_keys"), first
            assert classify(second)[0].get("literal_keys"), second
