"""Probing the MCP exchange (P28, helper webmask17): completion/complete on an argument a
field rule masks, as an oracle.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP) whose completion handler suggests the values
of a prompt's argument that start with what was typed, as servers do. Before the fix:

- a reader outside pii-readers had each suggested value of a masked argument (`phone`)
  masked, but as many of them as the server suggested, and its `total` and `hasMore`:
  typing a prefix ("555") and counting the answers (1 against 0) told whether a phone
  number starting so exists, digit by digit the whole number. A completion for an
  argument a field rule names comes back empty now (no values, no total), and so does
  one whose context names such an argument (a server narrowing `customer` by a `phone`
  typed before answers as to the phone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import test_mcp_proxy
from mcp.server.mcpserver import MCPServer
from mcp_types import Completion, PromptReference
from test_mcp_proxy import agent, mcp_stack

pytestmark = pytest.mark.integration

PEOPLE = {"Ann": "5550100", "Bob": "7770199"}


def completing_server(up: Any) -> MCPServer:
    served = MCPServer("billing")

    @served.prompt()
    def summarize_invoice(customer: str, phone: str) -> str:
        return f"summarize the invoices of {customer} ({phone})"

    @served.completion()
    async def complete(ref: Any, argument: Any, context: Any) -> Completion:
        up.calls.append(f"complete {argument.name}")
        typed = (context.arguments or {}) if context is not None else {}
        phone_typed = typed.get("phone", "")
        if argument.name == "phone":
            values = [p for p in PEOPLE.values() if p.startswith(argument.value)]
        else:
            values = [
                n
                for n, p in PEOPLE.items()
                if n.startswith(argument.value) and p.startswith(phone_typed)
            ]
        return Completion(values=values, total=len(values), has_more=False)

    return served


@pytest.fixture
def completing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", completing_server)


REF = PromptReference(type="ref/prompt", name="summarize_invoice")


async def _suggested(client: Any, name: str, value: str, **context: str) -> Any:
    answer = await client.complete(REF, {"name": name, "value": value}, context or None)
    return answer.completion


async def test_a_masked_arguments_completions_tell_nothing(
    tmp_path: Path, completing: None
) -> None:
    async with (
        mcp_stack(tmp_path) as stack,
        agent(stack, stack.token("mallory@example.com")) as mallory,
        agent(stack, stack.token("pia@example.com", "readonly", "pii-readers")) as pia,
    ):
        hit = await _suggested(mallory, "phone", "555")
        miss = await _suggested(mallory, "phone", "556")
        narrowed_hit = await _suggested(mallory, "customer", "", phone="555")
        narrowed_miss = await _suggested(mallory, "customer", "", phone="556")
        names = await _suggested(mallory, "customer", "")
        plain = await _suggested(pia, "phone", "555")
        plain_narrowed = await _suggested(pia, "customer", "", phone="555")
    # the masked argument's answers are alike whatever was typed: empty
    assert hit == miss and hit.values == [] and not hit.total and not hit.has_more
    assert narrowed_hit == narrowed_miss and narrowed_hit.values == []
    # an argument no rule masks is completed as the server does
    assert names.values == ["Ann", "Bob"]
    # a pii-reader's completions are the server's
    assert plain.values == ["5550100"] and plain.total == 1
    assert plain_narrowed.values == ["Ann"]
