"""The Postgres proxy's own work per transaction, without sockets: pgbench -S's messages
through the real relay callbacks, CPU per transaction.

A session's two callbacks (_Relay._client_data and _server_data) get the bytes pgbench and
the server send for `SELECT abalance FROM pgbench_accounts WHERE aid = N` — simple Query,
or Bind/Describe/Execute/Sync of a prepared statement, or a simple Query under a row filter
(issue 30: each statement refilled into the reused rewrite; 'tenants': the same, where the
filter finds the row of half the ids, as bench_guards' tenant does, so the recorded result
alternates between one row and none), or a simple Query in a database
with views (their columns and the relations they read go to the policy with every
statement, input.command.postgres) — with the verdict reused from the
session's decision cache (cache_key: shape), the recording on (its spool holding room per
statement) and the credential's secret scanner watching the client's bytes. 'asked': a
simple Query with the cache off, every statement decided: the PDP client's own work (the
request built, the answer read into a Ruling) around a PDP that answers at once (no gRPC:
its C threads and the hop are not counted), the catalogue asked alongside as the watch is
asked (answering at once with the facts the session has: no socket), the relay's task on
the event loop. The sockets are stand-ins that keep nothing, so what is measured is the
proxy's Python alone: no kernel, no other process. Deterministic enough to compare two
versions of the code on a loaded machine (CPU time of this process, best of --repeat),
where a pgbench run's CPU per transaction moves by a third with the other load. Not a
test: nothing asserts.

    python bench/postgres/bench_hotpath.py [--transactions 20000] [--repeat 5]
        [--modes simple,prepared,filtered,tenants,views,asked]

(--repeat 0: the session and the chunks are made, nothing is run; callgrind_hotpath.py
subtracts that.)
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import types
from pathlib import Path
from typing import Any

from portcullis.config import ConnectionSettings
from portcullis.literals import ShapeRewrite, fill, printed, shape_of
from portcullis.reuse import reuse_key
from portcullis.shape import shaped
from portcullis.v1 import pdp_pb2
from portcullis.verdict import Verdict, VerdictKind
from proxies.postgres import codec
from proxies.postgres.catalog_watch import NO_FACTS
from proxies.postgres.enforcer import Enforcer
from proxies.postgres.proxy import ClientConnection, _Relay
from proxies.postgres.tracker import ResponseTracker
from proxies.postgres.upstream import Upstream
from proxies.runtime.pdp_client import PDPClient, Ruling, SessionGrant
from proxies.runtime.recorder import SessionRecorder
from proxies.runtime.session import ProxyRuntime, ProxySession
from proxies.runtime.spool import Spool

SQL = "SELECT abalance FROM pgbench_accounts WHERE aid = {};"


class _Socket:
    """A transport and its StreamWriter, for the relay: writes are dropped."""

    def __init__(self) -> None:
        self.written = 0
        self.first = b""  # the first byte written (upstream: which protocol a Query took)

    def write(self, data: bytes) -> None:
        if not self.written:
            self.first = data[:1]
        self.written += len(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5000) if name == "peername" else default


class _PDP:
    reachable = True
    answered = True
    revision = "rev-1"
    recording_failure = ""


class _Asked(PDPClient):
    """The PDP client with its Decide answered at once, as the PDP answers an allowed
    statement (its request still built, its answer still read): no gRPC."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1:0")
        self._stub = object()  # type: ignore[assignment]  # "connected"
        self.revision = "rev-1"
        self.answered = True
        self.asked = 0
        decision = pdp_pb2.Decision(
            decision_id="d-0123456789abcdef0123456789abcdef",
            verdict=pdp_pb2.ALLOW,
            reasons=["every statement is allowed"],
            policy_revision="rev-1",
        )
        self._answer = pdp_pb2.DecideResponse(decision=decision)

    async def _decide(
        self, request: pdp_pb2.DecideRequest, timeout: float
    ) -> pdp_pb2.DecideResponse:
        self.asked += 1
        request.SerializeToString()  # what the stream writes
        return self._answer


class _Catalog:
    """The catalogue watch, asked alongside each decision: the facts the session has."""

    lost = False
    facts = None

    async def fresh(self, credentials: Any = None, columns: bool = False) -> Any:
        return NO_FACTS


class _Known:
    """What a ClientConnection reads of its database's knowledge on the hot path."""

    def __init__(self) -> None:
        self.column_origins: dict[Any, Any] = {}
        self.unnamed_tables: set[int] = set()
        # the bench's one description, as if its table's columns were learnt (the slow
        # lane asks for every description it reads)
        self.known_descriptions: set[bytes] = {_DESCRIPTION.encode()}
        self.catalog_failed_at = float("-inf")
        # no catalogue watch: no newer facts ever
        self.catalog = types.SimpleNamespace(facts=None, lost=False)

    def catalog_stale(self) -> bool:
        return False


class _Proxy:
    """What a ClientConnection reads of its proxy on the hot path."""

    database = ""

    def __init__(self) -> None:
        self._known = _Known()

    def knowledge(self, database: str) -> _Known:
        return self._known


_DESCRIPTION = codec.RowDescription([codec.Field("abalance", 16384, 3, 23, 4, -1, 0)])


def _server_answer(aid: int, prepared: bool, rows: int = 1) -> bytes:
    row = [codec.DataRow([str(aid % 5000 - 2500).encode()])] * rows
    description = _DESCRIPTION
    head: list[codec.Message] = [codec.BindComplete(), description] if prepared else [description]
    return b"".join(
        m.encode()
        for m in (*head, *row, codec.CommandComplete(f"SELECT {rows}"), codec.ReadyForQuery("I"))
    )


def _client_chunk(aid: int, prepared: bool) -> bytes:
    if not prepared:
        return codec.Query(SQL.format(aid)).encode()
    return b"".join(
        m.encode()
        for m in (
            codec.Bind("", "P_0", [0], [str(aid).encode()], [0]),
            codec.Describe("P", ""),
            codec.Execute("", 0),
            codec.Sync(),
        )
    )


def _row_filter() -> ShapeRewrite:
    """What the PDP's row filter makes of the statement's shape (pdp/sql/rowfilter.py): the
    predicate first in the single table's WHERE."""
    shape = shape_of(SQL.format(1)) or ""
    text = shape.replace("WHERE aid", "WHERE pgbench_accounts.bid = 1 AND aid").rstrip(";")
    return ShapeRewrite(shape, text, printed(text))


def _views(n: int = 20) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """What a database with n views tells the policy of every statement (view columns
    that carry other columns, and the relations each view reads)."""
    columns = {f"contact_{i}": [f"phone_{i}"] for i in range(n // 2)}
    sources = {f"public.view_{i}": [f"public.table_{i}", "public.accounts"] for i in range(n)}
    return columns, sources


async def _session(
    spool: Spool, filtered: bool = False, views: bool = False, asked: bool = False
) -> tuple[_Relay, ClientConnection, bool]:
    connection = ConnectionSettings(
        name="bench", type="postgres", listen="127.0.0.1:0", upstream="127.0.0.1:5432"
    )
    pdp: Any = _Asked() if asked else _PDP()
    runtime = ProxyRuntime(connection=connection, pdp=pdp, provider=None)  # type: ignore[arg-type]
    runtime.cache_enabled = not asked
    session = ProxySession(runtime, "127.0.0.1:5000", "pgbench")
    allowed = Ruling(Verdict(VerdictKind.ALLOW), "d-1", "rev-1")
    session.grant = SessionGrant("s-1", allowed, "bench@example.com", ("dba",), "ref")
    session.recorder = SessionRecorder(pdp, "s-1", spool=spool)  # type: ignore[arg-type]
    reusable = Verdict(VerdictKind.ALLOW, cache_ttl_seconds=3600, cache_key="shape")
    cached = Ruling(reusable, "d-2", "rev-1", cached=True)
    if filtered:  # a reused row-filtered verdict: each statement's text refilled
        rewrite = _row_filter()
        first = fill(rewrite, SQL.format(1)) or ""
        cached = Ruling(reusable, "d-2", "rev-1", cached=True, rewritten=first, rewrite=rewrite)
    conn = ClientConnection(_Proxy(), None, _Socket())  # type: ignore[arg-type]
    if asked:
        conn.known.catalog = _Catalog()  # type: ignore[assignment]
    conn.session = session
    conn.parser.startup_done()
    conn.output.guard(["bench-secret-password"])
    conn.upstream = Upstream(None, _Socket(), codec.BackendParser())  # type: ignore[arg-type]
    tracker = ResponseTracker()
    enforcer = Enforcer(
        tracker, b"k" * 32, session.ruling_now, {}, session.halted, lambda: pdp.revision,
        conn.outbound,
    )  # fmt: skip
    if views:
        enforcer.view_columns, enforcer.relation_sources = _views()
    for protocol in ("simple", "parse"):
        key = reuse_key("postgres.query", enforcer._attributes(protocol))
        session.cache.store("", key, SQL.format(1), reusable, "rev-1", cached, shaped)
    relay = _Relay(conn, enforcer, tracker)
    upstream: Any = conn.upstream.writer
    bound = False
    if filtered:  # a reused filtered Query may run prepared: Parse, Bind, Describe, ...
        relay._client_data(_client_chunk(1, False))
        bound = upstream.first in (b"P", b"B")
        parsed = codec.ParseComplete().encode() if upstream.first == b"P" else b""
        relay._server_data(parsed + _server_answer(1, bound))
    return relay, conn, bound


async def _run(relay: _Relay, conn: ClientConnection, chunks: list[tuple[bytes, bytes]]) -> float:
    client, server = relay._client_data, relay._server_data
    side = relay._client
    started = time.process_time()
    for request, answer in chunks:
        client(request)
        waiting = side.waiting
        if waiting is not None:  # asked: the statement decided in the relay's task
            await waiting
        server(answer)
    spent = time.process_time() - started
    recorder = conn.session.recorder if conn.session else None
    if recorder is not None:  # what the tick would send: not part of a transaction
        recorder._seal_run()
        recorder._pending.clear()
        recorder._pending_chars = 0
    return spent


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--modes", default="simple,prepared,filtered,tenants,views,asked")
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as spool_dir:
        spool = Spool(Path(spool_dir), "bench")
        spool.open()
        for mode in args.modes.split(","):
            prepared = mode == "prepared"
            # tenants: a row filter finds the row of half the ids (bench_guards' accounts)
            tenants = mode == "tenants"
            asked = mode == "asked"
            relay, conn, bound = await _session(
                spool, mode in ("filtered", "tenants"), mode == "views", asked
            )
            if prepared:  # the statement, parsed once (its verdict reused from the cache)
                parse = codec.Parse("P_0", SQL.format("$1"), []).encode() + codec.Sync().encode()
                relay._client_data(parse)
                relay._server_data(codec.ParseComplete().encode() + b"Z\0\0\0\5I")
            chunks = []
            for _ in range(args.transactions):
                aid = rng.randrange(1, 1_000_000)
                rows = aid % 2 if tenants else 1
                answer = _server_answer(aid, prepared or bound, rows)
                chunks.append((_client_chunk(aid, prepared), answer))
            if not args.repeat:
                continue  # (callgrind_hotpath.py: the same work but the transactions)
            await _run(relay, conn, chunks[:2000])  # warm
            best = min([await _run(relay, conn, chunks) for _ in range(args.repeat)])
            ended = relay.ended.done() and relay.ended.result()
            counters = conn.session.counters if conn.session else {}
            done = counters.get("commands", 0)
            reused = counters.get("cache_hits", 0)
            if asked and conn.session is not None:
                decided = conn.session.runtime.pdp.asked  # type: ignore[attr-defined]
                if done < args.transactions or decided < done or reused:
                    ended = ended or f"not every statement was decided: {dict(counters)}"
            elif done < args.transactions or reused < (1 if prepared else done):
                ended = ended or f"not every statement reused a verdict: {dict(counters)}"
            print(
                f"{mode:8}: {best / args.transactions * 1e6:6.2f} µs of proxy CPU per "
                f"transaction (best of {args.repeat} runs of {args.transactions})"
                + (f"  [relay ended: {ended}]" if ended else ""),
                flush=True,
            )
        spool.close()


if __name__ == "__main__":
    asyncio.run(main())
