"""The SSH proxy end to end: real sshd upstream, real PDP, real clients (asyncssh, OpenSSH).

Each exec is decided from the command line the PDP parses itself; a denied one never
reaches the upstream (no marker file, no session in sshd's log); an allowed one returns
the upstream's real output and exit status; the upstream key never reaches a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from pdp_harness import REGO, free_port, pdp_config, running_pdp, token
from ssh_harness import Sshd, askpass, client_options, run_client

from pdp.app import PDPApp
from pdp.domain.recordings import session_events
from portcullis.config import Config
from proxies.launcher import handed_credential, start_proxies, stop_proxies
from proxies.ssh.proxy import SshProxy

pytestmark = pytest.mark.integration


@dataclass
class Stack:
    config: Config
    pdp: PDPApp
    proxy: SshProxy
    sshd: Sshd
    tmp: Path

    @property
    def port(self) -> int:
        return int(self.proxy.port)

    def token(self, groups: tuple[str, ...] = ("pii-readers",), sub: str = "ann@x.org") -> str:
        return token(self.config, sub, groups)

    async def connect(self, groups: tuple[str, ...] = ("pii-readers",), **kw: Any) -> Any:
        return await asyncssh.connect(
            "127.0.0.1",
            self.port,
            username="ann",
            password=self.token(groups),
            known_hosts=None,
            client_keys=None,
            agent_path=None,
            config=None,
            preferred_auth="password",
            **kw,
        )


def ssh_connection(
    sshd: Sshd, tmp: Path, credentials: dict[str, Any] | None = None, **options: Any
) -> dict[str, Any]:
    return {
        "name": "web-1",
        "type": "ssh",
        "listen": f"127.0.0.1:{free_port()}",
        "upstream": f"127.0.0.1:{sshd.port}",
        "credentials": credentials
        or {
            "provider": "static",
            "username": sshd.user,
            "private_key_file": str(sshd.user_key),
        },
        "host_key_dir": str(tmp / "keys"),
        "spool_dir": str(tmp / "spool"),
        # room on a shared, loaded machine: past it a decision is a deny (fail closed)
        "pdp_timeout_seconds": 10,
        **options,
    }


def ssh_policy(tmp: Path, *allowed: str, **ssh_data: Any) -> Path:
    """The shipped policy (without its tests) copied under tmp, with more allowed commands
    and data.portcullis.ssh entries set (shell_unmasked=True: a masked dba's shell)."""
    policies = tmp / "rego"
    shutil.copytree(REGO, policies, ignore=shutil.ignore_patterns("*_test.rego"))
    data = json.loads((policies / "data.json").read_text())
    data["portcullis"]["ssh"]["allowed_commands"].extend(allowed)
    data["portcullis"]["ssh"].update(ssh_data)
    (policies / "data.json").write_text(json.dumps(data))
    return policies


@contextlib.asynccontextmanager
async def ssh_stack(
    tmp: Path, trusted_ca: str = "", extra: dict[str, Any] | None = None, **options: Any
) -> AsyncIterator[Stack]:
    """sshd, a PDP and the SSH proxy of connection web-1 (options: the connection's; extra:
    more of the configuration, such as its vault: section)."""
    sshd = Sshd(tmp / "sshd", trusted_ca).start()
    try:
        connection = ssh_connection(sshd, tmp, **options)
        config = pdp_config(tmp, connections=[connection], **(extra or {}))
        async with running_pdp(config) as pdp:
            served = handed_credential(config, "web-1", pdp.issue_proxy_credential)
            proxies = await start_proxies(served.connections, served, pdp.address)
            try:
                proxy = next(p for p in proxies if isinstance(p, SshProxy))
                yield Stack(config, pdp, proxy, sshd, tmp)
            finally:
                await stop_proxies(proxies)
    finally:
        sshd.stop()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with ssh_stack(tmp_path) as s:
        yield s


async def test_allowed_exec_returns_the_upstreams_output_and_status(stack: Stack) -> None:
    async with await stack.connect() as conn:
        up = await conn.run("uptime")
        assert up.exit_status == 0 and "load average" in up.stdout
        missing = await conn.run("cat /var/log/portcullis-no-such-file")
        assert missing.exit_status == 1
        assert "No such file or directory" in missing.stderr
    assert stack.sshd.sessions_started() == 2


async def test_denied_exec_never_reaches_the_upstream(stack: Stack) -> None:
    marker = stack.tmp / "marker"
    async with await stack.connect() as conn:
        for line in (
            f"touch {marker}",
            f"uptime; touch {marker}",
            f"uptime && sh -c 'touch {marker}'",
            f"uptime | xargs touch {marker}",
            f"cat /var/log/$(touch {marker})",
            f"echo $((1)) ; touch {marker}",
        ):
            result = await conn.run(line)
            assert result.exit_status == 1, line
            assert result.stdout == ""
            assert result.stderr.startswith("portcullis: denied: "), result.stderr
    assert not marker.exists()
    assert stack.sshd.sessions_started() == 0
    decisions = await stack.pdp.store.query(kind="decision")
    execs = [d.body for d in decisions if d.body.get("kind") == "ssh.exec"]
    assert len(execs) == 6 and {d["verdict"] for d in execs} == {"deny"}


async def test_an_exec_denied_once_the_upstream_is_up_never_reaches_it(stack: Stack) -> None:
    # once the upstream connection is up, a client's channel is opened upstream as soon as
    # the client opens its own (before its request is known): the open alone, the request
    # only once allowed
    marker = stack.tmp / "marker"
    async with await stack.connect() as conn:
        assert (await conn.run("uptime")).exit_status == 0
        for line in (f"touch {marker}", f"uptime; touch {marker}", f"cat $(touch {marker})"):
            result = await conn.run(line)
            assert result.exit_status == 1, line
            assert result.stderr.startswith("portcullis: denied: "), result.stderr
        again = await conn.run("uptime")
        assert again.exit_status == 0 and "load average" in again.stdout
    assert not marker.exists()
    assert stack.sshd.sessions_started() == 2


async def test_channels_opened_ahead_are_all_closed_after_use(stack: Stack) -> None:
    # each client channel takes an upstream channel opened ahead and leaves one for the
    # next: run, denied or abandoned mid-decision, none stays open but that next one
    marker = stack.tmp / "marker"
    async with await stack.connect() as conn:
        for _ in range(3):
            assert (await conn.run("uptime")).exit_status == 0
            assert (await conn.run(f"touch {marker}")).exit_status == 1
        chan, _ = await conn.create_session(asyncssh.SSHClientSession, "uptime")
        chan.close()  # gone while its request is being decided (or just after)
        await chan.wait_closed()
        assert (await conn.run("uptime")).exit_status == 0
        (client,) = stack.proxy.clients
        upstream_conn: Any = client.upstream

        # the spare for the next channel, and on a root account the one held for reaps
        # (taken by a reap as each command ends, then opened anew: counted once settled)
        def held() -> int:
            return 1 + (client._reserve is not None)

        for _ in range(200):  # closes are answered by sshd
            if not client._reaps and len(upstream_conn._channels) <= held():
                break
            await asyncio.sleep(0.05)
        assert len(upstream_conn._channels) == held()
        assert client._spare is not None and client._spare._ahead is not None
    assert not marker.exists()


async def test_openssh_client_with_the_token_as_password(stack: Stack) -> None:
    env = askpass(stack.tmp, stack.token())
    base = ["ssh", *client_options(stack.port), "-p", str(stack.port), "ann@127.0.0.1"]
    code, out, err = await run_client([*base, "uptime"], env)
    assert code == 0 and b"load average" in out, err
    code, out, err = await run_client([*base, "rm -rf /tmp/nothing; id"], env)
    assert code == 1 and out == b""
    assert b"portcullis: denied: " in err and b'"id" is not an allowed command' in err


async def test_keyboard_interactive_token(stack: Stack) -> None:
    answers = []

    class Client(asyncssh.SSHClient):
        def kbdint_auth_requested(self) -> str:
            return ""

        def kbdint_challenge_received(self, name: Any, instructions: Any, lang: Any,
                                      prompts: Any) -> list[str]:  # fmt: skip
            answers.append([p for p, _ in prompts])
            return [stack.token()] if prompts else []

    async with asyncssh.connect(
        "127.0.0.1", stack.port, username="ann", known_hosts=None, client_keys=None,
        agent_path=None, config=None, preferred_auth="keyboard-interactive",
        client_factory=Client,
    ) as conn:  # fmt: skip
        result = await conn.run("uptime")
    assert result.exit_status == 0
    assert ["Token: "] in answers


async def test_a_bad_token_is_refused(stack: Stack) -> None:
    with pytest.raises(asyncssh.PermissionDenied):
        await asyncssh.connect(
            "127.0.0.1", stack.port, username="ann", password="not-a-token",
            known_hosts=None, client_keys=None, agent_path=None, config=None,
            preferred_auth="password",
        )  # fmt: skip
    rejected = await stack.pdp.store.query(kind="auth.rejected")
    assert [r.body["connection"] for r in rejected] == ["web-1"]
    assert rejected[0].body["client"].startswith("SSH-2.0-AsyncSSH")
    assert not await stack.pdp.store.query(kind="session.open")


async def test_the_host_key_persists_across_restarts(tmp_path: Path) -> None:
    seen = []
    for _ in range(2):
        async with ssh_stack(tmp_path) as s, await s.connect() as conn:
            seen.append(conn.get_server_host_key().get_fingerprint())
        (tmp_path / "sshd").rename(tmp_path / f"sshd-{len(seen)}")
    assert seen[0] == seen[1]
    assert (tmp_path / "keys" / "web-1.host_key").stat().st_mode & 0o077 == 0


async def test_the_upstream_key_never_reaches_the_client(stack: Stack) -> None:
    key_text = stack.sshd.user_key.read_text()
    body = "".join(line for line in key_text.splitlines() if "-----" not in line)
    received = b""
    async with await stack.connect() as conn:
        for line in ("uptime", "df -h", "cat /var/log/nothing", f"cat {stack.sshd.user_key}"):
            result = await conn.run(line, encoding=None)
            received += bytes(result.stdout or b"") + bytes(result.stderr or b"")
    assert body[:40].encode() not in received and b"PRIVATE KEY" not in received
    await stack.proxy.settled()
    closes = await stack.pdp.store.query(kind="session.close")
    summary = closes[0].body.get("summary", {})
    assert summary.get("credential_exposed") == 0 and summary.get("bytes_to_client", 0) > 0


async def test_session_events_record_each_exec(stack: Stack) -> None:
    async with await stack.connect() as conn:
        await conn.run("uptime")
        await conn.run("id")
    await stack.proxy.settled()
    events = await session_events(stack.pdp.store)
    commands = [e for e in events if e["type"] == "command"]
    assert [e["command"] for e in commands] == ["uptime", "id"]
    assert [e["verdict"] for e in commands] == ["allow", "deny"]
    assert commands[0]["details"]["exit_status"] == 0
    assert commands[0]["details"]["stdout_bytes"] > 0
    assert commands[1]["details"]["exit_status"] == 1


async def test_a_key_the_policy_lets_out_is_withheld_and_on_record(tmp_path: Path) -> None:
    """The scan is real: a policy that allows `cat` of the key file would let the key out;
    the output gate (proxies.runtime.exposure) withholds the chunk holding it, and the
    session's close says the key was on its way out (credential_exposed)."""
    key_file = tmp_path / "sshd" / "user_ed25519"
    policies = ssh_policy(tmp_path, f"cat {key_file}")
    async with ssh_stack(tmp_path, extra={"policies": policies}) as stack:
        assert stack.sshd.user_key == key_file
        async with await stack.connect() as conn:
            leaked = await conn.run(f"cat {key_file}")
        await stack.proxy.settled()
        closes = await stack.pdp.store.query(kind="session.close")
    assert "OPENSSH PRIVATE KEY" not in leaked.stdout
    assert closes[0].body["summary"]["credential_exposed"] == 1


async def test_openssh_keyboard_interactive_token(stack: Stack) -> None:
    env = askpass(stack.tmp, stack.token())
    options = [
        "PreferredAuthentications=keyboard-interactive" if o.startswith("PreferredAuth") else o
        for o in client_options(stack.port)
    ]
    code, out, err = await run_client(
        ["ssh", *options, "-p", str(stack.port), "ann@127.0.0.1", "df -h"], env
    )
    assert code == 0 and b"Filesystem" in out, err


async def test_remote_forwarding_is_refused(stack: Stack) -> None:
    async with await stack.connect(("readonly",)) as conn:
        with pytest.raises(asyncssh.ChannelListenError):
            await conn.forward_remote_port("127.0.0.1", 0, "127.0.0.1", 9)
    await stack.proxy.settled()
    decisions = await stack.pdp.store.query(kind="decision")
    forwards = [d.body for d in decisions if d.body.get("kind") == "ssh.forward"]
    assert [(f["raw"], f["verdict"]) for f in forwards] == [("tcpip-forward 127.0.0.1:0", "deny")]


async def test_the_clients_environment_never_reaches_the_upstream(stack: Stack) -> None:
    """`ssh -o SetEnv=BASH_ENV=...`: the upstream sshd accepts BASH_ENV here, and bash -c
    would source it before the allowed command; the proxy passes no variable on."""
    marker = stack.tmp / "sourced"
    script = stack.tmp / "evil.sh"
    script.write_text(f"touch {marker}\n")
    async with await stack.connect(env={"BASH_ENV": str(script)}) as conn:
        result = await conn.run("uptime")
    assert result.exit_status == 0
    assert not marker.exists()
    # the same variable sent to sshd directly is sourced: the test can tell
    async with asyncssh.connect(
        "127.0.0.1", stack.sshd.port, username=stack.sshd.user,
        client_keys=[str(stack.sshd.user_key)], known_hosts=None, agent_path=None,
        config=None, env={"BASH_ENV": str(script)},
    ) as direct:  # fmt: skip
        await direct.run("uptime")
    assert marker.exists()


async def test_an_upstream_with_another_host_key_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other_host"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    async with ssh_stack(tmp_path, upstream_host_key_file=str(other) + ".pub") as stack:
        async with await stack.connect() as conn:
            result = await conn.run("uptime")
        assert stack.sshd.sessions_started() == 0
    assert result.exit_status == 1
    assert "host key is not the one pinned" in result.stderr


async def test_the_upstream_key_is_pinned_at_first_use(stack: Stack) -> None:
    async with await stack.connect() as conn:
        assert (await conn.run("uptime")).exit_status == 0
    pinned = stack.tmp / "keys" / "web-1.upstream.pub"
    assert pinned.read_text().split()[:2] == stack.sshd.host_public_key.read_text().split()[:2]


async def test_a_repeated_exec_reuses_its_answer_and_each_run_is_recorded(stack: Stack) -> None:
    """The policy lets an allowed exec's answer be reused for the same command line of the
    same session (rego: decision.rego's cache hint for ssh.exec): the PDP is asked once,
    every run still reaches the upstream and is recorded, a denied one is asked each time."""
    async with await stack.connect() as conn:
        for _ in range(3):
            assert (await conn.run("uptime")).exit_status == 0
        for _ in range(2):
            assert (await conn.run("id")).exit_status == 1  # denied: never reused
        assert (await conn.run("uptime -p")).exit_status == 0  # another line: asked
    async with await stack.connect() as other:  # another session asks again
        assert (await other.run("uptime")).exit_status == 0
    await stack.proxy.settled()
    decisions = await stack.pdp.store.query(kind="decision")
    asked = [d.body["raw"] for d in decisions if d.body.get("kind") == "ssh.exec"]
    assert sorted(asked) == ["id", "id", "uptime", "uptime", "uptime -p"]
    assert stack.sshd.sessions_started() == 5
    commands = [e for e in await session_events(stack.pdp.store) if e["type"] == "command"]
    ran = [e["command"] for e in commands]
    assert ran.count("uptime") == 4 and ran.count("id") == 2 and ran.count("uptime -p") == 1
