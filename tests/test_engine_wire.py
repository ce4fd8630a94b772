"""The embedded engine's hop to its workers, as bytes: the input JSON a worker hands the
evaluator is json.dumps's JSON value (any input; its very bytes whenever they hold null,
NaN or infinity, which json.dumps writes as the evaluator refuses them: a deny), and each
answer names the revision of the policy its worker holds, read from a header the worker
makes once per policy."""

from __future__ import annotations

import json
import math
import socket
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pdp_harness import REGO

from pdp.engine import EngineError, frames
from pdp.engine.bundle import PolicyBundle
from pdp.engine.embedded import EmbeddedEngine, input_to_json
from pdp.engine.embedded import _holds_null_value as holds_null_value
from pdp.engine.worker import Worker, answer_header, serve
from portcullis.config import EngineSettings

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text()
)
inputs = st.dictionaries(
    st.text(max_size=8),
    st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
        max_leaves=25,
    ),
    max_size=6,
)


@settings(max_examples=400, deadline=None)
@given(inputs)
def test_the_input_bytes_are_json_dumps(value):
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    written = input_to_json(value)
    # orjson's bytes (where installed) may spell a number or an escape otherwise; never
    # a NaN or an infinity, which it would write as a null value
    assert written == expected or (
        not holds_null_value(written) and json.loads(written) == json.loads(expected)
    )


@pytest.mark.parametrize(
    "value",
    [
        {"x": math.nan},
        {"x": [1, {"y": -math.inf}]},
        {"x": None},
        {1: "an int key"},
        {"x": 2**70},
        {"x": (1, "tuple")},
        {"x": type("Text", (str,), {})("a str subclass")},
        {"x": type("Table", (dict,), {})(a=1)},
        {"x": "\x1f\u2028 and é"},
        {"x": 1e-05, "y": 1e16},
    ],
)
def test_what_orjson_would_write_otherwise_is_json_dumps(value):
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    written = input_to_json(value)
    assert json.loads(written) == json.loads(expected)
    if holds_null_value(expected) or b"NaN" in expected or b"Infinity" in expected:
        assert written == expected


@pytest.mark.parametrize(
    "value",
    [
        {"sql": "SELECT id FROM t WHERE note IS NULL"},
        {"sql": "nullif(a, b)", "y": ["null", {"null": "NULL"}]},
    ],
)
def test_null_in_a_string_is_not_a_null_value(value):
    assert not holds_null_value(input_to_json(value))
    assert json.loads(input_to_json(value)) == value


@pytest.mark.parametrize(
    "value",
    [
        {"x": math.nan},
        {"x": [math.inf]},
        {"x": [1, math.inf]},
        {"x": None, "s": "null"},
        {"s": "a string holding :null"},
    ],
)
def test_a_null_value_or_a_string_that_looks_like_one_goes_the_slow_way(value):
    assert (
        input_to_json(value)
        == json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    )


def test_what_is_not_json_is_refused():
    cycle: dict = {}
    cycle["self"] = cycle
    for bad in ({"x": {1, 2}}, {"x": b"bytes"}, cycle):
        with pytest.raises((TypeError, ValueError, RecursionError)):
            input_to_json(bad)
    assert input_to_json({"x": math.nan}) == b'{"x":NaN}'


def test_a_workers_header_names_its_policy():
    worker = Worker()
    assert worker.evaluate("portcullis.decision", b"{}").startswith(answer_header(""))
    assert json.loads(answer_header('rev "1"')) == {"revision": 'rev "1"'}


async def test_answers_name_the_revision_and_bad_input_is_an_engine_error():
    engine = EmbeddedEngine(EngineSettings(policies=REGO, workers=1, reload=False, timeout_ms=5000))
    await engine.start()
    try:
        for _ in range(3):  # the header read once, then remembered
            result = await engine.evaluate({"command": {"kind": "postgres.query", "raw": "x"}})
            assert result.revision == engine.revision != ""
        with pytest.raises(EngineError):
            await engine.evaluate({"command": {"kind": {1, 2}}})  # a part the policy reads
    finally:
        await engine.close()


async def test_answers_are_read_once_by_their_bytes_and_errors_every_time(tmp_path):
    """An answer's document is remembered by its bytes (the same document for the same
    answer); an answer that reports an evaluation error is an EngineError every time,
    never remembered as anything."""
    (tmp_path / "p.rego").write_text(
        "package portcullis\n\n"
        'decision := {"verdict": "allow", "reasons": [input.why]} if { not input.clash }\n'
        'decision := "one" if { input.clash }\n'
        'decision := "two" if { input.clash }\n'
    )
    engine = EmbeddedEngine(
        EngineSettings(policies=tmp_path, workers=1, reload=False, timeout_ms=5000)
    )
    await engine.start()
    try:
        first = await engine.evaluate({"why": "a"})
        again = await engine.evaluate({"why": "a"})
        other = await engine.evaluate({"why": "b"})
        assert first.result == {"verdict": "allow", "reasons": ["a"]}
        assert again.result is first.result and again.raw == first.raw
        assert other.result == {"verdict": "allow", "reasons": ["b"]}
        for _ in range(3):
            with pytest.raises(EngineError, match="policy evaluation failed"):
                await engine.evaluate({"clash": True})
        assert all(result is not None for result in engine._results.values())
        assert len(engine._results) == 2
    finally:
        await engine.close()


@pytest.fixture(scope="module")
def serving_worker():
    """A worker's serve() on one end of a socket pair (a thread of this process: the test
    process may hold an evaluator), its policy echoing input.n."""
    parent, child = socket.socketpair()
    thread = threading.Thread(target=serve, args=(child,), daemon=True)
    thread.start()
    policy = PolicyBundle({"p.rego": "package portcullis\n\ndecision := input.n\n"}, {}, "r1", "")
    parent.sendall(frames.encode({"op": "load", "bundle": policy.to_wire()}))
    assert read_frame(parent) == {"ok": True, "revision": "r1"}
    yield parent
    parent.close()
    thread.join(5)
    child.close()


def read_frame(sock: socket.socket) -> dict:
    body = _read_exactly(sock, frames.decode_length(_read_exactly(sock, frames.HEADER.size)))
    if body.startswith(b"{") and b"\n" not in body:
        return frames.decode(body)
    header, _, envelope = body.partition(b"\n")
    return {"header": json.loads(header), "envelope": json.loads(envelope)}


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "the worker closed its socket"
        data += chunk
    return data


@settings(max_examples=40, deadline=None)
@given(
    count=st.integers(min_value=1, max_value=30),
    cuts=st.lists(st.integers(min_value=1, max_value=4000), max_size=12),
)
def test_frames_cut_anywhere_get_one_answer_each_in_order(serving_worker, count, cuts):
    """However the PDP's writes of several evaluations reach the worker (one read holding
    many, a frame cut between reads, a header cut in two), every frame gets exactly one
    answer, in the order the frames came: the PDP hands answers to callers by order."""
    stream = b"".join(
        frames.encode_eval("portcullis.decision", json.dumps({"n": n}).encode())
        for n in range(count)
    )
    at = 0
    for cut in sorted(set(cuts)):
        if cut < len(stream):
            serving_worker.sendall(stream[at:cut])
            at = cut
    serving_worker.sendall(stream[at:])
    values = [read_frame(serving_worker) for _ in range(count)]
    assert [v["header"] for v in values] == [{"revision": "r1"}] * count
    assert [v["envelope"]["result"][0]["expressions"][0]["value"] for v in values] == list(
        range(count)
    )
