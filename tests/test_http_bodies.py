"""Response bodies under a mask verdict, without sockets: JSON masked whole (fields by key or
by JSON pointer, detectors over the rest), NDJSON per line and SSE per event however the
bytes are split, and what cannot be masked refused rather than passed (Hypothesis splits
the streams anywhere)."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portcullis.verdict import MaskRule
from proxies.http.bodies import (
    BodyMask,
    Unmaskable,
    _names_a_tag,
    answer_kind,
    body_kind,
    masker_for,
)

KEY = b"k" * 32
RULES = [
    MaskRule(field="email", strategy="redact"),
    MaskRule(field="/account/iban", strategy="redact"),
    MaskRule(detector="credit_card", strategy="partial"),
]


def masked(kind: str, chunks: list[bytes]) -> tuple[bytes, dict[str, int]]:
    mask = BodyMask(masker_for(RULES, KEY), kind)
    out = b"".join(mask.feed(c) for c in chunks) + mask.finish()
    return out, dict(mask.counts)


def test_kinds_by_content_type():
    assert body_kind("application/json; charset=utf-8") == "json"
    assert body_kind("application/problem+json") == "json"
    assert body_kind("application/x-ndjson") == "lines"
    assert body_kind("text/event-stream") == "sse"
    # other text is masked line by line by the detectors; binary and untyped pass
    assert body_kind("text/html") == "lines"
    assert body_kind("text/csv; charset=UTF-8") == "csv"  # lines whose first names columns
    assert body_kind("application/xml") == body_kind("application/rss+xml") == "lines"
    assert body_kind(None) == body_kind("image/png") == ""
    # JSON by another name is never binary: a document, or lines
    assert body_kind("application/x-amz-json-1.1") == body_kind("application/x-json") == "json"
    assert body_kind("application/jsonx") == body_kind("application/json-seq") == "lines"
    assert body_kind("application/octet-stream") == ""
    # text the detectors cannot read is refused, whatever the kind
    assert body_kind("text/plain; charset=utf-16") == "unreadable"
    assert body_kind('text/event-stream; charset="UTF-32"') == "unreadable"
    assert body_kind("application/json; charset=utf-7") == "unreadable"


def test_a_json_document_by_key_pointer_and_detector():
    doc = {
        "email": "a@b.example",
        "account": {"iban": "DE89370400440532013000", "owner": {"email": "c@d.example"}},
        "iban": "kept: the pointer names /account/iban only... or any trail ending so",
        "note": "card 4111 1111 1111 1111",
        "list": [{"account": {"iban": "X"}}],
    }
    out, counts = masked("json", [json.dumps(doc).encode()])
    got = json.loads(out)
    assert got["email"] == "[REDACTED]" and got["account"]["owner"]["email"] == "[REDACTED]"
    assert (
        got["account"]["iban"] == "[REDACTED]" and got["list"][0]["account"]["iban"] == "[REDACTED]"
    )
    assert got["iban"] == doc["iban"]
    assert got["note"] == "card **** **** **** 1111"
    assert counts["field:email"] == 2 and counts["field:account.iban"] == 2


def test_what_cannot_be_masked_is_refused():
    with pytest.raises(Unmaskable):
        masked("json", [b'{"email": "a@b.c"'])
    mask = BodyMask(masker_for(RULES, KEY), "json", limit=10)
    with pytest.raises(Unmaskable):
        mask.feed(b'{"email": "a@b.example"}')


def test_an_sse_event_whose_data_is_not_json_gets_the_detectors():
    out, _ = masked("sse", [b"event: x\ndata: card 4111 1111 1111 1111\n\n"])
    assert out == b"event: x\ndata: card **** **** **** 1111\n\n"


def test_the_detectors_read_an_events_other_lines_too():
    out, _ = masked(
        "sse", [b": note 4111 1111 1111 1111\nid: 4111 1111 1111 1111\nevent: x\n\nid: 7\n\n"]
    )
    assert b"4111 1111" not in out and out.count(b"**** **** **** 1111") == 2
    assert out.endswith(b"event: x\n\nid: 7\n\n")


EVENTS = [{"n": n, "email": f"u{n}@example.com", "text": "4111 1111 1111 1111"} for n in range(4)]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["lines", "sse"]), st.lists(st.integers(0, 400), max_size=8), st.booleans())
def test_streams_split_anywhere_mask_the_same(kind, cuts, crlf):
    if kind == "lines":
        data = b"".join(json.dumps(e).encode() + b"\n" for e in EVENTS)
    else:
        eol = b"\r\n" if crlf else b"\n"
        data = b"".join(
            b"id: 1" + eol + b"data: " + json.dumps(e).encode() + eol + eol for e in EVENTS
        )
    points = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    out, counts = masked(kind, chunks)
    whole, _ = masked(kind, [data])
    assert out == whole
    assert b"@example.com" not in out and b"4111 1111 1111 1111" not in out
    assert counts["field:email"] == 4


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="<>/:a._-é x1\t", max_size=16), st.data())
def test_a_tag_opening_is_read_back_as_its_pattern_reads_it(line, data):
    """_names_a_tag reads back over the namespace only (a line naming a field many times
    was read in time quadratic in its length: 40,000 names, 5.8 s → 0.3 s); it says what
    the pattern `</?[\\w.\\-]+:$|</$` says of the line up to `end`."""
    end = data.draw(st.integers(0, len(line)))
    pattern = re.compile(r"</?[\w.\-]+:$|</$")
    assert _names_a_tag(line, end) is (pattern.search(line[:end]) is not None)


def test_a_line_naming_a_field_many_times_is_read_whole():
    line = "id  " + "email  " * 20_000 + "\n" + "x   " * 20_001
    kind, shown = answer_kind(["text/plain"])
    mask = BodyMask(masker_for(RULES, KEY), kind, media=shown)
    try:
        out = mask.feed(line.encode()) + mask.finish()
    except Unmaskable:
        return
    assert b"x" in out
