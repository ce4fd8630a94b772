"""The proxies' shared runtime, probed (p4): a local user who takes the health port on
the other IP version.

A proxy's /metrics, /healthz and /readyz (proxies.runtime.health, `metrics_listen`) on
127.0.0.1:P left [::1]:P to anyone (probe p2 closed it for the proxy's own listener): a
process of another user listening there answered every scraper and load-balancer probe
dialling `localhost:P` (::1 first) with what it chose — "ready" for a proxy that is down,
counters of its making. The health server now serves the twin loopback's port too and
refuses to start when someone else holds it.

Real components: a PDP and the Postgres proxy in process (pg_harness), a process of
another user (nobody) as the squatter, aiohttp as the scraper.
"""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp
import pytest
from pg_harness import running_gateway
from test_runtime_probe_p2 import _squat_as_nobody

from proxies.runtime.health import HealthServer

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket(socket.AF_INET) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_another_user_cannot_answer_the_health_port_over_ipv6(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        health = HealthServer(gw.proxy.runtime, "127.0.0.1:0")
        await health.start()
        try:
            port = health.port
            assert _squat_as_nobody(port).startswith("refused")
            # a scraper dialling ::1 (localhost) reads this proxy, as one dialling 127.0.0.1
            async with aiohttp.ClientSession() as http:
                for host in ("127.0.0.1", "[::1]"):
                    async with http.get(f"http://{host}:{port}/healthz") as answer:
                        assert answer.status == 200
                        assert await answer.json() == {"status": "ok"}
                    async with http.get(f"http://{host}:{port}/metrics") as answer:
                        assert "portcullis_proxy_sessions_open" in await answer.text()
        finally:
            await health.stop()
    # the twin is let go with the server
    assert _squat_as_nobody(port) == "listening"


async def test_a_health_server_whose_ipv6_twin_is_taken_does_not_start(tmp_path: Path) -> None:
    port = _free_port()
    squatter = socket.socket(socket.AF_INET6)
    squatter.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    squatter.bind(("::1", port))
    squatter.listen()
    try:
        async with running_gateway(tmp_path) as gw:
            health = HealthServer(gw.proxy.runtime, f"127.0.0.1:{port}")
            with pytest.raises(OSError, match=r"another process holds \[::1\]"):
                await health.start()
            assert not gw.proxy.runtime.serving
        # and it let 127.0.0.1:P go
        with socket.socket(socket.AF_INET) as again:
            again.bind(("127.0.0.1", port))
    finally:
        squatter.close()
