"""pdp.domain.approver_view as transcripts: a command and its bound values in, what an approver
is shown out. The policy's default masks for a reader: sensitive columns redacted, every
detector partial (rego/portcullis/postgres.rego)."""

from __future__ import annotations

import pytest

from pdp.domain.approver_view import approver_masker, approver_view, binding_digest
from portcullis.verdict import MaskRule

READER_MASK = [
    *(MaskRule(field=c, strategy="redact") for c in ("email", "ssn", "card_number")),
    *(MaskRule(detector=d, strategy="partial") for d in ("email", "credit_card", "ssn")),
]
R = "[REDACTED]"

CASES = [
    # (statement, bound values, values shown)
    ("UPDATE customers SET card_number = $1 WHERE id = $2", ["4111111111111111", "7"], [R, "7"]),
    ("UPDATE customers SET note = $1 WHERE email = $2", ["x", "z"], ["x", R]),
    (
        "UPDATE c SET note = $1 WHERE lower(c.email) IN ($2, upper($3))",
        ["n", "a", "b"],
        ["n", R, R],
    ),
    (
        "INSERT INTO customers (id, name, ssn) VALUES ($1, $2, $3)",
        ["1", "Ann", "9"],
        ["1", "Ann", R],
    ),
    ("INSERT INTO customers VALUES ($1, $2)", ["1", "Ann"], [R, R]),  # columns unnamed
    ("INSERT INTO t (id, email) SELECT $1, $2", ["1", "q"], [R, R]),
    (
        "INSERT INTO t (id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET ssn = $2",
        ["1", "9"],
        ["1", R],
    ),
    ("WITH u AS (UPDATE t SET email = $1 RETURNING id) SELECT * FROM u", ["q"], [R]),
    ("UPDATE t SET (note, ssn) = ($1, $2)", ["n", "9"], [R, R]),
    ("DELETE FROM t WHERE id IN (SELECT id FROM t WHERE ssn = $1)", ["9"], [R]),
    ("DELETE FROM t WHERE email IN (SELECT $1)", ["q"], [R]),
    (
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET ssn = $1 "
        "WHEN NOT MATCHED THEN INSERT (id, email) VALUES ($2, $3)",
        ["9", "1", "q"],
        [R, "1", R],
    ),
    ("SELECT $1", ["call ada@example.com"], ["call a***@example.com"]),  # a detector
    ("not sql at all $1", ["anything"], [R]),  # nothing known: every value withheld
]


@pytest.mark.parametrize(("sql", "values", "shown"), CASES)
def test_values_meeting_a_masked_column_or_a_detector_are_masked(sql, values, shown):
    view = approver_view("postgres.query", sql, values, "", approver_masker(READER_MASK))
    assert view.parameters == shown


def test_literals_are_masked_in_the_text_and_every_statement_keeps_its_classification():
    sql = (
        "/* justification: card 4111 1111 1111 1111 */ UPDATE customers SET ssn = '123456789',"
        " card_number = -4111111111111111, note = E'it''s' WHERE id = 1; "
        "DELETE FROM customers WHERE email = 'ada@example.com'"
    )
    view = approver_view(
        "postgres.query", sql, [], "card 4111 1111 1111 1111", approver_masker(READER_MASK)
    )
    for secret in ("123456789", "4111111111111111", "4111 1111", "ada@example.com"):
        assert secret not in view.command + str(view.statements) + view.justification
    first, second = view.statements
    assert first["text"].startswith("UPDATE customers SET ssn = '[REDACTED]', card_number = ")
    assert "note = E'it''s'" in first["text"]
    assert first["classification"] == ["update (UpdateStmt)"]
    assert second == {
        "text": "DELETE FROM customers WHERE email = '[REDACTED]'",
        "classification": ["delete (DeleteStmt)"],
    }


def test_every_detector_runs_even_when_the_verdict_masks_nothing():
    """The policy's masks are the requester's (a PII reader has none); approvers are others."""
    view = approver_view("postgres.query", "SELECT $1", ["123-45-6789"], "", approver_masker(()))
    assert view.parameters == ["***-**-6789"]


def test_a_hash_rule_shows_as_redact_and_an_unknown_detector_withholds_every_value():
    hashed = approver_masker([MaskRule(field="ssn", strategy="hash")])
    view = approver_view("postgres.query", "UPDATE t SET ssn = $1", ["9"], "", hashed)
    assert view.parameters == [R]
    unknown = approver_masker([MaskRule(detector="passport", strategy="redact")])
    view = approver_view("postgres.query", "UPDATE t SET note = $1", ["x"], "", unknown)
    assert view.parameters == [R]


def test_the_binding_digest_is_keyed_and_tells_every_value_apart():
    key, other = b"k" * 32, b"o" * 32
    assert binding_digest(key, ["1", "2"]) == binding_digest(key, ["1", "2"])
    assert binding_digest(key, ["1", "2"]) != binding_digest(key, ["12"])
    assert binding_digest(key, ["1", "2"]) != binding_digest(key, ["1", "3"])
    assert binding_digest(key, ["1"]) != binding_digest(other, ["1"])
