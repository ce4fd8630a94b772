"""Probe P13 of the Postgres masks (helper pgmask9) against the real stack
(tests/adversary.py: a gateway whose upstream credential is the `postgres` SUPERUSER), as a
dba outside pii-readers (masked as a reader is; readers may not EXPLAIN ANALYZE at all).

What running a statement measured. EXPLAIN ANALYZE runs the statement and prints, beside
its plan, how much memory or disk each sort and hash took, their buckets and batches, the
buffers read: the sizes of the values the statement computed and never sent.

    EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
    SELECT translate(password, 'abcdefghijklm', '') FROM customers,
           generate_series(1, 100000) g WHERE id = 1 ORDER BY g

printed `Sort Method: external merge  Disk: 2168kB` where the password as it is gave
2552kB: how many of Ada's characters are in a-m, and over substr(password, k, 1) which
set each character is in (100 kB apart; translate over a sensitive column is refused since
p12, over a note's free text since p37, and the password as it is measures its length).
rego/portcullis/postgres_lineage.rego now holds
EXPLAIN ANALYZE of a statement reading a table for approval under the masks, as CLUSTER is;
EXPLAIN without ANALYZE (the plan alone) runs as before, and a pii-reader's runs.
"""

from __future__ import annotations

import pytest
from adversary import assert_no_secret
from pg_probe_stack import arena_fixture, probe_client

pytestmark = pytest.mark.integration

arena = arena_fixture()
client = probe_client("mask-p13")

MEASURED = [
    "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT password"
    " FROM customers, generate_series(1, 100000) g WHERE id = 1 ORDER BY g",
    "EXPLAIN ANALYZE SELECT substr(note, 6, 1) FROM customers,"
    " generate_series(1, 100000) g WHERE id = 1 ORDER BY g",
    "EXPLAIN (ANALYZE, BUFFERS) SELECT count(*) FROM customers WHERE password IS NOT NULL",
    "explain (analyze true, format json) select ssn from customers order by id",
]


@pytest.mark.parametrize("sql", MEASURED)
def test_explain_analyze_under_the_masks_waits_for_approval(arena, sql) -> None:
    c = client(arena, ("dba",))
    try:
        answer = c.query(sql)
    finally:
        c.close()
    assert_no_secret(answer)
    assert not any(b"Disk:" in (v or b"") for row in answer.rows for v in row), answer.rows
    assert answer.errors and "approval" in answer.errors[0], answer.messages
    assert b"EXPLAIN ANALYZE under the masks needs approval" in answer.raw, answer.messages


def test_the_plan_alone_and_a_pii_reader_still_run(arena) -> None:
    c = client(arena, ("dba",))
    try:
        plan = c.query("EXPLAIN (COSTS OFF) SELECT id FROM customers ORDER BY id")
    finally:
        c.close()
    assert not plan.errors, plan.errors
    assert plan.rows and plan.rows[0][0].startswith(b"Sort"), plan.rows
    c = client(arena, ("dba", "pii-readers"))
    try:
        measured = c.query(MEASURED[0])
    finally:
        c.close()
    assert not measured.errors, measured.errors
    assert any(b"Disk:" in (row[0] or b"") for row in measured.rows), measured.rows
