"""Attacks on the upstream credential (probe p10): the upstream chooses how it is proven.

The Postgres proxy logged in to its upstream with whatever method the server asked for:
an impostor at the upstream's address (a local user holding the port while the server
restarts, anyone on the path) that asked for AuthenticationMD5Password got
md5(md5(password || user) || salt), which it cracks offline for any password a person
chose, and a server that asked for nothing (trust) was taken as the upstream whatever the
connection meant to prove. Like libpq's require_auth, the connection now says which
methods it accepts (`credentials.upstream_auth`; default scram-sha-256 and none); any
other request is refused before a byte of the secret is sent, and the password in clear
still goes only over TLS to a verified server, whatever the list says.

Real components: a throwaway PostgreSQL 15 cluster with its own pg_hba.conf (scram-sha-256,
md5, password, trust per role), a PDP and the Postgres proxy in process, asyncpg as the
client; an impostor upstream written in a few lines of the wire protocol.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pdp_harness import free_port
from pg_cluster import throwaway_cluster
from pg_harness import gateway_on, scratch_database
from test_creds_probe_p2 import _error, _everything_sent, serving
from test_creds_probe_p4 import _frame, _ready
from upstream_logins import check_logins

from portcullis.config import ConfigError, ConnectionSettings
from proxies.postgres import codec
from proxies.postgres.scram import LoginRefused, UpstreamLogin
from proxies.runtime.credentials import StaticProvider

DBA = ("dba", "pii-readers")
PASSWORDS = {
    "scramuser": "p10-scram-pw",
    "md5user": "p10-md5-pw",
    "clearuser": "p10-clear-pw",
    "trustuser": "p10-trust-pw",
}
HBA = (
    "host all md5user 127.0.0.1/32 md5\n"
    "host all clearuser 127.0.0.1/32 password\n"
    "host all trustuser 127.0.0.1/32 trust\n"
    "host all all 127.0.0.1/32 scram-sha-256\n"
)
SETUP = [
    "SET password_encryption = 'scram-sha-256'",
    f"CREATE ROLE scramuser LOGIN PASSWORD '{PASSWORDS['scramuser']}'",
    f"CREATE ROLE clearuser LOGIN PASSWORD '{PASSWORDS['clearuser']}'",
    f"CREATE ROLE trustuser LOGIN PASSWORD '{PASSWORDS['trustuser']}'",
    "SET password_encryption = 'md5'",
    f"CREATE ROLE md5user LOGIN PASSWORD '{PASSWORDS['md5user']}'",
]
# (role, credentials.upstream_auth or None for the default, the refusal or "" for a session)
CASES: list[tuple[str, list[str] | None, str]] = [
    ("scramuser", None, ""),
    ("trustuser", None, ""),
    ("md5user", None, "upstream_auth does not allow"),
    ("clearuser", None, "upstream_auth does not allow"),
    ("md5user", ["scram-sha-256", "md5"], ""),
    # listed, and still not over plain TCP
    ("clearuser", ["scram-sha-256", "password"], "not TLS to a verified server"),
    ("trustuser", ["scram-sha-256"], "without asking for the password"),
    ("scramuser", ["md5"], "asks for SCRAM"),
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[int]:
    with throwaway_cluster(HBA, setup=SETUP) as (port, _):
        yield port


def _connection(i: int, port: int, role: str, methods: list[str] | None) -> dict[str, Any]:
    credentials: dict[str, Any] = {
        "provider": "static",
        "username": role,
        "password": PASSWORDS[role],
    }
    if methods is not None:
        credentials["upstream_auth"] = methods
    return {
        "name": f"db{i}",
        "type": "postgres",
        "listen": f"127.0.0.1:{free_port()}",
        "upstream": f"127.0.0.1:{port}",
        "database": "postgres",
        "credentials": credentials,
    }


@pytest.mark.integration
async def test_the_upstream_login_takes_only_the_methods_the_connection_allows(
    tmp_path: Path, cluster: int
) -> None:
    connections = [_connection(i, cluster, r, m) for i, (r, m, _) in enumerate(CASES)]
    await check_logins(
        tmp_path, connections, [(role, PASSWORDS[role], refusal) for role, _, refusal in CASES]
    )


def _asking_md5(given: list[bytes]) -> Any:
    """An impostor that asks for an MD5 hash of the password and keeps what it is sent."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"R" + struct.pack("!ii", 12, 5) + b"salt")
        await writer.drain()
        tag, body = await _frame(reader)
        given.append(tag + body)
        writer.write(_error("thanks"))
        await writer.drain()

    return serve


def _trusting(after: list[bytes]) -> Any:
    """An impostor that asks for nothing: AuthenticationOk, then serves queries."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"R" + struct.pack("!ii", 8, 0) + _ready())
        await writer.drain()
        while True:
            tag, _ = await _frame(reader)
            after.append(tag)

    return serve


@pytest.mark.integration
async def test_an_impostor_asking_for_an_md5_hash_is_sent_nothing(tmp_path: Path) -> None:
    given: list[bytes] = []
    with scratch_database() as (name, role, password):
        async with (
            serving(_asking_md5(given)) as port,
            gateway_on(tmp_path, name, role, password, f"127.0.0.1:{port}") as gw,
        ):
            sent = await asyncio.to_thread(_everything_sent, gw.proxy.port, name, gw.token())
    assert given == []
    assert b"upstream_auth does not allow" in sent
    assert password.encode() not in sent and b"Z\x00\x00\x00\x05" not in sent


@pytest.mark.integration
async def test_a_trusting_impostor_is_no_upstream_where_scram_is_required(
    tmp_path: Path,
) -> None:
    after: list[bytes] = []
    with scratch_database() as (name, role, password):
        credentials = {
            "provider": "static",
            "username": role,
            "password": password,
            "upstream_auth": ["scram-sha-256"],
        }
        async with (
            serving(_trusting(after)) as port,
            gateway_on(
                tmp_path, name, role, password, f"127.0.0.1:{port}",
                options={"credentials": credentials},
            ) as gw,
        ):  # fmt: skip
            sent = await asyncio.to_thread(_everything_sent, gw.proxy.port, name, gw.token())
    assert after == []  # not a query, not a Terminate's worth of session
    assert b"without asking for the password" in sent
    assert b"Z\x00\x00\x00\x05" not in sent


def test_the_login_refuses_an_unlisted_method_before_answering() -> None:
    only_scram = frozenset({"scram-sha-256"})
    for request in (
        codec.AuthenticationMD5Password(b"salt"),
        codec.AuthenticationCleartextPassword(),
        codec.AuthenticationOk(),
    ):
        with pytest.raises(LoginRefused, match="upstream_auth"):
            UpstreamLogin("u", "pw", tls_verified=True, allowed=only_scram).answer(request)
    # md5 listed: answered; the password listed and verified TLS: answered
    md5 = UpstreamLogin("u", "pw", allowed=frozenset({"md5"}))
    assert md5.answer(codec.AuthenticationMD5Password(b"salt")) is not None
    clear = UpstreamLogin("u", "pw", tls_verified=True, allowed=frozenset({"password"}))
    assert clear.answer(codec.AuthenticationCleartextPassword()) is not None
    with pytest.raises(LoginRefused, match="not TLS"):
        UpstreamLogin("u", "pw", allowed=frozenset({"password"})).answer(
            codec.AuthenticationCleartextPassword()
        )
    # the default: SCRAM, or nothing asked
    assert UpstreamLogin("u", "pw").answer(codec.AuthenticationSASL(["SCRAM-SHA-256"]))
    assert UpstreamLogin("u", "pw").answer(codec.AuthenticationOk()) is None
    with pytest.raises(LoginRefused, match="upstream_auth"):
        UpstreamLogin("u", "pw").answer(codec.AuthenticationMD5Password(b"salt"))


@pytest.mark.parametrize("given", [[], "md5", ["md4"], ["SCRAM-SHA-256"], ["none", 5]])
def test_an_unknown_upstream_auth_stops_the_start(given: object) -> None:
    connection = ConnectionSettings(
        name="t", type="postgres", listen="127.0.0.1:1", upstream="127.0.0.1:2",
        credentials={"provider": "static", "username": "u", "password": "pw",
                     "upstream_auth": given},
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"credentials\.upstream_auth"):
        StaticProvider(connection)
