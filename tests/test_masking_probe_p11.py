"""Probing the value detectors (P11, helper webmask19): a split value with padding.

Real PDP with the shipped policy, the HTTP proxy before a raw upstream and the Postgres
proxy (a jsonb column), for a reader outside pii-readers. Before the fix:

- a card number cut into an array's numbers with an item put before or after it
  (`{"card": [7, 4111, 1111, 1111, 1111]}`, `[4111, 1111, 1111, 1111, 0]`) came through
  whole: an array's numbers were read only as the whole run, as was a column of an
  array's objects (`[{"p": 7}, {"p": "4111"}, ...]`). Now the run but for its padding is
  read too (values._padded: one item at either end, or up to MAX_PADDING not of the
  groups' size);
- an IBAN cut into an array's strings with a word between its groups (`["DE89", "3704",
  "x", "0044", ...]`) came through: the word broke the run. The strings holding digits
  are read past words too;
- an email address cut into sibling strings at its `@` (`{"a": "ada@", "b":
  "example.com"}`, `["ada", "@", "example.com"]`) came through: now strings whose seam
  is the `@` are read joined (values._emails_found). A name beside a domain with no `@`
  (`{"user": "ada", "domain": "example.com"}`) stays: records hold that shape every day.

The padding read keeps false finds in ordinary numbers (ids, counts, timestamps) near
the whole run's rate: measured below on seeded samples.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest
from adversary import RawClient
from http_upstream import read_cases
from pg_probe_stack import arena_fixture, reader_fixture

from portcullis.verdict import MaskRule
from proxies.http.bodies import masker_for
from proxies.postgres.values import masked_split_values

PADDED = {
    "front": {"card": [7, 4111, 1111, 1111, 1111]},
    "back": [4111, 1111, 1111, 1111, 0],
    "both": {"n": [1, 2, 3, 4111, 1111, 1111, 1111, 99, 98, 97]},
    "same-size": [1234, 4111, 1111, 1111, 1111, 9999],
    "digits": [0, *map(int, "4111111111111111"), 5],
    "iban-word": ["DE89", "3704", "x", "0044", "0532", "0130", "00"],
    "column": [{"p": 7}, {"p": "4111"}, {"p": "1111"}, {"p": "1111"}, {"p": "1111"}],
}
EMAILS = {
    "at-end": {"a": "ada.lovelace@", "b": "example.com"},
    "at-start": {"a": "ada.lovelace", "id": 7, "b": "@example.com"},
    "at-alone": ["ada.lovelace", "@", "example.com"],
}
ORDINARY = {
    "ids": [4, 8, 15, 16, 23, 42],
    "years": [2019, 2020, 2021, 2022, 2023],
    "user": "ada",
    "domain": "example.com",
    "mentions": ["see", "@ada", "@bob"],
}
SECRETS = ("4111111111111111", "DE89370400440532013000", "adalovelace")


def _shown(doc: Any) -> str:
    if isinstance(doc, dict):
        return "".join(_shown(v) for v in doc.values())
    if isinstance(doc, list):
        return "".join(_shown(v) for v in doc)
    return "".join(c for c in str(doc) if c.isalnum() and c != "x")


@pytest.mark.integration
async def test_a_padded_or_cut_value_is_masked_in_http_answers(tmp_path: Path) -> None:
    cases = {k: ("application/json", json.dumps(v)) for k, v in {**PADDED, **EMAILS}.items()}
    cases["ordinary"] = ("application/json", json.dumps(ORDINARY))
    got = await read_cases(tmp_path, cases)
    for name, (code, body) in got.items():
        assert code == 200, (name, body)
        if name == "ordinary":
            assert json.loads(body) == ORDINARY, body
            continue
        shown = _shown(json.loads(body))
        assert not any(secret in shown for secret in SECRETS), (name, body)
    # (the padding itself is no part of the card)
    assert json.loads(got["front"][1])["card"][0] == 7
    assert json.loads(got["back"][1])[-1] == 0


def _found(masker: Any, doc: Any) -> bool:
    return bool(masked_split_values(masker, doc)[1])


def test_padding_read_keeps_false_finds_in_ordinary_numbers_rare() -> None:
    masker = masker_for([MaskRule(detector="credit_card", strategy="partial")], b"k" * 32)
    rng = random.Random(19)
    samples = {
        # (random ids of one size: the worst case, as every window is cut alike)
        "ids": lambda: [rng.randint(1000, 9999) for _ in range(rng.randint(5, 8))],
        "sorted ids": lambda: sorted(rng.sample(range(1000, 99999), rng.randint(5, 20))),
        "counts": lambda: [rng.randint(0, 99) for _ in range(rng.randint(8, 12))],
        "timestamps": lambda: sorted(rng.randint(1_600_000_000, 1_800_000_000) for _ in "abc"),
        "pixels": lambda: [rng.randint(0, 255) for _ in range(rng.randint(6, 12))],
        "a column of ids": lambda: [{"id": rng.randint(1000, 9999)} for _ in range(6)],
        "a column of codes": lambda: [{"c": rng.randint(100, 999)} for _ in range(7)],
    }
    for name, sample in samples.items():
        found = sum(_found(masker, sample()) for _ in range(2000))
        # (the whole run alone finds one in about fifty arrays of four random ids)
        assert found / 2000 < 0.025, (name, found)
    # and sequences, whatever their size, never
    for start, size in itertools.product((4000, 5100, 37000), (4, 5, 6, 8)):
        assert not _found(masker, list(range(start, start + size)))


# -- a jsonb column through the Postgres proxy (tests/adversary.py's arena)

arena = arena_fixture(
    "CREATE TABLE public.mp11_docs (id int, doc jsonb);"
    " INSERT INTO public.mp11_docs VALUES"
    " (1, '{\"card\": [7, 4111, 1111, 1111, 1111]}'),"
    ' (2, \'{"a": "ada.lovelace@", "b": "example.com"}\'),'
    " (3, '{\"ids\": [4, 8, 15, 16, 23, 42]}')",
    "DROP TABLE public.mp11_docs",
)
reader = reader_fixture("mp11")


@pytest.mark.integration
def test_a_padded_or_cut_value_is_masked_in_json_columns(reader: RawClient) -> None:
    answer = reader.query("SELECT doc FROM mp11_docs ORDER BY id")
    assert not answer.errors, answer.errors
    docs = [json.loads(cell) for (cell, *_) in answer.rows if cell is not None]
    assert len(docs) == 3, answer.rows
    assert all(not any(s in _shown(d) for s in SECRETS) for d in docs[:2]), docs
    assert docs[2] == {"ids": [4, 8, 15, 16, 23, 42]}, docs
