"""Probing the value detectors' cost (P12, helper webmask20): text an upstream writes so
that reading it for values takes long, on the loop every session of a proxy shares.

Before the fix:

- the card detector read every window of a run of digits written one at a time (`1 1 1
  ...`, `1-1-1-...`: each digit a window's start, seven windows each) by joining its
  groups' digits again and reading them for the check digit: ~13-30 s a MiB (64 KiB: 4 s
  on this machine), and a body may be 8 MiB. A run's digits are now read once
  (masking._RunDigits: sums for the check digit, the first digit past zero padding, the
  end of a run of one digit), each window in a few steps; the same cards found;
- a text holding many cards read, for each run of digits and each card in an unusual
  grouping, every card found before (card_groupings.covering: quadratic; 256 KiB of
  ordinary text with a few thousand cards: ~12 s);
- nothing bounded the time: a body the detectors cannot read in its budget (bodies'
  SCAN_SECONDS and SCAN_BYTES_PER_SECOND, an MCP answer's mcp.SCAN_SECONDS; CPU time of
  the thread masking, generous: ordinary answers take a fraction of it) is now withheld
  (an HTTP answer refused with a 502 problem as one that cannot be masked, a stream cut,
  an MCP answer a JSON-RPC error), never passed on unread (masking.scan_budget).

Measured (CPU time, every detector, 128 KiB, a loaded machine): `1 1 1` and `1-1-1`
0.11 -> 0.43 MiB/s; ordinary text with cards 0.83 -> 0.77, JSON 1.28 -> 1.22, text of
one digit a line 0.83 -> 0.85 (the same within the machine's noise). No timed assertion
here: the windows read again are counted.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from pathlib import Path

import pytest
from http_upstream import http_stack, raw_server, reader_get
from streamed_answers import answering

from portcullis import masking
from portcullis.masking import Masker, ScanBudgetExceeded, scan_budget
from portcullis.verdict import MaskRule
from proxies.http import bodies
from proxies.http.bodies import BodyMask, Unmaskable

Span = tuple[int, int]
RULES = (MaskRule("", "credit_card", "partial"), MaskRule("", "email", "partial"))


def _old_longest_card_from(text: str, groups: list[Span], start: int) -> int | None:
    """_longest_card_from as it was: each window's digits joined and read afresh."""
    candidates = []
    digits = 0
    first = text[groups[start][0] : groups[start][1]]
    padding = len(first) - len(first.lstrip("0"))
    single = (
        len(first) == 1
        and start + 1 < len(groups)
        and groups[start + 1][1] - groups[start + 1][0] == 1
    )
    for index in range(start, len(groups)):
        size = groups[index][1] - groups[index][0]
        if index > start and (size != 1 if single else not 3 <= size <= 6):
            break
        digits += size
        if digits - padding > masking._CARD_MAX:
            break
        if digits - padding >= masking._CARD_MIN:
            candidates.append(index)
    for end in reversed(candidates):
        window = groups[start : end + 1]
        parts = [text[a:b] for a, b in window]
        if not masking._card_digits_ok("".join(parts)):
            continue
        separators = [text[a[1] : b[0]] for a, b in itertools.pairwise(window)]
        if masking._card_window_ok(parts, separators):
            return end
    return None


def _old_card_spans(text: str, monkeypatch: pytest.MonkeyPatch) -> list[Span]:
    with monkeypatch.context() as patched:
        patched.setattr(
            masking,
            "_longest_card_from",
            lambda text, groups, start, _: _old_longest_card_from(text, groups, start),
        )
        patched.setattr(
            masking._RunDigits,
            "reaches_card",
            lambda self, start: masking._reaches_card(self.sizes, start),
        )
        return list(masking._card_spans(text))


PIECES = ["0", "1", "4", "7", "9", " ", "-", ".", "  ", "/", ",", ":", "\n", "a", "x", "e"]
PIECES += ["4111", "1111", "0000", "123", "45", "6789", "12345", "+", " - "]


def test_cards_are_the_ones_the_window_by_window_reading_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pick = random.Random(12)
    texts = ["".join(pick.choice(PIECES) for _ in range(pick.randint(5, 40))) for _ in range(30000)]
    for _ in range(6000):  # digits one at a time, cards among them (runs of over 64 too)
        digits = "".join(pick.choice("0000123456789") for _ in range(pick.randint(10, 160)))
        texts.append(pick.choice([" ", "-", ".", "  ", " - ", ","]).join(digits))
    for _ in range(3000):  # long runs of groups of any size
        digits = " ".join(
            "".join(pick.choice("0123456789") for _ in range(pick.choice([1, 1, 2, 3, 4, 4, 5, 6])))
            for _ in range(pick.randint(10, 60))
        )
        texts.append(digits)
    texts += ["4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1", "0 4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1"]
    texts += ["4111 1111 1111 1111", "0000004111111111111111", "4-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1"]
    for text in texts:
        assert list(masking._card_spans(text)) == _old_card_spans(text, monkeypatch), text
    assert list(masking._card_spans("4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1")) == [(0, 31)]


def _counted(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    calls = [0]
    real = getattr(masking, name)

    def counting(*args: object) -> object:
        calls[0] += 1
        return real(*args)

    monkeypatch.setattr(masking, name, counting)
    return calls


@pytest.mark.parametrize("separator", [" ", "-", ".", "\t"])
def test_digits_one_at_a_time_are_not_read_again_for_each_window(
    monkeypatch: pytest.MonkeyPatch, separator: str
) -> None:
    text = separator.join("1" * 20000)  # 20,000 windows' starts, seven windows each
    joined = _counted(monkeypatch, "_card_digits_ok")
    assert Masker(RULES, b"k" * 32).mask_text(text)[1] == {}
    assert joined[0] < 100  # (before: 7 for each start, ~140,000)


def test_many_cards_are_not_each_read_against_every_card_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = "ok 4111 1111 1111 1111 then 4111-11-11-11-11-11-11 x\n" * 2000
    asked = [0]
    real = masking.covering

    def counting(spans: list[Span]) -> object:
        covered = real(spans)

        def asking(start: int, end: int) -> bool:
            asked[0] += 1
            return covered(start, end)

        return asking

    monkeypatch.setattr(masking, "covering", counting)
    spans = list(masking._card_spans(text))
    assert len(spans) == 2000 and asked[0] <= 2000  # (one question a span found, not n²)


def test_a_text_not_read_in_its_budget_is_refused() -> None:
    masker = Masker(RULES, b"k" * 32)
    assert masker.mask_text("paid 4111 1111 1111 1111")[1] == {"credit_card": 1}
    with pytest.raises(ScanBudgetExceeded), scan_budget(-1.0):
        masker.mask_text("paid 4111 1111 1111 1111")
    with scan_budget(60.0), pytest.raises(ScanBudgetExceeded), scan_budget(-1.0):
        masker.mask_text("1 " * 5000)  # (the earlier deadline stands)
    with scan_budget(-1.0), scan_budget(60.0), pytest.raises(ScanBudgetExceeded):
        masker.mask_text("1 " * 5000)


def test_a_body_not_masked_in_its_budget_is_unmaskable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bodies, "SCAN_SECONDS", -1.0)
    for kind, data in (
        ("json", b'{"a": "4111 1111 1111 1111"}'),
        ("lines", b"4111 1111 1111 1111\n"),
    ):
        body = BodyMask(bodies.masker_for(RULES, b"k" * 32), kind)
        with pytest.raises(Unmaskable, match="time allowed"):
            body.feed(data)
            body.finish()


@pytest.mark.integration
async def test_an_answer_the_detectors_cannot_read_in_time_is_withheld(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the budget is set spent: any answer the detectors read runs out of it, as `1 1 1
    # ...` megabytes did on a busy proxy
    monkeypatch.setattr(bodies, "SCAN_SECONDS", -1000.0)
    document = b'{"note": "' + b"4 1 " * 2000 + b'paid 4111 1111 1111 1111"}'

    async with (
        raw_server(answering("application/json", [document], chunked=False)) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as stack,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.proxy.port)
        writer.write(reader_get(stack, 1, "GET /notes"))
        answer = await asyncio.wait_for(reader.read(), 30)
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b" 200 " not in head.split(b"\r\n")[0], answer
    assert b"4111" not in answer and b"4 1 4 1" not in answer, answer
    assert b"cannot be masked" in body or b"time allowed" in body, answer
