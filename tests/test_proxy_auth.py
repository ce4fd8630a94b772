"""Only proxies speak for sessions (issue 22 §1): a real PDP, real proxies, real clients.

Each test tries to break the property as an attacker with an ordinary user token, or a
second proxy, would: calling the PDP's gRPC API directly, forging a close that claims the
credential was never exposed, forging events, or presenting certificates the PDP must not
accept.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from pdp_harness import (
    connection,
    free_port,
    open_session,
    pdp_config,
    pdp_stub,
    running_pdp,
    token,
)
from pg_harness import scratch_database

from pdp.app import PDPApp
from pdp.cli import main
from pdp.cli.certs import issue, load_or_create_ca, mint, parse_proxy, write_pair
from pdp.domain.recordings import EVENTS_KIND
from portcullis.config import Config, parse_config
from portcullis.v1 import pdp_pb2
from proxies.postgres.proxy import PostgresProxy
from proxies.runtime.pdp_auth import client_auth
from proxies.runtime.pdp_client import PDPClient

UNAUTH = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED


async def _code(call) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code()


async def _stream_code(stream) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in stream:
            pass
    return err.value.code()


async def _refusals(app) -> list[dict]:  # type: ignore[no-untyped-def]
    return [r.body for r in await app.store.query(kind="proxy.refused")]


def _events(session_id: str, sql: str, key: str = "") -> pdp_pb2.RecordEventsRequest:
    event = {"time": 1.0, "direction": "client", "type": "command", "command": sql}
    return pdp_pb2.RecordEventsRequest(
        session_id=session_id, events_json=json.dumps([event]), session_key=key
    )


def _forged_close(session_id: str, key: str = "") -> pdp_pb2.CloseSessionRequest:
    request = pdp_pb2.CloseSessionRequest(
        session_id=session_id, reason="client_disconnect", session_key=key
    )
    request.summary.update({"credential_exposed": 0, "bytes_to_client": 10})
    return request


@dataclass
class ProxiedDatabase:
    """A running PDP whose first connection is a scratch database (pdp_for_a_database)."""

    app: PDPApp
    config: Config
    database: str

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A real Postgres proxy, authenticated as the configuration says (its credential
        file, or a certificate), and a psycopg reader's connection through it; the proxy
        is stopped (its sessions closed) on the way out."""
        proxy = PostgresProxy(self.config.connections[0], self.config, self.app.address)
        await proxy.start()
        try:
            dsn = (
                f"postgresql://agent:{token(self.config)}@127.0.0.1:{proxy.port}"
                f"/{self.database}?sslmode=disable"
            )
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                yield conn
        finally:
            await proxy.stop()


@contextlib.asynccontextmanager
async def pdp_for_a_database(tmp_path: Path, raw: dict[str, Any]) -> AsyncIterator[ProxiedDatabase]:
    """The PDP of `raw` (pdp_raw's form), its first connection pointed at a scratch
    database with a static credential."""
    with scratch_database() as (name, role, password):
        raw["connections"][0].update(
            database=name,
            credentials={"provider": "static", "username": role, "password": password},
        )
        config = parse_config(raw, base_dir=tmp_path)
        async with running_pdp(config) as app:
            yield ProxiedDatabase(app, config, name)


async def test_a_user_token_calling_the_pdp_directly_is_refused_for_every_session_rpc(
    tmp_path,
):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app:
        async with pdp_stub(app.address) as proxy:
            genuine = await open_session(proxy, token(config))
        sid = genuine.session_id
        async with pdp_stub(app.address, credential="") as user:
            tok = token(config)
            assert await _code(open_session(user, tok)) == UNAUTH
            decide = pdp_pb2.DecideRequest(
                session_id=sid, command=pdp_pb2.Command(kind="postgres.query", raw="select 1")
            )
            assert await _code(user.Decide(decide)) == UNAUTH
            call = pdp_pb2.DecideCall(call_id=1, request=decide)
            assert await _stream_code(user.DecideStream(iter([call]))) == UNAUTH
            assert await _code(user.CloseSession(_forged_close(sid))) == UNAUTH
            assert await _code(user.RecordEvents(_events(sid, "SELECT 1"))) == UNAUTH
            batches = pdp_pb2.RecordBatchesRequest(batches=[_events(sid, "SELECT 1")])
            assert await _code(user.RecordBatches(batches)) == UNAUTH
            wait = pdp_pb2.AwaitApprovalRequest(session_id=sid, approval_id="a-1")
            assert await _stream_code(user.AwaitApproval(wait)) == UNAUTH
        # a forged credential is no credential
        forged = app.issue_proxy_credential("x", ["*"])[:-4] + "0000"
        async with pdp_stub(app.address, credential=forged) as user:
            assert await _code(open_session(user, token(config))) == UNAUTH

        rpcs = [r["rpc"] for r in await _refusals(app)]
        for rpc in (
            "OpenSession",
            "Decide",
            "DecideStream",
            "CloseSession",
            "RecordEvents",
            "RecordBatches",
            "AwaitApproval",
        ):
            assert rpc in rpcs
        assert await app.sessions.find(sid) is not None  # the session is still open
        assert not await app.store.query(kind=EVENTS_KIND, session_id=sid)
        assert not await app.store.query(kind="session.close", session_id=sid)


async def test_a_second_proxy_cannot_touch_the_first_proxys_sessions(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app:
        first = app.issue_proxy_credential("proxy-a", ["orders-db"])
        second = app.issue_proxy_credential("proxy-b", ["orders-db"])
        async with pdp_stub(app.address, first) as a, pdp_stub(app.address, second) as b:
            sid = (await open_session(a, token(config))).session_id
            decide = pdp_pb2.DecideRequest(
                session_id=sid, command=pdp_pb2.Command(kind="postgres.query", raw="select 1")
            )
            assert await _code(b.Decide(decide)) == DENIED
            call = pdp_pb2.DecideCall(call_id=7, request=decide)
            answers = [answer async for answer in b.DecideStream(iter([call]))]
            assert answers[0].code == DENIED.value[0]
            # the forged close claiming "never exposed", and a forged event
            assert await _code(b.CloseSession(_forged_close(sid))) == DENIED
            assert await _code(b.RecordEvents(_events(sid, "SELECT 1 -- forged"))) == DENIED
            batches = pdp_pb2.RecordBatchesRequest(batches=[_events(sid, "SELECT 2 -- forged")])
            result = (await b.RecordBatches(batches)).results[0]
            assert "another proxy" in result.error
            wait = pdp_pb2.AwaitApprovalRequest(session_id=sid, approval_id="a-none")
            assert await _stream_code(b.AwaitApproval(wait)) in (DENIED, grpc.StatusCode.NOT_FOUND)

            refused = await _refusals(app)
            assert {r["rpc"] for r in refused} >= {"Decide", "CloseSession", "RecordEvents"}
            assert all(r["proxy"]["name"] == "proxy-b" for r in refused)
            assert not await app.store.query(kind=EVENTS_KIND, session_id=sid)
            assert not await app.store.query(kind="session.close", session_id=sid)

            # the genuine proxy goes on, and its close is the one that is signed
            assert (await a.Decide(decide)).decision.decision_id
            assert (await a.RecordEvents(_events(sid, "select 1"))).recorded == 1
            close = pdp_pb2.CloseSessionRequest(session_id=sid, reason="client_disconnect")
            close.summary.update({"credential_exposed": 0, "bytes_to_client": 99})
            await a.CloseSession(close)
            (statement,) = await app.store.query(kind="credential.statement", session_id=sid)
            payload = statement.body.get("payload", statement.body)
            assert payload["attested_by"]["name"] == "proxy-a"
            assert payload["checked"].startswith("no byte sequence of the upstream secret")
            # a closed session takes no more events, not even from its own proxy
            assert await _code(a.RecordEvents(_events(sid, "select 2"))) == (
                grpc.StatusCode.FAILED_PRECONDITION
            )


async def test_a_proxy_opens_sessions_only_on_the_connections_it_serves(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app:
        elsewhere = app.issue_proxy_credential("billing-proxy", ["billing-api"])
        async with pdp_stub(app.address, elsewhere) as stub:
            assert await _code(open_session(stub, token(config))) == DENIED
        (refused,) = await _refusals(app)
        assert refused["rpc"] == "OpenSession" and "orders-db" in refused["reason"]


# -- mTLS -----------------------------------------------------------------------------


def _mtls_config(tmp_path, pki, proxy: str = "proxy"):  # type: ignore[no-untyped-def]
    base = pdp_config(tmp_path)
    (cert, key), _ = pki["proxies"][proxy]
    pdp_cert, pdp_key = pki["pdp"]
    raw = {
        "pdp": {
            "listen": base.pdp.listen,
            "engine": {"type": "embedded", "policies": str(base.pdp.engine.policies), "workers": 1},
            "store": {"type": "sqlite", "path": str(tmp_path / "audit.db")},
            "signing_key": str(tmp_path / "signing.key"),
            "tls": {
                "cert_file": str(pdp_cert),
                "key_file": str(pdp_key),
                "client_ca_file": str(pki["ca"]),
            },
        },
        "proxies": {
            "pdp": {"ca_file": str(pki["ca"]), "cert_file": str(cert), "key_file": str(key)}
        },
        "identity": {"dev": True, "dev_key": str(tmp_path / "dev.key")},
        "connections": [
            {
                "name": "orders-db",
                "type": "postgres",
                "listen": f"127.0.0.1:{free_port()}",
                "upstream": "127.0.0.1:5432",
                "credentials": {"provider": "static", "username": "app", "password": "x"},
            }
        ],
    }
    return raw, parse_config(raw, base_dir=tmp_path)


async def _open_with(config, address, **auth):  # type: ignore[no-untyped-def]
    client = PDPClient(address, timeout=3.0, **auth)
    await client.start()
    try:
        return await client.open_session(token(config), connection(), "127.0.0.1:1", "pytest")
    finally:
        await client.close()


async def test_mtls_wrong_expired_and_unknown_certificates_are_refused(tmp_path):
    pki = mint(
        tmp_path / "pki",
        pdp_hosts=["localhost", "127.0.0.1"],
        proxies=[("proxy", ["orders-db"]), ("other", ["orders-db"])],
        days=1,
    )
    _, config = _mtls_config(tmp_path, pki)
    ca_key, ca_cert, _ = load_or_create_ca(tmp_path / "pki", 1)
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    key, cert = issue(
        "proxy",
        ca_key,
        ca_cert,
        alt_names=["urn:portcullis:connection:orders-db"],
        usage=pdp_x509_client(),
        days=1,
        not_before=long_ago,
    )
    expired = write_pair(tmp_path / "pki", "expired", key, cert)
    foreign = mint(
        tmp_path / "foreign", pdp_hosts=["localhost"], proxies=[("proxy", ["*"])], days=1
    )
    async with running_pdp(config) as app:
        grant = await _open_with(config, app.address, **client_auth(config))
        assert grant.session_id
        ca = pki["ca"].read_bytes()

        def creds(pair):  # type: ignore[no-untyped-def]
            cert_path, key_path = pair
            return grpc.ssl_channel_credentials(ca, key_path.read_bytes(), cert_path.read_bytes())

        for bad in (
            creds(expired),  # expired
            creds(foreign["proxies"]["proxy"][0]),  # signed by a CA the PDP does not know
            creds(foreign["pdp"]),  # unknown, and not even a client certificate
            grpc.ssl_channel_credentials(ca),  # no certificate at all
        ):
            with pytest.raises(Exception) as err:
                await _open_with(config, app.address, credentials=bad)
            assert "unreachable" in str(err.value) or "UNAVAILABLE" in str(err.value)
        # a proxy credential on a plain channel does not get past mTLS either
        with pytest.raises(Exception, match=r"unreachable|UNAVAILABLE"):
            await _open_with(
                config,
                app.address,
                metadata=(("portcullis-proxy-credential", app.issue_proxy_credential("p", ["*"])),),
            )
        # another valid certificate is another proxy: it cannot close the first's session
        _, other_config = _mtls_config(tmp_path, pki, proxy="other")
        other = PDPClient(app.address, timeout=3.0, **client_auth(other_config))
        await other.start()
        try:
            assert await other.close_session(grant.session_id, "forged") != "stored"
        finally:
            await other.close()
        assert await app.sessions.find(grant.session_id) is not None
        refused = await _refusals(app)
        assert refused[-1]["proxy"] == {
            "name": "other",
            "method": "mtls",
            "connections": ["orders-db"],
        }


def pdp_x509_client():  # type: ignore[no-untyped-def]
    from cryptography.x509.oid import ExtendedKeyUsageOID

    return ExtendedKeyUsageOID.CLIENT_AUTH


async def test_a_real_proxy_and_client_over_mtls_configured_from_portcullis_yaml(tmp_path):
    # `portcullis certs --proxy pg` where no connection is configured: it serves every one
    spec = parse_proxy("pg", [])
    assert spec == ("pg", ["*"])
    pki = mint(tmp_path / "pki", pdp_hosts=["localhost", "127.0.0.1"], proxies=[spec], days=1)
    raw, _ = _mtls_config(tmp_path, pki, proxy="pg")
    async with pdp_for_a_database(tmp_path, raw) as db:
        async with db.client() as conn:
            row = await (await conn.execute("select count(*) from orders")).fetchone()
            assert row == (2,)
        opened = await db.app.store.query(kind="session.open")
        assert opened[-1].body["session"]["proxy"] == "mtls:pg"


# -- files and the CLI ---------------------------------------------------------------------


async def test_store_wal_and_keys_are_0600_whatever_the_umask(tmp_path):
    folder = tmp_path / "open"
    folder.mkdir(mode=0o777)
    os.chmod(folder, 0o777)
    old = os.umask(0)
    try:
        config = pdp_config(folder, store={"type": "sqlite", "path": str(folder / "audit.db")})
        async with running_pdp(config) as app:
            async with pdp_stub(app.address) as stub:
                await open_session(stub, token(config))
            paths = [
                folder / "audit.db",
                folder / "audit.db-wal",
                folder / "audit.db-shm",
                config.pdp.signing_key,
                config.pdp.proxy_key,
                config.pdp.proxy_credential_file,
            ]
            for path in paths:
                assert path.exists(), path
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        os.umask(old)


def test_portcullis_certs_mints_a_ca_a_pdp_and_proxy_certificates(tmp_path, capsys):
    config = tmp_path / "portcullis.yaml"
    config.write_text(
        "pdp: {listen: 127.0.0.1:7000, engine: {type: remote, url: http://127.0.0.1:1}}\n"
        "identity: {dev: true}\n"
        "connections:\n"
        "  - {name: orders-db, type: postgres, listen: 127.0.0.1:15432, upstream: 127.0.0.1:5432,\n"
        "     credentials: {provider: static, username: a, password: b}}\n"
    )
    out = tmp_path / "certs"
    assert main(["certs", "-c", str(config), "--out", str(out), "--proxy", "eu-prod"]) == 0
    printed = capsys.readouterr().out
    assert "client_ca_file" in printed and "proxies:" in printed
    for name in ("ca.key", "pdp.key", "proxy-eu-prod.key"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600
    from pdp.api.proxy_auth import identity_from_certificate

    ident = identity_from_certificate((out / "proxy-eu-prod.pem").read_bytes())
    assert ident is not None and ident.name == "eu-prod"
    assert ident.connections == frozenset({"orders-db"})
    ca_before = (out / "ca.pem").read_bytes()
    assert main(["certs", "-c", str(config), "--out", str(out), "--proxy", "x=a,b"]) == 0
    assert (out / "ca.pem").read_bytes() == ca_before  # the CA is reused
