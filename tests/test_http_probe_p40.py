"""Probing the HTTP proxy's card groupings (P40, helper webmask23): a card in a one-line
list of numbers with another item beside it.

Real PDP with the shipped policy and the HTTP proxy before a raw upstream, read by a
reader outside pii-readers. P39 read a CSV row's cells as sibling values; the same row
as text/plain, inside an NDJSON string or a JSON string came through whole
(`7,4111,1111,1111,1111`): a run of comma-parted groups was read as a card only when
the run was one grouping whole (card_groupings), and `7,` before the card hid it. Now
four groups of exactly four digits (or 4-6-5, 4-6-4) that the run's other groups do not
continue (its neighbours, if any, of another size) are read as a card as well, the
check digit and an issuer's range deciding; lists of years, amounts, ids, dates and
times stay.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from http_upstream import read_cases

from portcullis import masking

CARDS = ("4111111111111111", "5500000000000004", "378282246310005")
CASES = {
    "plain": ("text/plain", "7,4111,1111,1111,1111\n"),
    "after": ("text/plain", "4111,1111,1111,1111,7\n"),
    "both": ("text/plain", "id 7: 12,4111,1111,1111,1111,99\n"),
    "ndjson": ("application/x-ndjson", '{"row":"7,5500,0000,0000,0004"}\n'),
    "json": ("application/json", '{"row":"3,3782,822463,10005,99"}'),
    "semicolon": ("text/plain", "7;4111;1111;1111;1111\n"),
}
KEPT = {
    "years": ("text/plain", "7,2019,2020,2021,2022,2023\n"),
    "ports": ("text/plain", "7,4000,4001,4002,4003\n"),
}


def _digits(body: bytes) -> str:
    return "".join(c for c in body.decode() if c.isdigit())


@pytest.mark.integration
async def test_a_card_in_a_list_with_another_item_is_masked(tmp_path: Path) -> None:
    got = await read_cases(tmp_path, {**CASES, **KEPT})
    for name in CASES:
        status, body = got[name]
        assert status == 200, (name, body)
        assert not any(card in _digits(body) for card in CARDS), (name, body)
    for name, (_, sent) in KEPT.items():
        assert got[name] == (200, sent.encode()), (name, got[name])


def _masked(text: str) -> bool:
    return bool(masking.detect("credit_card", text))


def test_numeric_rows_beside_four_digit_groups_stay() -> None:
    # (comma rows of dates, amounts, ids, years, codes: none read as a card)
    rng = random.Random(40)
    rows = []
    for n in range(20000):
        y, m, d = rng.randint(1990, 2030), rng.randint(1, 12), rng.randint(1, 28)
        rows += [
            f"{n},{y},{m:02d},{d:02d},{rng.randint(0, 99999)}.{rng.randint(0, 99):02d}",
            f"{n},{rng.randint(1000, 9999)},{rng.randint(100000, 999999)},{rng.randint(1, 9)}",
            f"{y}-{m:02d}-{d:02d},{rng.randint(1, 9999)},{rng.randint(1, 9999)},{n}",
            ",".join(str(rng.randint(1990, 2030)) for _ in range(6)),
            f"{n},{y},{m:02d},{d:02d},{rng.randint(0, 23):02d},{rng.randint(0, 59):02d},"
            f"{rng.randint(0, 59):02d},{rng.randint(10, 99)},{rng.randint(100, 999)}",
            ",".join(str(rng.randint(1000, 9999)) for _ in range(rng.randint(5, 9))),
            ",".join(
                str(rng.randint(1, 10 ** rng.randint(1, 7))) for _ in range(rng.randint(5, 9))
            ),
        ]
    # (measured: 5 rows of 100000, a list of eight four-digit numbers whose two halves
    # pass as cards, and lists of mixed sizes holding four of four digits that do; ids
    # between four four-digit codes are a card's shape: ~2.7% of random codes pass, as
    # the same row's cells as CSV do, P39)
    hits = [row for row in rows if _masked(row)]
    assert len(hits) <= len(rows) // 10000, hits[:20]
