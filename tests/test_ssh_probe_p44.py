"""SSH probe, part 44: a flood of long exec lines at the PDP's reader of long lines.

A line over READ_APART that only bashlex reads is read by one spawned worker within
READ_SECONDS (pdp/api/shell_reading.py). That time ran from the line's submission, its
wait behind every other line included: a reader sending many distinct long lines at once
(16 channels a connection, several connections) made the lines queued behind them time
out, each timeout shut the worker down with every queued line cancelled — another
session's line among them, whose decision then failed with a CancelledError, as the
concurrent timeouts failed with an AttributeError (a pool already shut down) — and a
line not read so was kept as malformed for good: the same line sent later by anyone was
denied unread. Now a line's time is its own reading, lines take their turn one at a time
(waiting WAIT_SECONDS at most), a session has at most PENDING_PER_SENDER lines in the
reader, and a line not read for a reason of the moment is read again when sent again.

Real components: the PDP's reader with its spawned worker and bashlex.
"""

from __future__ import annotations

import asyncio

import pytest

from pdp.api import shell_reading
from pdp.api.shell_reading import ShellReader
from pdp.domain import ssh_input


def _long_line(tag: str, words: int = 850) -> str:
    """A line only bashlex reads, ~15 KiB (its words under MAX_WORDS)."""
    said = " ".join(f"'{tag}-{i}-xxxxxxxx'" for i in range(words))
    return f'printf "%s\\n" "$(uptime)" {said} && df -h'


def _read(raw: str) -> bool:
    return "malformed" not in ssh_input.exec_input(raw)


async def _flood_then(reader: ShellReader, victim: str, flood: list[str]) -> list[object]:
    # a few lines read first: the worker is up before the flood comes
    await reader.read_ahead(_long_line(f"warm-{id(reader)}", 20))
    sent = [asyncio.ensure_future(reader.read_ahead(line)) for line in flood]
    await asyncio.sleep(0)
    sent.append(asyncio.ensure_future(reader.read_ahead(victim)))
    return list(await asyncio.gather(*sent, return_exceptions=True))


def test_a_flood_of_long_lines_leaves_anothers_line_read() -> None:
    # the timeout lower than the flood's queue (20 lines of ~0.1 s), above any one line's
    reader = ShellReader(timeout=0.5)
    victim = _long_line("victim-p44", 300)
    flood = [_long_line(f"flood-p44-{k}") for k in range(20)]
    try:
        outcomes = asyncio.run(_flood_then(reader, victim, flood))
    finally:
        reader.close()
    assert [o for o in outcomes if o is not None] == []
    assert _read(victim), ssh_input.exec_input(victim)


def test_a_line_not_read_in_time_is_read_when_sent_again() -> None:
    raw = _long_line("again-p44", 200)
    hurried = ShellReader(timeout=0.0001)  # a spawned worker cannot even start in that
    try:
        asyncio.run(hurried.read_ahead(raw))
    finally:
        hurried.close()
    assert "not read within" in ssh_input.exec_input(raw)["malformed"]
    reader = ShellReader()
    try:
        asyncio.run(reader.read_ahead(raw))
    finally:
        reader.close()
    assert _read(raw), ssh_input.exec_input(raw)


def test_a_session_holds_back_only_its_own_lines() -> None:
    async def sent(reader: ShellReader) -> None:
        mine = [
            _long_line(f"mine-p44-{k}", 300) for k in range(shell_reading.PENDING_PER_SENDER + 1)
        ]
        other = _long_line("other-p44", 300)
        await asyncio.gather(
            *(reader.read_ahead(line, "mallory") for line in mine), reader.read_ahead(other, "ann")
        )
        past = ssh_input.exec_input(mine[-1])
        assert "long lines of this session" in past["malformed"], past
        assert all(_read(line) for line in mine[:-1])
        assert _read(other)
        await reader.read_ahead(mine[-1], "mallory")  # its turn again: read now
        assert _read(mine[-1])

    reader = ShellReader()
    try:
        asyncio.run(sent(reader))
    finally:
        reader.close()


@pytest.fixture(autouse=True)
def _forget_readings() -> None:
    ssh_input._read_apart.clear()
    getattr(ssh_input, "_read_for_now", set()).clear()
