"""A fresh connection's first exec through the SSH proxy: how long it waits for the upstream.

Owns the figure behind when the proxy starts its upstream connection: sshd, the PDP and
the proxy of `--tree` (a directory holding a tree, or this checkout) in this process
(tests/test_ssh_proxy.ssh_stack, as the tests run them), then `--connects` fresh
connections, each running one `uptime` and leaving. For each, the moments the proxy
started its upstream connection (ClientConnection.upstream_soon), had it up
(_connect's end), received the client's exec request and wrote the exec upstream.
Prints the medians of: upstream started -> exec request (what of the upstream's login
the client's own steps hide), upstream started -> up (the login), exec request -> exec
written upstream (what the exec still waits for). One event loop for all: the client's,
the PDP's and the proxy's work are serialised here as they are not across processes.

    python -u bench/ssh/first_exec_steps.py [--tree DIR] [--connects 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", default=str(REPO), help="a directory holding a tree")
    parser.add_argument("--connects", type=int, default=20)
    args = parser.parse_args()
    tree = Path(args.tree)
    sys.path[:0] = [str(tree), str(tree / "proto"), str(tree / "tests")]
    asyncio.run(run(tree, args.connects))


async def run(tree: Path, n: int) -> None:
    import asyncssh
    from test_ssh_proxy import ssh_stack

    from proxies.ssh import proxy as proxy_module
    from proxies.ssh import upstream as upstream_module
    from proxies.ssh.channel import Channel

    marks: dict[str, float] = {}

    def mark(step: str) -> None:
        marks.setdefault(step, time.perf_counter())

    exec_requested = Channel.exec_requested
    make_request = upstream_module.GatedChannel._make_request
    upstream_soon = proxy_module.ClientConnection.upstream_soon
    connect = proxy_module.ClientConnection._connect

    def on_exec(self: Any, command: str) -> Any:
        mark("exec")
        return exec_requested(self, command)

    async def on_request(self: Any, request: bytes, *args: bytes) -> Any:
        if request == b"exec":
            mark("exec_upstream")
        return await make_request(self, request, *args)

    def on_soon(self: Any) -> None:
        mark("started")
        upstream_soon(self)

    async def on_connect(self: Any) -> Any:
        try:
            return await connect(self)
        finally:
            mark("up")

    Channel.exec_requested = on_exec  # type: ignore[method-assign]
    upstream_module.GatedChannel._make_request = on_request  # type: ignore[method-assign]
    proxy_module.ClientConnection.upstream_soon = on_soon  # type: ignore[method-assign]
    proxy_module.ClientConnection._connect = on_connect  # type: ignore[method-assign]
    steps: dict[str, list[float]] = {"hidden": [], "login": [], "waits": [], "wall": []}
    with tempfile.TemporaryDirectory(prefix="first-exec-") as tmp:
        async with ssh_stack(Path(tmp)) as stack:
            token = stack.token()
            for i in range(n + 2):  # two to warm up
                marks.clear()
                started = time.perf_counter()
                async with asyncssh.connect(
                    "127.0.0.1", stack.port, username="ann", password=token, known_hosts=None,
                    client_keys=None, agent_path=None, config=None, preferred_auth="password",
                ) as conn:  # fmt: skip
                    result = await conn.run("uptime")
                if result.exit_status != 0:
                    raise RuntimeError(f"uptime exited {result.exit_status}")
                if i < 2:
                    continue
                steps["wall"].append(time.perf_counter() - started)
                steps["hidden"].append(marks["exec"] - marks["started"])
                steps["login"].append(marks["up"] - marks["started"])
                steps["waits"].append(marks["exec_upstream"] - marks["exec"])
    ms = {k: statistics.median(v) * 1000 for k, v in steps.items()}
    print(
        f"{tree.name}, {n} fresh connections (medians): upstream started -> exec request "
        f"{ms['hidden']:.2f} ms, started -> up {ms['login']:.1f} ms, exec request -> exec "
        f"written upstream {ms['waits']:.1f} ms; wall {ms['wall']:.1f} ms per connection"
    )


if __name__ == "__main__":
    main()
