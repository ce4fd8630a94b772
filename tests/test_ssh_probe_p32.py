"""SSH probe, part 32: a local user who takes the SSH proxy's port on the other IP version.

An SSH proxy listening on 127.0.0.1:P left [::1]:P to anyone (credsec's finding, fixed for
the shared runtime's listener in f974e24, which the SSH proxy does not use: asyncssh
listens for it). Linux refuses a second bind only on the same address, and SO_REUSEPORT
only to the same user, so another local user could listen on [::1]:P, and a client
dialling `localhost` (::1 first, as OpenSSH does) would hand that user its token as the
password. The SSH proxy now serves the other loopback's port as well (the same host key,
the same sessions), and refuses to start when someone else holds it.

Real components: sshd upstream, a PDP and the SSH proxy (ssh_probe_stack), a process of
another user (nobody) as the squatter, asyncssh as the client.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket

import asyncssh
import pytest
from ssh_probe_stack import READER, stack_fixture
from test_runtime_probe_p2 import _squat_as_nobody
from test_ssh_proxy import Stack

from proxies.ssh.proxy import SshProxy

pytestmark = pytest.mark.integration

stack = stack_fixture()


async def test_nobody_else_listens_on_the_other_loopback(stack: Stack) -> None:
    squat = await asyncio.to_thread(_squat_as_nobody, stack.port)
    assert squat.startswith("refused"), squat


async def test_the_other_loopback_is_the_same_proxy(stack: Stack) -> None:
    async with asyncssh.connect(
        "::1",
        stack.port,
        username="ann",
        password=stack.token(READER),
        known_hosts=None,
        client_keys=None,
        agent_path=None,
        config=None,
        preferred_auth="password",
    ) as conn:
        host_key = conn.get_server_host_key()
        assert host_key is not None
        assert host_key.get_fingerprint() == stack.proxy.fingerprint
        result = await conn.run("uptime", encoding="utf-8")
    assert result.exit_status == 0, result.stderr


async def test_a_proxy_whose_twin_is_held_does_not_start(stack: Stack) -> None:
    with socket.socket(socket.AF_INET6) as held:
        held.bind(("::1", 0))
        held.listen()
        port = held.getsockname()[1]
        connection = stack.proxy.connection
        twin = dataclasses.replace(connection, listen=f"127.0.0.1:{port}")
        proxy = SshProxy(twin, stack.config, stack.pdp.address)
        with pytest.raises(OSError, match="the other loopback"):
            await proxy.start()
        # (the port it took on 127.0.0.1 was let go: another start may have it)
        with socket.socket() as again:
            again.bind(("127.0.0.1", port))
        await proxy.runtime.stop()
