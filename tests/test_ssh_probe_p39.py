"""SSH probe, part 39: a terminal of any size, recorded and given to the upstream as sent.

A client names its terminal's size in the pty-req and in every window-change (RFC 4254
sections 6.2 and 6.7: 32-bit columns and rows). The proxy recorded it as sent, in the
asciicast header and in each resize event: a pty of 100000x100000, or a window-change to
it, was in the session's evidence, and a web player that sizes its screen from the header
(ten billion cells) or a resize event stalls or dies on it, so the recording was one the
auditor could not watch. The upstream got the size as sent too, and its sshd cut each to
16 bits (100000 became 34464): what ran drew for a size the recording did not say. The
proxy now bounds a size (proxies/ssh/stream.py terminal_size: MAX_COLUMNS x MAX_ROWS,
pixels to 16 bits) before it is decided, recorded or forwarded, at the pty-req and at
every window-change; and `portcullis replay --format asciicast` bounds a recording's
sizes as well (one made before).

Real components: sshd (bash, the account's shell), a PDP, the SSH proxy, asyncssh.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from pathlib import Path

import pytest
from test_ssh_proxy import ssh_stack

from pdp.cli.terminal_replay import export
from pdp.domain.casts import Cast, casts_of
from pdp.domain.recordings import session_events
from proxies.ssh.stream import MAX_COLUMNS, MAX_PIXELS, MAX_ROWS, terminal_size
from proxies.ssh.stream import Cast as Recording

DBA = ("dba", "pii-readers")
HUGE = 100_000


@pytest.mark.integration
async def test_a_huge_terminal_is_bounded_as_recorded_and_as_forwarded(tmp_path: Path) -> None:
    async with ssh_stack(tmp_path) as stack:
        async with await stack.connect(DBA) as conn:
            process = await conn.create_process(term_type="xterm", term_size=(HUGE, HUGE))
            process.stdin.write("stty size; echo p39-$((6*7))-one\n")
            said = await process.stdout.readuntil("p39-42-one")
            assert f"{MAX_ROWS} {MAX_COLUMNS}" in said, said  # before: 34464 34464
            process.change_terminal_size(HUGE * 3, HUGE, HUGE, HUGE)
            await asyncio.sleep(0.2)  # the window-change reaches the upstream first
            process.stdin.write("stty size; echo p39-$((6*8))-two\n")
            said = await process.stdout.readuntil("p39-48-two")
            assert f"{MAX_ROWS} {MAX_COLUMNS}" in said, said
            process.change_terminal_size(120, 40)
            await asyncio.sleep(0.2)
            process.stdin.write("stty size; echo p39-$((6*9))-three\n")
            said = await process.stdout.readuntil("p39-54-three")
            assert "40 120" in said, said  # an ordinary size stays as sent
            process.stdin.write("exit\n")
            await process.wait()
        await stack.proxy.settled()
        events = await session_events(stack.pdp.store)
    (cast,) = casts_of(events)
    assert (cast.header["width"], cast.header["height"]) == (MAX_COLUMNS, MAX_ROWS)
    resizes = [e[2] for e in cast.events if e[1] == "r"]
    assert resizes == [f"{MAX_COLUMNS}x{MAX_ROWS}", "120x40"], resizes


def test_sizes_are_bounded_each_on_its_own() -> None:
    assert terminal_size(80, 24) == (80, 24, 0, 0)
    assert terminal_size(0, 0, 0, 0) == (0, 0, 0, 0)  # not given stays not given
    assert terminal_size(2**32 - 1, 5, 2**32 - 1, 7) == (MAX_COLUMNS, 5, MAX_PIXELS, 7)
    recording = Recording(HUGE, HUGE, "xterm", 0.0)
    assert (recording.header["width"], recording.header["height"]) == (MAX_COLUMNS, MAX_ROWS)
    recording.resize(0.5, 7, HUGE)
    assert recording.take()[-1][2] == f"7x{MAX_ROWS}"


def test_an_export_bounds_a_recordings_sizes() -> None:
    # a recording made before the bound, or a header that is no number
    made = Cast(
        1,
        header={"version": 2, "width": HUGE, "height": HUGE, "timestamp": 1},
        events=[[0.1, "o", "$ "], [0.2, "r", f"{HUGE}x{HUGE}"], [0.3, "r", "90x30"],
                [0.4, "r", "zx"], [0.5, "o", "ok\r\n"]],
    )  # fmt: skip
    out = io.StringIO()
    assert export([made], argparse.Namespace(channel=None), out) == 0
    header, *events = (json.loads(line) for line in out.getvalue().splitlines())
    assert (header["width"], header["height"]) == (MAX_COLUMNS, MAX_ROWS)
    assert [e[2] for e in events if e[1] == "r"] == [f"{MAX_COLUMNS}x{MAX_ROWS}", "90x30"]
    assert [e[2] for e in events if e[1] == "o"] == ["$ ", "ok\r\n"]  # the rest as recorded
    odd = Cast(2, header={"width": "wide", "height": -3}, events=[])
    out = io.StringIO()
    export([odd], argparse.Namespace(channel=None), out)
    header = json.loads(out.getvalue().splitlines()[0])
    assert (header["width"], header["height"]) == (80, 1)
