"""What people read: client-supplied text made inert, and a command shown statement by
statement.

Owns the two rules of every human rendering (CLI tables and timelines, webhook text,
approval views); machine output (JSON, exports) stays exact:

- nothing a client sent can act on the reader's terminal or forge a line: control
  characters (C0, DEL, C1), line and paragraph separators and the bidirectional overrides
  are written as visible escapes (`\\x1b`, `\\n`, `\\u202e`), and a backslash as `\\\\`, so
  the escaped form cannot be confused with the real thing;
- an approver sees what they approve: the number of statements and each statement in
  full with its own classification, never a prefix of the text.
"""

from __future__ import annotations

import re
from typing import Any

from pdp.sql import classify, split

_UNSAFE = re.compile(
    "[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]"
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
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


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
