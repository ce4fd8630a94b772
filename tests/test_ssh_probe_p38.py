"""SSH probe, part 38: commands typed under `stty -echo` are missing from the text replay.

`portcullis replay` plays a recorded terminal's output, which shows what was typed only as
far as the terminal echoed it. The proxy starts the upstream's terminal with ECHO on (part
37), but a shell may turn it off itself: `stty -echo` is replayed, and every command typed
after it ran with nothing on the screen, the auditor seeing prompts and results only. The
recording holds every keystroke (its "i" events, exported by `--format asciicast`); the
replay now shows each typed line the terminal did not echo, inert and marked, where its
Enter was (pdp.domain.casts.Unechoed), and after a `--raw` play as a list.

Real components: sshd (bash, the account's shell), a PDP, the SSH proxy, asyncssh.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest
from test_ssh_proxy import ssh_stack

from pdp.cli.terminal_replay import after_timeline
from pdp.domain.casts import Cast, Unechoed, casts_of
from pdp.domain.recordings import session_events


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _replayed(cast: Cast, raw: bool) -> str:
    out = _Terminal()
    after_timeline([cast], argparse.Namespace(speed=100.0, raw=raw), out, sleep=lambda _: None)
    return out.getvalue()


@pytest.mark.integration
async def test_lines_typed_after_stty_minus_echo_are_replayed_marked(tmp_path: Path) -> None:
    async with ssh_stack(tmp_path) as stack:
        async with await stack.connect(("dba", "pii-readers")) as conn:
            process = await conn.create_process(term_type="xterm", term_size=(100, 30))
            process.stdin.write("stty -echo; echo p38-$((1+1))-off\n")
            await process.stdout.readuntil("p38-2-off")  # echo is off from here on
            process.stdin.write("echo p38-$((6*7))-hidden\n")
            await process.stdout.readuntil("p38-42-hidden")
            process.stdin.write("exit\n")
            await process.wait()
        await stack.proxy.settled()
        events = await session_events(stack.pdp.store)
    (cast,) = casts_of(events)
    assert "echo p38-$((6*7))-hidden" not in cast.output  # the screen never showed it
    for raw in (False, True):
        shown = _replayed(cast, raw)
        assert "[typed, not echoed: echo p38-$((6*7))-hidden]" in shown, shown
        assert "[typed, not echoed: stty" not in shown  # echoed: on the screen already


def test_an_echoed_line_is_not_repeated() -> None:
    watch = Unechoed()
    for key in "ls -l\r":
        assert watch.typed(key) == []
        watch.output(key if key != "\r" else "\r\ntotal 0\r\n$ ")
    assert watch.end() == []


def test_a_line_sent_whole_is_judged_by_the_echo_after_it() -> None:
    watch = Unechoed()
    assert watch.typed("uptime\rwhoami\r") == []
    watch.output("uptime\r\n 10:00 up\r\n$ whoami\r\nroot\r\n$ ")
    assert watch.typed("rm -rf /x\r") == []
    watch.output("$ ")  # echo off: nothing
    assert watch.typed("id\r") == ["rm -rf /x"]
    assert watch.end() == ["id"]


def test_erasures_and_cursor_keys_still_count_as_echoed() -> None:
    watch = Unechoed()
    watch.typed("lx\x7f")
    watch.output("lx\b \b")
    watch.typed("s\x1b[D\x1b[C")
    watch.output("s\x1b[D\x1b[C")
    watch.typed("\r")
    assert watch.end() == []


def test_a_line_shown_only_in_part_is_unechoed() -> None:
    watch = Unechoed()
    watch.typed("cat /etc/shadow; echo ok\r")
    watch.output("ok\r\n$ ")
    assert watch.end() == ["cat /etc/shadow; echo ok"]


def test_unechoed_lines_come_back_inert_to_the_replay() -> None:
    cast = Cast(0, events=[[0.1, "o", "$ "], [0.2, "i", "printf '\x1b]0;t\x07'\r"]])
    shown = _replayed(cast, raw=False)
    assert "[typed, not echoed: printf '\\x1b]0;t\\x07']" in shown, shown


def test_a_line_with_no_end_is_shown_in_pieces() -> None:
    watch = Unechoed()
    watch.typed("x" * (Unechoed.MAX_LINE * 2 + 5))
    assert watch.end() == ["x" * Unechoed.MAX_LINE] * 2 + ["x" * 5]
