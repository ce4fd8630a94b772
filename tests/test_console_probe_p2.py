"""What approvers and auditors read, probed again (p2): a reader's text in the approval
webhook's chat notice, and in the console's view of a request.

Each test names the attack it tries.
"""

from __future__ import annotations

import re
import time

from pdp.api.webhooks import notice
from pdp.domain.approvals import ApprovalRequest

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
