"""Attacks on the upstream credential (probe p5): a Vault address that answers with a
redirect.

hvac follows redirects (requests' default), and requests drops only `Authorization` on
the way to another host: the proxy's own Vault token, sent as `X-Vault-Token`, went to
wherever a 307 pointed — whoever answers at `vault.addr` (a hostile load balancer, a
squatter on the port while Vault restarts, a path rewritten on the way) had the token
that issues every session's credential. The provider now follows no redirect: a 3xx is
refused as Vault not serving, naming neither the token nor where it pointed.

Real components: the Vault provider and hvac as the proxy runs them; the redirecting
address and the host it points to are small aiohttp servers of the test's own.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from test_vault import vault_connection

from portcullis.config import VaultSettings
from proxies.runtime.credentials import CredentialUnavailable
from proxies.runtime.vault import VaultProvider

pytestmark = pytest.mark.integration

TOKEN = "hvs.runtimesec2-never-elsewhere"


@contextlib.asynccontextmanager
async def serving(handle: object) -> AsyncIterator[str]:
    """An HTTP server on a free 127.0.0.1 port answering every request with handle(request);
    yields its base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)  # type: ignore[arg-type]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_vault_redirect_does_not_take_the_proxys_token_elsewhere(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    taken: list[str] = []

    async def elsewhere(request: web.Request) -> web.Response:
        taken.append(request.headers.get("X-Vault-Token", ""))
        return web.json_response({"data": {"ttl": 0, "renewable": False}})

    caplog.set_level(logging.DEBUG)
    async with serving(elsewhere) as other:

        async def redirecting(request: web.Request) -> web.Response:
            return web.Response(status=status, headers={"Location": other + request.path_qs})

        async with serving(redirecting) as vault:
            settings = VaultSettings(vault, {"method": "token", "token": TOKEN})
            provider = VaultProvider(vault_connection(ref="database/creds/ro"), settings)
            try:
                with pytest.raises(CredentialUnavailable) as refused:
                    await provider.acquire("database/creds/ro", "s1")
            finally:
                await provider.close()
    assert taken == []
    assert "redirect" in str(refused.value)
    assert TOKEN not in str(refused.value) and other not in str(refused.value)
    assert TOKEN not in caplog.text
