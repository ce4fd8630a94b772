"""PDP probe 27 (helper auditsec4): the free-form fields a proxy's credential may fill.

Attack (a thief holding one proxy's credential, or a proxy gone wrong): CloseSession's
`summary` had no bound but gRPC's 4 MiB message limit. It was recorded whole in the
session.close record and signed into the session's credential statement: one call put
megabytes into the hash chain (and into every export and verify), twice over. Likewise an
OpenSession naming a connection the PDP does not know had its `zone` and `labels` recorded
as sent in the session.open record and held in memory while the session lived. Each is
now bounded (the summary's wire size at 8 KiB, a zone at 256 characters, at most 64
labels of 256), refused INVALID_ARGUMENT before anything is recorded; what real proxies
send (their counters, the credential reference, the last batch number) closes as before.

Real PDP (tests/pdp_harness.py, embedded OPA, SQLite store, signing key).
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import struct_pb2
from pdp_harness import open_session, pdp_config, pdp_stub, running_pdp, token

from pdp.evidence.checkpoints import STATEMENT_KIND
from portcullis.v1 import pdp_pb2


def _summary(values: dict) -> struct_pb2.Struct:
    summary = struct_pb2.Struct()
    summary.update(values)
    return summary


# what proxies/runtime/session.py sends: its counters, the credential's reference, batches
REAL = {
    "commands": 12, "cache_hits": 3, "decisions": 9, "denied": 1, "masked_values": 4,
    "approval_waits": 0, "bytes_to_client": 18234, "credential_exposed": 0,
    "egress_rows": 40, "egress_bytes": 9000, "batches": 7,
    "credential_ref": "vault:database/creds/readonly/" + "x" * 64,
}  # fmt: skip


@pytest.mark.parametrize(
    "summary",
    [
        {"commands": 1, "note": "x" * 3_000_000},  # one string
        {f"k{n}": n for n in range(20_000)},  # many keys
        {"nested": {"list": ["y" * 100] * 1000}},  # deep
    ],
    ids=["string", "keys", "nested"],
)
async def test_an_oversized_close_summary_is_refused_before_any_record(tmp_path, summary):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, token(config))
        request = pdp_pb2.CloseSessionRequest(
            session_id=opened.session_id, reason="client_disconnect", summary=_summary(summary)
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CloseSession(request)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "summary: larger than 8192 bytes" in (refused.value.details() or "")
        assert await pdp.store.query(kind="session.close") == []
        assert await pdp.store.query(kind=STATEMENT_KIND) == []
        # the session is still open: its proxy's ordinary close is taken
        closed = await stub.CloseSession(
            pdp_pb2.CloseSessionRequest(
                session_id=opened.session_id, reason="client_disconnect", summary=_summary(REAL)
            )
        )
        assert closed.decision_id
        (record,) = await pdp.store.query(kind="session.close")
    assert record.body["summary"]["credential_ref"] == REAL["credential_ref"]
    assert record.body["summary"]["commands"] == 12


async def test_a_real_proxy_s_summary_is_recorded_and_signed(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        opened = await open_session(stub, token(config))
        await stub.CloseSession(
            pdp_pb2.CloseSessionRequest(session_id=opened.session_id, summary=_summary(REAL))
        )
        (record,) = await pdp.store.query(kind="session.close")
        statements = await pdp.store.query(kind=STATEMENT_KIND)
    assert record.body["summary"]["batches"] == 7
    assert len(statements) == 1


def _open(config, zone: str = "eu-prod", labels: dict | None = None):
    return pdp_pb2.OpenSessionRequest(
        token=token(config),
        connection=pdp_pb2.Connection(
            name="unknown-db", type="postgres", zone=zone, labels=labels or {}
        ),
        client_addr="127.0.0.1:50000",
        client="probe",
    )


# (made in the test: a parameter's value is in the test's id, which reaches the
# environment of the engine's worker processes)
OVERSIZED = {
    "zone-257": lambda: ("z" * 257, {}, "connection.zone"),
    "zone-2M": lambda: ("z" * 2_000_000, {}, "connection.zone"),
    "label-value": lambda: ("eu", {"team": "v" * 257}, "connection.labels"),
    "label-key": lambda: ("eu", {"k" * 257: "v"}, "connection.labels"),
    "labels-65": lambda: ("eu", {f"l{n}": "v" for n in range(65)}, "connection.labels"),
    "labels-1M": lambda: ("eu", {"big": "v" * 1_000_000}, "connection.labels"),
}


@pytest.mark.parametrize("case", sorted(OVERSIZED))
async def test_an_unknown_connection_s_names_are_bounded(tmp_path, case):
    zone, labels, field = OVERSIZED[case]()
    config = pdp_config(tmp_path)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.OpenSession(_open(config, zone, labels))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (refused.value.details() or "").startswith(field)
        assert await pdp.store.query(kind="session.open") == []
        # ordinary ones open as before
        fine = {f"l{n}": "v" * 256 for n in range(64)}
        opened = await stub.OpenSession(_open(config, "z" * 256, fine))
        (record,) = await pdp.store.query(kind="session.open")
    assert record.body["session"]["connection"]["labels"] == fine
    assert opened.decision.verdict in (pdp_pb2.ALLOW, pdp_pb2.DENY, pdp_pb2.MASK)
