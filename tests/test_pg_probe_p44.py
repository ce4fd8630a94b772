"""Probe p44 (helper pgattack19): extended-protocol paths that keep a portal's masks.

Regressions for a sweep that found these closed (no fix was needed), as a reader of the
adversary arena (tests/adversary.py: the upstream credential is the `postgres`
SUPERUSER), with frames built byte by byte:

- a portal suspended by Execute with a row limit, then a Bind of the same portal name to a
  statement with no masked column that the SERVER refuses (wrong parameter count: the old
  portal survives there) inside a savepoint, ROLLBACK TO SAVEPOINT, and the portal
  executed again: the server would go on with the masked portal's rows, so the proxy
  refuses the Execute rather than apply the other statement's (empty) masks;
- an error with no Sync after it (Flush), the rest of the batch skipped by the server,
  then a masked portal after the Sync: the masks stay with the portal they belong to;
- result format codes given once, per column, or mixed, on a masked bigint and a masked
  text column: no raw value in either format.

Real PostgreSQL, the real proxy.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from adversary import SECRETS, Arena, RawClient, assert_none_of
from pg_probe_stack import arena_fixture, probe_client

from proxies.postgres import codec

pytestmark = pytest.mark.integration

arena = arena_fixture(
    setup=(
        "CREATE TABLE public.p44_cards (id int, card_number bigint, ssn text);"
        " INSERT INTO public.p44_cards VALUES (1, 4111111111111111, '123-45-6789')"
    ),
    teardown="DROP TABLE public.p44_cards",
)
client = probe_client("p44", ("readonly",))
MASKED = "SELECT email, ssn FROM customers"
PLAIN = "SELECT name, name FROM customers WHERE id > $1"
CARD_BINARY = struct.pack("!q", 4111111111111111)
RAW = (*SECRETS, CARD_BINARY, b"4111111111111111")


def frames(*messages: codec.Message) -> bytes:
    return b"".join(m.encode() for m in messages)


@pytest.fixture
def reader(arena: Arena) -> Iterator[RawClient]:
    c = client(arena)
    yield c
    c.close()


@pytest.mark.parametrize("portal", ["", "p44"])
def test_a_suspended_portal_rebound_in_a_rolled_back_savepoint_is_not_run_unmasked(
    reader: RawClient, portal: str
) -> None:
    assert reader.query("BEGIN").tags == ["BEGIN"]
    reader.send(
        frames(codec.Parse("plain", PLAIN, [23]), codec.Parse("masked", MASKED), codec.Sync())
    )
    first = reader.send(
        frames(codec.Bind(portal, "masked", [], [], [0]), codec.Execute(portal, 1), codec.Sync())
    )
    assert first.rows == [[b"[REDACTED]", b"[REDACTED]"]]
    assert reader.query("SAVEPOINT p44").tags == ["SAVEPOINT"]
    # no parameter for $1: the server refuses the Bind before it replaces the portal
    rebound = reader.send(frames(codec.Bind(portal, "plain", [], [], [0]), codec.Sync()))
    assert rebound.errors
    assert reader.query("ROLLBACK TO SAVEPOINT p44").tags == ["ROLLBACK"]
    rest = reader.send(frames(codec.Execute(portal, 0), codec.Sync()))
    assert_none_of(rest, RAW)
    assert rest.errors and not rest.rows, rest.rows
    reader.query("ROLLBACK")


def test_masks_stay_with_their_portal_after_an_error_flushed_without_sync(
    reader: RawClient,
) -> None:
    reader.send(
        frames(
            codec.Parse("plain", "SELECT name, name FROM customers"),
            codec.Parse("masked", MASKED),
            codec.Parse("fails", "SELECT name, (1/0)::text FROM customers"),
            codec.Sync(),
        )
    )
    reader.sock.sendall(
        frames(
            codec.Bind("pf", "fails"),
            codec.Execute("pf", 0),
            codec.Bind("pp", "plain"),
            codec.Execute("pp", 0),
            codec.Flush(),
        )
    )
    flushed = reader._until((codec.ErrorResponse,))
    assert flushed.errors and not flushed.rows
    skipped = reader.send(frames(codec.Bind("pm", "masked"), codec.Execute("pm", 0), codec.Sync()))
    assert not skipped.rows and not skipped.errors
    answer = reader.send(
        frames(codec.Bind("pm", "masked", [], [], [1]), codec.Execute("pm", 0), codec.Sync())
    )
    assert_none_of(answer, RAW)
    assert answer.rows == [[b"[REDACTED]", b"[REDACTED]"]] * 2


@pytest.mark.parametrize("formats", [[1], [1, 1, 1], [1, 0, 1], [0, 1, 0], []])
def test_masked_columns_in_any_result_format(reader: RawClient, formats: list[int]) -> None:
    answer = reader.send(
        frames(
            codec.Parse("", "SELECT card_number, ssn, id FROM p44_cards"),
            codec.Bind("", "", [], [], formats),
            codec.Execute("", 0),
            codec.Sync(),
        )
    )
    assert_none_of(answer, RAW)
    assert not answer.errors, answer.errors
    [row] = answer.rows
    assert row[0] is None and row[1] == b"[REDACTED]"
