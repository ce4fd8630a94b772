"""The decision the PDP's evaluation workers read is the policy's decision (issue 27).

A worker evaluates the shipped policy's `answer` (rego/portcullis/decision.rego): its
decision with the shipped mask set written as a mark where that set is the whole mask, and
writes the set's JSON, made once per policy from the evaluator's own answer, in the mark's
place (pdp.engine.opa.decision_evaluator): the evaluator no longer copies, converts and
serialises fourteen objects on most of a reader's decisions (~120,000 instructions of
~2.2M, bench/pdp/policy_ir.py). What the worker hands the PDP must read as
data.portcullis.decision does, for every kind of command, with the session's standing and
without; a policy without `answer` (or with no shipped mask) is evaluated as before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pdp.engine import DECISION_PATH, frames
from pdp.engine.bundle import PolicyBundle, load_bundle
from pdp.engine.opa import (
    ANSWER_PATH,
    decision_evaluator,
    new_engine,
    parse_envelope,
    raw_evaluate,
    shipped_mask_splice,
)
from pdp.engine.worker import Worker

REGO = Path(__file__).resolve().parent.parent / "rego"
GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.fixture(scope="module")
def engine() -> Any:
    engine = new_engine(load_bundle(REGO).without_tests())
    yield engine
    engine.close()


def encoded(policy_input: dict[str, Any]) -> bytes:
    return json.dumps(policy_input, separators=(",", ":"), ensure_ascii=False).encode()


def with_standing(engine: Any, policy_input: dict[str, Any]) -> dict[str, Any]:
    standing = parse_envelope(raw_evaluate(engine, "portcullis.standing", encoded(policy_input)))
    return {**policy_input, "standing": standing}


def reader_select(groups: list[str], sql: str = "SELECT id, total FROM orders") -> dict[str, Any]:
    from pdp.domain.policy_input import postgres_command

    return {
        "identity": {"subject": "agent@example.com", "groups": groups},
        "connection": {"name": "orders-db", "type": "postgres"},
        "session": {"id": "s"},
        "command": {
            "kind": "postgres.query",
            "raw": sql,
            "postgres": postgres_command("postgres.query", sql, {}),
        },
        "now": "2026-01-01T00:00:00Z",
    }


def golden_inputs() -> list[dict[str, Any]]:
    """The golden cases' inputs (tests/golden) as the PDP builds them (a postgres command's
    statements classified), and rego/examples."""
    from pdp.domain.policy_input import postgres_command

    inputs = []
    for path in sorted(GOLDEN.glob("*.json")):
        for case in json.loads(path.read_text()):
            if case.get("query", DECISION_PATH) != DECISION_PATH:
                continue
            policy_input = json.loads(json.dumps(case["input"]))
            command = policy_input.get("command", {})
            kind = command.get("kind", "")
            if kind in ("postgres.query", "postgres.function_call"):
                attributes = command.get("postgres", {})
                command["postgres"] = postgres_command(kind, command.get("raw", ""), attributes)
            inputs.append(policy_input)
    for path in sorted((REGO / "examples").glob("*.json")):
        inputs.append(json.loads(path.read_text()))
    return inputs


def test_a_readers_select_is_answered_with_the_mark_and_read_as_the_decision(engine: Any) -> None:
    given = encoded(with_standing(engine, reader_select(["readonly"])))
    splice = shipped_mask_splice(engine)
    assert splice is not None
    mark, masks = splice
    answer = raw_evaluate(engine, ANSWER_PATH, given)
    assert mark in answer and masks not in answer  # the evaluator wrote the mark, not the set
    worker_reads = parse_envelope(decision_evaluator(engine)(given))
    decision = parse_envelope(raw_evaluate(engine, DECISION_PATH, given))
    assert worker_reads == decision
    assert decision["verdict"] == "mask"
    assert {"field": "ssn", "strategy": "redact"} in decision["mask"]
    # the set as the evaluator orders it, in the bytes it writes
    assert worker_reads["mask"] == json.loads(masks.removeprefix(b'"mask":'))


@pytest.mark.parametrize(
    "groups", [["readonly"], ["dba"], ["pii-readers", "readonly"], ["pii-readers", "dba"]]
)
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT id, email, total FROM orders WHERE customer_id = 42",
        "SELECT name, lower(phone) FROM customers WHERE name ILIKE 'a%'",
        "UPDATE orders SET status = 'shipped' WHERE id = 7",
        "DROP TABLE orders",
        "SELECT pg_read_file('/etc/passwd')",
    ],
)
@pytest.mark.parametrize("standing", [True, False])
def test_the_worker_reads_every_postgres_decision_as_the_policy_gives_it(
    engine: Any, groups: list[str], sql: str, standing: bool
) -> None:
    policy_input = reader_select(groups, sql)
    if standing:
        policy_input = with_standing(engine, policy_input)
    given = encoded(policy_input)
    assert parse_envelope(decision_evaluator(engine)(given)) == parse_envelope(
        raw_evaluate(engine, DECISION_PATH, given)
    )


def test_the_worker_reads_the_golden_cases_as_the_policy_gives_them(engine: Any) -> None:
    inputs = golden_inputs()
    assert len(inputs) > 20
    evaluate = decision_evaluator(engine)
    for policy_input in inputs:
        for given in (policy_input, with_standing(engine, policy_input)):
            raw = encoded(given)
            assert parse_envelope(evaluate(raw)) == parse_envelope(
                raw_evaluate(engine, DECISION_PATH, raw)
            ), given


def test_the_worker_process_answers_the_decision_path_through_the_answer() -> None:
    """pdp.engine.worker.Worker: the frame the PDP sends for data.portcullis.decision."""
    worker = Worker()
    bundle = load_bundle(REGO).without_tests()
    assert worker.load(bundle.to_wire())["ok"]
    try:
        given = encoded(with_standing(worker.engine, reader_select(["readonly"])))
        header, _, envelope = worker.evaluate(DECISION_PATH, given).partition(b"\n")
        assert json.loads(header) == {"revision": bundle.revision}
        assert b"data.portcullis.answer" in envelope  # the document it asked for
        assert parse_envelope(envelope) == parse_envelope(
            raw_evaluate(worker.engine, DECISION_PATH, given)
        )
        # any other document as asked
        _, _, other = worker.evaluate("portcullis.standing", given).partition(b"\n")
        assert b"data.portcullis.standing" in other
    finally:
        worker.engine.close()
    assert frames  # (the frames module the PDP encodes these paths with)


ONE_RULE = """package portcullis

decision := {"verdict": "allow", "reasons": {"one rule"}, "mask": set()}
"""

NO_SHIPPED = (
    ONE_RULE
    + """
answer := object.union(decision, {"mask": shipped_masks_mark})

shipped_masks_mark := "portcullis:shipped_pii_masks"

shipped_pii_masks := set()
"""
)


@pytest.mark.parametrize("source", [ONE_RULE, NO_SHIPPED], ids=["no answer", "no shipped set"])
def test_a_policy_without_the_mark_is_evaluated_as_its_decision(source: str) -> None:
    engine = new_engine(PolicyBundle({"portcullis/policy.rego": source}, {}, "custom", ""))
    try:
        assert shipped_mask_splice(engine) is None
        assert parse_envelope(decision_evaluator(engine)(b"{}")) == {
            "verdict": "allow",
            "reasons": ["one rule"],
            "mask": [],
        }
    finally:
        engine.close()
