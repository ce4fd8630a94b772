"""The HTTP proxy's upstream credential from a real OpenBao (the open-source Vault): a KV v2
secret injected as a header, and a Vault token issued per session (from a token role),
checked by the upstream against Vault itself and revoked when the session ends. The
client never sees either."""

from __future__ import annotations

from typing import Any

import aiohttp
import hvac
import pytest
from http_upstream import http_stack
from openbao import running_openbao
from pdp_harness import token

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=60)


@pytest.fixture(scope="module")
def bao():
    with running_openbao() as server:
        yield server


async def _get(stack: Any, path: str) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token(stack.config)}"}
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
        client.get(stack.url + path, headers=headers) as r,
    ):
        return r.status, await r.read()


async def test_a_kv_v2_secret_as_the_upstream_credential(tmp_path, bao):
    api_key = "kv-held-api-key-" + "9" * 12
    bao.client().secrets.kv.v2.create_or_update_secret(path="billing", secret={"key": api_key})
    credentials = {"provider": "vault", "ref": "secret/data/billing#key", "header": "X-Api-Key"}
    async with http_stack(
        tmp_path,
        {"accept": lambda given: given == api_key},
        pdp_extra={"vault": bao.vault_config()},
        credentials=credentials,
    ) as s:
        status, body = await _get(s, "/echo/kv")
    assert status == 200 and api_key.encode() not in body


async def test_a_vault_token_per_session_revoked_at_its_end(tmp_path, bao):
    admin = bao.client()
    admin.auth.token.create_or_update_role("billing-agent", allowed_policies=["default"])
    seen: list[str] = []

    def valid(given: str) -> bool:
        if not given.startswith("Bearer "):
            return False
        seen.append(given.removeprefix("Bearer "))
        try:
            hvac.Client(url=bao.addr, token=seen[-1], timeout=5).auth.token.lookup_self()
        except hvac.exceptions.VaultError:
            return False
        return True

    credentials = {
        "provider": "vault",
        "ref": "auth/token/create/billing-agent",
        "header": "Authorization",
        "prefix": "Bearer ",
    }
    async with http_stack(
        tmp_path,
        {"key_header": "Authorization", "accept": valid},
        pdp_extra={"vault": bao.vault_config()},
        credentials=credentials,
    ) as s:
        status, body = await _get(s, "/echo/token")
        await s.proxy.stop()  # the session ends: its token is revoked
    assert status == 200 and seen and seen[0].encode() not in body
    with pytest.raises(hvac.exceptions.VaultError):
        hvac.Client(url=bao.addr, token=seen[0], timeout=5).auth.token.lookup_self()
