"""The web console in a real browser: Debian's Chromium driven by Playwright, against a real
PDP whose sessions come through the real Postgres proxy to the machine's PostgreSQL, and
people signed in at a real OIDC issuer (tests/oidc_issuer.py) with code + PKCE.

One browser and one gateway for the module; each test has its own browser context (its
own cookies). Screenshots go to $PORTCULLIS_TEST_ARTIFACTS (default: a directory under the
system temp dir), never into the repository.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from oidc_issuer import OIDCIssuer
from pdp_harness import free_port, open_session, pdp_raw, pdp_stub, running_pdp
from pg_harness import scratch_database
from playwright.async_api import Browser, Page, async_playwright, expect

from pdp.app import PDPApp
from pdp.evidence.bundle import verify_bundle
from portcullis.config import parse_config
from portcullis.v1 import pdp_pb2
from proxies.launcher import handed_credential
from proxies.postgres.proxy import PostgresProxy

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(
    os.environ.get("PORTCULLIS_TEST_ARTIFACTS", Path(tempfile.gettempdir()) / "portcullis-console")
)
PEOPLE = {
    "sam@example.com": ["security"],  # an approver
    "alice@example.com": ["readonly", "security"],  # a requester who also holds an approver group
    "bob@example.com": ["readonly"],  # another requester
    "ines@example.com": ["auditor"],  # sees every session and the evidence
    "pia@example.com": ["auditor", "pii-readers"],  # also values, and exports the evidence
    "carol@example.com": ["readonly"],  # neither approver nor auditor
    "dan@example.com": ["dba"],  # another approver
}


@dataclass
class Stack:
    pdp: PDPApp
    proxy: PostgresProxy
    idp: OIDCIssuer
    browser: Browser
    base: str
    database: str

    def dsn(self, sub: str) -> str:
        token = self.idp.token(sub, PEOPLE[sub], exp=int(time.time()) + 3600)
        return (f"postgresql://agent:{token}@127.0.0.1:{self.proxy.port}/{self.database}"
                "?sslmode=disable")  # fmt: skip


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with OIDCIssuer() as idp:
        idp.users.update(PEOPLE)
        http_port = free_port()
        base = f"http://127.0.0.1:{http_port}"
        idp.redirect_uris.add(f"{base}/console/callback")
        with scratch_database() as (name, role, password):
            connection = {
                "name": "orders-db", "type": "postgres", "listen": f"127.0.0.1:{free_port()}",
                "upstream": "127.0.0.1:5432", "database": name, "zone": "eu-prod",
                "credentials": {"provider": "static", "username": role, "password": password},
                "spool_dir": str(tmp / "spool"),
            }  # fmt: skip
            raw = pdp_raw(tmp, connections=[connection], approvals={"timeout_seconds": 120},
                          identity={"issuer": idp.issuer, "audience": idp.audience})  # fmt: skip
            raw["pdp"]["http_listen"] = f"127.0.0.1:{http_port}"
            config = parse_config(raw, base_dir=tmp)
            async with running_pdp(config) as pdp:
                handed = handed_credential(config, "orders-db", pdp.issue_proxy_credential)
                proxy = PostgresProxy(config.connections[0], handed, pdp.address)
                await proxy.start()
                try:
                    async with async_playwright() as pw:
                        browser = await pw.chromium.launch(executable_path=CHROMIUM,
                                                           args=["--no-sandbox"])  # fmt: skip
                        try:
                            yield Stack(pdp, proxy, idp, browser, base, name)
                        finally:
                            await browser.close()
                finally:
                    await proxy.stop()


async def signed_in(stack: Stack, who: str, path: str = "/console/approvals/") -> Page:
    """A fresh browser context signed in as `who` through the issuer's form."""
    context = await stack.browser.new_context(accept_downloads=True)
    page = await context.new_page()
    await page.goto(f"{stack.base}{path}")
    # not signed in: the console sent the browser to the issuer with a PKCE challenge
    assert "/authorize" in page.url and "code_challenge_method=S256" in page.url
    await page.get_by_label("Username").fill(who)
    await page.get_by_label("Password").fill("anything")
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{stack.base}{path}*")
    await expect(page.get_by_text(f"Signed in as {who}")).to_be_visible()
    return page


async def pending(stack: Stack, command_part: str) -> str:
    while True:  # the test's own timeout bounds this
        for r in stack.pdp.approvals.requests.values():
            if r.state == "pending" and command_part in r.command:
                return r.id
        await asyncio.sleep(0.1)


async def test_approve_a_waiting_statement_and_the_client_proceeds(stack):
    client = await asyncpg.connect(stack.dsn("bob@example.com"))
    sql = "/* justification: ticket 42 */ UPDATE customers SET name = 'Robert' WHERE id = 2"
    update = asyncio.ensure_future(client.execute(sql))
    approval_id = await pending(stack, "'Robert'")
    page = await signed_in(stack, "sam@example.com")
    card = page.locator(f'article[data-id="{approval_id}"]')
    await expect(card).to_contain_text("bob@example.com")
    await expect(card).to_contain_text("orders-db")
    await expect(card).to_contain_text("UPDATE customers SET name = 'Robert' WHERE id = 2")
    await expect(card).to_contain_text("update (UpdateStmt)")  # the statement's classification
    await expect(card).to_contain_text("ticket 42")
    await expect(card.locator("time")).to_contain_text("ago")
    await card.get_by_label("Reason (kept with the record)").fill("ticket 42 checked")
    await page.screenshot(path=ARTIFACTS / "approvals-before-approve.png", full_page=True)
    await card.get_by_role("button", name="Approve").click()
    await expect(page.get_by_role("status").filter(has_text="Approved")).to_be_visible()
    assert await asyncio.wait_for(update, 30) == "UPDATE 1"
    assert stack.pdp.approvals.requests[approval_id].approver == "sam@example.com"
    await client.close()
    await page.context.close()


async def test_a_new_request_appears_live_and_is_denied_by_keyboard(stack):
    page = await signed_in(stack, "sam@example.com")
    client = await asyncpg.connect(stack.dsn("bob@example.com"))
    delete = asyncio.ensure_future(client.execute("DELETE FROM orders WHERE id = 11"))
    approval_id = await pending(stack, "DELETE FROM orders")
    card = page.locator(f'article[data-id="{approval_id}"]')
    await expect(card).to_be_visible()  # no reload: the event stream brought it
    # keyboard only: Tab to the reason, type it, Tab to Approve, Tab to Deny, press Enter
    reason = card.get_by_label("Reason (kept with the record)")
    await reason.focus()
    await page.keyboard.type("no deletes on orders this week")
    await page.keyboard.press("Tab")
    await expect(card.get_by_role("button", name="Approve")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(card.get_by_role("button", name="Deny")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status").filter(has_text="Denied")).to_be_visible()
    with pytest.raises(asyncpg.PostgresError) as denied:
        await asyncio.wait_for(delete, 30)
    assert approval_id in str(denied.value)
    await client.close()
    await page.context.close()


async def test_another_approvers_decision_shows_at_once(stack):
    client = await asyncpg.connect(stack.dsn("bob@example.com"))
    update = asyncio.ensure_future(client.execute("UPDATE orders SET total = 3 WHERE id = 10"))
    approval_id = await pending(stack, "SET total = 3")
    watching = await signed_in(stack, "sam@example.com")
    card = f'article[data-id="{approval_id}"]'
    await expect(watching.locator(f'{card}[data-state="pending"]')).to_be_visible()
    deciding = await signed_in(stack, "dan@example.com")
    other = deciding.locator(card)
    await other.get_by_label("Reason (kept with the record)").fill("fine")
    await other.get_by_role("button", name="Approve").click()
    # sam's page, never reloaded, now shows it settled and by whom
    settled = watching.locator(f'{card}[data-state="approved"]')
    await expect(settled).to_contain_text("approved by dan@example.com: fine")
    await expect(watching.locator("#live")).to_contain_text("Updated")
    assert await asyncio.wait_for(update, 30) == "UPDATE 1"
    await client.close()
    await watching.context.close()
    await deciding.context.close()


async def test_nobody_approves_their_own_and_the_requester_withdraws(stack):
    client = await asyncpg.connect(stack.dsn("alice@example.com"))
    update = asyncio.ensure_future(client.execute("UPDATE orders SET total = 1 WHERE id = 10"))
    approval_id = await pending(stack, "SET total = 1")
    page = await signed_in(stack, "alice@example.com")
    card = page.locator(f'article[data-id="{approval_id}"]')
    approve = card.get_by_role("button", name="Approve")
    await expect(approve).to_be_disabled()
    await expect(card.locator(".why")).to_contain_text("nobody may approve or deny their own")
    # the button's description is the reason (screen readers read it with the button)
    why_id = await approve.get_attribute("aria-describedby")
    assert why_id and await page.locator(f"#{why_id}").is_visible()
    # a forged submission past the disabled button gets the book's refusal
    await card.locator("textarea, button").evaluate_all(
        "els => els.forEach(e => e.removeAttribute('disabled'))"
    )
    await card.get_by_label("Reason (kept with the record)").fill("trust me")
    await approve.click()
    await expect(page.get_by_role("alert")).to_contain_text("own request")
    assert stack.pdp.approvals.requests[approval_id].state == "pending"
    # the requester withdraws it; the waiting client is told
    card = page.locator(f'article[data-id="{approval_id}"]')
    await card.get_by_label("Why withdraw (optional)").fill("wrong row")
    await card.get_by_role("button", name="Withdraw my request").click()
    await expect(page.get_by_role("status").filter(has_text="Withdrawn")).to_be_visible()
    with pytest.raises(asyncpg.PostgresError):
        await asyncio.wait_for(update, 30)
    assert stack.pdp.approvals.requests[approval_id].state == "withdrawn"
    await client.close()
    await page.context.close()


async def test_replay_shows_verdicts_masking_badges_never_values_and_inert_text(stack):
    client = await asyncpg.connect(stack.dsn("bob@example.com"))
    rows = await client.fetch("SELECT id, email FROM customers ORDER BY id")
    assert rows[0]["email"] != "ada@example.com"  # masked for a reader
    with pytest.raises(asyncpg.PostgresError):
        await client.execute("DROP TABLE customers")
    await client.execute("SELECT '<img src=x id=injected>\x1b[2J' AS trap")
    await client.close()
    page = await signed_in(stack, "ines@example.com", "/console/sessions/")
    await page.get_by_label("Subject").fill("bob@example.com")
    await page.get_by_label("Verdict").select_option("allow")
    await page.get_by_role("button", name="Search").click()
    links = page.locator("table.sessions tbody a")
    await expect(links.first).to_be_visible()
    await links.first.click()  # newest first: this session
    timeline = page.locator("table.timeline")
    await expect(timeline).to_contain_text("SELECT id, email FROM customers")
    await expect(timeline.locator(".masked").first).to_contain_text("email")
    await expect(timeline).to_contain_text("DROP TABLE customers")
    await expect(timeline.locator(".verdict-deny").first).to_be_visible()
    content = await page.content()
    assert "ada@example.com" not in content and "bob@example.org" not in content
    # the client's text is shown, inert: no element was made of it, the escape is visible
    assert await page.locator("#injected").count() == 0
    await expect(timeline).to_contain_text("\\x1b")
    await page.screenshot(path=ARTIFACTS / "replay.png", full_page=True)
    await page.context.close()


async def test_someone_elses_session_is_not_found(stack):
    client = await asyncpg.connect(stack.dsn("bob@example.com"))
    await client.fetchval("SELECT 1")
    await client.close()
    opened = await stack.pdp.store.query(kind="session.open", subject="bob@example.com")
    page = await signed_in(stack, "carol@example.com", "/console/sessions/?subject=bob%40e.com")
    await expect(page.locator("main")).not_to_contain_text("bob@example.com")
    response = await page.goto(f"{stack.base}/console/sessions/{opened[0].session_id}")
    assert response is not None and response.status == 404
    response = await page.goto(f"{stack.base}/console/evidence/")
    assert response is not None and response.status == 403
    await page.context.close()


async def test_evidence_status_controls_and_export(stack, tmp_path):
    client = await asyncpg.connect(stack.dsn("bob@example.com"))
    with pytest.raises(asyncpg.PostgresError):
        await client.execute("DROP TABLE customers")
    await client.close()
    await stack.pdp.checkpoints.checkpoint()  # the latest signed checkpoint to show
    page = await signed_in(stack, "pia@example.com", "/console/evidence/")
    await expect(page.locator("#chain-status")).to_have_text("OK: the chain verifies")
    await expect(page.get_by_text("Chain hash")).to_be_visible()
    async with page.expect_download() as downloading:
        await page.get_by_role("button", name="Export evidence bundle").click()
    download = await downloading.value
    bundle = tmp_path / "evidence.tar.gz"
    await download.save_as(bundle)
    report = verify_bundle(bundle, stack.pdp.signer.public_key)
    assert report.ok and report.records > 0, report.problems
    await page.get_by_role("link", name="AU-2 Event Logging").click()
    await expect(page.locator("table.records").filter(has_text="decision")).to_have_count(1)
    await page.goto(f"{stack.base}/console/decisions/")
    await expect(page.locator("svg.chart").first).to_be_visible()
    await expect(page.locator("table.denied")).to_contain_text("DROP TABLE customers")
    await page.screenshot(path=ARTIFACTS / "decisions.png", full_page=True)
    await page.context.close()


async def test_csrf_and_csp_hold_in_the_browser(stack):
    page = await signed_in(stack, "sam@example.com")
    # the page's own policy: an inline script is refused and reported
    violations = await page.evaluate("""() => new Promise(resolve => {
        document.addEventListener('securitypolicyviolation',
                                  e => resolve(e.violatedDirective), {once: true});
        const s = document.createElement('script');
        s.textContent = 'window.__ran = true';
        document.body.appendChild(s);
        setTimeout(() => resolve('none'), 2000);
    })""")
    assert violations.startswith("script-src")
    assert await page.evaluate("window.__ran") is None
    # a form on another site that posts to the console: no cookie (SameSite=Strict), no token
    client = await asyncpg.connect(stack.dsn("bob@example.com"))
    update = asyncio.ensure_future(client.execute("UPDATE orders SET total = 2 WHERE id = 10"))
    approval_id = await pending(stack, "SET total = 2")
    evil = f"http://localhost:{stack.idp.port}/evil"  # another site than 127.0.0.1
    await page.route(evil, lambda route: route.fulfill(content_type="text/html", body=(
        f'<form method="post" action="{stack.base}/console/approvals/{approval_id}/decide">'
        '<input name="action" value="approve"><input name="reason" value="csrf">'
        '<button id="go">go</button></form>')))  # fmt: skip
    await page.goto(evil)
    async with page.expect_navigation():
        await page.click("#go")
    assert "Sign in first" in await page.content() or "refused" in await page.content()
    assert stack.pdp.approvals.requests[approval_id].state == "pending"
    # a same-site request without the token is refused too
    status = await page.evaluate(
        """async (url) => (await fetch(url, {method: 'POST', body: new URLSearchParams(
            {action: 'approve', reason: 'no token'})})).status""",
        f"{stack.base}/console/approvals/{approval_id}/decide",
    )
    assert status in (401, 403)
    await page.goto(f"{stack.base}/console/approvals/")
    card = page.locator(f'article[data-id="{approval_id}"]')
    await card.get_by_label("Reason (kept with the record)").fill("cleanup")
    await card.get_by_role("button", name="Deny").click()
    with pytest.raises(asyncpg.PostgresError):
        await asyncio.wait_for(update, 30)
    await client.close()
    await page.context.close()


async def test_keyboard_navigation_and_labels(stack):
    page = await signed_in(stack, "ines@example.com", "/console/sessions/")
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#main")).to_be_focused()
    for path in ("/console/approvals/", "/console/sessions/", "/console/evidence/",
                 "/console/decisions/"):  # fmt: skip
        await page.goto(f"{stack.base}{path}")
        unlabeled = await page.evaluate("""() => [...document.querySelectorAll(
              'input:not([type=hidden]), select, textarea, button')]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                         && !(e.textContent || '').trim())
            .map(e => e.outerHTML)""")
        assert unlabeled == [], (path, unlabeled)
        assert await page.locator("h1").count() == 1
        assert await page.locator("html[lang=en]").count() == 1
        current = page.locator("nav[aria-label=Console] a[aria-current=page]")
        assert await current.count() == 1
    await page.context.close()


async def test_a_recorded_terminal_plays_with_control_characters_inert(stack):
    """A terminal recording as a proxy sends it (RecordEvents to the real PDP), played in
    the browser: text in order, the colours dropped, a bell and a bidi override shown."""
    token = stack.idp.token("bob@example.com", PEOPLE["bob@example.com"])
    output = [
        [0.1, "o", "$ ls\r\n"],
        [0.4, "o", "\x1b[31mred\x1b[0m file\x07\r\n"],
        [0.9, "o", "\x1b]0;title\x07evil\u202etxt.exe\r\n"],
        [1.0, "o", "mark\u200fed\u061cs\u200e\r\n"],
        [1.2, "i", "exit\r"],
    ]
    event = {"time": time.time(), "direction": "upstream", "type": "response",
             "details": {"kind": "ssh.asciicast", "channel": 0, "decision_id": "d-test",
                         "header": {"version": 2, "width": 80, "height": 24},
                         "events": output}}  # fmt: skip
    async with pdp_stub(stack.pdp.address) as stub:
        opened = await open_session(stub, token)
        await stub.RecordEvents(pdp_pb2.RecordEventsRequest(
            session_id=opened.session_id, events_json=json.dumps([event])))  # fmt: skip
        await stub.CloseSession(pdp_pb2.CloseSessionRequest(session_id=opened.session_id))
    page = await signed_in(stack, "ines@example.com", f"/console/sessions/{opened.session_id}")
    player = page.locator(".player")
    screen = player.get_by_role("log", name="Terminal output, channel 0")
    # as a terminal draws it
    await player.get_by_label("Draw as a terminal (cursor moves, erasing)").check()
    # the player shows the whole recording once loaded, then plays it again from the start
    await expect(screen).to_contain_text("red file\\x07")
    await expect(screen).to_contain_text("evil\\u202etxt.exe")
    # the implicit direction marks, as rendering.inert shows them (four hex digits)
    await expect(screen).to_contain_text("mark\\u200fed\\u061cs\\u200e")
    assert "\x1b" not in await screen.inner_text() and "title" not in await screen.inner_text()
    await player.get_by_role("button", name="Play").click()
    await player.get_by_label("Speed").select_option("16")
    await expect(player.get_by_role("button", name="Play")).to_be_visible()  # played through
    await expect(screen).to_contain_text("$ ls")
    await page.screenshot(path=ARTIFACTS / "terminal.png", full_page=True)
    download = await page.request.get(f"{stack.base}/console/sessions/"
                                      f"{opened.session_id}/terminal/0?download=1")  # fmt: skip
    assert download.ok and '"o"' in await download.text()
    await page.context.close()
