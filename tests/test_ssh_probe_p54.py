"""SSH probe, part 54: a client's environment requests, dropped without a trace.

A client may send `env` requests before its exec or shell (OpenSSH's SendEnv and SetEnv:
LANG and LC_*, or an attacker's LD_PRELOAD, BASH_ENV, BASH_FUNC_uptime%%). None of them
reaches the upstream (part 27: the policy decides no environment), and asyncssh answered
each with success, so the client believed it set, and the command's event said nothing of
it: an attempt to preload a library into an allowed command left no evidence.

The command's event now names the variables the client asked to set and the proxy did
not pass (`env_not_passed`), their values never (a client may send a secret so).

Real components: sshd, a PDP on the shipped policy, the SSH proxy, asyncssh's client and
OpenSSH's (`-o SetEnv`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from ssh_harness import askpass, client_options
from test_ssh_proxy import ssh_stack

from pdp.domain.recordings import session_events

pytestmark = pytest.mark.integration

READER = ("readonly",)
SENT = {
    "LD_PRELOAD": "/tmp/p54-S3cret.so",
    "BASH_ENV": "/tmp/p54.sh",
    "BASH_FUNC_uptime%%": "() { id; }",
    "AWS_SECRET_ACCESS_KEY": "S3cret-p54-aws",
}


async def test_env_requests_are_named_in_the_commands_event(tmp_path: Path) -> None:
    async with ssh_stack(tmp_path) as stack:
        async with await stack.connect(READER) as conn:
            ran = await conn.run("uptime", env=SENT)
            refused = await conn.run("cat /etc/shadow", env={"LD_PRELOAD": "/tmp/p54.so"})
            plain = await conn.run("uptime")
        argv = ["ssh", *client_options(stack.port), "-o", "SetEnv=LC_P54=$(id) BASH_ENV=/x",
                "-p", str(stack.port), "ann@127.0.0.1", "uptime"]  # fmt: skip
        client = await asyncio.create_subprocess_exec(
            *argv, env=askpass(stack.tmp, stack.token(READER)),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        await asyncio.wait_for(client.communicate(), 30)
        await stack.proxy.settled()
        events = await session_events(stack.pdp.store)
    assert ran.exit_status == 0 and refused.exit_status == 1 and plain.exit_status == 0
    assert client.returncode == 0
    commands = [e for e in events if e.get("type") == "command"]
    assert [(c["command"], c["details"].get("env_not_passed")) for c in commands] == [
        ("uptime", sorted(SENT)),
        ("cat /etc/shadow", ["LD_PRELOAD"]),
        ("uptime", None),
        ("uptime", ["BASH_ENV", "LC_P54"]),
    ], commands
    assert "S3cret" not in str(events)
