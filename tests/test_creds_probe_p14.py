"""Credentials probe 14 (helper auditsec9): private files and secrets others on the host may read.

Attack (a local user of the PDP's host, no Portcullis role): read a key file the PDP uses.
A signing key, proxy key or dev issuer key readable by every user was only warned of and
used: whoever read the signing key signs evidence, the proxy key makes proxy credentials,
the dev key signs any identity. Such a file now stops start-up with a ConfigError naming
the key, the file and the chmod to run (as OpenSSH refuses such a key), unless
`pdp.insecure_readable_key_files: true` says so (then warned of at each read, and shown by
`status`); the PDP's TLS key and a proxy's TLS key and credential file alike. A
configuration file every user may read that holds secrets inline (not `${NAME}`) is
warned of at every start and by `status` / `config check`, naming the keys and the chmod.
An evidence forwarder posting to plain HTTP on another host (every audit record, and its
Authorization header, in clear to whoever is on the path) is refused like the IdP is,
unless its `insecure_plain_http_to_remote: true`, then warned of at every start.

Real components: the PDP (PDPApp) with its SQLite store, the `portcullis` CLI, the
proxy's PDP client settings, files on disk with real modes.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
import yaml
from pdp_harness import pdp_config, pdp_raw, running_pdp
from test_identity_probe_p10 import _outward_address
from test_pdp_probe_p8 import _cli

from pdp.domain.identity import DevIssuer
from portcullis.config import ConfigError, load_config, parse_config
from proxies.runtime.pdp_auth import client_auth

OPT_OUT = "insecure_readable_key_files"


async def _started(config) -> None:
    async with running_pdp(config):
        pass


@pytest.mark.parametrize("which", ["signing_key", "proxy_key"])
async def test_a_pdp_key_every_user_reads_stops_the_start(tmp_path, which):
    config = pdp_config(tmp_path, pdp={**pdp_raw(tmp_path)["pdp"], "proxy_key": str(
        tmp_path / "proxy.key")})  # fmt: skip
    await _started(config)  # (made 0600 on the first start)
    path = Path(getattr(config.pdp, which))
    path.chmod(0o644)
    with pytest.raises(ConfigError) as refused:
        await _started(config)
    assert refused.value.key == f"pdp.{which}"
    assert str(path) in refused.value.problem and f"chmod 600 {path}" in refused.value.problem
    assert f"pdp.{OPT_OUT}: true" in refused.value.problem


async def test_the_opt_out_starts_and_says_so(tmp_path, caplog):
    raw = pdp_raw(tmp_path)
    config = pdp_config(tmp_path)
    await _started(config)
    config.pdp.signing_key.chmod(0o644)
    opted = pdp_config(tmp_path, pdp={**raw["pdp"], OPT_OUT: True})
    with caplog.at_level(logging.WARNING, logger="portcullis.config"):
        await _started(opted)
    warned = [
        r.getMessage() for r in caplog.records if "INSECURE pdp.signing_key" in r.getMessage()
    ]
    assert warned and str(config.pdp.signing_key) in warned[0]
    path = tmp_path / "portcullis.yaml"
    path.write_text(yaml.safe_dump({**raw, "pdp": {**raw["pdp"], OPT_OUT: True}}))
    path.chmod(0o600)
    status = await asyncio.to_thread(_cli, path, "status")
    assert f"WARNING: INSECURE pdp.{OPT_OUT}" in status.stdout, status.stdout


def test_the_dev_issuer_key_every_user_reads_is_refused(tmp_path):
    config = pdp_config(tmp_path)
    DevIssuer(config.identity)
    Path(config.identity.dev_key).chmod(0o604)
    with pytest.raises(ConfigError) as refused:
        DevIssuer(config.identity)
    assert refused.value.key == "identity.dev_key"


def test_a_proxy_credential_or_tls_key_every_user_reads_is_refused(tmp_path):
    credential = tmp_path / "proxy.credential"
    credential.write_text("pcp1.x.y\n")
    credential.chmod(0o644)
    config = pdp_config(tmp_path, proxies={"pdp": {"credential_file": str(credential)}})
    with pytest.raises(ConfigError) as refused:
        client_auth(config)
    assert refused.value.key == "proxies.pdp.credential_file"
    credential.chmod(0o600)
    assert client_auth(config)["metadata"]
    key = tmp_path / "proxy.key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    key.chmod(0o644)
    cert = tmp_path / "proxy.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    tls = pdp_config(tmp_path, proxies={"pdp": {"cert_file": str(cert), "key_file": str(key)}})
    with pytest.raises(ConfigError) as refused:
        client_auth(tls)
    assert refused.value.key == "proxies.pdp.key_file" and "chmod 600" in refused.value.problem


async def test_inline_secrets_in_a_file_every_user_reads_are_warned_of(tmp_path, caplog):
    raw = pdp_raw(tmp_path)
    path = tmp_path / "portcullis.yaml"
    path.write_text(yaml.safe_dump(raw))  # the connection's password "x", inline
    path.chmod(0o644)
    config = load_config(path)
    (warning,) = config.warnings
    assert "connections[0].credentials.password" in warning and f"chmod 600 {path}" in warning
    with caplog.at_level(logging.WARNING, logger="portcullis.pdp"):
        await _started(config)
    assert any(warning == r.getMessage() for r in caplog.records)
    checked = await asyncio.to_thread(_cli, path, "config", "check")
    assert "WARNING: INSECURE configuration" in checked.stdout, checked.stdout
    path.chmod(0o600)
    assert load_config(path).warnings == ()
    raw["connections"][0]["credentials"]["password"] = "${ORDERS_PASSWORD}"
    path.write_text(yaml.safe_dump(raw))
    path.chmod(0o644)
    assert load_config(path, env={"ORDERS_PASSWORD": "x"}).warnings == ()


def _forwarding(tmp_path: Path, url: str, **more) -> object:
    raw = pdp_raw(tmp_path, forwarding=[{"type": "http", "url": url, **more}])
    return parse_config(raw, base_dir=tmp_path)


async def test_a_forwarder_in_clear_to_another_host_is_refused(tmp_path, caplog):
    url = f"http://{_outward_address()}:9/in"
    with pytest.raises(ConfigError) as refused:
        _forwarding(tmp_path, url, headers={"Authorization": "Splunk abc"})
    assert refused.value.key == "forwarding[0].url"
    assert "insecure_plain_http_to_remote: true" in refused.value.problem
    for fine in ("http://127.0.0.1:9/in", "https://siem.example.com/in"):
        _forwarding(tmp_path, fine)
    opted = _forwarding(tmp_path, url, insecure_plain_http_to_remote=True)
    with caplog.at_level(logging.WARNING, logger="portcullis.pdp"):
        await _started(opted)
    assert any(
        "INSECURE forwarding[0]" in r.getMessage() and url in r.getMessage() for r in caplog.records
    )
