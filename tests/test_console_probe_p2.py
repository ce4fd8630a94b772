"""What approvers and auditors read, probed again (p2): a reader's text in the approval
webhook's chat notice, and in the console's view of a request.

Each test names the attack it tries.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import replace

import pytest
from google.protobuf import struct_pb2
from pdp_harness import free_port, open_session, pdp_stub, token
from test_console_probe_p1 import chromium, console_pdp_fixture, signed_in

from pdp.api.webhooks import notice
from pdp.domain.approvals import ApprovalRequest
from portcullis.v1 import pdp_pb2

# what a reader controls, each a piece of chat markup that acts when rendered as Markdown
# (Mattermost, Discord, Teams read a Slack-style webhook `text` as Markdown) or mrkdwn
MARKUP = {
    "subject": "ops-bot @channel",
    "justification": "urgent, see [Approve](https://evil.example/ok) @here *ticket OPS-1*",
    "statement": "SELECT '`) [Approve](https://evil.example/ok) @all (`' AS note",
    "parameter": "@everyone _now_ https://evil.example/x",
}
ACTING = re.compile(r"@(?:channel|here|all|everyone)|\]\(|https://|\*ticket|_now_")


def _outside_code(text: str) -> str:
    """The parts of a chat text that are not inline code (odd backtick-delimited parts)."""
    parts = text.split("`")
    assert len(parts) % 2 == 1, f"unbalanced code spans: {text!r}"
    return " ".join(parts[0::2])


def test_a_reader_s_text_in_the_chat_notice_mentions_nobody_and_makes_no_link() -> None:
    """Attack (reader token): a statement, a justification, a parameter and the token's own
    `sub` carrying `@channel`/`@all`, a Markdown link labelled Approve to another site and
    emphasis: Slack-compatible receivers that read Markdown (Mattermost, Discord, Teams)
    pinged the whole channel and showed an Approve link to evil.example in the notice, and
    a backtick in the statement could end any code span wrapped around it."""
    request = ApprovalRequest(
        id="a-1", requester={"subject": MARKUP["subject"]}, session_id="s",
        connection="orders-db", command_kind="postgres.query",
        command=MARKUP["statement"] + "; DELETE FROM orders", parameters=[MARKUP["parameter"]],
        reasons=["DELETE needs approval"], approvers=["group:security"],
        justification=MARKUP["justification"], created_at=time.time(),
        expires_at=time.time() + 60, ttl_seconds=900,
    )  # fmt: skip
    text = notice(request)["text"]
    assert ACTING.search(_outside_code(text)) is None, text
    # everything the reader sent is still there to read, in code
    for marker in ("@channel", "@here", "@all", "@everyone", "[Approve](https://evil"):
        assert marker in text
    assert "\\x60) [Approve]" in text  # the backtick shown as an escape, not a span's end
    assert "2 statements:" in text and "DELETE FROM orders" in text


def test_a_non_sql_command_in_the_chat_notice_is_code_too() -> None:
    """Attack (reader token): an MCP tool call or HTTP path naming `<!channel>` or a link."""
    request = ApprovalRequest(
        id="a-2", requester={"subject": "eve"}, session_id="s", connection="tools",
        command_kind="mcp.tool_call", command="drop_all {\"note\": \"@channel [ok](https://e.x)\"}",
        reasons=["needs approval"], approvers=["group:security"], justification="",
        created_at=time.time(), expires_at=time.time() + 60, ttl_seconds=900,
    )  # fmt: skip
    text = notice(request)["text"]
    assert ACTING.search(_outside_code(text)) is None, text
    assert "Command: `drop_all" in text


def test_a_long_statement_pushes_nothing_out_of_the_chat_notice() -> None:
    """Attack (reader token): a first statement padded with a 60,000-character comment
    (or a long justification) before `DELETE FROM orders`: Slack cuts a message's text past
    40,000 characters (Discord refuses past 2,000, Mattermost splits), so the notice showed
    the harmless statement and nothing of the DELETE, its kind or its text."""
    padded = "SELECT 1 /* " + "routine check " * 5000 + "*/; DELETE FROM orders"
    request = ApprovalRequest(
        id="a-3", requester={"subject": "eve"}, session_id="s", connection="orders-db",
        command_kind="postgres.query", command=padded, parameters=["x" * 50_000, "2"],
        reasons=["DELETE needs approval"], approvers=["group:security"],
        justification="<>&" * 20_000, created_at=time.time(), expires_at=time.time() + 60,
        ttl_seconds=900,
    )  # fmt: skip
    text = notice(request)["text"]
    assert len(text) < 40_000, len(text)
    assert "delete (DeleteStmt) without WHERE" in text  # its kind, whatever comes before
    assert "DELETE FROM orders" in text
    assert "more characters not shown here" in text
    _outside_code(text)  # every code span closed


def test_the_session_cookie_is_secure_whatever_the_case_of_https() -> None:
    """Misconfiguration an attacker on the network uses: PORTCULLIS_CONSOLE_URL written
    HTTPS://console.example (a scheme is case-insensitive, RFC 3986 §3.1) served the
    sign-in cookie without Secure, so a browser sent it over plain HTTP to anyone on the
    path who made it load http://console.example."""
    from pdp.console.settings import ConsoleSettings

    for url in ("HTTPS://console.example", "Https://console.example", "https://c.example"):
        assert ConsoleSettings(public_url=url).secure, url
    assert not ConsoleSettings(public_url="http://127.0.0.1:7001").secure


def test_the_cli_gives_no_sql_kind_to_a_command_that_is_not_sql() -> None:
    """Attack (reader token, SSH or HTTP): a shell command that also parses as SQL,
    `reset all` or `show all`, waited for approval and `portcullis approvals` read its
    text as SQL: "1 statement: 1. [show (VariableShowStmt)] show all", a Postgres read
    label on a command a shell runs."""
    from pdp.cli.approvals import _line

    for command in ("show all", "reset all", "POST /admin/wipe HTTP/1.1"):
        shown = _line(pdp_pb2.Approval(id="a-4", state="pending", command=command))
        assert "statement" not in shown and "Stmt" not in shown, shown
        assert f"command: {command}" in shown


pdp = console_pdp_fixture()


# the left edge of each character of `value` as drawn inside an element (its first
# occurrence in the element's text, across the nodes markup splits it into), or null
DRAWN_LEFTS = """(element, value) => {
    const nodes = [];
    const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
    let node, text = "";
    while ((node = walker.nextNode())) { nodes.push([node, text.length]); text += node.data; }
    const at = text.indexOf(value);
    if (at < 0) return null;
    return [...Array(value.length).keys()].map((i) => {
        const [n, base] = nodes.filter(([, b]) => b <= at + i).pop();
        const range = document.createRange();
        range.setStart(n, at + i - base);
        range.setEnd(n, at + i - base + 1);
        return range.getBoundingClientRect().left;
    });
}"""


async def _waiting_insert(
    pdp, sql: str, values: list[str], subject: str = "rita@example.com"
) -> str:
    """A reader's extended-protocol INSERT with bound `values`, waiting for approval."""
    reader = token(pdp.config, subject, ("readonly",))
    attributes = struct_pb2.Struct()
    attributes.update({"protocol": "extended", "parameters": values})
    async with pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, reader)
        command = pdp_pb2.Command(kind="postgres.query", raw=sql, attributes=attributes)
        response = await stub.Decide(
            pdp_pb2.DecideRequest(session_id=opened.session_id, command=command)
        )
    assert response.decision.verdict == pdp_pb2.REQUIRE_APPROVAL, response.decision
    return response.decision.approval_id


async def test_an_approver_reads_a_bound_value_in_its_stored_order(pdp):
    """Attack (reader token): a bound value mixing right-to-left letters with numbers,
    `100 \u05d0 200`, was drawn by the approver's browser as `100 200 \u05d0` (the
    Unicode bidi algorithm runs the Hebrew letter and the number after it right to left):
    the statements were read in stored order (console.css), the values they run with not."""
    value = "100 \u05d0 200"
    approval_id = await _waiting_insert(pdp, "INSERT INTO orders (note) VALUES ($1)", [value])
    async with chromium() as browser:
        page = await _signed_in_page(pdp, browser)
        item = page.locator(f'article[data-id="{approval_id}"] ol.parameters li').first
        await item.wait_for()
        # the left edge of each character of the value, as drawn
        lefts = await item.evaluate(DRAWN_LEFTS, value)
        assert lefts is not None, await item.inner_html()
        # drawn left to right, in the order it runs
        assert lefts == sorted(lefts), (lefts, await item.inner_html())


async def _signed_in_page(pdp, browser):
    return await signed_in(browser, f"{pdp.base}/console/approvals/", "sam@example.com", "security")


async def _card(page, approval_id: str):
    card = page.locator(f'article[data-id="{approval_id}"]')
    try:
        await card.wait_for()
    except Exception:
        print("the inbox as drawn:", page.url, await page.content())  # why, on a failure
        raise
    return card


async def test_an_approver_reads_every_row_of_client_text_in_its_stored_order(pdp):
    """Attack (reader token): the justification `ticket 100 \u05d0 200` (and a subject
    made the same way) was drawn on the approval card as `ticket 100 200 \u05d0`: only
    statements and values were drawn in stored order. Every row now is, and a
    right-to-left word in it stays readable (drawn right to left) where it stands."""
    mixed = "ticket 100 \u05d0 200"
    word = "\u05e9\u05dc\u05d5\u05dd"  # a Hebrew word: drawn right to left, in its place
    sql = f"/* justification: {mixed} then {word} 7 */ INSERT INTO orders (note) VALUES ($1)"
    approval_id = await _waiting_insert(pdp, sql, ["x"], subject="rita 5 \u05d0 6@example.com")
    async with chromium() as browser:
        page = await _signed_in_page(pdp, browser)
        card = await _card(page, approval_id)
        for label, value in (("Justification", mixed), ("Requester", "rita 5 \u05d0 6@")):
            row = card.locator(f'dt:text-is("{label}") + dd')
            lefts = await row.evaluate(DRAWN_LEFTS, value)
            html = await row.inner_html()
            assert lefts is not None and lefts == sorted(lefts), (label, lefts, html)
        row = card.locator('dt:text-is("Justification") + dd')
        lefts = await row.evaluate(DRAWN_LEFTS, f"then {word} 7")
        assert lefts is not None, await row.inner_html()
        then, hebrew, seven = lefts[:4], lefts[5:9], lefts[-1]
        assert then == sorted(then) and max(then) < min(hebrew) and max(hebrew) < seven
        assert hebrew == sorted(hebrew, reverse=True), lefts  # readable: right to left


async def test_a_word_mixing_scripts_is_marked_for_the_approver(pdp):
    """Attack (reader token): `DELETE FROM \u043erders` (a Cyrillic o) or a justification
    naming `\u043erders` reads as `orders` to an approver. A word mixing scripts is now
    marked (and said, generated text) on the card and in `portcullis approvals`; words in
    one script, Latin or not, are not."""
    from pdp.cli.approvals import _line

    sql = ("/* justification: clean \u043erders, \u041f\u0440\u0438\u0432\u0435\u0442"
           " \u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 caf\u00e9 */"
           " INSERT INTO orders (note) VALUES ($1) RETURNING n\u043ete")  # fmt: skip
    approval_id = await _waiting_insert(pdp, sql, ["\u0440aypal"])
    async with chromium() as browser:
        page = await _signed_in_page(pdp, browser)
        card = await _card(page, approval_id)
        marked = await card.locator("mark.mixed-scripts").all_inner_texts()
        # the justification's word, the statement's column, the value
        assert sorted(marked) == ["n\u043ete", "\u043erders", "\u0440aypal"], marked
        after = await card.locator("mark.mixed-scripts").first.evaluate(
            "m => getComputedStyle(m, '::after').content"
        )
        assert "mixed scripts" in after
    values = ["\u0440aypal", "\u041f\u0440\u0438"]
    approval = pdp_pb2.Approval(id="a-5", state="pending", justification="clean \u043erders",
                                command="SELECT 1", parameters=values)  # fmt: skip
    shown = _line(approval)
    assert "[mixed scripts: \u043erders (CYRILLIC+LATIN)]" in shown, shown
    assert "[mixed scripts: \u0440aypal (CYRILLIC+LATIN)]" in shown, shown
    assert shown.count("mixed scripts") == 2, shown


def _request(expires_in: float = 60.0) -> ApprovalRequest:
    now = time.time()
    return ApprovalRequest(
        id="a-hook", requester={"subject": "alice"}, session_id="s", connection="orders-db",
        command_kind="postgres.query", command="DELETE FROM orders", reasons=["DELETE"],
        approvers=["group:security"], created_at=now, expires_at=now + expires_in,
        ttl_seconds=900, justification="",
    )  # fmt: skip


async def _hook_answering(statuses: list[int], request: ApprovalRequest, wait: float):
    """POSTs a receiver got, answering each with the next of `statuses` (the last one
    repeated), and the notifier after `wait` seconds."""
    from aiohttp import web

    from pdp.api.webhooks import WebhookNotifier

    hits: list[int] = []
    delivered: list[str] = []

    async def hook(_: web.Request) -> web.Response:
        hits.append(statuses[min(len(hits), len(statuses) - 1)])
        return web.Response(status=hits[-1])

    async def noted(r: ApprovalRequest) -> None:
        delivered.append(r.id)

    port = free_port()
    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    notifier = WebhookNotifier(f"http://127.0.0.1:{port}/hook", noted)
    try:
        notifier(request)
        await asyncio.sleep(wait)
    finally:
        await notifier.close()
        await runner.cleanup()
    return hits, delivered, notifier


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413])
async def test_a_receiver_that_refuses_for_good_is_not_asked_forever(status: int) -> None:
    """Problem: a receiver that refuses the notice for good (a revoked hook's 404 or 410,
    a 403, a 413 for a body it will never take) was sent it again and again, every 30 s,
    for as long as the PDP ran. One refusal ends it: asked once, counted, not marked
    delivered."""
    hits, delivered, notifier = await _hook_answering([status], _request(), 2.0)
    assert hits == [status]
    assert delivered == [] and notifier.refused == 1


@pytest.mark.parametrize("status", [408, 429, 500, 503])
async def test_a_receiver_that_says_later_is_asked_again(status: int) -> None:
    hits, delivered, notifier = await _hook_answering([status, 200], _request(), 2.0)
    assert hits == [status, 200] and delivered == ["a-hook"] and notifier.refused == 0


async def test_retrying_ends_when_the_request_can_no_longer_be_decided() -> None:
    hits, delivered, notifier = await _hook_answering([503], _request(expires_in=1.2), 3.5)
    assert 2 <= len(hits) <= 4 and delivered == [] and notifier.abandoned == 1


def test_the_chat_notice_says_a_word_mixes_scripts() -> None:
    """Attack (reader token): `DELETE FROM \u043erders` (a Cyrillic o) reads as `DELETE FROM
    orders` in the chat notice. The notice now counts such words after the code span
    (naming them would put client text outside code); one-script words are not counted."""
    request = replace(
        _request(), command="DELETE FROM \u043erders WHERE note = '\u041f\u0440\u0438'"
    )
    text = notice(request)["text"]
    assert text.count("[mixed scripts in 1 word]") == 1, text
    assert "[mixed scripts" not in notice(_request())["text"]
