"""The HTTP protocol as it plugs into Portcullis: name, command kinds, options.

Owns the declaration portcullis.protocols reads (entry point `http`): the command kinds an
HTTP proxy asks about (a request; a WebSocket upgrade),
the options of an HTTP connection besides the runtime's, and the PDP-side builder that
re-derives method, path and query from the recorded request line. Light on purpose: the
configuration loader imports it; the proxy itself (proxies/http/proxy.py) loads when served.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from portcullis.protocols import Option, Protocol


def _check(options: Mapping[str, Any]) -> tuple[str, str] | None:
    if ("tls_cert_file" in options) != ("tls_key_file" in options):
        return "", "TLS towards clients needs both tls_cert_file and tls_key_file"
    return None


HTTP = Protocol(
    name="http",
    command_kinds=("http.request", "http.upgrade"),
    options={
        "mcp": Option("bool", False, "decide MCP tool calls one by one"),
        "session_idle_seconds": Option("seconds", 300.0, "an agent's session closes after"),
        "upstream_tls_verify": Option("bool", True, "verify the upstream's certificate"),
        "upstream_ca_file": Option("path", None, "CA bundle for an https upstream"),
        "tls_cert_file": Option("path", None, "TLS towards clients: certificate"),
        "tls_key_file": Option("path", None, "TLS towards clients: its private key"),
    },
    check_options=_check,
    serve="proxies.http.proxy:HttpProxy",
    # the PDP reads method, path and query from the request line itself
    policy_input="pdp.domain.policy_input:http_command",
)
