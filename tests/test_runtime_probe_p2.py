"""The proxies' shared runtime, probed (p2): a local user who takes the proxy's port on
the other IP version.

A proxy listening on 127.0.0.1:P left [::1]:P to anyone: Linux refuses a second bind only
on the same address (and SO_REUSEPORT only to the same user), so another local user could
listen on [::1]:P, and a client dialling `localhost:P` (::1 first, as libpq, Go and
Python clients do) handed that user its start-up: the token it sends as its password.
The listener now serves the twin loopback's port too (the same host), and refuses to start
when someone else holds it already.

Real components: a PDP and the Postgres proxy in process (pg_harness), a process of
another user (nobody) as the squatter, libpq-style raw start-up as the client.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import asyncpg
import pytest
from pg_harness import gateway_on, running_gateway, scratch_database

pytestmark = pytest.mark.integration

NOBODY = 65534
# an interpreter another user may run (this one may live under /root)
PYTHON = "/usr/bin/python3"

SQUAT = """
import socket, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
try:
    s.bind(("::1", port))
    s.listen()
except OSError as exc:
    print("refused", exc.errno)
else:
    print("listening")
"""


def _squat_as_nobody(port: int) -> str:
    """What another local user gets trying to listen on [::1]:port."""
    result = subprocess.run(
        # setpriv changes user after exec: user= would fork this process, running gRPC's
        # fork handlers in the child (they have crashed it with SIGSEGV)
        [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            PYTHON,
            "-I",
            "-c",
            SQUAT,
            str(port),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
        cwd="/",
    )
    return result.stdout.strip()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_this_host_has_ipv6_loopback_and_another_user() -> None:
    """The tests below need both (the attack needs them too)."""
    assert _ipv6_loopback()
    assert _squat_as_nobody(0) == "listening"


async def test_another_user_cannot_listen_on_the_proxys_port_over_ipv6(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        port = gw.proxy.port
        assert _squat_as_nobody(port).startswith("refused")
        # a client dialling ::1 (localhost) is the proxy's, as one dialling 127.0.0.1 is
        conn = await asyncpg.connect(
            host="::1", port=port, user="agent", password=gw.token(), database=gw.database,
            ssl=False,
        )  # fmt: skip
        try:
            assert await conn.fetchval("select name from customers where id = 2") == "Bob"
        finally:
            await conn.close()
    # the twin is let go with the listener
    assert _squat_as_nobody(port) == "listening"


async def test_a_proxy_whose_ipv6_twin_is_taken_does_not_start(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    squatter = socket.socket(socket.AF_INET6)
    squatter.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    squatter.bind(("::1", port))
    squatter.listen()
    try:
        with (
            scratch_database() as (name, role, password),
            pytest.raises(OSError, match=r"another process holds \[::1\]"),
        ):
            async with gateway_on(
                tmp_path, name, role, password, options={"listen": f"127.0.0.1:{port}"}
            ):
                pass
    finally:
        squatter.close()
