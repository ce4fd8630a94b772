"""Evidence probe 19 (helper auditsec10): a session's claims are written with its open, or not.

A session.open record commits the token's claims the PDP does not decide on (an email, a
name) and their values are a `session.claims` record of the same session
(pdp.domain.claims). The PDP appended that record on its own before the open, and when
the store refused it, logged the error and opened the session all the same: the chain
then held an open whose committed claims no record reveals (a session found again read
them as absent, an auditor with the full bundle could not prove them). The claims now go
into the store in the transaction that writes the open record (AuditStore.append's
`before`), so a store that refuses either refuses both, and the open is a deny like any
decision the store would not take.

The store's refusal is real: a SQLite trigger (and a Postgres one) on the PDP's own
audit table aborts the insert of one kind of record, as a full disk or a constraint
would abort the transaction.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pdp_harness import open_session, pdp_config, pdp_stub, running_pdp

from pdp.domain.identity import DevIssuer
from pdp.store import Beside, StoreUnavailable, open_store
from portcullis.config import StoreSettings
from portcullis.v1 import pdp_pb2
from tests.conftest import PG_ADMIN_DSN

EMAIL = "rita.private@example.org"


def _token(config: Any) -> str:
    extra = {"email": EMAIL, "department": "ops"}
    return DevIssuer(config.identity).issue(
        "rita@example.com", ["readonly"], 3600, extra_claims=extra
    )


def _refuse(path: str, kind: str) -> None:
    """The SQLite store at path aborts every insert of a record of `kind`."""
    db = sqlite3.connect(path)
    try:
        db.execute(
            "CREATE TRIGGER refuse_kind BEFORE INSERT ON audit_records"
            f" WHEN NEW.kind = '{kind}' BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
        db.commit()
    finally:
        db.close()


def _allow(path: str) -> None:
    db = sqlite3.connect(path)
    try:
        db.execute("DROP TRIGGER refuse_kind")
        db.commit()
    finally:
        db.close()


def _kinds(path: str) -> list[tuple[int, str, str]]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT seq, kind, session_id FROM audit_records ORDER BY seq").fetchall()
    finally:
        db.close()


async def _refused_open(stub, config: Any, refused_kind: str) -> None:  # type: ignore[no-untyped-def]
    """An open while the store aborts every record of refused_kind: a deny, with no
    session, and neither the open nor its claims in the store."""
    path = config.pdp.store.path
    _refuse(path, refused_kind)
    refused = await open_session(stub, _token(config))
    assert refused.decision.verdict == pdp_pb2.DENY and not refused.session_id
    assert "decision log unavailable" in " ".join(refused.decision.reasons)
    assert not [k for k in _kinds(path) if k[1] in ("session.open", "session.claims")]
    assert EMAIL not in Path(path).read_bytes().decode("utf-8", "replace")
    _allow(path)


async def test_an_open_whose_claims_the_store_refuses_is_refused_and_not_recorded(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        await _refused_open(stub, config, "session.claims")
        opened = await open_session(stub, _token(config))
        assert opened.decision.verdict == pdp_pb2.ALLOW and opened.session_id
        found = [k for k in _kinds(config.pdp.store.path) if k[2] == opened.session_id]
        # the claims just before the open, in one batch of the chain
        assert [k[1] for k in found] == ["session.claims", "session.open"]
        assert found[1][0] == found[0][0] + 1
        app.sessions._open.pop(opened.session_id)  # (found again from the store)
        again = await app.sessions.find(opened.session_id)
    assert again is not None and again.identity.claims["email"] == EMAIL


async def test_an_open_the_store_refuses_leaves_no_claims_either(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        await _refused_open(stub, config, "session.open")
        assert (await app.store.verify()).ok


# ------------------------------------------------------------------ the store's own contract


async def test_records_appended_before_another_share_its_transaction_sqlite(tmp_path):
    path = str(tmp_path / "audit.db")
    async with open_store(StoreSettings(type="sqlite", path=path)) as store:
        _refuse(path, "main")
        with pytest.raises(StoreUnavailable):
            await store.append("main", {"n": 1}, before=[Beside("side", {"n": 0})])
        assert await store.query() == []
        _allow(path)
        record = await store.append(
            "main", {"n": 1}, session_id="s", before=[Beside("side", {"n": 0}, session_id="s")]
        )
        side, main = await store.query()
        assert (side.kind, main.kind, main.id) == ("side", "main", record.id)
        assert side.seq + 1 == main.seq and side.session_id == "s"
        assert (await store.verify()).ok


@pytest.fixture
def pg_store_dsn() -> Iterator[str]:
    name = f"auditsec10_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_records_appended_before_another_share_its_transaction_postgres(pg_store_dsn):
    async with open_store(StoreSettings(type="postgres", dsn=pg_store_dsn)) as store:
        with psycopg.connect(pg_store_dsn, autocommit=True) as db:
            db.execute(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
                " $$BEGIN RAISE EXCEPTION 'disk full'; END$$"
            )
            db.execute(
                "CREATE TRIGGER refuse_main BEFORE INSERT ON audit_records FOR EACH ROW"
                " WHEN (NEW.kind = 'main') EXECUTE FUNCTION refuse()"
            )
            with pytest.raises(StoreUnavailable):
                await store.append("main", {"n": 1}, before=[Beside("side", {"n": 0})])
            assert await store.query() == []
            db.execute("DROP TRIGGER refuse_main ON audit_records")
        await store.append("main", {"n": 1}, before=[Beside("side", {"n": 0})])
        assert [r.kind for r in await store.query()] == ["side", "main"]
        assert (await store.verify()).ok


async def test_a_record_whose_id_is_taken_takes_those_before_it_out_too(tmp_path):
    """The record written with others is refused as a duplicate: none of them is written
    (a session.claims record never stands in the chain without its open)."""
    path = str(tmp_path / "audit.db")
    async with open_store(StoreSettings(type="sqlite", path=path)) as store:
        await store.append("main", {"n": 1}, id="d-1")
        with pytest.raises(ValueError, match="already in use"):
            await store.append("main", {"n": 2}, id="d-1", before=[Beside("side", {"n": 0})])
        assert [r.kind for r in await store.query()] == ["main"]
