"""A decided exec's way through the SSH proxy, where the upstream work overlaps the Decide.

Once the client connection's upstream is up, each client channel takes an upstream session
channel opened ahead (the open alone, before the request is known: proxies/ssh/upstream.py)
and the next one is opened once this channel's request is answered. Against a real sshd
and PDP: a denied exec on such a channel never reaches sshd (no session in its log, no
marker file) and the channel is closed; while an exec waits for approval its channel
opened ahead stays open carrying nothing, and no other is opened for the next; the
client's abort or the approver's refusal closes it, and nothing ran.

An exec's Decide is written before the proxy answers the client's exec request
(channel.Channel.exec_requested), and an allowed exec is answered once its decision came
and its request went upstream (the answer's write, and the client's reading of it, are
then not on the Decide's way): what an OpenSSH client sends right after its request,
without waiting for the answer (stdin, its EOF), still reaches an allowed command whole,
and a denied one's client is answered, told why and given exit status 1; an asyncssh
client's exec returns with the proxy's channel decided.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from ssh_harness import askpass, client_options, run_client
from test_ssh_proxy import Stack, ssh_policy, ssh_stack

import proxies.ssh.channel as channel_module

pytestmark = pytest.mark.integration

WAITING = re.compile(r"waiting for request (\S+)")
APPROVER = {"subject": "sam@example.com", "groups": ["security"]}


async def until(condition: Any, what: str) -> None:
    """Wait for sshd's answers (a close confirmed) to reach the proxy."""
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(what)


def upstream_of(stack: Stack) -> tuple[Any, Any]:
    (client,) = stack.proxy.clients
    return client, client.upstream


def is_open(upstream_conn: Any, chan: Any) -> bool:
    return chan._recv_chan in upstream_conn._channels


async def test_a_denied_exec_on_a_channel_opened_ahead_never_reaches_sshd(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    async with ssh_stack(tmp_path) as stack, await stack.connect() as conn:
        assert (await conn.run("uptime")).exit_status == 0
        client, upstream_conn = upstream_of(stack)
        await until(lambda: client._spare is not None, "a channel opened ahead")
        for line in (f"touch {marker}", f"uptime; touch {marker}", f"echo $(touch {marker})"):
            ahead = client._spare  # the one this exec takes, open before its request
            await until(lambda a=ahead: is_open(upstream_conn, a), "the open confirmed")
            result = await conn.run(line)
            assert result.exit_status == 1 and result.stdout == "", line
            assert result.stderr.startswith("portcullis: denied: "), result.stderr
            await until(lambda a=ahead: not is_open(upstream_conn, a), "the denied one closed")
        again = await conn.run("uptime")
        assert again.exit_status == 0 and "load average" in again.stdout
        assert stack.sshd.sessions_started() == 2  # the two uptimes
    assert not marker.exists()


async def test_a_channel_opened_ahead_waits_with_its_approval_then_closes_on_abort(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    async with ssh_stack(tmp_path) as stack, await stack.connect(("readonly",)) as conn:
        assert (await conn.run("uptime")).exit_status == 0
        client, upstream_conn = upstream_of(stack)
        await until(lambda: client._spare is not None, "a channel opened ahead")
        ahead = client._spare
        process = await conn.create_process(f"rm -rf {victim}")
        said = await process.stderr.readuntil("--reason '...'")
        approval_id = WAITING.search(said)[1]  # type: ignore[index]
        # waiting: its channel opened ahead is open upstream, carrying nothing, and no
        # other is opened for the next channel until this one is answered
        assert is_open(upstream_conn, ahead) and client._spare is None
        # (and on a root account the channel held for reaps)
        assert len(upstream_conn._channels) == 1 + (client._reserve is not None)
        assert stack.sshd.sessions_started() == 1
        process.close()  # the client goes away while it waits
        await until(lambda: not is_open(upstream_conn, ahead), "closed on the abort")
        await until(
            lambda: stack.pdp.approvals.requests[approval_id].state == "withdrawn", "withdrawn"
        )
        again = await conn.run("uptime")
        assert again.exit_status == 0
        assert stack.sshd.sessions_started() == 2
    assert victim.exists()


async def test_a_channel_opened_ahead_closes_when_the_approver_refuses(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    async with ssh_stack(tmp_path) as stack, await stack.connect(("readonly",)) as conn:
        assert (await conn.run("uptime")).exit_status == 0
        client, upstream_conn = upstream_of(stack)
        await until(lambda: client._spare is not None, "a channel opened ahead")
        ahead = client._spare
        process = await conn.create_process(f"rm -rf {victim}")
        said = await process.stderr.readuntil("--reason '...'")
        approval_id = WAITING.search(said)[1]  # type: ignore[index]
        assert is_open(upstream_conn, ahead)
        await stack.pdp.approvals.decide(approval_id, APPROVER, False, "not today")
        result = await process.wait()
        assert result.exit_status == 1 and "not today" in str(result.stderr)
        await until(lambda: not is_open(upstream_conn, ahead), "closed on the refusal")
        # the next channel's is opened once the refusal is answered
        await until(lambda: client._spare is not None, "the next channel's opened ahead")
        assert stack.sshd.sessions_started() == 1
    assert victim.exists()


async def test_what_openssh_sends_before_its_exec_is_answered_reaches_the_command(
    tmp_path: Path,
) -> None:
    policies = ssh_policy(tmp_path, "wc")
    marker = tmp_path / "marker"
    data = b"".join(b"line %d of the input\n" % i for i in range(5000))
    async with ssh_stack(tmp_path, extra={"policies": policies}) as stack:
        env = askpass(stack.tmp, stack.token())
        base = ["ssh", *client_options(stack.port), "-p", str(stack.port), "ann@127.0.0.1"]
        code, out, err = await run_client([*base, "wc -c"], env, data)
        assert code == 0 and out.split() == [str(len(data)).encode()], err
        code, out, err = await run_client([*base, f"wc -c; touch {marker}"], env, data)
        assert code == 1 and out == b"", err
        assert err.startswith(b"portcullis: denied: "), err
        assert stack.sshd.sessions_started() == 1
    assert not marker.exists()


async def test_an_allowed_exec_is_answered_once_decided(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a decision slower than ANSWER_WITHIN (a loaded machine) has its exec answered before
    # it: not what this test looks at (test_ssh_probe_stack's held decision does)
    monkeypatch.setattr(channel_module, "ANSWER_WITHIN", 600.0, raising=False)
    policies = ssh_policy(tmp_path, "wc")
    async with (
        ssh_stack(tmp_path, extra={"policies": policies}) as stack,
        await stack.connect() as conn,
    ):
        # the connection's first exec (its upstream connection still being made), then one
        # on a channel opened ahead; each a new line, decided by the PDP
        for line, counted in (("wc -c", "4"), ("wc -l", "1")):
            if line == "wc -l":
                assert (await conn.run("uptime")).exit_status == 0
                proxied, _ = upstream_of(stack)
                await until(lambda c=proxied: c._spare is not None, "a channel opened ahead")
            process = await conn.create_process(line)  # returns once its exec is answered
            (proxied,) = stack.proxy.clients
            (channel,) = [c for c in proxied.channels if c.raw == line]
            assert channel.ruling is not None and channel.ruling.verdict.allowed, line
            process.stdin.write("a b\n")
            process.stdin.write_eof()
            result = await process.wait()
            assert result.exit_status == 0 and result.stdout.split() == [counted], result


async def test_a_refused_exec_takes_the_input_its_client_writes_once_answered(
    tmp_path: Path,
) -> None:
    # asyncssh's run(input=...) writes its input once the exec is answered: the refusal
    # waits for that input's EOF, so the client gets the exit status, not a closed channel
    marker = tmp_path / "marker"
    async with ssh_stack(tmp_path) as stack, await stack.connect(("readonly",)) as conn:
        for line in ("xargs touch", f"uptime; touch {marker}", "xargs env cat /etc/hostname"):
            result = await conn.run(line, input=f"{marker}\n")
            assert result.exit_status == 1 and result.stdout == "", line
            assert result.stderr.startswith("portcullis: denied: "), result.stderr
        assert stack.sshd.sessions_started() == 0
    assert not marker.exists()
