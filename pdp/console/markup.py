"""HTML for the console: escaped by default, control characters made inert.

Owns the two rules every console page follows: a value goes into HTML escaped unless it
is `Html` this module (or a template) made, and text a client sent (SQL, HTTP paths,
subjects, reasons) is made inert first — control characters, bidirectional overrides and
line separators shown as visible escapes (pdp.plumbing.rendering.inert), with the line
breaks of a multi-line statement kept as line breaks. Client text is drawn in the order
it is stored (`client_text`): the words of a right-to-left script, the bidi algorithm
would reorder with the numbers and words around them (`ticket 100 \u05d0 200` drawn
`ticket 100 200 \u05d0`), are each kept in their place, readable, and a word mixing
scripts (`\u043erders` with a Cyrillic o) is marked for the approver. Pages are built from
`templates/*.html` (string.Template, `$name` placeholders) and small helpers here.
No IO beyond reading the templates once.
"""

from __future__ import annotations

import html
import string
import unicodedata
from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import Any

from pdp.domain.approver_view import mixed_script_words
from pdp.plumbing.rendering import inert


class Html(str):
    """Markup that is already safe: inserted as is."""

    __slots__ = ()


def esc(value: Any) -> Html:
    """A value as HTML text: Html stays, anything else is made inert then escaped."""
    if isinstance(value, Html):
        return value
    return Html(html.escape(inert("" if value is None else value), quote=True))


def text_block(value: Any) -> Html:
    """Multi-line client text (a statement) for a <pre>: each line inert, every
    character drawn in stored order, left to right (pre and code, console.css; a
    right-to-left word too: a statement is read as code), words mixing scripts marked
    (`_ordered`), breaks kept."""
    lines = str("" if value is None else value).split("\n")
    return Html("\n".join(_ordered(inert(line.rstrip("\r")), words=False) for line in lines))


def client_text(value: Any) -> Html:
    """Text a client sent, inline: inert, escaped, and drawn in the order it is stored
    (span.client: an isolate drawn left to right whatever its letters, console.css), each
    run of right-to-left words kept in its place and readable (<bdi dir=rtl>), each word
    mixing scripts marked (`_ordered`). Html stays as it is."""
    if isinstance(value, Html):
        return value
    return tag("span", _ordered(inert("" if value is None else value)), class_="client")


def _ordered(text: str, words: bool = True) -> Html:
    """`text` (already inert) escaped, its words mixing scripts in <mark class=mixed-scripts>
    (title: which scripts), its right-to-left runs in <bdi dir=rtl> when `words`."""
    plain = _rtl_runs if words else (lambda part: Html(html.escape(part, quote=True)))
    out, at = [], 0
    for start, end, scripts in mixed_script_words(text):
        out.append(plain(text[at:start]))
        title = esc(f"mixed scripts: {' + '.join(scripts)} letters in one word")
        word = plain(text[start:end])
        out.append(Html(f'<mark class="mixed-scripts" title="{title}">{word}</mark>'))
        at = end
    out.append(plain(text[at:]))
    return Html("".join(out))


def _rtl(char: str) -> bool:
    return unicodedata.bidirectional(char) in ("R", "AL")


def _rtl_runs(text: str) -> Html:
    """`text` escaped, each run of right-to-left letters (with their marks and the spaces
    between them, never a digit or punctuation) in <bdi dir=rtl>: inside a left-to-right
    override such a word is drawn readable, as one unit, where it stands."""
    if text.isascii():
        return Html(html.escape(text, quote=True))
    out, at, n = [], 0, len(text)
    while at < n:
        if not _rtl(text[at]):
            start = at
            while at < n and not _rtl(text[at]):
                at += 1
            out.append(html.escape(text[start:at], quote=True))
            continue
        start = end = at
        while at < n and (_rtl(text[at]) or text[at] == " " or
                          unicodedata.category(text[at]).startswith("M")):  # fmt: skip
            at += 1
            if _rtl(text[at - 1]) or unicodedata.category(text[at - 1]).startswith("M"):
                end = at
        at = end  # trailing spaces stay outside the run
        out.append(f'<bdi dir="rtl">{html.escape(text[start:end], quote=True)}</bdi>')
    return Html("".join(out))


def join(parts: Iterable[Any], sep: str = "") -> Html:
    return Html(sep.join(esc(p) for p in parts))


def tag(name: str, content: Any = "", /, **attrs: Any) -> Html:
    """<name attrs>content</name>; attribute names use _ for - and a trailing _ for
    Python keywords (class_); True renders a bare attribute, False/None none."""
    rendered = []
    for key, value in attrs.items():
        attr = key.rstrip("_").replace("_", "-")
        if value is True:
            rendered.append(f" {attr}")
        elif value not in (False, None):
            rendered.append(f' {attr}="{esc(value)}"')
    if name in _VOID:
        return Html(f"<{name}{''.join(rendered)}>")
    return Html(f"<{name}{''.join(rendered)}>{esc(content)}</{name}>")


_VOID = frozenset({"input", "br", "hr", "meta", "link", "img"})


@cache
def _template(name: str) -> string.Template:
    text = resources.files("pdp.console").joinpath("templates", name).read_text("utf-8")
    return string.Template(text)


def render(name: str, /, **values: Any) -> Html:
    """templates/<name> with every value escaped unless it is Html."""
    return Html(_template(name).substitute({k: esc(v) for k, v in values.items()}))
