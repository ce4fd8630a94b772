"""What people read: client-supplied text made inert, and a command shown statement by
statement.

Owns the two rules of every human rendering (CLI tables and timelines, webhook text,
approval views); machine output (JSON, exports) stays exact:

- nothing a client sent can act on the reader's terminal or forge a line: control
  characters (C0, DEL, C1), line and paragraph separators and the bidirectional overrides
  are written as visible escapes (`\\x1b`, `\\n`, `\\u202e`), and a backslash as `\\\\`, so
  the escaped form cannot be confused with the real thing;
- nothing a client sent can look like other text: characters that draw nothing or a blank
  (format characters such as U+200B and U+FEFF, the default-ignorable ones such as tag
  characters, variation selectors and Hangul fillers, every space but U+0020) and marks
  that overlay or enclose the character before them are escapes too (`\\u200b`,
  `\\U000e0041`): `ord\\u200bers` is not `orders`, and an approver must see the difference;
- an approver sees what they approve: the number of statements and each statement in
  full with its own classification, never a prefix of the text.
"""

from __future__ import annotations

import re
from typing import Any

from pdp.sql import classify, split

_UNSAFE = re.compile(
    "[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029"
    # format characters (Unicode Cf: bidi controls and marks, zero-width ones, BOM, tags)
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    # the rest of Default_Ignorable_Code_Point: combining grapheme joiner, Hangul fillers,
    # Khmer inherent vowels, Mongolian selectors, variation selectors, tags' plane
    "\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u3164\ufe00-\ufe0f\uffa0"
    "\ufff0-\ufff8\U000e0000-\U000e0fff"
    # spaces other than U+0020 (Zs), and surrogates (not text)
    "\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000\ud800-\udfff"
    # marks that overlay (stroke, solidus: = becomes an unequal sign) or enclose
    "\u0334-\u0338\u0488\u0489\u1abe\u20d0-\u20ff\ua670-\ua672"
    "]"
)
_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def inert(text: Any) -> str:
    """text with every character that could act on a terminal written as an escape."""
    value = str(text)
    return _UNSAFE.sub(_escape, value) if _UNSAFE.search(value) else value


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def statements(command: str) -> list[dict[str, Any]]:
    """Each statement of a SQL command with its own classification, in order."""
    out: list[dict[str, Any]] = []
    for text in split(command):
        entries = classify(text)
        kinds = [
            f"{e.get('type', '?')} ({e.get('tag', '?')})"
            + (" without WHERE" if e.get("has_where") is False else "")
            for e in entries
        ]
        out.append({"text": text, "classification": kinds})
    return out


def statement_lines(command: str | list[dict[str, Any]], indent: str = "    ") -> list[str]:
    """A command for an approver: how many statements, then every one in full (`command`
    may be its statements already: pdp.domain.approver_view's masked ones)."""
    found = statements(command) if isinstance(command, str) else command
    lines = [f"{indent}{len(found)} statement{'s' if len(found) != 1 else ''}:"]
    for n, item in enumerate(found, 1):
        lines.append(f"{indent}  {n}. [{', '.join(item['classification'])}] {inert(item['text'])}")
    return lines
