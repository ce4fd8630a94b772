"""`portcullis policy masks`: rego/portcullis/pii_masks.rego, the masks everyone outside
pii-readers gets, written out from the policy directory's data.json.

Owns generating that module from `sensitive_columns` and `detectors` (issue 27: the
evaluator builds a literal once, when it compiles the policy, where it would build the
same objects from data on every decision) and checking that it is current. While the
module and the data differ, decision.rego masks by the data (the standing's
`stale_masks`), so an edit of data.json alone still masks what it names; regenerating
only makes it cheap again.

    portcullis policy masks [rego]            print the module the data gives
    portcullis policy masks [rego] --write    write it (after editing either list)
    portcullis policy masks [rego] --check    exit 1 when the module is stale

Exit 0 done (or current), 1 stale (--check), 2 the data cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

MODULE = Path("portcullis") / "pii_masks.rego"

HEADER = """\
# Generated from rego/data.json by `portcullis policy masks --write`: do not edit.
# The masks everyone outside pii-readers gets (decision.rego's command_masks), written out
# as literals because the evaluator builds a literal once, when it compiles the policy,
# where it would build the same twelve objects from data.portcullis.sensitive_columns and
# data.portcullis.detectors again on every decision. `portcullis policy masks --check`
# (and tests/test_policy_masks.py) fails when this module is not what the data gives, and
# while the two differ decision.rego masks by the data (pii_masks_stale), so an edit of
# the data alone still masks what it names.
package portcullis
"""


def masks_module(data: dict[str, Any]) -> str:
    """The text of pii_masks.rego for a data.json's contents."""
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


def current_text(rego: Path) -> str:
    """The module the policy directory's data.json gives."""
    return masks_module(json.loads((rego / "data.json").read_text()))


def cmd_policy_masks(args: argparse.Namespace) -> int:
    rego = Path(args.path)
    try:
        text = current_text(rego)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"portcullis policy masks: {rego / 'data.json'}: {exc!r}", file=sys.stderr)
        return 2
    module = rego / MODULE
    if args.check:
        if not module.exists() or module.read_text() != text:
            print(f"{module} is stale: run portcullis policy masks {rego} --write", file=sys.stderr)
            return 1
        return 0
    if args.write:
        module.write_text(text)
        print(f"wrote {module}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


def register(policy_subparsers: Any) -> None:
    masks = policy_subparsers.add_parser(
        "masks", help="write (or check) pii_masks.rego from data.json's sensitive columns"
    )
    masks.add_argument("path", nargs="?", default="rego")
    action = masks.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="write the module")
    action.add_argument("--check", action="store_true", help="exit 1 when the module is stale")
    masks.set_defaults(func=cmd_policy_masks)
