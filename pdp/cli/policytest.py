"""`portcullis policy test`: run the `test_*` rules of a policy directory, with coverage.

Owns `opa test` semantics on the embedded evaluator: every module of the directory,
`*_test.rego` included, loads into one engine with the data; each `test_*` rule runs
alone; a test passes only when it evaluates to true; coverage is the union over all
tests of the rows of non-test modules. Runs in the CLI's own process (it imports the Go
evaluator directly), never inside the PDP server.

The tests run as one query that collects every test's values: the evaluator prepares each
distinct query afresh against the whole policy (~0.7 s each for the shipped library, 331
tests, ~4 min and ~5 GB of prepared queries one by one; ~12 s as one). Rego has no side
effects, so a test's values and the rows it covers are the same in the batch as alone. A
test that halts evaluation with an error halts the batch: then every test runs alone, as
before, and each one's error is told apart.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pdp.engine.bundle import BundleError, load_bundle

_PACKAGE = re.compile(r"^package\s+([A-Za-z_][\w.]*)", re.MULTILINE)
_TEST_HEAD = re.compile(r"^(test_\w*)\b(?!\s*\()", re.MULTILINE)


@dataclass(frozen=True)
class PolicyTest:
    package: str
    name: str

    @property
    def ref(self) -> str:
        return f"data.{self.package}.{self.name}"


@dataclass
class TestOutcome:
    test: PolicyTest
    status: str  # PASS, FAIL or ERROR
    seconds: float
    message: str = ""
    alone: bool = True  # evaluated by itself (seconds are its own), not in the batch


@dataclass
class Coverage:
    """Rows covered by any test, and rows some test reported but none covered, per file."""

    covered: dict[str, set[int]] = field(default_factory=dict)
    not_covered: dict[str, set[int]] = field(default_factory=dict)

    def add(self, report: dict[str, Any] | None) -> None:
        for path, entry in ((report or {}).get("files") or {}).items():
            if path.endswith("_test.rego"):
                continue
            self.covered.setdefault(path, set()).update(_rows(entry.get("covered")))
            self.not_covered.setdefault(path, set()).update(_rows(entry.get("not_covered")))

    def per_file(self) -> dict[str, tuple[int, int, list[int]]]:
        """path → (covered rows, total rows, rows never covered)."""
        result = {}
        for path in sorted(self.covered.keys() | self.not_covered.keys()):
            covered = self.covered.get(path, set())
            missed = sorted(self.not_covered.get(path, set()) - covered)
            result[path] = (len(covered), len(covered) + len(missed), missed)
        return result

    def percent(self) -> float:
        files = self.per_file().values()
        total = sum(t for _, t, _ in files)
        return 100.0 * sum(c for c, _, _ in files) / total if total else 0.0


def discover_tests(modules: dict[str, str]) -> list[PolicyTest]:
    """Every `test_*` rule of every module, once, in file order."""
    seen: dict[PolicyTest, None] = {}
    for source in modules.values():
        package = _PACKAGE.search(source)
        if package is None:
            continue
        for match in _TEST_HEAD.finditer(source):
            seen[PolicyTest(package.group(1), match.group(1))] = None
    return list(seen)


def run_policy_tests(
    root: Path,
    threshold: float = 0.0,
    verbose: bool = False,
    out: TextIO = sys.stdout,
    run: str | None = None,
) -> int:
    """Run the tests under root and print an `opa test`-like report; returns the exit code.

    Exit 0 only when tests were found, every one passed and coverage reaches threshold.
    """
    from opa_bindings import OpaEngine, OpaError

    try:
        bundle = load_bundle(root)
    except BundleError as exc:
        print(f"error: {exc}", file=out)
        return 1
    tests = discover_tests(bundle.modules)
    if run:
        pattern = re.compile(run)
        tests = [t for t in tests if pattern.search(t.ref)]
    if not tests:
        print(f"error: no test_* rules found under {root}", file=out)
        return 1

    engine = OpaEngine()
    engine.print_handler = lambda message, location: None
    try:
        try:
            for path, source in bundle.modules.items():
                engine.add_policy(path, source)
            if bundle.data:
                engine.add_data(bundle.data)
            engine.eval_query("true")  # compile errors surface at the first evaluation
        except OpaError as exc:
            print(f"error: policy does not compile: {exc.message}", file=out)
            return 1
        outcomes, coverage = _run_all(engine, tests)
    finally:
        engine.close()
    return _report(outcomes, coverage, threshold, verbose, out)


def _run_all(engine: Any, tests: list[PolicyTest]) -> tuple[list[TestOutcome], Coverage]:
    batched = _run_batch(engine, tests)
    return batched if batched is not None else _run_one_by_one(engine, tests)


def _run_batch(engine: Any, tests: list[PolicyTest]) -> tuple[list[TestOutcome], Coverage] | None:
    """Every test in one evaluation: each test's values as a list (empty when undefined);
    None when the evaluation failed (some test halted with an error)."""
    from opa_bindings import OpaError

    values = ", ".join(f'"{i}": [__v | __v := {t.ref}]' for i, t in enumerate(tests))
    started = time.perf_counter()
    try:
        rows = engine.eval_query(f"__results := {{{values}}}", coverage=True)
    except OpaError:
        return None
    share = (time.perf_counter() - started) / len(tests)
    if len(rows) != 1:
        return None
    results = rows[0].get("__results") or {}
    outcomes = []
    for i, test in enumerate(tests):
        found = results.get(str(i)) or []
        passed = bool(found) and all(value is True for value in found)
        outcomes.append(TestOutcome(test, "PASS" if passed else "FAIL", share, alone=False))
    coverage = Coverage()
    coverage.add(engine.last_coverage)
    return outcomes, coverage


def _run_one_by_one(engine: Any, tests: list[PolicyTest]) -> tuple[list[TestOutcome], Coverage]:
    from opa_bindings import OpaError

    coverage = Coverage()
    outcomes = []
    for test in tests:
        started = time.perf_counter()
        try:
            rows = engine.eval_query(f"__result := {test.ref}", coverage=True)
            passed = bool(rows) and all(row.get("__result") is True for row in rows)
            outcome = TestOutcome(test, "PASS" if passed else "FAIL", 0.0)
        except OpaError as exc:
            outcome = TestOutcome(test, "ERROR", 0.0, exc.message)
        outcome.seconds = time.perf_counter() - started
        coverage.add(engine.last_coverage)
        outcomes.append(outcome)
    return outcomes, coverage


def _report(
    outcomes: list[TestOutcome], coverage: Coverage, threshold: float, verbose: bool, out: TextIO
) -> int:
    for outcome in outcomes:
        if verbose or outcome.status != "PASS":
            line = f"{outcome.status}: {outcome.test.ref}"
            if outcome.alone:
                line += f" ({outcome.seconds * 1000:.1f}ms)"
            print(line + (f"\n  {outcome.message}" if outcome.message else ""), file=out)
    total = len(outcomes)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("PASS", "FAIL", "ERROR")}
    print("-" * 80, file=out)
    print(f"PASS: {counts['PASS']}/{total}", file=out)
    for status in ("FAIL", "ERROR"):
        if counts[status]:
            print(f"{status}: {counts[status]}/{total}", file=out)
    for path, (covered, rows, missed) in coverage.per_file().items():
        pct = 100.0 * covered / rows if rows else 100.0
        tail = f" (not covered: {_ranges(missed)})" if missed and verbose else ""
        print(f"  {path}: {pct:.1f}% of {rows} lines{tail}", file=out)
    percent = coverage.percent()
    print(f"coverage: {percent:.1f}% (threshold {threshold:g}%)", file=out)
    if percent < threshold:
        print(f"error: coverage {percent:.1f}% is below the threshold {threshold:g}%", file=out)
    ok = counts["PASS"] == total and percent >= threshold
    return 0 if ok else 2


def _rows(ranges: list[dict[str, Any]] | None) -> set[int]:
    rows: set[int] = set()
    for item in ranges or ():
        rows.update(range(item["start"]["row"], item["end"]["row"] + 1))
    return rows


def _ranges(rows: list[int]) -> str:
    spans: list[list[int]] = []
    for row in rows:
        if spans and row == spans[-1][1] + 1:
            spans[-1][1] = row
        else:
            spans.append([row, row])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
