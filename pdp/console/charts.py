"""Charts as inline SVG, drawn on the server from counts: no script, no library.

Owns two shapes — columns over time stacked by a category (decisions per hour by
verdict) and horizontal bars (decisions per connection, per zone) — each an <svg
role="img"> with a title and a description, a <title> per mark for pointer users, and
the same numbers in a table next to it for everyone else. Colours come from CSS classes
(`series-<name>`), so the Content-Security-Policy needs no inline style. No IO.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from pdp.console.markup import Html, esc

WIDTH, HEIGHT, PAD = 720, 220, 30


def _cls(name: str) -> str:
    return "series-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def stacked_columns(
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[int]],
    chart_id: str,
) -> Html:
    """One column per label, its parts stacked by series (e.g. verdict)."""
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    top = max(totals, default=0) or 1
    n = max(len(labels), 1)
    step = (WIDTH - 2 * PAD) / n
    bar = max(step * 0.8, 1.0)
    marks: list[str] = []
    for i, label in enumerate(labels):
        y = float(HEIGHT - PAD)
        for name, values in series.items():
            count = values[i]
            if not count:
                continue
            h = (HEIGHT - 2 * PAD) * count / top
            y -= h
            marks.append(
                f'<rect class="{_cls(name)}" x="{PAD + i * step:.1f}" y="{y:.1f}" '
                f'width="{bar:.1f}" height="{h:.1f}"><title>{esc(label)}: {esc(name)} '
                f"{count}</title></rect>"
            )
    axis = (
        f'<line class="axis" x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" '
        f'y2="{HEIGHT - PAD}"></line>'
        f'<text class="tick" x="{PAD}" y="{PAD - 8}">max {top}</text>'
    )
    if labels:
        axis += (
            f'<text class="tick" x="{PAD}" y="{HEIGHT - 8}">{esc(labels[0])}</text>'
            f'<text class="tick end" x="{WIDTH - PAD}" y="{HEIGHT - 8}">{esc(labels[-1])}</text>'
        )
    legend = "".join(
        f'<li><span class="swatch {_cls(name)}"></span>{esc(name)} {sum(values)}</li>'
        for name, values in series.items()
    )
    svg = _svg(title, chart_id, "".join(marks) + axis, f"{sum(totals)} in all")
    names = list(series)
    rows = [
        [label, *(str(series[name][i]) for name in names)]
        for i, label in enumerate(labels)
        if totals[i]
    ]
    numbers = _numbers(title, ["Period", *names], rows)
    return Html(svg + f'<ul class="legend">{legend}</ul>' + numbers)


def bars(title: str, counts: dict[str, int], chart_id: str) -> Html:
    """One horizontal bar per name, longest first."""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    top = max(counts.values(), default=0) or 1
    row = 26
    height = max(len(ordered), 1) * row + 10
    marks = []
    for i, (name, count) in enumerate(ordered):
        w = (WIDTH - 260) * count / top
        y = 5 + i * row
        marks.append(
            f'<text class="label" x="0" y="{y + 16}">{esc(name[:30])}</text>'
            f'<rect class="{_cls("bar")}" x="200" y="{y}" width="{w:.1f}" height="{row - 8}">'
            f"<title>{esc(name)}: {count}</title></rect>"
            f'<text class="tick" x="{205 + w:.1f}" y="{y + 16}">{count}</text>'
        )
    svg = _svg(title, chart_id, "".join(marks), f"{len(ordered)} item(s)", height)
    return Html(svg + _numbers(title, ["Name", "Count"], [[n, str(c)] for n, c in ordered]))


def _numbers(title: str, header: list[str], rows: list[list[str]]) -> str:
    """The chart's numbers as a table, folded under the chart."""
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (
        f"<details><summary>{esc(title)}: the numbers</summary><table><thead><tr>{head}"
        f"</tr></thead><tbody>{body}</tbody></table></details>"
    )


def _svg(title: str, chart_id: str, body: str, desc: str, height: int = HEIGHT) -> Html:
    return Html(
        f'<svg class="chart" role="img" aria-labelledby="{chart_id}-t {chart_id}-d" '
        f'viewBox="0 0 {WIDTH} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
        f'xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{chart_id}-t">{esc(title)}</title><desc id="{chart_id}-d">{esc(desc)}</desc>'
        f"{body}</svg>"
    )
