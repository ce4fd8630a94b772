"""Where the decision log's append goes: SQLite's work, the kernel's writes, and ours.

Owns the measurement behind issue 27's "the decision log append is 29% of the PDP's CPU
around the evaluator" (bench/pdp/bench_phases.py's record phase). Appends a decision
record as pdp.domain.decisions does (the body of bench_phases' postgres.query decision,
its statements' canonical JSON given once, `plain`, an explicit decision id, record MACs
on) to a real SQLite decision log (synchronous=normal, so no wait for the disk is
counted; `--synchronous full` adds the PDP's default fdatasync) and prints, per record:

  append        CPU of the event loop's thread (time.thread_time) and of the process
                (time.process_time), one append at a time (a lone decision: its own
                commit) and 32 at once (group commit: what 32 callers get);
  transaction   the same record's SQLite transaction alone, as the store writes it
                (BEGIN IMMEDIATE, the head, the sealed row inserted, COMMIT) on a
                connection of its own to a second file: each statement's CPU;
  frames        WAL frames one commit writes (PRAGMA wal_checkpoint's log size over a
                block of commits): the table's leaf, one leaf per index, page 1 when
                the file grows;
  writes        write system calls per commit (/proc/self/io syscw): SQLite writes a
                frame's 24-byte header and its page in two calls;
  the floor     what one such write costs this machine (pwrite of 24 and of 4,096
                bytes to a file in the same folder, CPU time).

`ours` is the append less the transaction: the group commit's queue, futures and
deadlines, sealing (hash, MAC) and the record's bytes. CPU time, not wall time (the
machine is shared); blocks alternate so load moves both alike. Not a test: nothing here
asserts.

    python bench/pdp/log_append.py [--records 3000] [--synchronous normal|full]
"""

from __future__ import annotations

import argparse
import asyncio
import os
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

from pdp.domain.decisions import new_decision_id  # noqa: E402
from pdp.store.chain import Draft, canonical_json, canonical_json_with, to_micros  # noqa: E402
from pdp.store.reads import HEAD_SQL  # noqa: E402
from pdp.store.sqlite import _INSERT, SCHEMA, SQLiteAuditStore, _connect  # noqa: E402

SQL = (
    "SELECT o.id, c.email, sum(o.total) FROM orders o JOIN customers c ON c.id ="
    " o.customer_id WHERE o.status = 'open' GROUP BY o.id, c.email"
)
STATEMENTS = [
    {
        "type": "select",
        "tag": "SelectStmt",
        "tables": ["public.orders", "public.customers"],
        "functions": ["sum"],
        "columns": ["o.id", "c.email", "o.total", "o.status", "c.id", "o.customer_id"],
        "outputs": [
            {"name": "id", "sources": ["public.orders.id"], "how": "plain"},
            {"name": "email", "sources": ["public.customers.email"], "how": "plain"},
            {"name": "sum", "sources": ["public.orders.total"], "how": "aggregate"},
        ],
        "predicates": [{"column": "public.orders.status", "use": "equality"}],
        "types": ["select"],
        "has": {"where": True, "group_by": True, "join": True},
    }
]
MAC_KEY = b"bench-log-append-key-32-bytes-!!"
BLOCK = 250  # records per block: well under the store's checkpoint (1 MiB of bodies)


def body(session_id: str) -> dict[str, Any]:
    """A decision record's body as pdp.domain.decisions builds it for bench_phases' SQL."""
    return {
        "session_id": session_id,
        "subject": "agent@example.com",
        "connection": "orders-db",
        "decision_id": new_decision_id(),
        "kind": "postgres.query",
        "raw": SQL,
        "verdict": "mask",
        "reasons": ["readers may run read-only statements"],
        "mask": [{"field": "email", "strategy": "redact"}],
        "policy_revision": "sha256:" + "0" * 64,
        "evaluation_ms": 0.412,
        "statements": STATEMENTS,
    }


def syscw() -> int:
    """Write system calls this process made so far (/proc/self/io)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    return 0


async def appends(store: SQLiteAuditStore, n: int, together: int) -> tuple[float, float, float]:
    """(loop thread CPU, process CPU, write calls) per record of n appends, `together` at
    a time."""
    encoded = {"statements": canonical_json(STATEMENTS)}

    def one() -> Any:
        b = body("s-bench")
        return store.append(
            "decision",
            b,
            id=b["decision_id"],
            session_id="s-bench",
            subject="agent@example.com",
            plain=True,
            encoded=encoded,
        )

    writes, thread, process = syscw(), time.thread_time(), time.process_time()
    for _ in range(n // together):
        if together == 1:
            await one()
        else:
            await asyncio.gather(*(one() for _ in range(together)))
    done = n // together * together
    return (
        (time.thread_time() - thread) * 1e6 / done,
        (time.process_time() - process) * 1e6 / done,
        (syscw() - writes) / (n // together),
    )


def transactions(path: Path, n: int) -> tuple[dict[str, float], float, float]:
    """CPU per statement of n single-record transactions written as the store writes them,
    WAL frames per commit and write calls per commit."""
    conn = _connect(str(path), 2.0)
    conn.executescript(SCHEMA)
    conn.close()
    conn = _connect(f"file:{path}?mode=rw", 0.0, uri=True, synchronous="normal")
    store = SQLiteAuditStore(path)
    store.record_key = MAC_KEY
    encoded = canonical_json(STATEMENTS)
    spent = {"begin": 0.0, "head + seal": 0.0, "insert": 0.0, "commit": 0.0}
    frames: list[float] = []
    writes = 0
    for block in range(max(1, n // BLOCK) + 1):
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        started_writes = syscw()
        for _ in range(BLOCK):
            b = body("s-bench")
            text = canonical_json_with(b, {"statements": encoded})
            draft = Draft(b["decision_id"], "decision", to_micros(time.time()), "s", "a", b, text)
            t0 = time.thread_time()
            conn.execute("BEGIN IMMEDIATE")
            t1 = time.thread_time()
            _, rows = store._sealed([draft], conn.execute(HEAD_SQL).fetchone())
            t2 = time.thread_time()
            conn.executemany(_INSERT, rows)
            t3 = time.thread_time()
            conn.execute("COMMIT")
            t4 = time.thread_time()
            if block:  # the first block warms the file and the caches
                spent["begin"] += t1 - t0
                spent["head + seal"] += t2 - t1
                spent["insert"] += t3 - t2
                spent["commit"] += t4 - t3
        if block:
            writes += syscw() - started_writes
            logged = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
            frames.append(logged / BLOCK)
    conn.close()
    counted = max(1, n // BLOCK) * BLOCK
    return (
        {k: v * 1e6 / counted for k, v in spent.items()},
        statistics.median(frames),
        writes / counted,
    )


def write_floor(folder: Path, n: int = 20000) -> tuple[float, float]:
    """CPU of one pwrite of a frame's header (24 bytes) and of its page (4,096 bytes)."""
    path = folder / "floor.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, bytes(4120 * 256), 0)
        costs = []
        for size in (24, 4096):
            data = b"x" * size
            started = time.process_time()
            for i in range(n):
                os.pwrite(fd, data, (i % 256) * 4120)
            costs.append((time.process_time() - started) * 1e6 / n)
        return costs[0], costs[1]
    finally:
        os.close(fd)
        path.unlink()


async def measure(records: int, synchronous: str, folder: Path) -> dict[str, Any]:
    store = SQLiteAuditStore(folder / "decisions.db", synchronous=synchronous)
    store.record_key = MAC_KEY
    await store.start()
    found: dict[str, list[tuple[float, float, float]]] = {"one": [], "32": []}
    try:
        await appends(store, BLOCK, 1)  # warm
        for _ in range(max(1, records // BLOCK)):
            found["one"].append(await appends(store, BLOCK, 1))
            found["32"].append(await appends(store, BLOCK, 32))
    finally:
        await store.close()
    return {
        name: tuple(statistics.median(x[i] for x in rows) for i in range(3))
        for name, rows in found.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--synchronous", choices=("normal", "full"), default="normal")
    args = parser.parse_args()
    import uvloop

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            found = runner.run(measure(args.records, args.synchronous, folder))
        spent, frames, writes = transactions(folder / "alone.db", args.records)
        header, page = write_floor(folder)
    one_thread, one_process, one_writes = found["one"]
    many_thread, many_process, many_writes = found["32"]
    sqlite_us = sum(spent.values())
    print(
        f"decision log append, CPU per record (µs; {args.records} records a phase, SQLite "
        f"synchronous={args.synchronous}, record MACs on, uvloop)"
    )
    print(
        f"  one at a time   {one_thread:7.1f} loop thread  {one_process:7.1f} process"
        f"   {one_writes:5.1f} write calls a commit"
    )
    print(
        f"  32 at once      {many_thread:7.1f} loop thread  {many_process:7.1f} process"
        f"   {many_writes:5.1f} write calls a commit of 32"
    )
    print(
        f"  the SQLite transaction alone (one record) {sqlite_us:7.1f}: "
        + ", ".join(f"{k} {v:.1f}" for k, v in spent.items())
    )
    print(
        f"    {frames:.2f} WAL frames a commit, {writes:.1f} write calls a commit; one "
        f"write costs this machine {header:.1f} µs (24 bytes) / {page:.1f} µs (4,096): "
        f"~{frames * (header + page):.0f} µs of the commit is the kernel taking frames"
    )
    print(
        f"  ours (one at a time, loop thread, less the transaction) {one_thread - sqlite_us:7.1f}"
        f" ({(one_thread - sqlite_us) / one_thread:.0%} of the append)"
    )


if __name__ == "__main__":
    main()
