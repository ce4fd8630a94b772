"""The dependency direction of issue 24: proxies and the neutral contract never import the
decision point, and a proxy process never loads it.

An AST check over every module (imports inside functions count), and a real proxy process
(`portcullis proxy postgres`, i.e. `python -m proxies`) in front of a real database, used
by psql, whose loaded modules are then read."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import yaml
from pdp_harness import REPO, free_port
from pg_harness import scratch_database
from test_cli import write_config

PROXIES = REPO / "proxies"
CONTRACT = REPO / "proto" / "portcullis"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", "") == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.add(str(node.args[0].value))
    return found


def offenders(root: Path, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        if "_pb2" in path.name:
            continue
        for module in imported_modules(path):
            if module.split(".")[0] in forbidden:
                out.append(f"{path.relative_to(REPO)} imports {module}")
    return out


def test_proxies_never_import_the_pdp():
    assert offenders(PROXIES, ("pdp",)) == []


def test_the_decision_point_imports_no_proxy_but_to_launch_them():
    """What the PDP shares with proxies lives in the contract (portcullis.*); only its
    command line loads proxies, to run them beside it (`portcullis up`)."""
    found = [o for o in offenders(REPO / "pdp", ("proxies",)) if not o.startswith("pdp/cli/")]
    assert found == []


def test_the_contract_imports_neither_side():
    assert offenders(CONTRACT, ("pdp", "proxies")) == []


def test_the_check_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from pdp.store import x\n    import pdp.cli\n")
    assert imported_modules(module) == {"pdp.store", "pdp.cli"}


# the proxy process; when it has stopped (SIGTERM), the modules it loaded while serving
WRAPPER = """
import sys
target = sys.argv[1]
sys.argv = ["portcullis proxy", *sys.argv[2:]]
from proxies.__main__ import main
status = main()
with open(target, "w") as out:
    out.write("\\n".join(sorted(sys.modules)))
sys.exit(status)
"""


@pytest.mark.integration
def test_a_proxy_process_loads_nothing_of_the_pdp(tmp_path):
    modules = tmp_path / "modules.txt"
    with scratch_database() as (name, role, password):
        path, raw = write_config(tmp_path)
        listen = f"127.0.0.1:{free_port()}"
        raw["connections"] = [
            {
                "name": "orders-db",
                "type": "postgres",
                "listen": listen,
                "upstream": "127.0.0.1:5432",
                "database": name,
                "credentials": {"provider": "static", "username": role, "password": password},
                "spool_dir": str(tmp_path / "spool"),
            }
        ]
        path.write_text(yaml.safe_dump(raw))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTCULLIS")}
        pdp = subprocess.Popen(
            [sys.executable, "-m", "pdp.cli", "pdp", "-c", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        proxy = None
        try:
            channel = grpc.insecure_channel(raw["pdp"]["listen"])
            grpc.channel_ready_future(channel).result(timeout=60)
            channel.close()
            proxy = subprocess.Popen(
                [sys.executable, "-c", WRAPPER, str(modules), "postgres", "-c", str(path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                cwd=tmp_path,
            )  # fmt: skip
            token = subprocess.run(
                [sys.executable, "-m", "pdp.cli", "token", "--sub", "alice@example.com",
                 "--groups", "readonly", "-c", str(path)],
                capture_output=True, text=True, check=True, env=env,
            ).stdout.strip()  # fmt: skip
            host, _, port = listen.rpartition(":")
            dsn = f"host={host} port={port} user=alice dbname={name} sslmode=disable"
            result = None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                result = subprocess.run(
                    ["psql", dsn, "-AtX", "-c", "select name, email from customers order by id",
                     "-c", "drop table customers"],
                    capture_output=True, text=True, env={**env, "PGPASSWORD": token},
                )  # fmt: skip
                if "Connection refused" not in result.stderr:
                    break
                time.sleep(0.2)
            assert result is not None and "Ada|[REDACTED]" in result.stdout, result
            assert "denied" in result.stderr, result.stderr
        finally:
            for process in (proxy, pdp):
                if process is not None:
                    process.terminate()
                    process.communicate(timeout=30)
    loaded = modules.read_text().split()
    assert "proxies.postgres.proxy" in loaded and "portcullis.config" in loaded
    assert [m for m in loaded if m == "pdp" or m.startswith("pdp.")] == []
    assert proxy.returncode == 0, proxy.stderr
