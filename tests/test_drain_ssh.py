"""SIGTERM drains an SSH proxy: a command running through it finishes and its exit status
reaches the OpenSSH client, and a client connected with nothing running is sent
SSH_MSG_DISCONNECT (by application, saying why) — never a dropped TCP connection.

Real processes (`portcullis pdp`, `portcullis proxy ssh`), a real sshd upstream, the
OpenSSH client and asyncssh as clients."""

from __future__ import annotations

import asyncio
import logging

import asyncssh
import pytest
from ssh_harness import Sshd, askpass, client_options, run_client
from test_metrics_proxy import proxy_stack, until
from test_ssh_proxy import ssh_connection

pytestmark = pytest.mark.integration


class Watcher(asyncssh.SSHClient):
    """Keeps how the proxy ended the connection."""

    def __init__(self) -> None:
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


class Heard(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def heard():
    """What asyncssh's client logs (the disconnect it received, with code and reason)."""
    handler = Heard()
    logger = logging.getLogger("asyncssh")
    logger.addHandler(handler)
    asyncssh.set_log_level(logging.DEBUG)
    asyncssh.set_debug_level(1)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        asyncssh.set_log_level(logging.WARNING)


async def test_sigterm_lets_a_command_finish_and_disconnects_with_a_reason(tmp_path, heard):
    sshd = Sshd(tmp_path / "sshd").start()
    try:
        connection = ssh_connection(sshd, tmp_path)
        connection.pop("listen")
        with proxy_stack(tmp_path, kind="ssh", connection=connection, drain_seconds=120) as stack:
            tok = stack.token("dba,pii-readers")
            host, _, port = stack.listen.rpartition(":")
            watcher = Watcher()
            idle, _ = await asyncssh.create_connection(
                lambda: watcher, host, int(port), username=sshd.user, password=tok,
                known_hosts=None, preferred_auth="password",
            )  # fmt: skip
            env = askpass(tmp_path, tok)
            # a dba's shell (a shell is allowed to a dba in pii-readers only) running a
            # command a while
            argv = ["ssh", "-T", "-p", port, *client_options(int(port)), f"{sshd.user}@{host}"]
            script = b"sleep 3\necho slept\n"
            busy = asyncio.ensure_future(run_client(argv, env, script))
            await until(
                lambda: busy.done() or sshd.sessions_started() >= 1, "the shell runs upstream"
            )
            assert not busy.done(), busy.result()
            stack.sigterm_proxy()
            # the connection with nothing running: a disconnect message with the reason
            # (asyncssh reports a disconnect by application as a clean end, None; a TCP
            # connection dropped without one would be ConnectionLost)
            lost = await asyncio.wait_for(watcher.lost, 60)
            assert lost is None
            said = [m for m in heard.messages if "Received disconnect" in m]
            assert said and "shutting down" in said[0]
            assert said[0].endswith(f"({asyncssh.DISC_BY_APPLICATION})")
            # the command in flight ends as it would have, its status to the client
            status, out, err = await asyncio.wait_for(busy, 120)
            assert status == 0, err
            assert out.strip() == b"slept"
            assert stack.proxy is not None
            assert await asyncio.to_thread(stack.proxy.wait, 120) == 0
            idle.close()
    finally:
        sshd.stop()
