"""CPU per decision of each phase around the evaluator, in the PDP's own code, one process.

What an evaluated Decide costs the PDP besides gRPC, split into the phases issue 27 names,
each measured in CPU time (time.process_time of this process, and the evaluation
workers' CPU read from /proc) over the same postgres.query command, so other load on a
shared machine weighs little:

  input      build_input(session, command_input(...)) as pdp.api.service does (the SQL
             classification is remembered for a repeated text, as in the PDP);
  evaluator  the shipped policy evaluated in this process on the input's JSON bytes
             (pdp.engine.opa.raw_evaluate: what a worker does per request), with the
             session's standing as the PDP passes it (once worked out per session). Of
             it, the input's ingestion: a one-rule document that reads no input, on
             this input less on {} (the binding reads the JSON into Go values and OPA's
             rego.EvalInput writes and reads them again, util.RoundTrip, before making
             its terms: callgrind, 2026-12-05, 874k instructions per evaluation against
             85k on {}, of 2.4-2.8M for the shipped policy); and the evaluator called
             SPACED_SECONDS apart, this process idle between (a worker at a low pace
             wakes its Go runtime's threads and finds its caches cold), against back
             to back;
  hop        EmbeddedEngine.evaluate end to end (input to JSON, the frame to a worker
             process and back, the answer parsed): this process's CPU; the workers' CPU
             (read from /proc in 10 ms ticks, so only roughly) is printed beside it, with
             what it holds beyond the in-process evaluator's figure; and the same for
             32 evaluations asked at once (a busy PDP: those waiting for a worker go to
             it together, pdp.engine.embedded's EVALUATIONS_PER_TRIP), this process's
             CPU and the workers' per evaluation;
  record     Decider.decide minus engine.evaluate (this process's CPU, in alternating
             blocks of each): the verdict mapped, the reuse table asked, the decision
             record appended to a real SQLite decision log (synchronous=normal so no disk
             wait is counted); the log's append alone is printed beside it, one at a time
             (as here: every decision its own commit) and 32 at once (group commit);
  answer     decision_message + command_effects: the protobuf answer.

Prints µs per decision for each and each phase's share of their sum, and the ratio of
the phases around the evaluator to the evaluator. Runs on uvloop, the PDP's event loop
(portcullis.process); `--loop asyncio` for the standard loop, on which the hop costs this
process about twice as much (the wake-ups of the worker's answers). Not a test: nothing
here asserts.

    python bench/pdp/bench_phases.py [--decisions 2000] [--loop uvloop|asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if sys.path[0] == str(Path(__file__).resolve().parent):  # bench/pdp must not stand for pdp
    sys.path.pop(0)
sys.path.insert(0, str(REPO))
sys.path.append(str(REPO / "bench"))

from cpu_meter import TICK_US, process_ticks  # noqa: E402

from pdp.api.service import decision_message  # noqa: E402
from pdp.domain.decisions import STANDING_PATH, Decider  # noqa: E402
from pdp.domain.effects import command_effects  # noqa: E402
from pdp.domain.identity import Identity  # noqa: E402
from pdp.domain.policy_input import build_input, command_input  # noqa: E402
from pdp.domain.sessions import Session  # noqa: E402
from pdp.engine.bundle import PolicyBundle, load_bundle  # noqa: E402
from pdp.engine.embedded import EmbeddedEngine, restart_with_go_runtime  # noqa: E402
from pdp.engine.opa import DECISION_PATH, evaluate, new_engine, raw_evaluate  # noqa: E402
from pdp.store.sqlite import SQLiteAuditStore  # noqa: E402
from portcullis.config import EngineSettings  # noqa: E402

SQL = "SELECT o.id, c.email, sum(o.total) FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.status = 'open' GROUP BY o.id, c.email"  # noqa: E501
ATTRIBUTES = {"protocol": "extended", "shadowed_functions": ["upper"]}


def session() -> Session:
    identity = Identity(
        subject="agent@example.com",
        groups=("readonly",),
        issuer="dev",
        claims={"sub": "agent@example.com"},
        token_id="t",
    )
    connection = {"name": "orders-db", "type": "postgres", "zone": "eu", "labels": {}}
    return Session("s-bench", identity, connection, "127.0.0.1:5", "bench")


# a document that reads no input: what is left of its evaluation is the input's ingestion
ONE_RULE = "package one\n\nrule := true\n"
# the pause between spaced evaluations: a PDP at a low pace asks an idle worker
SPACED_SECONDS = 0.002


def spaced_us(fn: Any, n: int) -> float:
    """CPU per call of fn called SPACED_SECONDS apart, this process idle between: the
    whole run's CPU (what the process's other threads do between calls included) less
    that of the same pauses alone."""

    def run(call: Any) -> float:
        started = time.process_time()
        for _ in range(n):
            time.sleep(SPACED_SECONDS)
            call()
        return time.process_time() - started

    return (run(fn) - run(lambda: None)) * 1e6 / n


def cpu_us(fn: Any, n: int) -> float:
    started = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - started) * 1e6 / n


async def phases(n: int, workers: int) -> dict[str, float]:
    s = session()
    results: dict[str, float] = {}

    def built() -> dict[str, Any]:
        return build_input(s, command_input("postgres.query", SQL, ATTRIBUTES))

    results["input"] = cpu_us(built, n)
    policy_input = built()

    local = new_engine(load_bundle(REPO / "rego").without_tests())
    # as the PDP evaluates a session's command: with the session's standing, which
    # pdp.domain.decisions evaluates once per session (rego/portcullis/standing.rego)
    about = {k: policy_input[k] for k in ("identity", "connection", "session")}
    standing = evaluate(local, about, STANDING_PATH)
    if isinstance(standing, dict):
        policy_input = {**policy_input, "standing": standing}
    encoded = json.dumps(policy_input, separators=(",", ":"), ensure_ascii=False).encode()
    results["evaluator"] = cpu_us(lambda: raw_evaluate(local, DECISION_PATH, encoded), n)
    results["evaluator, spaced"] = spaced_us(
        lambda: raw_evaluate(local, DECISION_PATH, encoded), max(50, n // 10)
    )
    local.close()
    # of the evaluator, the input's ingestion: a one-rule document evaluated on this input,
    # less the same on {} (what the binding and OPA do with the input before any rule runs)
    one_rule = new_engine(PolicyBundle({"one.rego": ONE_RULE}, {}, "one-rule", ""))
    for name, raw in (("ingestion", encoded), ("ingestion, empty input", b"{}")):
        results[name] = cpu_us(lambda raw=raw: raw_evaluate(one_rule, "one.rule", raw), n)
    one_rule.close()

    engine = EmbeddedEngine(
        EngineSettings(policies=REPO / "rego", workers=workers, timeout_ms=5000, reload=False)
    )
    await engine.start()
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteAuditStore(Path(tmp) / "decisions.db", synchronous="normal")
        await store.start()
        try:
            for _ in range(50):  # warm
                await engine.evaluate(policy_input)
            decider = Decider(engine, store, reuse_evaluations=True)
            record = {"session_id": s.id, "subject": s.identity.subject, "connection": "orders-db"}
            decided_input = {k: v for k, v in policy_input.items() if k != "standing"}

            async def decide() -> Any:
                return await decider.decide(decided_input, record, standing_of=s.id)

            decision = await decide()
            # alternating blocks, this process's CPU only: the record phase is the decide
            # block's CPU minus the evaluate block's, each pair measured back to back, so a
            # neighbour's load that comes and goes weighs on both (the workers' CPU, read
            # from /proc in 10 ms ticks, is too coarse to subtract block by block)
            pids = [w.proc.pid for w in engine._all]
            ticks = sum(process_ticks(p, with_descendants=False) for p in pids)
            block = max(10, n // 20)
            hops, records, logs, logs_32 = [], [], [], []
            body = {
                **record,
                "decision_id": "",
                **decision.verdict.to_dict(),
                "kind": "postgres.query",
                "raw": SQL,
                "policy_revision": "bench",
                "evaluation_ms": 0.0,
                "statements": policy_input["command"]["postgres"]["statements"],
            }
            for _ in range(max(1, n // block)):
                started = time.process_time()
                for _ in range(block):
                    await engine.evaluate(policy_input)
                hop = (time.process_time() - started) * 1e6 / block
                started = time.process_time()
                for _ in range(block):
                    decision = await decide()
                hops.append(hop)
                records.append((time.process_time() - started) * 1e6 / block - hop)
                started = time.process_time()
                for _ in range(block):
                    await store.append("decision", body, session_id=s.id, plain=True)
                logs.append((time.process_time() - started) * 1e6 / block)
                started = time.process_time()
                await asyncio.gather(
                    *(
                        store.append("decision", body, session_id=s.id, plain=True)
                        for _ in range(32)
                    )
                )
                logs_32.append((time.process_time() - started) * 1e6 / 32)
            worker = sum(process_ticks(p, with_descendants=False) for p in pids) - ticks
            results["hop"] = statistics.median(hops)
            results["hop, 32 at once"], results["hop, 32 at once (workers)"] = await together(
                engine, policy_input, pids, n
            )
            # the workers evaluated 2 x block per block (evaluate and decide)
            results["hop (workers, evaluation included)"] = (
                worker * TICK_US / (2 * block * len(hops))
            )
            results["record"] = statistics.median(records)
            results["record: the decision log, one append at a time"] = statistics.median(logs)
            results["record: the decision log, 32 appends at once"] = statistics.median(logs_32)
        finally:
            await store.close()
            await engine.close()

    def answer() -> None:
        message = decision_message(decision)
        effects = command_effects("postgres.query", SQL)
        if effects:
            message.effects.extend(effects)

    results["answer"] = cpu_us(answer, n)
    return results


async def together(
    engine: EmbeddedEngine, policy_input: dict[str, Any], pids: list[int], n: int
) -> tuple[float, float]:
    """CPU per evaluation, this process's and the workers', of evaluations asked 32 at a
    time (what a PDP under load asks its workers)."""
    ticks = sum(process_ticks(p, with_descendants=False) for p in pids)
    started = time.process_time()
    rounds = max(1, n // 32)
    for _ in range(rounds):
        await asyncio.gather(*(engine.evaluate(policy_input) for _ in range(32)))
    mine = (time.process_time() - started) * 1e6 / (rounds * 32)
    worker = sum(process_ticks(p, with_descendants=False) for p in pids) - ticks
    return mine, worker * TICK_US / (rounds * 32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    restart_with_go_runtime()  # the in-process evaluator as the workers run it
    if args.loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            r = runner.run(phases(args.decisions, args.workers))
    else:
        r = asyncio.run(phases(args.decisions, args.workers))
    main_phases = ("input", "evaluator", "hop", "record", "answer")
    total = sum(r[p] for p in main_phases)
    print(
        f"CPU per evaluated decision by phase (µs; {args.decisions} decisions, "
        f"{args.workers} worker(s), {args.loop})"
    )
    for name in main_phases:
        print(f"  {name:10s} {r[name]:8.1f}  {r[name] / total:6.1%}")
    ingestion = r["ingestion"] - r["ingestion, empty input"]
    print(
        f"    of the evaluator, the input's ingestion {ingestion:8.1f} "
        f"({ingestion / r['evaluator']:.0%}; a one-rule document on this input less on "
        "{}: the binding's JSON read, OPA's round trip of it and its terms)"
    )
    print(
        f"    the evaluator {SPACED_SECONDS * 1000:g} ms apart (idle between, as a worker at a "
        f"low pace) {r['evaluator, spaced']:8.1f}: {r['evaluator, spaced'] / r['evaluator']:.2f}x "
        "back to back"
    )
    workers = r["hop (workers, evaluation included)"]
    print(
        f"    the workers in all (evaluation included) {workers:8.1f}: "
        f"{workers - r['evaluator']:+.1f} beside the in-process evaluator"
    )
    print(
        f"    32 evaluations asked at once: {r['hop, 32 at once']:.1f} this process, "
        f"{r['hop, 32 at once (workers)']:.1f} the workers (evaluation included) per "
        "evaluation"
    )
    print(
        f"    of the record, the decision log (SQLite, synchronous=normal) alone: "
        f"{r['record: the decision log, one append at a time']:.1f} one append at a time, "
        f"{r['record: the decision log, 32 appends at once']:.1f} each of 32 at once "
        "(group commit: what 32 callers get)"
    )
    around = total - r["evaluator"]
    print(f"  around the evaluator / the evaluator  {around / r['evaluator']:5.2f}x")


if __name__ == "__main__":
    main()
