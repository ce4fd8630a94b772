"""What the console writes into HTML: escaped by default, client text inert, charts with
their numbers. No server here; the browser tests check the same in Chromium."""

from __future__ import annotations

from pdp.console.charts import bars, stacked_columns
from pdp.console.markup import Html, esc, render, tag, text_block


def test_client_text_is_escaped_and_inert():
    hostile = "<script>x</script>\" onmouseover='y'\x1b[2J\u202egnp.exe\x00\r\n"
    shown = esc(hostile)
    assert "<script>" not in shown and "&lt;script&gt;" in shown
    assert "&quot;" in shown and "&#x27;" in shown
    for raw in ("\x1b", "\u202e", "\x00", "\r", "\n"):
        assert raw not in shown
    assert "\\x1b" in shown and "\\u202e" in shown


def test_a_statement_keeps_its_lines_and_nothing_else():
    shown = text_block("SELECT 1;\r\n-- \x1b]0;title\x07\nSELECT '<b>'")
    lines = ["SELECT 1;", "-- \\x1b]0;title\\x07", "SELECT &#x27;&lt;b&gt;&#x27;"]
    assert shown.split("\n") == lines


def test_attributes_and_templates_escape_values_but_not_markup():
    link = tag("a", "x", href='/console/"><script>', data_id="a b")
    assert link == '<a href="/console/&quot;&gt;&lt;script&gt;" data-id="a b">x</a>'
    assert tag("input", "", name="n", required=True, disabled=False) == '<input name="n" required>'
    page = render("message.html", title="<t>", message=Html("<em>ok</em>"))
    assert "&lt;t&gt;" in page and "<em>ok</em>" in page


def test_charts_escape_labels_and_carry_their_numbers():
    chart = bars("By connection", {"<img src=x>": 3, "db": 1}, "c")
    assert "<img" not in chart and "&lt;img src=x&gt;" in chart
    assert 'role="img"' in chart and "<td>3</td>" in chart
    columns = stacked_columns("By verdict", ["10:00", "11:00"], {"allow": [2, 0], "deny": [0, 5]},
                              "v")  # fmt: skip
    assert 'class="series-allow"' in columns and 'class="series-deny"' in columns
    assert "<td>11:00</td><td>0</td><td>5</td>" in columns
