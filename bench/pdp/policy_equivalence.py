"""Does a rewritten policy decide exactly as the policy it replaces? A differential run.

Evaluates data.portcullis.decision with rego/ as it is and with rego/ as committed at a git
revision, both in the embedded evaluator, over the golden cases of tests/golden,
rego/examples, the profiler's agent inputs (bench/pdp/policy_profile.py), and statements of
PostgreSQL's regression suite (tests/data/sql_corpus.txt.gz, classified by pdp.sql as the
PDP does) asked by a reader, a privileged and a pii-reader identity, with and without
shadowed functions, view columns (some carrying pg_stat_activity.query), an approval and a
transaction pooler. Prints every input whose decision differs (verdict, reasons, mask,
cache hint, guards: the whole document) and a count.

Inputs are as the PDP builds them now (the statements' `types`, which an older policy
ignores); the new policy decides each input both with the session's standing the PDP
passes (rego/portcullis/standing.rego) and without it. A rewrite for speed must print
`0 differ` for both. Not a test: it needs the git history.

    python bench/pdp/policy_equivalence.py --baseline REV [--sample 4000] [--rego DIR]
"""

from __future__ import annotations

import argparse
import copy
import gzip
import importlib.util
import json
import random
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: bench/pdp must not stand for the pdp package
    sys.path.insert(0, str(REPO))
if sys.path[0] == str(Path(__file__).resolve().parent):
    sys.path.pop(0)

# the profiler's inputs and helpers, loaded from its file (bench/pdp is not a package)
_spec = importlib.util.spec_from_file_location(
    "policy_profile", Path(__file__).with_name("policy_profile.py")
)
assert _spec is not None and _spec.loader is not None
policy_profile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(policy_profile)

from pdp.engine.bundle import load_bundle  # noqa: E402
from pdp.engine.opa import DECISION_PATH, new_engine, parse_envelope, raw_evaluate  # noqa: E402

CORPUS = REPO / "tests" / "data" / "sql_corpus.txt.gz"
# column names the regression corpus uses often, given as view columns carrying `query`
QUERY_CARRIERS = ("a", "b", "c", "f1", "id", "name", "x", "y", "unique1", "ten", "four")
IDENTITIES = (["readonly"], ["dba"], ["pii-readers", "readonly"], ["analyst", "readonly"])


def corpus_inputs(sample: int, seed: int) -> list[dict[str, Any]]:
    _, *statements = gzip.decompress(CORPUS.read_bytes()).decode().split("\n\x1e\n")
    chosen = random.Random(seed).sample(statements, min(sample, len(statements)))
    inputs = []
    for n, sql in enumerate(chosen):
        policy_input = policy_profile.base_input(sql, IDENTITIES[n % len(IDENTITIES)])
        if n % 3 == 0:
            del policy_input["command"]["postgres"]["shadowed_functions"]
        if n % 5 == 0:
            policy_input["approval"] = {"state": "approved", "approver": "boss", "id": "a1"}
        if n % 7 == 0:
            policy_input["command"]["postgres"]["pooler"] = "transaction"
        if n % 11 == 0:  # view columns carrying other sessions' statement text (`query`)
            carriers = {name: ["query"] for name in QUERY_CARRIERS}
            policy_input["command"]["postgres"]["view_columns"] = carriers
        inputs.append(policy_input)
    return inputs


def variants(policy_input: dict[str, Any]) -> list[dict[str, Any]]:
    """The input as it is, and as each other identity would ask it."""
    out = [policy_input]
    for groups in IDENTITIES:
        other = copy.deepcopy(policy_input)
        other.setdefault("identity", {})["groups"] = groups
        out.append(other)
    return out


def standing_of(engine: Any, policy_input: dict[str, Any]) -> Any:
    """The input with the standing the PDP would pass for a session's command
    (policy_profile.with_standing: evaluated by the same engine), or as it is."""
    try:
        return policy_profile.with_standing(engine, policy_input)
    except Exception:  # an evaluation error: compared without a standing
        return policy_input


def decide(engine: Any, policy_input: dict[str, Any]) -> Any:
    raw = json.dumps(policy_input, separators=(",", ":"), ensure_ascii=False).encode()
    try:
        return parse_envelope(raw_evaluate(engine, DECISION_PATH, raw))
    except Exception as exc:  # an evaluation error is an answer to compare too
        return f"error: {exc}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, metavar="REV")
    parser.add_argument("--sample", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=27)
    parser.add_argument(
        "--rego", type=Path, default=REPO / "rego", help="the policy directory to compare"
    )
    args = parser.parse_args()
    new = new_engine(load_bundle(args.rego).without_tests())
    old = new_engine(policy_profile.baseline_bundle(args.baseline))
    inputs: list[dict[str, Any]] = []
    for policy_input in policy_profile.golden_inputs() + policy_profile.agent_inputs():
        inputs.extend(variants(policy_input))
    inputs.extend(corpus_inputs(args.sample, args.seed))
    differ = differ_standing = 0
    for policy_input in inputs:
        # both sides get the input as the PDP builds it now (`types`: an older policy
        # ignores it); the new side decides it twice, with the session's standing as the
        # PDP passes it and without (as `opa test` and `policy eval` ask), and each must
        # equal the baseline
        before = decide(old, policy_input)
        after = decide(new, policy_input)
        with_standing = decide(new, standing_of(new, policy_input))
        for answer, label in ((after, "without standing"), (with_standing, "with standing")):
            if before == answer:
                continue
            if label == "with standing":
                differ_standing += 1
            else:
                differ += 1
            if differ + differ_standing <= 20:
                print(
                    json.dumps(
                        {
                            "raw": policy_input.get("command", {}).get("raw"),
                            "groups": policy_input.get("identity", {}).get("groups"),
                            "side": label,
                            "before": before,
                            "after": answer,
                        },
                        default=list,
                    )[:2000]
                )
    print(f"{len(inputs)} inputs, {differ} differ without the standing, {differ_standing} with it")


if __name__ == "__main__":
    main()
