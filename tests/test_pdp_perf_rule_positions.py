"""The rules a Postgres decision meets come first in their rule sets (issue 27).

OPA 1.20.2's rule index keeps one slot per rule position any lookup has returned (a rule's
position: its place among the rules of its set, modules in file order) and walks every
slot again on each lookup: ~330 instructions a slot, ~30 lookups a decision. An agent's
query met allow's "every statement is allowed" at place 14 (after http.rego's and
mcp.rego's allow rules), the function rules of pg_denials and pg_lineage_denials at 12-16
and all 12 rules of deny_unindexed: 15 slots, then 9; needs_approval's postgres rule at 8,
pg_uncached's rule of constant keys at 7, pg_lineage_denials' argument rule at 8, the
privileged's function approval at 8 and the 8 rules deny_unindexed returned: 9 slots, now 6
(policyperf11). Counted from the evaluator's trace (the rules it enters), a number that
does not depend on the machine's load.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from test_pdp_perf_rule_lookups import traced_decision

from pdp.engine.bundle import load_bundle
from pdp.engine.opa import new_engine

REGO = Path(__file__).resolve().parent.parent / "rego"
HEAD = re.compile(r"^([a-z_][a-z0-9_]*)\b")
# the slots a Postgres decision may leave in the index: positions 0-5
MOST = 5

QUERIES = [
    "SELECT id, email, total FROM orders WHERE customer_id = 42",
    "SELECT count(*), lower(name), now() FROM customers WHERE name ILIKE 'a%' ORDER BY 2",
    "SELECT o.id, sum(o.total) FROM orders o JOIN customers c ON c.id = o.customer_id "
    "GROUP BY o.id ORDER BY 2 DESC LIMIT 10",
    "UPDATE orders SET status = 'shipped' WHERE id = 7",
    "BEGIN; SELECT (c).name FROM customers c; COMMIT",
    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
]


@pytest.fixture(scope="module")
def engine() -> Any:
    engine = new_engine(load_bundle(REGO).without_tests())
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def positions() -> dict[str, tuple[str, int]]:
    return rule_positions()


def rule_positions() -> dict[str, tuple[str, int]]:
    """'file:line' of each rule head -> (its set, its position there), modules in file order
    as the compiler takes them (an else branch is part of its rule)."""
    bundle = load_bundle(REGO).without_tests()
    placed: dict[str, tuple[str, int]] = {}
    counts: dict[str, int] = {}
    for path in sorted(bundle.modules):
        for number, line in enumerate(bundle.modules[path].splitlines(), 1):
            match = HEAD.match(line)
            if match is None or match.group(1) in ("package", "import", "default", "else"):
                continue
            name = match.group(1)
            placed[f"{path}:{number}"] = (name, counts.get(name, 0))
            counts[name] = counts.get(name, 0) + 1
    return placed


def entered(
    engine: Any, placed: dict[str, tuple[str, int]], sql: str, groups: list[str]
) -> set[tuple[str, int]]:
    trace = traced_decision(engine, groups, sql, {"shadowed_functions": ["lower", "now"]})
    return {
        placed[e["location"]] for e in trace if e["op"] == "Enter" and e.get("location") in placed
    }


@pytest.mark.parametrize("groups", [["readonly"], ["dba"], ["pii-readers", "readonly"]])
@pytest.mark.parametrize("sql", QUERIES)
def test_a_postgres_decision_meets_rules_within_the_first_places_of_their_sets(
    engine: Any, positions: dict[str, tuple[str, int]], sql: str, groups: list[str]
) -> None:
    late = sorted((name, at) for name, at in entered(engine, positions, sql, groups) if at > MOST)
    assert late == []


def test_allow_of_every_statement_comes_first(
    engine: Any, positions: dict[str, tuple[str, int]]
) -> None:
    met = entered(engine, positions, QUERIES[0], ["readonly"])
    assert {at for name, at in met if name == "allow"} <= {0, 1}
