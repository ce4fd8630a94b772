"""A reused row-filtered simple Query run prepared is bound to exactly the filled text's
values (proxies/postgres/prepared_rewrites.py): the rewrite's text with each $n replaced
by its bound value is what literals.fill() makes of the statement, and its frames are the
Parse, Bind, Describe, Execute and Sync of those values, whatever shortcut found them (a
lone number taken by its place in the statement's skeleton, or every number read)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from portcullis.literals import ShapeRewrite, fill, printed, shape_of
from proxies.postgres import codec
from proxies.postgres.prepared_rewrites import PreparedRewrites

# (statement template, what the row filter puts before the WHERE's first condition)
_TEMPLATES = [
    "SELECT abalance FROM pgbench_accounts WHERE aid = {a};",
    "SELECT id FROM accounts WHERE id = -{a}",
    "SELECT id FROM accounts WHERE id >= {a} ORDER BY id LIMIT {b}",
    "SELECT c3 FROM t9 WHERE id = {a}",
    "SELECT {a} + {b} AS s FROM t WHERE id = {a}",
    "SELECT id FROM t WHERE id = {a} AND x = 7",
    "SELECT id FROM t WHERE id = {a}000000000",  # ten digits: never bound
]
_NUMBERS = st.one_of(
    st.integers(0, 9),
    st.integers(0, 999_999_999),
    st.integers(1_000_000_000, 99_999_999_999),
)
_PARAMETER = re.compile(r"\$(\d+)")


def _rewrite(template: str) -> ShapeRewrite:
    shape = shape_of(template.format(a=1, b=2)) or ""
    text = re.sub(r"WHERE (\w+)", r"WHERE tenant_id = 'acme' AND \1", shape, count=1)
    text = text.rstrip(";")
    return ShapeRewrite(shape, text, printed(text))


def _bound_text(text: str, values: list[bytes]) -> str:
    return _PARAMETER.sub(lambda m: values[int(m.group(1)) - 1].decode(), text)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(_TEMPLATES), _NUMBERS, _NUMBERS, st.booleans()),
        min_size=1,
        max_size=12,
    )
)
def test_bound_values_are_the_filled_texts_and_frames_carry_them(statements):
    prepared = PreparedRewrites()
    rewrites = {template: _rewrite(template) for template in _TEMPLATES}
    for template, a, b, forget in statements:
        rewrite = rewrites[template]
        sql = template.format(a=a, b=b)
        values = prepared.values(rewrite, sql)
        if values is None:
            continue
        assert _bound_text(rewrite.text, values) == fill(rewrite, sql)
        name, frames = prepared.frames(rewrite.text, values)
        messages = codec.FrontendParser(startup=False).feed(frames)
        bind = next(m for m in messages if isinstance(m, codec.Bind))
        assert (bind.statement, bind.params, bind.portal) == (name, values, "")
        assert [type(m).__name__ for m in messages][-3:] == ["Describe", "Execute", "Sync"]
        if forget:
            prepared.forget([name])
