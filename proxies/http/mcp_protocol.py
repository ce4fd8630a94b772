"""The `mcp` command vocabulary as it plugs into Portcullis: kind `mcp.call`, its policy input.

Owns the declaration portcullis.protocols reads (entry point `mcp`): MCP tool calls, resource
reads and every other JSON-RPC message of the Model Context Protocol are decided one by one
as `mcp.call`, and the policy sees them at `input.command.mcp` (DESIGN.md), built by the PDP
from the raw message (pdp/domain/mcp_input.py). They travel over HTTP (the streamable-HTTP
transport): a connection `type: http` with `mcp: true` serves them, or a connection
`type: mcp`, which is the same HTTP proxy with MCP always on (its options are HTTP's).
Light on purpose: the configuration loader imports it.
"""

from __future__ import annotations

from portcullis.protocols import Protocol
from proxies.http.protocol import HTTP

MCP = Protocol(
    name="mcp",
    command_kinds=("mcp.call",),
    options={name: option for name, option in HTTP.options.items() if name != "mcp"},
    check_options=HTTP.check_options,
    serve="proxies.http.proxy:HttpProxy",  # the HTTP proxy, MCP always on
    policy_input="pdp.domain.mcp_input:mcp_command",
)
