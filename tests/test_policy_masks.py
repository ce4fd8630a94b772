"""rego/portcullis/pii_masks.rego, the masks everyone outside pii-readers gets, written out
from rego/data.json by `portcullis policy masks --write` (pdp/cli/policymasks.py): the
tests that the shipped module is current, that the command writes and checks it, and
that a policy whose module is stale masks from the data all the same (decision.rego reads
the data while they differ).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from pdp.cli.policymasks import current_text

REGO = Path(__file__).resolve().parents[1] / "rego"
MODULE = REGO / "portcullis" / "pii_masks.rego"


def test_the_shipped_masks_module_is_what_the_data_gives():
    assert MODULE.read_text() == current_text(REGO), (
        "rego/portcullis/pii_masks.rego is stale: run portcullis policy masks --write"
    )


def test_the_command_checks_and_writes_the_module(tmp_path):
    rego = tmp_path / "rego"
    shutil.copytree(REGO, rego)
    check = [sys.executable, "-m", "pdp.cli", "policy", "masks", str(rego), "--check"]
    assert subprocess.run(check, capture_output=True).returncode == 0
    data = json.loads((rego / "data.json").read_text())
    data["portcullis"]["sensitive_columns"].append("salary")
    (rego / "data.json").write_text(json.dumps(data))
    stale = subprocess.run(check, capture_output=True, text=True)
    assert stale.returncode == 1 and "stale" in stale.stderr
    write = [sys.executable, "-m", "pdp.cli", "policy", "masks", str(rego), "--write"]
    assert subprocess.run(write, capture_output=True).returncode == 0
    assert (
        '{"field": "salary", "strategy": "redact"}' in (rego / MODULE.relative_to(REGO)).read_text()
    )
    assert subprocess.run(check, capture_output=True).returncode == 0


def _decision_masks(rego: Path, policy_input: dict[str, Any]) -> list[Any]:
    from pdp.engine.bundle import load_bundle
    from pdp.engine.opa import evaluate, new_engine

    engine = new_engine(load_bundle(rego).without_tests())
    try:
        decision = evaluate(engine, policy_input)
        standing = evaluate(
            engine, {k: policy_input[k] for k in ("identity", "connection")}, "portcullis.standing"
        )
    finally:
        engine.close()
    return [decision, standing]


def _select_input(groups: list[str]) -> dict[str, Any]:
    from pdp.domain.policy_input import postgres_command

    return {
        "identity": {"subject": "a@example.com", "groups": groups, "claims": {}},
        "connection": {"name": "orders-db", "type": "postgres"},
        "session": {"id": "s", "attributes": {}},
        "command": {
            "kind": "postgres.query",
            "raw": "select note from customers",
            "postgres": postgres_command("postgres.query", "select note from customers", {}),
        },
    }


def test_a_stale_module_masks_by_the_data(tmp_path):
    """A column added to sensitive_columns without regenerating the module is masked, with
    the standing (as the PDP passes it) and without; the standing says the module is stale."""
    rego = tmp_path / "rego"
    shutil.copytree(REGO, rego)
    data = json.loads((rego / "data.json").read_text())
    data["portcullis"]["sensitive_columns"].append("note")
    data["portcullis"]["detectors"].remove("token")
    (rego / "data.json").write_text(json.dumps(data))
    policy_input = _select_input(["readonly"])
    decision, standing = _decision_masks(rego, policy_input)
    assert standing["stale_masks"] is True
    with_standing, _ = _decision_masks(rego, {**policy_input, "standing": standing})
    for answer in (decision, with_standing):
        assert answer["verdict"] == "mask"
        assert {"field": "note", "strategy": "redact"} in answer["mask"]
        assert {"detector": "token", "strategy": "partial"} not in answer["mask"]
    assert current_text(rego) != MODULE.read_text()


def test_the_shipped_standing_does_not_say_stale():
    _, standing = _decision_masks(REGO, _select_input(["readonly"]))
    assert "stale_masks" not in standing
