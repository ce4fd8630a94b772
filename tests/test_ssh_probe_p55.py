"""SSH probe, part 55: the screen grid (part 52) drew output streamed inside a window a
token at a time in Python: a log or a file shown inside tmux (`y ESC [ K CR LF`, line
after line) cost the proxy 0.6-0.8 us a byte read, 1-3 MB/s of a core, and each output
past 256 rows sorted every row kept.

Now a run of whole lines (text, maybe its rest erased, CR LF) is drawn at once, the rows
kept found by halving, the sequences that draw nothing taken out at C speed, and text with
no sequence in it searched for none. Measured (sshsec19, the rule fed the outputs OpenSSH
got through the proxy): `yes` inside tmux, 0.5-1 us -> 0.17 us a byte read; a file shown
after the cursor was placed, 55-75 -> 10-17 ns a byte read. What the grid reads of a
screen is unchanged: fed whole or a character at a time, the same rows and cursor (a
sequence broken into by another before its final byte is dropped either way, as a
terminal drops it).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portcullis.password_prompts import MARKER, SecretInput
from portcullis.password_prompts_grid import ROWS, Grid


def test_lines_streamed_in_a_window_are_drawn_a_run_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawn: list[str] = []
    real = Grid._draw

    def counted(grid: Grid, text: str) -> None:
        drawn.append(text)
        real(grid, text)

    monkeypatch.setattr(Grid, "_draw", counted)
    rule = SecretInput()
    rule.shown("\x1b[?1049h\x1b[1;1H")  # tmux: a window drawn by placing the cursor
    for _ in range(20):
        rule.shown("y\x1b[K\r\n" * 1365 + "\x1b[1;50r\x1b[49;1H")
    assert len(drawn) <= 20 * 2, len(drawn)  # not a call a line
    rule.shown("\x1b[50;1H[sudo] password for ann: ")
    assert rule.typed("hunter2\r") == MARKER + "\r"


_PIECES = st.sampled_from(
    ["y", "OK", "K", "Password: ", "é", "\x1b[K", "\x1b[0K", "\x1b[1K", "\r\n", "\r", "\n",
     "\x1b[3;4H", "\x1b[2A", "\x1b[5d", "\x1b[1m", "\x1b[m", "\b", "\t", "\x1b[2J", "\x1b[2X",
     "\x1b[3b", "\x1b[12G", "\x1b7", "\x1b8", "\x1b]0;t\x07",
     "\x9b", "\x9b2;3H", "\x1b]2;x\x9b", "\x1b\\", "\x1b[", "3;1H", "\x1b"]
)  # fmt: skip


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.lists(st.lists(_PIECES, max_size=40), max_size=6))
def test_a_screen_fed_whole_or_a_character_at_a_time_reads_the_same(
    outputs: list[list[str]],
) -> None:
    whole, each = Grid(), Grid()
    for pieces in outputs:
        text = "".join(pieces)
        whole.feed(text)
        for char in text:
            each.feed(char)
        assert (whole.row, whole.col) == (each.row, each.col), text
        assert _drawn(whole) == _drawn(each), text
        assert whole.left_of_cursor() == each.left_of_cursor()
        assert whole.returned == each.returned


def _drawn(grid: Grid) -> dict[int, str]:
    """The rows with anything drawn (a row left empty is as one never drawn)."""
    return {row: line for row, line in grid.rows.items() if line}


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.sets(st.integers(-600, 600), min_size=ROWS - 2, max_size=ROWS + 80), st.integers(-700, 700)
)
def test_the_rows_kept_are_those_nearest_the_cursor(rows: set[int], cursor: int) -> None:
    grid = Grid()
    grid.rows, grid.row = {row: "x" for row in rows}, cursor
    grid._bound()
    kept = set(grid.rows)
    assert len(kept) == min(len(rows), ROWS)
    farthest = max((abs(row - cursor) for row in kept), default=0)
    assert all(abs(row - cursor) >= farthest for row in rows - kept)
