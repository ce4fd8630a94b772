"""The proxies' shared runtime, probed (p3): the proxy's own PDP credential on the wire.

A proxy sent its credential to the PDP over a plain gRPC channel wherever the PDP was
(`proxies.pdp.address: pdp.example:7000`, no ca_file), and said nothing: anyone on the
path could take it and speak to the PDP as the proxy (open sessions, record and close
them). The Vault provider warns of the same for Vault; now the proxy does for the PDP.
No connection is made here: the warning comes as the process's PDP client is built.
Since probe p5 (tests/test_runtime_probe_p5.py) such a proxy does not start at all
unless proxies.pdp.insecure_plaintext_to_remote_pdp says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pdp_harness import pdp_config

from portcullis.config import ConfigError
from proxies.runtime.pdp_auth import with_credential
from proxies.runtime.process import ProcessRuntime


def _warned(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "portcullis.pdp_auth"]


@pytest.mark.parametrize(
    "address",
    ["pdp.example:7000", "10.0.0.5:7000", "dns:///pdp.example:7000", "[2001:db8::1]:7000"],
)
def test_a_credential_sent_in_clear_beyond_this_host_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, address: str
) -> None:
    config = with_credential(pdp_config(tmp_path, connections=[]), "secret-credential-1234")
    with caplog.at_level(logging.WARNING), pytest.raises(ConfigError, match="in clear") as no:
        ProcessRuntime.build(address, config)
    assert "secret-credential-1234" not in caplog.text + str(no.value)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1:7000", "localhost:7000", "[::1]:7000", "unix:/run/pdp.sock", "0.0.0.0:7000"],
)
def test_a_credential_sent_on_this_host_is_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, address: str
) -> None:
    config = with_credential(pdp_config(tmp_path, connections=[]), "secret-credential-1234")
    with caplog.at_level(logging.WARNING):
        ProcessRuntime.build(address, config)
    assert _warned(caplog) == []
