"""A connection served by several worker processes (`workers: 2`, one port shared with
SO_REUSEPORT): each worker serves its own /metrics, /readyz at metrics_listen's port +
its number, its series labelled with it, and their sum is the connection's traffic,
whichever worker the kernel gave each client."""

from __future__ import annotations

import socket

import pytest
from pdp_harness import free_port
from test_metrics_proxy import eventually, proxy_stack, value

pytestmark = pytest.mark.integration

SESSIONS = 6


def free_pair() -> int:
    """A port p with p + 1 free as well."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def test_each_worker_serves_its_metrics_and_they_add_up(tmp_path):
    port = free_pair()
    base = f"127.0.0.1:{port}"
    with proxy_stack(tmp_path, options={"workers": 2, "metrics_listen": base}) as stack:
        other = f"127.0.0.1:{port + 1}"
        eventually(lambda: stack.ready(other)[0] == 200, "worker 1 is ready")
        assert stack.ready(other)[1]["worker"] == 1
        reader = stack.token("readonly")
        for _ in range(SESSIONS):
            result = stack.psql(reader, "select count(*) from orders")
            assert result.stdout.strip() == "2", result.stderr

        def settled() -> tuple[dict, dict] | None:
            pages = stack.scrape(base), stack.scrape(other)
            if sum(value(p, "portcullis_proxy_sessions_open") for p in pages):
                return None
            return pages

        first, second = eventually(settled, "every session closed")
        assert value(first, "portcullis_proxy_sessions_total", worker="1") == 0
        assert value(second, "portcullis_proxy_sessions_total", worker="0") == 0
        opened = sum(
            value(page, "portcullis_proxy_sessions_total", outcome="opened", worker=w)
            for page, w in ((first, "0"), (second, "1"))
        )
        assert opened == SESSIONS
        commands = sum(
            value(page, "portcullis_proxy_commands_total", connection="orders-db")
            for page in (first, second)
        )
        assert commands == SESSIONS
        # SIGTERM to the process serving worker 0 drains and ends the other one too
        stack.sigterm_proxy()
        assert stack.proxy is not None and stack.proxy.wait(timeout=120) == 0
        eventually(lambda: stack.ready(other)[0] == 0, "worker 1 has gone")
