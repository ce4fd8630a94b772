"""`portcullis policy diff`: a day of real traffic (asyncpg through the real Postgres proxy,
the real PDP, decisions in the real audit store) replayed against a changed policy
directory, run as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import asyncpg
import yaml
from pdp_harness import REGO
from pg_harness import running_gateway


def portcullis(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pdp.cli", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )


async def _a_day_of_traffic(tmp_path) -> None:
    async with running_gateway(tmp_path) as gw:
        reader = await asyncpg.connect(gw.dsn(gw.token("rita@example.com", ("readonly",))))
        await reader.fetch("SELECT id, total FROM orders")
        await reader.fetch("SELECT id, email FROM customers")
        try:
            await reader.execute("DROP TABLE orders")
        except asyncpg.InsufficientPrivilegeError:
            pass
        await reader.close()
        dba = await asyncpg.connect(gw.dsn(gw.token("dora@example.com", ("dba",))))
        await dba.fetch("SELECT id, total FROM orders")
        await dba.close()


def _config(tmp_path) -> str:
    path = tmp_path / "diff.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "pdp": {
                    "engine": {"type": "embedded", "policies": str(REGO)},
                    "store": {"type": "sqlite", "path": str(tmp_path / "audit.db")},
                    "signing_key": str(tmp_path / "signing.key"),
                },
                "identity": {"dev": True, "dev_key": str(tmp_path / "dev.key")},
            }
        )
    )
    return str(path)


def _candidate(tmp_path, change) -> str:
    candidate = tmp_path / "new-rego"
    shutil.copytree(REGO, candidate, ignore=shutil.ignore_patterns("*_test.rego"))
    data = json.loads((candidate / "data.json").read_text())
    change(data["portcullis"])
    (candidate / "data.json").write_text(json.dumps(data))
    return str(candidate)


async def test_the_same_policy_replays_every_recorded_decision_unchanged(tmp_path):
    await _a_day_of_traffic(tmp_path)
    result = portcullis(
        "policy",
        "diff",
        "--since",
        "24h",
        "--policies",
        str(REGO),
        "-c",
        _config(tmp_path),
        "--json",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    # two session opens, four statements: every one rebuilt and evaluated the same
    assert report["replayed"] == 6
    assert report["changed"] == 0 and report["unchanged"] == 6
    assert not report["skipped"]


async def test_a_changed_policy_names_the_decisions_that_would_change(tmp_path):
    await _a_day_of_traffic(tmp_path)

    def change(portcullis_data):
        # readers no longer reach orders-db; email is no longer sensitive
        portcullis_data["connections"]["orders-db"]["groups"].remove("readonly")
        portcullis_data["sensitive_columns"].remove("email")

    candidate = _candidate(tmp_path, change)
    result = portcullis(
        "policy",
        "diff",
        "--since",
        "24h",
        "--policies",
        candidate,
        "-c",
        _config(tmp_path),
        "--json",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    # rita's session.open: allow → deny, with the rule's reason and rita as the example
    opened = [g for g in report["by_rule"] if g["examples"][0]["kind"] == "session.open"]
    assert len(opened) == 1 and opened[0]["before"] == "allow" and opened[0]["after"] == "deny"
    assert opened[0]["count"] == 1
    assert opened[0]["examples"][0]["subject"] == "rita@example.com"
    assert opened[0]["rule"] != "(no reason given)"
    # dora (dba) still opens her session; her reads lose the email mask (not a pii-reader)
    examples = [e for g in report["by_rule"] for e in g["examples"]]
    assert not [
        e for e in examples if e["subject"] == "dora@example.com" and e["kind"] == "session.open"
    ]
    dora = [g for g in report["by_rule"] if g["examples"][0]["subject"] == "dora@example.com"]
    assert [g["change"] for g in dora] == [
        'mask -> mask (no longer: {"field":"email","strategy":"redact"}; now also: none)'
    ]
    # rita's statements in a session that would not open: counted as changes too
    assert report["changed"] == sum(g["count"] for g in report["by_rule"])
    assert report["replayed"] == 6

    text = portcullis(
        "policy", "diff", "--since", "24h", "--policies", candidate, "-c", _config(tmp_path)
    )
    assert text.returncode == 1
    assert "would change:" in text.stdout and "allow -> deny" in text.stdout
    assert "rita@example.com" in text.stdout


async def test_masking_that_would_stop_is_reported(tmp_path):
    await _a_day_of_traffic(tmp_path)
    candidate = _candidate(tmp_path, lambda d: d["sensitive_columns"].remove("email"))
    result = portcullis(
        "policy", "diff", "--policies", candidate, "-c", _config(tmp_path), "--json"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    # every read here was masked (readers and a dba are not pii-readers); each loses the
    # email field rule and keeps the rest: one group, three decisions
    [masked] = report["by_rule"]
    assert masked["count"] == 3
    assert masked["change"].startswith('mask -> mask (no longer: {"field":"email"')
    raws = {e["raw"] for e in masked["examples"]}
    assert "SELECT id, email FROM customers" in raws


def test_a_candidate_that_does_not_load_is_an_error_not_a_report(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.rego").write_text("package portcullis\n\ndecision := {")
    result = portcullis("policy", "diff", "--policies", str(broken), "-c", _config(tmp_path))
    assert result.returncode == 1
    assert "does not load" in result.stderr
