"""pdp.api.recording_rpc.StructMemo: a Decide's attributes remembered by their bytes give
exactly what struct_to_dict gives, fresh objects each time, within their bound, the
reuse key portcullis.reuse gives them for each kind, and their canonical JSON (what the
decision record splices in: pdp.store.chain.canonical_json_with)."""

from __future__ import annotations

import math
from typing import Any

from google.protobuf import struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from pdp.api.recording_rpc import StructMemo, struct_to_dict
from pdp.store.chain import canonical_json
from portcullis.reuse import reuse_key

keys = st.text(max_size=12)
leaves = st.one_of(
    st.text(max_size=40),
    st.floats(allow_nan=False),
    st.integers(-(2**53), 2**53).map(float),
    st.booleans(),
    st.none(),
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(keys, inner, max_size=6)),
    max_leaves=40,
)


def struct_of(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    wire = message.SerializeToString()
    parsed = struct_pb2.Struct()  # as the server gets it: parsed from the wire
    parsed.ParseFromString(wire)
    return parsed


def same(a: Any, b: Any) -> bool:
    """Equal, with types (1.0 and True are not the same value) and the sign of a zero."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


@settings(max_examples=300)
@given(st.dictionaries(keys, values, max_size=8))
def test_remembered_attributes_equal_the_converted_ones(value):
    memo = StructMemo(reuse_key, min_bytes=0)
    message = struct_of(value)
    expected = struct_to_dict(message)
    first, key1, text1 = memo.decode(message, "postgres.query")  # a miss: converted, kept
    second, key2, text2 = memo.decode(struct_of(value), "postgres.query")  # a hit: kept text
    third, key3, text3 = memo.decode(message, "http.request")  # a hit, another kind
    assert same(first, expected) and same(second, expected) and same(third, expected)
    assert key1 == key2 == reuse_key("postgres.query", expected)
    assert key3 == reuse_key("http.request", expected)
    try:
        canonical = canonical_json(expected)
    except ValueError:  # infinity: none, and the record refuses them as before
        canonical = ""
    assert text1 == text2 == text3 == canonical
    if canonical:
        assert canonical_json(second) == text2  # a hit's values encode to its kept text


def test_a_hit_is_fresh_objects_each_time():
    memo = StructMemo(reuse_key, min_bytes=0)
    message = struct_of({"view_columns": {"contact": ["phone"]}, "shadowed_functions": ["upper"]})
    first, _, _ = memo.decode(message, "postgres.query")
    first["view_columns"]["contact"].append("changed")
    first["shadowed_functions"].clear()
    second, _, _ = memo.decode(message, "postgres.query")
    assert second == {"view_columns": {"contact": ["phone"]}, "shadowed_functions": ["upper"]}
    second["view_columns"]["x"] = ["y"]
    assert memo.decode(message, "postgres.query")[0] == {
        "view_columns": {"contact": ["phone"]},
        "shadowed_functions": ["upper"],
    }


def test_it_keeps_no_more_than_its_bound_and_skips_small_or_huge_structs():
    memo = StructMemo(reuse_key, entries=3, min_bytes=64, max_bytes=4096)
    for n in range(10):
        message = struct_of({"view_columns": {f"v{n}_{i}": ["phone"] for i in range(8)}})
        value = struct_to_dict(message)
        assert memo.decode(message, "k") == (value, reuse_key("k", value), canonical_json(value))
    assert len(memo._texts) == 3
    for small_or_huge in ({"protocol": "simple"}, {"p": ["x" * 100] * 50}):
        message = struct_of(small_or_huge)
        value = struct_to_dict(message)
        assert memo.decode(message, "k") == (value, reuse_key("k", value), "")
    assert len(memo._texts) == 3


def test_different_attributes_are_never_confused():
    memo = StructMemo(reuse_key, min_bytes=0)
    a = struct_of({"view_columns": {"contact": ["phone"]}, "phase": "parse"})
    b = struct_of({"view_columns": {"contact": ["phone"]}, "phase": "bind"})
    for _ in range(2):
        value_a, key_a, text_a = memo.decode(a, "postgres.query")
        value_b, key_b, text_b = memo.decode(b, "postgres.query")
        assert text_a == canonical_json(value_a) and text_b == canonical_json(value_b)
        assert value_a["phase"] == "parse" and value_b["phase"] == "bind"
        assert key_a != key_b


def test_attributes_without_canonical_json_are_given_none():
    """Infinity has no canonical JSON: no text is kept, and the record refuses them as
    it would have (the store's own encoding raises)."""
    memo = StructMemo(reuse_key, min_bytes=0)
    message = struct_of({"view_columns": {"contact": ["phone"]}, "limit": math.inf})
    for _ in range(2):
        value, _, text = memo.decode(message, "postgres.query")
        assert value["limit"] == math.inf and text == ""
