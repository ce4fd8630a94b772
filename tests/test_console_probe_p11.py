"""Console probe 11 (helper auditsec8): the dev issuer's sign-in behind a proxy in front.

Attack (anyone who reaches the console's public URL): with the dev issuer (identity.dev,
the shipped portcullis.yaml) the console signs people in at a form of its own that asks
who you are and which groups you are in; it is served to loopback clients only, since
only someone at this machine's keyboard may say who they are. The console's public URL
may be another (PORTCULLIS_CONSOLE_URL: "a TLS proxy in front"), and such a proxy on this
host connects from loopback: every person reaching https://console.example.com was a
loopback client, signed in as anyone in any group (security: approve every waiting
request; auditor: every session, statement and recording). The dev issuer now signs in
only a console whose public URL is this host's (loopback or localhost) and only a request
no proxy relayed (no Forwarded, X-Forwarded-For or X-Real-IP); a local browser at the
console's own address signs in as before.

Real PDP (tests/pdp_harness.py) with its console on the HTTP listener.
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest
from pdp_harness import free_port, pdp_config, running_pdp
from test_console_probe_p1 import _http, sign_in

from pdp.app import Parts
from pdp.console.settings import ConsoleSettings

PUBLIC = "https://console.example.com"


def _authorize_params() -> dict[str, str]:
    return {
        "client_id": "portcullis",
        "redirect_uri": f"{PUBLIC}/console/callback",
        "state": "s",
        "nonce": "n",
        "code_challenge": "x" * 43,
        "code_challenge_method": "S256",
    }


async def test_a_proxy_in_front_signs_nobody_in_at_the_dev_issuer(tmp_path) -> None:
    port = free_port()
    config = pdp_config(tmp_path)
    config = replace(config, pdp=replace(config.pdp, http_listen=f"127.0.0.1:{port}"))
    parts = Parts(console=ConsoleSettings.from_config(config, {"PORTCULLIS_CONSOLE_URL": PUBLIC}))
    async with running_pdp(config, parts), _http() as http:
        base = f"http://127.0.0.1:{port}"
        relayed = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
        url = f"{base}/console/dev-issuer/authorize"
        async with http.get(url, params=_authorize_params(), headers=relayed) as r:
            assert r.status == 403, await r.text()
        form = {**_authorize_params(), "subject": "sam@example.com", "groups": "security"}
        async with http.post(url, data=form, headers={**relayed, "Origin": PUBLIC},
                             allow_redirects=False) as r:  # fmt: skip
            assert r.status == 403 and "code=" not in r.headers.get("Location", "")
        # no relay header (a proxy that sends none): the public URL is not this host's
        async with http.get(url, params=_authorize_params()) as r:
            assert r.status == 403


@pytest.mark.parametrize("header", ["Forwarded", "X-Forwarded-For", "X-Real-IP"])
async def test_a_relayed_request_is_refused_at_the_consoles_own_address(
    tmp_path, header: str
) -> None:
    port = free_port()
    config = pdp_config(tmp_path)
    config = replace(config, pdp=replace(config.pdp, http_listen=f"127.0.0.1:{port}"))
    async with running_pdp(config), _http() as http:
        base = f"http://127.0.0.1:{port}"
        async with http.get(f"{base}/console/login", allow_redirects=False) as r:
            authorize = r.headers["Location"]
        params = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
        value = "for=203.0.113.9" if header == "Forwarded" else "203.0.113.9"
        async with http.get(f"{base}/console/dev-issuer/authorize", params=params,
                            headers={header: value}) as r:  # fmt: skip
            assert r.status == 403, header


async def test_a_local_browser_at_the_consoles_address_still_signs_in(tmp_path) -> None:
    port = free_port()
    config = pdp_config(tmp_path)
    config = replace(config, pdp=replace(config.pdp, http_listen=f"127.0.0.1:{port}"))
    async with running_pdp(config), _http() as http:
        base = f"http://127.0.0.1:{port}"
        assert await sign_in(http, base, "sam@example.com", "security")
        async with http.get(f"{base}/console/approvals/") as r:
            assert r.status == 200 and "sam@example.com" in await r.text()
