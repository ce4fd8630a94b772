"""A command run with a terminal (`ssh -t host cmd`: a pty request, then an exec) through
the SSH proxy, against a real sshd and PDP with OpenSSH's own client.

Such a command needs what a shell needs (an ssh.shell decision, with the terminal) besides
its own (proxies/ssh/channel.py, Channel._decided): both are asked in one round trip, in
one DecideStream message, and each is still judged as what it is — the evidence holds the
terminal's ssh.shell decision beside the command's, and a reader, refused shells, is
refused the command with a terminal (nothing reaches sshd; an approval the command alone
would have needed is withdrawn, no approver is asked about it). Upstream, the exec goes
right behind its pty-req, as OpenSSH's client sends them (proxies/ssh/upstream.py); a
terminal sshd refuses leaves the command without one, the client told.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncssh
import pytest
from ssh_harness import askpass, client_options, run_client
from test_ssh_proxy import ssh_policy, ssh_stack

from pdp.domain.recordings import session_events
from proxies.ssh import upstream

pytestmark = pytest.mark.integration

DBA = ("dba", "pii-readers")


async def test_openssh_t_asks_both_decisions_in_one_message(tmp_path: Path) -> None:
    policies = ssh_policy(tmp_path, "ls")
    async with ssh_stack(tmp_path, extra={"policies": policies}) as stack:
        env = askpass(stack.tmp, stack.token(DBA))
        base = ["ssh", *client_options(stack.port), "-p", str(stack.port), "ann@127.0.0.1"]
        code, out, err = await run_client([*base, "uptime"], env)  # the stream opened
        assert code == 0 and b"load average" in out, err
        streams = stack.pdp.service.streams
        calls, messages = streams.calls, streams.call_messages
        # -tt: a terminal although the client's stdin is none
        code, out, err = await run_client([*base, "-tt", "uptime"], env)
        assert code == 0 and b"load average" in out, err
        assert b"\r\n" in out  # through a terminal upstream
        assert (streams.calls - calls, streams.call_messages - messages) == (2, 1)
        code, out, err = await run_client([*base, "-tt", "ls /no/such/dir"], env)
        assert code == 2 and b"No such file or directory" in out, (out, err)
        assert stack.sshd.sessions_started() == 3
        await stack.proxy.settled()
        decisions = await stack.pdp.store.query(kind="decision")
        events = await session_events(stack.pdp.store)
    ssh = [(d.body["kind"], d.body["raw"], d.body["verdict"]) for d in decisions]
    assert sorted(ssh) == sorted(
        [
            ("ssh.exec", "uptime", "allow"),
            ("ssh.shell", "", "allow"),
            ("ssh.exec", "uptime", "allow"),
            ("ssh.shell", "", "allow"),
            ("ssh.exec", "ls /no/such/dir", "allow"),
        ]
    )
    casts = [e["details"] for e in events if e.get("details", {}).get("kind") == "ssh.asciicast"]
    assert len(casts) == 2 and all(c["header"]["version"] == 2 for c in casts if "header" in c)


async def test_a_reader_is_refused_a_command_with_a_terminal(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    async with ssh_stack(tmp_path) as stack:
        env = askpass(stack.tmp, stack.token(("readonly",)))
        base = ["ssh", *client_options(stack.port), "-p", str(stack.port), "ann@127.0.0.1"]
        code, out, err = await run_client([*base, "-tt", "uptime"], env)
        assert code == 1 and b"a command with a terminal is interactive" in out + err
        assert b"interactive shells are reserved to dba" in out + err
        # alone, rm -rf needs approval; with a terminal the shell's deny refuses it, and
        # the approval request asked with it is withdrawn
        code, out, err = await run_client([*base, "-tt", f"rm -rf {victim}"], env)
        assert code == 1 and b"a command with a terminal is interactive" in out + err
        assert b"waiting for request" not in out + err
        requests = list(stack.pdp.approvals.requests.values())
        assert [r.state for r in requests] == ["withdrawn"]
        assert stack.sshd.sessions_started() == 0
        await stack.proxy.settled()
        decisions = await stack.pdp.store.query(kind="decision")
    assert victim.exists()
    verdicts = sorted((d.body["kind"], d.body["verdict"]) for d in decisions)
    assert verdicts == [
        ("ssh.exec", "mask"),  # a reader's: the detectors
        ("ssh.exec", "require_approval"),
        ("ssh.shell", "deny"),
        ("ssh.shell", "deny"),
    ]


async def test_a_command_with_a_terminal_waits_for_its_approval(tmp_path: Path) -> None:
    """A dba's shell is allowed and rm -rf needs approval: the wait is the command's."""
    victim = tmp_path / "victim"
    victim.mkdir()
    async with ssh_stack(tmp_path) as stack, await stack.connect(DBA) as conn:
        process = await conn.create_process(f"rm -rf {victim}", term_type="xterm")
        said = await process.stderr.readuntil("--reason '...'")
        assert "waiting for request" in said
        (request,) = stack.pdp.approvals.requests.values()
        assert victim.exists()
        await stack.pdp.approvals.decide(
            request.id, {"subject": "sam@example.com", "groups": ["security"]}, True, "ok"
        )
        result = await process.wait()
        assert result.exit_status == 0, result.stderr
    assert not victim.exists()


async def test_the_command_goes_upstream_right_behind_its_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy sends the exec right behind the pty-req, as OpenSSH's client does, not an
    upstream round trip later (sshd allocating the terminal): when the exec is written
    the terminal's answer is still awaited; output and exit status as before."""
    pending: list[int] = []
    send = upstream.GatedChannel._send_request

    def recorded(self: Any, request: bytes, *args: bytes, **kwargs: Any) -> None:
        if request == b"exec":
            pending.append(len(self._request_waiters))  # the exec's own, and the terminal's?
        send(self, request, *args, **kwargs)

    monkeypatch.setattr(upstream.GatedChannel, "_send_request", recorded)
    async with ssh_stack(tmp_path) as stack:
        env = askpass(stack.tmp, stack.token(DBA))
        base = ["ssh", *client_options(stack.port), "-p", str(stack.port), "ann@127.0.0.1"]
        code, out, err = await run_client([*base, "-tt", "uptime"], env)
        assert code == 0 and b"load average" in out, err
        code, out, err = await run_client([*base, "uptime"], env)
        assert code == 0 and b"load average" in out, err
    assert pending == [2, 1]


async def test_a_terminal_the_upstream_refuses_leaves_the_command_without_one(
    tmp_path: Path,
) -> None:
    """sshd refusing the terminal (a no-pty key): the command, allowed with a terminal,
    runs without one, as it would for OpenSSH's client, and the client is told."""
    async with ssh_stack(tmp_path) as stack:
        keys = stack.sshd.dir / "authorized_keys"
        keys.write_text("no-pty " + keys.read_text())
        env = askpass(stack.tmp, stack.token(DBA))
        base = ["ssh", *client_options(stack.port), "-p", str(stack.port), "ann@127.0.0.1"]
        code, out, err = await run_client([*base, "-tt", "uptime"], env)
    assert code == 0 and b"load average" in out, (out, err)
    assert b"\r\n" not in out  # no terminal upstream
    assert b"the upstream refused a terminal: the command runs without one" in out + err


async def test_a_terminal_that_needs_approval_is_waited_for_first(tmp_path: Path) -> None:
    """A policy making terminals need approval: the terminal's request is waited for; a
    command decided with it before that approval is asked again after it (as when the two
    were asked in sequence; here answered from the cache, as the policy's hint allows),
    and one needing its own approval waits for its request, made with it, once the
    terminal's is approved; nothing runs before."""
    policies = ssh_policy(tmp_path)
    (policies / "terminal_approval.rego").write_text(
        "package portcullis\n\n"
        'needs_approval contains "a terminal needs approval here" if {\n'
        '\tinput.command.kind == "ssh.shell"\n'
        "}\n"
    )
    victim = tmp_path / "victim"
    victim.mkdir()
    approver = {"subject": "sam@example.com", "groups": ["security"]}
    async with ssh_stack(tmp_path, extra={"policies": policies}) as stack:
        async with await stack.connect(DBA) as conn:
            process = await conn.create_process("uptime", term_type="xterm")
            said = await process.stderr.readuntil("--reason '...'")
            assert "a terminal needs approval here" in said, said
            (terminal,) = stack.pdp.approvals.requests
            await stack.pdp.approvals.decide(terminal, approver, True, "ok")
            result = await process.wait()
            assert result.exit_status == 0 and "load average" in str(result.stdout), result
        # another identity (the terminal approved above stands for ann within its ttl)
        async with await asyncssh.connect(
            "127.0.0.1", stack.port, username="bob", password=stack.token(DBA, "bob@x.org"),
            known_hosts=None, client_keys=None, agent_path=None, config=None,
            preferred_auth="password",
        ) as bob:  # fmt: skip
            process = await bob.create_process(f"rm -rf {victim}", term_type="xterm")
            said = await process.stderr.readuntil("--reason '...'")
            assert "a terminal needs approval here" in said, said
            asked = [r for r in stack.pdp.approvals.requests.values() if r.id != terminal]
            assert sorted(r.command_kind for r in asked) == ["ssh.exec", "ssh.shell"]
            shell = next(r.id for r in asked if r.command_kind == "ssh.shell")
            await stack.pdp.approvals.decide(shell, approver, True, "ok")
            said = await process.stderr.readuntil("--reason '...'")
            assert "rm -rf" in said and victim.exists(), said
            command = next(r.id for r in asked if r.command_kind == "ssh.exec")
            await stack.pdp.approvals.decide(command, approver, True, "ok")
            result = await process.wait()
            assert result.exit_status == 0, result
        await stack.proxy.settled()
        decisions = await stack.pdp.store.query(kind="decision")
    assert not victim.exists()
    uptime = [d.body["verdict"] for d in decisions if d.body["raw"] == "uptime"]
    # asked with its terminal; asked again after the terminal's approval, where the
    # policy's exact cache hint lets the proxy answer it from its cache
    assert uptime == ["allow"]
