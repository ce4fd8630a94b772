"""Reuse of evaluations the policy declared reusable: the shared table and the PDP's use of it.

The PDP answers a command from an earlier evaluation only within the same session, for
the same command kind and attributes, by exact text or by shape when the verdict said
`cache_key: shape`, until the TTL or a revision change. Every decision is still its own
record, and names the decision whose evaluation it reused.
"""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st
from pdp_harness import decide_sql, open_session, pdp_config, pdp_stub, running_pdp, token

from pdp.store.chain import canonical_json, record_hash, sealed_hash
from portcullis.reuse import ReuseTable, _json_key, reuse_key
from portcullis.shape import shape
from portcullis.v1 import pdp_pb2
from portcullis.verdict import Verdict, VerdictKind


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def allow(ttl: int, key: str = "exact") -> Verdict:
    return Verdict(VerdictKind.ALLOW, cache_ttl_seconds=ttl, cache_key=key)


def test_exact_entries_live_until_their_ttl_and_only_for_their_revision():
    clock = Clock()
    table: ReuseTable[str] = ReuseTable(clock=clock)
    table.store("s1", "postgres.query", "select 1", allow(10), "rev-a", "first", shape)
    assert table.lookup("s1", "postgres.query", "select 1", "rev-a", shape) == "first"
    assert table.lookup("s2", "postgres.query", "select 1", "rev-a", shape) is None
    assert table.lookup("s1", "postgres.query", "select 2", "rev-a", shape) is None
    assert table.lookup("s1", "postgres.query", "select 1", "rev-b", shape) is None
    table.store("s1", "postgres.query", "select 1", allow(10), "rev-a", "first", shape)
    clock.now += 10
    assert table.lookup("s1", "postgres.query", "select 1", "rev-a", shape) is None
    assert table.hits == 1 and table.misses == 4


def test_shape_entries_ignore_literals_but_not_structure():
    table: ReuseTable[str] = ReuseTable()
    table.store(
        "s", "postgres.query", "SELECT * FROM t WHERE id = 1", allow(5, "shape"), "r", "v", shape
    )
    assert table.lookup("s", "postgres.query", "SELECT * FROM t WHERE id = 99", "r", shape) == "v"
    assert table.lookup("s", "postgres.query", "SELECT * FROM u WHERE id = 1", "r", shape) is None
    # another schema's table of the same name is another table, for a policy reading tables
    qualified = "SELECT * FROM public.pay WHERE id = 1"
    table.store("s", "postgres.query", qualified, allow(5, "shape"), "r", "public", shape)
    assert (
        table.lookup("s", "postgres.query", "SELECT * FROM hr.pay WHERE id = 1", "r", shape) is None
    )
    assert table.lookup("s", "postgres.query", qualified.replace("1", "2"), "r", shape) == "public"


def test_denials_approvals_and_zero_ttl_are_never_stored():
    table: ReuseTable[str] = ReuseTable()
    denied = Verdict(VerdictKind.DENY, ("no",), cache_ttl_seconds=60)
    approval = Verdict(VerdictKind.REQUIRE_APPROVAL, cache_ttl_seconds=60)
    for verdict in (denied, approval, allow(0)):
        table.store("s", "k", "x", verdict, "r", "v", shape)
    assert len(table) == 0


def test_the_table_is_bounded():
    table: ReuseTable[int] = ReuseTable(max_entries=3)
    for i in range(10):
        table.store("s", "k", f"select {i}", allow(60), "r", i, shape)
    assert len(table) == 3
    assert table.lookup("s", "k", "select 9", "r", shape) == 9
    assert table.lookup("s", "k", "select 0", "r", shape) is None


def test_sealed_hash_is_record_hash_spelt_out():
    body = {"z": [1, 2.5, None], "a": {"é": "ü\u2028", "n": True}, "raw": 'a"b\\c'}
    args = ("f" * 64, 7, "d-1\u00e9", "decision", 1_700_000_000_123_456, 's-"x', "alice")
    assert sealed_hash(*args, canonical_json(body)) == record_hash(*args, body)


async def test_pdp_reuses_a_shape_verdict_within_a_session_and_records_every_decision(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        tok = token(config, "alice@example.com", ("readonly",))
        first_session = await open_session(stub, tok)
        sid = first_session.session_id
        first = await decide_sql(stub, sid, "SELECT id, email FROM customers WHERE id = 1")
        again = await decide_sql(stub, sid, "SELECT id, email FROM customers WHERE id = 2")
        assert first.verdict == again.verdict == pdp_pb2.MASK
        assert [m.field for m in first.mask] == [m.field for m in again.mask]
        assert first.decision_id != again.decision_id
        other = (await open_session(stub, tok)).session_id
        elsewhere = await decide_sql(stub, other, "SELECT id, email FROM customers WHERE id = 3")
        drops = [await decide_sql(stub, sid, "DROP TABLE customers") for _ in range(2)]
        assert all(d.verdict == pdp_pb2.DENY for d in drops)

        records = {r.id: r.body for r in await app.store.query(kind="decision")}
        assert "evaluation_reused_from" not in records[first.decision_id]
        assert records[again.decision_id]["evaluation_reused_from"] == first.decision_id
        assert records[again.decision_id]["raw"].endswith("id = 2")
        assert records[again.decision_id]["kind"] == "postgres.query"
        assert records[first.decision_id]["statements"][0]["tables"] == ["customers"]
        assert "evaluation_reused_from" not in records[elsewhere.decision_id]
        assert all("evaluation_reused_from" not in records[d.decision_id] for d in drops)
        assert app.decider.stats.evaluations_reused == 1
        assert (await app.store.verify()).ok


async def test_pdp_reuse_can_be_turned_off(tmp_path):
    config = pdp_config(tmp_path)
    config = dataclasses.replace(
        config, pdp=dataclasses.replace(config.pdp, reuse_evaluations=False)
    )
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        sid = (await open_session(stub, token(config))).session_id
        for _ in range(3):
            await decide_sql(stub, sid, "SELECT id FROM orders")
        records = await app.store.query(kind="decision")
        assert len(records) == 3
        assert all("evaluation_reused_from" not in r.body for r in records)
        assert app.decider.stats.evaluations_reused == 0


def test_reuse_keys_tell_apart_what_the_policy_sees_besides_the_text():
    assert reuse_key("postgres.query", None) == reuse_key("postgres.query", {}) == "postgres.query"
    simple = reuse_key("postgres.query", {"protocol": "simple"})
    assert simple != reuse_key("postgres.query", {"protocol": "extended"})
    assert simple != reuse_key("postgres.function_call", {"protocol": "simple"})
    both = reuse_key("http.request", {"method": "GET", "path": "/a"})
    assert both == reuse_key("http.request", {"path": "/a", "method": "GET"})
    nested = {"headers": {"x": ["1"]}, "method": "GET"}  # not hashable: keyed all the same
    assert reuse_key("http.request", nested) == reuse_key("http.request", dict(nested))
    assert reuse_key("http.request", nested) != reuse_key("http.request", {"headers": {}})
    keys = {reuse_key("k", {"v": value}) for value in (True, 1, 1.0, "1", "true")}
    assert len(keys) == 5  # never one for two values (1 and 1.0 apart costs a hit at most)


_leaf = st.one_of(st.text(max_size=4), st.integers(-2, 2), st.booleans(), st.floats(0, 2))
_value = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(st.dictionaries(st.text(max_size=4), _value, min_size=1, max_size=4))
def test_a_remembered_reuse_key_is_the_canonical_json_one(attributes) -> None:
    """The fast path (strings, and dicts and lists of them, remembered) files an answer
    exactly where the canonical JSON key does: 1, 1.0, True and "1" stay apart."""
    assert reuse_key("http.request", attributes) == _json_key("http.request", attributes)
