"""The input the PDP adds for speed (issue 27) never changes a decision.

Two departures from DESIGN.md's input contract: input.command.postgres.types (the types of
the classified statements, which the policy's rule index reads) and input.standing (the
policy's own conclusions about the identity on the connection, evaluated once per session
and revision: rego/portcullis/standing.rego). These tests try to make either one say
something the policy would not: a proxy sending its own types, a standing kept across a
policy reload, a summary that leaves a statement out, and decisions that differ with the
standing from without it, on a real engine.
"""

from __future__ import annotations

import gzip
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pdp_harness import REGO

from pdp.domain.decisions import STANDING_PATH, Decider
from pdp.domain.policy_input import postgres_command, statement_types
from pdp.engine.embedded import EmbeddedEngine
from pdp.sql import classify
from pdp.store.sqlite import SQLiteAuditStore
from portcullis.config import EngineSettings

CORPUS = Path(__file__).resolve().parent / "data" / "sql_corpus.txt.gz"
_, *SQL_TEXTS = gzip.decompress(CORPUS.read_bytes()).decode().split("\n\x1e\n")


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(SQL_TEXTS))
def test_the_types_name_every_classified_statement(sql: str) -> None:
    statements = classify(sql)
    assert statement_types(statements) == {s["type"]: True for s in statements}


def test_a_proxy_cannot_send_the_types_or_the_statements() -> None:
    details = postgres_command(
        "postgres.query",
        "SELECT 1; DROP TABLE orders",
        {"types": {"select": True}, "statements": [{"type": "select"}]},
    )
    assert len(details["statements"]) == 2
    assert details["types"] == {s["type"]: True for s in details["statements"]}
    assert len(details["types"]) == 2  # the DROP's type too, whatever the proxy said


def test_a_fast_path_call_gets_the_types_of_its_entry() -> None:
    details = postgres_command("postgres.function_call", "", {"function": "lo_import"})
    assert details["types"] == {"select": True}


class CountingEngine:
    """The real embedded engine, counting what it is asked (no fake evaluation)."""

    def __init__(self, engine: EmbeddedEngine) -> None:
        self.engine = engine
        self.name = engine.name
        self.knows_revision = engine.knows_revision
        self.asked: list[tuple[str, dict[str, Any]]] = []

    @property
    def revision(self) -> str:
        return self.engine.revision

    async def evaluate(
        self, policy_input: dict[str, Any], path: str = "portcullis.decision"
    ) -> Any:
        self.asked.append((path, policy_input))
        return await self.engine.evaluate(policy_input, path)


def session_input(groups: list[str], sql: str) -> dict[str, Any]:
    return {
        "identity": {"subject": "agent@example.com", "groups": groups, "claims": {}},
        "connection": {"name": "orders-db", "type": "postgres", "labels": {}},
        "session": {"id": "s-1", "client_addr": "127.0.0.1:5", "client": "t", "attributes": {}},
        "command": {
            "kind": "postgres.query",
            "raw": sql,
            **{"postgres": postgres_command("postgres.query", sql, {"protocol": "simple"})},
        },
        "now": "2026-01-01T00:00:00Z",
    }


@pytest.fixture
async def store(tmp_path):
    """A started SQLite audit store for a Decider's records."""
    opened = SQLiteAuditStore(tmp_path / "d.db", synchronous="normal")
    await opened.start()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def engine(tmp_path):
    policies = tmp_path / "rego"
    shutil.copytree(REGO, policies, ignore=shutil.ignore_patterns("*_test.rego"))
    real = EmbeddedEngine(
        EngineSettings(policies=policies, workers=1, reload=False, timeout_ms=5000)
    )
    await real.start()
    yield CountingEngine(real), policies
    await real.close()


async def test_decisions_with_the_standing_equal_those_without(engine, store):
    counting, _ = engine
    decider = Decider(counting, store, reuse_evaluations=False)
    texts = [*random.Random(27).sample(SQL_TEXTS, 60), "SELECT email FROM customers"]
    for n, sql in enumerate(texts):
        groups = (["readonly"], ["dba"], ["pii-readers"], ["nobody"])[n % 4]
        with_standing = await decider.decide(
            session_input(groups, sql),
            {"session_id": f"s-{groups[0]}"},
            standing_of=f"s-{groups[0]}",
        )
        without = await decider.decide(session_input(groups, sql), {"session_id": "x"})
        assert with_standing.verdict == without.verdict, sql
    standings = [i for path, i in counting.asked if path == STANDING_PATH]
    assert len(standings) == 4  # once per session, not per command
    assert all("command" not in i for i in standings)
    passed = [i for path, i in counting.asked if path != STANDING_PATH and "standing" in i]
    assert len(passed) == len(texts) - 4  # each session's first command goes without
    decider.forget_session("s-readonly")
    assert "s-readonly" not in (decider.standings or {})


async def test_a_reload_works_the_standing_out_again(engine, store):
    counting, policies = engine
    decider = Decider(counting, store, reuse_evaluations=False)
    sql = "SELECT id FROM orders"
    for _ in range(2):  # the first command goes without a standing, the second with
        first = await decider.decide(session_input(["readonly"], sql), {}, standing_of="s")
        assert first.verdict.kind.wire == "mask"
    assert len([p for p, _ in counting.asked if p == STANDING_PATH]) == 1
    # the reloaded policy makes readonly privileged: the old standing must not be used
    data = (policies / "data.json").read_text()
    (policies / "data.json").write_text(
        data.replace('"privileged_groups": ["dba"]', '"privileged_groups": ["dba", "readonly"]')
    )
    assert await counting.engine.reload()
    after = await decider.decide(
        session_input(["readonly"], "UPDATE orders SET x = 1 WHERE id = 2"), {}, standing_of="s"
    )
    assert after.verdict.kind.wire in ("allow", "mask"), after.verdict
    assert len([p for p, _ in counting.asked if p == STANDING_PATH]) == 2


async def test_a_policy_without_a_standing_is_asked_without_one(tmp_path, store):
    policies = tmp_path / "rego"
    policies.mkdir()
    (policies / "p.rego").write_text(
        'package portcullis\n\ndecision := {"verdict": "allow", "reasons": ["ok"], "mask": []}\n'
    )
    real = EmbeddedEngine(
        EngineSettings(policies=policies, workers=1, reload=False, timeout_ms=5000)
    )
    await real.start()
    try:
        counting = CountingEngine(real)
        decider = Decider(counting, store, reuse_evaluations=False)
        for _ in range(3):
            d = await decider.decide(session_input(["readonly"], "SELECT 1"), {}, standing_of="s")
            assert d.verdict.kind.wire == "allow"
        assert len([p for p, _ in counting.asked if p == STANDING_PATH]) == 1
        assert not any("standing" in i for p, i in counting.asked if p != STANDING_PATH)
    finally:
        await real.close()


async def test_equal_answers_map_to_one_verdict_and_records_stay_apart(engine, store):
    counting, _ = engine
    decider = Decider(counting, store, reuse_evaluations=False)
    first = await decider.decide(session_input(["readonly"], "SELECT 1"), {}, standing_of="s")
    again = await decider.decide(session_input(["readonly"], "SELECT 2"), {}, standing_of="s")
    other = await decider.decide(session_input(["readonly"], "DROP TABLE x"), {}, standing_of="s")
    assert first.verdict is again.verdict  # one mapping of the same answer
    assert first.id != again.id
    assert other.verdict.kind.wire == "deny" and other.verdict is not first.verdict


async def test_a_session_of_one_command_pays_for_no_standing(engine, store):
    counting, _ = engine
    decider = Decider(counting, store, reuse_evaluations=False)
    for n in range(5):  # five sessions of one command each
        await decider.decide(session_input(["readonly"], "SELECT 1"), {}, standing_of=f"s{n}")
    assert [p for p, _ in counting.asked if p == STANDING_PATH] == []
    for n in range(5):
        decider.forget_session(f"s{n}")
    assert not decider.standings
