"""PostgreSQL audit store (asyncpg pool), safe for several PDP replicas on one database.

Each batch runs in one transaction that first takes `pg_advisory_xact_lock(CHAIN_LOCK)`,
then reads the head (READ COMMITTED: the read sees every batch committed before the lock
was granted), seals the batch onto it and COPYs it in. Replicas therefore extend one
chain in turn (tests/test_pdp_replicas.py). A replica that dies holding the lock loses it
with its connection; one whose host vanishes, when the server ends its transaction for
sitting idle (`orphan_seconds`). Bodies are stored as canonical JSON text, not jsonb, so
the hashed bytes survive exactly.

The schema is created at `start()` only if missing (guarded DDL under an advisory lock),
so a least-privileged PDP role that may only SELECT and INSERT can start too. Triggers
refuse UPDATE, DELETE and TRUNCATE even for the table owner; only a superuser (or the
owner via ALTER TABLE ... DISABLE TRIGGER) can bypass them, which `verify()` then exposes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg

from pdp.store import (
    EGRESS_KINDS,
    EGRESS_MARK,
    TRIP_KIND,
    AuditStore,
    BatchResult,
    GuardFacts,
    StoreUnavailable,
    fresh_drafts,
    guard_facts_of_rows,
)
from pdp.store.chain import (
    ChainReport,
    ChainVerifier,
    Draft,
    to_micros,
)
from pdp.store.reads import COLUMN_NAMES, HEAD_SQL, SELECT_RECORDS

log = logging.getLogger("portcullis.store")

CHAIN_LOCK = 0x5043_4155_4449_5401  # b"PCAUDIT\x01": serializes chain extension
SCHEMA_LOCK = 0x5043_4155_4449_5402  # b"PCAUDIT\x02": serializes schema creation

_VERIFY_PAGE = 5000
_COPY_COLUMNS = (*COLUMN_NAMES, "mac")

# A body as PostgreSQL's json reads it field by field: a NUL escape (\u0000, preceded by
# an even number of backslashes, so an escape and not a backslash then "u0000") written as
# U+FFFD first. A record's strings hold what clients sent (a value bound in a Bind, which
# may hold a NUL byte), and json refuses to turn \u0000 into text: one such record in the
# range failed every guard_facts read of every replica, for as long as it stayed in the
# window. The fields read here (egress numbers, the PDP's own names) never hold one.
_PARSABLE_BODY = (
    r"(CASE WHEN strpos(body, '\u0000') > 0"
    r" THEN regexp_replace(body, '(?<!\\)((?:\\\\)*)\\u0000', '\1\\ufffd', 'g')"
    r" ELSE body END)"
)

SCHEMA = """
DO $portcullis$
BEGIN
    IF to_regclass('audit_records') IS NULL THEN
        CREATE TABLE audit_records (
            seq        bigint PRIMARY KEY,
            id         text NOT NULL UNIQUE,
            kind       text NOT NULL,
            time_us    bigint NOT NULL,  -- unix time in microseconds, exactly as hashed
            session_id text NOT NULL,
            subject    text NOT NULL,
            body       text NOT NULL,    -- canonical JSON (text keeps the hashed bytes)
            prev_hash  text NOT NULL,
            hash       text NOT NULL
        );
        CREATE INDEX audit_records_kind_time ON audit_records (kind, time_us);
        CREATE INDEX audit_records_session ON audit_records (session_id);
        CREATE INDEX audit_records_subject ON audit_records (subject);
    END IF;
    IF to_regprocedure('portcullis_audit_append_only()') IS NULL THEN
        CREATE FUNCTION portcullis_audit_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $fn$
        BEGIN
            RAISE EXCEPTION 'audit_records is append-only: % refused', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $fn$;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'audit_records'::regclass
                   AND tgname = 'audit_records_append_only') THEN
        CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records
            FOR EACH ROW EXECUTE FUNCTION portcullis_audit_append_only();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'audit_records'::regclass
                   AND tgname = 'audit_records_no_truncate') THEN
        CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records
            FOR EACH STATEMENT EXECUTE FUNCTION portcullis_audit_append_only();
    END IF;
    -- a batch's last record: "<first seq>:<MAC>" (pdp.store.macs); added to a store made
    -- before record MACs (by its owner: a role that may only SELECT and INSERT cannot)
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'audit_records'::regclass
                   AND attname = 'mac' AND NOT attisdropped) THEN
        ALTER TABLE audit_records ADD COLUMN mac text;
    END IF;
END
$portcullis$;
"""


class PostgresAuditStore(AuditStore):
    def __init__(
        self,
        dsn: str,
        *,
        timeout: float = 2.0,
        pool_size: int = 4,
        orphan_seconds: float | None = None,
    ) -> None:
        """orphan_seconds: how long the server lets one of this store's transactions sit
        idle before ending it (default: 5 timeouts, at least 10 s). A replica whose host
        vanished mid-batch leaves its transaction open — and the chain lock held — until
        the server notices; without this bound, that could take the server's TCP
        keepalive (hours), every other replica failing closed meanwhile. A batch is never
        idle that long: its own deadline (`timeout`) ends it first."""
        super().__init__(timeout=timeout)
        self.dsn = dsn
        self.pool_size = pool_size
        self.orphan_seconds = orphan_seconds or max(10.0, timeout * 5)
        self._pool: asyncpg.Pool | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def _open(self) -> None:
        settings = {"idle_in_transaction_session_timeout": str(int(self.orphan_seconds * 1000))}
        try:
            self._pool = await self._new_pool(settings)
            async with self._pool.acquire(timeout=self.timeout) as conn:
                lax = await conn.fetchval("SHOW synchronous_commit") == "off"
            if lax:
                # a batch's COMMIT must return once its WAL is on this server's disk, as
                # the store's callers are told (a decision is answered only once its
                # record is durable): a database or role set to synchronous_commit = off
                # (a common tuning) would answer first and lose the last batches in a
                # server crash. Such connections commit with `local`; a stronger setting
                # (on, remote_write, remote_apply: the operator's replication) is kept. A
                # startup setting, which the pool's RESET ALL on release keeps.
                log.warning(
                    "the audit database has synchronous_commit = off: the store's"
                    " connections commit with synchronous_commit = local"
                )
                await self._pool.close()
                self._pool = await self._new_pool({**settings, "synchronous_commit": "local"})
            async with self._pool.acquire(timeout=self.timeout) as conn:
                await asyncio.wait_for(_ensure_schema(conn), self.timeout * 5)
        except Exception as exc:
            await self._shutdown()
            raise StoreUnavailable(f"cannot open the PostgreSQL store: {_reason(exc)}") from None

    async def _new_pool(self, settings: dict[str, str]) -> asyncpg.Pool:
        pool = await asyncio.wait_for(
            asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=self.pool_size,
                timeout=self.timeout,
                server_settings=settings,
            ),
            self.timeout * 2,
        )
        if pool is None:
            raise StoreUnavailable("could not create a connection pool")
        return pool

    async def _reset(self) -> None:
        if self._pool is not None:
            await self._pool.expire_connections()  # e.g. after a server restart

    async def _shutdown(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self.timeout)
            except Exception:  # closing a dead pool must not hide the real problem
                pool.terminate()

    def _pool_or_fail(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreUnavailable("store is not running")
        return self._pool

    # -- writing ---------------------------------------------------------------------

    async def _write_batch(self, drafts: list[Draft], explicit_ids: set[str]) -> BatchResult:
        pool = self._pool_or_fail()
        async with pool.acquire(timeout=self.timeout) as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", CHAIN_LOCK)
            duplicates: set[str] = set()
            if explicit_ids:
                rows = await conn.fetch(
                    "SELECT id FROM audit_records WHERE id = ANY($1::text[])",
                    list(explicit_ids),
                )
                duplicates = {r["id"] for r in rows}
            fresh = fresh_drafts(drafts, duplicates)
            records, rows = self._sealed(fresh, await conn.fetchrow(HEAD_SQL))
            await conn.copy_records_to_table("audit_records", columns=_COPY_COLUMNS, records=rows)
        return BatchResult(records, duplicates)

    def _failed_batch(self, ids: list[str]) -> None:
        """A COMMIT the deadline cancelled may have been done by the server all the same:
        once the server has settled it (a timeout later), look, and name what landed."""
        self._in_background(self._look_for_late(ids))

    async def _look_for_late(self, ids: list[str]) -> None:
        await asyncio.sleep(self.timeout)
        try:
            rows = await self._fetch(
                "SELECT id FROM audit_records WHERE id = ANY($1::text[])", list(ids)
            )
        except StoreUnavailable as exc:
            log.error("could not tell whether unwritten records %s landed: %s", ids, exc)
            return
        landed = [r["id"] for r in rows]
        if landed:
            await self._note_late(landed)

    # -- reading ---------------------------------------------------------------------

    async def _fetch(self, sql: str, *params: Any) -> list[asyncpg.Record]:
        try:
            async with self._pool_or_fail().acquire(timeout=self.timeout) as conn:
                return await conn.fetch(sql, *params)
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StoreUnavailable(_reason(exc)) from None

    _placeholder = staticmethod("${}".format)

    async def _rows(self, sql: str, params: list[Any]) -> list[asyncpg.Record]:
        return await self._fetch(sql, *params)

    async def guard_facts(
        self, after_seq: int, since: float, trips_since: float, by_time: bool | None = None
    ) -> GuardFacts:
        """The egress reports and breaker pauses of the records after after_seq up to the
        head (upto_seq), egress recorded at `since` or later and pauses at `trips_since`
        or later, summed per minute by the server, on one connection
        (pdp.domain.guard_sync). Only bodies holding an egress report are parsed, once
        each, as json, not jsonb (no binary form built): 11 µs of the server's time for
        a record of 1 kB, measured. by_time is the SQLite store's hint; the planner
        chooses here (both filters apply either way)."""
        try:
            async with self._pool_or_fail().acquire(timeout=self.timeout) as conn:
                upto = await conn.fetchval(
                    "SELECT seq FROM audit_records ORDER BY seq DESC LIMIT 1"
                )
                upto = int(upto or 0)
                if upto <= after_seq:
                    return GuardFacts([], [], upto)
                egress = await conn.fetch(
                    # json_to_record: each body parsed once (b->'x' on json parses the
                    # text again for every field: 2.5 times the server's time)
                    "SELECT j.egress->>'pdp', kind, subject, session_id, j.connection,"
                    # a report is never negative: one that is (a record the PDP did
                    # not write) must not hand a budget back
                    " time_us / 60000000, sum(greatest((j.egress->>'rows')::bigint, 0)),"
                    " sum(greatest((j.egress->>'bytes')::bigint, 0)), min(seq)"
                    " FROM audit_records,"
                    f"  json_to_record({_PARSABLE_BODY}::json) AS j(egress json, connection text)"
                    " WHERE seq > $1 AND seq <= $2 AND time_us >= $3"
                    "  AND kind = ANY($4::text[]) AND strpos(body, $5) > 0"
                    " GROUP BY 1, 2, 3, 4, 5, 6",
                    after_seq,
                    upto,
                    to_micros(since),
                    list(EGRESS_KINDS),
                    EGRESS_MARK,
                )
                trips = await conn.fetch(
                    "SELECT b->>'pdp', subject, b->>'connection', b->>'why',"
                    " b->>'paused_until'"
                    f" FROM (SELECT subject, {_PARSABLE_BODY}::json AS b FROM audit_records"
                    "  WHERE kind = $1 AND time_us >= $2 AND seq > $3 AND seq <= $4) AS tripped",
                    TRIP_KIND,
                    to_micros(trips_since),
                    after_seq,
                    upto,
                )
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StoreUnavailable(_reason(exc)) from None
        return guard_facts_of_rows(egress, trips, upto)

    async def verify(self) -> ChainReport:
        """Recompute every hash and link in seq order, in one REPEATABLE READ snapshot."""
        verifier = ChainVerifier()
        try:
            pool = self._pool_or_fail()
            async with (
                pool.acquire(timeout=self.timeout) as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                cursor = await conn.cursor(f"{SELECT_RECORDS} ORDER BY seq")
                while rows := await cursor.fetch(_VERIFY_PAGE):
                    # hashing a page is CPU work: keep it off the event loop
                    await asyncio.to_thread(_feed, verifier, rows)
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StoreUnavailable(_reason(exc)) from None
        return verifier.report()


def _feed(verifier: ChainVerifier, rows: list[asyncpg.Record]) -> None:
    for row in rows:
        verifier.feed(tuple(row))


async def _ensure_schema(conn: asyncpg.Connection) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
        await conn.execute(SCHEMA)


async def grant_least_privilege(dsn: str, role: str) -> None:
    """Let `role` (an existing role that does not own the table) only SELECT and INSERT.

    Run as the table owner after the store has started once. Equivalent SQL:

        REVOKE ALL ON audit_records FROM pdp_role;
        GRANT USAGE ON SCHEMA public TO pdp_role;
        GRANT SELECT, INSERT ON audit_records TO pdp_role;
    """
    conn = await asyncpg.connect(dsn)
    try:
        who = await conn.fetchval("SELECT quote_ident($1)", role)
        schema = await conn.fetchval(
            "SELECT quote_ident(n.nspname) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.oid = to_regclass('audit_records')"
        )
        if schema is None:
            raise ValueError("audit_records does not exist yet: start the store once first")
        async with conn.transaction():
            await conn.execute(f"REVOKE ALL ON {schema}.audit_records FROM {who}")
            await conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {who}")
            await conn.execute(f"GRANT SELECT, INSERT ON {schema}.audit_records TO {who}")
    finally:
        await conn.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
