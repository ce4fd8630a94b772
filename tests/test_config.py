"""portcullis.yaml: the DESIGN.md example works as written; errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pdp.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parent.parent
ENV = {"ORDERS_DB_PASSWORD": "pw", "BILLING_TOKEN": "tok"}


def test_the_shipped_example_loads():
    config = load_config(REPO / "portcullis.yaml", env=ENV)
    assert config.pdp.listen == "127.0.0.1:7000"
    assert config.pdp.engine.type == "embedded"
    assert config.pdp.store.type == "sqlite"
    assert config.identity.dev
    assert [c.name for c in config.connections] == ["orders-db", "billing-api", "web-1"]
    assert config.connection("orders-db").credentials["password"] == "pw"
    assert config.connection("billing-api").credentials["value"] == "Bearer tok"


def test_missing_environment_variable_is_an_error_naming_key_and_variable():
    with pytest.raises(ConfigError) as err:
        load_config(REPO / "portcullis.yaml", env={"BILLING_TOKEN": "x"})
    assert err.value.key == "connections[0].credentials.password"
    assert "ORDERS_DB_PASSWORD" in str(err.value)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"pdp": {"listen": "7000"}}, "pdp.listen"),
        ({"pdp": {"engine": {"type": "wasm"}}}, "pdp.engine.type"),
        ({"pdp": {"engine": {"timeout_ms": 0}}}, "pdp.engine.timeout_ms"),
        ({"pdp": {"store": {"type": "postgres"}}}, "pdp.store.dsn"),
        ({"pdp": {"store": {"synchronous": "off"}}}, "pdp.store.synchronous"),
        (
            {
                "pdp": {
                    "store": {"type": "postgres", "dsn": "postgresql://x", "synchronous": "normal"}
                }
            },
            "pdp.store.synchronous",
        ),
        ({"pdp": {"tls": {"cert_file": "nope.pem", "key_file": "nope.key"}}}, "pdp.tls.cert_file"),
        ({"identity": {}}, "identity.issuer"),
        ({"approvals": {"timeout_seconds": "soon"}}, "approvals.timeout_seconds"),
        ({"vault": {"addr": "http://v", "auth": {"method": "password"}}}, "vault.auth.method"),
        ({"connections": [{"name": "a", "type": "ftp"}]}, "connections[0].type"),
        (
            {
                "connections": [
                    {
                        "name": "a",
                        "type": "http",
                        "listen": "x:1",
                        "upstream": "u",
                        "credentials": {"provider": "static"},
                    },
                    {"name": "a", "type": "http"},
                ]
            },
            "connections[1].name",
        ),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_errors_name_the_key(raw, key, tmp_path):
    raw.setdefault("identity", {"dev": True})
    (tmp_path / "rego").mkdir()
    with pytest.raises(ConfigError) as err:
        parse_config(raw, base_dir=tmp_path)
    assert err.value.key == key, str(err.value)


def test_relative_paths_resolve_against_the_config_file(tmp_path):
    (tmp_path / "rego").mkdir()
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"identity": {"dev": True}}))
    config = load_config(tmp_path / "c.yaml")
    assert config.pdp.store.path == tmp_path / "var" / "portcullis.db"
    assert config.pdp.engine.policies == tmp_path / "rego"
