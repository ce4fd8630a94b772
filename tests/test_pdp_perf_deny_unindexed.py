"""The Postgres deny rules live in sets of their own (rego/portcullis/decision.rego, issue
27): deny_unindexed and pg_lineage_unindexed (the rules the evaluator's rule index cannot
skip), pg_denials (postgres.rego) and pg_lineage_denials (postgres_lineage.rego), and still
deny.

The split is for the evaluator's sake alone: every reason of those sets is a reason of
deny, so the decision denies with it, with and without the session's standing. Each case
below is answered by a rule of one set (a statement the query's type summary leaves out,
one no rule allows, a condition on a sensitive column, a standing's denial, a command of
another connection type; a function reaching outside the database; LISTEN outside
pii-readers, a reader's stored copy of a sensitive column and a relation named as a system
catalog, the last two opening with the query flags has.writes and has.shadows).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from pdp.engine.bundle import load_bundle
from pdp.engine.opa import evaluate, new_engine

REGO = Path(__file__).resolve().parent.parent / "rego"


@pytest.fixture(scope="module")
def engine() -> Any:
    engine = new_engine(load_bundle(REGO).without_tests())
    yield engine
    engine.close()


def query(groups: list[str], statements: list[dict[str, Any]], **postgres: Any) -> dict[str, Any]:
    types = {s["type"]: True for s in statements if "type" in s}
    return {
        "identity": {"subject": "agent@example.com", "groups": groups},
        "connection": {"name": "orders-db", "type": "postgres"},
        "session": {"id": "s"},
        "command": {
            "kind": "postgres.query",
            "raw": "-- statements as classified",
            "postgres": {"statements": statements, "types": types, "has": {}, **postgres},
        },
        "now": "2026-01-01T00:00:00Z",
    }


SELECT = {"type": "select", "tag": "SelectStmt", "tables": ["orders"], "functions": []}

CASES: dict[str, tuple[dict[str, Any], str, str]] = {
    "a statement the type summary leaves out": (
        query(["readonly"], [SELECT], types={}),
        "is not in the query's summary of statement types",
        "deny_unindexed",
    ),
    "a function reaching outside the database": (
        query(["dba"], [{**SELECT, "functions": ["pg_read_file"]}], has={"functions": True}),
        "function pg_read_file reaches outside the database",
        "pg_denials",
    ),
    "LISTEN outside pii-readers": (
        query(["readonly"], [{"type": "listen", "tag": "ListenStmt"}]),
        "LISTEN is denied to everyone not in pii-readers",
        "pg_lineage_denials",
    ),
    "a statement no rule allows": (
        query(["readonly"], [{"type": "ddl", "tag": "DropStmt", "tables": ["orders"]}]),
        "no rule allows ddl statement",
        "deny_unindexed",
    ),
    "a reader stores a sensitive column": (
        query(
            ["readonly"],
            [{**SELECT, "writes": [{"tables": [], "columns": ["email"], "kind": "plain"}]}],
            has={"writes": True},
        ),
        "stores values of sensitive column email",
        "pg_lineage_denials",
    ),
    "a relation named as a system catalog table": (
        query(
            ["dba"],
            [{"type": "ddl", "tag": "RenameStmt", "tables": ["t"], "shadows": ["pg_type"]}],
            has={"shadows": True},
        ),
        "relation name pg_type is a system catalog table's",
        "pg_lineage_denials",
    ),
    "a pattern on a sensitive column": (
        query(["readonly"], [{**SELECT, "predicates": [{"column": "email", "use": "pattern"}]}]),
        "use of sensitive column email",
        "pg_lineage_unindexed",
    ),
    "an identity outside the connection's groups": (
        query(["nobody"], [SELECT]),
        "is not in a group allowed on orders-db",
        "deny_unindexed",
    ),
    "a command of another connection type": (
        {**query(["readonly"], [SELECT]), "connection": {"name": "billing-api", "type": "http"}},
        "is not a command of a http connection",
        "deny_unindexed",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("standing", [False, True], ids=["no standing", "standing"])
def test_a_reason_of_the_postgres_deny_sets_denies(engine: Any, case: str, standing: bool) -> None:
    policy_input, reason, named = copy.deepcopy(CASES[case])
    if standing:
        about = {k: policy_input[k] for k in ("identity", "connection", "session")}
        policy_input["standing"] = evaluate(engine, about, "portcullis.standing")
    kept = evaluate(engine, policy_input, "portcullis." + named) or []
    assert any(reason in r for r in kept), kept
    deny = evaluate(engine, policy_input, "portcullis.deny")
    assert set(kept) <= set(deny)
    decision = evaluate(engine, policy_input)
    assert decision["verdict"] == "deny"
    assert any(reason in r for r in decision["reasons"]), decision["reasons"]
