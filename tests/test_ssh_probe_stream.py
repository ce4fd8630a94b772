"""Probe P2: a shell's recording (proxies/ssh/stream.Cast) as evidence of what was typed.

Output and input shared one budget per second: a privileged user's shell flooding output
(`cat` of a large file, `yes`) in the second they typed a command left the keystrokes
out of the recording, which said only that bytes were not recorded."""

from __future__ import annotations

from proxies.ssh.stream import RECORDED_PER_SECOND, Cast


def test_output_flooding_a_second_never_leaves_out_what_was_typed() -> None:
    cast = Cast(80, 24, "xterm", started=0.0)
    cast.output(0.10, b"y" * (RECORDED_PER_SECOND + 4096))
    cast.input(0.20, b"rm -rf /etc\r")
    cast.output(0.30, b"more\r\n")
    events = cast.take(final=True)
    typed = [e[2] for e in events if e[1] == "i"]
    assert typed == ["rm -rf /etc\r"]
    assert sum(len(e[2]) for e in events if e[1] == "o" and "portcullis" not in e[2]) == (
        RECORDED_PER_SECOND
    )
    assert events[-1][2] == "\r\n[portcullis: 4102 bytes not recorded]\r\n"


def test_input_has_a_budget_of_its_own() -> None:
    cast = Cast(80, 24, "xterm", started=0.0)
    cast.input(0.1, b"x" * (RECORDED_PER_SECOND + 10))
    events = cast.take(final=True)
    assert sum(len(e[2]) for e in events if e[1] == "i") == RECORDED_PER_SECOND
    assert events[-1][2] == "\r\n[portcullis: 10 bytes not recorded]\r\n"
