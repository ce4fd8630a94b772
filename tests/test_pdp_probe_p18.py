"""PDP probe 18 (helper evidence7): what verify says of an approved portal executed again.

A reader's write needs approval at its Bind (the values it binds): the PDP decides that
Bind, for one run. The client then sends Execute twice on the portal of that Bind. The
server runs the statement once: a write's portal once run cannot be run again ('portal
"" cannot be run'); a query's is at its end and answers no row. What does the recording
say, and does `audit verify` tell the truth about it?

The write's second Execute is recorded with the server's error and no tag: no run, and
verify says none (the table changed once). A query's (or a write's with RETURNING) second
Execute is recorded as a statement answering no row, 'SELECT 0': verify took it for
another run of a decision made for one and disputed it. It is counted apart now, as an
Execute again of the portal; one answering rows under that decision is still disputed.
"""

from __future__ import annotations

import asyncio
import json
import time

from adversary import RawClient, parse
from google.protobuf.struct_pb2 import Struct
from pdp_harness import open_session, pdp_stub, running_pdp, token
from pg_harness import running_gateway
from pg_probe_stack import SAM, pending_approval
from test_evidence_probe_p1 import _verified
from test_pdp_probe_p7 import _written

from pdp.domain.recordings import EVENTS_KIND, batch_events
from pdp.evidence.checkpoints import verify_store
from portcullis.config import load_config
from portcullis.v1 import pdp_pb2
from proxies.postgres import codec


def _bind_twice(statement: str, value: bytes) -> bytes:
    return (
        codec.Bind("", statement, [0], [value], [0]).encode()
        + codec.Execute("", 0).encode()
        + codec.Execute("", 0).encode()
        + codec.Sync().encode()
    )


async def test_an_approved_writes_portal_executed_again_runs_once(tmp_path) -> None:
    async with running_gateway(tmp_path, approvals={"timeout_seconds": 30}) as gw:
        tok = gw.token("p18-writer@example.com", ("readonly",))
        c = await asyncio.to_thread(RawClient, gw.proxy.port, tok, gw.database)
        try:
            assert c.ready
            sql = "UPDATE orders SET total = total + 1 WHERE id = $1"
            first = asyncio.ensure_future(
                asyncio.to_thread(c.send, parse("w", sql), _bind_twice("w", b"10"))
            )
            asked = await pending_approval(gw, set())
            await gw.pdp.approvals.decide(asked, SAM, True, "p18: run it")
            done = await asyncio.wait_for(first, 30)
            assert done.tags == ["UPDATE 1"] and len(done.errors) == 1, done.messages
        finally:
            c.close()
        with gw.admin() as admin:
            total = admin.execute("SELECT total FROM orders WHERE id = 10").fetchone()[0]
        assert float(total) == 99.5  # (98.5 before: run once)
        for _ in range(100):  # the recorder's last flush
            runs = [
                e
                for r in await gw.pdp.store.query(kind=EVENTS_KIND)
                for e in batch_events(r.body)
                if e.get("command") == sql
            ]
            if len(runs) == 2:
                break
            await asyncio.sleep(0.1)
        assert [(e["details"]["tag"], e["details"].get("error")) for e in runs] == [
            ("UPDATE 1", None),
            ("", "55000"),
        ], runs
        report = await verify_store(gw.pdp.store, gw.pdp.signer.public_key)
    assert report.ok, report.problems
    assert report.counted.verdicts.startswith("every command recorded as let through names")


async def _bind_decided(stub, session_id: str, sql: str) -> pdp_pb2.Decision:
    """A Decide as the Postgres proxy asks at a Bind (extended protocol, for its values)."""
    attributes = Struct()
    attributes.update({"protocol": "extended", "parameters": ["1"]})
    response = await stub.Decide(
        pdp_pb2.DecideRequest(
            session_id=session_id,
            command=pdp_pb2.Command(kind="postgres.query", raw=sql, attributes=attributes),
        )
    )
    return response.decision


def _run(when: float, sql: str, decision_id: str, tag: str, rows: int) -> dict:
    return {"time": when, "direction": "client", "type": "command", "command": sql,
            "decision_id": decision_id, "verdict": "allow", "cached": False,
            "details": {"tag": tag, "rows": rows, "protocol": "extended",
                        "prepared": "s1"}}  # fmt: skip


async def test_a_portal_executed_again_answering_no_row_is_not_a_run(tmp_path) -> None:
    """A query decided at its Bind, its portal executed again: 'SELECT 0', counted apart,
    not disputed. Rows under that decision again are another run: disputed."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    sql = "SELECT id FROM orders WHERE id = $1"
    now = time.time()
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config, groups=("dba", "pii-readers")))
        decided = await _bind_decided(stub, opened.session_id, sql)
        assert decided.verdict == pdp_pb2.ALLOW, decided
        runs = [
            _run(now + 0.1, sql, decided.decision_id, "SELECT 1", 1),
            _run(now + 0.2, sql, decided.decision_id, "SELECT 0", 0),
        ]
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(session_id=opened.session_id, events_json=json.dumps(runs))
        )
        again = await _bind_decided(stub, opened.session_id, sql)
        forged = [
            _run(now + 0.3, sql, again.decision_id, "SELECT 1", 1),
            _run(now + 0.4, sql, again.decision_id, "SELECT 1", 1),
        ]
        await stub.RecordEvents(
            pdp_pb2.RecordEventsRequest(
                session_id=opened.session_id, events_json=json.dumps(forged)
            )
        )
    for said in await _verified(config_path, tmp_path / "evidence.tar.gz"):
        assert "proxy verdicts: 1 commands recorded as let through" in said, said
        assert "1 Executes again of a portal its Bind's decision ran answered no row" in said
