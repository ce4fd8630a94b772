"""The Postgres proxy's hot-path shortcuts decide exactly what the long way decides.

Each shortcut taken per statement with the decision cache on (issue 27) is held equal to
what it stands for: the remembered skeleton to a fresh one, a refilled verdict to
dataclasses.replace, the session's remembered reuse key to reuse_key() whatever is done to
the attributes mapping between calls.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portcullis import shape
from portcullis.reuse import reuse_key
from portcullis.verdict import Verdict, VerdictKind
from proxies.postgres import codec
from proxies.runtime.pdp_client import Ruling
from proxies.runtime.session import ProxySession

_TEXTS = st.sampled_from(
    [
        "select 1",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 834567;",
        "select * from t1 where id = 42 and x = '7'",
        "select $1 + 2",
        "fetch 5 from c",
        "select 12345678901",
        "",
    ]
) | st.text(alphabet="selct 0123456789'$\\\"ab", max_size=40)


def _fresh_skeleton(sql: str, digit: str = "0") -> str | None:
    if re.search(r"['\"$\\]", sql):
        return None
    rewritten = shape.NUMBER_RUN.sub(digit, sql)
    return None if rewritten == sql else rewritten


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_TEXTS, st.booleans()), max_size=20))
def test_a_remembered_skeleton_is_the_texts_own(steps):
    """skeleton() remembers the last text it was asked for; asked again for it (the same
    object, or another equal one, or another text in between) it answers as fresh."""
    last = None
    for text, again in steps:
        sql = last if again and last is not None else "".join(list(text))  # a new object
        assert shape.skeleton(sql) == _fresh_skeleton(sql)
        assert shape.skeleton(sql) == _fresh_skeleton(sql)
        assert shape.skeleton(sql, "1") == _fresh_skeleton(sql, "1")
        last = sql


# NUMBER_RUN as first written: the lookbehind tried at every character
_LOOKBEHIND_FIRST = re.compile(
    r"(?<![0-9A-Za-z_$\x80-\U0010ffff])[0-9]{1,9}(?![0-9A-Za-z_$\x80-\U0010ffff])"
)
_NUMBERS_AND_NEIGHBOURS = st.text(
    alphabet=st.sampled_from([*"0123456789aZ_$ ,.-+(\n'\"", "\x7f", "é", "٣", "\U0001f600"]),
    max_size=40,
)


@settings(max_examples=1000, deadline=None)
@given(_NUMBERS_AND_NEIGHBOURS | st.text(max_size=40))
def test_number_runs_are_found_as_the_lookbehind_first_pattern_finds_them(text):
    """NUMBER_RUN, written digit first, finds the same runs in the same places as the
    pattern it replaced (runs of 1-9 digits, of any length next to each other, at the
    start and end of the text, beside names, non-ASCII letters and digits)."""
    spans = [m.span() for m in shape.NUMBER_RUN.finditer(text)]
    assert spans == [m.span() for m in _LOOKBEHIND_FIRST.finditer(text)]
    assert shape.NUMBER_RUN.sub("0", text) == _LOOKBEHIND_FIRST.sub("0", text)
    assert shape.NUMBER_RUN.findall(text) == _LOOKBEHIND_FIRST.findall(text)


@given(st.text(max_size=30), st.booleans(), st.text(max_size=10))
def test_a_refilled_verdict_is_the_reused_one_with_its_own_text(text, cached, decision):
    ruling = Ruling(Verdict(VerdictKind.MASK), decision, "rev-1", cached=cached, rewritten="x")
    refilled = ruling.with_rewritten(text)
    assert refilled == dataclasses.replace(ruling, rewritten=text)
    assert refilled.kind is VerdictKind.MASK and refilled.rewritten == text
    assert ruling.rewritten == "x"  # the reused one is not changed


_VALUES = st.one_of(st.text(max_size=5), st.lists(st.text(max_size=3), max_size=2))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["same", "set", "delete", "other", "none"]),
            st.sampled_from(["protocol", "phase", "pooler"]),
            _VALUES,
            st.sampled_from(["postgres.query", "http.request"]),
        ),
        max_size=25,
    )
)
def test_the_remembered_reuse_key_is_reuse_keys_whatever_the_mapping_went_through(steps):
    session = ProxySession.__new__(ProxySession)
    session._last_key = None
    attributes: dict = {"protocol": "simple"}
    for what, name, value, kind in steps:
        given_attributes: dict | None = attributes
        if what == "set":
            attributes[name] = value  # changed in place: the same object
        elif what == "delete":
            attributes.pop(name, None)
        elif what == "other":
            attributes = dict(attributes)
            given_attributes = attributes
        elif what == "none":
            given_attributes = None
        assert session._reuse_key(kind, given_attributes) == reuse_key(kind, given_attributes)


@given(st.text(max_size=60))
def test_a_query_frame_is_the_encoded_query(sql):
    """Query.frame (a row filter's text sent per statement) is Query(sql).encode(), and
    refuses a NUL as it does."""
    try:
        expected = codec.Query(sql).encode()
    except ValueError:
        with pytest.raises(ValueError):
            codec.Query.frame(sql)
        return
    assert codec.Query.frame(sql) == expected
