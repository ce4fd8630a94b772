"""PDP probe 31 (helper auditsec6): a proxy's attributes have a bound of their own.

Attack (a holder of a proxy's credential and of one of its sessions' keys, or a proxy bug
that puts a client's bytes into attributes): a Decide's `command.attributes` were taken
up to the 4 MiB gRPC message limit and written whole into the decision's record, with
every decision: megabytes of evidence per statement, whereas the command text beside
them is bounded (1 MiB, else denied and recorded by its first bytes and its digest). An
OpenSession's attributes were evaluated whatever their size. Now command attributes past
MAX_ATTRIBUTES_BYTES are denied like an oversized command (the record holds their size
and SHA-256, not them), and session attributes past MAX_SESSION_ATTRIBUTES_BYTES are
refused (INVALID_ARGUMENT, naming the field and the bound).

Real PDP (tests/pdp_harness.py, embedded OPA, SQLite store), called as a proxy calls it.
"""

from __future__ import annotations

import hashlib

import grpc
import pytest
from google.protobuf import struct_pb2
from pdp_harness import connection, open_session, pdp_config, pdp_stub, running_pdp, token

from pdp.api.service import MAX_ATTRIBUTES_BYTES, MAX_SESSION_ATTRIBUTES_BYTES
from portcullis.v1 import pdp_pb2


def _attributes(size: int) -> struct_pb2.Struct:
    """Attributes of about `size` bytes on the wire, as a proxy might send them."""
    attributes = struct_pb2.Struct()
    attributes.update({"protocol": "simple", "view_columns": {"v": "x" * size}})
    return attributes


async def test_command_attributes_past_their_bound_are_denied_and_not_recorded(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        sid = (await open_session(stub, token(config))).session_id
        big = _attributes(MAX_ATTRIBUTES_BYTES + 1024)
        command = pdp_pb2.Command(kind="postgres.query", raw="SELECT 1", attributes=big)
        answer = await stub.Decide(pdp_pb2.DecideRequest(session_id=sid, command=command))
        assert answer.decision.verdict == pdp_pb2.DENY
        assert "attributes" in " ".join(answer.decision.reasons)

        # the same statement with attributes of a usual size is decided as ever
        usual = pdp_pb2.Command(kind="postgres.query", raw="SELECT 1", attributes=_attributes(64))
        answer = await stub.Decide(pdp_pb2.DecideRequest(session_id=sid, command=usual))
        assert answer.decision.verdict != pdp_pb2.DENY, answer.decision.reasons

        records = [r.body for r in await app.store.query(kind="decision") if r.body.get("raw")]
        refused, decided = records[0], records[1]
        assert "attributes" not in refused
        wire = big.SerializeToString(deterministic=True)
        assert refused["attributes_bytes"] == len(wire)
        assert refused["attributes_sha256"] == hashlib.sha256(wire).hexdigest()
        assert refused["verdict"] == "deny"
        assert decided["attributes"]["view_columns"] == {"v": "x" * 64}


async def test_session_attributes_past_their_bound_are_refused(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        request = pdp_pb2.OpenSessionRequest(
            token=token(config),
            connection=connection(),
            client_addr="127.0.0.1:50000",
            client="pytest",
            attributes=_attributes(MAX_SESSION_ATTRIBUTES_BYTES + 1024),
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.OpenSession(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "attributes" in (err.value.details() or "")
        assert not [r for r in await app.store.query(kind="session.open")]

        # a start-up's usual attributes open as ever
        request.attributes.CopyFrom(_attributes(256))
        assert (await stub.OpenSession(request)).session_id
