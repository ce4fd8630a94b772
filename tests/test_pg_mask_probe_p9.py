"""Probe P9 of the Postgres masks (helper pgmask7) against the real stack
(tests/adversary.py: a gateway whose upstream credential is the `postgres` SUPERUSER), as a
reader outside pii-readers.

A search column over free text. A note's tsvector (a generated column `to_tsvector('simple',
note)`, the usual full-text search set-up) lists its words with their positions:
`'1111':3,4,5 '4111':2 'card':1 ...`, the card number to whoever reads the positions, and
`'-05':3 '-1120':4 '078':2 'ssn':1` an SSN; the value detectors read the text as it is
and found no number in it (a tsquery's `'4111' & '1111' & ...` alike), in either format.
proxies/postgres/values.py now also reads a tsvector's lexemes in the order of their
positions (a tsquery's in the order written, binary forms too) and sends a value whose
words so read hold anything a detector finds as NULL.
"""

from __future__ import annotations

import pytest
from adversary import assert_no_secret, bind, describe, execute, parse, sync
from pg_probe_stack import arena_fixture, reader_fixture

pytestmark = pytest.mark.integration

SEARCH = """
CREATE TABLE p9_notes (id int, note text,
  search tsvector GENERATED ALWAYS AS (to_tsvector('simple', note)) STORED,
  q tsquery);
INSERT INTO p9_notes (id, note, q) VALUES
  (1, 'card 4111 1111 1111 1111 on file', to_tsquery('simple', '4111 & 1111 & 1111 & 1111')),
  (2, 'ssn 078-05-1120 of bob', NULL),
  (3, 'mail ada@example.com now', NULL),
  (4, 'the quick brown fox, order 12', to_tsquery('simple', 'quick & fox'));
"""

arena = arena_fixture(SEARCH)
reader = reader_fixture("mask-p9")

SPELT = (b"'4111':", b"'1111':", b"'-1120'", b"'4111' & '1111'", b"1120")


@pytest.mark.parametrize("result_format", [0, 1])
def test_a_search_column_does_not_spell_a_number_out(reader, result_format) -> None:
    sql = "SELECT id, search, q FROM p9_notes WHERE id < 4 ORDER BY id"
    answer = reader.send(
        parse("", sql), bind("", "", result_format), describe("P", ""), execute(), sync()
    )
    assert not answer.errors, answer.errors
    assert [row[1:] for row in answer.rows] == [[None, None], [None, None], [None, None]]
    assert_no_secret(answer, *SPELT)


def test_copy_of_a_search_column_too(reader) -> None:
    answer = reader.query("COPY (SELECT search, q FROM p9_notes WHERE id < 4) TO STDOUT")
    assert_no_secret(answer, *SPELT)


def test_other_words_go_as_they_are(reader) -> None:
    answer = reader.query("SELECT search, q FROM p9_notes WHERE id = 4")
    assert not answer.errors, answer.errors
    assert answer.rows == [
        [b"'12':6 'brown':3 'fox':4 'order':5 'quick':2 'the':1", b"'quick' & 'fox'"]
    ]
