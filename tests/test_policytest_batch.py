"""`portcullis policy test` runs every test_* rule in one evaluation (pdp.cli.policytest):
the outcomes and the coverage are those of running each test alone, and a test that halts
with an error still gets its own ERROR line."""

from __future__ import annotations

import io
from pathlib import Path

from opa_bindings import OpaEngine

from pdp.cli import policytest
from pdp.engine.bundle import load_bundle

POLICY = """package lib

allow if input.user == "ada"

allow if input.user == "root"

level := "high" if {
	input.level > 5
} else := "low"

no_input if not input.user
"""

TESTS = """package lib_test

import data.lib

test_ada_allowed if lib.allow with input as {"user": "ada"}

test_bob_denied if not lib.allow with input as {"user": "bob"}

test_high if lib.level == "high" with input as {"level": 9}

test_no_input_at_all if lib.no_input

test_false_fails if {
	lib.level == "high" with input as {"level": 1}
}

test_undefined_fails if lib.allow with input as {"user": "eve"}

test_false_value := false
"""


def library(root: Path, extra: str = "") -> Path:
    (root / "lib.rego").write_text(POLICY)
    (root / "lib_test.rego").write_text(TESTS + extra)
    return root


def engine_for(root: Path) -> OpaEngine:
    bundle = load_bundle(root)
    engine = OpaEngine()
    engine.print_handler = lambda message, location: None
    for path, source in bundle.modules.items():
        engine.add_policy(path, source)
    engine.eval_query("true")
    return engine


def test_the_batch_decides_and_covers_as_each_test_alone(tmp_path: Path) -> None:
    root = library(tmp_path)
    tests = policytest.discover_tests(load_bundle(root).modules)
    assert len(tests) == 7
    batched = policytest._run_batch(engine_for(root), tests)
    assert batched is not None
    alone = policytest._run_one_by_one(engine_for(root), tests)
    statuses = {o.test.name: o.status for o in batched[0]}
    assert statuses == {o.test.name: o.status for o in alone[0]}
    assert statuses == {
        "test_ada_allowed": "PASS",
        "test_bob_denied": "PASS",
        "test_high": "PASS",
        "test_no_input_at_all": "PASS",
        "test_false_fails": "FAIL",
        "test_undefined_fails": "FAIL",
        "test_false_value": "FAIL",
    }
    assert batched[1].per_file() == alone[1].per_file()
    assert batched[1].covered  # lib.rego's rows, as alone


def test_an_erroring_test_is_told_apart_from_the_others(tmp_path: Path) -> None:
    root = library(tmp_path, '\ntest_error if to_number("x") == 1\n')
    out = io.StringIO()
    code = policytest.run_policy_tests(root, out=out)
    text = out.getvalue()
    assert code != 0
    assert "ERROR: data.lib_test.test_error" in text
    assert "FAIL: data.lib_test.test_false_fails" in text
    assert "ERROR: data.lib_test.test_ada_allowed" not in text
    assert "FAIL: 3/8" in text and "ERROR: 1/8" in text
