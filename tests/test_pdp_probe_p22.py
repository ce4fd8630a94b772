"""Probes of the approvals command line, first round of helper idsec6: the approver's
token in clear.

Attack (anyone on the path between an approver and the PDP): `portcullis approvals`
always spoke plaintext gRPC. Against a PDP serving TLS it could not approve at all, so
approvers were pushed to a plaintext PDP; against a PDP elsewhere on the network it sent
the approver's token, which approves, in clear for anyone on the path to replay. Now it
uses the configured TLS (proxies.pdp.ca_file, or --ca-file; a client certificate for a
PDP that asks for one) and refuses to send a token in clear beyond this host.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from certs import make_pki
from pdp_harness import pdp_config, running_pdp, token


def _cli(config: Path, tok: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pdp.cli", "-c", str(config), "approvals", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PORTCULLIS_TOKEN": tok},
    )


def _approver_config(tmp: Path, raw: dict[str, Any]) -> Path:
    path = tmp / "approver.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _engine(config: Any) -> dict[str, str]:
    return {"policies": str(config.pdp.engine.policies)}


def _tls_pdp(tmp: Path, pki: dict[str, Path], mutual: bool) -> Any:
    base = pdp_config(tmp)
    tls = {"cert_file": str(pki["server.pem"]), "key_file": str(pki["server.key"])}
    if mutual:
        tls["client_ca_file"] = str(pki["ca.pem"])
    return pdp_config(
        tmp,
        pdp={
            "listen": base.pdp.listen,
            "engine": {"type": "embedded", "policies": str(base.pdp.engine.policies), "workers": 1},
            "store": {"type": "sqlite", "path": str(tmp / "audit.db")},
            "signing_key": str(tmp / "signing.key"),
            "tls": tls,
        },
    )


async def _lists_over_tls(tmp: Path, mutual: bool) -> None:
    pki = make_pki(tmp)
    config = _tls_pdp(tmp, pki, mutual)
    files = {"ca_file": str(pki["ca.pem"])}
    if mutual:
        files |= {"cert_file": str(pki["client.pem"]), "key_file": str(pki["client.key"])}
    async with running_pdp(config) as pdp:
        path = _approver_config(
            tmp,
            {
                "pdp": {
                    "listen": pdp.address,
                    "engine": _engine(config),
                },
                "proxies": {
                    "pdp": {"address": f"localhost:{pdp.address.rsplit(':', 1)[1]}", **files}
                },
                "identity": {"dev": True, "dev_key": str(config.identity.dev_key)},
            },
        )
        tok = token(config, "sam@example.com", ("security",))
        done = await asyncio.to_thread(_cli, path, tok, "list", "--format", "json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == []


async def test_approvals_reach_a_pdp_serving_tls(tmp_path):
    await _lists_over_tls(tmp_path, mutual=False)


async def test_approvals_present_the_client_certificate_to_a_mutual_tls_pdp(tmp_path):
    await _lists_over_tls(tmp_path, mutual=True)


def _outward_address() -> str:
    """This host's address on its network (no packet is sent: a UDP socket's source)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))
        return str(probe.getsockname()[0])


async def test_no_token_goes_in_clear_to_a_pdp_beyond_this_host(tmp_path):
    host = _outward_address()
    assert not host.startswith("127.")
    received: list[bytes] = []

    async def listen(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(65536))
        writer.close()

    server = await asyncio.start_server(listen, host, 0)
    port = server.sockets[0].getsockname()[1]
    config = pdp_config(tmp_path)
    path = _approver_config(
        tmp_path,
        {
            "pdp": {
                "listen": "127.0.0.1:1",
                "engine": _engine(config),
            },
            "identity": {"dev": True, "dev_key": str(config.identity.dev_key)},
        },
    )
    tok = token(config, "sam@example.com", ("security",))
    async with server:
        for args in (
            ("list",),
            ("approve", "a-1", "--reason", "ok"),
            ("deny", "a-1", "--reason", "no"),
        ):
            done = await asyncio.to_thread(_cli, path, tok, *args, "--pdp", f"{host}:{port}")
            assert done.returncode != 0
            assert "in clear" in done.stderr
    assert not any(received), "the token went in clear"
    assert tok not in done.stderr


def test_loopback_and_unix_sockets_are_this_host():
    from pdp.cli.approvals import on_this_host

    for address in ("127.0.0.1:7000", "[::1]:7000", "localhost:7000", "unix:/run/p.sock",
                    "LOCALHOST:1", "127.8.0.1:5"):  # fmt: skip
        assert on_this_host(address), address
    for address in ("192.0.2.2:7000", "pdp.internal:7000", "[fd00::2]:7000", "0.0.0.0:7000",
                    "localhost.evil.example:1"):  # fmt: skip
        assert not on_this_host(address), address
