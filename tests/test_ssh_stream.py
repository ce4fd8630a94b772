"""The SSH proxy's sans-IO stream pieces (proxies/ssh/stream.py), no sockets: masking over
output however it is cut into chunks, and the asciicast record."""

from __future__ import annotations

import base64
import itertools
import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdp.domain.casts import casts_of
from portcullis.masking import Masker
from portcullis.verdict import MaskRule
from proxies.runtime.secrets_scan import SecretScanner
from proxies.ssh.stream import (
    HOLD_LIMIT,
    OVERLAP,
    RECORDED_PER_SECOND,
    Cast,
    MaskedOutput,
    Unreadable,
)

RULES = (MaskRule("", "email", "partial"), MaskRule("", "credit_card", "partial"))
KEY = b"k" * 32


def masked_whole(data: bytes) -> bytes:
    out = MaskedOutput(Masker(RULES, KEY))
    return out.feed(data) + out.flush()


def fed_in_pieces(data: bytes, cuts: list[int]) -> bytes:
    """What one MaskedOutput sends of data fed in pieces of the sizes in cuts, then the
    rest, then flushed."""
    out = MaskedOutput(Masker(RULES, KEY))
    sent, i = b"", 0
    for size in cuts:
        sent += out.feed(data[i : i + size])
        i += size
    return sent + out.feed(data[i:]) + out.flush()


def test_an_email_split_across_chunks_is_masked() -> None:
    out = MaskedOutput(Masker(RULES, KEY))
    sent = out.feed(b"mail: alice.sm") + out.feed(b"ith@example.com ok\nnext ")
    assert sent == b"mail: a***@example.com ok\n" and out.holding
    assert out.flush() == b"next "
    assert out.counts == {"detector:email": 1}


def test_a_line_longer_than_the_hold_limit_goes_out() -> None:
    out = MaskedOutput(Masker(RULES, KEY))
    assert out.feed(b"x" * (HOLD_LIMIT + 1)) == b"x" * (HOLD_LIMIT + 1)
    assert not out.holding


def test_a_long_line_is_cut_after_a_space_no_value_crosses() -> None:
    # a file with its line ends removed (`tr -d '\\n'`): the values must not go out in
    # two halves wherever the upstream's chunks end
    line = b"filler " * 700 + b"card 4111 1111 1111 1111 mail bob.jones@example.com end"
    for chunk in (512, 1000, 4000, 4096, 4150, 4900, 4910, 4935, len(line) - 30):
        out = MaskedOutput(Masker(RULES, KEY))
        sent = b"".join(out.feed(line[i : i + chunk]) for i in range(0, len(line), chunk))
        sent += out.flush()
        text, _ = Masker(RULES, KEY).mask_text(line.decode())
        assert sent == text.encode(), chunk
        assert b"4111 1111" not in sent and b"bob.jones" not in sent
        assert out.counts == {"detector:email": 1, "detector:credit_card": 1}


def test_a_long_line_holds_back_no_more_than_its_overlap_and_the_hold_limit() -> None:
    out = MaskedOutput(Masker(RULES, KEY))
    sent = out.feed(b"word " * 2000)
    assert len(sent) >= 10_000 - OVERLAP - 5 and sent == (b"word " * 2000)[: len(sent)]
    assert out.flush() == (b"word " * 2000)[len(sent) :]


LONG = st.lists(
    st.sampled_from(["bob.jones@example.com", "4111 1111 1111 1111", "plain", "x" * 300]),
    min_size=20,
    max_size=60,
).map(lambda parts: " ".join(parts).encode())


@settings(max_examples=150, deadline=None)
@given(LONG, st.lists(st.integers(1, 6000), max_size=12))
def test_however_a_long_line_is_cut_no_value_leaks(data: bytes, cuts: list[int]) -> None:
    sent = fed_in_pieces(data, cuts)
    assert sent == Masker(RULES, KEY).mask_text(data.decode())[0].encode()
    assert b"bob.jones@example.com" not in sent and b"4111 1111 1111 1111" not in sent


def test_bytes_that_are_not_utf8_are_unreadable_or_dropped_on_a_screen() -> None:
    # a command's output the detectors cannot read goes no further (test_ssh_probe_p2)
    data = b"\xff\xfe bob@example.com \xc3\n"
    with pytest.raises(Unreadable):
        masked_whole(data)
    screen = MaskedOutput(Masker(RULES, KEY), terminal=True)
    assert screen.feed(data) + screen.flush() == b" b***@example.com \n"


TOKENS = ["bob.jones@example.com", "4111 1111 1111 1111", "plain", " ", "\n", "\r\n", "é"]
LINES = st.lists(
    st.sampled_from([*TOKENS, "x" * 50]),
    max_size=30,
).map(lambda parts: " ".join(parts).encode())


@settings(max_examples=300, deadline=None)
@given(LINES, st.lists(st.integers(1, 64), max_size=20))
def test_however_the_output_is_cut_it_is_masked_the_same(data: bytes, cuts: list[int]) -> None:
    sent = fed_in_pieces(data, cuts)
    assert sent == masked_whole(data)
    assert b"bob.jones@example.com" not in sent and b"4111 1111 1111 1111" not in sent


def test_a_cast_reads_back_as_asciicast_v2() -> None:
    cast = Cast(100, 30, "xterm", started=1000.0)
    cast.output(1000.5, b"$ ")
    cast.input(1001.0, b"ls\r")
    cast.output(1001.25, "é".encode()[:1])  # half a character: held until the rest
    cast.output(1001.5, "é".encode()[1:] + b"\r\n")
    cast.resize(1002.0, 120, 40)
    events = cast.take()
    assert events == [[0.5, "o", "$ "], [1.0, "i", "ls\r"], [1.5, "o", "é\r\n"],
                      [2.0, "r", "120x40"]]  # fmt: skip
    recorded = [{"details": {"kind": "ssh.asciicast", "channel": 1, "decision_id": "d1",
                             "header": cast.header, "events": events}}]  # fmt: skip
    (back,) = casts_of(recorded)
    lines = back.to_asciicast().splitlines()
    header = json.loads(lines[0])
    assert header["version"] == 2 and header["width"] == 100 and header["env"]["TERM"] == "xterm"
    assert [json.loads(line) for line in lines[1:]] == events
    assert list(back.frames(speed=2.0)) == [(0.25, "$ "), (0.5, "é\r\n")]
    assert back.output == "$ é\r\n"


def test_malformed_recorded_events_are_skipped() -> None:
    recorded: list[dict[str, Any]] = [{"details": {"kind": "ssh.asciicast", "channel": "x"}},
                {"details": {"kind": "ssh.asciicast", "channel": 2,
                             "events": [[1, "o"], ["t", "o", "x"], [1, "z", "x"],
                                        [1.5, "o", "ok"]]}}]  # fmt: skip
    (cast,) = casts_of(recorded)
    assert cast.events == [[1.5, "o", "ok"]]


def test_a_terminal_records_at_most_its_rate_and_says_what_it_left_out() -> None:
    cast = Cast(80, 24, "xterm", started=0.0)
    chunk = b"y" * 1024
    for i in range(100):  # 100 KiB within the first second
        cast.output(0.001 * i, chunk)
    cast.output(1.5, b"after\r\n")
    events = cast.take(final=True)
    recorded = sum(len(e[2]) for e in events[:-2])
    assert recorded == RECORDED_PER_SECOND
    left_out = 100 * 1024 - RECORDED_PER_SECOND
    assert events[-2][2] == f"\r\n[portcullis: {left_out} bytes not recorded]\r\n"
    assert events[-1][1:] == ["o", "after\r\n"]
    times = [e[0] for e in events]
    assert times == sorted(times)


# -- the client output's secret scan (proxies/runtime/secrets_scan.py), as the stream feeds it


@settings(max_examples=200, deadline=None)
@given(
    secret=st.binary(min_size=4, max_size=48),
    form=st.sampled_from(["raw", "hex", "base64", "base64url"]),
    before=st.binary(max_size=300),
    after=st.binary(max_size=300),
    cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=6),
)
def test_a_secret_in_the_stream_is_seen_however_it_is_cut(
    secret: bytes, form: str, before: bytes, after: bytes, cuts: list[int]
) -> None:
    """The scan's first test (a stretch of the forms' bytes, as long as the shortest form)
    never lets a form through, at any position and any chunking."""
    encoded = {
        "raw": secret,
        "hex": secret.hex().encode(),
        "base64": base64.b64encode(secret),
        "base64url": base64.urlsafe_b64encode(secret),
    }[form]
    stream = before + encoded + after
    scanner = SecretScanner([secret])
    edges = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    for start, end in itertools.pairwise(edges):
        scanner.feed(stream[start:end])
    assert scanner.exposed


def test_binary_output_without_a_secret_is_not_flagged() -> None:
    scanner = SecretScanner(["-----a line of a private key, long enough-----", "hunter2!"])
    for seed in range(64):
        scanner.feed(bytes((seed * 7 + i * 13) % 256 for i in range(4096)))
    assert not scanner.exposed


def test_a_card_spelt_a_digit_a_line_across_chunks_is_masked() -> None:
    """A card a digit a line (portcullis.card_groupings) whose lines come in two chunks:
    the short digit lines at the end of the first are held and read with the second."""
    masker = Masker([MaskRule(detector="credit_card", strategy="partial")], b"k" * 32)
    out = MaskedOutput(masker)
    sent = out.feed(b"card\n4\n1\n1\n1\n1\n1\n1\n1\n") + out.feed(b"1\n1\n1\n1\n1\n1\n1\n1\n")
    sent += out.flush()
    assert sent == b"card\n" + b"*\n" * 12 + b"1\n" * 4, sent
    assert out.counts == Counter({"detector:credit_card": 1})


@pytest.mark.parametrize(
    "chunks",
    [
        [b"SSN:\n", b"078051120\n"],  # `echo SSN:; sleep 1; echo 078051120`
        [b"SSN:", b"\n", b"078051120\n"],
        [b"name: ann\nsocial security no.\n", b"078051120 (on file)\n"],
        [b"x: ann@example.com\nSSN:\n", b"078051120"],  # flushed at the end, no line end
    ],
)
def test_a_label_on_the_line_sent_before_names_the_value_after_it(chunks: list[bytes]) -> None:
    """The detectors read an SSN label on the line before a value; output cut between the
    two lines (two echoes a second apart) went out with the value whole."""
    rules = (MaskRule("", "ssn", "partial"), MaskRule("", "email", "partial"))
    whole = MaskedOutput(Masker(rules, KEY))
    at_once = whole.feed(b"".join(chunks)) + whole.flush()
    out = MaskedOutput(Masker(rules, KEY))
    sent = b"".join(out.feed(chunk) for chunk in chunks) + out.flush()
    assert b"078051120" not in sent and b"1120" in sent, sent
    assert sent == at_once and out.counts == whole.counts
