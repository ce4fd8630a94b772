"""The `portcullis` console script, run as a user would run it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import grpc
import jwt
import pytest
import yaml
from pdp_harness import REGO, REPO, free_port

from portcullis.v1 import pdp_pb2, pdp_pb2_grpc
from portcullis.wire import CREDENTIAL_METADATA


def portcullis(*args, cwd=None, env=None, input=None):
    return subprocess.run(
        [sys.executable, "-m", "pdp.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        input=input,
        timeout=120,
    )


def write_config(tmp_path, **overrides):
    # the example writes ${VAR} inside flow mappings, which only portcullis's loader accepts
    text = (REPO / "portcullis.yaml").read_text()
    raw = yaml.safe_load(text.replace("${ORDERS_DB_PASSWORD}", '"${ORDERS_DB_PASSWORD}"'))
    raw["pdp"]["engine"]["policies"] = str(REGO)
    raw["pdp"]["listen"] = f"127.0.0.1:{free_port()}"
    raw["pdp"]["http_listen"] = f"127.0.0.1:{free_port()}"
    raw["pdp"]["engine"]["workers"] = 1
    for connection in raw["connections"]:
        # a `make up` in another shell holds the example's ports (README: the two commands)
        connection["listen"] = f"127.0.0.1:{free_port()}"
    for key, value in overrides.items():
        raw[key] = value
    path = tmp_path / "portcullis.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, raw


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda raw: raw["pdp"]["store"].update(type="mysql"), "pdp.store.type"),
        (lambda raw: raw["pdp"].update(listen="nowhere"), "pdp.listen"),
        (lambda raw: raw["pdp"]["engine"].update(type="remote"), "pdp.engine.url"),
        (lambda raw: raw["connections"][0].update(type="mysql"), "connections[0].type"),
        (lambda raw: raw["identity"].update(dev=False), "identity.issuer"),
        (lambda raw: raw["identity"].update(algorithms=["none"]), "identity.algorithms"),
        (lambda raw: raw["pdp"].update(colour="blue"), "pdp.colour"),
    ],
)
def test_configuration_errors_name_the_key(tmp_path, mutate, key):
    path, raw = write_config(tmp_path)
    mutate(raw)
    path.write_text(yaml.safe_dump(raw))
    result = portcullis(
        "-c", str(path), "pdp", env={"ORDERS_DB_PASSWORD": "x", "BILLING_TOKEN": "y"}
    )
    assert result.returncode == 2
    assert key in result.stderr


def test_missing_environment_variable_names_key_and_variable(tmp_path):
    path, _ = write_config(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("ORDERS_DB_PASSWORD",)}
    result = subprocess.run(
        # `up` starts the orders-db proxy, the one place that reads its password
        [sys.executable, "-m", "pdp.cli", "-c", str(path), "up"],
        capture_output=True,
        text=True,
        env={**env, "BILLING_TOKEN": "y"},
        timeout=60,
    )
    assert result.returncode == 2
    assert "ORDERS_DB_PASSWORD" in result.stderr
    assert "connections[0].credentials.password" in result.stderr


def test_token_prints_only_a_dev_token(tmp_path):
    path, _ = write_config(tmp_path)
    result = portcullis(
        "-c", str(path), "token", "--sub", "alice", "--groups", "readonly,analyst", "--ttl", "1h"
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert "\n" not in token
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "alice" and claims["groups"] == ["readonly", "analyst"]
    assert 3500 < claims["exp"] - claims["iat"] <= 3600
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"


def test_policy_eval_prints_the_decision(tmp_path):
    policy_input = {
        "identity": {"subject": "alice", "groups": ["readonly"]},
        "connection": {"name": "orders-db", "type": "postgres"},
        "command": {"kind": "postgres.query", "raw": "select 1; drop table customers"},
    }
    (tmp_path / "input.json").write_text(json.dumps(policy_input))
    result = portcullis(
        "policy", "eval", "--policies", str(REGO), "--input", str(tmp_path / "input.json")
    )
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)
    assert decision["verdict"] == "deny" and decision["reasons"]


def test_policy_test_runs_the_shipped_library():
    """The command line over the shipped library (a part of it: `make test` runs all of it
    with --threshold 90 before pytest, and test_policy_library holds the whole run)."""
    result = portcullis("policy", "test", str(REGO), "--run", "test_ssh_")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "coverage" in result.stdout and "PASS: " in result.stdout


def test_up_serves_until_sigterm(tmp_path):
    path, raw = write_config(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pdp.cli", "-c", str(path), "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "ORDERS_DB_PASSWORD": "x", "BILLING_TOKEN": "y"},
    )
    try:
        channel = grpc.insecure_channel(raw["pdp"]["listen"])
        grpc.channel_ready_future(channel).result(timeout=30)
        # ServerInfo answers a proxy only (tests/test_pdp_probe_p30.py): the local credential
        credential = (tmp_path / "var" / "proxy.credential").read_text().strip()
        info = pdp_pb2_grpc.DecisionServiceStub(channel).ServerInfo(
            pdp_pb2.ServerInfoRequest(), metadata=((CREDENTIAL_METADATA, credential),)
        )
        assert info.engine == "embedded" and info.policy_revision
        channel.close()
        assert (tmp_path / "var" / "signing.key").exists()
        # /metrics answers a scrape with the credential `metrics credential` writes, only
        scraped = tmp_path / "scrape.credential"
        made = portcullis("-c", str(path), "metrics", "credential", "--out", str(scraped))
        assert made.returncode == 0, made.stderr
        assert scraped.stat().st_mode & 0o777 == 0o600
        metrics = f"http://{raw['pdp']['http_listen']}/metrics"
        bearer = {"Authorization": f"Bearer {scraped.read_text().strip()}"}
        with urllib.request.urlopen(urllib.request.Request(metrics, headers=bearer)) as ok:
            assert b"portcullis_decisions_total" in ok.read()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(metrics)
        assert refused.value.code == 401
    finally:
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
