"""SSH beyond a single exec: shells (decided at open, recorded as asciicast, masked,
replayed by the CLI), approval waits (approved, withdrawn with Ctrl-C), forwarding and
subsystems (SFTP, SCP) refused unless the policy allows them — against a real sshd, a real
PDP and real clients (asyncssh, OpenSSH ssh/sftp/scp)."""

from __future__ import annotations

import asyncio
import json
import os
import re
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

from pdp.domain.recordings import session_events

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
