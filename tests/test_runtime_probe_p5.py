"""The proxies' shared runtime, probed (p5): the PDP channel in clear beyond this host.

A proxy configured to reach its PDP over the network without TLS (`proxies.pdp.address:
pdp.example:7000`, no ca_file) only logged a warning (probe p3) and went on: every gRPC
call carried the proxy credential in its metadata and every session call a client's
token, in clear, to whoever was on the path, who could then open, record and close
sessions as the proxy and log in upstream-facing sessions with the tokens. The proxy now
does not start: one line naming proxies.pdp.ca_file, exit status 2, no secret; on this
host (loopback, localhost, a Unix socket, 0.0.0.0) nothing changes.

Real components: the PDP (`python -m pdp.cli pdp`, it writes the proxy credential) and
`python -m proxies postgres` as processes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_metrics_proxy import ProxyStack

from pdp.cli import _LenientEnv
from portcullis.config import load_config

pytestmark = pytest.mark.integration


def _proxy_reaching(stack: ProxyStack, address: str) -> subprocess.CompletedProcess[str]:
    raw = dict(stack.raw)
    raw["proxies"] = {**raw.get("proxies", {}), "pdp": {"address": address}}
    path = stack.tmp / f"proxy-{len(list(stack.tmp.glob('proxy-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return subprocess.run(
        [sys.executable, "-m", "proxies", "postgres", "-c", str(path)],
        capture_output=True, text=True, env=stack.env, cwd=stack.tmp, timeout=120,
    )  # fmt: skip


def test_a_proxy_that_would_send_its_credential_in_clear_does_not_start(
    tmp_path: Path,
) -> None:
    stack = ProxyStack(tmp_path, ("p5", "p5", "p5"))
    try:
        stack.start_pdp()  # (it writes the proxy's credential for the PDP)
        config = load_config(stack.path, env=_LenientEnv())
        secret_text = config.pdp.proxy_credential_file.read_text().strip()
        for address in ("pdp.example:7000", "192.0.2.10:7000"):
            ran = _proxy_reaching(stack, address)
            assert ran.returncode == 2, ran.stderr
            assert "proxies.pdp.ca_file" in ran.stderr and "in clear" in ran.stderr
            assert "insecure_plaintext_to_remote_pdp" in ran.stderr  # the way out, named
            assert "Traceback" not in ran.stderr
            assert secret_text and secret_text not in ran.stderr + ran.stdout
    finally:
        stack.close()


def test_the_named_opt_out_starts_and_is_still_warned_of(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """proxies.pdp.insecure_plaintext_to_remote_pdp: true (the compose and Kubernetes
    examples): the proxy starts, the warning stays; the opt-out is a YAML boolean."""
    import logging

    from pdp_harness import pdp_config

    from portcullis.config import ConfigError
    from proxies.runtime.pdp_auth import with_credential
    from proxies.runtime.process import ProcessRuntime

    config = with_credential(
        pdp_config(tmp_path, proxies={"pdp": {"insecure_plaintext_to_remote_pdp": True}}),
        "secret-credential-5678",
    )
    with caplog.at_level(logging.WARNING):
        ProcessRuntime.build("pdp.example:7000", config)
    assert "in clear" in caplog.text and "secret-credential-5678" not in caplog.text
    with pytest.raises(ConfigError, match="insecure_plaintext_to_remote_pdp"):
        pdp_config(tmp_path, proxies={"pdp": {"insecure_plaintext_to_remote_pdp": "true"}})
