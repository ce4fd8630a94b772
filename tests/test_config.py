"""portcullis.yaml: the DESIGN.md example works as written; errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from portcullis.config import ConfigError, load_config, parse_config, resolve_secrets

REPO = Path(__file__).resolve().parent.parent
ENV = {"ORDERS_DB_PASSWORD": "pw", "BILLING_TOKEN": "tok"}


def test_the_shipped_example_loads():
    config = load_config(REPO / "portcullis.yaml", env=ENV)
    assert config.pdp.listen == "127.0.0.1:7000"
    assert config.pdp.engine.type == "embedded"
    assert config.pdp.store.type == "sqlite"
    assert config.identity.dev
    assert [c.name for c in config.connections] == ["orders-db", "billing-api", "web-1"]
    orders = config.connection("orders-db").resolved(ENV)
    assert orders.credentials["password"] == "pw"
    assert config.connection("billing-api").resolved(ENV).credentials["value"] == "Bearer tok"


def test_the_engine_deadline_default_is_the_documented_one():
    """The shipped example names no engine deadline: it gets the documented 1000 ms (the
    parser once kept a default of its own, 250 ms, under which `make up` on a loaded
    2-core host denied psql's `\\d customers` and then refused sessions)."""
    config = load_config(REPO / "portcullis.yaml", env=ENV)
    assert config.pdp.engine.timeout_ms == 1000


def test_missing_environment_variable_is_an_error_naming_key_and_variable():
    config = load_config(REPO / "portcullis.yaml", env={"BILLING_TOKEN": "x"})
    with pytest.raises(ConfigError) as err:
        resolve_secrets(config, env={"BILLING_TOKEN": "x"})
    assert err.value.key == "connections[0].credentials.password"
    assert "ORDERS_DB_PASSWORD" in str(err.value)


def test_reading_the_configuration_needs_no_upstream_secret():
    """Evidence commands (sessions, replay, audit, approvals) load the configuration from a
    second shell: only the proxy that uses a secret may ask for its variable."""
    config = load_config(REPO / "portcullis.yaml", env={})
    orders = config.connection("orders-db")
    assert orders.credentials["password"] == "${ORDERS_DB_PASSWORD}"
    assert not orders.secrets_resolved
    # resolving one connection asks only for its own variables
    _, (billing,) = resolve_secrets(
        config, [config.connection("billing-api")], env={"BILLING_TOKEN": "t"}
    )
    assert billing.credentials["value"] == "Bearer t"


def test_a_secret_is_expanded_once_and_never_parsed_as_yaml():
    config = parse_config(
        {
            "identity": {"dev": True},
            "connections": [
                {
                    "name": "a",
                    "type": "postgres",
                    "listen": "127.0.0.1:1",
                    "upstream": "127.0.0.1:2",
                    "credentials": {"provider": "static", "password": "${PW}"},
                }
            ],
        },
        base_dir=REPO,
    )
    _, (conn,) = resolve_secrets(config, env={"PW": "${OTHER} {a: b}"})
    assert conn.credentials["password"] == "${OTHER} {a: b}"
    assert conn.resolved({}) is conn


def _connection(**options):
    return {
        "identity": {"dev": True},
        "connections": [
            {
                "name": "a",
                "type": "postgres",
                "listen": "127.0.0.1:1",
                "upstream": "127.0.0.1:2",
                "credentials": {"provider": "static", "password": "x"},
                **options,
            }
        ],
    }


@pytest.mark.parametrize(
    ("options", "key", "problem"),
    [
        ({"upstream_tsl": "require"}, "connections[0].upstream_tsl", "unknown key"),
        ({"lisen": "127.0.0.1:3"}, "connections[0].lisen", "unknown key"),
        ({"tls_cert_fiel": "c.pem"}, "connections[0].tls_cert_fiel", "unknown key"),
        ({"upstream_tls": "yes"}, "connections[0].upstream_tls", "is not one of"),
        ({"decision_cache": "off"}, "connections[0].decision_cache", "true or false"),
        ({"pdp_timeout_seconds": "2"}, "connections[0].pdp_timeout_seconds", "seconds"),
        ({"tls_cert_file": "nope.pem"}, "connections[0].tls_cert_file", "does not exist"),
        ({"mcp": True}, "connections[0].mcp", "not an option of postgres"),
        ({"enforce": "no"}, "connections[0].enforce", "true or false"),
    ],
)
def test_connection_options_are_validated(options, key, problem, tmp_path):
    (tmp_path / "rego").mkdir()
    with pytest.raises(ConfigError) as err:
        parse_config(_connection(**options), base_dir=tmp_path)
    assert err.value.key == key, str(err.value)
    assert problem in err.value.problem
    if problem == "unknown key":
        assert str(err.value) == f"configuration error at {key}: unknown key"


def test_connection_option_files_resolve_against_the_config_folder(tmp_path):
    (tmp_path / "rego").mkdir()
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "proxy.crt").write_text("x")
    (tmp_path / "tls" / "proxy.key").write_text("x")
    config = parse_config(
        _connection(
            tls_cert_file="tls/proxy.crt",
            tls_key_file="tls/proxy.key",
            upstream_tls="require",
            decision_cache=False,
            pdp_timeout_seconds=1.5,
        ),
        base_dir=tmp_path,
    )
    options = config.connections[0].options
    assert options["tls_cert_file"] == str(tmp_path / "tls" / "proxy.crt")
    assert options["upstream_tls"] == "require" and options["decision_cache"] is False


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
        ({"identity": {"dev": True, "audience": ""}}, "identity.audience"),
        ({"identity": {"dev": True, "audience": " portcullis"}}, "identity.audience"),
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
