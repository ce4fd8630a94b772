"""Probing the MCP exchange's resource URIs (P23, helper webmask14): paths a server
resolves outside the prefix the policy matched.

Real PDP with the shipped policy (resources of billing-api: the prefix `invoice://`) and
the HTTP proxy with `mcp: true`, before a real MCPServer (the `mcp` SDK, streamable HTTP)
whose template `invoice://{/path*}` reads a file under its base directory (RFC 6570 path
expansion: the SDK hands the segments, and its own check of traversal passes an empty
one), the SDK's client through the proxy. Before the fix:

- an empty path segment (`invoice:////etc/passwd`, `file:///srv/public//etc/passwd`)
  went upstream: the prefix matched, and a server joining the path to its base read an
  absolute path (here a file outside the base, the SDK's own template matching);
- a segment of dots other than `.` and `..` (`...`), one a server strips to `..`
  (`..%20`, Windows drops trailing spaces and dots), and escaped UTF-8 of characters
  that fold into a dot or a slash (fullwidth `%EF%BC%8E`, the division slash
  `%E2%88%95`), or that is no UTF-8 (an overlong `%C0%AE`);
- completion/complete's resource template (`ref/resource`) was matched by prefix with
  dot segments in it: completing `invoice://../secrets/{name}`.
Now each is refused (portcullis.mcp.uri_problem, template_problem) by the proxy and read
as malformed by the PDP.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import test_mcp_proxy
from mcp.server.mcpserver import MCPServer
from test_mcp_proxy import agent, mcp_stack

from pdp.domain.mcp_input import mcp_command
from portcullis.mcp import template_problem, uri_problem

OUTSIDE = [
    "invoice:////etc/passwd",
    "invoice://7//etc/passwd",
    "file:///srv/public//etc/passwd",
    "file:///srv/public/a//b",
    "file:///srv/public/...",
    "file:///srv/public/..%20/etc/passwd",
    "file:///srv/public/.%09/x",
    "file:///srv/public/%EF%BC%8E%EF%BC%8E/etc/passwd",
    "file:///srv/public/..%E2%88%95etc",
    "file:///srv/public/a%EF%BC%8Fb",
    "file:///srv/public/%C0%AE%C0%AE/etc",
    "file:///srv/public/..;/etc",
    "file:///srv/public/%2e%2e/etc",
    "file:///srv/public/%252e%252e/etc",
    "file:///srv/public/x%00.txt",
    "file:///srv/public/..\\etc",
    "file:///srv/public/\uff0e\uff0e/etc",
]
KEPT = [
    "invoice://7",
    "invoice:///7/a.txt",
    "file:///srv/public/a/b.txt",
    "file:///srv/public/caf%C3%A9.txt",
    "file:///srv/public/a%20b",
    "file:///srv/public/v1.2.",
    "https://h.example/a/b?next=//x#f",
    "db://c/7",
]


def _command(method: str, params: dict[str, Any]) -> dict[str, Any]:
    raw = json.dumps({"endpoint": "/mcp", "method": method, "params": params})
    return mcp_command("mcp.call", raw, {})


def test_uris_a_server_resolves_outside_their_prefix_are_malformed() -> None:
    read_as_malformed(OUTSIDE, KEPT)


def read_as_malformed(refused: list[str], kept: list[str]) -> None:
    """Each of `refused` is a malformed URI to the proxy's check and to the PDP's reading of
    a resources/read; none of `kept` is (test_mcp_probe_p32 too)."""
    for uri in refused:
        assert uri_problem(uri) is not None, uri
        assert _command("resources/read", {"uri": uri}).get("malformed") is True, uri
    for uri in kept:
        assert uri_problem(uri) is None, uri
        assert "malformed" not in _command("resources/read", {"uri": uri}), uri


def test_a_completions_template_is_read_as_its_uri() -> None:
    def completing(uri: str) -> dict[str, Any]:
        ref = {"type": "ref/resource", "uri": uri}
        return _command("completion/complete", {"ref": ref, "argument": {"name": "n"}})

    for kept in ("invoice://{id}", "invoice://{/path*}", "file:///srv/public/{+path}"):
        assert template_problem(kept) is None, kept
        assert "malformed" not in completing(kept), kept
    for odd in ("invoice://../secrets/{name}", "invoice:////{x}", "invoice://%2e%2e/{x}"):
        assert template_problem(odd) is not None, odd
        assert completing(odd).get("malformed") is True, odd


def _files_server(base: Path) -> Any:
    def build(up: Any) -> MCPServer:
        served = MCPServer("billing")

        @served.resource("invoice://{/path*}")
        def invoice_file(path: list[str]) -> str:
            # (what a server writes: the path below its base directory)
            read = PurePosixPath(base) / "/".join(path)
            up.calls.append(str(read))
            return Path(read).read_text()

        return served

    return build


@pytest.mark.integration
async def test_an_empty_segment_reads_no_file_outside_the_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "invoices"
    base.mkdir()
    (base / "7.txt").write_text("invoice 7: 120 EUR")
    secret = tmp_path / "secret.txt"
    secret.write_text("plans of the vault")
    monkeypatch.setattr(test_mcp_proxy, "mcp_server", _files_server(base))
    outside = f"invoice:///{secret}"  # (three slashes, then the absolute path's own)
    async with mcp_stack(tmp_path) as stack:
        reader = stack.token("mallory@example.com", "readonly")
        async with agent(stack, reader) as client:
            kept = await client.read_resource("invoice:///7.txt")
            refused = []
            for uri in (outside, f"invoice:///x/..%20/..%20{secret}"):
                try:
                    got = await client.read_resource(uri)
                except Exception as error:  # (the SDK raises the JSON-RPC error)
                    refused.append(str(error))
                else:
                    refused.append(repr(got))
    assert [c.text for c in kept.contents] == ["invoice 7: 120 EUR"]  # type: ignore[union-attr]
    assert not any("plans of the vault" in r for r in refused), refused
    assert all("resource URI" in r for r in refused), refused
    assert stack.upstream.calls == [str(base / "7.txt")]
