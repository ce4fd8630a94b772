"""Probe P17 of the Postgres masks (helper pgmask10) against the real stack
(tests/adversary.py: a gateway whose upstream credential is the `postgres` SUPERUSER), as a
reader outside pii-readers.

A COPY row past the detectors' reading limit. The value detectors read a COPY TO row as
one text (Masker.mask_text), and a text longer than MAX_READ_CHARS (1 MiB) is masked whole,
unread (544ace6: reading it held the event loop): a row with one large field came back as
the bare mask string, its tabs or commas and its line end gone, so the client's COPY
reader met one field where it expected three and no row end (psql joins it with the next
row). values.masked_copy_row now masks the row's largest fields whole, each the mask
string, until the row is within the limit, and the detectors read the rest as before
(the card in the note beside it still masked): text and CSV keep their columns. Binary
COPY is refused under the masks (enforcer), as before.
"""

from __future__ import annotations

import pytest
from adversary import assert_no_secret, copied
from pg_probe_stack import arena_fixture, reader_fixture

from portcullis.masking import MAX_READ_CHARS

pytestmark = pytest.mark.integration

arena = arena_fixture()
reader = reader_fixture("mask-p17")

BIG = MAX_READ_CHARS // 4 + 1  # repeat('ab,c', BIG): a field just past the limit
MEDIUM = MAX_READ_CHARS // 2  # three of these: each within it, the row not


def _copy(reader, sql: str) -> list[bytes]:
    answer = reader.query(sql)
    assert not answer.errors, answer.errors
    assert_no_secret(answer)
    return copied(answer)


def test_a_text_row_keeps_its_fields(reader) -> None:
    [row] = _copy(
        reader,
        f"COPY (SELECT id, note, repeat('ab,c', {BIG}), name FROM customers WHERE id = 1)"
        " TO STDOUT",
    )
    assert row.endswith(b"\n"), row[:200]
    fields = row[:-1].split(b"\t")
    assert len(fields) == 4, row[:200]
    assert fields[0] == b"1" and fields[2] == b"[REDACTED]" and fields[3] == b"Ada"
    assert fields[1].startswith(b"card ") and b"4111 1111 1111 1111" not in fields[1]


def test_a_csv_row_keeps_its_fields(reader) -> None:
    [row] = _copy(
        reader,
        f"COPY (SELECT id, note, repeat('ab,c', {BIG}), name FROM customers WHERE id = 1)"
        " TO STDOUT WITH (FORMAT csv)",
    )
    assert row == b"1,card **** **** **** 1111 on file,[REDACTED],Ada\n" or (
        row.startswith(b"1,") and row.endswith(b",[REDACTED],Ada\n")
    ), row[:200]
    assert b"4111 1111 1111 1111" not in row


def test_fields_each_within_the_limit_and_the_row_not(reader) -> None:
    rows = _copy(
        reader,
        f"COPY (SELECT id, repeat('x', {MEDIUM}), repeat('y', {MEDIUM}), repeat('z', {MEDIUM}),"
        " name FROM customers ORDER BY id) TO STDOUT",
    )
    assert len(rows) == 2
    for row, (id_, name) in zip(rows, [(b"1", b"Ada"), (b"2", b"Bob")], strict=True):
        assert row.endswith(b"\n")
        fields = row[:-1].split(b"\t")
        assert len(fields) == 5 and fields[0] == id_ and fields[4] == name, row[:100]
        assert len(row) <= MAX_READ_CHARS
        assert fields.count(b"[REDACTED]") == 2, [f[:20] for f in fields]


def test_a_row_within_the_limit_is_read_as_before(reader) -> None:
    [row] = _copy(
        reader,
        f"COPY (SELECT id, note, repeat('ab', {MAX_READ_CHARS // 4}) FROM customers"
        " WHERE id = 1) TO STDOUT",
    )
    fields = row[:-1].split(b"\t")
    assert fields[2] == b"ab" * (MAX_READ_CHARS // 4)
    assert fields[1].startswith(b"card ") and b"4111 1111 1111 1111" not in fields[1]
