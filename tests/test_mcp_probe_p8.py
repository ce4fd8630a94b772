"""Probing the MCP exchange's masks (brief P8): what a tool's result carried past them to
a reader, kept as tests.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP), the SDK's client through the proxy. The
reader is outside pii-readers: tool results are masked (the field `password` among the
sensitive columns). Each case came back whole before its fix:

- a field named by a short or older alias of a masked one (`pwd`, `passwd`, `pass`,
  `secret`, `client_secret`, `PGPASSWORD`): the masks read a key's words, and none of
  these held the word `password`. The masks now know the aliases (FIELD_ALIASES), and a
  long field's name written into one word with others (`pgpassword`);
- a key escaped inside JSON that is itself text (`{"\\u0070assword": ...}` after a
  sentence, a line `"\\u0070assword": ...`, `&#112;assword`): a name's reader undoes the
  escapes, the masks did not (name_words, bodies._KEYED and _NAMED now do); a text
  opening with a quoted name was read as a JSON string, and its value as prose after it;
  a name in fullwidth letters in a line of text (a name began with an ASCII letter);
  JSON serialised into a string once more, its outer quotes gone (`{\\"pwd\\": ...}`);
- a sentence with no separator (`The password is hunter2x.`): MCP's prose reader
  passed any text without `:`, `=`, ... unread;
- a URL's password (`postgres://ann:hunter2x@db/x`, RFC 3986 §3.2.1), and SQL's
  `IDENTIFIED BY '...'` (an alias of password now);
- a CSV or Markdown table whose column is `pwd`, and pairs naming one ({"name": "pwd"}).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import test_mcp_proxy
from mcp.server.mcpserver import MCPServer
from test_mcp_proxy import agent, initialize, mcp_stack, messages_of, post, rpc, text_of

from proxies.http.mcp_codec import INVALID_REQUEST

pytestmark = pytest.mark.integration

VALUE = "hunter2x"
TEXTS = {
    "json after words": f'result: {{"\\u0070assword": "{VALUE}"}}',
    "escaped name line": f'"\\u0070assword": "{VALUE}"\n',
    "entity name": f'{{"&#112;assword": "{VALUE}"}}',
    "fullwidth name": "".join(chr(ord(c) + 0xFEE0) for c in "password") + f": {VALUE}",
    "json escaped once more": f'{{\\"\\\\u0070assword\\": \\"{VALUE}\\"}}',
    "yaml pwd": f"user:\n  name: ann\n  pwd: {VALUE}\n",
    "env pgpassword": f"PGPASSWORD={VALUE} psql -h db",
    "query pwd": f"see /login?user=ann&pwd={VALUE}",
    "ini passwd": f"[db]\nhost=x\npasswd = {VALUE}\n",
    "sentence": f"The password is {VALUE}.",
    "url userinfo": f"connect to postgres://ann:{VALUE}@db/x now",
    "sql identified by": f"CREATE USER ann IDENTIFIED BY '{VALUE}'",
    "csv pwd": f"user,pwd\nann,{VALUE}\n",
    "markdown pwd": f"| user | pwd |\n|---|---|\n| ann | {VALUE} |\n",
}
RECORD = {
    "pwd": VALUE,
    "passwd": VALUE,
    "pass": VALUE,
    "client_secret": VALUE,
    "DB_PASSWD": VALUE,
    "fields": [{"name": "pwd", "value": VALUE}],
    "plan": "gold",
}


def _aliasing_server(up: Any) -> MCPServer:
    server = MCPServer("billing")

    @server.tool()
    def find_customer(name: str) -> str:
        up.calls.append(name)
        return TEXTS[name] if name in TEXTS else json.dumps(RECORD)

    return server


async def test_a_field_in_other_words_or_escaped_in_text_is_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", _aliasing_server)
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        async with agent(stack, reader) as client:
            shown = {
                n: text_of(await client.call_tool("find_customer", {"name": n})) for n in TEXTS
            }
            record = text_of(await client.call_tool("find_customer", {"name": "ann"}))
    assert stack.upstream.calls == [*TEXTS, "ann"]
    leaked = {name: text for name, text in shown.items() if VALUE in text}
    assert not leaked, sorted(leaked)
    assert VALUE not in record and json.loads(record)["plan"] == "gold", record
    assert shown["sentence"] == "The password is [REDACTED]"


async def test_arguments_with_two_keys_equal_but_for_case_are_refused(tmp_path: Path) -> None:
    # a policy reading an argument reads {"invoice_id": 7, "INVOICE_ID": 8} as two; a
    # server decoding keys case-insensitively (Go's encoding/json: the last one, a long s,
    # U+017F, as an s too) reads one, perhaps the other: one message read two ways is refused
    twins = [
        {"invoice_id": 7, "INVOICE_ID": 8},
        {"invoice_id": 7, "scope": "read", "\u017fcope": "write"},
        {"invoice_id": 7, "filter": {"a": 1, "A": 2}},
    ]
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        session_id = await initialize(stack, reader)
        for n, arguments in enumerate(twins, 2):
            call = rpc(n, "tools/call", {"name": "get_invoice", "arguments": arguments})
            status, _, text = await post(stack, reader, call, session_id)
            assert status == 400, text
            assert messages_of(text)[0]["error"]["code"] == INVALID_REQUEST
        assert stack.upstream.calls == []
        call = rpc(9, "tools/call", {"name": "get_invoice", "arguments": {"invoice_id": 7}})
        status, _, text = await post(stack, reader, call, session_id)
        assert status == 200, text
        assert stack.upstream.calls == ["get_invoice"]
