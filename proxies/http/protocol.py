"""The HTTP protocol as it plugs into Portcullis: name, command kind, options.

Owns the declaration portcullis.protocols reads (entry point `http`). No proxy serves it
in this build (`serve` is None): a connection of this type is declared, and not served.
"""

from __future__ import annotations

from portcullis.protocols import Option, Protocol

HTTP = Protocol(
    name="http",
    command_kinds=("http.request",),
    options={"mcp": Option("bool", False, "decide MCP tool calls one by one")},
)
