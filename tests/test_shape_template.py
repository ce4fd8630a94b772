"""shaped()'s remembered template answers what shape() answers.

A client repeating a statement with another number (pgbench's aid, an agent's id) is
answered from the last proven text split around that number (portcullis.shape,
_last_template): whatever texts come, in whatever order, shaped() equals shape() for every
text it remembers, and a text the template does not cover is shaped the long way.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from portcullis import shape

_NUMBERS = st.sampled_from(["1", "42", "834567", "999999999", "1234567890", "007", "0"])
_AROUND = st.sampled_from(
    [
        ("SELECT abalance FROM pgbench_accounts WHERE aid = ", ";"),
        ("select * from t1 where id = ", " limit 10"),
        ("select * from t where id = ", ""),
        ("fetch ", " from c"),  # a number that is no literal: no proven skeleton
        ("select ", "x from t"),  # a number that is a name's start
        ("select x", " from t"),  # a name's end
        ("select 'a", "'"),  # inside a string
        ("select ", ""),
        ("", " "),
        ("select $1 + ", ""),
        ("select a from t group by rollup(", ")"),  # an output position
        ("select * from t where a = 5 and b = ", ""),
        ("select ", "é from t"),
    ]
)
_TEXTS = st.tuples(_AROUND, _NUMBERS).map(lambda t: t[0][0] + t[1] + t[0][1]) | st.text(
    alphabet="selct 0123456789'$=;ab", max_size=30
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_TEXTS, max_size=25))
def test_shaped_is_shape_whatever_texts_come_before(texts):
    for text in texts:
        sql = "".join(list(text))  # a new object each time
        remembered = shape.shaped(sql)
        if remembered is not None:
            assert remembered == shape.shape(sql)


def test_a_statement_repeated_with_another_number_is_shaped_from_its_template():
    first = "SELECT abalance FROM pgbench_accounts WHERE aid = 17;"
    second = "SELECT abalance FROM pgbench_accounts WHERE aid = 834567;"
    assert shape.shaped(first) == shape.shaped(second) == shape.shape(first)
    assert shape._last_template is not None
    before, after, value = shape._last_template
    assert (before, after) == (first[:-3], ";") and value == shape.shape(first)
    for aid in ("1", "999999999"):
        assert shape.shaped(before + aid + after) == value
    # not the template's: ten digits, a name, a string, another number elsewhere
    for text in (before + "1234567890;", before + "x1;", before + "'1';", before + "1 + 2;"):
        assert shape.shaped(text) == shape.shape(text)


def test_a_number_that_is_no_literal_makes_no_template():
    shape._last_template = None
    for n in ("1", "2", "3"):
        assert shape.shaped(f"fetch {n} from c") == shape.shape(f"fetch {n} from c")
    assert shape._last_template is None
