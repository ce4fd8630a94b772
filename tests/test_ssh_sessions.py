"""SSH beyond a single exec: shells (decided at open, recorded as asciicast, masked,
replayed by the CLI), approval waits (approved, withdrawn with Ctrl-C), forwarding and
subsystems (SFTP, SCP) refused unless the policy allows them — against a real sshd, a real
PDP and real clients (asyncssh, OpenSSH ssh/sftp/scp)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import yaml
from pdp_harness import pdp_raw
from ssh_harness import askpass, client_options, line_echo, run_client
from test_ssh_proxy import Stack, ssh_connection, ssh_policy, ssh_stack
from test_ssh_sftp import policy_with_approval_paths

from pdp.domain.recordings import session_events
from proxies.ssh import sftp_codec as codec
from proxies.ssh.channel import Channel

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parent.parent
WAITING = re.compile(r"waiting for request (\S+)")


async def shell(conn: Any, lines: list[str], until: str) -> str:
    """Run lines in an interactive shell (pty); the output up to `until`, then exit."""
    process = await conn.create_process(term_type="xterm", term_size=(100, 30))
    for line in lines:
        process.stdin.write(line + "\n")
    out = await process.stdout.readuntil(until)
    process.change_terminal_size(120, 40)
    process.stdin.write("exit\n")
    await process.wait()
    return str(out)


async def test_a_shell_is_recorded_and_replayed(tmp_path: Path) -> None:
    async with ssh_stack(tmp_path) as stack:
        async with await stack.connect(("dba", "pii-readers")) as conn:
            out = await shell(conn, ["echo $((6*7))-done"], "42-done")
        assert "42-done" in out
        await stack.proxy.settled()
        events = await session_events(stack.pdp.store)
    casts = [e["details"] for e in events if e.get("details", {}).get("kind") == "ssh.asciicast"]
    assert casts and casts[0]["header"]["version"] == 2 and casts[0]["header"]["width"] == 100
    recorded = [e for c in casts for e in c["events"]]
    assert any(code == "o" and "42-done" in data for _, code, data in recorded)
    assert any(code == "i" and "echo" in data for _, code, data in recorded)
    assert ["r", "120x40"] in [e[1:] for e in recorded]
    times = [e[0] for e in recorded]
    assert times == sorted(times)
    shells = [e for e in events if e["type"] == "command"]
    assert shells[0]["details"]["kind"] == "ssh.shell" and shells[0]["verdict"] == "allow"

    config = write_config(stack)
    exported = cli(config, "replay", session_id(config), "--format", "asciicast")
    assert exported.returncode == 0, exported.stderr
    lines = exported.stdout.splitlines()
    assert json.loads(lines[0])["version"] == 2
    assert any("42-done" in json.loads(line)[2] for line in lines[1:])
    text = cli(config, "replay", session_id(config))
    assert text.returncode == 0, text.stderr
    assert "(interactive shell)" in text.stdout and "1 terminal recording(s)" in text.stdout
    assert "terminal, channel " in text.stdout and "events recorded" in text.stdout


async def test_shell_denied_to_a_non_pii_reader(tmp_path: Path) -> None:
    """A masked dba's shell would turn any value into text no detector reads (`| base64`):
    denied unless the policy allows it by name (shell_unmasked), before sshd is asked."""
    async with ssh_stack(tmp_path) as stack, await stack.connect(("dba",)) as conn:
        process = await conn.create_process(term_type="xterm")
        result = await process.wait()
        assert stack.sshd.sessions_started() == 0
    assert result.exit_status == 1
    assert "shell_unmasked does not allow it" in str(result.stderr)


async def test_shell_output_masked_for_a_non_pii_reader(tmp_path: Path) -> None:
    policy = ssh_policy(tmp_path, shell_unmasked=True)  # a masked dba's shell, by name
    async with ssh_stack(tmp_path, extra={"policies": policy}) as stack:
        async with await stack.connect(("dba",)) as conn:
            out = await shell(conn, ["echo mail-$((1+1)) alice.smith@example.com end-$((2+2))"],
                              "end-4")  # fmt: skip
        await stack.proxy.settled()
        events = await session_events(stack.pdp.store)
    assert "alice.smith@example.com" not in out and "a***@example.com" in out
    casts = [e["details"] for e in events if e.get("details", {}).get("kind") == "ssh.asciicast"]
    output = "".join(data for c in casts for _, code, data in c["events"] if code == "o")
    assert "mail-2" in output and "alice.smith@example.com" not in output
    shells = [e for e in events if e["type"] == "command"]
    assert shells[0]["verdict"] == "mask"
    # the terminal's echo of the typed line and the command's output
    assert shells[0]["details"]["masked"]["detector:email"] >= 2


async def test_exec_output_masked_for_readers(tmp_path: Path) -> None:
    log = Path("/var/log") / f"portcullis-test-{os.getpid()}-{tmp_path.name}.log"
    log.write_text("user bob.jones@example.com card 4111 1111 1111 1111\n" * 3)
    try:
        async with ssh_stack(tmp_path) as stack:
            async with await stack.connect(("readonly",)) as conn:
                masked = await conn.run(f"cat {log}")
            async with await stack.connect(("pii-readers",)) as conn:
                plain = await conn.run(f"cat {log}")
            await stack.proxy.settled()
            events = await session_events(stack.pdp.store)
    finally:
        log.unlink()
    assert masked.exit_status == 0 and plain.exit_status == 0
    assert "bob.jones@example.com" not in masked.stdout and "4111 1111" not in masked.stdout
    assert masked.stdout.count("b***@example.com") == 3
    assert plain.stdout.count("bob.jones@example.com") == 3
    commands = [e for e in events if e["type"] == "command"]
    assert commands[0]["verdict"] == "mask"
    assert commands[0]["details"]["masked"] == {"detector:email": 3, "detector:credit_card": 3}


async def test_shells_are_refused_to_readers(tmp_path: Path) -> None:
    async with ssh_stack(tmp_path) as stack, await stack.connect(("readonly",)) as conn:
        process = await conn.create_process(term_type="xterm")
        result = await process.wait()
        assert result.exit_status == 1
        assert "interactive shells are reserved to dba" in str(result.stderr)
        assert stack.sshd.sessions_started() == 0


async def test_a_command_with_a_terminal_needs_what_a_shell_needs(tmp_path: Path) -> None:
    async with ssh_stack(tmp_path) as stack:
        async with await stack.connect(("readonly",)) as conn:
            paged = await conn.run("journalctl -n 1", term_type="xterm")
            plain = await conn.run("uptime")
        assert stack.sshd.sessions_started() == 1  # the plain one
    assert paged.exit_status == 1 and plain.exit_status == 0
    assert "a command with a terminal is interactive" in str(paged.stderr)


async def test_approval_then_the_command_runs(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    async with ssh_stack(tmp_path) as stack, await stack.connect(("readonly",)) as conn:
        process = await conn.create_process(f"rm -rf {victim}")
        said = await process.stderr.readuntil("--reason '...'")
        approval_id = WAITING.search(said)[1]  # type: ignore[index]
        assert victim.exists()  # nothing ran while it waits
        await stack.pdp.approvals.decide(
            approval_id, {"subject": "sam@example.com", "groups": ["security"]}, True, "ok"
        )
        result = await process.wait()
    assert result.exit_status == 0, result.stderr
    assert not victim.exists()


async def test_an_allowed_command_with_an_option_that_writes_waits_for_approval(
    tmp_path: Path,
) -> None:
    """journalctl reads logs for anyone and deletes them with --vacuum-time (any unique
    prefix of it, as getopt_long reads it): that exec waits for a person and nothing runs
    upstream meanwhile; a plain read runs."""
    async with ssh_stack(tmp_path) as stack, await stack.connect(("readonly",)) as conn:
        for line in ("journalctl --vacuum-time=1s", "journalctl -q --vac=1s", "journalctl --rot"):
            process = await conn.create_process(line)
            said = await process.stderr.readuntil("--reason '...'")
            assert WAITING.search(said), said
            assert "writes with --" in said, said
            process.close()
        reads = await conn.run("journalctl -n 1 --no-pager")
    assert stack.sshd.sessions_started() == 1, "only the read reached the upstream"
    assert reads.exit_status is not None


async def test_ctrl_c_withdraws_a_waiting_approval(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    # a terminal: Ctrl-C arrives as \x03 (and needs a group that may have one: a dba in
    # pii-readers)
    async with ssh_stack(tmp_path) as stack, await stack.connect(("dba", "pii-readers")) as conn:
        process = await conn.create_process(f"rm -rf {victim}", term_type="xterm")
        said = await process.stderr.readuntil("--reason '...'")
        approval_id = WAITING.search(said)[1]  # type: ignore[index]
        process.stdin.write("\x03")
        result = await process.wait()
        assert result.exit_status == 1
        assert f"approval request {approval_id} withdrawn" in str(result.stderr)
        request = stack.pdp.approvals.requests[approval_id]
        assert request.state == "withdrawn"
    assert victim.exists()


async def test_local_forwarding_needs_the_policy(tmp_path: Path) -> None:
    async with line_echo() as port, ssh_stack(tmp_path) as stack:
        async with await stack.connect(("readonly",)) as conn:
            with pytest.raises(asyncssh.ChannelOpenError) as refused:
                await conn.open_connection("127.0.0.1", port)
            assert "port, agent and X11 forwarding are reserved to dba" in refused.value.reason
        async with await stack.connect(("dba", "pii-readers")) as conn:
            reader, writer = await conn.open_connection("127.0.0.1", port)
            writer.write(b"through the upstream\n")
            assert await reader.readline() == b"through the upstream\n"
            writer.close()
        await stack.proxy.settled()
        decisions = await stack.pdp.store.query(kind="decision")
    forwards = [d.body for d in decisions if d.body.get("kind") == "ssh.forward"]
    assert [d["verdict"] for d in forwards] == ["deny", "allow"]
    assert forwards[0]["raw"] == f"direct-tcpip 127.0.0.1:{port}"


async def test_sftp_and_scp_are_refused(tmp_path: Path) -> None:
    """Readers are refused the SFTP subsystem and legacy scp; dba is refused legacy scp
    (`scp -O` runs `scp -f` as a command, not in the allowed list). dba's SFTP, decided
    request by request: tests/test_ssh_sftp.py."""
    secret = tmp_path / "secret.txt"
    secret.write_text("not for you\n")
    async with ssh_stack(tmp_path) as stack:
        for groups in (("readonly",), ("dba", "pii-readers")):
            env = askpass(tmp_path, stack.token(groups))
            options = client_options(stack.port)
            modes: list[list[str]] = [["-O"]]
            if groups == ("readonly",):
                # -o BatchMode=no before -b: sftp's -b would turn the password prompt off
                code, _, err = await run_client(
                    ["sftp", *options, "-o", "BatchMode=no", "-P", str(stack.port), "-b", "-",
                     "ann@127.0.0.1"], env, f"get {secret} {tmp_path / 'got'}\n".encode(),
                )  # fmt: skip
                assert code != 0 and b"SSH subsystems (SFTP, SCP) are reserved" in err, err
                modes.append([])
            for legacy in modes:
                code, _, err = await run_client(
                    ["scp", *legacy, *options, "-P", str(stack.port),
                     f"ann@127.0.0.1:{secret}", str(tmp_path / "copied")], env,
                )  # fmt: skip
                assert code != 0, err
        assert not (tmp_path / "got").exists() and not (tmp_path / "copied").exists()
        assert stack.sshd.sessions_started() == 0
        await stack.proxy.settled()
        decisions = await stack.pdp.store.query(kind="decision")
    kinds = [(d.body.get("kind"), d.body.get("verdict")) for d in decisions
             if str(d.body.get("kind", "")).startswith("ssh.")]  # fmt: skip
    assert ("ssh.subsystem", "deny") in kinds and ("ssh.exec", "deny") in kinds
    assert {verdict for _, verdict in kinds} == {"deny"}


# -- the CLI over the session's audit store -------------------------------------------------


def write_config(stack: Stack) -> Path:
    tmp = stack.tmp
    raw = pdp_raw(tmp, connections=[ssh_connection(stack.sshd, tmp)])
    raw["pdp"]["listen"] = stack.config.pdp.listen
    path = tmp / "portcullis.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pdp.cli", "-c", str(config), *args],
        capture_output=True, text=True, cwd=REPO, env=dict(os.environ), timeout=60,
    )  # fmt: skip


def session_id(config: Path) -> str:
    listed = cli(config, "sessions", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    return str(json.loads(listed.stdout)[0]["session_id"])


async def test_status_prints_the_host_key_clients_see(tmp_path: Path) -> None:
    async with ssh_stack(tmp_path) as stack:
        async with await stack.connect() as conn:
            seen = conn.get_server_host_key().get_fingerprint()
        config = write_config(stack)
        status = await asyncio.to_thread(cli, config, "status", "--format", "json")
        text = await asyncio.to_thread(cli, config, "status")
    assert status.returncode == 0, status.stderr
    (web,) = json.loads(status.stdout)["connections"]
    assert web["host_key"] == seen and seen.startswith("SHA256:")
    assert f"host key {seen}" in text.stdout


# -- approval waits end with their channel -----------------------------------------------
# Each test holds one of the proxy's calls to the PDP (its Decide, its WithdrawApproval)
# until the client did what the test wants at that point, so every interleaving is shown
# on purpose rather than by luck under load. LIVENESS is far under the approval timeout
# (120 s): a wait left running to its timeout fails here instead of passing late.

LIVENESS = 60.0
HELD = "journalctl --vacuum-time=1s"  # a reader's exec that waits for a person


class PdpCalls:
    """The proxy's Decide and WithdrawApproval calls, watched, and held when asked: a held
    call reaches the PDP, and its answer is given back once the test lets it go."""

    def __init__(self, stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
        pdp = stack.proxy.runtime.pdp
        self._decide, self._withdraw = pdp.decide, pdp.withdraw_approval
        self.asked: asyncio.Queue[Any] = asyncio.Queue()  # rulings the PDP gave
        self.withdrawing: asyncio.Queue[str] = asyncio.Queue()
        self.withdrawn: dict[str, asyncio.Event] = {}
        self.hold_decide: asyncio.Event | None = None
        self.hold_withdraw: asyncio.Event | None = None
        self.given_up = asyncio.Event()  # a channel of the proxy heard its client give up
        monkeypatch.setattr(pdp, "decide", self.decide)
        monkeypatch.setattr(pdp, "withdraw_approval", self.withdraw_approval)
        give_up = Channel._give_up

        def heard(channel: Channel, why: str) -> None:
            give_up(channel, why)
            self.given_up.set()

        monkeypatch.setattr(Channel, "_give_up", heard)

    async def decide(self, *args: Any, **kw: Any) -> Any:
        ruling = await self._decide(*args, **kw)
        self.asked.put_nowait(ruling)
        hold, self.hold_decide = self.hold_decide, None
        if hold is not None:
            await hold.wait()
        return ruling

    async def withdraw_approval(self, session_id: str, approval_id: str, reason: str) -> bool:
        self.withdrawing.put_nowait(approval_id)
        hold, self.hold_withdraw = self.hold_withdraw, None
        if hold is not None:
            await hold.wait()
        done = bool(await self._withdraw(session_id, approval_id, reason))
        self.event(approval_id).set()
        return done

    def event(self, approval_id: str) -> asyncio.Event:
        return self.withdrawn.setdefault(approval_id, asyncio.Event())

    async def withdrawn_promptly(self, stack: Stack, approval_id: str) -> None:
        await asyncio.wait_for(self.event(approval_id).wait(), LIVENESS)
        assert stack.pdp.approvals.requests[approval_id].state == "withdrawn"


async def announced(process: Any) -> str:
    said = await process.stderr.readuntil("--reason '...'")
    found = WAITING.search(said)
    assert found, said
    return found[1]


async def no_channel_left(stack: Stack) -> None:
    """Every channel of the proxy finished (its wait, if any, ended)."""
    channels = [c for client in stack.proxy.clients for c in client.channels]
    await asyncio.wait_for(asyncio.gather(*(c.finished for c in channels)), LIVENESS)


async def test_a_withdrawal_under_way_leaves_the_next_channels_wait_withdrawable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI's 120 s run of the test above: channel 1 closed, its request's withdrawal still on
    its way to the PDP when channel 2 began to wait; the end of channel 1's wait then
    forgot channel 2's (one wait slot per session), so closing channel 2 withdrew nothing
    and its wait ran to the approval timeout, its request pending for approvers."""
    async with ssh_stack(tmp_path) as stack, await stack.connect(("readonly",)) as conn:
        calls = PdpCalls(stack, monkeypatch)
        first = await conn.create_process(HELD)
        first_id = await announced(first)
        let_go = calls.hold_withdraw = asyncio.Event()
        first.close()
        assert await calls.withdrawing.get() == first_id
        second = await conn.create_process("journalctl --vacuum-size=1K")  # another request
        second_id = await announced(second)
        assert second_id != first_id
        let_go.set()
        await calls.event(first_id).wait()
        await asyncio.sleep(0)  # channel 1's wait ends after its withdrawal returned
        second.close()
        await calls.withdrawn_promptly(stack, second_id)
        await no_channel_left(stack)
        assert stack.pdp.approvals.requests[first_id].state == "withdrawn"
        assert stack.sshd.sessions_started() == 0


async def test_two_channels_waiting_at_once_are_withdrawn_each_by_its_own_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two channels of one connection waiting together: closing the first withdraws the
    first's request (not the second's, the wait registered last), and the second still
    waits until it is closed in turn."""
    async with ssh_stack(tmp_path) as stack, await stack.connect(("readonly",)) as conn:
        calls = PdpCalls(stack, monkeypatch)
        first = await conn.create_process(HELD)
        first_id = await announced(first)
        second = await conn.create_process("journalctl --vacuum-size=1K")
        second_id = await announced(second)
        first.close()
        await calls.withdrawn_promptly(stack, first_id)
        assert stack.pdp.approvals.requests[second_id].state == "pending"
        second.close()
        await calls.withdrawn_promptly(stack, second_id)
        await no_channel_left(stack)


@pytest.mark.parametrize("how", ["close", "signal", "break"])
async def test_a_channel_given_up_while_its_command_is_decided_withdraws_its_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """The client gave up (closed the channel, sent INT, a break) while the PDP was
    deciding the command, before any approval request was known: once the decision comes
    back holding one, it is withdrawn at once; it is not left pending for approvers, and
    no wait is begun for a client that is gone or cancelled."""
    async with ssh_stack(tmp_path) as stack, await stack.connect(("readonly",)) as conn:
        calls = PdpCalls(stack, monkeypatch)
        let_go = calls.hold_decide = asyncio.Event()
        process = await conn.create_process(HELD)
        ruling = await calls.asked.get()  # the PDP answered; the proxy has not heard it yet
        assert ruling.approval_id
        if how == "close":
            process.close()
        elif how == "signal":
            process.send_signal("INT")
        else:
            process.send_break(0)
        await calls.given_up.wait()
        let_go.set()
        await calls.withdrawn_promptly(stack, ruling.approval_id)
        if how != "close":
            result = await asyncio.wait_for(process.wait(), LIVENESS)
            assert result.exit_status == 1
            assert f"approval request {ruling.approval_id} withdrawn" in str(result.stderr)
        await no_channel_left(stack)
        assert stack.sshd.sessions_started() == 0


async def test_a_terminal_exec_closed_while_decided_withdraws_its_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same with a terminal (its ssh.shell decision and its own asked together): a dba's
    rm -rf under -t, closed while decided, has its request withdrawn."""
    victim = tmp_path / "victim"
    victim.mkdir()
    async with ssh_stack(tmp_path) as stack, await stack.connect(("dba", "pii-readers")) as conn:
        calls = PdpCalls(stack, monkeypatch)
        let_go = calls.hold_decide = asyncio.Event()
        process = await conn.create_process(f"rm -rf {victim}", term_type="xterm")
        rulings = [await calls.asked.get(), await calls.asked.get()]
        held = [r.approval_id for r in rulings if r.approval_id]
        assert len(held) == 1, rulings
        process.close()
        await calls.given_up.wait()
        let_go.set()
        await calls.withdrawn_promptly(stack, held[0])
        await no_channel_left(stack)
    assert victim.exists()


async def test_an_sftp_request_left_waiting_is_withdrawn_not_another_channels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An SFTP write waiting for approval (decided request by request on its channel) and an
    exec waiting on another channel of the connection: closing the SFTP channel withdraws
    the write's request, not the exec's (the session's last wait, on the tree before),
    and the exec's is withdrawn by its own close."""
    protected, victim = tmp_path / "protected", tmp_path / "victim"
    protected.mkdir()
    victim.mkdir()
    policies = policy_with_approval_paths(tmp_path, [str(protected)])
    async with (
        ssh_stack(tmp_path, extra={"policies": policies}) as stack,
        await stack.connect(("dba", "pii-readers")) as conn,
    ):
        calls = PdpCalls(stack, monkeypatch)
        sftp = await conn.create_process(subsystem="sftp", encoding=None)
        sftp.stdin.write(codec.init())
        await sftp.stdout.readexactly(5)  # VERSION's length and type
        path = str(protected / "new.txt").encode()
        flags = struct.pack(">II", 0x02 | 0x08, 0)  # write, create; no attributes
        sftp.stdin.write(
            codec.packet(codec.OPEN, struct.pack(">I", 7) + codec._string(path) + flags)
        )
        while not (write := await calls.asked.get()).approval_id:
            pass  # (the relay's own REALPATH of the home directory and the like)
        process = await conn.create_process(f"rm -rf {victim}")
        exec_id = await announced(process)
        sftp.close()
        await calls.withdrawn_promptly(stack, write.approval_id)
        assert stack.pdp.approvals.requests[exec_id].state == "pending"
        process.close()
        await calls.withdrawn_promptly(stack, exec_id)
        await no_channel_left(stack)
    assert not (protected / "new.txt").exists() and victim.exists()
