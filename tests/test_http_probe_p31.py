"""Probing the HTTP proxy's masks (P31, helper webmask14): CSV served as text/plain, an
LLM's choices interleaved, values split with nothing between their pieces.

Real PDP with the shipped policy, the HTTP proxy, a raw upstream (whole, or chunked in
pieces as a stream comes), a raw client: a reader outside pii-readers (`phone`,
`password`, `ssn` masked by their names; cards and e-mails by the detectors). Before the
fixes:

- a CSV file served as text/plain (what many servers label a `.csv` they do not know) is
  read as lines of text, where a header naming a masked column withholds the answer (the
  lines do not tell which value is in that column): but a header naming it in two words
  (`name,Phone Number`, `name,Mobile Phone,city`) went through, and with it the column's
  values no detector finds (`hunter22`). A line of names parted by commas is read as the
  cells it is now (bodies.BodyMask._unresolved), as tabs and pipes were: withheld.
- an LLM's stream of two choices (`n: 2`, which the client asks for): each event holds a
  piece of one of them, named by its `index`, and the pieces were put together by where
  they were in the event's list, so one choice's pieces were read with the other's
  between (`4111 1111`, `hello`, ` 1111 1111`) and the card went whole; they are put
  together by their `index` now (bodies._doc_texts).

(Held already, pinned here: a card cut into pieces with nothing between them, in an event
stream's data, an LLM's deltas, NDJSON pieces, lines of text; a header naming the masked
column in one word, with commas, tabs, quotes, CRLF, a byte order mark: withheld.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from http_upstream import read_cases

pytestmark = pytest.mark.integration

TABLES = {
    "worded": "name,Phone Number\nAnn,5550100\nBob,hunter22\n",
    "worded-three": "name,Mobile Phone,city\nAnn,5550100,Oslo\nBob,hunter22,Rome\n",
    "worded-quoted": '"name","Phone Number"\n"Ann","5550100"\n"Bob","hunter22"\n',
    "comma": "name,phone\nAnn,5550100\nBob,hunter22\n",
    "upper": "NAME,PASSWORD\nAnn,5550100\nBob,hunter22\n",
    "tabs": "name\tssn\nAnn\t5550100\nBob\thunter22\n",
    "crlf": "name,phone\r\nAnn,5550100\r\nBob,hunter22\r\n",
    "bom": "\ufeffname,phone,city\nAnn,5550100,Oslo\nBob,hunter22,Rome\n",
}
# (text naming no masked column as a header stays text: prose with commas, a list in a
# sentence)
KEPT = {
    "prose": "Hello, world\nsee you at 5, ok\n",
    "sentence": "Please confirm your name, phone number, and address.\n",
}


def _delta(text: str, index: int | None = None) -> str:
    choice = (
        {"delta": {"content": text}}
        if index is None
        else {"index": index, "delta": {"content": text}}
    )
    return "data: " + json.dumps({"choices": [choice]}) + "\n\n"


SPLIT = {
    "sse": ("text/event-stream", "data: 41111111\n\ndata: 11111111\n\n"),
    "sse-groups": ("text/event-stream", "data: 4111\n\ndata: 1111\n\ndata: 1111\n\ndata: 1111\n\n"),
    "deltas": ("text/event-stream", _delta("card 41111111") + _delta("11111111 ok")),
    "mail": ("text/event-stream", _delta("mail bob") + _delta("@exa") + _delta("mple.com ok")),
    # (`n: 2`: two choices' pieces interleaved, each event holding one choice by its index)
    "choices": (
        "text/event-stream",
        _delta("card 4111 1111", 0) + _delta("hello", 1) + _delta(" 1111 1111", 0),
    ),
    "ndjson": (
        "application/x-ndjson",
        json.dumps({"response": "card 41111111", "done": False})
        + "\n"
        + json.dumps({"response": "11111111", "done": True})
        + "\n",
    ),
    "lines": ("text/plain", "41111111\n11111111\n"),
}


@pytest.mark.parametrize("piece", [0, 6])
async def test_csv_served_as_text_passes_no_column_value(tmp_path: Path, piece: int) -> None:
    cases = {n: ("text/plain", t) for n, t in {**TABLES, **KEPT}.items()}
    got = await read_cases(tmp_path, cases, piece=piece)
    for name in TABLES:
        status, body = got[name]
        assert b"5550100" not in body and b"hunter22" not in body, (name, body)
        # (withheld: a 502, or a stream cut after its head)
        assert status == 502 or body == b"", (name, status, body)
    for name, text in KEPT.items():
        assert got[name] == (200, text.encode()), (name, got[name])


@pytest.mark.parametrize("piece", [0, 5])
async def test_values_split_with_nothing_between_are_masked(tmp_path: Path, piece: int) -> None:
    got = await read_cases(tmp_path, SPLIT, piece=piece)
    for name, (status, body) in got.items():
        shown = body.decode("utf-8")
        assert status == 200, (name, shown)
        flat = "".join(shown.split())
        for piece_of in ("41111111", "4111111111111111", "bob@", "bob"):
            assert piece_of not in flat.replace('"', ""), (name, shown)
