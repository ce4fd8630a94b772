"""Attacks on the upstream credential (probe p9): Vault reached in clear.

`vault.addr: http://vault:8200` (another host, plain HTTP) only logged a warning: the proxy
started, and its Vault token (X-Vault-Token on every request) and every dynamic password
Vault issued crossed the network readable and changeable by anyone on the path. An
attacker there answers as Vault too: the proxy would take its "credential" and log in to
the upstream with it. The proxy now refuses to start on such an address, one line naming
vault.addr and no secret; loopback stays allowed (the same host), and a deployment that
means it must say so by name (vault.auth.insecure_plain_http_to_remote_vault: true, a YAML
true, not a string), and is still warned at every start.

Real components: `python -m proxies postgres` (the proxy's own process and exit status).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_metrics_proxy import ProxyStack

from portcullis.config import ConfigError, ConnectionSettings, VaultSettings
from proxies.runtime.vault import INSECURE_PLAIN_HTTP, VaultProvider

TOKEN = "hvs.p9-never-shown"
CONNECTION = ConnectionSettings(name="t", type="postgres", listen="127.0.0.1:1",
                                upstream="127.0.0.1:2")  # fmt: skip


@pytest.mark.integration
def test_a_proxy_whose_vault_is_plain_http_to_another_host_does_not_start(tmp_path: Path) -> None:
    stack = ProxyStack(
        tmp_path,
        ("p9", "p9", "p9"),
        options={"credentials": {"provider": "vault", "ref": "database/creds/p9"}},
    )
    stack.raw["vault"] = {
        "addr": "http://vault.invalid:8200",
        "auth": {"method": "token", "token": TOKEN},
    }
    stack.path.write_text(yaml.safe_dump(stack.raw))
    try:
        stack.start_pdp()  # (it writes the proxy's credential for the PDP)
        ran = subprocess.run(
            [sys.executable, "-m", "proxies", "postgres", "-c", str(stack.path)],
            capture_output=True, text=True, env=stack.env, cwd=tmp_path, timeout=120,
        )  # fmt: skip
    finally:
        stack.close()
    assert ran.returncode == 2, ran.stderr
    assert "vault.addr" in ran.stderr and "plain HTTP" in ran.stderr
    assert INSECURE_PLAIN_HTTP in ran.stderr  # the way out is named, not guessed
    assert "Traceback" not in ran.stderr
    assert TOKEN not in ran.stderr + ran.stdout


@pytest.mark.parametrize(
    "addr",
    ["http://vault:8200", "http://192.0.2.1:8200", "http://[2001:db8::1]:8200",
     "http://localhost.:8200", "http://0.0.0.0:8200", "http://[::ffff:127.0.0.1]:8200"],
)  # fmt: skip
def test_plain_http_to_another_host_is_refused_where_the_provider_is_built(addr: str) -> None:
    with pytest.raises(ConfigError, match=r"vault\.addr") as refused:
        VaultProvider(CONNECTION, VaultSettings(addr, {"method": "token", "token": TOKEN}))
    assert TOKEN not in str(refused.value)


@pytest.mark.parametrize("opt_out", ["true", "yes", 1, "True"])
def test_only_a_literal_true_opts_out(opt_out: object) -> None:
    """An environment variable expands to a string: "true" is not the deliberate YAML true."""
    auth = {"method": "token", "token": TOKEN, INSECURE_PLAIN_HTTP: opt_out}
    with pytest.raises(ConfigError, match=r"vault\.addr"):
        VaultProvider(CONNECTION, VaultSettings("http://vault:8200", auth))


def test_the_named_opt_out_starts_and_still_warns(caplog: pytest.LogCaptureFixture) -> None:
    auth = {"method": "token", "token": TOKEN, INSECURE_PLAIN_HTTP: True}
    with caplog.at_level(logging.WARNING, logger="portcullis.vault"):
        VaultProvider(CONNECTION, VaultSettings("http://vault:8200", auth))
    assert "Vault at http://vault:8200 is plain HTTP" in caplog.text
    assert TOKEN not in caplog.text


@pytest.mark.parametrize(
    "addr",
    ["http://127.0.0.1:8200", "http://127.3.2.1:8200", "http://localhost:8200",
     "http://[::1]:8200", "https://vault:8200"],
)  # fmt: skip
def test_loopback_and_https_start_without_a_word(
    addr: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="portcullis.vault"):
        VaultProvider(CONNECTION, VaultSettings(addr, {"method": "token", "token": TOKEN}))
    assert "plain HTTP" not in caplog.text


@pytest.mark.parametrize(
    "addr", ["https://admin:p9-addr-secret@vault:8200", "https://p9-addr-secret@vault:8200"]
)
def test_a_vault_address_carrying_a_password_stops_the_start(addr: str) -> None:
    """Every "Vault at <addr> is unreachable" (logged, and told to the client refused a
    session) carried the password written into the address."""
    with pytest.raises(ConfigError, match="user or password") as refused:
        VaultProvider(CONNECTION, VaultSettings(addr, {"method": "token", "token": TOKEN}))
    assert "p9-addr-secret" not in str(refused.value)
