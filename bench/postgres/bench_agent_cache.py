"""How often the decision cache answers an agent (issue 27 §4): an agent rarely repeats a
statement exactly, but repeats its shapes with other literals, which the shipped policy
lets the proxy reuse (`cache_key: shape`, literals ignored).

Starts `portcullis up` (embedded OPA, the shipped rego/) in front of a scratch database,
generates a few hundred distinct query shapes over three tables (select lists, predicates,
IN lists, joins, aggregates, ORDER BY / LIMIT), and runs agent sessions through the proxy
with asyncpg, each drawing its statements from a Zipf mix of the shapes (rank r with
weight 1/r^s) with fresh literals every time. Afterwards reads the audit store: every
recorded command says whether its verdict came from the cache. Prints the hit rate per
session length, the distinct shapes and texts, and the decisions the PDP evaluated.
Not a test.

    python bench/postgres/bench_agent_cache.py [--sessions 12] [--statements 250] [--zipf 1.1]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import asyncpg
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from bench_masking import up_config  # noqa: E402  (this folder: the script's own)
from bench_pgbench import create_scratch, drop_scratch, scratch_names, sh, wait_port  # noqa: E402
from pdp_harness import free_port  # noqa: E402

ADMIN = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qAtX", "-c"]
SCHEMA = """
CREATE TABLE customers (id int PRIMARY KEY, name text, note text, region text, created_at date);
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, total numeric, status text,
                     created_at date);
CREATE TABLE products (id int PRIMARY KEY, name text, price numeric, category text);
INSERT INTO customers SELECT g, 'name ' || g, 'note ' || g, 'r' || (g % 7),
  DATE '2024-01-01' + g % 700 FROM generate_series(1, 2000) g;
INSERT INTO orders SELECT g, 1 + g % 2000, (g % 997) / 3.0, 's' || (g % 5),
  DATE '2024-01-01' + g % 700 FROM generate_series(1, 10000) g;
INSERT INTO products SELECT g, 'product ' || g, g % 300, 'c' || (g % 11)
  FROM generate_series(1, 500) g;
"""

COLUMNS = {
    "customers": ["id", "name", "note", "region", "created_at"],
    "orders": ["id", "customer_id", "total", "status", "created_at"],
    "products": ["id", "name", "price", "category"],
}
NUMERIC = {"id", "customer_id", "total", "price"}


def shapes() -> list[str]:
    """Distinct query shapes, with `{n}` / `{s}` / `{d}` where literals go."""
    out: list[str] = []
    for table, columns in COLUMNS.items():
        lists = [", ".join(columns[:k]) for k in range(1, len(columns) + 1)] + ["*", "count(*)"]
        predicates = []
        for column in columns:
            if column in NUMERIC:
                predicates += [
                    f"{column} = {{n}}",
                    f"{column} > {{n}}",
                    f"{column} IN ({{n}}, {{n}}, {{n}})",
                ]
            elif column == "created_at":
                predicates += [f"{column} >= DATE '{{d}}'"]
            else:
                predicates += [f"{column} = '{{s}}'"]
        for select, where in itertools.product(lists, predicates):
            if select == "count(*)":
                out.append(f"SELECT {select} FROM {table} WHERE {where}")
                continue
            for tail in (" ORDER BY id LIMIT {n}", " ORDER BY id DESC LIMIT {n}"):
                out.append(f"SELECT {select} FROM {table} WHERE {where}{tail}")
    out += [
        "SELECT c.name, sum(o.total) FROM customers c JOIN orders o ON o.customer_id = c.id "
        "WHERE c.id = {n} GROUP BY c.name",
        "SELECT status, count(*) FROM orders WHERE created_at >= DATE '{d}' GROUP BY status",
        "SELECT category, avg(price) FROM products WHERE price > {n} GROUP BY category",
    ]
    return out


def literal(kind: str, rng: random.Random) -> str:
    if kind == "n":
        return str(rng.randint(1, 2000))
    if kind == "d":
        return f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    return f"name {rng.randint(1, 2000)}"


def text_of(shape: str, rng: random.Random) -> str:
    out, rest = [], shape
    while "{" in rest:
        head, _, tail = rest.partition("{")
        kind, _, rest = tail.partition("}")
        out += [head, literal(kind, rng)]
    return "".join(out) + rest


async def agent(dsn: str, statements: list[str]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for sql in statements:
            await conn.fetch(sql)
    finally:
        await conn.close()


async def run_agents(dsn: str, plans: list[list[str]], parallel: int) -> None:
    gate = asyncio.Semaphore(parallel)

    async def one(plan: list[str]) -> None:
        async with gate:
            await agent(dsn, plan)

    await asyncio.gather(*(one(p) for p in plans))


async def command_events(store_path: Path) -> list[dict]:
    from pdp.domain.recordings import session_events
    from pdp.store import open_store
    from portcullis.config import StoreSettings

    store = open_store(StoreSettings(type="sqlite", path=store_path))
    await store.start()
    try:
        out = []
        for record in await store.query(kind="session.open"):
            for event in await session_events(store, record.session_id):
                if event.get("type") == "command":
                    out.append({**event, "session_id": record.session_id})
        return out
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=12)
    parser.add_argument("--statements", type=int, default=250)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args()
    rng = random.Random(42)
    all_shapes = shapes()
    rng.shuffle(all_shapes)  # which shape is popular is chance, not table order
    weights = [1 / (rank**args.zipf) for rank in range(1, len(all_shapes) + 1)]

    tmp = Path(tempfile.mkdtemp(prefix="portcullis-bench-agent-"))
    db, role, password = scratch_names("portcullis_agent")
    up: subprocess.Popen | None = None
    try:
        create_scratch(db, role, password)
        sh(["psql", "-h", "127.0.0.1", "-U", role, "-d", db, "-qAtX", "-c", SCHEMA],
           env={**os.environ, "PGPASSWORD": password})  # fmt: skip
        port = free_port()
        store = tmp / "audit.db"
        config = up_config(tmp, port, db, role, password)
        path = tmp / "portcullis.yaml"
        path.write_text(yaml.safe_dump(config))
        cli = [sys.executable, "-m", "pdp.cli", "-c", str(path)]
        token = sh([*cli, "token", "--sub", "agent@example.com", "--groups", "readonly",
                    "--ttl", "2h"]).stdout.strip()  # fmt: skip
        up = subprocess.Popen([*cli, "up"], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        wait_port(port)
        drawn = [rng.choices(all_shapes, weights, k=args.statements) for _ in range(args.sessions)]
        plans = [[text_of(s, rng) for s in plan] for plan in drawn]
        dsn = f"postgresql://agent:{token}@127.0.0.1:{port}/{db}?sslmode=disable"
        asyncio.run(run_agents(dsn, plans, args.parallel))
        up.terminate()
        up.wait(60)
        up = None
        events = asyncio.run(command_events(store))
    finally:
        if up is not None:
            up.terminate()
            up.wait(60)
        drop_scratch(db, role)

    texts = [t for plan in plans for t in plan]
    cached = sum(1 for e in events if e.get("cached"))
    by_session: dict[str, list[bool]] = {}
    for e in events:
        by_session.setdefault(str(e.get("session_id", "")), []).append(bool(e.get("cached")))
    print(
        f"agent workload: {len(all_shapes)} shapes, Zipf s={args.zipf}, {args.sessions} sessions"
        f" x {args.statements} statements, fresh literals each time"
    )
    print(
        f"  distinct texts {len(set(texts))} of {len(texts)} "
        f"({100 * len(set(texts)) / len(texts):.0f}%: exact-text reuse could answer at most "
        f"{100 * (1 - len(set(texts)) / len(texts)):.0f}%)"
    )
    print(f"  distinct shapes drawn {len({s for plan in drawn for s in plan})}")
    print(
        f"  recorded commands {len(events)}; answered from the decision cache {cached} "
        f"(hit rate {100 * cached / max(1, len(events)):.1f}%); evaluated by the PDP "
        f"{len(events) - cached}"
    )
    for cut in (25, 50, 100, args.statements):
        rates = [sum(flags[:cut]) / len(flags[:cut]) for flags in by_session.values() if flags]
        if rates and cut <= args.statements:
            print(f"  hit rate over each session's first {cut:>4} statements: "
                  f"median {100 * statistics.median(rates):.1f}%")  # fmt: skip


if __name__ == "__main__":
    main()
