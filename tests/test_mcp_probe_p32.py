"""Probing the MCP exchange's resource URIs (P32, helper webmask21): a Windows drive in a
URI's path.

Real PDP with the shipped policy (resources of billing-api: the prefix `invoice://`) and
the HTTP proxy with `mcp: true`, before a real MCPServer (the `mcp` SDK, streamable HTTP)
whose template `invoice://{/path*}` reads a file under its base directory as a server on
Windows joins it (ntpath: `os.path.join`, `Path /`, Node's `path.resolve` there). Before
the fix a segment naming a drive (`invoice:///D:/secrets.txt`, `C|`, `C%3A`, a
drive-relative `D:secrets`) went upstream: the prefix matched, no segment was a dot or
empty, and the join read an absolute path on that drive, outside the base. Now a drive
is refused anywhere but as a `file:` URI's first path segment (`file:///C:/data/x`:
portcullis.mcp.uri_problem) by the proxy, and read as malformed by the PDP.
"""

from __future__ import annotations

import ntpath
from pathlib import Path
from typing import Any

import pytest
import test_mcp_proxy
from mcp.server.mcpserver import MCPServer
from test_mcp_probe_p23 import read_as_malformed
from test_mcp_proxy import agent, mcp_stack

from portcullis.mcp import template_problem

DRIVES = [
    "invoice:///D:/secrets.txt",
    "invoice://7/D:/secrets.txt",
    "invoice://D:/secrets.txt",
    "invoice:///d|/secrets.txt",
    "invoice:///D%3A/secrets.txt",
    "invoice:///x/D:secrets.txt",
    "invoice:///x;D:/secrets.txt",
    "file:///srv/public/C:/Windows/win.ini",
    "file:///C:/srv/public/D:/x",
]
KEPT = [
    "invoice://7",
    "invoice:///7/a.txt",
    "invoice://7?at=2024-01-01T10:00",
    "file:///C:/srv/public/a.txt",
    "file://localhost/C:/srv/public/a.txt",
    "file:///srv/public/ab:c",
    "https://h.example:443/a/b",
    "urn:isbn:0451450523",
]


def test_a_drive_past_a_file_uris_first_segment_is_malformed() -> None:
    read_as_malformed(DRIVES, KEPT)
    assert template_problem("invoice:///D:/{name}") is not None
    assert template_problem("file:///C:/srv/public/{+path}") is None


def _windows_files_server(base: str) -> Any:
    def build(up: Any) -> MCPServer:
        served = MCPServer("billing")

        @served.resource("invoice://{/path*}")
        def invoice_file(path: list[str]) -> str:
            # (what a server on Windows reads: the path joined to its base)
            up.calls.append(ntpath.join(base, *path))
            return "read"

        return served

    return build


@pytest.mark.integration
async def test_a_drive_in_a_resource_uri_never_goes_upstream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = "C:\\srv\\invoices"
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", _windows_files_server(base))
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        async with agent(stack, reader) as client:
            kept = await client.read_resource("invoice:///7.txt")
            refused = []
            for uri in ("invoice:///D:/secrets.txt", "invoice:///x/D:secrets.txt"):
                try:
                    got = await client.read_resource(uri)
                except Exception as error:  # (the SDK raises the JSON-RPC error)
                    refused.append(str(error))
                else:
                    refused.append(repr(got))
    assert [c.text for c in kept.contents] == ["read"]  # type: ignore[union-attr]
    assert all("resource URI" in r for r in refused), refused
    assert stack.upstream.calls == [ntpath.join(base, "7.txt")]
