"""A newcomer's walk through README (round 11): "Relative paths in the configuration ...
resolve against the configuration file's folder, not the current directory" holds for the
SSH connection's paths too. `portcullis -c /elsewhere/portcullis.yaml status` run from
another directory said `host key not generated yet` (the default `host_key_dir`, var/ssh,
was read from the current directory), a proxy started there would have made a new host key
and pinned the upstream again, and `credentials.private_key_file: var/web-1.key` (the
example's) was read from the current directory as well."""

from __future__ import annotations

from pathlib import Path

import asyncssh
import pytest
from pdp_harness import pdp_raw

from portcullis.config import parse_config
from proxies.runtime.credentials import StaticProvider
from proxies.ssh.keys import client_keys, host_key, kept_fingerprint


def _ssh_config(tmp: Path, key_file: str) -> object:
    connection = {
        "name": "web-1",
        "type": "ssh",
        "listen": "127.0.0.1:12222",
        "upstream": "127.0.0.1:22",
        "credentials": {"provider": "static", "username": "deploy", "private_key_file": key_file},
    }
    return parse_config(pdp_raw(tmp, connections=[connection]), base_dir=tmp)


def test_ssh_paths_resolve_beside_the_configuration(tmp_path, monkeypatch) -> None:
    config = _ssh_config(tmp_path, "var/web-1.key")
    (connection,) = config.connections  # type: ignore[attr-defined]
    assert connection.options["host_key_dir"] == str(tmp_path / "var" / "ssh")
    assert connection.credentials["private_key_file"] == str(tmp_path / "var" / "web-1.key")
    # the proxy's host key, made once, found again from another directory
    made = host_key(connection)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert kept_fingerprint(connection) == made.get_fingerprint()
    assert not (elsewhere / "var").exists()
    # the upstream key the example names, loaded from another directory
    key = asyncssh.generate_private_key("ssh-ed25519")
    (tmp_path / "var" / "web-1.key").write_bytes(key.export_private_key())
    lease = StaticProvider(connection)._lease
    (loaded,) = client_keys(lease)
    assert loaded.get_fingerprint() == key.get_fingerprint()


@pytest.mark.parametrize("key_file", ["/srv/keys/web-1.key", "${WEB1_KEY}"])
def test_absolute_and_environment_key_files_are_kept_as_given(tmp_path, key_file: str) -> None:
    (connection,) = _ssh_config(tmp_path, key_file).connections  # type: ignore[attr-defined]
    assert connection.credentials["private_key_file"] == key_file


def test_a_configured_host_key_dir_is_kept(tmp_path) -> None:
    raw = pdp_raw(
        tmp_path,
        connections=[
            {
                "name": "web-1",
                "type": "ssh",
                "listen": "127.0.0.1:12222",
                "upstream": "127.0.0.1:22",
                "host_key_dir": "keys",
                "credentials": {"provider": "static", "username": "deploy"},
            }
        ],
    )
    (connection,) = parse_config(raw, base_dir=tmp_path).connections
    assert connection.options["host_key_dir"] == str(tmp_path / "keys")
