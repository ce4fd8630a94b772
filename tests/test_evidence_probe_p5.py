"""Evidence probe 5 (helper evidence7): the proxy's every path sends a batch's number.

The shared tick (RecordBatches), a session without a spool (record) and the spool's own
delivery carry each batch's number (RecordEventsRequest.batch_seq), and a session's close
says how many it made (summary.batches): the PDP stores each number once, and audit verify
names those that never reached it (tests/test_evidence_probe_p4.py).
"""

from __future__ import annotations

from pdp_harness import (
    hand_over_keys,
    open_session,
    pdp_stub,
    proxy_metadata,
    running_pdp,
    token,
)
from test_evidence_probe_p4 import _session
from test_pdp_probe_p7 import _written

from pdp.domain.recordings import EVENTS_KIND
from portcullis.config import load_config
from portcullis.verdict import Verdict, VerdictKind
from proxies.runtime.pdp_client import PDPClient, Ruling
from proxies.runtime.recorder import RecordingTick, SessionRecorder
from proxies.runtime.spool import Spool


async def test_the_tick_and_a_spoolless_session_number_their_batches(tmp_path):
    config = load_config(_written(tmp_path))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        sid, decided = await _session(stub, config)
        other = (await open_session(stub, token(config, groups=("dba", "pii-readers")))).session_id
        ruling = Ruling(Verdict(VerdictKind.ALLOW), decision_id=decided.decision_id)
        client = hand_over_keys(PDPClient(app.address, metadata=proxy_metadata(app.address)))
        await client.start()
        tick = RecordingTick(client)
        ticked = SessionRecorder(client, sid, tick=tick)
        tick.join(ticked)
        alone = SessionRecorder(client, other)
        try:
            for n in (1, 2):
                ticked.command(f"SELECT id FROM orders WHERE id = {n}", ruling, rows=n)
                await tick.flush()
                alone.command(f"SELECT id FROM orders WHERE id = {n}", ruling, rows=n)
                assert await alone.flush()
        finally:
            await tick.close()
            await client.close()
        for session_id in (sid, other):
            records = await app.store.query(kind=EVENTS_KIND, session_id=session_id)
            assert [r.body.get("batch_seq") for r in records] == [1, 2], session_id


async def test_a_sessions_own_send_numbers_its_batch(tmp_path):
    """A session with a spool sends a full batch (or its close's last) on its own."""
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
            for n in (1, 2):
                recorder.command(f"SELECT id FROM orders WHERE id = {n}", ruling, rows=n)
                assert await recorder.flush()
        finally:
            spool.close()
            await client.close()
        records = await app.store.query(kind=EVENTS_KIND, session_id=sid)
        assert [r.body.get("batch_seq") for r in records] == [1, 2]
