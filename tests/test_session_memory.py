"""What a closed session leaves behind in the PDP: nothing filed for reuse under it.

An evaluation filed for reuse belongs to one session (portcullis.reuse); once the session
closes no decision can ask for it again. These tests try to keep one alive: closing by the
proxy, by the reaper, a session another table entry shares a key with, and eviction and
expiry that must not leave the table's per-session index behind either.
"""

from __future__ import annotations

from pdp_harness import decide_sql, open_session, pdp_config, pdp_stub, running_pdp, token

from pdp.domain.sessions import SessionReaper
from portcullis.reuse import ReuseTable
from portcullis.shape import shape
from portcullis.v1 import pdp_pb2
from portcullis.verdict import Verdict, VerdictKind


def allow(ttl: int, key: str = "exact") -> Verdict:
    return Verdict(VerdictKind.ALLOW, cache_ttl_seconds=ttl, cache_key=key)


def test_forgetting_a_scope_drops_its_exact_and_shape_entries_only():
    table: ReuseTable[str] = ReuseTable()
    table.store("s1", "postgres.query", "SELECT 1", allow(60), "r", "exact", shape)
    table.store(
        "s1",
        "postgres.query",
        "SELECT * FROM t WHERE id = 1",
        allow(60, "shape"),
        "r",
        "shaped",
        shape,
    )
    table.store("s2", "postgres.query", "SELECT 1", allow(60), "r", "other", shape)
    assert table.forget("s1") == 2
    assert table.lookup("s1", "postgres.query", "SELECT 1", "r", shape) is None
    assert table.lookup("s1", "postgres.query", "SELECT * FROM t WHERE id = 2", "r", shape) is None
    assert table.lookup("s2", "postgres.query", "SELECT 1", "r", shape) == "other"
    assert len(table) == 1
    assert table.forget("s1") == 0
    assert table.forget("never-seen") == 0


def test_a_key_filed_in_both_tables_is_forgotten_from_both():
    # a text without literals is its own shape: the same key in the exact and shape tables
    table: ReuseTable[str] = ReuseTable()
    table.store("s", "postgres.query", "SELECT a FROM t", allow(60), "r", "exact", shape)
    table.store("s", "postgres.query", "SELECT a FROM t", allow(60, "shape"), "r", "shape", shape)
    table.forget("s")
    assert len(table) == 0
    assert table.lookup("s", "postgres.query", "SELECT a FROM t", "r", shape) is None


def test_evicted_and_expired_entries_leave_no_index_behind():
    now = [0.0]
    table: ReuseTable[str] = ReuseTable(max_entries=4, clock=lambda: now[0])
    for n in range(100):  # a session each, one entry each: all but the last 4 evicted
        table.store(f"s{n}", "postgres.query", "SELECT 1", allow(10), "r", "v", shape)
    assert len(table) == 4
    assert set(table._scopes) == {"s96", "s97", "s98", "s99"}
    now[0] = 11.0  # expired: dropped when looked up
    for n in range(96, 100):
        assert table.lookup(f"s{n}", "postgres.query", "SELECT 1", "r", shape) is None
    assert len(table) == 0
    assert table._scopes == {}
    table.store("s", "postgres.query", "SELECT 1", allow(10), "r", "v", shape)
    table.clear()
    assert table._scopes == {}


async def test_closing_a_session_drops_its_reuse_entries_and_no_other(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        tok = token(config, "alice@example.com", ("readonly",))
        closing = (await open_session(stub, tok)).session_id
        staying = (await open_session(stub, tok)).session_id
        for sid in (closing, staying):
            for n in (1, 2):
                decided = await decide_sql(stub, sid, f"SELECT id FROM orders WHERE id = {n}")
                assert decided.verdict in (pdp_pb2.ALLOW, pdp_pb2.MASK)
            await decide_sql(stub, sid, "SELECT 1")
        table = app.decider.evaluations
        assert table is not None
        assert set(table._scopes) == {closing, staying}
        held = len(table)
        await stub.CloseSession(pdp_pb2.CloseSessionRequest(session_id=closing, reason="done"))
        assert closing not in table._scopes
        assert len(table) == held // 2
        assert all(key[0] == staying for key in (*table._exact, *table._shape))
        # the session that stays open still reuses its evaluations
        reused = app.decider.stats.evaluations_reused
        await decide_sql(stub, staying, "SELECT id FROM orders WHERE id = 3")
        assert app.decider.stats.evaluations_reused == reused + 1


async def test_a_session_the_reaper_closes_drops_its_reuse_entries(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        tok = token(config, "bob@example.com", ("readonly",))
        sid = (await open_session(stub, tok)).session_id
        await decide_sql(stub, sid, "SELECT id FROM orders WHERE id = 1")
        table = app.decider.evaluations
        assert table is not None and sid in table._scopes
        session = await app.sessions.find(sid)
        assert session is not None
        await SessionReaper(app.sessions, 1).reap(session)
        assert sid not in table._scopes
        assert len(table) == 0


# -- what an idle or closed session holds in the proxy (issue 27) ------------------------
# Idle sessions share what is the same for all of them; these try to make one session's use
# of the shared state reach another's.


def test_a_secret_one_session_exposed_is_still_watched_for_in_the_next():
    from proxies.runtime.secrets_scan import SecretScanner

    secret = "s3cret-password-of-the-pool"
    first, second = SecretScanner([secret]), SecretScanner([secret])
    assert first.feed(b"... " + secret.encode() + b" ...")
    assert first.findings == ["raw"]
    # the forms are shared by the two sessions of one credential: finding one in the first
    # must not take it from the second (nor from a third made after)
    assert not second.exposed
    assert second.feed(secret.encode().hex().encode())
    assert second.findings == ["hex"]
    assert SecretScanner([secret]).feed(secret.encode())


def test_a_credential_s_forms_leave_proxy_memory_with_its_last_session():
    import gc

    from proxies.runtime import secrets_scan

    secret = b"lease-password-of-a-session-long-gone"
    one, two = secrets_scan.SecretScanner([secret]), secrets_scan.SecretScanner([secret])
    assert len(secrets_scan._PLANS) >= 1
    # the table's keys are keyed digests, never the credential or one of its forms
    assert all(
        secret not in key and secret.hex().encode() not in key for key in secrets_scan._PLANS
    )
    del one
    gc.collect()
    assert two.feed(secret)  # the plan lives while a session of the credential does
    del two
    gc.collect()
    assert not any(secret in plan.forms for plan in secrets_scan._PLANS.values())


def test_an_idle_tracker_holds_the_shared_empty_queue_and_never_adds_to_it():
    import pytest

    from proxies.postgres import codec
    from proxies.postgres.tracker import Expect, ResponseTracker

    one, two = ResponseTracker(), ResponseTracker()
    assert one.idle and one.queue is two.queue  # nothing owed: one queue for the process
    with pytest.raises(RuntimeError):
        one.queue.append(Expect("Query"))
    one.expect(Expect("Query"))
    assert not one.idle and one.queue is not two.queue and two.idle and not two.queue
    one.on_backend(codec.ready_for_query("I"))
    assert one.queue is two.queue and one.idle  # its own queue went back once idle
    assert two.synthetic(lambda status: status.encode()) == b"I"  # nothing owed: at once
