"""Where the shipped policy's evaluation CPU goes: a rule-by-rule profiler on the real evaluator.

Loads rego/ (without tests) into the embedded OPA evaluator exactly as the PDP's workers
do (pdp.engine.opa.new_engine, the Go runtime settings of pdp.engine.embedded) and, over
a set of inputs (the golden cases of tests/golden and rego/examples, and typical agent
postgres.query inputs with lineage, shadowed functions and view columns, classified by
pdp.sql as the PDP does), measures CPU time per evaluation (time.process_time: the other
work on a shared machine does not count) of:

  1. the decision, data.portcullis.decision, through each entry point the binding offers
     (the native OpaEvalDocument with JSON bytes as pdp.engine.opa.raw_evaluate calls it,
     OpaEvalQuery, and the binding's eval_document with its Python JSON work);
  2. the same query with a new query text on every call, which forces the evaluator to
     prepare (compile) it each time: if (1) costs as much, the binding prepares per call;
  3. a one-rule policy answering the same shape of decision, in another engine of the
     same evaluator in the same run: the floor any policy pays (input parsing, result
     serialisation, the cgo call);
  4. where the decision's work goes, rule by rule: the evaluator's trace of each decision
     (every Enter/Eval/Unify/Redo/... step, attributed to the rule whose body holds its
     line) counted per decision. Steps are a deterministic measure, unlike CPU on a
     shared machine, and follow it closely (a builtin call is one step whatever it costs,
     so sprintf, regex and split weigh more than their count);
  5. with --rule-cpu, every rule document of data.portcullis evaluated on its own (its
     CPU includes the rules it refers to; functions, which take arguments, cannot be
     evaluated as documents and are paid for inside the rules that call them).

Inputs are as the PDP builds them (pdp.domain.policy_input: the statements' `types` and
`has`) and
evaluates them for a session's command: with the session's standing (rego/portcullis/
standing.rego, evaluated once per session by pdp.domain.decisions), except session.open.

The shipped and one-rule figures are measured in alternating blocks and the ratio is the
median of the blocks' ratios, so a neighbour's load that comes and goes weighs on both
alike. Prints the ratio shipped decision / one-rule decision (the target of issue 27 is
≤ 3x) and the rules sorted by cost. Not a test: nothing here asserts.

    python bench/pdp/policy_profile.py [--rounds 200] [--top 25] [--rule-cpu] [--baseline REV]

With --baseline REV (a git revision), rego/ as committed there is measured in the same
blocks: the before/after of a policy change, as ratios to the same one-rule floor.

Evaluator steps are not instructions: a builtin such as object.filter is one step and
costs several. When neighbours load the machine, bench/pdp/policy_ir.py counts the
instructions of one evaluation under callgrind (the same inputs, the same floor), which
repeat within about 1% where CPU time moves by 10-20%.
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: bench/pdp must not stand for the pdp package
    sys.path.insert(0, str(REPO))
if sys.path[0] == str(Path(__file__).resolve().parent):
    sys.path.pop(0)

from pdp.domain.policy_input import (  # noqa: E402
    postgres_command,
    query_flags,
    statement_flags,
    statement_types,
)
from pdp.engine.bundle import PolicyBundle, load_bundle  # noqa: E402
from pdp.engine.embedded import restart_with_go_runtime  # noqa: E402
from pdp.engine.opa import (  # noqa: E402
    DECISION_PATH,
    decision_evaluator,
    new_engine,
    parse_envelope,
    raw_evaluate,
)
from pdp.sql import classify  # noqa: E402

ONE_RULE = """package bench

decision := {
	"verdict": "allow", "reasons": {"a SELECT is a read"}, "mask": set(),
	"cache_ttl_seconds": 0, "cache_key": "exact",
} if {
	input.command.kind == "postgres.query"
}
"""

AGENT_SQL = [
    "SELECT id, email, total FROM orders WHERE customer_id = 42",
    "SELECT o.id, c.email, sum(o.total) FROM orders o JOIN customers c ON c.id = o.customer_id "
    "WHERE o.created_at > now() - interval '1 day' GROUP BY o.id, c.email ORDER BY 3 DESC LIMIT 10",
    "SELECT count(*) FROM orders WHERE status = 'open'",
    "WITH recent AS (SELECT * FROM orders WHERE created_at > now() - interval '7 days') "
    "SELECT customer_id, avg(total) FROM recent GROUP BY customer_id",
    "SELECT name, lower(phone) FROM customers WHERE name ILIKE 'a%' ORDER BY name",
    "UPDATE orders SET status = 'shipped' WHERE id = 7",
    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
    "BEGIN; SELECT * FROM contact_view LIMIT 5; COMMIT",
]

RULE_HEAD = re.compile(r"^(?:default\s+)?([a-z_][a-z0-9_]*)\s*(\(|:=|=|contains|if|\{|$)")


# the catalogue facts a proxy sends with every statement (read from the database at
# start-up): functions defined outside pg_catalog too, and view columns -> what they carry
SHADOWED_FUNCTIONS = ["upper", "lower", "length", "now", "md5"]
VIEW_COLUMNS = {"contact": ["phone"], "shout": ["email"], "label": ["name"]}
# a database of 20 views (bench/postgres/bench_hotpath.py's: 10 view columns that carry a
# phone, the relations each view reads) and 12 shadowed built-ins
VIEWS_CATALOGUE = {
    "shadowed_functions": [
        *SHADOWED_FUNCTIONS,
        *("round", "trim", "concat", "coalesce", "date_trunc", "to_char", "abs"),
    ],
    "view_columns": {f"contact_{i}": [f"phone_{i}"] for i in range(10)},
    "relation_sources": {
        f"public.view_{i}": [f"public.table_{i}", "public.accounts"] for i in range(20)
    },
}


def base_input(
    sql: str, groups: list[str], trimmed: bool = True, views: bool = False
) -> dict[str, Any]:
    """A postgres.query input as the PDP builds it for a proxy session (pdp.domain.policy_input:
    the catalogue facts trimmed to the statement's names); trimmed=False: with the facts
    whole, as the proxy sends them (as the PDP built it before trim_to_names); views: the
    facts of VIEWS_CATALOGUE instead of the small catalogue."""
    attributes: dict[str, Any] = {
        "protocol": "extended",
        "shadowed_functions": list(SHADOWED_FUNCTIONS),
        "view_columns": dict(VIEW_COLUMNS),
    }
    if views:
        attributes.update(VIEWS_CATALOGUE)
    postgres = postgres_command("postgres.query", sql, attributes)
    if not trimmed:
        postgres = {**postgres, **attributes}
    return {
        "identity": {
            "subject": "agent@example.com",
            "groups": groups,
            "issuer": "dev",
            "claims": {},
            "token_id": "t",
        },
        "connection": {"name": "orders-db", "type": "postgres", "zone": "eu-prod", "labels": {}},
        "session": {
            "id": "s",
            "started_at": "2026-01-01T00:00:00Z",
            "client_addr": "x",
            "client": "bench",
            "attributes": {},
        },
        "command": {"kind": "postgres.query", "raw": sql, "postgres": postgres},
        "now": "2026-01-01T00:00:00Z",
    }


def agent_inputs(trimmed: bool = True, views: bool = False) -> list[dict[str, Any]]:
    return [
        base_input(sql, groups, trimmed, views)
        for sql in AGENT_SQL
        for groups in (["readonly"], ["dba"])
    ]


# ssh.exec lines as agents send them: bench_ssh's `echo <n>` (each decided: a new line each
# time) and `uptime`, listed commands with options, a filter pipeline, a chained line
SSH_LINES = [
    "echo 1234",
    "uptime",
    "df -h",
    "journalctl -u nginx -n 50 --no-pager",
    "systemctl status nginx",
    "cat /var/log/syslog | grep -i error | tail -n 20",
    "free -m && uptime",
]


def ssh_inputs() -> list[dict[str, Any]]:
    """ssh.exec inputs as the PDP builds them (pdp.domain.ssh_input through the protocol's
    input builder), for a pii-reader (bench_ssh's token) and a reader."""
    from pdp.domain.policy_input import command_input

    inputs = []
    for line in SSH_LINES:
        for groups in (["pii-readers"], ["readonly"]):
            policy_input = base_input("SELECT 1", groups)
            policy_input["connection"] = {
                "name": "web-1",
                "type": "ssh",
                "zone": "eu-prod",
                "labels": {},
            }
            policy_input["command"] = command_input("ssh.exec", line, {})
            inputs.append(policy_input)
    return inputs


def golden_inputs() -> list[dict[str, Any]]:
    inputs = []
    for path in sorted((REPO / "tests" / "golden").glob("*.json")):
        for case in json.loads(path.read_text()):
            if case.get("query", DECISION_PATH) != DECISION_PATH:
                continue
            policy_input = copy.deepcopy(case["input"])
            command = policy_input.get("command", {})
            if command.get("kind") == "postgres.query":
                postgres = command.setdefault("postgres", {})
                postgres.setdefault("statements", classify(command.get("raw", "")))
            if command.get("kind") in ("postgres.query", "postgres.function_call"):
                postgres = command.setdefault("postgres", {})
                if isinstance(postgres.get("statements"), list):
                    postgres["types"] = statement_types(postgres["statements"])
                    postgres["has"] = query_flags(postgres, statement_flags(postgres["statements"]))
            inputs.append(policy_input)
    for path in sorted((REPO / "rego" / "examples").glob("*.json")):
        inputs.append(json.loads(path.read_text()))
    return inputs


def with_standing(engine: Any, policy_input: dict[str, Any]) -> dict[str, Any]:
    """The input as the PDP evaluates a session's command: with the session's standing
    (rego/portcullis/standing.rego, evaluated once per session by pdp.domain.decisions)."""
    about: dict[str, Any] = {
        k: policy_input[k] for k in ("identity", "connection", "session") if k in policy_input
    }
    envelope = raw_evaluate(engine, "portcullis.standing", encode([about])[0])
    standing = parse_envelope(envelope)
    if (
        not isinstance(standing, dict)
        or policy_input.get("command", {}).get("kind") == "session.open"
    ):
        return policy_input
    return {**policy_input, "standing": standing}


def without_additions(policy_input: dict[str, Any]) -> dict[str, Any]:
    """The input without what the PDP adds for speed (input.standing, and
    input.command.postgres.types and .has): the input of DESIGN.md's contract alone."""
    bare = {k: v for k, v in policy_input.items() if k != "standing"}
    command = bare.get("command", {})
    postgres = command.get("postgres")
    if isinstance(postgres, dict) and ("types" in postgres or "has" in postgres):
        postgres = {k: v for k, v in postgres.items() if k not in ("types", "has")}
        bare["command"] = {**command, "postgres": postgres}
    return bare


def rule_names(bundle: PolicyBundle) -> list[str]:
    """The documents of package portcullis (rules without arguments), in file order."""
    names: list[str] = []
    for source in bundle.modules.values():
        for line in source.splitlines():
            match = RULE_HEAD.match(line)
            if not match or match.group(1) in ("package", "import") or match.group(2) == "(":
                continue
            if match.group(1) not in names:
                names.append(match.group(1))
    return names


def cpu_per_call(engine: Any, path: str, encoded: list[bytes], rounds: int) -> float:
    """µs of this process's CPU per evaluation of data.<path>, over rounds x inputs; the
    decision as the PDP's workers evaluate it (pdp.engine.opa.decision_evaluator: a
    policy's `answer` with its shipped mask set written in, where it has one)."""
    if path == DECISION_PATH:
        evaluate = decision_evaluator(engine)
    else:
        evaluate = lambda raw: raw_evaluate(engine, path, raw)  # noqa: E731
    for raw in encoded:  # warm: the first call prepares the query
        evaluate(raw)
    started = time.process_time()
    for _ in range(rounds):
        for raw in encoded:
            evaluate(raw)
    return (time.process_time() - started) * 1e6 / (rounds * len(encoded))


def alternating(
    policies: dict[str, Any], floor: Any, encoded: list[bytes], blocks: int
) -> tuple[dict[str, float], float, dict[str, float]]:
    """Median µs per evaluation of each policy's decision and of the one-rule decision,
    and the median of each policy's ratio to it, measured in alternating blocks of one
    pass over the inputs each (policies in a new random order every block)."""
    spent: dict[str, list[float]] = {name: [] for name in policies}
    ratios: dict[str, list[float]] = {name: [] for name in policies}
    floors = []
    order = list(policies)
    for _ in range(blocks):
        one = cpu_per_call(floor, "bench.decision", encoded, 1)
        floors.append(one)
        random.shuffle(order)
        for name in order:
            full = cpu_per_call(policies[name], DECISION_PATH, encoded, 1)
            spent[name].append(full)
            ratios[name].append(full / one)
    return (
        {name: statistics.median(v) for name, v in spent.items()},
        statistics.median(floors),
        {name: statistics.median(v) for name, v in ratios.items()},
    )


def baseline_bundle(revision: str) -> PolicyBundle:
    """rego/ as committed at a git revision, loaded like the working tree's."""
    directory = Path(tempfile.mkdtemp(prefix="policy-baseline-"))
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", revision, "rego"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    try:
        return load_bundle(directory / "rego").without_tests()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def rule_owners(bundle: PolicyBundle) -> dict[str, str]:
    """file:line → "file:rule" of the rule (or function) whose text holds that line."""
    owners: dict[str, str] = {}
    for path, source in bundle.modules.items():
        current = "(module)"
        for number, line in enumerate(source.splitlines(), 1):
            match = RULE_HEAD.match(line)
            if match and match.group(1) not in ("package", "import"):
                current = match.group(1) + ("()" if match.group(2) == "(" else "")
            owners[f"{path}:{number}"] = f"{path.rpartition('/')[2]}:{current}"
    return owners


def trace_steps(
    engine: Any, bundle: PolicyBundle, inputs: list[dict[str, Any]]
) -> tuple[float, collections.Counter[str], collections.Counter[str]]:
    """Evaluator steps per decision: in all, per rule, and per kind of step."""
    owners = rule_owners(bundle)
    per_rule: collections.Counter[str] = collections.Counter()
    per_op: collections.Counter[str] = collections.Counter()
    for policy_input in inputs:
        engine.eval_document(DECISION_PATH, policy_input, trace=True)
        for event in engine.last_trace or []:
            per_op[event["op"]] += 1
            per_rule[owners.get(event["location"], str(event["location"]))] += 1
    return sum(per_op.values()) / len(inputs), per_rule, per_op


def cpu_query(engine: Any, query: str, encoded: list[bytes], rounds: int, fresh: bool) -> float:
    """µs of CPU per OpaEvalQuery; with fresh, a new query text each call (never prepared)."""
    import ctypes

    lib, handle = engine._lib, engine._handle

    def once(text: str, raw: bytes) -> None:
        ptr = lib.OpaEvalQuery(handle, text.encode(), raw, 0, 0)
        ctypes.string_at(ptr)
        lib.OpaFreeString(ptr)

    for raw in encoded:
        once(query, raw)
    n = 0
    started = time.process_time()
    for _ in range(rounds):
        for raw in encoded:
            n += 1
            once(f"{query}; x{n} := 1" if fresh else query, raw)
    return (time.process_time() - started) * 1e6 / (rounds * len(encoded))


def cpu_eval_document(engine: Any, inputs: list[dict[str, Any]], rounds: int) -> float:
    from opa_bindings import OpaUndefinedError

    started = time.process_time()
    for _ in range(rounds):
        for policy_input in inputs:
            try:
                engine.eval_document(DECISION_PATH, policy_input)
            except OpaUndefinedError:
                pass
    return (time.process_time() - started) * 1e6 / (rounds * len(inputs))


def encode(inputs: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(i, separators=(",", ":"), ensure_ascii=False).encode() for i in inputs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--top", type=int, default=25, help="rules printed (0: all)")
    parser.add_argument(
        "--baseline", metavar="REV", help="also measure rego/ as committed at REV (before/after)"
    )
    parser.add_argument("--rule-cpu", action="store_true", help="CPU of each rule document alone")
    args = parser.parse_args()
    restart_with_go_runtime()  # the evaluator as the workers run it

    bundle = load_bundle(REPO / "rego").without_tests()
    engine = new_engine(bundle)
    floor = new_engine(PolicyBundle({"bench.rego": ONE_RULE}, {}, "one-rule", ""))
    # as the PDP evaluates a session's commands: with the session's standing
    agents = [with_standing(engine, i) for i in agent_inputs()]
    golden = [with_standing(engine, i) for i in golden_inputs()]
    sets = {"agent postgres.query": encode(agents), "golden + examples": encode(golden)}
    for policy_input in agents + golden:  # every input decides (undefined would be a bug)
        envelope = raw_evaluate(engine, DECISION_PATH, encode([policy_input])[0])
        assert parse_envelope(envelope) is not None, policy_input

    print(
        f"policy {bundle.revision}; CPU per evaluation (µs, time.process_time), "
        f"GOMAXPROCS={os.environ['GOMAXPROCS']} GOGC={os.environ['GOGC']}"
    )
    policies = {"shipped": engine}
    if args.baseline:
        policies[f"rego/ at {args.baseline}"] = new_engine(baseline_bundle(args.baseline))
    floor_us = 0.0
    for label, encoded in sets.items():
        blocks = max(3, args.rounds * 16 // len(encoded))
        spent, floor_us, ratios = alternating(policies, floor, encoded, blocks)
        print(f"  {label} ({len(encoded)} inputs, {blocks} alternating blocks, medians)")
        print(f"    one-rule decision, same evaluator                 {floor_us:8.1f}")
        for name in policies:
            print(
                f"    {name + ' decision':48s}  {spent[name]:8.1f}   "
                f"{ratios[name]:5.2f}x one-rule   (target ≤ 3x)"
            )
        steps, _, _ = trace_steps(engine, bundle, agents if label.startswith("agent") else golden)
        print(f"    evaluator steps per decision                     {steps:8.1f}")
        # the floor also pays for parsing what the PDP adds to the input for speed (the
        # standing, the statement types): the one-rule decision on the input without them,
        # in alternating blocks with the shipped decision on the input with them
        bare = encode(
            [without_additions(i) for i in (agents if label.startswith("agent") else golden)]
        )
        plain_floor, plain_full = [], []
        for _ in range(blocks):
            plain_floor.append(cpu_per_call(floor, "bench.decision", bare, 1))
            plain_full.append(cpu_per_call(engine, DECISION_PATH, encoded, 1))
        bare_us = statistics.median(plain_floor)
        ratio = statistics.median(plain_full) / bare_us
        print(
            f"    one-rule decision, input without standing/types  {bare_us:8.1f}   "
            f"shipped / it {ratio:5.2f}x"
        )

    encoded = sets["agent postgres.query"]
    rounds = max(1, args.rounds * 4 // len(encoded))
    prepared = cpu_query(engine, "data.portcullis.decision", encoded, rounds, fresh=False)
    fresh = cpu_query(engine, "data.portcullis.decision", encoded, rounds, fresh=True)
    document = cpu_per_call(engine, DECISION_PATH, encoded, rounds)
    wrapped = cpu_eval_document(engine, agents, rounds)
    print("  entry points (agent inputs):")
    print(f"    OpaEvalDocument, bytes in/out (raw_evaluate)     {document:8.1f}")
    print(f"    OpaEvalQuery 'data.portcullis.decision'          {prepared:8.1f}")
    print(
        f"    OpaEvalQuery, a new query text every call        {fresh:8.1f}"
        f"   ({fresh / prepared:.1f}x the same text: the engine keeps prepared queries)"
    )
    print(f"    eval_document (binding's Python JSON both ways)  {wrapped:8.1f}")

    inputs = agents + golden
    steps, per_rule, per_op = trace_steps(engine, bundle, inputs)
    n = len(inputs)
    print(
        f"  evaluator steps per decision over all {n} inputs: {steps:.0f} "
        + " ".join(f"{op} {count / n:.0f}" for op, count in per_op.most_common())
    )
    for name, count in per_rule.most_common(args.top or None):
        print(f"    {name:48s} {count / n:7.1f}  {count / n / steps:6.1%}")

    if not args.rule_cpu:
        return
    everything = sets["agent postgres.query"] + sets["golden + examples"]
    rounds = max(1, args.rounds // 10)
    costs = []
    for name in rule_names(bundle):
        costs.append((cpu_per_call(engine, f"portcullis.{name}", everything, rounds), name))
    costs.sort(reverse=True)
    print(
        f"  rule documents, each evaluated alone over all {n} inputs "
        "(includes the rules each refers to)"
    )
    for us, name in costs[: args.top or None]:
        print(f"    {name:32s} {us:8.1f}   {us / floor_us:6.2f}x one-rule")


if __name__ == "__main__":
    main()
