"""Stacks for the usability corpus (tests/test_usability_corpus.py): each protocol's real
gateway — a real PDP on the shipped policy and the real proxy in front of a real upstream
(the machine's PostgreSQL, an sshd of its own, an aiohttp API) — served from a child
process for a whole test module, so that blocking clients (psql, ssh, curl, pgbench,
psycopg) can be driven from plain test functions while the gateway keeps answering.

`serving(kind, tmp)` yields what a client needs: ports, tokens per group, paths."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp import web
from pdp_harness import free_port, pdp_config, pdp_raw, running_pdp, token
from pg_harness import gateway_on, scratch_database
from spawned import spawned
from ssh_harness import Sshd
from test_ssh_proxy import ssh_connection

from portcullis.config import parse_config
from proxies.http.proxy import HttpProxy
from proxies.launcher import handed_credential, start_proxies, stop_proxies
from proxies.ssh.proxy import SshProxy

GROUPS = {"reader": ("readonly",), "dba": ("dba",)}

# An analyst's database: customers with sensitive columns, orders, products, a jsonb event
# log, an org chart for recursive CTEs, arrays, timestamps, a view.
CORPUS_SCHEMA = """
CREATE TABLE customers (
  id int PRIMARY KEY, name text NOT NULL, email text, phone text, ssn text,
  card_number text, country text, created_at timestamptz NOT NULL, note text
);
INSERT INTO customers VALUES
  (1, 'Ada Lovelace', 'ada@example.com', '+44 20 7946 0001', '123-45-6789',
   '4111 1111 1111 1111', 'UK', '2026-01-03 10:00+00', 'VIP'),
  (2, 'Alan Turing', 'alan@example.org', '+44 20 7946 0002', '234-56-7890',
   '5500 0000 0000 0004', 'UK', '2026-02-14 09:30+00', 'prefers phone'),
  (3, 'Grace Hopper', 'grace@example.net', '+1 555 0100', '345-67-8901',
   '3400 0000 0000 009', 'US', '2026-03-01 12:00+00', NULL),
  (4, 'Edsger Dijkstra', 'edsger@example.nl', '+31 20 555 0101', NULL,
   NULL, 'NL', '2026-03-20 08:15+00', 'goto considered harmful');
CREATE TABLE products (
  id int PRIMARY KEY, sku text UNIQUE NOT NULL, title text NOT NULL, price numeric(10,2),
  tags text[] NOT NULL DEFAULT '{}', attrs jsonb NOT NULL DEFAULT '{}'
);
INSERT INTO products VALUES
  (1, 'W-1', 'Widget', 9.99, '{tools,small}', '{"color": "red", "dims": {"w": 2, "h": 3}}'),
  (2, 'G-2', 'Gadget', 24.50, '{tools}', '{"color": "blue", "dims": {"w": 5, "h": 1}}'),
  (3, 'S-3', 'Sprocket', 3.25, '{parts,small}', '{"color": "red", "weight": 0.2}'),
  (4, 'F-4', 'Flange', 12.00, '{}', '{}');
CREATE TABLE orders (
  id int PRIMARY KEY, customer_id int REFERENCES customers, status text NOT NULL,
  placed_at timestamptz NOT NULL, total numeric(10,2) NOT NULL
);
INSERT INTO orders VALUES
  (10, 1, 'paid', '2026-04-01 10:00+00', 34.49),
  (11, 1, 'shipped', '2026-04-03 15:20+00', 9.99),
  (12, 2, 'paid', '2026-04-05 11:00+00', 49.00),
  (13, 3, 'refunded', '2026-05-01 09:00+00', 3.25),
  (14, 3, 'paid', '2026-05-02 17:45+00', 36.00),
  (15, 4, 'pending', '2026-05-10 08:00+00', 12.00);
CREATE TABLE order_items (
  order_id int REFERENCES orders, product_id int REFERENCES products, qty int NOT NULL,
  PRIMARY KEY (order_id, product_id)
);
INSERT INTO order_items VALUES
  (10, 1, 1), (10, 2, 1), (11, 1, 1), (12, 2, 2), (13, 3, 1), (14, 4, 3), (15, 4, 1);
CREATE TABLE employees (id int PRIMARY KEY, name text NOT NULL, manager_id int, dept text);
INSERT INTO employees VALUES
  (1, 'Cleo', NULL, 'exec'), (2, 'Dev', 1, 'eng'), (3, 'Eli', 2, 'eng'),
  (4, 'Fay', 2, 'eng'), (5, 'Gus', 1, 'sales');
CREATE TABLE events (
  id bigserial PRIMARY KEY, at timestamptz NOT NULL, kind text NOT NULL, payload jsonb
);
INSERT INTO events (at, kind, payload) VALUES
  ('2026-05-01 10:00+00', 'login', '{"user": 1, "ip": "10.0.0.1", "tags": ["web"]}'),
  ('2026-05-01 10:05+00', 'view', '{"user": 1, "page": "/pricing", "ms": 120}'),
  ('2026-05-02 11:00+00', 'login', '{"user": 2, "ip": "10.0.0.2", "tags": ["api", "ci"]}'),
  ('2026-05-03 12:30+00', 'purchase', '{"user": 3, "order": 14, "amount": 36.0}');
CREATE VIEW order_totals AS
  SELECT c.id AS customer_id, c.name, count(o.id) AS orders, sum(o.total) AS spent
  FROM customers c LEFT JOIN orders o ON o.customer_id = c.id GROUP BY c.id, c.name;
COMMENT ON TABLE customers IS 'people who buy';
CREATE INDEX orders_placed_at ON orders (placed_at);
ANALYZE;
"""

# pgbench -S's own tables (pgbench -i, run by the owner before the proxy serves them)
PGBENCH_SCALE = "1"


async def _serve_postgres(tmp: Path, pipe: Connection) -> None:
    with scratch_database(CORPUS_SCHEMA) as (name, role, password):
        # pgbench's tables, made by the owner directly (pgbench -i writes: not a reader's job)
        init = await asyncio.create_subprocess_exec(
            "pgbench", "-i", "-q", "-s", PGBENCH_SCALE, "-h", "127.0.0.1", "-p", "5432",
            "-U", role, name,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await init.communicate()
        if init.returncode != 0:
            raise RuntimeError(f"pgbench -i: {err.decode()}")
        async with gateway_on(tmp, name, role, password) as gw:
            pipe.send(
                {
                    "port": gw.proxy.port,
                    "database": name,
                    "role": role,
                    "tokens": {g: gw.token(f"{g}@example.com", gs) for g, gs in GROUPS.items()},
                }
            )
            await asyncio.get_running_loop().run_in_executor(None, pipe.recv)


async def _serve_ssh(tmp: Path, pipe: Connection) -> None:
    sshd = Sshd(tmp / "sshd").start()
    logs = tmp / "logs"
    logs.mkdir()
    try:
        config = pdp_config(tmp, connections=[ssh_connection(sshd, tmp)])
        async with running_pdp(config) as pdp:
            served = handed_credential(config, "web-1", pdp.issue_proxy_credential)
            proxies = await start_proxies(served.connections, served, pdp.address)
            try:
                pipe.send(
                    {
                        "port": next(p for p in proxies if isinstance(p, SshProxy)).port,
                        "tokens": {
                            g: token(config, f"{g}@example.com", gs) for g, gs in GROUPS.items()
                        },
                        "sshd_log": str(sshd.log),
                    }
                )
                await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
            finally:
                await stop_proxies(proxies)
    finally:
        sshd.stop()


# ------------------------------------------------------------------ the HTTP upstream (an API)

CUSTOMERS: list[dict[str, Any]] = [
    {"id": n, "name": f"Customer {n}", "email": f"c{n}@example.com", "country": "UK"}
    for n in range(1, 26)
]
REPORT = {"title": "monthly", "rows": [{"month": m, "total": m * 100} for m in range(1, 13)]}


def corpus_api() -> web.Application:
    """A JSON API as agents meet one: pagination, search, ETag / Last-Modified, HEAD, gzip on
    request, POST of JSON (an echo), plain text."""
    last_modified = "Tue, 01 Dec 2026 10:00:00 GMT"

    def etag_of(doc: Any) -> str:
        return '"' + hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:16] + '"'

    async def customers(request: web.Request) -> web.Response:
        page = int(request.query.get("page", "1"))
        per = int(request.query.get("per_page", "10"))
        country = request.query.get("country")
        rows = [c for c in CUSTOMERS if not country or c["country"] == country]
        doc: dict[str, Any] = {"page": page, "per_page": per, "total": len(rows)}
        doc["items"] = rows[(page - 1) * per : page * per]
        tag = etag_of(doc)
        if request.headers.get("If-None-Match") == tag:
            return web.Response(status=304, headers={"ETag": tag})
        links = f'<{request.path}?page={page + 1}&per_page={per}>; rel="next"'
        return web.json_response(doc, headers={"ETag": tag, "Link": links})

    async def customer(request: web.Request) -> web.Response:
        n = int(request.match_info["id"])
        if not 1 <= n <= len(CUSTOMERS):
            return web.json_response({"error": "not found"}, status=404)
        return web.json_response(CUSTOMERS[n - 1])

    async def report(request: web.Request) -> web.Response:
        if request.headers.get("If-Modified-Since") == last_modified:
            return web.Response(status=304, headers={"Last-Modified": last_modified})
        accept = request.headers.get("Accept", "")
        if "text/csv" in accept:
            text = "month,total\n" + "".join(f"{r['month']},{r['total']}\n" for r in REPORT["rows"])  # type: ignore[index]
            return web.Response(
                text=text, content_type="text/csv", headers={"Last-Modified": last_modified}
            )
        return web.json_response(REPORT, headers={"Last-Modified": last_modified})

    async def big(request: web.Request) -> web.Response:
        doc = {"items": [{"n": n, "text": "lorem ipsum " * 4} for n in range(400)]}
        body = json.dumps(doc).encode()
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            return web.Response(
                body=gzip.compress(body),
                headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            )
        return web.Response(body=body, content_type="application/json")

    async def search(request: web.Request) -> web.Response:
        body = await request.json()
        hits = [c for c in CUSTOMERS if str(body.get("q", "")) in str(c["name"])]
        return web.json_response({"query": body, "hits": [h["id"] for h in hits]})

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/v1/customers", customers)
    app.router.add_get("/v1/customers/{id}", customer)
    app.router.add_get("/v1/reports/monthly", report)
    app.router.add_get("/v1/big", big)
    app.router.add_post("/v1/search", search)
    app.router.add_get("/healthz", health)
    return app


async def _serve_http(tmp: Path, pipe: Connection) -> None:
    runner = web.AppRunner(corpus_api())
    await runner.setup()
    up_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", up_port).start()
    try:
        connection = {
            "name": "billing-api",
            "type": "http",
            "listen": f"127.0.0.1:{free_port()}",
            "upstream": f"http://127.0.0.1:{up_port}",
            "credentials": {"provider": "static", "header": "X-Api-Key", "value": "k-usability"},
            "spool_dir": str(tmp / "spool"),
        }
        raw = pdp_raw(tmp, connections=[connection], approvals={"timeout_seconds": 2})
        config = parse_config(raw, base_dir=tmp)
        async with running_pdp(config) as pdp:
            served = handed_credential(config, "billing-api", pdp.issue_proxy_credential)
            proxy = HttpProxy(served.connections[0], served, pdp.address)
            await proxy.start()
            try:
                pipe.send(
                    {
                        "port": proxy.port,
                        "upstream_port": up_port,
                        "upstream_key": "k-usability",
                        "tokens": {
                            g: token(config, f"{g}@example.com", gs) for g, gs in GROUPS.items()
                        },
                    }
                )
                await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
            finally:
                await proxy.stop()
    finally:
        await runner.cleanup()


_SERVERS = {"postgres": _serve_postgres, "ssh": _serve_ssh, "http": _serve_http}


def _child(kind: str, tmp: str, pipe: Connection) -> None:
    asyncio.run(_SERVERS[kind](Path(tmp), pipe))


@contextlib.contextmanager
def serving(kind: str, tmp: Path, start_seconds: float = 120) -> Iterator[dict[str, Any]]:
    """The `kind` stack (postgres, ssh, http) in a spawned child process until the block
    ends; yields what the child reported (ports, tokens per group of GROUPS)."""
    with spawned(
        _child, kind, str(tmp), what=f"the {kind} stack", start_seconds=start_seconds
    ) as up:
        yield up


def owner(role: str, database: str) -> psycopg.Connection:
    """The database owner's own connection, straight to PostgreSQL (what the proxy's answer
    is compared with)."""
    return psycopg.connect(f"postgresql://{role}@127.0.0.1:5432/{database}", autocommit=True)


def reader_url(info: dict[str, Any], driver: str = "postgresql") -> str:
    """The reader's URL through the proxy of a `serving("postgres")` stack (driver: a
    SQLAlchemy dialect+driver name)."""
    return (
        f"{driver}://agent:{info['tokens']['reader']}@127.0.0.1:{info['port']}/{info['database']}"
    )


def reader_dsn(info: dict[str, Any]) -> str:
    """The reader's libpq URL through the proxy, without TLS (the test proxy has none)."""
    return reader_url(info) + "?sslmode=disable"


def table_fixtures(create: str, table: str) -> tuple[Any, Any]:
    """A module's `people` fixture (the table `create` makes in the postgres stack's
    database, by its owner, dropped after the module; the test module imports the stack's
    `pg` fixture) and `reader` fixture (a psycopg connection of the stack's reader through
    the proxy, autocommit)."""

    @pytest.fixture(scope="module")
    def people(pg: dict[str, Any]) -> Iterator[dict[str, Any]]:
        with owner(pg["role"], pg["database"]) as direct:
            direct.execute(create)
        try:
            yield pg
        finally:
            with owner(pg["role"], pg["database"]) as direct:
                direct.execute(f"DROP TABLE {table}")

    @pytest.fixture(scope="module")
    def reader(people: dict[str, Any]) -> Iterator[psycopg.Connection]:
        with psycopg.connect(reader_dsn(people), autocommit=True) as conn:
            yield conn

    return people, reader
