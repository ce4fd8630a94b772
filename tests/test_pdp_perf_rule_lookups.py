"""Rule lookups a Postgres decision makes do not grow with its statements (issue 27).

Every reference to a rule, cached or not, is a lookup in OPA's rule index (~10k
instructions in OPA 1.20.2: the index resets a slot per rule position on each). A rule
referenced inside a loop over the statements or their functions is looked up once per
item: postgres.rego's "no rule allows" rule took pg_allowed once per statement, the
privileged approval took the constant pg_reach_tags once per statement, and
postgres_lineage.rego called pg_statement_text_function once per function. Counted
here from the evaluator's trace (its Index events), a number that does not depend on
the machine's load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pdp.domain.policy_input import postgres_command
from pdp.engine.bundle import load_bundle
from pdp.engine.opa import new_engine

REGO = Path(__file__).resolve().parent.parent / "rego"
DECISION = "portcullis.decision"


@pytest.fixture(scope="module")
def engine() -> Any:
    engine = new_engine(load_bundle(REGO).without_tests())
    yield engine
    engine.close()


def traced_decision(
    engine: Any, groups: list[str], sql: str, facts: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The evaluator's trace of the decision of sql for a member of `groups` (`facts`:
    what the proxy knows of the upstream, e.g. its shadowed functions)."""
    policy_input = {
        "identity": {"subject": "agent@example.com", "groups": groups},
        "connection": {"name": "orders-db", "type": "postgres"},
        "session": {"id": "s"},
        "command": {
            "kind": "postgres.query",
            "raw": sql,
            "postgres": postgres_command("postgres.query", sql, facts or {}),
        },
        "now": "2026-01-01T00:00:00Z",
    }
    decision = engine.eval_document(DECISION, policy_input, trace=True)
    assert decision["verdict"] in ("allow", "mask", "require_approval", "deny")
    return list(engine.last_trace or [])


def lookups(engine: Any, groups: list[str], sql: str) -> list[str]:
    """The rules the decision of sql looked up, one entry per lookup."""
    trace = traced_decision(engine, groups, sql)
    return [str(e.get("node", "")) for e in trace if e["op"] == "Index"]


FIVE = "BEGIN; SELECT id FROM orders; SELECT total FROM orders; SELECT 1; COMMIT"
CALLS = "SELECT lower(name), upper(name), length(name), abs(total), round(total) FROM orders"


@pytest.mark.parametrize("groups", [["readonly"], ["dba"]])
def test_pg_allowed_is_looked_up_once_per_use_not_per_statement(
    engine: Any, groups: list[str]
) -> None:
    seen = [n for n in lookups(engine, groups, FIVE) if "data.portcullis.pg_allowed" in n]
    assert len(seen) <= 2, seen  # allow's rule and deny_unindexed's, whatever the count


def test_the_reach_tags_are_no_rule_looked_up_per_statement(engine: Any) -> None:
    seen = [n for n in lookups(engine, ["dba"], FIVE) if "pg_reach_tags" in n]
    assert seen == []


@pytest.mark.parametrize("groups", [["readonly"], ["dba"]])
def test_no_function_is_looked_up_per_called_function_for_statement_text(
    engine: Any, groups: list[str]
) -> None:
    seen = [n for n in lookups(engine, groups, CALLS) if "pg_statement_text_function" in n]
    assert seen == []
