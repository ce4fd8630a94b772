"""What a new user trips over on the command line (issue 23): -c anywhere, evidence
without upstream secrets, one-line errors with exit 2, help, config check and status."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import grpc
import pytest
from pdp_harness import REPO
from test_cli import write_config

NO_SECRETS = {
    k: v for k, v in os.environ.items() if k not in ("ORDERS_DB_PASSWORD", "BILLING_TOKEN")
}
SECRETS = {"ORDERS_DB_PASSWORD": "x", "BILLING_TOKEN": "y"}


def run(*args, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "pdp.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env if env is not None else {**os.environ, **SECRETS},
        timeout=120,
    )


@contextlib.contextmanager
def pdp_serving(path, raw) -> Iterator[subprocess.Popen[str]]:
    """`portcullis pdp` on the configuration at `path` (`raw`), without upstream secrets,
    answering on its gRPC port; terminated and reaped after."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pdp.cli", "pdp", "-c", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=NO_SECRETS,
    )  # fmt: skip
    try:
        channel = grpc.insecure_channel(raw["pdp"]["listen"])
        grpc.channel_ready_future(channel).result(timeout=60)
        channel.close()
        yield proc
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def assert_one_line_user_error(result, *words):
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


# -- 2: -c before and after the subcommand, nested, and PORTCULLIS_CONFIG ----------------------


def test_config_option_after_the_subcommand_and_nested(tmp_path):
    path, _ = write_config(tmp_path)
    for args in (
        ("-c", str(path), "token", "--sub", "a"),
        ("token", "--sub", "a", "-c", str(path)),
        ("token", "-c", str(path), "--sub", "a"),
    ):
        result = run(*args, cwd=tmp_path.parent)
        assert result.returncode == 0, (args, result.stderr)
        assert result.stdout.count(".") == 2  # a JWT
    checked = run("config", "check", "-c", str(path), cwd=tmp_path.parent)
    assert checked.returncode == 0, checked.stderr
    # nested: the audit store does not exist yet, and the message names the configured one
    verify = run("audit", "verify", "-c", str(path), cwd=tmp_path.parent)
    assert verify.returncode == 2 and str(tmp_path / "var") in verify.stderr, verify.stderr


def test_portcullis_config_environment_variable(tmp_path):
    path, _ = write_config(tmp_path)
    result = run("token", "--sub", "a", env={**os.environ, "PORTCULLIS_CONFIG": str(path)}, cwd="/")
    assert result.returncode == 0, result.stderr
    # -c wins over the variable
    other = run(
        "token", "--sub", "a", "-c", str(tmp_path / "nope.yaml"),
        env={**os.environ, "PORTCULLIS_CONFIG": str(path)},
    )  # fmt: skip
    assert_one_line_user_error(other, "nope.yaml")


def test_up_help_lists_its_options():
    result = run("up", "--help")
    assert result.returncode == 0
    assert "-c CONFIG, --config CONFIG" in result.stdout
    assert "--verbose" in result.stdout
    assert "config check" in result.stdout
    for args in ((), ("up",), ("audit",), ("approvals",), ("config",)):
        text = run(*args, "--help").stdout
        assert "DESIGN.md" not in text and "../" not in text, text


# -- 3: evidence needs the store and the key, not upstream secrets ----------------------------


def test_evidence_commands_run_without_upstream_secrets(tmp_path):
    path, raw = write_config(tmp_path)
    # the PDP alone needs no connection secret either
    with pdp_serving(path, raw) as proc:
        status = run("status", "-c", str(path), "--format", "json", env=NO_SECRETS)
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["pdp"]["reachable"] and report["pdp"]["policy_revision"]
        assert report["store"]["records"] >= 0 and "chain_head" in report["store"]
        served = {c["name"]: c["served"] for c in report["connections"]}
        assert served == {"orders-db": True, "billing-api": True, "web-1": True}  # issues 25, 26
        assert report["connections"][0]["open_sessions"] == 0
        approvals = run(
            "approvals", "list", "-c", str(path), "--token",
            run("token", "--sub", "sam@example.com", "--groups", "security", "-c", str(path),
                env=NO_SECRETS).stdout.strip(),
            env=NO_SECRETS,
        )  # fmt: skip
        assert approvals.returncode == 0, approvals.stderr
    assert proc.returncode == 0
    for args in (("sessions", "list"), ("audit", "verify")):
        result = run(*args, "-c", str(path), env=NO_SECRETS)
        assert result.returncode == 0, (args, result.stderr)
        assert "ORDERS_DB_PASSWORD" not in result.stderr
    down = run("status", "-c", str(path), env=NO_SECRETS)
    assert down.returncode == 2 and "NOT REACHABLE" in down.stdout


# -- 4: one line, exit 2, no traceback -------------------------------------------------------


def test_policy_eval_with_a_missing_input_file(tmp_path):
    result = run("policy", "eval", "--input", str(tmp_path / "input.json"), cwd=REPO)
    assert_one_line_user_error(result, "input.json", "No such file", "rego/examples")


@pytest.mark.parametrize("example", sorted((REPO / "rego" / "examples").glob("*.json")))
def test_shipped_example_inputs_evaluate(example):
    result = run("policy", "eval", "--input", str(example), cwd=REPO)
    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout)["verdict"]
    expected = {"session-open": "allow", "select-masked": "mask", "drop-denied": "deny",
                "update-needs-approval": "require_approval"}  # fmt: skip
    assert verdict == expected[example.stem]


def test_up_with_the_pdp_port_taken(tmp_path):
    path, raw = write_config(tmp_path)
    host, _, port = raw["pdp"]["listen"].rpartition(":")
    with socket.socket() as taken:
        taken.bind((host, int(port)))
        taken.listen()
        started = time.monotonic()
        result = run("up", "-c", str(path))
    assert_one_line_user_error(result, raw["pdp"]["listen"])
    assert time.monotonic() - started < 60


def test_config_check_reports_what_would_start_and_a_broken_policy(tmp_path):
    path, raw = write_config(tmp_path)
    ok = run("config", "check", "-c", str(path))
    assert ok.returncode == 0, ok.stderr
    assert "proxy orders-db (postgres)" in ok.stdout
    assert "proxy web-1 (ssh): 127.0.0.1:" in ok.stdout  # served since issue 26
    missing = run("config", "check", "-c", str(path), env=NO_SECRETS)
    assert_one_line_user_error(missing, "connections[0].credentials.password", "ORDERS_DB_PASSWORD")
    policies = tmp_path / "policy"
    policies.mkdir()
    (policies / "p.rego").write_text("package portcullis\nbroken if { x == y }\n")
    raw["pdp"]["engine"]["policies"] = str(policies)
    import yaml

    path.write_text(yaml.safe_dump(raw))
    broken = run("config", "check", "-c", str(path))
    assert_one_line_user_error(broken, "unsafe")


def test_audit_verify_says_what_it_counted(tmp_path):
    path, raw = write_config(tmp_path)
    with pdp_serving(path, raw):
        pass
    result = run("audit", "verify", "-c", str(path), env=NO_SECRETS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: 0 audit records (the store is empty)\n")
    assert "signed checkpoints" in result.stdout
    assert "signed credential-never-exposed statements" in result.stdout
    assert "Ed25519 signatures verified" in result.stdout
    assert "sessions: 0 opened in this range" in result.stdout
    assert "head: seq " in result.stdout
