"""The shipped policy on the real evaluator, in process, for tests that compare decisions:
`shipped_engine` (rego/ without its tests; a module makes it its fixture with
`engine = pytest.fixture(scope="module")(shipped_engine)`) and `decide`, whose evaluation
error is an answer to compare like any other."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pdp.engine.bundle import load_bundle
from pdp.engine.opa import DECISION_PATH, new_engine, parse_envelope, raw_evaluate

REGO = Path(__file__).resolve().parent.parent / "rego"


def shipped_engine() -> Iterator[Any]:
    eng = new_engine(load_bundle(REGO).without_tests())
    yield eng
    eng.close()


def decide(engine: Any, policy_input: dict[str, Any]) -> Any:
    raw = json.dumps(policy_input, separators=(",", ":"), ensure_ascii=False).encode()
    try:
        return parse_envelope(raw_evaluate(engine, DECISION_PATH, raw))
    except Exception as exc:  # an evaluation error is an answer to compare too
        return f"error: {exc}"
