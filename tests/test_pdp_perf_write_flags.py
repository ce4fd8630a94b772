"""The query flags has.writes and has.shadows (pdp/domain/policy_input.py, issue 27).

postgres_lineage.rego's three stored-copy rules open with input.command.postgres.has.writes
and its catalog-name rule with has.shadows, so the evaluator's rule index skips them for a
query storing nothing (they were deny_unindexed, evaluated for every postgres command).
A flag may be set for nothing, never left out for something: each is set whenever a
statement holds the field, and the PDP-built input of a real statement that stores a
sensitive column, or names a relation after a system catalog, is still denied with the
rule's reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pdp.domain.policy_input import STATEMENT_FLAGS, postgres_command, statement_flags
from pdp.engine.bundle import load_bundle
from pdp.engine.opa import evaluate, new_engine

REGO = Path(__file__).resolve().parent.parent / "rego"


@pytest.fixture(scope="module")
def engine() -> Any:
    engine = new_engine(load_bundle(REGO).without_tests())
    yield engine
    engine.close()


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ({"type": "insert", "writes": [{"columns": ["email"], "tables": []}]}, {"writes"}),
        ({"type": "insert", "writes": []}, {"writes"}),  # present: set, as `s.writes` holds
        ({"type": "insert", "writes": "x"}, {"writes"}),  # not the classifier's shape
        ({"type": "ddl", "shadows": ["pg_type"]}, {"shadows"}),
        ({"type": "ddl", "shadows": {"a": "pg_class"}}, {"shadows"}),
        ({"type": "select"}, set()),
        ({"type": "insert", "writes": False}, set()),
    ],
)
def test_writes_and_shadows_are_flagged_when_a_statement_holds_them(
    statement: dict[str, Any], expected: set[str]
) -> None:
    assert {"writes", "shadows"} & set(statement_flags([statement])) == expected


def test_a_statement_that_cannot_be_read_sets_them_too() -> None:
    assert {"writes", "shadows"} <= set(STATEMENT_FLAGS)
    assert statement_flags(["insert"]).keys() >= {"writes", "shadows"}


def _decide(engine: Any, groups: list[str], sql: str) -> dict[str, Any]:
    command: dict[str, Any] = {"kind": "postgres.query", "raw": sql}
    command["postgres"] = postgres_command("postgres.query", sql, {})
    policy_input = {
        "identity": {"subject": "agent@example.com", "groups": groups},
        "connection": {"name": "orders-db", "type": "postgres"},
        "session": {"id": "s"},
        "command": command,
        "now": "2026-01-01T00:00:00Z",
    }
    return evaluate(engine, policy_input)


@pytest.mark.parametrize(
    ("groups", "sql", "flag", "reason"),
    [
        (
            ["dba"],
            "INSERT INTO audit_log (what) SELECT email FROM customers",
            "writes",
            "stores values of sensitive column email",
        ),
        (
            ["dba"],
            "CREATE TABLE copy AS SELECT * FROM customers",
            "writes",
            "stores whole rows or all columns of",
        ),
        (
            ["dba"],
            "UPDATE customers SET name = translate(note, '0123456789', 'abcdefghij') WHERE id = 1",
            "writes",
            "stores text computed from column(s)",
        ),
        (
            ["dba"],
            "ALTER TABLE scratch RENAME TO pg_type",
            "shadows",
            "relation name pg_type is a system catalog table's",
        ),
    ],
)
def test_the_pdp_built_input_of_such_a_statement_is_denied(
    engine: Any, groups: list[str], sql: str, flag: str, reason: str
) -> None:
    built = postgres_command("postgres.query", sql, {})
    assert built["has"].get(flag) is True, built["has"]
    decision = _decide(engine, groups, sql)
    assert decision["verdict"] == "deny"
    assert any(reason in r for r in decision["reasons"]), decision["reasons"]
