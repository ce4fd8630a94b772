"""Masking follows the data into views and every result format, and never corrupts data.

Against the real server through the real proxy, with psycopg (text), asyncpg (binary) and
psycopg binary cursors: a view that renames or computes from a sensitive column is masked;
numbers, uuids and JSON numbers come back exactly; a masked value is valid for its type in
both formats; detectors read JSON string leaves and text-array elements; and when the
proxy cannot read the catalog, what it cannot name is masked, never passed.
"""

from __future__ import annotations

import json
import uuid

import asyncpg
import psycopg
import pytest
from pg_harness import Gateway, running_gateway

pytestmark = pytest.mark.integration

VIEWS = """
ALTER TABLE customers ADD COLUMN phone text;
UPDATE customers SET phone = '+44 20 7946 0000';
CREATE VIEW contacts AS SELECT id, phone AS contact, email AS reach FROM customers;
CREATE VIEW shouting AS SELECT id, upper(ssn) AS loud, name FROM customers;
CREATE VIEW layered AS SELECT id, contact AS again FROM contacts;
"""

SECRETS = ("ada@example.com", "123-45-6789", "+44 20 7946 0000", "ADA@EXAMPLE.COM")


def _prepare(gw: Gateway) -> None:
    with gw.admin() as admin:
        admin.execute(VIEWS)
        for view in ("contacts", "shouting", "layered"):
            admin.execute(f"ALTER VIEW {view} OWNER TO {gw.role}")


def _leaks(values: object) -> list[str]:
    text = repr(values)
    return [s for s in SECRETS if s in text or s.lower() in text.lower()]


QUERIES = [
    "SELECT * FROM contacts ORDER BY id",
    "SELECT contact, reach FROM contacts ORDER BY id",
    "SELECT c.contact AS x FROM contacts c ORDER BY id",
    "SELECT loud FROM shouting ORDER BY id",
    "SELECT again FROM layered ORDER BY id",
    "SELECT * FROM (SELECT again FROM layered) s",
    "WITH w AS (SELECT reach FROM contacts) SELECT * FROM w",
]


@pytest.mark.parametrize("sql", QUERIES)
async def test_views_that_rename_or_compute_from_sensitive_columns_are_masked(
    tmp_path, sql: str
) -> None:
    async with running_gateway(tmp_path) as gw:
        _prepare(gw)
        async with await psycopg.AsyncConnection.connect(gw.dsn(gw.token())) as conn:
            text_rows = await (await conn.execute(sql)).fetchall()
            binary_rows = await (await conn.execute(sql, binary=True)).fetchall()
        conn2 = await asyncpg.connect(gw.dsn(gw.token()))
        try:
            asyncpg_rows = [tuple(r) for r in await conn2.fetch(sql)]
        finally:
            await conn2.close()
        assert text_rows and not _leaks(text_rows), text_rows
        assert not _leaks(binary_rows), binary_rows
        assert not _leaks(asyncpg_rows), asyncpg_rows
        # pii-readers see the data as it is
        async with await psycopg.AsyncConnection.connect(
            gw.dsn(gw.token("pat@example.com", ("readonly", "pii-readers")))
        ) as conn:
            assert _leaks(await (await conn.execute(sql)).fetchall())


TYPED = (
    "SELECT 1.1428571428571428::float8 AS f, "
    "'6b1e8a1c-54a4-4f7e-9a8b-0d4c2c1f0a11'::uuid AS u, "
    "4111111111111111::bigint AS big, "
    "4111111111111112::bigint AS other, "
    '\'{"n": 4111111111111111, "m": 4111111111111112, "who": "ada@example.com"}\'::jsonb AS doc, '
    '\'{"n": 4111111111111111, "m": 4111111111111112}\'::json AS plain_json, '
    "ARRAY['ada@example.com', 'nobody'] AS list, "
    "'2026-12-03'::date AS d"
)


async def test_detectors_never_corrupt_numbers_uuids_or_json(tmp_path) -> None:
    async with running_gateway(tmp_path) as gw:
        for groups in (("readonly",), ("dba",)):
            token = gw.token("alice@example.com", groups)
            async with await psycopg.AsyncConnection.connect(gw.dsn(token)) as conn:
                for binary in (False, True):
                    row = await (await conn.execute(TYPED, binary=binary)).fetchone()
                    assert row is not None
                    f, u, big, other, doc, plain_json, items, d = row
                    assert f == 1.1428571428571428
                    assert u == uuid.UUID("6b1e8a1c-54a4-4f7e-9a8b-0d4c2c1f0a11")
                    # a bigint holding a card is read as a JSON number is (masked: NULL,
                    # test_pg_probe_p13); any other number stays the number it was
                    assert big is None
                    assert other == 4111111111111112
                    # a JSON number holding a card is masked (the document stays JSON);
                    # any other number stays the number it was
                    assert doc["n"] == plain_json["n"] == "************1111"
                    assert doc["m"] == plain_json["m"] == 4111111111111112
                    assert doc["who"] != "ada@example.com" and "@" in doc["who"]
                    assert "ada@example.com" not in repr(items)
                    assert str(d) == "2026-12-03"
            conn2 = await asyncpg.connect(gw.dsn(token))
            try:
                record = await conn2.fetchrow(TYPED)
            finally:
                await conn2.close()
            assert record["f"] == 1.1428571428571428
            assert record["u"] == uuid.UUID("6b1e8a1c-54a4-4f7e-9a8b-0d4c2c1f0a11")
            assert record["big"] is None and record["other"] == 4111111111111112
            assert json.loads(record["doc"])["n"] == "************1111"
            assert json.loads(record["doc"])["m"] == 4111111111111112
            assert "ada@example.com" not in repr(record["list"])
            assert "nobody" in record["list"]


async def test_a_masked_value_is_valid_for_its_type_in_both_formats(tmp_path) -> None:
    async with running_gateway(tmp_path) as gw:
        with gw.admin() as admin:
            admin.execute("CREATE TABLE accounts (id int, token uuid, iban bigint, api_key text)")
            admin.execute(
                "INSERT INTO accounts VALUES "
                "(1, '6b1e8a1c-54a4-4f7e-9a8b-0d4c2c1f0a11', 12345, 'sk_live_abc')"
            )
            admin.execute(f"ALTER TABLE accounts OWNER TO {gw.role}")
        sql = "SELECT id, token, iban, api_key FROM accounts"
        async with await psycopg.AsyncConnection.connect(gw.dsn(gw.token())) as conn:
            for binary in (False, True):
                row = await (await conn.execute(sql, binary=binary)).fetchone()
                assert row == (1, None, None, "[REDACTED]")
        conn2 = await asyncpg.connect(gw.dsn(gw.token()))
        try:
            assert tuple(await conn2.fetchrow(sql)) == (1, None, None, "[REDACTED]")
        finally:
            await conn2.close()


async def test_columns_the_catalog_cannot_name_are_refused_not_passed(tmp_path) -> None:
    """The upstream role at its connection limit: the proxy's catalogue look-ups (a second
    connection) fail, and the statement is refused — the code it would run and the columns
    it names cannot be judged — rather than answered with a sensitive column in clear
    (de7b605; before it, an aliased sensitive column came back masked)."""
    async with running_gateway(tmp_path) as gw:
        with gw.admin() as admin:
            admin.execute("ALTER TABLE customers ADD COLUMN phone text")
            admin.execute("UPDATE customers SET phone = '+44 20 7946 0000'")
            admin.execute(f"ALTER ROLE {gw.role} CONNECTION LIMIT 1")
        try:
            async with await psycopg.AsyncConnection.connect(gw.dsn(gw.token())) as conn:
                with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
                    await conn.execute("SELECT id, phone AS p, name FROM customers ORDER BY id")
        finally:
            with gw.admin() as admin:
                admin.execute(f"ALTER ROLE {gw.role} CONNECTION LIMIT -1")
        assert "catalogue could not be read" in str(refused.value)
        assert "7946" not in str(refused.value)


def test_a_byteas_hex_text_is_for_the_detectors() -> None:
    # (sans-IO) SELECT data::text of a bytea spelling an e-mail is `\x616e6e40...`: no `@`
    # and few digits, which Masker.may_detect's gates let pass unread; the Postgres
    # values reader (values.detected_value) reads such a text as its bytes' text
    from portcullis.masking import Masker
    from portcullis.verdict import MaskRule

    masker = Masker([MaskRule(detector="email", strategy="redact")], b"k" * 32)
    assert masker.may_detect(b"\\x" + b"ann@example.com".hex().encode())
    assert not masker.may_detect(b"plain words")
