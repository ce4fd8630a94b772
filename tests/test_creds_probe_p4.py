"""Attacks on the upstream credential (probe p4): an impostor upstream that skips the
SCRAM server proof.

The Postgres proxy checked a SCRAM server signature only when one came: an upstream that
took the proof (AuthenticationSASLContinue, the client's proof back) and then said
AuthenticationOk without AuthenticationSASLFinal, or said it right after the client's
first message, was taken for the server, and so was one that asked for MD5 once SCRAM was
chosen (a downgrade: it gets an answer it can crack offline). Whoever held the upstream's
address (a local user while PostgreSQL restarts, anyone on the path) had the session: the
client's commands and what the proxy asks the catalog. Now the login
(proxies.postgres.scram.UpstreamLogin) counts AuthenticationOk only after a verified
signature, refuses a second method, anything out of order, and over TLS binds SCRAM to the
server's certificate (SCRAM-SHA-256-PLUS; "y,," when not offered).

Real components: a PDP and the Postgres proxy in process (pg_harness); the upstream is
the impostor itself (a few lines of the wire protocol below; serving from probe p2), the
client raw bytes; a throwaway PostgreSQL with TLS and scram-sha-256 for the real logins.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import ssl
import struct
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from certs import make_pki
from pg_cluster import throwaway_cluster
from pg_harness import gateway_on, scratch_database
from test_creds_probe_p2 import _everything_sent, serving

from proxies.postgres import codec
from proxies.postgres.scram import (
    GS2_HEADER_PLUS,
    GS2_HEADER_UNOFFERED,
    LoginRefused,
    ScramClient,
    UpstreamLogin,
    tls_server_end_point,
)

pytestmark = pytest.mark.integration

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _auth(code: int, data: bytes = b"") -> bytes:
    return b"R" + struct.pack("!ii", 8 + len(data), code) + data


def _ready() -> bytes:
    setting = b"server_version\x0015.4\x00"
    status = b"S" + struct.pack("!i", 4 + len(setting)) + setting
    key = b"K" + struct.pack("!iii", 12, 4242, 4343)
    return status + key + b"Z" + struct.pack("!i", 5) + b"I"


async def _frame(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    tag = await reader.readexactly(1)
    (length,) = struct.unpack("!i", await reader.readexactly(4))
    return tag, await reader.readexactly(length - 4)


def _impostor(step: str, after: list[bytes]) -> Serve:
    """An upstream that offers SCRAM and then `step`s instead of proving the password; it
    keeps in `after` the tag of every message the proxy sends once it said ready."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(_auth(10, b"SCRAM-SHA-256\x00\x00"))
        await writer.drain()
        _, initial = await _frame(reader)  # SASLInitialResponse
        client_first = initial.split(b"\x00", 1)[1][4:]
        nonce = client_first.split(b",r=", 1)[1]
        if step == "ok after the first message":
            writer.write(_auth(0) + _ready())
        elif step == "md5 after scram was chosen":
            writer.write(_auth(5, b"salt"))
        else:
            salt = base64.b64encode(b"0123456789abcdef")
            writer.write(_auth(11, b"r=" + nonce + b"impostor,s=" + salt + b",i=4096"))
            await writer.drain()
            await _frame(reader)  # the client's proof
            final = {
                "ok without the server final": b"",
                "a forged server signature": _auth(12, b"v=" + base64.b64encode(b"\0" * 32)),
                "a server final without signature": _auth(12, b"x=1"),
            }[step]
            writer.write(final + _auth(0) + _ready())
        await writer.drain()
        while True:
            tag, _ = await _frame(reader)
            after.append(tag)
            if tag == b"p" and step == "md5 after scram was chosen":
                writer.write(_auth(0) + _ready())
            elif tag == b"Q":
                writer.write(b"Z" + struct.pack("!i", 5) + b"I")
            await writer.drain()

    return serve


STEPS = (
    "ok without the server final",
    "a forged server signature",
    "a server final without signature",
    "ok after the first message",
    "md5 after scram was chosen",
)


@pytest.mark.parametrize("step", STEPS)
async def test_an_impostor_upstream_that_skips_the_scram_proof_gets_no_session(
    tmp_path: Path, step: str
) -> None:
    after: list[bytes] = []
    with scratch_database() as (name, role, password):
        async with (
            serving(_impostor(step, after)) as port,
            gateway_on(tmp_path, name, role, password, f"127.0.0.1:{port}") as gw,
        ):
            sent = await asyncio.to_thread(_everything_sent, gw.proxy.port, name, gw.token())
    # the impostor was given nothing more (no answer to MD5, no query), the client no session
    assert after == []
    assert b"Z\x00\x00\x00\x05" not in sent
    assert b"upstream" in sent and b"broke the protocol" not in sent
    assert password.encode() not in sent


# ---------------------------------------------------------------- the login, sans IO


def _login_to_scram(login: UpstreamLogin, mechanisms: list[str]) -> ScramClient:
    initial = login.answer(codec.AuthenticationSASL(mechanisms))
    assert isinstance(initial, codec.SASLInitialResponse)
    assert login._scram is not None
    return login._scram


def test_the_login_refuses_what_is_out_of_order_or_a_second_method() -> None:
    def fresh() -> UpstreamLogin:
        login = UpstreamLogin("u", "pw")
        _login_to_scram(login, ["SCRAM-SHA-256"])
        return login

    for late in (
        codec.AuthenticationMD5Password(b"salt"),
        codec.AuthenticationCleartextPassword(),
        codec.AuthenticationSASL(["SCRAM-SHA-256"]),
        codec.AuthenticationOk(),
        codec.AuthenticationSASLFinal(b"v=AAAA"),
        codec.AuthenticationGSS(),
    ):
        with pytest.raises(LoginRefused):
            fresh().answer(late)
    # SASLContinue twice, or with nothing chosen
    login = fresh()
    nonce = login._scram.first_message().split(b",r=")[1]  # type: ignore[union-attr]
    login.answer(codec.AuthenticationSASLContinue(b"r=" + nonce + b"x,s=AAAA,i=1"))
    with pytest.raises(LoginRefused):
        login.answer(codec.AuthenticationSASLContinue(b"r=" + nonce + b"x,s=AAAA,i=1"))
    with pytest.raises(LoginRefused):
        UpstreamLogin("u", "pw").answer(codec.AuthenticationSASLContinue(b"r=x"))
    # MD5 first, then SCRAM: a second method too (md5 listed: the default refuses it, p10)
    login = UpstreamLogin("u", "pw", allowed=frozenset({"md5", "scram-sha-256"}))
    login.answer(codec.AuthenticationMD5Password(b"salt"))
    with pytest.raises(LoginRefused):
        login.answer(codec.AuthenticationSASL(["SCRAM-SHA-256"]))
    login.answer(codec.AuthenticationOk())
    assert login.authenticated
    with pytest.raises(LoginRefused):  # nothing after it is accepted
        login.answer(codec.AuthenticationOk())
    # a trust server (no request but AuthenticationOk) is as libpq takes it
    trust = UpstreamLogin("u", "pw")
    assert trust.answer(codec.AuthenticationOk()) is None and trust.authenticated


def test_over_tls_scram_is_bound_to_the_certificate_or_says_it_could_be(tmp_path: Path) -> None:
    certificate = ssl.PEM_cert_to_DER_cert(make_pki(tmp_path)["server.pem"].read_text())
    bound = _login_to_scram(
        UpstreamLogin("u", "pw", tls_certificate=certificate),
        ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"],
    )
    assert bound.mechanism == "SCRAM-SHA-256-PLUS"
    assert bound.first_message().startswith(GS2_HEADER_PLUS)
    offered_none = _login_to_scram(
        UpstreamLogin("u", "pw", tls_certificate=certificate), ["SCRAM-SHA-256"]
    )
    assert offered_none.mechanism == "SCRAM-SHA-256"
    assert offered_none.first_message().startswith(GS2_HEADER_UNOFFERED)
    # without TLS, PLUS alone cannot be spoken
    with pytest.raises(LoginRefused):
        UpstreamLogin("u", "pw").answer(codec.AuthenticationSASL(["SCRAM-SHA-256-PLUS"]))
    assert tls_server_end_point(b"not a certificate") is None


# ----------------------------------------------------- real PostgreSQL over verified TLS

ROLE, PASSWORD = "runtimesec2_tls", "tls-scram-pw-runtimesec2"


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[tuple[int, Path]]:
    """A throwaway PostgreSQL with TLS on and scram-sha-256 over hostssl only; yields its
    port and the CA's file."""
    # the server reads its key as postgres (pytest's own directories are root's alone)
    pki = Path(tempfile.mkdtemp(prefix="runtimesec2-pki-"))
    os.chmod(pki, 0o755)
    files = make_pki(pki)
    for name in ("server.pem", "server.key"):
        shutil.chown(files[name], "postgres")
        os.chmod(files[name], 0o600)
    settings = {
        "ssl": "on",
        "ssl_cert_file": str(files["server.pem"]),
        "ssl_key_file": str(files["server.key"]),
    }
    setup = [
        "SET password_encryption = 'scram-sha-256'",
        f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'",
    ]
    hba = "hostssl all all 127.0.0.1/32 scram-sha-256\n"
    try:
        with throwaway_cluster(hba, settings, setup) as (port, _):
            yield port, files["ca.pem"]
    finally:
        shutil.rmtree(pki, ignore_errors=True)


def _tls_login(port: int, ca: Path, certificate: bytes | None = None) -> codec.Message:
    """Log in as ROLE over verified TLS with UpstreamLogin; the first message after the
    exchange (ReadyForQuery, or the server's error). `certificate`: bind to this one
    instead of the one the server showed (a relay's)."""
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(codec.SSLRequest().encode())
        assert raw.recv(1) == b"S"
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            shown = sock.getpeercert(binary_form=True)
            login = UpstreamLogin(
                ROLE, PASSWORD, tls_certificate=certificate or shown, tls_verified=True
            )
            params = {"user": ROLE, "database": "postgres"}
            sock.sendall(codec.StartupMessage(codec.PROTOCOL_VERSION, params).encode())
            parser = codec.BackendParser()
            while True:
                data = sock.recv(65536)
                assert data
                for message in parser.feed(data):
                    if isinstance(message, codec.Authentication):
                        answer = login.answer(message)
                        if answer is not None:
                            sock.sendall(answer.encode())
                    elif isinstance(message, codec.ReadyForQuery | codec.ErrorResponse):
                        return message


def test_a_real_server_over_verified_tls_takes_the_bound_login(
    tls_cluster: tuple[int, Path],
) -> None:
    port, ca = tls_cluster
    assert isinstance(_tls_login(port, ca), codec.ReadyForQuery)


def test_a_login_bound_to_another_certificate_is_refused_by_the_real_server(
    tls_cluster: tuple[int, Path], tmp_path: Path
) -> None:
    """What a relay terminating TLS with a certificate of its own achieves: the server
    sees the binding to the relay's certificate, not its own."""
    port, ca = tls_cluster
    relays = ssl.PEM_cert_to_DER_cert(make_pki(tmp_path)["server.pem"].read_text())
    refused = _tls_login(port, ca, relays)
    assert isinstance(refused, codec.ErrorResponse)
    assert "channel binding" in refused.fields.get("M", "")


async def test_the_proxy_logs_in_over_verified_tls_to_a_scram_server(
    tmp_path: Path, tls_cluster: tuple[int, Path]
) -> None:
    port, ca = tls_cluster
    options = {"upstream_tls": "verify-full", "upstream_ca_file": str(ca)}
    async with gateway_on(
        tmp_path, "postgres", ROLE, PASSWORD, f"localhost:{port}", options=options
    ) as gw:
        conn = await asyncpg.connect(
            host="127.0.0.1", port=gw.proxy.port, user="agent", password=gw.token(),
            database="postgres", ssl=False,
        )  # fmt: skip
        try:
            assert await conn.fetchval("select 41 + 1") == 42
        finally:
            await conn.close()
