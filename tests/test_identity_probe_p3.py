"""Probes of token verification, third round (helper identity3): one token, one text.

Attack: the first round (test_identity_probe_p1) refused '=' padding, but PyJWT decodes
every segment with Python's lenient base64 (`urlsafe_b64decode`, no validation), which
skips any character outside the alphabet and ignores the unused low bits of a segment's
last character. So one signed token still had many texts: the signature segment with a
'!', '*', '~', '+', '/' or a blank put anywhere in it, or its last character swapped
for one differing only in those unused bits (an RS256 signature's 342nd character has 4
such bits: 16 spellings). The signature does not cover its own segment, so anyone
holding a token (every proxy sees it) can make spellings at will. The HTTP proxy files
its sessions under the token's SHA-256: each spelling opened a session of its own, with
its own limits and its own approvals, and anything that remembers a token by its text
(a deny list, a 'this token was seen' cache) missed the others. Every segment must now
be the one base64url text of its bytes (RFC 7515 §2 / RFC 4648 §5 canonical).

Likewise a header with `crit` (extensions the reader must understand, RFC 7515 §4.1.11)
verified under PyJWT 2.10.1, which ignored it; this PDP understands none: refused.
Both held on HEAD with the PyJWT installed here (2.15.1 checks them itself) and failed
with 2.10.1, the oldest this module imports with (pyproject allows >=2.8).
"""

from __future__ import annotations

import asyncpg
import grpc
import pytest
from pdp_harness import open_session, pdp_config, pdp_stub, running_pdp, token
from pg_harness import running_gateway

from pdp.domain.identity import TokenRejected

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def same_bits_last_char(segment: str) -> str:
    """The segment with its last character swapped for another that differs only in the
    bits base64 ignores there (the segment's length leaves some unused)."""
    unused = {2: 4, 3: 2}[len(segment) % 4]  # 2 chars -> 1 byte (4 spare), 3 -> 2 (2)
    last = _ALPHABET.index(segment[-1])
    other = last ^ ((1 << unused) - 1)
    return segment[:-1] + _ALPHABET[other]


def spellings(tok: str) -> list[str]:
    head, body, signature = tok.split(".")
    middle = len(signature) // 2
    variants = [
        f"{head}.{body}.{same_bits_last_char(signature)}",
        f"{head}.{body}.{signature[:middle]}!{signature[middle:]}",
        f"{head}.{body}.{signature}~",
        f"{head}.{body}.{signature[:middle]} {signature[middle:]}",
        f"{head}.{body}.{signature[:middle]}+/{signature[middle:]}",
        f"{head}.{body}.{signature}\t",
    ]
    assert all(v != tok for v in variants)
    return variants


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_a_signed_token_has_one_text(idp, verifier, alg):
    good = idp.token(alg=alg)
    assert (await verifier.verify(good)).subject == "alice@example.com"
    for variant in spellings(good):
        with pytest.raises(TokenRejected) as info:
            await verifier.verify(variant)
        assert info.value.reason == "malformed token", variant


async def test_the_pdp_opens_no_session_for_another_spelling(tmp_path):
    config = pdp_config(tmp_path)
    good = token(config)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        assert (await open_session(stub, good)).session_id
        for variant in spellings(good):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await open_session(stub, variant)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, variant


async def test_the_postgres_proxy_takes_only_the_tokens_own_text(tmp_path):
    async with running_gateway(tmp_path) as gw:
        good = gw.token()
        conn = await asyncpg.connect(gw.dsn(good))
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
        # the spelling that survives a URL and libpq unchanged: a swapped last character
        head, body, signature = good.split(".")
        variant = f"{head}.{body}.{same_bits_last_char(signature)}"
        with pytest.raises(asyncpg.PostgresError) as refused:
            await asyncpg.connect(gw.dsn(variant))
        assert "malformed token" in str(refused.value), refused.value


@pytest.mark.parametrize(
    "headers",
    [
        {"crit": ["x-never"], "x-never": 1},
        {"crit": ["exp"], "exp": 1},
        {"crit": ["b64"], "b64": True},
        {"crit": []},
    ],
    ids=["unknown", "exp", "b64-true", "empty"],
)
async def test_a_critical_extension_is_refused(idp, verifier, headers):
    with pytest.raises(TokenRejected) as info:
        await verifier.verify(idp.token(headers=headers))
    # the PDP's own refusal, not the library's (PyJWT 2.10.1 accepted all four)
    assert info.value.reason == "token header names a critical extension"
