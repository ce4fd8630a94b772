"""Probe P14 of the Postgres masks against the real stack (tests/adversary.py: a gateway
whose upstream credential is the `postgres` SUPERUSER), as a reader outside pii-readers.

Masking's cost as a denial of service. The detectors read a text value in time that grows
with it, on the event loop every session of the proxy shares: a reader's one statement
answering a large value of digit groups (`'1234 5678 '` a million times over, ten
megabytes; the server answers values up to 1 GB) held every other session for tens of
seconds, and a value without a hint still cost a pass of the gates. A value masking would
read that is larger than row_mask.MAX_READ_VALUE (1 MiB) is masked whole, unread, and
counted as `detector:oversized`; a smaller one is read as before.
"""

from __future__ import annotations

import pytest
from pg_probe_stack import arena_fixture, reader_fixture

from proxies.postgres.row_mask import MAX_READ_VALUE

pytestmark = pytest.mark.integration

arena = arena_fixture()
reader = reader_fixture("mask-p14")

GROUPS = "1234 5678 "


@pytest.mark.parametrize(
    "sql",
    [
        # a literal answered as itself, as text and as a document, and a stored value grown
        f"SELECT repeat('{GROUPS}', {MAX_READ_VALUE // len(GROUPS) + 1})",
        f"SELECT repeat('{GROUPS}', {MAX_READ_VALUE // len(GROUPS) + 1})::varchar",
        f"SELECT to_jsonb(repeat('{GROUPS}', {MAX_READ_VALUE // len(GROUPS) + 1}))",
        f"SELECT array[repeat('{GROUPS}', {MAX_READ_VALUE // len(GROUPS) + 1})]",
        f"SELECT repeat('x', {MAX_READ_VALUE + 1})",
    ],
)
def test_a_value_past_the_read_limit_is_masked_whole(reader, sql) -> None:
    answer = reader.query(sql)
    assert not answer.errors, answer.errors
    [[value]] = answer.rows
    assert value in (b"[REDACTED]", None), (value or b"")[:80]


def test_a_value_under_the_limit_is_read_as_before(reader) -> None:
    plain = reader.query(f"SELECT repeat('x', {MAX_READ_VALUE})")
    assert not plain.errors, plain.errors
    assert plain.rows == [[b"x" * MAX_READ_VALUE]]
    card = reader.query("SELECT 'card 4111 1111 1111 1111 on file' || repeat(' ', 1000)")
    assert not card.errors, card.errors
    [[value]] = card.rows
    assert value is not None and b"4111 1111 1111 1111" not in value and value.startswith(b"card ")


def test_the_proxy_answers_others_while_it_masks(reader, arena) -> None:
    """Ten such values in one answer (each masked whole) and a statement after them: the
    session is answered, and the values were not read (no timing asserted: each read
    value held the loop for seconds before)."""
    answer = reader.query(
        f"SELECT repeat('{GROUPS}', {2 * MAX_READ_VALUE // len(GROUPS)})"
        " FROM generate_series(1, 10)"
    )
    assert not answer.errors, answer.errors
    assert answer.rows == [[b"[REDACTED]"]] * 10
    assert reader.query("SELECT 1").rows == [[b"1"]]
