"""Golden policy cases: tests/golden/*.json replayed through the shipped rego/ library.

Each case is {"name", "input", "expect"} (optionally "query", default the decision).
postgres.query inputs without statements get them from pdp.sql.classify, as the
PDP does, so these cases test the classifier and the policy together.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from pdp.domain.policy_input import query_flags, statement_flags, statement_types
from pdp.domain.ssh_input import ssh_command
from pdp.engine.bundle import load_bundle
from pdp.engine.opa import DECISION_PATH, evaluate, new_engine
from pdp.sql import classify

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = sorted((ROOT / "tests" / "golden").glob("*.json"))
CASES = [case for path in GOLDEN for case in json.loads(path.read_text())]


@pytest.fixture(scope="module")
def engine():
    eng = new_engine(load_bundle(ROOT / "rego").without_tests())
    yield eng
    eng.close()


def with_statements(policy_input: dict) -> dict:
    policy_input = copy.deepcopy(policy_input)
    command = policy_input.get("command", {})
    if command.get("kind") == "postgres.query":
        postgres = command.setdefault("postgres", {})
        postgres.setdefault("statements", classify(command.get("raw", "")))
        postgres["types"] = statement_types(postgres["statements"])  # as the PDP adds them
        postgres["has"] = query_flags(postgres, statement_flags(postgres["statements"]))
    if command.get("kind") == "ssh.exec":  # as the PDP builds it: parsed from raw, never sent
        command["ssh"] = ssh_command("ssh.exec", command.get("raw", ""), {})
    return policy_input


def test_there_are_enough_golden_cases():
    assert len(CASES) >= 40
    assert len({c["name"] for c in CASES}) == len(CASES), "case names must be unique"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden(engine, case):
    result = evaluate(engine, with_statements(case["input"]), case.get("query", DECISION_PATH))
    assert result is not None, "policy result undefined"
    expect = case["expect"]
    reasons = result.get("reasons", [])
    if "verdict" in expect:
        assert result["verdict"] == expect["verdict"], reasons
        assert set(result) >= {"verdict", "reasons", "mask", "cache_ttl_seconds", "cache_key"}
        if expect["verdict"] == "require_approval":
            assert result["approval"]["approvers"] == ["group:security", "group:dba"]
            assert result["approval"]["ttl_seconds"] > 0
        if expect["verdict"] == "deny":
            assert result["mask"] == []
    if "allowed" in expect:
        assert result["allowed"] is expect["allowed"], reasons
    if "reasons_contain" in expect:
        assert any(expect["reasons_contain"] in r for r in reasons), reasons
    if "mask_fields" in expect:
        fields = sorted(m["field"] for m in result["mask"] if "field" in m)
        assert fields == sorted(expect["mask_fields"])
    if "cache_key" in expect:
        assert result["cache_key"] == expect["cache_key"]
    if "session_settings" in expect:
        assert result.get("session_settings") == expect["session_settings"]


def test_the_pdp_counts_the_sessions_the_cap_reads():
    """input.session.open_sessions on session.open (the per-identity cap of session.rego)
    is what the PDP's session table holds open for the subject on that connection."""
    from pdp.domain.identity import Identity
    from pdp.domain.sessions import Session, SessionTable

    table = SessionTable(store=None)  # type: ignore[arg-type]  # never asked in this test

    def session(n: int, subject: str, connection: str) -> Session:
        identity = Identity(subject=subject, groups=("readonly",), issuer="", claims={})
        return Session(f"s-{n}", identity, {"name": connection}, "", "")

    for n in range(3):
        table.add(session(n, "alice", "orders-db"))
    table.add(session(3, "alice", "other-db"))
    table.add(session(4, "bob", "orders-db"))
    table.add(session(0, "alice", "orders-db"))  # the same session again counts once
    assert table.open_count("alice", "orders-db") == 3
    assert table.open_count("alice", "other-db") == 1
    table.close("s-1")
    table.close("s-1")
    assert table.open_count("alice", "orders-db") == 2
    assert table.open_count("carol", "orders-db") == 0
