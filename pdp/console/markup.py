"""HTML for the console: escaped by default, control characters made inert.

Owns the two rules every console page follows: a value goes into HTML escaped unless it
is `Html` this module (or a template) made, and text a client sent (SQL, HTTP paths,
subjects, reasons) is made inert first — control characters, bidirectional overrides and
line separators shown as visible escapes (pdp.plumbing.rendering.inert), with the line
breaks of a multi-line statement kept as line breaks. Pages are built from
`templates/*.html` (string.Template, `$name` placeholders) and small helpers here.
No IO beyond reading the templates once.
"""

from __future__ import annotations

import html
import string
from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import Any

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
    """Multi-line client text (a statement) for a <pre>: each line inert, breaks kept."""
    lines = str("" if value is None else value).split("\n")
    return Html("\n".join(html.escape(inert(line.rstrip("\r")), quote=True) for line in lines))


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
