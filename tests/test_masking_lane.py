"""The fast masking path does exactly what the value-by-value path does (no sockets).

Three properties, each tried with Hypothesis against the reference it replaces:

- Masker.may_detect never clears a value in which a detector would find something (its
  per-detector gates over ASCII bytes are at least as wide as the prechecks, and a value
  past ASCII always goes to the detectors: case folding can make a hint of it);
- a RowMask, planned once per result shape, leaves every row byte for byte as
  masked_value / detected_value applied to each of its values would, with the same counts;
- the masked lane (BackendParser.plain_answers with rows + ResponseTracker.masked) either
  declines a chunk, changing nothing, or gives the client the same bytes and leaves the
  tracker, its completions and their masking counts as parsing the chunk and calling
  on_backend for each message does.
"""

from __future__ import annotations

import json
import struct
from collections import Counter

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from portcullis.masking import DETECTORS, Masker
from portcullis.verdict import MaskRule
from proxies.postgres import codec as c
from proxies.postgres.codec import BackendParser
from proxies.postgres.columns import ColumnOrigin
from proxies.postgres.row_mask import RowMask
from proxies.postgres.tracker import Expect, ResponseTracker
from proxies.postgres.values import (
    JSON,
    JSONB,
    TEXT_LIKE,
    count_key,
    detected_value,
    masked_value,
)

LANE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY = b"k" * 32
TABLE = 16500

# pieces that detectors find, near-misses, and the characters whose case folding makes
# ASCII hints of non-ASCII text (KELVIN SIGN → k, LATIN CAPITAL I WITH DOT → i)
SNIPPETS = [
    "ada@example.com", "a@b.co", "4111 1111 1111 1111", "4111-1111-1111-1111",
    "4111111111111111", "123-45-6789", "000-12-3456", "+44 20 7946 0000",
    "Bearer abcdefgh12345678", "basic dXNlcjpwYXNz",
    "api_key=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZg",
    "sk-abcdefghijklmnopqrstuvwx", "AKIAABCDEFGHIJKLMNOP", "ghp_" + "a1" * 18,
    "to\u212aen=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZg", "\u0130", "\u212a", "tok", "en",
    "@", "-", " ", "1234", "12", "note", "name 4242", "é", "\u00df",
]  # fmt: skip
texts = st.lists(st.one_of(st.sampled_from(SNIPPETS), st.text(max_size=6)), max_size=6).map("".join)
ascii_texts = st.lists(
    st.one_of(
        st.sampled_from([s for s in SNIPPETS if s.isascii()]),
        st.text(st.characters(max_codepoint=127), max_size=6),
    ),
    max_size=6,
).map("".join)

detector_rules = st.lists(st.sampled_from(sorted(DETECTORS)), unique=True).map(
    lambda names: [MaskRule(detector=n, strategy="partial") for n in names]
)


def _masker(rules: list[MaskRule]) -> Masker:
    return Masker(rules, KEY)


# -- may_detect ---------------------------------------------------------------------------


@LANE
@given(ascii_texts)
def test_every_gate_is_at_least_its_precheck_over_ascii(text: str) -> None:
    data = text.encode()
    digits = sum(map(str.isdigit, text))
    for detector in DETECTORS.values():
        if detector.precheck(text):
            assert detector.gate(data, digits)


@LANE
@given(detector_rules, texts)
def test_what_may_detect_clears_no_detector_finds(rules: list[MaskRule], text: str) -> None:
    masker = _masker(rules)
    if not masker.may_detect(text.encode()):
        masked, counts = masker.mask_text(text)
        assert not counts and masked == text


def test_may_detect_sends_non_ascii_to_the_detectors() -> None:
    masker = _masker([MaskRule(detector="token", strategy="redact")])
    # KELVIN SIGN matches k case-insensitively: "to\u212aen" is a token's name that the
    # bytes do not show as one
    secret = "to\u212aen=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZg"
    assert masker.may_detect(secret.encode())
    assert masker.mask_text(secret)[1] == {"token": 1}
    assert not masker.may_detect(b"name 4242")
    assert not _masker([]).may_detect(b"ada@example.com")


# -- RowMask against the value-by-value reference ------------------------------------------

TYPES = [25, 1043, 1042, 19, 705, 23, 20, 701, 2950, 17, JSON, JSONB, 1009, 1015, 16]
STRATEGIES = ["redact", "hash", "partial"]


def _reference(
    masker: Masker,
    fields: list[c.Field],
    formats: list[int],
    plan: dict[int, MaskRule],
    values: list[bytes | None],
    stored: frozenset[int] = frozenset(),
) -> tuple[list[bytes | None] | None, Counter[str]]:
    """The row as the proxy masked it value by value before RowMask existed, and a masked
    column's NULL as a value when it is not a stored column as it is (in a text-like
    type: the rule's mask of the empty value; in any other the mask is NULL anyway)."""
    counts: Counter[str] = Counter()
    out = list(values)
    changed = False
    for i, value in enumerate(out):
        fmt = (formats[i] if i < len(formats) else 0) if len(formats) > 1 else (formats or [0])[0]
        binary = fmt == 1
        type_oid = fields[i].type_oid if i < len(fields) else 0
        rule = plan.get(i)
        key = ""
        if rule is not None:  # the policy's field name, or the derived rule's output
            name = fields[i].name if rule.derived else rule.field or fields[i].name
            key = f"{'derived' if rule.derived else 'field'}:{name}"
        if value is None:
            if rule is not None and i not in stored and type_oid in TEXT_LIKE:
                changed = True
                counts[key] += 1
                out[i] = masked_value(masker, rule, b"", type_oid, binary)
            continue
        if rule is not None:
            changed = True
            counts[key] += 1
            out[i] = masked_value(masker, rule, value, type_oid, binary)
            continue
        found = detected_value(masker, value, type_oid, binary)
        if found is not None:
            changed = True
            out[i], detected = found
            for name, n in detected.items():
                counts[count_key(name)] += n
    return (out if changed else None), counts


def _binary_text_array(items: list[str | None]) -> bytes:
    out = struct.pack("!iiiii", 1, int(None in items), 25, len(items), 1)
    for item in items:
        if item is None:
            out += struct.pack("!i", -1)
        else:
            data = item.encode()
            out += struct.pack("!i", len(data)) + data
    return out


@st.composite
def typed_values(draw: st.DrawFn, type_oid: int, binary: bool) -> bytes | None:
    if draw(st.integers(0, 7)) == 0:
        return None
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=12))  # anything, even what its type cannot be
    if type_oid in TEXT_LIKE or type_oid in (17, 16):
        return draw(texts).encode()
    if type_oid in (JSON, JSONB):
        doc = draw(
            st.recursive(
                st.none() | st.integers() | texts,
                lambda inner: (
                    st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3)
                ),
                max_leaves=6,
            )
        )
        text = json.dumps(doc).encode()
        return b"\x01" + text if binary and type_oid == JSONB else text
    if type_oid in (1009, 1015):
        items = draw(st.lists(st.none() | texts, max_size=3))
        if binary:
            return _binary_text_array(items)
        literal = ",".join("NULL" if i is None else json.dumps(i) for i in items)
        return ("{" + literal + "}").encode()
    return str(draw(st.integers())).encode()


@st.composite
def rows(draw: st.DrawFn) -> tuple:
    width = draw(st.integers(0, 6))
    fields = [
        c.Field(f"c{i}", TABLE, i + 1, draw(st.sampled_from(TYPES)), format=0) for i in range(width)
    ]
    formats = draw(
        st.sampled_from([[], [0], [1]]) | st.lists(st.sampled_from([0, 1]), max_size=width + 1)
    )
    field_rule = (
        st.builds(MaskRule, field=st.just("x"), strategy=st.sampled_from(STRATEGIES))
        | st.builds(
            MaskRule,
            detector=st.sampled_from(sorted(DETECTORS)),
            strategy=st.sampled_from(STRATEGIES),
        )
        | st.builds(MaskRule, derived=st.just(True), strategy=st.sampled_from(STRATEGIES))
    )
    plan = draw(st.dictionaries(st.integers(0, max(width - 1, 0)), field_rule, max_size=width))
    plan = {i: rule for i, rule in plan.items() if i < width}
    stored = frozenset(i for i in plan if draw(st.booleans()))  # stored columns as they are
    masker = _masker([*draw(detector_rules), MaskRule(field="x", strategy="redact")])
    values = []
    for i in range(width + draw(st.integers(0, 1))):  # a value past the description too
        fmt = (formats[i] if i < len(formats) else 0) if len(formats) > 1 else (formats or [0])[0]
        type_oid = fields[i].type_oid if i < width else 25
        values.append(draw(typed_values(type_oid, fmt == 1)))
    return masker, fields, formats, plan, values, stored


@LANE
@given(rows())
def test_row_mask_is_the_value_by_value_reference(row: tuple) -> None:
    masker, fields, formats, plan, values, stored = row
    expected, expected_counts = _reference(masker, fields, formats, plan, values, stored)
    masked = list(values)
    counts: Counter[str] = Counter()
    changed = RowMask(masker, fields, formats, plan, stored).apply(masked, counts)
    event(f"changed: {changed}")
    assert counts == expected_counts
    if expected is None:
        assert not changed and masked == values
    else:
        assert changed
        assert c.DataRow(masked).encode() == c.DataRow(expected).encode()


# -- the masked lane against on_backend ----------------------------------------------------

NAMES = ["id", "email", "note", "shout", "doc"]
ORIGINS = {(TABLE, 1): ColumnOrigin("id"), (TABLE, 2): ColumnOrigin("email"),
           (TABLE, 3): ColumnOrigin("note")}  # fmt: skip
MASKER = _masker(
    [
        MaskRule(field="email", strategy="redact"),
        MaskRule(field="note", strategy="partial"),
        MaskRule(derived=True, strategy="redact"),
        *(MaskRule(detector=n, strategy="partial") for n in DETECTORS),
    ]
)
descriptions = st.lists(
    st.tuples(
        st.sampled_from(NAMES),
        st.sampled_from([0, TABLE, TABLE + 1]),  # computed, a known table, an unknown one
        st.integers(1, 4),
        st.sampled_from([25, 23, JSONB, 1009]),
        st.sampled_from([0, 1]),
    ),
    max_size=4,
).map(lambda cols: c.RowDescription([c.Field(n, t, a, o, format=f) for n, t, a, o, f in cols]))
row_values = st.lists(st.none() | texts.map(str.encode), max_size=5).map(c.DataRow)
answer_messages = st.one_of(
    st.builds(c.ParseComplete),
    st.builds(c.BindComplete),
    st.builds(c.CloseComplete),
    st.builds(c.NoData),
    st.builds(c.ParameterDescription, st.lists(st.integers(0, 2**32 - 1), max_size=2)),
    descriptions,
    row_values,
    row_values,
    row_values,
    st.builds(c.CommandComplete, st.sampled_from(["SELECT 1", "SELECT 2"])),
    st.builds(c.EmptyQueryResponse),
    st.builds(c.ReadyForQuery, st.sampled_from(["I", "T", "E"])),
    st.builds(c.NoticeResponse, st.just({"S": "NOTICE", "M": "ada@example.com"})),
)
owed = st.lists(
    st.tuples(
        # QuietQuery: a simple Query the proxy runs prepared (its ParseComplete and
        # BindComplete are the proxy's, proxies/postgres/prepared_rewrites.py)
        st.sampled_from(
            ["Query", "QuietQuery", "Parse", "Bind", "Execute", "Sync", "DescribeS", "DescribeP"]
        ),
        st.sampled_from([True, True, False]),  # masked
        st.sampled_from([False, False, False, True]),  # swallowed
        st.sampled_from([[], [0], [1], [0, 1, 1, 0]]),  # an Execute's result formats
    ),
    max_size=4,
)


def _tracker(expected: list[tuple[str, bool, bool, list[int]]]) -> ResponseTracker:
    tracker = ResponseTracker()
    tracker.column_origins = dict(ORIGINS)
    tracker.portal_shapes[""] = None
    for n, (owed_kind, masked, swallow, formats) in enumerate(expected):
        quiet = owed_kind == "QuietQuery"
        kind = "Query" if quiet else owed_kind
        tracker.expect(
            Expect(
                kind,
                masker=MASKER if masked and kind in ("Query", "Execute") else None,
                decision_id=f"d{n}",
                statement=f"s{n % 2}",
                portal="",
                formats=list(formats) if kind == "Execute" else [],
                swallow=swallow and not quiet,
                command=f"command {n}",
                protocol="simple" if kind == "Query" else "extended",
                quiet=quiet,
            )
        )
    return tracker


def _tracked(tracker: ResponseTracker) -> tuple:
    return (
        tracker.status,
        {k: v and v.fields for k, v in tracker.statement_shapes.items()},
        {k: v and v.fields for k, v in tracker.portal_shapes.items()},
        [(type(e).__name__, getattr(e, "kind", ""), getattr(e, "rows", 0),
          dict(getattr(e, "masked", {})), getattr(e, "quiet", False)) for e in tracker.queue],
        list(tracker.unprepared),
        [(d.command, d.tag, d.rows, dict(d.masked), d.decision_id, d.error, d.protocol, d.part)
         for d in tracker.completions],
    )  # fmt: skip


def _masked_in_lane(tracker: ResponseTracker, chunk: bytes) -> bytes | None:
    """What the lane hands the client for `chunk`, plain answers all (None: it declined)."""
    spans: list[c.RowSpan] = []
    answers = BackendParser().plain_answers(chunk, spans)
    assert answers is not None
    return tracker.masked(answers, spans, chunk)


def _lane_is_on_backend(expected: list, chunk: bytes) -> bool:
    lane_tracker = _tracker(expected)
    before = _tracked(lane_tracker)
    spans: list[c.RowSpan] = []
    answers = BackendParser().plain_answers(chunk, spans)
    out = None if answers is None else lane_tracker.masked(answers, spans, chunk)
    if out is None:
        assert _tracked(lane_tracker) == before  # declined: nothing changed
        return False
    tracker = _tracker(expected)
    parser = BackendParser()
    messages = parser.feed(chunk)
    assert parser.buffered == 0
    assert out == b"".join(tracker.on_backend(m) for m in messages)
    assert _tracked(lane_tracker) == _tracked(tracker)
    return True


@LANE
@given(owed, st.lists(answer_messages, max_size=8))
# a Query run prepared whose acknowledgements come out of order: on_backend forwards what
# follows the BindComplete, so the lane must leave the chunk to it (found by a CI run)
@example([("QuietQuery", True, False, [])], [c.BindComplete(), c.ParseComplete()])
def test_masked_lane_is_on_backend(expected: list, messages: list) -> None:
    taken = _lane_is_on_backend(expected, b"".join(m.encode() for m in messages))
    event(f"lane took the chunk: {taken}")


def test_masked_lane_masks_a_result_where_it_lies() -> None:
    description = c.RowDescription(
        [c.Field("id", TABLE, 1, 23), c.Field("email", TABLE, 2, 25), c.Field("shout", 0, 0, 25)]
    )
    chunk = b"".join(
        m.encode()
        for m in (
            description,
            c.DataRow([b"1", b"ada@example.com", b"ADA@EXAMPLE.COM"]),
            c.DataRow([b"2", None, b"plain"]),
            c.DataRow([b"3", b"bob@example.com", None]),
            c.CommandComplete("SELECT 3"),
            c.ReadyForQuery("I"),
        )
    )
    expected: list[tuple[str, bool, bool, list[int]]] = [("Query", True, False, [])]
    assert _lane_is_on_backend(expected, chunk)
    tracker = _tracker(expected)
    out = _masked_in_lane(tracker, chunk)
    assert out is not None and b"ada@" not in out.lower() and out.count(b"[REDACTED]") == 5
    # the stored email's NULL stays NULL; the expression's NULL is masked like its values
    rows = [m for m in BackendParser().feed(out) if isinstance(m, c.DataRow)]
    assert [r.values[1:] for r in rows] == [[b"[REDACTED]"] * 2, [None, b"[REDACTED]"],
                                            [b"[REDACTED]"] * 2]  # fmt: skip
    assert dict(tracker.completions[0].masked) == {"field:email": 2, "derived:shout": 3}
    # an answer the lane does not make (a swallowed one) leaves it to on_backend
    assert not _lane_is_on_backend([("Query", True, True, [])], chunk)


def test_masked_lane_leaves_out_a_prepared_querys_parse_and_bind_answers() -> None:
    """A simple Query the proxy runs prepared, masked: the chunk opens with its
    ParseComplete and BindComplete, which the client never gets; its rows are masked
    where they lie, as on_backend masks them."""
    description = c.RowDescription([c.Field("id", TABLE, 1, 23), c.Field("email", TABLE, 2, 25)])
    rows = [c.DataRow([b"1", b"ada@example.com"]), c.DataRow([b"2", None])]
    tail = [description, *rows, c.CommandComplete("SELECT 2"), c.ReadyForQuery("I")]
    for opening in ([c.BindComplete()], [c.ParseComplete(), c.BindComplete()]):
        chunk = b"".join(m.encode() for m in (*opening, *tail))
        expected: list[tuple[str, bool, bool, list[int]]] = [("QuietQuery", True, False, [])]
        assert _lane_is_on_backend(expected, chunk)
        tracker = _tracker(expected)
        out = _masked_in_lane(tracker, chunk)
        assert out is not None and out.startswith(description.encode())
        assert b"ada@example.com" not in out
    # the same answers after another statement's: not the chunk's opening, so declined
    chunk = b"".join(m.encode() for m in (c.ReadyForQuery("I"), c.BindComplete(), *tail))
    assert not _lane_is_on_backend(
        [("Query", True, False, []), ("QuietQuery", True, False, [])], chunk
    )


def test_a_masked_column_is_counted_by_the_policys_name_not_the_clients_alias() -> None:
    """`SELECT email AS x1 ...`: the count of what was masked (the session's evidence and
    the proxy's metric label) names the policy's field, not a name the client chose."""
    chunk = b"".join(
        m.encode()
        for m in (
            c.RowDescription([c.Field("x1", TABLE, 2, 25)]),
            c.DataRow([b"ada@example.com"]),
            c.CommandComplete("SELECT 1"),
            c.ReadyForQuery("I"),
        )
    )
    expected: list[tuple[str, bool, bool, list[int]]] = [("Query", True, False, [])]
    tracker = _tracker(expected)
    out = _masked_in_lane(tracker, chunk)
    assert out is not None and b"ada@" not in out
    assert dict(tracker.completions[0].masked) == {"field:email": 1}
