"""Canonical JSON, the bytes every record hash covers: the encoder the store uses on its
busy path must give exactly what the chain's definition names (json.dumps with sorted
keys, no spaces, no ASCII escaping, no NaN), for any body, and refuse what it refuses."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdp.store.chain import canonical_json


def reference(value: object) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


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
