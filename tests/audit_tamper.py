"""Tampering with an audit store the way an attacker with database access would."""

from __future__ import annotations

import sqlite3

import asyncpg

from portcullis.config import StoreSettings


def dollar(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1, $2, ...`."""
    parts = sql.split("?")
    return parts[0] + "".join(f"${i}{p}" for i, p in enumerate(parts[1:], start=1))


async def tamper(settings: StoreSettings, *statements: tuple[str, tuple]) -> None:
    """Run `?`-placeholder SQL with the append-only triggers out of the way."""
    if settings.type == "sqlite":
        db = sqlite3.connect(settings.path, isolation_level=None)
        try:
            db.execute("DROP TRIGGER IF EXISTS audit_records_no_update")
            db.execute("DROP TRIGGER IF EXISTS audit_records_no_delete")
            for sql, params in statements:
                db.execute(sql, params)
        finally:
            db.close()
        return
    conn = await asyncpg.connect(settings.dsn)  # superuser
    try:
        async with conn.transaction():
            await conn.execute("ALTER TABLE audit_records DISABLE TRIGGER ALL")
            for sql, params in statements:
                await conn.execute(dollar(sql), *params)
            await conn.execute("ALTER TABLE audit_records ENABLE TRIGGER ALL")
    finally:
        await conn.close()
