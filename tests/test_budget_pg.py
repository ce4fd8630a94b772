"""Egress budgets (issue 30) through the real Postgres proxy, PDP and OPA to the machine's
PostgreSQL with asyncpg: rows counted by the proxy, reported to the PDP, and a statement
past the budget needs approval with the budget and the usage in its reason — also in a
new session of the same identity, which does not start from zero."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import asyncpg
import pytest
from pdp_harness import REGO
from pg_harness import running_gateway

ROWS = "SELECT g FROM generate_series(1, 3) AS g"


def policies_with_budget(tmp: Path, budget: dict) -> Path:
    """The shipped policies copied under `tmp`, with `budget` as the readonly group's
    egress budget and no breakers."""
    target = tmp / "rego"
    shutil.copytree(REGO, target)
    data = json.loads((target / "data.json").read_text())
    data["portcullis"]["budgets"] = {"readonly": budget}
    data["portcullis"]["breakers"] = {}
    (target / "data.json").write_text(json.dumps(data))
    return target


async def _held_reasons(gw) -> list[str]:
    records = await gw.pdp.store.query(kind="decision")
    return [
        "; ".join(r.body.get("reasons", []))
        for r in records
        if r.body.get("verdict") == "require_approval"
    ]


async def test_rows_past_the_session_budget_need_approval_naming_budget_and_usage(tmp_path):
    budget = {"rows_per_session": 5, "rows_per_hour": 100, "over": "require_approval"}
    async with running_gateway(tmp_path, policies=policies_with_budget(tmp_path, budget)) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token()))
        try:
            assert len(await conn.fetch(ROWS)) == 3
            # the same text again: the proxy may reuse the verdict, within the allowance
            assert len(await conn.fetch(ROWS)) == 3
            with pytest.raises(asyncpg.PostgresError) as caught:
                await conn.fetch("SELECT 1")
            assert "approval" in str(caught.value)
        finally:
            await conn.close()
        reasons = await _held_reasons(gw)  # asyncpg: its Parse's decision and its Bind's
        assert reasons
        assert all("egress budget exceeded" in r for r in reasons)
        assert all("6 of 5 rows per session used" in r for r in reasons)
        decisions = await gw.pdp.store.query(kind="decision")
        assert any(d.body.get("egress_used", {}).get("session_rows") == 6 for d in decisions)


async def test_a_new_session_does_not_reset_the_hourly_budget(tmp_path):
    budget = {"rows_per_hour": 8, "over": "deny"}
    async with running_gateway(tmp_path, policies=policies_with_budget(tmp_path, budget)) as gw:
        first = await asyncpg.connect(gw.dsn(gw.token()))
        assert len(await first.fetch(ROWS)) == 3
        assert len(await first.fetch("SELECT g FROM generate_series(1, 4) AS g")) == 4
        await first.close()  # its last rows reach the PDP with the close
        second = await asyncpg.connect(gw.dsn(gw.token()))
        try:
            assert len(await second.fetch("SELECT g FROM generate_series(1, 2) AS g")) == 2
            with pytest.raises(asyncpg.PostgresError) as caught:
                await second.fetch("SELECT 2")
            assert caught.value.sqlstate == "42501"
            assert "9 of 8 rows per hour used" in str(caught.value)
        finally:
            await second.close()
        # another identity has its own budget
        other = await asyncpg.connect(gw.dsn(gw.token(sub="bob@example.com")))
        try:
            assert await other.fetchval("SELECT 3") == 3
        finally:
            await other.close()


async def test_bytes_are_counted_too(tmp_path):
    budget = {"bytes_per_session": 20000, "over": "deny"}
    async with running_gateway(tmp_path, policies=policies_with_budget(tmp_path, budget)) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token()))
        try:
            await conn.fetch("SELECT repeat('x', 30000)")
            with pytest.raises(asyncpg.PostgresError) as caught:
                await conn.fetch("SELECT 1")
            assert "bytes per session used" in str(caught.value)
        finally:
            await conn.close()
