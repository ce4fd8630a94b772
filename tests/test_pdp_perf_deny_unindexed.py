"""The deny rules the evaluator's rule index cannot skip live in their own set
(rego/portcullis/decision.rego: deny_unindexed, issue 27) and still deny.

The split is for the evaluator's sake alone: every reason of deny_unindexed is a reason of
deny, so the decision denies with it, with and without the session's standing. Each case
below is answered by one of those rules (a statement the query's type summary leaves out,
one no rule allows, a reader's stored copy of a sensitive column, a condition on one, a
standing's denial, a command of another connection type).
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

CASES = {
    "a statement the type summary leaves out": (
        query(["readonly"], [SELECT], types={}),
        "is not in the query's summary of statement types",
    ),
    "a statement no rule allows": (
        query(["readonly"], [{"type": "ddl", "tag": "DropStmt", "tables": ["orders"]}]),
        "no rule allows ddl statement",
    ),
    "a reader stores a sensitive column": (
        query(
            ["readonly"],
            [{**SELECT, "writes": [{"tables": [], "columns": ["email"], "kind": "plain"}]}],
        ),
        "stores values of sensitive column email",
    ),
    "a pattern on a sensitive column": (
        query(["readonly"], [{**SELECT, "predicates": [{"column": "email", "use": "pattern"}]}]),
        "use of sensitive column email",
    ),
    "an identity outside the connection's groups": (
        query(["nobody"], [SELECT]),
        "is not in a group allowed on orders-db",
    ),
    "a command of another connection type": (
        {**query(["readonly"], [SELECT]), "connection": {"name": "billing-api", "type": "http"}},
        "is not a command of a http connection",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("standing", [False, True], ids=["no standing", "standing"])
def test_a_reason_of_the_unindexed_rules_denies(engine: Any, case: str, standing: bool) -> None:
    policy_input, reason = copy.deepcopy(CASES[case])
    if standing:
        about = {k: policy_input[k] for k in ("identity", "connection", "session")}
        policy_input["standing"] = evaluate(engine, about, "portcullis.standing")
    unindexed = evaluate(engine, policy_input, "portcullis.deny_unindexed") or []
    assert any(reason in r for r in unindexed), unindexed
    deny = evaluate(engine, policy_input, "portcullis.deny")
    assert set(unindexed) <= set(deny)
    decision = evaluate(engine, policy_input)
    assert decision["verdict"] == "deny"
    assert any(reason in r for r in decision["reasons"]), decision["reasons"]
