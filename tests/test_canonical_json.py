"""Canonical JSON, the bytes every record hash covers: the encoder the store uses on its
busy path must give exactly what the chain's definition names (json.dumps with sorted
keys, no spaces, no ASCII escaping, no NaN), for any body, and refuse what it refuses."""

from __future__ import annotations

import contextlib
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdp.store.chain import canonical_json, canonical_json_with


def reference(value: object) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def assert_as_the_definition(body: dict, encoded: dict) -> None:
    """canonical_json_with(body, encoded) gives the definition's bytes, or is refused as
    the definition refuses the body."""
    try:
        expected = reference(body)
    except (ValueError, TypeError):
        with pytest.raises((ValueError, TypeError)):
            canonical_json_with(body, encoded)
        return
    assert canonical_json_with(body, encoded) == expected


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
bodies = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8), inner, max_size=5)
        | st.dictionaries(st.integers(), inner, max_size=3)
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(bodies)
def test_the_fast_encoder_is_the_definition(value):
    assert canonical_json(value) == reference(value)


@pytest.mark.parametrize(
    "value",
    [
        {"x": math.nan},
        [math.inf],
        math.nan,
        {"x": {1, 2}},
        {"x": b"bytes"},
        {(1, 2): "tuple key"},
        {1: "a", "1": "b"},  # keys of two types cannot be sorted
    ],
)
def test_what_the_definition_refuses_is_refused(value):
    with pytest.raises((ValueError, TypeError)):
        reference(value)
    with pytest.raises((ValueError, TypeError)):
        canonical_json(value)


# canonical_json_with: a body's values given as canonical JSON made once are written in;
# the bytes must be the definition's for any body, whatever its other values hold (the
# text of the stand-in an earlier version spliced in among them: an attacker's statement
# may carry anything)
stand_ins = st.sampled_from(
    ["\0portcullis spliced value 0\0", "\0portcullis spliced value 1\0", "\0", "spliced"]
)
texts = st.text() | stand_ins | st.lists(stand_ins).map("".join)
spliced_bodies = st.dictionaries(
    st.text(max_size=8) | st.sampled_from(["attributes", "statements"]),
    bodies | texts | st.lists(texts, max_size=3) | st.dictionaries(texts, texts, max_size=3),
    max_size=6,
)


@settings(max_examples=400, deadline=None)
@given(spliced_bodies, st.data())
def test_spliced_values_give_the_definition(body, data):
    keys = sorted(body)
    given_keys = data.draw(st.lists(st.sampled_from(keys), unique=True) if keys else st.just([]))
    encoded = {}
    for key in given_keys:
        try:
            encoded[key] = canonical_json(body[key])
        except (ValueError, TypeError):
            return  # a value the definition refuses: the body is refused either way
    assert_as_the_definition(body, encoded)


def test_a_body_holding_the_stand_in_text_is_encoded_whole():
    mark = "\0portcullis spliced value 0\0"
    attributes = {"view_columns": {"v": [mark]}}
    body = {"attributes": attributes, "raw": mark, "z": [mark, mark]}
    assert canonical_json_with(body, {"attributes": canonical_json(attributes)}) == reference(body)
    # two given values, the first holding the second's stand-in
    second = "\0portcullis spliced value 1\0"
    body = {"a": {"x": second}, "b": ["y"], "raw": "select 1"}
    encoded = {"a": canonical_json(body["a"]), "b": canonical_json(body["b"])}
    assert canonical_json_with(body, encoded) == reference(body)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.text(max_size=6),
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.text(max_size=6)
        | st.lists(st.integers(), max_size=2),
        max_size=6,
    ),
    st.data(),
)
def test_members_written_one_by_one_give_the_definition(body, data):
    """Scalars encoded member by member (str, int, float, bool, null; NaN and ±inf
    refused), beside values given as text, make the definition's bytes."""
    given = data.draw(st.lists(st.sampled_from(sorted(body)), unique=True) if body else st.just([]))
    encoded = {"not in the body": "1"}
    for key in given:
        with contextlib.suppress(ValueError, TypeError):
            encoded[key] = canonical_json(body[key])
    assert_as_the_definition(body, encoded)


def test_a_body_whose_keys_are_not_strings_is_encoded_whole():
    assert canonical_json_with({1: "a", 2: [1]}, {"x": "1"}) == reference({1: "a", 2: [1]})
    with pytest.raises(TypeError):  # keys that do not compare: refused as the encoder does
        canonical_json_with({1: "a", "b": 2}, {"b": "2"})
