"""The reads both SQL backends answer alike: `AuditStore.query()`, `newest()`, `get()`,
`head()` and the evidence reads (`batch_macs()`, `newest_of_kind()`).

Owns the SQL of those reads, written once for any dialect: a backend mixes in
`RecordReads`, names how its n-th parameter is written (`?`, `$n`) and supplies
`_rows()`, which runs one statement where the backend reads (the reading thread, the
pool) and raises StoreUnavailable when it cannot. Nothing here writes, and nothing here
knows a driver.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pdp.store.chain import GENESIS_HASH, AuditRecord, row_to_record, to_micros

# a record's stored columns, in chain.row_to_record's order (the same in both backends)
COLUMNS = "seq, id, kind, time_us, session_id, subject, body, prev_hash, hash"
COLUMN_NAMES = tuple(COLUMNS.split(", "))
SELECT_RECORDS = f"SELECT {COLUMNS} FROM audit_records"
HEAD_SQL = "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1"


def query_sql(
    select: str,
    placeholder: Callable[[int], str],
    kind: str | None,
    session_id: str | None,
    subject: str | None,
    since: float | None,
    until: float | None,
    after_seq: int,
    limit: int | None,
    *,
    before_seq: int | None = None,
    newest_first: bool = False,
) -> tuple[str, list[Any]]:
    """The SQL and parameters of `AuditStore.query()` for a backend whose n-th parameter
    is written placeholder(n): records matching every filter, by seq, since <= t < until
    (and seq < before_seq; newest first: `AuditStore.newest()`)."""
    params: list[Any] = []

    def bind(value: Any) -> str:
        params.append(value)
        return placeholder(len(params))

    where = [f"seq > {bind(after_seq)}"]
    if before_seq is not None:
        where.append(f"seq < {bind(before_seq)}")
    for column, value in (("kind", kind), ("session_id", session_id), ("subject", subject)):
        if value is not None:
            where.append(f"{column} = {bind(value)}")
    if since is not None:
        where.append(f"time_us >= {bind(to_micros(since))}")
    if until is not None:
        where.append(f"time_us < {bind(to_micros(until))}")
    sql = f"{select} WHERE {' AND '.join(where)} ORDER BY seq{' DESC' if newest_first else ''}"
    if limit is not None:
        sql += f" LIMIT {bind(limit)}"
    return sql, params


class RecordReads:
    """The record reads of a SQL backend; see the module docstring."""

    @staticmethod
    def _placeholder(n: int) -> str:
        """How the backend's SQL writes its n-th parameter (from 1)."""
        raise NotImplementedError

    async def _rows(self, sql: str, params: list[Any]) -> Sequence[Sequence[Any]]:
        """The rows of one statement; StoreUnavailable when the backend cannot answer."""
        raise NotImplementedError

    async def query(
        self,
        kind: str | None = None,
        session_id: str | None = None,
        subject: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after_seq: int = 0,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """Records matching every given filter, by seq; since <= time < until."""
        sql, params = query_sql(
            SELECT_RECORDS, self._placeholder, kind, session_id, subject, since, until,
            after_seq, limit,
        )  # fmt: skip
        return [row_to_record(r) for r in await self._rows(sql, params)]

    async def newest(
        self,
        kind: str,
        *,
        session_id: str | None = None,
        subject: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before_seq: int | None = None,
        limit: int,
    ) -> list[AuditRecord]:
        """At most `limit` records of `kind` matching every filter, the newest first
        (below before_seq): a page of a listing that shows the newest, read without
        reading the older ones."""
        sql, params = query_sql(
            SELECT_RECORDS, self._placeholder, kind, session_id, subject, since, until, 0,
            limit, before_seq=before_seq, newest_first=True,
        )  # fmt: skip
        return [row_to_record(r) for r in await self._rows(sql, params)]

    async def get(self, id: str) -> AuditRecord | None:
        rows = await self._rows(f"{SELECT_RECORDS} WHERE id = {self._placeholder(1)}", [id])
        return row_to_record(rows[0]) if rows else None

    async def head(self) -> tuple[int, str]:
        rows = await self._rows(HEAD_SQL, [])
        return (rows[0][0], rows[0][1]) if rows else (0, GENESIS_HASH)

    async def batch_macs(self, after_seq: int, upto_seq: int) -> list[tuple[int, str, str]]:
        """The batch MACs (pdp.store.macs) of the records after_seq < seq <= upto_seq, as
        (seq, hash, mac): one per batch's last record."""
        p = self._placeholder
        rows = await self._rows(
            "SELECT seq, hash, mac FROM audit_records"
            f" WHERE seq > {p(1)} AND seq <= {p(2)} AND mac IS NOT NULL",
            [after_seq, upto_seq],
        )
        return [(int(q), str(h), str(m)) for q, h, m in rows]

    async def newest_of_kind(self, kind: str, before_seq: int) -> AuditRecord | None:
        """The record of `kind` with the highest seq below before_seq."""
        p = self._placeholder
        rows = await self._rows(
            f"{SELECT_RECORDS} WHERE kind = {p(1)} AND seq < {p(2)} ORDER BY seq DESC LIMIT 1",
            [kind, before_seq],
        )
        return row_to_record(rows[0]) if rows else None
