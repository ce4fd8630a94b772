"""Probing the HTTP proxy's CSV answers (P39, helper webmask22): a card cut into the cells
of a row.

Real PDP with the shipped policy and the HTTP proxy before a raw upstream answering CSV,
read by a reader outside pii-readers. Before the fix a card number written into four
cells of one row (`7,4111,1111,1111,1111`: a legacy table keeping a card in four columns,
an export splitting a value at its spaces) came through whole when the row had another
cell before or after it: the detectors read the line as the upstream wrote it, and a run
of comma-parted groups is a card only when it is one grouping whole (card_groupings), so
`7,` before the card hid it. The same cells parted by tabs (TSV) were masked, and so
were they as the strings of a JSON array. Now a row's cells are read as sibling values,
as a JSON array's strings are (values.masked_split_values: a card, an SSN or an IBAN
across them masked in each of its parts).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from http_upstream import read_cases

from portcullis.verdict import MaskRule
from proxies.http.bodies import BodyMask, masker_for

CARD = "4111111111111111"
CASES = {
    "before": ("text/csv", "id,p1,p2,p3,p4\n7,4111,1111,1111,1111\n"),
    "after": ("text/csv", "p1,p2,p3,p4,n\n4111,1111,1111,1111,2\n"),
    "quoted": ("text/csv", 'id,p1,p2,p3,p4\n7,"4111","1111","1111","1111"\n'),
    "rows": ("text/csv", "id,p1,p2,p3,p4\n7,4111,1111,1111,1111\n8,5500,0000,0000,0004\n"),
    "headless": ("text/csv; header=absent", "7,4111,1111,1111,1111\n"),
    "ssn": ("text/csv", "id,a,b,c\n7,078,05,1120\n"),
}
KEPT = {
    "ports": ("text/csv", "id,a,b,c,d\n7,4000,4001,4002,4003\n"),
    "plain": ("text/csv", "id,name,n\n7,Ann,4111\n"),
}


def _digits(body: bytes) -> str:
    return "".join(c for c in body.decode() if c.isdigit())


@pytest.mark.integration
async def test_a_card_in_the_cells_of_a_csv_row_is_masked(tmp_path: Path) -> None:
    got = await read_cases(tmp_path, {**CASES, **KEPT})
    for name in CASES:
        status, body = got[name]
        assert status == 200, (name, body)
        assert CARD not in _digits(body) and "5500000000000004" not in _digits(body), (name, body)
        assert "078051120" not in _digits(body), (name, body)
        assert body.count(b"\n") == CASES[name][1].count("\n"), (name, body)  # (rows stay)
    for name, (_, sent) in KEPT.items():
        assert got[name] == (200, sent.encode()), (name, got[name])


def test_a_rows_numbers_side_by_side_are_read_as_a_value_only_when_cut_as_one() -> None:
    # (ids, years, months, amounts and codes side by side stay; a card's groups in cells,
    # under a strategy writing more than a digit for a digit, keep the row's columns)
    masker = masker_for(
        [MaskRule(detector=d, strategy="hash") for d in ("credit_card", "ssn")], b"k" * 32
    )
    rng = random.Random(39)
    lines = ["id,year,month,day,amount,code"] + [
        f"{n},{rng.randint(1990, 2030)},{rng.randint(1, 12)},{rng.randint(1, 28)},"
        f"{rng.randint(0, 99999)},{rng.randint(0, 999)}"
        for n in range(2000)
    ]
    body = ("\n".join(lines) + "\n").encode()
    mask = BodyMask(masker, "csv", media="text/csv")
    assert mask.feed(body) + mask.finish() == body and not mask.counts
    mask = BodyMask(masker, "csv", media="text/csv")
    out = mask.feed(b"id,a,b,c,d,n\n7,4111,1111,1111,1111,2\n") + mask.finish()
    row = out.decode().splitlines()[1].split(",")
    assert len(row) == 6 and row[0] == "7" and row[5] == "2", out
    assert all(cell.startswith("sha256:") for cell in row[1:5]), out
    assert mask.counts == {"detector:credit_card": 1}, mask.counts
