"""Probing the MCP exchange's completions (P34, helper webmask22): a completion's context
naming the masked field it narrows by as an argument's value.

Real PDP with the shipped policy and the HTTP proxy with `mcp: true`, before a real
MCPServer (the `mcp` SDK, streamable HTTP) whose prompt takes a generic lookup (`field`,
`value`) and whose completion handler suggests the customers that lookup finds, as
servers narrow a completion by the arguments typed before. P28 made a completion empty
when its context names a masked field as an argument (`{"phone": "555"}`); before this
fix the same narrowing written `{"field": "phone", "value": "555"}` came back as the
server made it: one customer for `555`, none for `556`, the masked phone guessed digit
by digit. Now the value of a context's argument named as the field a lookup is by
(portcullis.mcp.FIELD_NAMING_WORDS: `field`, `column`, `by`, `key`, ... as mcp.rego reads
a call's arguments) is read as a name: the completion comes back empty whatever was
typed; narrowed by a field no rule masks, it is the server's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import test_mcp_proxy
from mcp.server.mcpserver import MCPServer
from mcp_types import Completion, PromptReference
from test_mcp_proxy import agent, mcp_stack

PEOPLE = {"Ann": {"phone": "5550100", "city": "Oslo"}, "Bob": {"phone": "7770199", "city": "Rome"}}


def _lookup_completing_server(up: Any) -> MCPServer:
    served = MCPServer("billing")

    @served.prompt()
    def summarize_invoice(customer: str, field: str, value: str) -> str:
        return f"summarize the invoices of {customer}"

    @served.completion()
    async def complete(ref: Any, argument: Any, context: Any) -> Completion:
        typed = (context.arguments or {}) if context is not None else {}
        by, value = typed.get("field", ""), typed.get("value", "")
        values = [
            name
            for name, person in PEOPLE.items()
            if name.startswith(argument.value) and (not by or person[by].startswith(value))
        ]
        up.calls.append(f"{by}={value}")
        return Completion(values=values, total=len(values), has_more=False)

    return served


REF = PromptReference(type="ref/prompt", name="summarize_invoice")


@pytest.mark.integration
async def test_a_completion_narrowed_by_a_field_named_as_a_value_tells_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", _lookup_completing_server)

    async def suggested(client: Any, **context: str) -> list[str]:
        answer = await client.complete(REF, {"name": "customer", "value": ""}, context)
        return list(answer.completion.values)

    async with (
        mcp_stack(tmp_path) as stack,
        agent(stack, stack.token("mallory@example.com")) as mallory,
        agent(stack, stack.token("pia@example.com", "readonly", "pii-readers")) as pia,
    ):
        hit = await suggested(mallory, field="phone", value="555")
        miss = await suggested(mallory, field="phone", value="556")
        by_city = await suggested(mallory, field="city", value="Os")
        plain = await suggested(pia, field="phone", value="555")
    assert hit == miss == [], (hit, miss)
    assert by_city == ["Ann"] and plain == ["Ann"], (by_city, plain)
