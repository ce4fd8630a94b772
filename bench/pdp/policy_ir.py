"""Instructions per policy evaluation, counted by callgrind: an A/B that load does not move.

CPU time per evaluation (bench/pdp/policy_profile.py) moves by 10-20% between blocks when
other work shares the cores (a load average of 8 on 2 cores gave the same policy 545 and
880 µs within minutes); instructions executed do not. This runs the real evaluator
(pdp.engine.opa, the Go runtime settings of pdp.engine.embedded) under valgrind's
callgrind, once with no evaluations and once with N passes over the inputs, for each
policy, and prints (instructions(N) - instructions(0)) / (N x inputs): the instructions
of one evaluation (OpaEvalDocument on input JSON bytes: input parsing, evaluation, the
answer's JSON; the decision as the PDP's workers evaluate it, pdp.engine.opa.
decision_evaluator: a policy's `answer` with its shipped mask set written in where it has
one, the bytes.replace counted), the engine's loading and compiling left out by the
difference (and run uninstrumented: callgrind starts counting after the child's warm pass,
--instr-atstart=no, so a run takes a fraction of the time it took with the compiler
instrumented). The Go
collector is off in these runs (GOGC=off): how many times it runs in N evaluations is
a whole number that moves the counts by several percent between runs of one policy,
while with it off they repeat; what a policy allocates is still counted (the allocator's
instructions), and the collector's work in the PDP grows with it.

Policies: rego/ as it is, rego/ as committed at --baseline REV, and the one-rule policy of
policy_profile (the floor any policy pays: input parsing, the cgo call, the answer). The
inputs are policy_profile's (agent postgres.query inputs, also with the catalogue facts
whole as before pdp.domain.policy_input.trim_to_names, golden cases and examples; --set
views: the agent inputs of a database of 20 views, facts trimmed and whole; --set ssh:
ssh.exec lines as the PDP reads them, which the one-rule floor answers undefined), with
the session's standing as the PDP passes it, written once and read by every run, so every
policy evaluates the same bytes. The Go runtime runs with asynchronous preemption off
(GODEBUG=asyncpreemptoff=1): its SIGURG preemption signals stop callgrind. Not a test:
nothing here asserts.

With --one-process, every policy is loaded into one process under callgrind instead, and
callgrind's client requests (a small C helper built with gcc into a temporary directory)
zero the counts before and dump them after each block of evaluations, blocks in A-B-B-A
order over --rounds rounds after a discarded warm-up pass: no start-up is counted, so a
block of a few passes suffices and one run compares several trees (--also DIR adds one,
e.g. a variant of rego/ under test). Blocks of one policy still differ by about 1%
(the Go runtime's randomised map iteration): compare medians, and trust a change only
beyond that. One process shares what OPA 1.20.2's rule index keeps between lookups (a
package-level pool: one slot per rule position any engine's lookup has returned, walked
on every lookup), so a change of where rules stand in their sets (decision.rego says why
that counts) shows only in the default mode, a process per policy.

    python bench/pdp/policy_ir.py [--baseline REV] [--evaluations 400]
                                  [--set agent|golden|both|views|ssh]
                                  [--one-process [--rounds 4] [--also DIR ...]
                                                 [--document RULE ...]]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: bench/pdp must not stand for the pdp package
    sys.path.insert(0, str(REPO))
if sys.path[0] == str(Path(__file__).resolve().parent):
    sys.path.pop(0)

COLLECTED = re.compile(r"Collected\s*:\s*([0-9,]+)")
DUMPED = re.compile(r"^desc: Trigger: Client Request: block (\d+) (\d+)$", re.M)
DUMP_TOTAL = re.compile(r"^(?:summary|totals): (\d+)$", re.M)

CLIENT_REQUESTS = """
#include <valgrind/callgrind.h>
void policy_ir_zero(void) { CALLGRIND_ZERO_STATS; }
void policy_ir_dump(const char *label) { CALLGRIND_DUMP_STATS_AT(label); }
void policy_ir_start(void) { CALLGRIND_START_INSTRUMENTATION; }
"""

GO_UNDER_CALLGRIND = {
    "GOMAXPROCS": "1",
    "GOGC": "off",
    "GODEBUG": "asyncpreemptoff=1",
    "PYTHONDONTWRITEBYTECODE": "1",
}


_ENGINES: dict[str, Any] = {}


def loaded(policy: str) -> tuple[Any, str]:
    """The engine of a policy directory ("floor": the one-rule policy) and its decision path;
    "DIR::portcullis.rule": that directory's engine (one per directory) and that document."""
    from pdp.engine.bundle import PolicyBundle, load_bundle
    from pdp.engine.opa import DECISION_PATH, new_engine

    if policy == "floor":
        profile = _profile()
        engine = new_engine(PolicyBundle({"bench.rego": profile.ONE_RULE}, {}, "one-rule", ""))
        return engine, "bench.decision"
    directory, _, path = policy.partition("::")
    if directory not in _ENGINES:
        _ENGINES[directory] = new_engine(load_bundle(Path(directory)).without_tests())
    return _ENGINES[directory], path or DECISION_PATH


def evaluator(engine: Any, path: str) -> Any:
    """What evaluates `path` on input JSON bytes as the PDP's workers do: the decision
    through pdp.engine.opa.decision_evaluator (the policy's `answer` with its shipped mask
    set written in, where it has one: pdp.engine.worker), any other document directly."""
    from pdp.engine.opa import DECISION_PATH, decision_evaluator, raw_evaluate

    if path == DECISION_PATH:
        return decision_evaluator(engine)
    return lambda raw: raw_evaluate(engine, path, raw)


def child(policy: str, inputs: Path, passes: int) -> None:
    """Evaluate every input once (to warm) and then `passes` times: what callgrind counts.
    Callgrind starts counting (CALLGRIND_START_INSTRUMENTATION, the helper named by
    POLICY_IR_HELPER) only after the warm pass: loading and compiling the policy run
    uninstrumented, several times faster than under instrumentation."""
    import ctypes

    evaluate = evaluator(*loaded(policy))
    encoded = [line.encode() for line in inputs.read_text().splitlines() if line]
    for raw in encoded:
        evaluate(raw)
    ctypes.CDLL(os.environ["POLICY_IR_HELPER"]).policy_ir_start()
    for _ in range(passes):
        for raw in encoded:
            evaluate(raw)


def blocks_child(helper: str, inputs: Path, passes: int, rounds: int, policies: list[str]) -> None:
    """Under callgrind: every policy loaded and warmed, then per round one block of `passes`
    passes per policy (A-B-B-A order), counts zeroed before and dumped after each block."""
    import ctypes
    import gc

    requests = ctypes.CDLL(helper)
    evaluators = [evaluator(*loaded(policy)) for policy in policies]
    encoded = [line.encode() for line in inputs.read_text().splitlines() if line]
    for evaluate in evaluators:  # warm: the first calls prepare the query; then a pass
        for _ in range(passes + 1):  # as counted (the first counted block ran high)
            for raw in encoded:
                evaluate(raw)
    requests.policy_ir_start()  # loading, compiling and warming ran uninstrumented
    order = list(range(len(evaluators)))
    for round_ in range(rounds):
        for k in order if round_ % 2 == 0 else order[::-1]:
            evaluate = evaluators[k]
            gc.collect()
            gc.disable()  # Python's collector would run in some blocks and not others
            requests.policy_ir_zero()
            for _ in range(passes):
                for raw in encoded:
                    evaluate(raw)
            requests.policy_ir_dump(f"block {k} {round_}".encode())
            gc.enable()


def client_requests(workdir: Path) -> Path:
    """CLIENT_REQUESTS built with gcc into workdir (once): the library a child loads to
    zero and dump callgrind's counts around what it measures."""
    built = workdir / "policy_ir_requests.so"
    if not built.exists():
        source = workdir / "policy_ir_requests.c"
        source.write_text(CLIENT_REQUESTS)
        subprocess.run(
            ["gcc", "-O1", "-shared", "-fPIC", "-o", str(built), str(source)], check=True
        )
    return built


def per_evaluation_blocks(
    policies: list[str], inputs: Path, passes: int, rounds: int, workdir: Path
) -> list[list[float]]:
    """Instructions per evaluation of each policy's blocks (one process, see blocks_child)."""
    helper = client_requests(workdir)
    out = workdir / f"blocks.{abs(hash((str(inputs), tuple(policies))))}"
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",  # blocks_child starts it after loading and warming
            f"--callgrind-out-file={out}.%p",
            sys.executable,
            str(Path(__file__).resolve()),
            "--blocks-child",
            str(helper),
            str(inputs),
            str(passes),
            str(rounds),
            *policies,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **GO_UNDER_CALLGRIND},
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"callgrind run failed: {done.stderr[-2000:]}")
    count = sum(1 for line in inputs.read_text().splitlines() if line) * passes
    found: dict[int, list[tuple[int, float]]] = {}
    for dump in workdir.glob(out.name + ".*"):
        text = dump.read_text(errors="replace")
        label, total = DUMPED.search(text), DUMP_TOTAL.search(text)
        if label and total:
            block = (int(label.group(2)), int(total.group(1)) / count)
            found.setdefault(int(label.group(1)), []).append(block)
        dump.unlink()
    return [[ir for _, ir in sorted(found.get(k, []))] for k in range(len(policies))]


def _profile():  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "policy_profile", Path(__file__).with_name("policy_profile.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def counted(policy: str, inputs: Path, passes: int, workdir: Path) -> int:
    """Instructions callgrind counts for one child run."""
    out = workdir / f"callgrind.{os.getpid()}.{abs(hash((policy, str(inputs), passes)))}"
    # no .pyc written: a module another process edited is compiled again by whichever run
    # imports it first, which moved one run's count by ~1G instructions (a negative figure)
    env = {**os.environ, **GO_UNDER_CALLGRIND, "POLICY_IR_HELPER": str(client_requests(workdir))}
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",  # child starts it after loading and its warm pass
            f"--callgrind-out-file={out}",
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            policy,
            str(inputs),
            str(passes),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    match = COLLECTED.search(done.stderr)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"callgrind run of {policy} failed: {done.stderr[-2000:]}")
    out.unlink(missing_ok=True)
    return int(match.group(1).replace(",", ""))


def per_evaluation(policy: str, inputs: Path, passes: int, workdir: Path) -> float:
    count = sum(1 for line in inputs.read_text().splitlines() if line)
    empty = counted(policy, inputs, 0, workdir)
    full = counted(policy, inputs, passes, workdir)
    return (full - empty) / (passes * count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", metavar="REV", help="also count rego/ as committed at REV")
    parser.add_argument(
        "--evaluations", type=int, default=400, help="evaluations per run (whole passes)"
    )
    parser.add_argument(
        "--set", choices=("agent", "golden", "both", "views", "ssh"), default="both"
    )
    parser.add_argument("--jobs", type=int, default=2, help="callgrind runs at a time")
    parser.add_argument(
        "--one-process", action="store_true", help="all policies in one callgrind process"
    )
    parser.add_argument("--rounds", type=int, default=4, help="--one-process: blocks per policy")
    parser.add_argument(
        "--also", action="append", default=[], metavar="DIR", help="--one-process: another policy"
    )
    parser.add_argument(
        "--document",
        action="append",
        default=[],
        metavar="RULE",
        help="--one-process: also count this tree's data.portcullis.RULE evaluated alone "
        "(where a decision's instructions go; it includes the rules RULE refers to)",
    )
    parser.add_argument("--child", nargs=3, metavar=("POLICY", "INPUTS", "PASSES"))
    parser.add_argument("--blocks-child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), int(args.child[2]))
        return
    if args.blocks_child:
        helper, inputs, passes, rounds, *names = args.blocks_child
        blocks_child(helper, Path(inputs), int(passes), int(rounds), names)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed")

    from pdp.engine.bundle import load_bundle
    from pdp.engine.embedded import GO_RUNTIME
    from pdp.engine.opa import new_engine

    os.environ.update({k: v for k, v in GO_RUNTIME.items() if k not in os.environ})
    profile = _profile()
    workdir = Path(tempfile.mkdtemp(prefix="policy-ir-"))
    try:
        engine = new_engine(load_bundle(REPO / "rego").without_tests())
        sets = {}
        if args.set in ("agent", "both"):
            sets["agent postgres.query"] = profile.agent_inputs()
            # the same, with the catalogue facts whole (before trim_to_names): the A/B of
            # the input's size
            sets["agent-whole-facts postgres.query"] = profile.agent_inputs(trimmed=False)
        if args.set == "views":  # a database of 20 views: trimmed and whole facts
            sets["views postgres.query"] = profile.agent_inputs(views=True)
            sets["views-whole-facts postgres.query"] = profile.agent_inputs(False, views=True)
        if args.set == "ssh":  # ssh.exec lines, each decided (the floor answers no ssh.exec)
            sets["ssh ssh.exec"] = profile.ssh_inputs()
        if args.set in ("golden", "both"):
            sets["golden + examples"] = profile.golden_inputs()
        files = {}
        for label, inputs in sets.items():
            path = workdir / f"{label.split()[0]}.jsonl"
            standing = [profile.with_standing(engine, i) for i in inputs]
            lines = [json.dumps(i, separators=(",", ":"), ensure_ascii=False) for i in standing]
            path.write_text("\n".join(lines) + "\n")
            files[label] = path
        policies = {"one-rule floor": "floor", "rego/ (this tree)": str(REPO / "rego")}
        if args.baseline:
            base = workdir / "baseline"
            base.mkdir()
            archive = subprocess.run(
                ["git", "-C", str(REPO), "archive", args.baseline, "rego"],
                check=True,
                capture_output=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
            policies[f"rego/ at {args.baseline}"] = str(base / "rego")
        passes = {label: max(1, -(-args.evaluations // len(sets[label]))) for label in sets}
        if args.one_process:
            policies.update(
                {f"{directory}": str(Path(directory).resolve()) for directory in args.also}
            )
            tree = REPO / "rego"
            policies.update({f"  document {r}": f"{tree}::portcullis.{r}" for r in args.document})
            one_process(policies, files, sets, args, workdir)
            return
        jobs = {
            (label, name): (policy, files[label])
            for label in files
            for name, policy in policies.items()
        }
        client_requests(workdir)  # built once, before the runs that load it in parallel
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = {
                key: pool.submit(per_evaluation, policy, path, passes[key[0]], workdir)
                for key, (policy, path) in jobs.items()
            }
            results = {key: future.result() for key, future in futures.items()}
        print(
            f"instructions per evaluation (callgrind, about {args.evaluations} evaluations "
            "minus none; GOMAXPROCS=1, GOGC=off)"
        )
        for label in files:
            floor = results[(label, "one-rule floor")]
            print(f"  {label} ({len(sets[label])} inputs)")
            for name in policies:
                ir = results[(label, name)]
                line = f"    {name:36s} {ir / 1e6:8.3f} M   {ir / floor:5.2f}x one-rule"
                if args.baseline and name == "rego/ (this tree)":
                    before = results[(label, f"rego/ at {args.baseline}")]
                    line += f"   {ir / before:5.3f}x baseline"
                print(line)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def one_process(
    policies: dict[str, str],
    files: dict[str, Path],
    sets: dict[str, list[Any]],
    args: argparse.Namespace,
    workdir: Path,
) -> None:
    """Every policy in one callgrind process per input set (see the module's docstring)."""
    import statistics

    names = list(policies)
    print(
        f"instructions per evaluation (callgrind, one process, {args.rounds} blocks of about "
        f"{args.evaluations // args.rounds} evaluations per policy, A-B-B-A; "
        "GOMAXPROCS=1, GOGC=off)"
    )
    for label, path in files.items():
        passes = max(1, -(-args.evaluations // (args.rounds * len(sets[label]))))
        blocks = per_evaluation_blocks(
            [policies[name] for name in names], path, passes, args.rounds, workdir
        )
        medians = {name: statistics.median(b) for name, b in zip(names, blocks, strict=True)}
        floor = medians["one-rule floor"]
        print(f"  {label} ({len(sets[label])} inputs; median, then each block)")
        for name, b in zip(names, blocks, strict=True):
            print(
                f"    {name:36s} {medians[name] / 1e6:8.3f} M   {medians[name] / floor:5.2f}x "
                "one-rule   (" + " ".join(f"{ir / 1e6:.3f}" for ir in b) + ")"
            )


if __name__ == "__main__":
    main()
