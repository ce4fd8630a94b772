"""The row a full-screen program's cursor stands on, for the password prompt rule.

Owns one sans-IO piece of portcullis/password_prompts.py (no sockets, no asyncio): a
program that draws its screen by placing the cursor (tmux and screen, every window;
pinentry-curses, which gpg, ssh-add and git ask a passphrase with; vim; any curses form)
shows its prompt on a row it drew at some point, and then moves the cursor into its entry
field, with no line end between: the text since the output's last line end is the whole
drawing, its rows run together, and ends in no prompt (`Passphrase: ______ x <OK>
<Cancel> mqqqj`). Grid keeps the text of each row as drawn (cursor placing, erasing,
repeating, line ends, backspace and tab; nothing else: no scrolling, no lines inserted or
deleted, no wide characters) and gives what is left of the cursor on its row: the
screen's current line as a prompt reads it (`x Passphrase: `); at a field in a box
(whiptail, dialog: `│ ` left of the cursor), the box's label on the rows above it.

The rule keeps a Grid once the output places the cursor on a row (PLACES), and drops it
when the program leaves the alternate screen or resets the terminal (LEAVES): lines of
output are then read as lines again. Bounded: ROWS rows of COLUMNS characters, the last
GRID_READ characters of an output.
"""

from __future__ import annotations

import re

ROWS = 256  # rows kept (the ones farthest from the cursor dropped first)
# of each output, what a Grid draws at most: its end (a terminal's redraw, a few KiB, fits;
# a flood of output is not drawn whole, a row at a time in Python)
GRID_READ = 8 * 1024
COLUMNS = 1024  # characters kept of a row
# a cursor placed on a row it names: CUP, HVP, VPA (ECMA-48 8.3.21, 8.3.63, 8.3.158). Not
# the cursor sent home alone (`ESC [ H`: `clear`, a shell's screen cleared, read as lines
# as before) nor to a column (CHA: a progress line redrawn, read as a carriage return)
PLACES = re.compile("(?:\x1b\\[|\x9b)[0-9]+(?:;[0-9]*)?[Hfd]")
# the cursor sent to the line's first column (CHA 1, `ESC [ 1 G`: npm's, pip's progress)
TO_LINE_START = re.compile("(?:\x1b\\[|\x9b)[01]?G")
# the alternate screen left (xterm's private modes 1049, 1047, 47) or a full reset (RIS)
LEAVES = re.compile("\x1b(?:\\[\\?(?:1049|1047|47)l|c)|\x9b\\?(?:1049|1047|47)l")
# a line of text, maybe its rest erased (EL 0), ended (CR LF): output streamed in a window
# (a file shown, a build's log inside tmux) comes as runs of these, drawn a run at a time
_ERASED = ("\x1b[K", "\x1b[0K")
_LINE = "[^\x00-\x1f\x7f-\x9f]*(?:\x1b\\[0?K)?\r\n"
# lines run, then a sequence, a string (OSC, DCS, APC...: shown nowhere), a control, or text
_TOKENS = re.compile(
    f"(?P<lines>(?:{_LINE})+)"
    "|(?P<csi>(?:\x1b\\[|\x9b)(?P<params>[0-?]*)[ -/]*(?P<final>[@-~]))"
    "|\x1b[\\]P_^X][^\x07\x1b\x9c]*(?:\x07|\x1b\\\\|\x9c)?"
    "|(?P<esc>\x1b[ -/]*[0-~]?)"
    "|(?P<ctl>\r\n|[\x00-\x1f\x7f-\x9f])"
    "|(?P<text>[^\x00-\x1f\x7f-\x9f]+)"
)

# a sequence begun and not ended at an output's end (ESC, a CSI without its final byte, a
# string without its terminator), kept for the next up to MAX_CUT characters
_CUT = re.compile(
    "(?:\x1b(?:\\[[0-?]*[ -/]*|[ -/]*)?|\x9b[0-?]*[ -/]*|\x1b[\\]P_^X][^\x07\x1b\x9c]*)\\Z"
)
MAX_CUT = 256
# what draws nothing and moves no cursor: SGR, modes, reports asked, scroll regions, the
# keypad's and charsets' selections, strings (OSC, DCS, APC...: shown nowhere)
_INERT = re.compile(  # (alternatives led by their first character: read at C speed)
    "\x1b(?:\\[[0-?]*[ -/]*[mhlnrtpq]|[()*+][ -/]*[0-~]|[=>]"
    "|[\\]P_^X][^\x07\x1b\x9c]*(?:\x07|\x1b\\\\|\x9c)?)"
    "|\x9b[0-?]*[ -/]*[mhlnrtpq]"
    # a sequence another broke into before its final byte: dropped, as a terminal does
    "|(?:\x1b(?:\\[[0-?]*)?|\x9b[0-?]*)[ -/]*(?=[\x1b\x9b])"
)


# a field in a box: the box's left border (a line drawn, as Unicode or the line-drawing
# set's `x`), blanks, and what echoes a key typed in a secret's field; the rows above it,
# to the box's top, that may hold its label
_FIELD = re.compile("([\u2502\u2503\u2551|x]) ?(?:[\u2502\u2503\u2551|x] ?)?[*_\u2022\u25cf ]*\\Z")
LABEL_ROWS = 3
# a row of lines drawn, or blank: Unicode's box drawing, or the line-drawing set's letters
_DRAWN_LINES = re.compile("[\u2500-\u257f ]*|[jklmnqtuvwx ]*")


class Grid:
    """The rows a full-screen program drew, and its cursor."""

    def __init__(self) -> None:
        self.rows: dict[int, str] = {}
        self.row = 0
        self.col = 0
        self._saved = (0, 0)
        self._cut = ""  # a sequence the last output ended in the middle of
        # a carriage return came back over text on the cursor's row (a progress line)
        self.returned = False

    def left_of_cursor(self) -> str:
        """What the cursor's row shows left of the cursor (blanks where nothing was drawn)."""
        return self.rows.get(self.row, "")[: self.col].ljust(self.col)[-COLUMNS:]

    def label_above(self) -> str:
        """A dialog box's label for the field the cursor stands at the start of (whiptail's
        and dialog's --passwordbox: `Enter password` on rows above, inside the box; the
        field, maybe in a box of its own, left of the cursor showing only borders and what
        echoes a key): the text of the rows above, of LABEL_ROWS, between the box's border
        and its other, lines drawn left out; "" when the cursor is in no such field."""
        field = _FIELD.search(self.left_of_cursor())
        if field is None:
            return ""
        border, at = field[1], field.start()
        label: list[str] = []
        for row in range(self.row - 1, max(self.row - 1 - LABEL_ROWS, -1), -1):
            line = self.rows.get(row, "")
            if line[at : at + 1] != border:
                break  # out of the box
            text = line[at + 1 :].rstrip().removesuffix(border).strip()
            if _DRAWN_LINES.fullmatch(text):
                if label:
                    break
                continue  # (a row left blank, the field's own box)
            label.insert(0, text)
        return " ".join(label)[:COLUMNS]

    def feed(self, text: str) -> int:
        """Draws `text`; returns where in it the program left the alternate screen (its
        end if it did not): the rest is a line-at-a-time screen's. A sequence cut at its
        end waits for the rest in the next."""
        held = len(self._cut)
        drawn = self._cut + text
        # (text with no sequence in it, a file streamed, is read for none: the searches
        # below cost as much again as drawing it; a sequence cut at the end begins at its
        # last ESC, no ESC inside it, or at its last CSI after that)
        sequences = "\x1b" in drawn or "\x9b" in drawn
        begun = max(drawn.rfind("\x1b"), 0) if "\x1b" in drawn else drawn.rfind("\x9b")
        cut = _CUT.search(drawn, begun) if sequences else None
        end = cut.start() if cut is not None else len(drawn)
        self._cut = drawn[end:][:MAX_CUT]
        leave = LEAVES.search(drawn, 0, end) if sequences else None
        if leave is not None:
            end, self._cut = leave.start(), ""
        # what draws nothing and moves no cursor (colours, modes, charsets) taken out first:
        # the rest read a run of text, a line end or a move at a time
        shown = _INERT.sub("", drawn[:end]) if sequences else drawn[:end]
        for token in _TOKENS.finditer(shown):
            kind = token.lastgroup
            if kind == "lines":
                self._lines(token.group())
            elif kind == "text":
                self._draw(token.group())
            elif kind == "ctl":
                self._control(token.group())
            elif kind == "csi":
                self._sequence(token["params"], token["final"])
            elif kind == "esc":
                self._escape(token.group())
        self._bound()
        return len(text) if leave is None else max(leave.end() - held, 0)

    def _draw(self, text: str) -> None:
        line = self.rows.get(self.row, "").ljust(self.col)
        self.rows[self.row] = (line[: self.col] + text + line[self.col + len(text) :])[:COLUMNS]
        self.col = min(self.col + len(text), COLUMNS)
        if len(self.rows) > 2 * ROWS:  # (pruned now and then: a row placed far each time)
            self._bound()

    def _lines(self, run: str) -> None:
        """Lines run (_LINE): as drawn a token at a time, the first from the cursor's
        column, the rows of the rest written at once (no row at a time in Python)."""
        first, *rest = run[:-2].split("\r\n")
        erased = first.endswith(_ERASED)
        if text := first[: first.rindex("\x1b")] if erased else first:
            self._draw(text)
        if erased:
            self._erase_line(0)
        start, rows = self.row + 1, self.rows
        drawn = [
            line[: line.rindex("\x1b")] if line.endswith(_ERASED)
            else line + rows.get(row, "")[len(line) :]
            for row, line in enumerate(rest, start)
        ]  # fmt: skip
        rows.update(
            zip(range(start, start + len(rest)), (row[:COLUMNS] for row in drawn), strict=True)
        )
        self.row, self.col, self.returned = start + len(rest), 0, False
        if len(rows) > 2 * ROWS:  # (pruned as _draw prunes)
            self._bound()

    def _control(self, char: str) -> None:
        if char == "\r\n":
            self.row, self.col, self.returned = self.row + 1, 0, False
        elif char == "\r":
            self.col = 0
            self.returned = self.returned or bool(self.rows.get(self.row, "").strip())
        elif char in "\n\x0b\x0c":
            self.row += 1
            self.returned = False
        elif char == "\b":
            self.col = max(self.col - 1, 0)
        elif char == "\t":
            self.col = min((self.col // 8 + 1) * 8, COLUMNS)

    def _escape(self, esc: str) -> None:
        if esc == "\x1b7":
            self._saved = (self.row, self.col)
        elif esc == "\x1b8":
            self.row, self.col = self._saved
        elif esc == "\x1bE":
            self.row, self.col = self.row + 1, 0
        elif esc in ("\x1bD", "\x1bM"):
            self.row = max(self.row + (1 if esc == "\x1bD" else -1), 0)

    def _sequence(self, params: str, final: str) -> None:
        if params.startswith(("?", ">", "<", "=")):
            return  # private modes: nothing drawn, no cursor moved
        numbers = [int(p) if p.isdigit() else 0 for p in params.split(";")]
        n = min(max(numbers[0], 1), 1 << 16)
        if final in "su" and not params:  # SCOSC, SCORC: as ESC 7 and ESC 8
            self._escape("\x1b7" if final == "s" else "\x1b8")
            return
        if final in "HfdAB":
            self.returned = False
        if final in "Hf":
            column = numbers[1] if len(numbers) > 1 else 0
            self.row, self.col = n - 1, min(max(column, 1), COLUMNS) - 1
        elif final in "G`":
            self.col = min(n, COLUMNS) - 1
            if self.col == 0:  # as a carriage return (a progress line redrawn)
                self._control("\r")
        elif final == "d":
            self.row = n - 1
        elif final in "ABCD":
            step = {"A": (-n, 0), "B": (n, 0), "C": (0, n), "D": (0, -n)}[final]
            self.row = max(self.row + step[0], 0)
            self.col = min(max(self.col + step[1], 0), COLUMNS)
        elif final == "b" and self.col > 0:  # REP: the character before, n more times
            self._draw(self.rows.get(self.row, "").ljust(self.col)[self.col - 1] * min(n, COLUMNS))
        elif final == "X":  # ECH: n characters erased, the cursor stays
            line = self.rows.get(self.row, "")
            self.rows[self.row] = (
                line[: self.col] + " " * len(line[self.col : self.col + n]) + line[self.col + n :]
            )
        elif final == "J":
            self._erase_screen(numbers[0])
        elif final == "K":
            self._erase_line(numbers[0])

    def _erase_screen(self, how: int) -> None:
        if how in (2, 3):
            self.rows.clear()
            return
        for row in list(self.rows):
            if (row > self.row) if how == 0 else (row < self.row):
                del self.rows[row]
        self._erase_line(how)

    def _erase_line(self, how: int) -> None:
        line = self.rows.get(self.row, "")
        if how == 0:
            self.rows[self.row] = line[: self.col]
        elif how == 1:
            self.rows[self.row] = " " * min(self.col + 1, len(line)) + line[self.col + 1 :]
        else:
            self.rows[self.row] = ""

    def _bound(self) -> None:
        """The ROWS rows nearest the cursor kept (of two as near, the one below): in row
        order, a run of ROWS of them, found by halving (a stream drawing a row at a time
        has a few rows to drop each output, out of a few hundred)."""
        if len(self.rows) <= ROWS:
            return
        rows, cursor = sorted(self.rows), self.row
        # the first run whose last row is as far below the cursor as its first is above
        first, last = 0, len(rows) - ROWS
        while first < last:
            middle = (first + last) // 2
            if rows[middle + ROWS - 1] - cursor >= cursor - rows[middle]:
                last = middle
            else:
                first = middle + 1
        if first > 0 and cursor - rows[first - 1] < rows[first + ROWS - 1] - cursor:
            first -= 1  # the run before it is nearer
        for row in rows[:first] + rows[first + ROWS :]:
            del self.rows[row]
