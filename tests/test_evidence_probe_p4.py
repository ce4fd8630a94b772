"""Evidence probe 4 (helper evidence7): a session's recorded batches are numbered.

A proxy's batch that was lost, sent twice or reordered between it and the PDP (a retry
after a timeout whose first send was stored; a proxy restarted with its spool) left no
trace: the PDP stored a retried batch twice (replay showed each command run twice, and
verify took one for another run of its decision, or for nothing), and a batch that never
arrived was not missed by anything. Each batch now carries its number in its session
(RecordEventsRequest.batch_seq), stored with it: the PDP stores a number once and answers
a retry as taken (`replayed`), and `audit verify` names the numbers missing, late and
stored twice.
"""

from __future__ import annotations

import asyncio
import json
import time

from google.protobuf.struct_pb2 import Struct
from pdp_harness import (
    decide_sql,
    free_port,
    hand_over_keys,
    open_session,
    pdp_stub,
    proxy_metadata,
    running_pdp,
    token,
)
from test_evidence_probe_p1 import _verified
from test_pdp_probe_p7 import _written
from test_pdp_probe_p11 import _timeline_of

from pdp.domain.recordings import EVENTS_KIND
from portcullis.config import load_config
from portcullis.v1 import pdp_pb2
from portcullis.verdict import Verdict, VerdictKind
from proxies.runtime.pdp_client import PDPClient, Ruling
from proxies.runtime.recorder import SessionRecorder
from proxies.runtime.spool import STORED, Spool


def _events(decision: pdp_pb2.Decision, sql: str, when: float) -> str:
    return json.dumps(
        [
            {"time": when, "direction": "client", "type": "command", "command": sql,
             "decision_id": decision.decision_id, "verdict": "allow", "cached": False,
             "details": {"tag": "SELECT 1", "rows": 1, "protocol": "simple"}},
        ]
    )  # fmt: skip


def _batch(session_id: str, events: str, number: int) -> pdp_pb2.RecordEventsRequest:
    return pdp_pb2.RecordEventsRequest(session_id=session_id, events_json=events, batch_seq=number)


def _close(session_id: str, batches: int) -> pdp_pb2.CloseSessionRequest:
    summary = Struct()
    summary.update({"commands": batches, "batches": batches})
    return pdp_pb2.CloseSessionRequest(session_id=session_id, summary=summary)


async def _session(stub, config, sql: str = "SELECT id FROM orders WHERE id = 1"):
    opened = await open_session(stub, token(config, groups=("dba", "pii-readers")))
    decided = await decide_sql(stub, opened.session_id, sql)
    assert decided.verdict == pdp_pb2.ALLOW, decided
    return opened.session_id, decided


async def test_a_batch_sent_again_is_recorded_once(tmp_path):
    """Attack on the evidence (a network that drops the PDP's answer): the proxy's send
    times out after the PDP stored the batch, so the proxy sends it again (RecordEvents,
    RecordBatches, the spool's delivery, or both at once). It was stored twice: replay
    showed the statement run twice. Now taken once, the retries answered `replayed`."""
    config = load_config(_written(tmp_path))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        sid, decided = await _session(stub, config)
        events = _events(decided, "SELECT id FROM orders WHERE id = 1", time.time())
        first = await stub.RecordEvents(_batch(sid, events, 1))
        assert not first.replayed and first.decision_id
        again = await stub.RecordEvents(_batch(sid, events, 1))
        assert again.replayed and again.recorded == 1, again
        answered = await stub.RecordBatches(
            pdp_pb2.RecordBatchesRequest(batches=[_batch(sid, events, 1)])
        )
        assert answered.results[0].replayed and not answered.results[0].error
        # two sends of a new number at once (a retry while the first is being stored)
        both = await asyncio.gather(
            stub.RecordEvents(_batch(sid, events.replace("= 1", "= 2"), 2)),
            stub.RecordEvents(_batch(sid, events.replace("= 1", "= 2"), 2)),
        )
        assert sorted(r.replayed for r in both) == [False, True], both
        records = await app.store.query(kind=EVENTS_KIND, session_id=sid)
        assert [r.body.get("batch_seq") for r in records] == [1, 2]


async def test_a_batch_sent_again_after_a_pdp_restart_is_recorded_once(tmp_path):
    """The PDP restarted between the first send and the retry: the numbers stored are
    read from the store for a session found again."""
    config = load_config(_written(tmp_path))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        sid, decided = await _session(stub, config)
        events = _events(decided, "SELECT id FROM orders WHERE id = 1", time.time())
        await stub.RecordEvents(_batch(sid, events, 1))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        again = await stub.RecordEvents(_batch(sid, events, 1))
        assert again.replayed, again
        records = await app.store.query(kind=EVENTS_KIND, session_id=sid)
        assert len(records) == 1


async def test_verify_names_batches_missing_late_and_recorded_twice(tmp_path):
    """A proxy's batches 1, 3, 2, 5 stored, and 7 made (its close's summary says so):
    verify names 4 and 6..7 missing (lost between proxy and PDP, or deleted from its
    spool), and 2 late. A genuine session (1, 2 in
    order) is named nowhere."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        sid, decided = await _session(stub, config)
        now = time.time()
        for n in (1, 3, 2, 5):
            sql = f"SELECT id FROM orders WHERE id = {n}"
            await stub.RecordEvents(_batch(sid, _events(decided, sql, now + n / 10), n))
        await stub.CloseSession(_close(sid, 7))
        timeline = await _timeline_of(app.store, sid)
        assert timeline.header["batches"].startswith("batches 4, 6..7 of this recording are not")
        fine, decided = await _session(stub, config)
        for n in (1, 2):
            sql = f"SELECT id FROM orders WHERE id = {n}"
            await stub.RecordEvents(_batch(fine, _events(decided, sql, now + n / 10), n))
        await stub.CloseSession(_close(fine, 2))
    for said in await _verified(config_path, tmp_path / "evidence.tar.gz"):
        line = next(x for x in said.splitlines() if "batch numbers:" in x)
        assert f"session {sid}: batches 4, 6..7 missing" in line, line
        assert "3 batches of 1 session are not in the records read (never stored" in line, line
        assert "1 batch arrived after a later one" in line, line
        assert fine not in line, line


async def test_verify_reads_a_batch_stored_twice_once_and_names_a_forked_number(tmp_path):
    """A batch stored twice (a replica that had not seen the first, a PDP before the
    numbers): its events are read once, not as a second run of their decision. Another
    batch under a number already stored (a compromised proxy's, or an edit) is named, and
    its events weighed: here a second run of a simple Query's decision, made for one."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        sid, decided = await _session(stub, config)
        now = time.time()
        events = _events(decided, "SELECT id FROM orders WHERE id = 1", now)
        await stub.RecordEvents(_batch(sid, events, 1))
        stored = (await app.store.query(kind=EVENTS_KIND, session_id=sid))[0]
        await app.store.append(EVENTS_KIND, dict(stored.body), session_id=sid)
        timeline = await _timeline_of(app.store, sid)  # replay shows it once, and says so
        assert len([e for e in timeline.entries if e.type == "command"]) == 1
        assert timeline.header["batches"] == "1 batches stored twice are shown once"
    for said in await _verified(config_path, tmp_path / "evidence.tar.gz"):
        assert "1 batch stored again with the same events (one delivery recorded twice" in said
        assert "every command recorded as let through names a decision" in said, said
        assert "held by two different batches" not in said
    async with running_pdp(config) as app:
        forked = dict(stored.body)
        forked["events_json"] = _events(decided, "SELECT id FROM orders WHERE id = 1", now + 1)
        await app.store.append(EVENTS_KIND, forked, session_id=sid)
    for said in await _verified(config_path, tmp_path / "evidence2.tar.gz"):
        assert "1 batch number held by two different batches" in said, said
        assert "allow again under a decision the PDP made for one run" in said, said


async def test_a_second_run_at_the_first_ones_time_in_a_numbered_batch_is_disputed(tmp_path):
    """Attack (the session's proxy, compromised): run a statement allowed for one run
    twice and record the second at the first's very time, in a later batch, so verify
    took it for the first delivered again. A numbered batch is not a delivery twice (its
    number would say so): the run is disputed."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        sid, decided = await _session(stub, config)
        events = _events(decided, "SELECT id FROM orders WHERE id = 1", time.time())
        await stub.RecordEvents(_batch(sid, events, 1))
        await stub.RecordEvents(_batch(sid, events, 2))
    for said in await _verified(config_path, tmp_path / "evidence.tar.gz"):
        assert "proxy verdicts: 1 commands recorded as let through" in said, said
        assert "allow again under a decision the PDP made for one run" in said, said


async def test_a_proxys_batches_keep_their_numbers_through_its_spool(tmp_path):
    """The proxy's side: each batch is numbered when made; one the PDP could not take is
    spooled with its number (the next queue behind it, numbered on), a proxy restarted
    adopts them with their numbers, and their delivery is stored once each however often
    it is sent. A real PDP, the proxy's PDP client and a spool file."""
    config = load_config(_written(tmp_path))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        sid, decided = await _session(stub, config)
        ruling = Ruling(Verdict(VerdictKind.ALLOW), decision_id=decided.decision_id)
        client = hand_over_keys(PDPClient(app.address, metadata=proxy_metadata(app.address)))
        await client.start()
        spool = Spool(tmp_path / "spool", "orders-db")
        spool.open()
        recorder = SessionRecorder(client, sid, spool=spool)
        try:
            recorder.command("SELECT id FROM orders WHERE id = 1", ruling, rows=1)
            assert await recorder.flush()  # delivered: number 1
            recorder.pdp = PDPClient(f"127.0.0.1:{free_port()}", timeout=0.5)
            await recorder.pdp.start()
            recorder.command("SELECT id FROM orders WHERE id = 2", ruling, rows=2)
            assert await recorder.flush()  # unreachable: spooled as number 2
            recorder.command("SELECT id FROM orders WHERE id = 3", ruling, rows=3)
            assert await recorder.flush()  # queued behind it: number 3
            assert [e.seq for e in spool.entries] == [2, 3]
        finally:
            await recorder.pdp.close()
            recorder.pdp = client
            spool.close()  # (the proxy stops with its spool undelivered)
        adopted = Spool(tmp_path / "spool", "orders-db")
        adopted.open()
        try:
            assert [e.seq for e in adopted.entries] == [2, 3]
            for _ in range(2):  # delivered, then the same entries again (a retry)
                for entry in adopted.entries:
                    request = pdp_pb2.RecordEventsRequest(
                        session_id=entry.session_id, events_json=entry.events, batch_seq=entry.seq
                    )
                    assert await client.deliver(entry.session_id, request) == STORED
        finally:
            adopted.close()
            await client.close()
        records = await app.store.query(kind=EVENTS_KIND, session_id=sid)
        # (batch 1 went by the recorder's own send: numbered on the wire once every path of
        # the proxy's client sends the number, /work/notes/evidence7-batch-seq.patch)
        assert [r.body.get("batch_seq") for r in records][1:] == [2, 3]


async def test_a_number_sent_first_by_another_holder_of_the_credential_drops_nothing(tmp_path):
    """Attack (a stolen proxy credential): send the session's next number first, with
    made-up events, so that the proxy's own batch of that number is taken for a retry
    and dropped. A number sent again with other events is stored, and verify names the
    number two batches hold; the same events again are still a retry."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        sid, decided = await _session(stub, config)
        now = time.time()
        genuine = _events(decided, "SELECT id FROM orders WHERE id = 1", now)
        await stub.RecordEvents(_batch(sid, genuine, 1))
        forged = _events(decided, "SELECT id FROM orders WHERE id = 1", now + 0.5)
        await stub.RecordEvents(_batch(sid, forged, 2))  # the thief's, first
        proxys = _events(decided, "SELECT id FROM orders WHERE id = 2", now + 0.6)
        answered = await stub.RecordEvents(_batch(sid, proxys, 2))
        assert not answered.replayed and answered.decision_id, answered
        again = await stub.RecordEvents(_batch(sid, proxys, 2))
        assert again.replayed, again
        records = await app.store.query(kind=EVENTS_KIND, session_id=sid)
        assert [r.body["events_json"] for r in records] == [genuine, forged, proxys]
    for said in await _verified(config_path, tmp_path / "evidence.tar.gz"):
        assert "1 batch number held by two different batches" in said, said


async def test_verify_names_batches_with_no_number_beside_numbered_ones(tmp_path):
    """Attack (a stolen proxy credential): add a batch with no number to a session whose
    proxy numbers its batches (an unnumbered batch is never taken for a retry, so it is
    stored): a proxy numbers every batch of its sessions or none, and verify says so."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        sid, decided = await _session(stub, config)
        now = time.time()
        await stub.RecordEvents(_batch(sid, _events(decided, "SELECT 1", now), 1))
        await stub.RecordEvents(_batch(sid, _events(decided, "SELECT 2", now + 0.1), 0))
    for said in await _verified(config_path, tmp_path / "evidence.tar.gz"):
        assert "1 batch with no number in sessions whose other batches have one" in said, said
