"""SSH probe, part 37: a shell whose terminal echoes nothing typed, replayed without its
commands.

A shell (or a command with a terminal) is recorded as asciicast, and `portcullis replay`
plays its output: what the terminal echoed shows what was typed. A client names the
terminal's modes in its pty-req (RFC 4254 section 8), and the proxy passed them to the
upstream as sent: with ECHO (opcode 53) off, the account's bash (readline honours it)
echoed nothing, and the replay of a dba's shell showed its prompts and results but no
command — `touch`, `rm`, whatever was typed, seen by the auditor as blank prompts. The
upstream's terminal now starts with ECHO on whatever the client asked (channel.py
ECHO_MODE); a program of the shell may still turn it off, `stty -echo` being typed, and
so replayed, first.

Real components: sshd (bash, the account's shell), a PDP, the SSH proxy, asyncssh.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_ssh_proxy import ssh_stack

from pdp.domain.casts import casts_of
from pdp.domain.recordings import session_events

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("modes", [{53: 0}, {53: 0, 50: 1, 51: 1}])
async def test_typed_commands_are_echoed_whatever_the_clients_modes(
    tmp_path: Path, modes: dict[int, int]
) -> None:
    async with ssh_stack(tmp_path) as stack:
        async with await stack.connect(("dba", "pii-readers")) as conn:
            process = await conn.create_process(
                term_type="xterm", term_size=(100, 30), term_modes=modes
            )
            process.stdin.write("echo p37-$((6*7))-typed\n")
            await process.stdout.readuntil("p37-42-typed")
            process.stdin.write("exit\n")
            await process.wait()
        await stack.proxy.settled()
        events = await session_events(stack.pdp.store)
    (cast,) = casts_of(events)
    replayed = "".join(data for _, data in cast.frames())
    assert "echo p37-$((6*7))-typed" in replayed, replayed
