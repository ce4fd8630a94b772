"""Bound-parameter entries (portcullis.parameters): two different values never make entries
an approval binding takes for one another, and what an approver reads of an entry never
carries its digest."""

from __future__ import annotations

import hashlib
import json

from hypothesis import given
from hypothesis import strategies as st

from pdp.domain.approver_view import binding_digest
from portcullis.parameters import MAX_SHOWN_PARAMETER, NULL, parameter_entry, shown_parameter

KEY = b"k" * 32


def entry(value: bytes | None, binary: bool = False) -> str:
    """An entry as the PDP holds it: an object as its JSON text (what bound_parameters makes)."""
    if value is None:
        made = parameter_entry(None, binary, NULL)
    else:
        start = value[:MAX_SHOWN_PARAMETER]
        shown = start.hex() if binary else start.decode("utf-8", "replace")
        made = parameter_entry(value, binary, shown)
    return made if isinstance(made, str) else json.dumps(made)


def test_a_value_its_text_spells_travels_as_that_text():
    assert entry(b"renewed") == "renewed"
    assert entry(None) == "NULL"


def test_values_a_person_could_take_for_another_travel_with_size_and_digest():
    long = b"x" * 5000
    cut = json.loads(entry(long))
    assert cut["shown"] == "x" * MAX_SHOWN_PARAMETER and cut["cut"] is True
    assert cut["bytes"] == "5000" and cut["sha256"] == hashlib.sha256(long).hexdigest()
    for look_alike in (b"NULL", b'{"shown": "a"}', b"\xff\xfe"):
        doc = json.loads(entry(look_alike))
        assert doc["sha256"] == hashlib.sha256(look_alike).hexdigest()


def test_an_approver_reads_the_start_and_that_it_was_cut_never_the_digest():
    long = b"y" * 4096 + b"secret tail"
    text, note = shown_parameter(entry(long))
    assert text == "y" * 4096 and note == " (the first 4096 of 4107 bytes)"
    assert hashlib.sha256(long).hexdigest() not in text + note
    assert shown_parameter(entry(b"NULL")) == ("NULL", " (the text 'NULL', not SQL NULL)")
    assert shown_parameter(entry(None)) == ("NULL", "")


def test_the_binding_does_not_depend_on_the_order_an_entry_s_keys_came_in():
    doc = json.loads(entry(b"z" * 5000))
    reordered = json.dumps(dict(reversed(list(doc.items()))))
    assert binding_digest(KEY, [reordered]) == binding_digest(KEY, [json.dumps(doc)])


values = st.one_of(st.none(), st.binary(max_size=40), st.text(max_size=40).map(str.encode))


@given(values, st.booleans(), values, st.booleans(), st.binary(max_size=8))
def test_two_different_values_never_bind_alike(a, a_binary, b, b_binary, pad):
    # sharing a first MAX_SHOWN_PARAMETER bytes when both are long
    if a is not None and b is not None and pad:
        a, b = b"p" * MAX_SHOWN_PARAMETER + a, b"p" * MAX_SHOWN_PARAMETER + b
    same = a == b and (a is None or a_binary == b_binary)
    bound_alike = binding_digest(KEY, [entry(a, a_binary)]) == binding_digest(
        KEY, [entry(b, b_binary)]
    )
    assert bound_alike == same
