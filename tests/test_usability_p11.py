"""A newcomer's walk through README (round 11): the HTTP examples have an upstream to talk
to — deploy/demo/billing_api.py, run as README says — and through the real HTTP proxy on
the shipped policy they answer what README shows (the invoice masked, DELETE refused, the
refund waiting for approval)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from pdp_harness import free_port, pdp_raw, running_pdp, token

from portcullis.config import parse_config
from proxies.http.proxy import HttpProxy
from proxies.launcher import handed_credential

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "deploy" / "demo" / "billing_api.py"
EXAMPLE = "rego/examples/select-masked.json"
README = (ROOT / "README.md").read_text()


@pytest.fixture
def demo_api() -> Iterator[int]:
    """The demo upstream, started as README says (its own port here), until the test ends."""
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, str(DEMO), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().startswith("billing-api demo upstream on")
        yield port
    finally:
        child.terminate()
        child.wait()


def test_readme_says_how_to_run_the_demo_upstream() -> None:
    assert "python3 deploy/demo/billing_api.py &" in README


def test_demo_api_answers_alone(demo_api: int) -> None:
    base = f"http://127.0.0.1:{demo_api}"
    with urllib.request.urlopen(f"{base}/v1/invoices/7") as answer:
        invoice = json.load(answer)
    assert invoice["id"] == 7 and invoice["email"] == "ada@example.com"
    request = urllib.request.Request(f"{base}/v1/refunds", data=b'{"amount": 12}', method="POST")
    with urllib.request.urlopen(request) as answer:
        assert answer.status == 201
        assert json.load(answer) == {"refund": {"amount": 12, "status": "made"}}
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{base}/v1/other")
    assert missing.value.code == 404


async def test_readme_http_examples_through_the_proxy(demo_api: int, tmp_path: Path) -> None:
    connection = {
        "name": "billing-api",
        "type": "http",
        "listen": f"127.0.0.1:{free_port()}",
        "upstream": f"http://127.0.0.1:{demo_api}",
        "credentials": {"provider": "static", "header": "Authorization", "value": "Bearer b-1"},
        "spool_dir": str(tmp_path / "spool"),
    }
    config = parse_config(pdp_raw(tmp_path, connections=[connection]), base_dir=tmp_path)
    async with running_pdp(config) as pdp:
        served = handed_credential(config, "billing-api", pdp.issue_proxy_credential)
        proxy = HttpProxy(served.connections[0], served, pdp.address)
        await proxy.start()
        try:
            bearer = {"Authorization": "Bearer " + token(config, "alice@example.com", ["readonly"])}
            base = f"http://127.0.0.1:{proxy.port}"
            async with aiohttp.ClientSession(headers=bearer) as client:
                async with client.get(f"{base}/v1/invoices/7") as answer:
                    assert answer.status == 200
                    invoice = json.loads(await answer.read())
                async with client.delete(f"{base}/v1/invoices/7") as answer:
                    refused = (answer.status, await answer.json(content_type=None))
                async with client.post(f"{base}/v1/refunds", data=b'{"amount": 12}') as answer:
                    waiting = (answer.status, await answer.json(content_type=None))
        finally:
            await asyncio.shield(proxy.stop())
    # README: {"id":7,"email":"[REDACTED]","customer":{"card_number":"[REDACTED]", ...},
    #          "note":"paid by a***@example.com"}
    assert invoice["email"] == "[REDACTED]"
    assert invoice["customer"]["card_number"] == "[REDACTED]"
    assert invoice["note"] == "paid by a***@example.com"
    assert refused[0] == 403 and refused[1]["reasons"] == ["DELETE is reserved to dba"]
    assert waiting[0] == 202 and waiting[1]["title"] == "approval required"


def _help(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pdp.cli", *args, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return " ".join(done.stdout.split())


def test_top_help_names_every_approvals_and_audit_subcommand() -> None:
    # README's "Evidence and approvals" uses show, withdraw, rotate-key and acknowledge too
    text = _help()
    for word in ("show", "withdraw", "acknowledge", "rotate the key", "export evidence"):
        assert word in text, word


def test_format_option_says_what_each_format_is() -> None:
    replay = _help("replay")
    assert "text (default) for people, json for programs" in replay
    assert "asciicast: the terminal recording" in replay
    listing = _help("sessions", "list")
    assert "text (default) for people, json for programs" in listing
    assert "asciicast" not in listing


def test_output_piped_into_a_reader_that_leaves_is_no_traceback() -> None:
    """`portcullis approvals list | head -3` printed a BrokenPipeError traceback: a reader
    that stops reading early ends the command quietly, with a shell's SIGPIPE status."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pdp.cli",
            "policy",
            "eval",
            "--input",
            EXAMPLE,
            "--policies",
            "rego",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # gone before the command writes its first line
    errors = child.stderr.read()
    assert child.wait(timeout=120) == 141, errors
    assert "Traceback" not in errors and "BrokenPipeError" not in errors, errors


def test_config_check_says_the_example_ssh_key_is_missing(tmp_path: Path) -> None:
    """README: web-1 logs in with var/web-1.key, "created by nobody"; `config check` said
    `proxy web-1 (ssh): ... → 127.0.0.1:22` and nothing more, and every SSH login was then
    refused. It names the file (beside the configuration) and how to make it."""
    from test_cli import write_config

    path, _ = write_config(tmp_path)
    secrets = {"ORDERS_DB_PASSWORD": "x", "BILLING_TOKEN": "y"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def check() -> str:
        done = subprocess.run(
            [sys.executable, "-m", "pdp.cli", "config", "check", "-c", str(path)],
            capture_output=True,
            text=True,
            cwd=elsewhere,
            env={**os.environ, **secrets},
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    key = tmp_path / "var" / "web-1.key"
    missing = check()
    assert f"NOTE: its upstream key {key} cannot be read" in missing
    assert f"ssh-keygen -t ed25519 -N '' -f {key}" in missing
    assert missing.count("NOTE:") == 1  # the Postgres and HTTP connections name no key
    key.parent.mkdir(exist_ok=True)
    key.write_text("a key\n")
    assert "NOTE:" not in check()
