"""Does a rewritten policy decide exactly as the policy it replaces? A differential run.

Evaluates data.portcullis.decision with rego/ as it is and with rego/ as committed at a git
revision, both in the embedded evaluator, over the golden cases of tests/golden,
rego/examples, the profiler's agent inputs (bench/pdp/policy_profile.py), and statements of
PostgreSQL's regression suite (tests/data/sql_corpus.txt.gz, classified by pdp.sql as the
PDP does) asked by a reader, a privileged and a pii-reader identity, with and without
shadowed functions, view columns (some carrying pg_stat_activity.query), an approval and a
transaction pooler, and ssh.exec lines (every string of the SSH tests, read by the PDP's
shell parser) asked by each, again with other SSH command lists in the data. Prints every
input whose decision differs (verdict, reasons, mask, cache hint, guards: the whole
document) and a count.

Inputs are as the PDP builds them now (the statements' `types`, which an older policy
ignores); the new policy decides each input both with the session's standing the PDP
passes (rego/portcullis/standing.rego) and without it. A rewrite for speed must print
`0 differ` for both. With --pruned the new side is given each input as the embedded
engine sends it to its workers: cut down to the paths its policy reads
(pdp.engine.input_paths), the baseline the whole input. Not a test: it needs the git history.

    python bench/pdp/policy_equivalence.py --baseline REV [--sample 4000]
                                           [--ssh-sample 3000] [--rego DIR] [--pruned]
"""

from __future__ import annotations

import argparse
import ast
import copy
import gzip
import importlib.util
import json
import random
import re
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
from pdp.engine.input_paths import prune_spec, pruned  # noqa: E402
from pdp.engine.opa import (  # noqa: E402
    DECISION_PATH,
    decision_evaluator,
    new_engine,
    parse_envelope,
    raw_evaluate,
)

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


def ssh_lines() -> list[str]:
    """Command lines for ssh.exec: every string literal of the SSH tests (tests/test_ssh*.py,
    the probes' attack lines among them) and of rego/portcullis/ssh_test.rego, as they stand
    (a literal that is no command is a line the PDP reads all the same)."""
    lines: set[str] = set()
    for path in sorted((REPO / "tests").glob("test_ssh*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and 0 < len(text) <= 300:
                lines.add(text)
    rego = (REPO / "rego" / "portcullis" / "ssh_test.rego").read_text()
    lines.update(re.findall(r'"(?:raw|command)": "((?:[^"\\]|\\.)*)"', rego))
    return sorted(lines)


def ssh_inputs(sample: int, seed: int) -> list[dict[str, Any]]:
    """ssh.exec inputs as the PDP builds them (pdp.domain.ssh_input), for each identity."""
    from pdp.domain.policy_input import command_input

    lines = ssh_lines()
    chosen = random.Random(seed).sample(lines, min(sample, len(lines)))
    inputs = []
    for n, line in enumerate(chosen):
        policy_input = policy_profile.base_input("SELECT 1", IDENTITIES[n % len(IDENTITIES)])
        policy_input["connection"] = {"name": "web-1", "type": "ssh", "zone": "eu", "labels": {}}
        policy_input["command"] = command_input("ssh.exec", line, {})
        if n % 5 == 0:
            policy_input["approval"] = {"state": "approved", "approver": "boss", "id": "a1"}
        inputs.append(policy_input)
    return inputs


# data.portcullis.ssh as bench_ssh sets it (echo and a file listed), and with patterns whose
# first word is a glob or that repeat a command with other words: both policies get the same
SSH_DATA_VARIANTS: tuple[dict[str, list[str]], ...] = (
    {},
    {"allowed_commands": ["cat /tmp/bench.bin", "echo", "ls /var/*", "*", "/usr/bin/* -h"]},
    {"approval_commands": ["echo", "df -h", "s*", "journalctl --rotate"]},
)


def with_ssh_data(bundle: Any, extra: dict[str, list[str]]) -> Any:
    data = copy.deepcopy(bundle.data)
    ssh = data["portcullis"]["ssh"]
    for key, patterns in extra.items():
        ssh[key] = [*ssh.get(key, []), *patterns]
    return type(bundle)(bundle.modules, data, bundle.revision, bundle.root)


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
    if PRUNED is not False:  # worked out from what the engine would send, as the PDP does
        policy_input = pruned(policy_input, PRUNED)
    try:
        return policy_profile.with_standing(engine, policy_input)
    except Exception:  # an evaluation error: compared without a standing
        return policy_input


# --pruned: the input paths of the new policy (pdp.engine.input_paths.Kept), or False
PRUNED: Any = False


# engine -> its decision as the PDP's workers evaluate it (pdp.engine.opa.decision_evaluator)
_DECIDERS: dict[int, Any] = {}


def decide(engine: Any, policy_input: dict[str, Any], prune: bool = False) -> Any:
    """The decision as the PDP's workers read it (a policy's `answer` with its shipped mask
    set written in, where it has one); with the new policy also data.portcullis.decision
    itself (what tests, the CLI and a remote OPA read), which must be the same document."""
    if prune and PRUNED is not False:
        policy_input = pruned(policy_input, PRUNED)
    raw = json.dumps(policy_input, separators=(",", ":"), ensure_ascii=False).encode()
    if id(engine) not in _DECIDERS:
        _DECIDERS[id(engine)] = (engine, decision_evaluator(engine))
    try:
        answer = parse_envelope(_DECIDERS[id(engine)][1](raw))
    except Exception as exc:  # an evaluation error is an answer to compare too
        answer = f"error: {exc}"
    try:
        document = parse_envelope(raw_evaluate(engine, DECISION_PATH, raw))
    except Exception as exc:
        document = f"error: {exc}"
    if document != answer:
        return {"worker's answer": answer, "data.portcullis.decision": document}
    return answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, metavar="REV|DIR")
    parser.add_argument("--sample", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=27)
    parser.add_argument(
        "--rego", type=Path, default=REPO / "rego", help="the policy directory to compare"
    )
    parser.add_argument("--ssh-sample", type=int, default=3000, help="ssh.exec lines")
    parser.add_argument(
        "--pruned", action="store_true", help="the new side's input cut to what it reads"
    )
    args = parser.parse_args()
    new_bundle = load_bundle(args.rego).without_tests()
    if args.pruned:
        global PRUNED
        PRUNED = prune_spec(new_bundle.modules)
    old_bundle = (  # a policy directory (a tree with others' uncommitted edits), or a revision
        load_bundle(Path(args.baseline)).without_tests()
        if Path(args.baseline).is_dir()
        else policy_profile.baseline_bundle(args.baseline)
    )
    new = new_engine(new_bundle)
    old = new_engine(old_bundle)
    inputs: list[dict[str, Any]] = []
    for policy_input in policy_profile.golden_inputs() + policy_profile.agent_inputs():
        inputs.extend(variants(policy_input))
    inputs.extend(corpus_inputs(args.sample, args.seed))
    ssh = ssh_inputs(args.ssh_sample, args.seed)
    inputs.extend(ssh)
    differ, differ_standing = compare(old, new, inputs)
    print(f"{len(inputs)} inputs, {differ} differ without the standing, {differ_standing} with it")
    for extra in SSH_DATA_VARIANTS[1:]:  # the ssh.exec lines again under other command lists
        pair = (
            new_engine(with_ssh_data(old_bundle, extra)),
            new_engine(with_ssh_data(new_bundle, extra)),
        )
        differ, differ_standing = compare(*pair, ssh)
        print(
            f"{len(ssh)} ssh.exec inputs with data.portcullis.ssh + {json.dumps(extra)}: "
            f"{differ} differ without the standing, {differ_standing} with it"
        )


def compare(old: Any, new: Any, inputs: list[dict[str, Any]]) -> tuple[int, int]:
    """Inputs decided otherwise by new (without and with the standing), the first 20 printed."""
    differ = differ_standing = 0
    for policy_input in inputs:
        # both sides get the input as the PDP builds it now (`types`: an older policy
        # ignores it); the new side decides it twice, with the session's standing as the
        # PDP passes it and without (as `opa test` and `policy eval` ask), and each must
        # equal the baseline
        before = decide(old, policy_input)
        after = decide(new, policy_input, prune=True)
        with_standing = decide(new, standing_of(new, policy_input), prune=True)
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
    return differ, differ_standing


if __name__ == "__main__":
    main()
