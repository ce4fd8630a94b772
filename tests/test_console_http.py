"""The console's HTTP surface without a browser: sign-in with the dev issuer (code + PKCE),
what a forged or replayed step gets, CSRF and Origin checks, the security headers, and who
may see what. The browser tests (test_console_browser.py) drive the same pages in Chromium."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from pdp_harness import free_port, pdp_config, running_pdp

from pdp.console.app import CSP


@pytest.fixture
async def pdp(tmp_path):
    port = free_port()
    config = pdp_config(tmp_path)
    raw_port = f"127.0.0.1:{port}"
    from dataclasses import replace

    config = replace(config, pdp=replace(config.pdp, http_listen=raw_port))
    async with running_pdp(config) as app:
        app.base = f"http://{raw_port}"
        yield app


def _http() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def _start(http: aiohttp.ClientSession, base: str, nxt: str = "/console/sessions/"):
    async with http.get(f"{base}/console/login", params={"next": nxt},
                        allow_redirects=False) as r:  # fmt: skip
        assert r.status == 302
        return r.headers["Location"]


async def _grant(http, base: str, authorize: str, subject: str, groups: str) -> str:
    """The dev issuer's form, filled in: returns the callback URL it redirects to."""
    query = parse_qs(urlsplit(authorize).query)
    async with http.get(f"{base}{authorize}") as r:
        assert r.status == 200 and 'name="subject"' in await r.text()
    form = {k: v[0] for k, v in query.items() if k != "response_type" and k != "scope"}
    form.update(subject=subject, groups=groups)
    async with http.post(f"{base}/console/dev-issuer/authorize", data=form,
                         allow_redirects=False) as r:  # fmt: skip
        assert r.status == 303, await r.text()
        return r.headers["Location"]


async def sign_in(http, base: str, subject: str, groups: str) -> str:
    """Signs `http` in; returns the CSRF token of the session."""
    callback = await _grant(http, base, await _start(http, base), subject, groups)
    async with http.get(callback, allow_redirects=False) as r:
        assert r.status == 200, await r.text()
        cookie = r.headers.getall("Set-Cookie")
        session_cookie = next(c for c in cookie if c.startswith("portcullis_console="))
        assert "HttpOnly" in session_cookie and "SameSite=Strict" in session_cookie
    async with http.get(f"{base}/console/sessions/") as r:
        assert r.status == 200
        html = await r.text()
    return unescape(re.search(r'name="csrf-token" content="([^"]*)"', html)[1])


async def test_dev_sign_in_with_pkce_and_security_headers(pdp):
    async with _http() as http:
        async with http.get(f"{pdp.base}/console", allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "/console/"
        async with http.get(f"{pdp.base}/console/approvals/", allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"].startswith("/console/login")
        await sign_in(http, pdp.base, "sam@example.com", "security")
        async with http.get(f"{pdp.base}/console/approvals/") as r:
            assert r.status == 200
            assert r.headers["Content-Security-Policy"] == CSP
            assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP
            assert r.headers["X-Frame-Options"] == "DENY"
            assert r.headers["Cache-Control"] == "no-store"
            assert "Signed in as" in await r.text()
        # the rest of the PDP's HTTP API is untouched by the console
        async with http.get(f"{pdp.base}/healthz") as r:
            assert r.status == 200 and "Content-Security-Policy" not in r.headers


async def test_a_code_is_bound_to_its_verifier_browser_and_single_use(pdp):
    async with _http() as attacker, _http() as victim:
        # a code minted for the attacker's login cannot finish in the victim's browser
        callback = await _grant(attacker, pdp.base, await _start(attacker, pdp.base),
                                "mallory@example.com", "security")  # fmt: skip
        async with victim.get(callback, allow_redirects=False) as r:
            assert r.status == 400 and "not started in this browser" in await r.text()
        # a state replayed in the browser that started it is used up
        async with attacker.get(callback, allow_redirects=False) as r:
            assert r.status == 200
        async with attacker.get(callback, allow_redirects=False) as r:
            assert r.status == 400
    async with _http() as http:
        # the code alone, with another login's state and verifier: refused by PKCE
        authorize = await _start(http, pdp.base)
        other = await _start(http, pdp.base)
        callback = await _grant(http, pdp.base, authorize, "eve@example.com", "security")
        code = parse_qs(urlsplit(callback).query)["code"][0]
        state = parse_qs(urlsplit(other).query)["state"][0]
        async with http.get(f"{pdp.base}/console/callback", params={"code": code, "state": state},
                            allow_redirects=False) as r:  # fmt: skip
            assert r.status == 403 and "PKCE" in await r.text()


async def test_the_dev_issuer_takes_only_the_consoles_redirect(pdp):
    async with _http() as http:
        authorize = await _start(http, pdp.base)
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
        query["redirect_uri"] = "http://evil.example/steal"
        async with http.get(f"{pdp.base}/console/dev-issuer/authorize", params=query) as r:
            assert r.status == 400
        query.update(subject="sam", groups="security")
        async with http.post(f"{pdp.base}/console/dev-issuer/authorize", data=query,
                             allow_redirects=False) as r:  # fmt: skip
            assert r.status == 400


async def test_after_sign_in_only_console_paths(pdp):
    async with _http() as http:
        location = await _start(http, pdp.base, nxt="//evil.example/x")
        callback = await _grant(http, pdp.base, location, "sam@example.com", "security")
        async with http.get(callback, allow_redirects=False) as r:
            assert 'url=/console/"' in await r.text()


async def test_state_changes_need_the_csrf_token_and_this_origin(pdp):
    async with _http() as http:
        csrf = await sign_in(http, pdp.base, "sam@example.com", "security")
        url = f"{pdp.base}/console/approvals/a-0000/decide"
        data = {"action": "approve", "reason": "ok"}
        async with http.post(url, data=data) as r:
            assert r.status == 403 and "CSRF" in await r.text()
        forged = ("y" if csrf[0] == "x" else "x") + csrf[1:]  # one character off, always
        async with http.post(url, data={**data, "csrf": forged}) as r:
            assert r.status == 403 and "CSRF" in await r.text()
        async with http.post(url, data={**data, "csrf": csrf},
                             headers={"Origin": "http://evil.example"}) as r:  # fmt: skip
            assert r.status == 403 and "cross-origin" in await r.text()
        async with http.post(url, data={**data, "csrf": csrf}, headers={"Origin": pdp.base}) as r:
            # past the guard: the book itself answers (there is no such request)
            assert r.status == 403 and "no approval request" in await r.text()
        # signing out needs the token too, and ends the session
        async with http.post(f"{pdp.base}/console/logout", data={"csrf": csrf},
                             allow_redirects=False) as r:  # fmt: skip
            assert r.status == 303
        async with http.get(f"{pdp.base}/console/sessions/", allow_redirects=False) as r:
            assert r.status == 302


async def test_no_session_no_state_change(pdp):
    async with (
        _http() as http,
        http.post(f"{pdp.base}/console/evidence/export", data={"csrf": ""}) as r,
    ):
        assert r.status == 401


async def test_evidence_and_decisions_are_for_auditors(pdp):
    async with _http() as http:
        csrf = await sign_in(http, pdp.base, "alice@example.com", "readonly,dba")
        for path in ("/console/evidence/", "/console/decisions/",
                     "/console/evidence/controls/nist-800-53/AU-2"):  # fmt: skip
            async with http.get(f"{pdp.base}{path}") as r:
                assert r.status == 403, path
        # the export too, with a valid token: the bundle holds every session's records
        async with http.post(f"{pdp.base}/console/evidence/export", data={"csrf": csrf}) as r:
            assert r.status == 403 and r.content_type == "text/html"
    async with _http() as http:
        await sign_in(http, pdp.base, "ines@example.com", "auditor")
        for path in ("/console/evidence/", "/console/decisions/",
                     "/console/evidence/controls/iso-27001/8.15"):  # fmt: skip
            async with http.get(f"{pdp.base}{path}") as r:
                assert r.status == 200, path


async def test_stopping_the_pdp_ends_an_open_event_stream(tmp_path):
    port = free_port()
    config = pdp_config(tmp_path)
    from dataclasses import replace

    config = replace(config, pdp=replace(config.pdp, http_listen=f"127.0.0.1:{port}"))
    base = f"http://127.0.0.1:{port}"
    async with _http() as http:
        async with running_pdp(config):
            await sign_in(http, base, "sam@example.com", "security")
            stream = await http.get(f"{base}/console/approvals/stream")
            assert stream.headers["Content-Type"] == "text/event-stream"
            assert await stream.content.readline() == b"retry: 2000\n"
        # the PDP stopped (its HTTP side waits for open handlers): the stream was ended
        assert await stream.content.read() in (b"\n", b"")
        stream.release()


async def test_over_tls_the_cookies_are_secure_and_host_only(tmp_path):
    from dataclasses import replace

    from pdp.app import Parts
    from pdp.console.settings import ConsoleSettings

    port = free_port()
    config = pdp_config(tmp_path)
    config = replace(config, pdp=replace(config.pdp, http_listen=f"127.0.0.1:{port}"))
    base = f"http://127.0.0.1:{port}"
    # as behind a TLS-terminating proxy: the console's public URL is https
    settings = ConsoleSettings(public_url="https://localhost")
    async with running_pdp(config, Parts(console=settings)), aiohttp.ClientSession() as http:
        async with http.get(f"{base}/console/login", allow_redirects=False) as r:
            login = r.headers["Set-Cookie"]
            assert "Secure" in login and "HttpOnly" in login and "SameSite=Lax" in login
            state_cookie = login.split(";")[0]
            authorize = r.headers["Location"]
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
        assert query["redirect_uri"] == "https://localhost/console/callback"
        query.update(subject="sam@example.com", groups="security")
        async with http.post(f"{base}/console/dev-issuer/authorize", data=query,
                             allow_redirects=False) as r:  # fmt: skip
            callback = urlsplit(r.headers["Location"])
        url = f"{base}{callback.path}?{callback.query}"
        async with http.get(url, headers={"Cookie": state_cookie}, allow_redirects=False) as r:
            assert r.status == 200, await r.text()
            session = next(c for c in r.headers.getall("Set-Cookie")
                           if c.startswith("__Host-portcullis_console="))  # fmt: skip
            assert "Secure" in session and "HttpOnly" in session
            assert "SameSite=Strict" in session and "Path=/" in session
            assert "Domain" not in session


def test_the_console_url_comes_from_the_listen_address_or_the_environment(tmp_path):
    from dataclasses import replace

    from pdp.console.settings import ConsoleSettings

    config = pdp_config(tmp_path)
    config = replace(config, pdp=replace(config.pdp, http_listen="0.0.0.0:7001"))
    assert ConsoleSettings.from_config(config, env={}).public_url == "http://0.0.0.0:7001"
    settings = ConsoleSettings.from_config(
        config, env={"PORTCULLIS_CONSOLE_URL": "https://gw.example.com/"}
    )
    assert settings.redirect_uri == "https://gw.example.com/console/callback"
    assert settings.secure and settings.client_id == config.identity.audience


async def test_replay_shows_http_requests_through_the_proxy(tmp_path):
    from http_upstream import http_stack
    from pdp_harness import token

    async with http_stack(tmp_path, pdp_http=True) as s:
        headers = {"Authorization": f"Bearer {token(s.config, 'ann@example.com', ('readonly',))}"}
        async with aiohttp.ClientSession() as client:
            for method, path in (("GET", "/v1/invoices/3"), ("DELETE", "/echo/3")):
                async with client.request(method, s.url + path, headers=headers) as r:
                    await r.read()
        await s.proxy.stop()
        (opened,) = await s.pdp.store.query(kind="session.open")
        base = f"http://{s.config.pdp.http_listen}"
        async with _http() as http:
            await sign_in(http, base, "ines@example.com", "auditor")
            async with http.get(f"{base}/console/sessions/{opened.session_id}") as r:
                assert r.status == 200
                page = unescape(await r.text())
    assert "GET /v1/invoices/3" in page and "status 200" in page
    assert "DELETE /echo/3" in page and "status 403" in page
    assert "verdict-deny" in page and "masked field:" in page
    assert "4111" not in page and "tok_live" not in page  # values never, counts only
