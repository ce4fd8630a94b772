"""A command without statements (ssh, http, mcp) does not look up the Postgres allow rules
(issue 27, issue 26's back-to-back Decide).

postgres.rego's "no rule allows" rule of deny_unindexed, which every command meets, read
pg_allowed before its loop over the statements: for an ssh.exec line that was three rule
lookups (pg_allowed, privileged, pg_reads; ~10k instructions each in OPA 1.20.2's index)
for nothing. It now ends first when there are no statements. Counted from the evaluator's
trace (its Index events), a number that does not depend on the machine's load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pdp.domain.policy_input import command_input
from pdp.engine.bundle import load_bundle
from pdp.engine.opa import new_engine

REGO = Path(__file__).resolve().parent.parent / "rego"


@pytest.fixture(scope="module")
def engine() -> Any:
    engine = new_engine(load_bundle(REGO).without_tests())
    yield engine
    engine.close()


@pytest.mark.parametrize("groups", [["readonly"], ["dba"], ["pii-readers"]])
@pytest.mark.parametrize("line", ["echo 1234", "df -h && uptime", "rm -rf /"])
def test_an_ssh_exec_looks_up_no_postgres_allow_rule(engine: Any, groups, line) -> None:
    policy_input = {
        "identity": {"subject": "agent@example.com", "groups": groups},
        "connection": {"name": "web-1", "type": "ssh"},
        "session": {"id": "s"},
        "command": command_input("ssh.exec", line, {}),
    }
    decision = engine.eval_document("portcullis.decision", policy_input, trace=True)
    assert decision["verdict"] in ("allow", "mask", "require_approval", "deny")
    looked_up = [str(e.get("node", "")) for e in engine.last_trace or [] if e["op"] == "Index"]
    assert any("data.portcullis.ssh_" in node for node in looked_up)
    for rule in ("pg_allowed", "pg_reads"):
        assert not any(f"data.portcullis.{rule}" in node for node in looked_up), rule


def test_a_postgres_query_still_asks_which_statements_are_allowed(engine: Any) -> None:
    from pdp.domain.policy_input import postgres_command

    sql = "SELECT 1; DROP TABLE orders"
    policy_input = {
        "identity": {"subject": "agent@example.com", "groups": ["readonly"]},
        "connection": {"name": "orders-db", "type": "postgres"},
        "session": {"id": "s"},
        "command": {
            "kind": "postgres.query",
            "raw": sql,
            "postgres": postgres_command("postgres.query", sql, {}),
        },
    }
    decision = engine.eval_document("portcullis.decision", policy_input)
    assert decision["verdict"] == "deny"
    assert any("no rule allows drop statement" in r for r in decision["reasons"])
