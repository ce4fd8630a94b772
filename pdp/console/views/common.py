"""Small pieces every console page shows the same way: times, ages, badges, forms.
No IO."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

from pdp.console.markup import Html, client_text, esc, join, tag
from pdp.plumbing.timestamps import rfc3339


def age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


# the times a search or an export may name: years 1 to 9999, as RFC 3339 writes them (the
# store keeps microseconds in a 64-bit integer: NaN, an infinity or 1e23 failed there)
EARLIEST, LATEST = -62135596800.0, 253402300799.0


def plausible(unix: float, text: str) -> float:
    """`unix` (read from `text`) if it is a time the store can hold, else ValueError."""
    if not math.isfinite(unix) or not EARLIEST <= unix <= LATEST:
        raise ValueError(f"{text[:40]!r} is not a time between the years 1 and 9999")
    return unix


def when(unix: float, with_age: bool = False) -> Html:
    stamp = rfc3339(unix)
    label = f"{age(time.time() - unix)} ago" if with_age else stamp
    return tag("time", label, datetime=stamp, title=stamp,
               data_created=f"{unix:.3f}" if with_age else None)  # fmt: skip


def badge(text: str, kind: str = "") -> Html:
    return tag("span", text, class_=f"badge {kind or text}".strip())


def verdict_badge(verdict: str) -> Html:
    return badge(verdict or "-", f"verdict-{verdict.replace('_', '-')}" if verdict else "")


def masking_badges(counts: dict[str, int]) -> Html:
    """What masking did: the rule or detector and how many values — never a value."""
    return join(
        (badge(f"masked {rule} \u00d7{n}", "masked") for rule, n in sorted(counts.items())), " "
    )


def bullet_list(items: Iterable[Any], empty: str = "—") -> Html:
    items = list(items)
    if not items:
        return esc(empty)
    return tag("ul", join(tag("li", client_text(i)) for i in items))


def definitions(rows: Iterable[tuple[str, Any]]) -> Html:
    """Rows of a label and a value: a value not already Html is client text
    (`client_text`: drawn in stored order, words mixing scripts marked)."""
    return tag("dl", definition_rows(rows))


def definition_rows(rows: Iterable[tuple[str, Any]]) -> Html:
    """The <dt>/<dd> pairs of `definitions`, without the <dl>."""
    return join(Html(tag("dt", k) + tag("dd", client_text(v))) for k, v in rows)


def csrf_field(csrf: str) -> Html:
    return Html(f'<input type="hidden" name="csrf" value="{esc(csrf)}">')


def table(caption: str, header: Iterable[str], rows: Iterable[Iterable[Any]], **attrs: Any) -> Html:
    head = tag("tr", join(tag("th", h, scope="col") for h in header))
    body = join(tag("tr", join(tag("td", client_text(c)) for c in row)) for row in rows)
    return tag("table", Html(tag("caption", caption) + tag("thead", head) + tag("tbody", body)),
               **attrs)  # fmt: skip
