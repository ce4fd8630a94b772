"""A throwaway PostgreSQL 15 cluster with its own pg_hba.conf and settings.

The machine's main server is trust-only (and must be left as it is); tests that need
password authentication, or benchmarks that need more connections, start one of these.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def throwaway_cluster(
    hba: str, settings: dict[str, str] | None = None, setup: list[str] | None = None
) -> Iterator[tuple[int, Path]]:
    """Start a cluster; yields (TCP port, socket directory). `setup` SQL runs as postgres,
    one statement at a time in one session."""
    root = Path(tempfile.mkdtemp(prefix="portcullis-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    port = _free_port()
    run = dict(check=True, capture_output=True, timeout=120)
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    for name, value in (settings or {}).items():
        options += f" -c {name}={value}"
    try:
        subprocess.run(
            as_postgres(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-N",
                    "-E",
                    "UTF8",
                    "--no-locale",
                ]
            ),
            **run,
        )
        (data / "pg_hba.conf").write_text("local all postgres trust\n" + hba)
        subprocess.run(
            as_postgres(
                [
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(data),
                    "-w",
                    "-l",
                    str(root / "log"),
                    "-o",
                    options,
                    "start",
                ]
            ),
            **run,
        )
        if setup:
            subprocess.run(
                as_postgres(
                    [
                        "psql",
                        "-h",
                        str(root),
                        "-p",
                        str(port),
                        "-U",
                        "postgres",
                        "-d",
                        "postgres",
                        "-v",
                        "ON_ERROR_STOP=1",
                        "-q",
                        *[a for sql in setup for a in ("-c", sql)],
                    ]
                ),
                **run,
            )
        yield port, root
    finally:
        subprocess.run(
            as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)
