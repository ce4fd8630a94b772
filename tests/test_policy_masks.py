"""rego/portcullis/pii_masks.rego: the masks everyone outside pii-readers gets, written out
from rego/data.json (sensitive_columns, detectors) so the evaluator does not build them on
every decision (issue 27), and kept equal to the data.

Owns generating that module (`python tests/test_policy_masks.py --write` after editing
either list) and the tests that it is current and that a policy whose module is stale
masks from the data all the same (decision.rego reads the data while they differ).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

REGO = Path(__file__).resolve().parents[1] / "rego"
MODULE = REGO / "portcullis" / "pii_masks.rego"

HEADER = """\
# Generated from rego/data.json by `python tests/test_policy_masks.py --write`: do not edit.
# The masks everyone outside pii-readers gets (decision.rego's command_masks), written out
# as literals because the evaluator builds a literal once, when it compiles the policy,
# where it would build the same twelve objects from data.portcullis.sensitive_columns and
# data.portcullis.detectors again on every decision. tests/test_policy_masks.py fails when
# this module is not what the data gives, and while the two differ decision.rego masks by
# the data (pii_masks_stale), so an edit of the data alone still masks what it names.
package portcullis
"""


def masks_module(data: dict[str, Any]) -> str:
    """The text of pii_masks.rego for data.json's contents."""
    portcullis = data["portcullis"]
    columns = [{"field": c, "strategy": "redact"} for c in sorted(portcullis["sensitive_columns"])]
    detectors = [{"detector": d, "strategy": "partial"} for d in sorted(portcullis["detectors"])]

    def literal(name: str, masks: list[dict[str, Any]], comment: str) -> str:
        lines = "".join(f"\t{json.dumps(m, separators=(', ', ': '))},\n" for m in masks)
        return f"\n# {comment}\n{name} := {{\n{lines}}}\n"

    return (
        HEADER
        + literal(
            "shipped_pii_masks",
            columns + detectors,
            "sensitive columns by name, and the detectors (SQL, HTTP and MCP answers)",
        )
        + literal(
            "shipped_detector_masks", detectors, "the detectors alone (SSH exec and shell output)"
        )
    )


def current_text(rego: Path = REGO) -> str:
    return masks_module(json.loads((rego / "data.json").read_text()))


def test_the_shipped_masks_module_is_what_the_data_gives():
    assert MODULE.read_text() == current_text(), (
        "rego/portcullis/pii_masks.rego is stale: run python tests/test_policy_masks.py --write"
    )


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


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_policy_masks.py --write")
    MODULE.write_text(current_text())
    print(f"wrote {MODULE}")
