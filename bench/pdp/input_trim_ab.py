"""CPU per evaluated decision, catalogue facts trimmed against whole: an A/B in one process.

The facts trimmed by pdp.domain.policy_input.trim_to_names against the same facts whole,
in alternating blocks.

Each decision is what the PDP does between the attributes and the answer that depends on
the input's size: input.command.postgres built by postgres_command (the classification
remembered per text, as in the PDP), the input to JSON bytes (EmbeddedEngine.evaluate),
the shipped policy evaluated on them (pdp.engine.opa.raw_evaluate, what a worker does)
and the answer parsed. "whole" puts the facts back as the proxy sent them (the input as
the PDP built it before trimming). The agent statements of bench/pdp/policy_profile.py,
a reader and a dba, with the session's standing; two databases: policy_profile's small
catalogue, and one of 20 views (bench/postgres/bench_hotpath.py's: 10 view columns that
carry a phone, 20 views' relation sources) and 12 shadowed built-ins. CPU time of this
process (time.process_time), blocks alternating so load moves both alike. Not a test.

    python bench/pdp/input_trim_ab.py [--blocks 10] [--per-block 200]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: bench/pdp must not stand for the pdp package
    sys.path.insert(0, str(REPO))
if sys.path[0] == str(Path(__file__).resolve().parent):
    sys.path.pop(0)

from pdp.domain.policy_input import postgres_command  # noqa: E402
from pdp.engine.bundle import load_bundle  # noqa: E402
from pdp.engine.embedded import restart_with_go_runtime  # noqa: E402
from pdp.engine.opa import DECISION_PATH, new_engine, parse_envelope, raw_evaluate  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "policy_profile", Path(__file__).with_name("policy_profile.py")
)
assert _spec is not None and _spec.loader is not None
policy_profile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(policy_profile)

FACTS = ("shadowed_functions", "view_columns", "relation_sources")


def catalogues() -> dict[str, dict[str, Any]]:
    small = {
        "protocol": "extended",
        "shadowed_functions": list(policy_profile.SHADOWED_FUNCTIONS),
        "view_columns": dict(policy_profile.VIEW_COLUMNS),
    }
    views = {"protocol": "extended", **policy_profile.VIEWS_CATALOGUE}
    return {"small catalogue": small, "20 views": views}


def decide_all(
    engine: Any, cases: list[tuple[str, dict[str, Any], dict[str, Any]]], whole: bool
) -> None:
    for sql, attributes, rest in cases:
        postgres = postgres_command("postgres.query", sql, attributes)
        if whole:
            postgres = {**postgres, **{k: attributes[k] for k in FACTS if k in attributes}}
        policy_input = {
            **rest,
            "command": {"kind": "postgres.query", "raw": sql, "postgres": postgres},
        }
        raw = json.dumps(policy_input, separators=(",", ":"), ensure_ascii=False).encode()
        parse_envelope(raw_evaluate(engine, DECISION_PATH, raw))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--per-block", type=int, default=200, help="decisions per block")
    args = parser.parse_args()
    restart_with_go_runtime()  # the evaluator as the workers run it
    engine = new_engine(load_bundle(REPO / "rego").without_tests())
    print(f"load average {os.getloadavg()[0]:.1f}; CPU µs per decision (median of blocks)")
    for label, attributes in catalogues().items():
        cases = []
        for sql in policy_profile.AGENT_SQL:
            for groups in (["readonly"], ["dba"]):
                base = policy_profile.with_standing(engine, policy_profile.base_input(sql, groups))
                rest = {k: v for k, v in base.items() if k != "command"}
                cases.append((sql, attributes, rest))
        rounds = max(1, args.per_block // len(cases))
        decide_all(engine, cases, True)
        decide_all(engine, cases, False)
        times: dict[bool, list[float]] = {True: [], False: []}
        for block in range(args.blocks * 2):
            whole = block % 2 == (block // 2) % 2  # ABBA order
            started = time.process_time()
            for _ in range(rounds):
                decide_all(engine, cases, whole)
            times[whole].append((time.process_time() - started) / (rounds * len(cases)) * 1e6)
        before, after = statistics.median(times[True]), statistics.median(times[False])
        sizes = {
            whole: len(
                json.dumps(
                    {
                        **postgres_command("postgres.query", sql, attributes),
                        **({k: attributes[k] for k in FACTS if k in attributes} if whole else {}),
                    }
                )
            )
            for whole in (True, False)
            for sql in policy_profile.AGENT_SQL[:1]
        }
        print(
            f"  {label:16s} whole {before:7.1f}   trimmed {after:7.1f}   {after / before:5.3f}x"
            f"   (first statement's input.command.postgres: {sizes[True]} -> {sizes[False]} B)"
        )
    attributes_from_the_wire(args.blocks)
    print(f"load average {os.getloadavg()[0]:.1f}")


def attributes_from_the_wire(blocks: int, per_block: int = 2000) -> None:
    """A Decide's attributes made Python values and their reuse key (pdp.api.service):
    struct_to_dict and reuse_key against StructMemo's hit, ABBA blocks, for each catalogue."""
    from google.protobuf import struct_pb2

    from pdp.api.recording_rpc import StructMemo, struct_to_dict
    from portcullis.reuse import reuse_key

    def before(message: struct_pb2.Struct) -> None:
        reuse_key("postgres.query", struct_to_dict(message))

    print("  a Decide's attributes and reuse key from the Struct, CPU µs (before / memo hit)")
    for label, attributes in catalogues().items():
        message = struct_pb2.Struct()
        message.update(attributes)
        memo = StructMemo(reuse_key)
        memo.decode(message, "postgres.query")

        def after(message: struct_pb2.Struct, memo: StructMemo = memo) -> None:
            memo.decode(message, "postgres.query")

        convert: dict[bool, Callable[[struct_pb2.Struct], None]] = {True: before, False: after}
        times: dict[bool, list[float]] = {True: [], False: []}
        for block in range(blocks * 2):
            old = block % 2 == (block // 2) % 2
            started = time.process_time()
            for _ in range(per_block):
                convert[old](message)
            times[old].append((time.process_time() - started) / per_block * 1e6)
        was, now = statistics.median(times[True]), statistics.median(times[False])
        print(
            f"  {label:16s} {message.ByteSize():5d} B   {was:6.1f} -> {now:6.1f}"
            f"   {now / was:5.3f}x"
        )


if __name__ == "__main__":
    main()
