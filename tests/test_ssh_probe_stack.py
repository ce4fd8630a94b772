"""Probe P2 through the real stack: a reader (group readonly) against the SSH proxy, a real
PDP and a real sshd whose account is root-like (the proxy's full-power credential).

Each test is a bypass found by probing, sent by a real client (asyncssh): before its fix
the upstream ran a command, read a file or gave a terminal the policy never saw; now the
exec is denied (nothing reaches sshd) or the terminal is refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from test_ssh_proxy import Stack, ssh_stack

from proxies.runtime.session import ProxySession

pytestmark = pytest.mark.integration

READER = ("readonly",)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with ssh_stack(tmp_path) as s:
        yield s


async def run_denied(conn: Any, line: str, stdin: str = "") -> None:
    result = await conn.run(line, input=stdin or None)
    assert result.exit_status == 1, (line, result.stdout, result.stderr)
    assert result.stderr.startswith("portcullis: denied: "), (line, result.stderr)


async def test_commands_hidden_in_a_parameter_expansion_never_run(stack: Stack) -> None:
    marker = stack.tmp / "ran"
    lines = [
        f"uptime ${{x:-$(touch {marker})}}",
        f'uptime "${{x:-$(touch {marker})}}"',
        f"uptime ${{x[$(touch {marker})]}}",
    ]
    async with await stack.connect(READER) as conn:
        for line in lines:
            await run_denied(conn, line)
    assert not marker.exists()
    assert stack.sshd.sessions_started() == 0


async def test_a_for_loops_list_is_read_as_words_are(stack: Stack) -> None:
    marker = stack.tmp / "ran"
    async with await stack.connect(READER) as conn:
        await run_denied(conn, f"for x in 'a'$(touch {marker})'b'; do uptime; done")
    assert not marker.exists()


async def test_a_compounds_redirection_is_judged(stack: Stack) -> None:
    target = stack.tmp / "written"
    target.write_text("precious\n")
    async with await stack.connect(READER) as conn:
        for line in (
            f"{{ uptime; }} > {target}",
            f"(uptime) >> {target}",
            f"for x in a; do uptime; done > {target}",
            f"if uptime; then df; fi > {target}",
            f"while false; do uptime; done > {target}",
        ):
            await run_denied(conn, line)
    assert target.read_text() == "precious\n"
    assert stack.sshd.sessions_started() == 0


async def test_xargs_replace_string_never_names_the_command(stack: Stack) -> None:
    """`xargs -I df df M` with `touch` on stdin runs `touch M`: the input replaces `df`."""
    marker = stack.tmp / "ran"
    async with await stack.connect(READER) as conn:
        for line in (
            f"xargs -I df df {marker}",
            f"xargs -Idf df {marker}",
            f"xargs --replace=df df {marker}",
            f"xargs -iuptime uptime {marker}",
        ):
            await run_denied(conn, line, stdin="touch\n")
    assert not marker.exists()
    assert stack.sshd.sessions_started() == 0


async def test_xargs_never_reads_a_file_for_a_reader(stack: Stack) -> None:
    """`xargs -a FILE df`: df names each word of FILE in its errors, as root."""
    secret = stack.tmp / "secret"
    secret.write_text("s3cret-token-value\n")
    async with await stack.connect(READER) as conn:
        for line in (
            f"xargs -a {secret} df",
            f"xargs -a{secret} df",
            f"xargs --arg-file={secret} df",
            f"xargs --arg-file {secret} -n1 df",
            f"{{ xargs df; }} < {secret}",
            f"(xargs -n1 df) < {secret}",
        ):
            result = await conn.run(line)
            assert "s3cret" not in (result.stdout or "") + (result.stderr or "")
            assert result.stderr.startswith("portcullis: denied: "), result.stderr
    assert stack.sshd.sessions_started() == 0


async def test_dash_never_runs_what_bash_reads_as_arguments(stack: Stack) -> None:
    """/bin/sh is dash: `a &>/dev/null b` is `a &` then `>/dev/null b` there, and
    `$'\\';b'` quotes differently; the PDP reads bash."""
    marker = stack.tmp / "ran"
    async with await stack.connect(READER) as conn:
        for line in (
            f"sh -c 'uptime &>/dev/null touch {marker}'",
            # the script `uptime $'\';touch M;#'`: one word of uptime's to bash
            "sh -c uptime\\ \\$\\'\\\\\\'\\;touch\\ " + str(marker) + "\\;#\\'",
        ):
            await run_denied(conn, line)
    assert not marker.exists()
    assert stack.sshd.sessions_started() == 0


async def test_a_terminal_asked_for_after_the_exec_is_refused(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """exec `df` without a terminal is allowed; a pty-req sent once the exec was accepted
    (its decision still being asked) used to reach the upstream with it, past the gate that
    makes a command with a terminal need what a shell needs (less's `!sh` under
    journalctl)."""
    asked = asyncio.Event()
    release = asyncio.Event()
    decide = ProxySession.decide

    async def held(self: Any, kind: str, *args: Any, **kw: Any) -> Any:
        if kind == "ssh.exec":
            asked.set()
            await release.wait()
        return await decide(self, kind, *args, **kw)

    monkeypatch.setattr(ProxySession, "decide", held)
    out: list[bytes] = []

    class Collect(asyncssh.SSHClientSession):  # type: ignore[type-arg]
        def data_received(self, data: Any, datatype: Any) -> None:
            if datatype is None:
                out.append(bytes(data))

    async with await stack.connect(READER) as conn:
        chan, _ = await conn.create_session(Collect, "df", encoding=None)
        await asked.wait()
        modes = asyncssh.packet.String(b"\x00")
        late = await chan._make_request(
            b"pty-req",
            asyncssh.packet.String(b"xterm"),
            asyncssh.packet.UInt32(80),
            asyncssh.packet.UInt32(24),
            asyncssh.packet.UInt32(0),
            asyncssh.packet.UInt32(0),
            modes,
        )
        release.set()
        await chan.wait_closed()
    text = b"".join(out)
    assert late is False
    assert b"Filesystem" in text
    assert b"\r\n" not in text  # no terminal upstream (its output would end lines CRLF)
