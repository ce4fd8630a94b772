"""Long SSH exec lines are read in a process of their own (pdp/api/shell_reading.py).

bashlex reads a line at 20-30 µs a byte on the PDP's event loop: a 16 KiB line held every
other session's decision 0.3-0.5 s. A line longer than READ_APART that the fast readings
do not read is read by a spawned worker; its decision's input is the same as bashlex's
reading here, the PDP's own process never reads it, and a line not read in time is
malformed (denied).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from pdp.api.shell_reading import ShellReader
from pdp.domain import ssh_input


def _long_line(tag: str) -> str:
    """A line only bashlex reads (a substitution and quoting), past READ_APART."""
    words = " ".join(f"'{tag}-{i}'" for i in range(ssh_input.READ_APART // 8))
    return f'printf "%s\\n" "$(uptime)" {words} && df -h'


@pytest.fixture
def reader() -> Iterator[ShellReader]:
    shells = ShellReader()
    yield shells
    shells.close()


def test_a_long_line_is_read_apart_into_the_same_input(reader: ShellReader) -> None:
    raw = _long_line("apart")
    assert len(raw) > ssh_input.READ_APART and ssh_input.read_apart(raw)
    before = ssh_input._exec_input.cache_info().misses
    asyncio.run(reader.read_ahead(raw))
    got = ssh_input.exec_input(raw)
    # nothing of it was read in this process
    assert ssh_input._exec_input.cache_info().misses == before
    assert not ssh_input.read_apart(raw)
    assert got == {k: v for k, v in ssh_input.read_line(raw)}
    assert "malformed" not in got
    assert sorted(p["argv"][0] for p in got["parts"]) == ["df", "printf", "uptime"]


def test_short_and_plain_lines_stay_on_the_loop(reader: ShellReader) -> None:
    assert not ssh_input.read_apart('printf "%s\\n" "$(uptime)"')
    plain = "df -h " + " ".join(f"/mnt/d{i}" for i in range(ssh_input.READ_APART // 6))
    assert len(plain) > ssh_input.READ_APART and not ssh_input.read_apart(plain)


def test_a_line_not_read_in_time_is_malformed() -> None:
    shells = ShellReader(timeout=0.0001)  # a spawned worker cannot even start in that
    try:
        raw = _long_line("late")
        asyncio.run(shells.read_ahead(raw))
        got = ssh_input.exec_input(raw)
        assert got["parts"] == [] and "not read within" in got["malformed"]
        # the next line gets a new worker
        shells.timeout = 60
        other = _long_line("after")
        asyncio.run(shells.read_ahead(other))
        assert "malformed" not in ssh_input.exec_input(other)
    finally:
        shells.close()


def test_readings_kept_are_bounded() -> None:
    for i in range(ssh_input.READ_APART_KEPT + 5):
        ssh_input.keep_reading(f"line {i}", ssh_input.unread(f"line {i}", "x"))
    assert len(ssh_input._read_apart) <= ssh_input.READ_APART_KEPT
    assert "line 0" not in ssh_input._read_apart
