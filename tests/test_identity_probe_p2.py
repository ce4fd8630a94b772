"""Probes of how a token reaches a proxy, second round (helper identity): the Postgres
proxy's password over plaintext, and a password frame of 64 MiB.

Attack: the Postgres proxy takes the client's JWT as a cleartext password. With a
certificate configured (`tls_cert_file`), it still answered a start-up without
SSLRequest (sslmode=disable, or a libpq 'prefer' client whose SSLRequest a man in the
middle answered 'N') with AuthenticationCleartextPassword, so the token crossed the
network in clear and was taken: anyone on the path replayed it for its lifetime. A proxy
with a certificate now ends such a start-up before asking for the password.

Attack: before any authentication, the proxy read a PasswordMessage of up to 64 MiB (its
limit for a session's frames) into memory, then handed it to the PDP, which refuses a
token over 16 KiB anyway: a hundred unauthenticated connections held gigabytes. The
password frame is now refused from its header past what a token can be.
"""

from __future__ import annotations

import asyncio
import ssl
import struct

import asyncpg
import pytest
from certs import make_pki
from pg_harness import running_gateway

from proxies.postgres import codec


async def test_a_proxy_with_a_certificate_never_asks_for_the_token_in_clear(tmp_path):
    pki = make_pki(tmp_path)
    options = {"tls_cert_file": str(pki["server.pem"]), "tls_key_file": str(pki["server.key"])}
    async with running_gateway(tmp_path, options=options) as gw:
        dsn = gw.dsn(gw.token()).replace("?sslmode=disable", "")
        with pytest.raises(asyncpg.PostgresError) as refused:
            await asyncpg.connect(dsn, ssl=False)
        assert "requires TLS" in str(refused.value)
        # on the wire: the start-up in clear gets an ErrorResponse, never 'R' (auth request)
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy.port)
        writer.write(codec.StartupMessage(196608, {"user": "agent", "database": "x"}).encode())
        await writer.drain()
        first = await reader.read(1)
        writer.close()
        assert first == b"E", first
        context = ssl.create_default_context(cafile=str(pki["ca.pem"]))
        conn = await asyncpg.connect(dsn, ssl=context)
        assert await conn.fetchval("SELECT count(*) FROM orders") == 2
        await conn.close()


async def test_without_a_certificate_plaintext_still_works(tmp_path):
    async with running_gateway(tmp_path) as gw:
        conn = await asyncpg.connect(gw.dsn(gw.token()), ssl=False)
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()


async def test_a_password_longer_than_any_token_is_refused_from_its_header(tmp_path):
    async with running_gateway(tmp_path) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy.port)
        params = {"user": "agent", "database": gw.database}
        writer.write(codec.StartupMessage(196608, params).encode())
        await writer.drain()
        assert (await reader.readexactly(9))[:1] == b"R"  # AuthenticationCleartextPassword
        # the header of a 1 MiB password and its first bytes: the answer comes now (before
        # the fix: once the start-up timed out, after waiting for the rest)
        writer.write(b"p" + struct.pack("!I", 1 << 20) + b"a" * 100)
        await writer.drain()
        answer = await reader.read()
        writer.close()
        assert answer[:1] == b"E", answer[:200]
        assert b"exceeds the limit of 16389 bytes" in answer, answer[:300]
