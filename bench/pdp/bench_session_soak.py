"""Memory of a PDP after many short sessions: does it return to its baseline?

Runs a real PDP in this process (pdp.app.PDPApp with its embedded OPA workers and a
SQLite decision log, as tests/pdp_harness.py starts one) and, over gRPC as a proxy
would, opens short sessions one after another: each decides a SELECT whose literal
changes from session to session (the policy declares its verdict reusable by shape, so
the PDP files an evaluation to reuse under the session) and `SELECT 1`, then closes.

After a warm-up (more sessions than the PDP keeps recently closed ones), this process's
resident set is the baseline and tracing of Python allocations starts; after `--sessions`
more, the resident set is measured again and the ratio after / baseline printed (issue
27's target: within 10%, i.e. ≤ 1.10), with the Python memory still held that was
allocated since the baseline, per closed session, the lines of code that hold it
(tracemalloc's top differences) and the entries left in the PDP's evaluation reuse table.
The evaluation workers are other processes and are not counted. Not a test: nothing here
asserts.

tracemalloc's own tables (a trace for every block allocated since the baseline and still
alive: tens of MB after 20,000 sessions) live in this process too, so a traced run's
resident set after the soak is not the PDP's: it prints the resident set less them
beside it, and with --no-trace nothing is traced and the resident set is the PDP's alone
(the ratio to read against the target). Nor is the traced growth all growth: a bounded
memory full at the baseline (the 1,000 recently closed sessions and their identities'
claims, answers remembered) is refilled with traced blocks while the untraced ones it
drops are not counted, so it shows as "still held" though it holds no more than before.

A new literal every session (the default) is also a new text for the PDP's bounded
memories of texts (the classification of pdp.domain.policy_input, the shapes of
portcullis.shape, the effects of pdp.domain.effects: 8,192 texts each), which fill up
to their bound over the first ~8,000 sessions and then stay level; --literals N cycles
through N values instead, so those are full after the warm-up and what grows is what
sessions leave behind.

    python bench/pdp/bench_session_soak.py [--sessions 20000] [--warmup 1500] [--no-trace] [--trim]
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if sys.path[0] == str(Path(__file__).resolve().parent):  # bench/pdp must not stand for pdp
    sys.path.pop(0)
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from pdp_harness import (  # noqa: E402
    SESSION_KEYS,
    decide_sql,
    open_session,
    pdp_config,
    pdp_stub,
    running_pdp,
    token,
)

from portcullis.v1 import pdp_pb2  # noqa: E402


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def sessions(stub: object, tokens: list[str], first: int, count: int, literals: int) -> None:
    for n in range(first, first + count):
        literal = n % literals if literals else n
        for _ in range(5):
            opened = await open_session(stub, tokens[n % len(tokens)])  # type: ignore[arg-type]
            sid = opened.session_id
            if sid:
                break
            # refused while every evaluation worker was busy (a loaded box; it fails closed)
            await asyncio.sleep(0.5)
        else:
            raise SystemExit(f"session {n} did not open: {opened}")
        await decide_sql(stub, sid, f"SELECT id, total FROM orders WHERE id = {literal}")  # type: ignore[arg-type]
        await decide_sql(stub, sid, "SELECT 1")  # type: ignore[arg-type]
        await stub.CloseSession(  # type: ignore[attr-defined]
            pdp_pb2.CloseSessionRequest(session_id=sid, reason="bench")
        )
        # the key the harness's stub kept for it (as a proxy does until the close is
        # taken) lives in this process too: not the PDP's memory
        SESSION_KEYS.pop(sid, None)


def malloc_trimmed() -> int:
    """The resident set (KiB) after glibc's malloc_trim(0) in this process: what the
    allocator holds freed but has not given back (0 where there is no glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return 0
    libc.malloc_trim(0)
    return rss_kib()


def measured() -> tuple[int, int, int, tracemalloc.Snapshot | None]:
    """Python memory allocated since tracing started and still held, the resident set
    (KiB), tracemalloc's own memory (bytes) and a snapshot; without tracing: 0, RSS, 0,
    None."""
    gc.collect()
    if not tracemalloc.is_tracing():
        return 0, rss_kib(), 0, None
    current, _ = tracemalloc.get_traced_memory()  # allocated since tracing started
    snapshot = tracemalloc.take_snapshot()
    return current, rss_kib(), tracemalloc.get_tracemalloc_memory(), snapshot


async def soak(
    count: int,
    warmup: int,
    top: int,
    literals: int,
    frames: int = 1,
    trace: bool = True,
    trim: bool = False,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = pdp_config(
            Path(tmp),
            store={"type": "sqlite", "path": str(Path(tmp) / "audit.db"), "synchronous": "normal"},
        )
        tokens = [token(config, sub=f"agent{i}@example.com") for i in range(8)]
        async with running_pdp(config) as app, pdp_stub(app.address) as stub:
            started = time.monotonic()
            await sessions(stub, tokens, 0, warmup, literals)
            if trace:  # from here on: what grows is traced, warm-up ran at speed
                tracemalloc.start(frames)
            heap0, rss0, own0, snap0 = measured()
            table = app.decider.evaluations
            entries0 = len(table) if table is not None else 0
            await sessions(stub, tokens, warmup, count, literals)
            heap1, rss1, own1, snap1 = measured()
            entries1 = len(table) if table is not None else 0
            trimmed = malloc_trimmed() if trim else 0
            elapsed = time.monotonic() - started
        texts = f"{literals} distinct literals" if literals else "a new literal each"
        print(
            f"{count} short sessions after {warmup} of warm-up ({elapsed:.0f} s; {texts}), "
            "the PDP process (workers not counted):"
        )
        print(
            f"  resident     {rss0:9d} KiB → {rss1:9d} KiB   {rss1 / rss0:5.3f}x baseline"
            "   (target ≤ 1.10x)" + ("" if snap1 is None else ", tracemalloc's tables included")
        )
        if trimmed:
            print(
                f"  resident after malloc_trim(0) {trimmed:9d} KiB   {trimmed / rss0:5.3f}x "
                "baseline   (freed, kept by the allocator until trimmed)"
            )
        if snap1 is None or snap0 is None:
            print(f"  evaluation reuse entries {entries0} → {entries1}")
            return
        less = rss1 - (own1 - own0) // 1024
        print(
            f"  resident less tracemalloc's own tables ({(own1 - own0) / 1024:.0f} KiB more "
            f"than at the baseline) {less:9d} KiB   {less / rss0:5.3f}x baseline"
        )
        print(
            f"  Python memory allocated since the baseline and still held "
            f"{(heap1 - heap0) / 1024:8.0f} KiB, {(heap1 - heap0) / count:7.1f} B per "
            "closed session"
        )
        print(f"  evaluation reuse entries {entries0} → {entries1}")
        print("  where the heap grew (tracemalloc, top lines):")
        for stat in snap1.compare_to(snap0, "lineno" if frames == 1 else "traceback")[:top]:
            where = " <- ".join(
                f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}" for f in reversed(stat.traceback)
            )
            print(f"    {stat.size_diff / 1024:8.1f} KiB {stat.count_diff:+7d} blocks  {where}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20000)
    parser.add_argument("--warmup", type=int, default=1500)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument(
        "--literals",
        type=int,
        default=0,
        help="distinct literal values the SELECT cycles through (0: a new one each session)",
    )
    parser.add_argument(
        "--frames", type=int, default=1, help="frames per traceback (more: who holds it)"
    )
    parser.add_argument(
        "--no-trace",
        action="store_true",
        help="trace nothing: the resident set is the PDP's alone (no tracemalloc tables)",
    )
    parser.add_argument(
        "--trim",
        action="store_true",
        help="then call malloc_trim(0) and read the resident set again",
    )
    args = parser.parse_args()
    asyncio.run(
        soak(
            args.sessions,
            args.warmup,
            args.top,
            args.literals,
            args.frames,
            not args.no_trace,
            args.trim,
        )
    )


if __name__ == "__main__":
    main()
