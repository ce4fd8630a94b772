"""Console probe 12 (helper auditsec9): sign-in while the identity provider is down fails fast.

The console's OIDC provider kept a discovery document it fetched for ever (an issuer that
moved its endpoints was never followed until a restart) and kept nothing of a fetch that
failed: while the issuer was down or hanging, every sign-in fetched discovery again and
waited out the whole fetch timeout (5 s each, one connection each: a queue of browsers
became a queue of stuck requests at the issuer). The document is now kept for a bounded
time (DISCOVERY_SECONDS) and a failure for DISCOVERY_RETRY_SECONDS, in which every
sign-in is answered at once with the reason (502); sign-ins arriving together share one
fetch.

Real components: a running PDP with its console, an aiohttp issuer on loopback that hangs
while "down", and an HTTP client following the console's /console/login.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import aiohttp
from aiohttp import web
from pdp_harness import free_port, pdp_config, running_pdp

from pdp.console import signin


async def _issuer(state: dict[str, Any]) -> tuple[web.AppRunner, str]:
    app = web.Application()

    async def discovery(request: web.Request) -> web.Response:
        state["hits"] += 1
        if state["down"]:
            await asyncio.sleep(60)  # a hanging issuer: accepts, never answers
        base = state["base"]
        return web.json_response(
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/authorize",
                "token_endpoint": f"{base}/token",
                "jwks_uri": f"{base}/jwks",
            }
        )

    app.router.add_get("/.well-known/openid-configuration", discovery)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def _login(http: aiohttp.ClientSession, console: str) -> aiohttp.ClientResponse:
    async with http.get(f"{console}/console/login", allow_redirects=False) as response:
        await response.read()
        return response


async def test_sign_in_fails_fast_while_the_issuer_is_down(tmp_path, monkeypatch):
    monkeypatch.setattr(signin, "FETCH_TIMEOUT", 0.5)  # (the test's wait, not a timing)
    state: dict[str, Any] = {"hits": 0, "down": True}
    runner, base = await _issuer(state)
    state["base"] = base
    http_listen = f"127.0.0.1:{free_port()}"
    config = pdp_config(tmp_path, identity={"issuer": base, "audience": "portcullis"})
    config = replace(config, pdp=replace(config.pdp, http_listen=http_listen))
    try:
        async with running_pdp(config), aiohttp.ClientSession() as http:
            console = f"http://{http_listen}"
            first, second = await asyncio.gather(_login(http, console), _login(http, console))
            third = await _login(http, console)
            assert [first.status, second.status, third.status] == [502, 502, 502]
            assert state["hits"] == 1  # (before: one fetch, and one whole wait, per sign-in)
            state["down"] = False
            monkeypatch.setattr(signin, "DISCOVERY_RETRY_SECONDS", 0.0)
            up = await _login(http, console)
            assert up.status == 302 and up.headers["Location"].startswith(f"{base}/authorize?")
            assert state["hits"] == 2
            await _login(http, console)
            assert state["hits"] == 2  # the document is kept
            monkeypatch.setattr(signin, "DISCOVERY_SECONDS", 0.0)
            await _login(http, console)
            assert state["hits"] == 3  # for a bounded time (before: for ever)
    finally:
        await runner.cleanup()
