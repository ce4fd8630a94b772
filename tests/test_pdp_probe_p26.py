"""PDP probe 26 (helper auditsec3): what a proxy's credential may put in a session's record.

Attack (a thief holding one proxy's credential, or a proxy gone wrong): OpenSession's
`client_addr` was kept as sent, with no bound: a session.open whose address was megabytes
long was hashed into the chain, and held in the PDP's memory while the session lived
(the client name beside it was cut to 256 characters; the address, taken from the
proxy's own socket peer, was not). The PDP now refuses an address longer than 256
characters (INVALID_ARGUMENT), before any evaluation or record; an ordinary host:port,
IPv6 included, opens as before.

Real PDP (tests/pdp_harness.py, embedded OPA, SQLite store).
"""

from __future__ import annotations

import grpc
import pytest
from pdp_harness import connection, pdp_config, pdp_stub, running_pdp, token

from portcullis.v1 import pdp_pb2


def _request(config, client_addr: str) -> pdp_pb2.OpenSessionRequest:
    return pdp_pb2.OpenSessionRequest(
        token=token(config), connection=connection(), client_addr=client_addr, client="probe"
    )


@pytest.mark.parametrize("size", [257, 1_000_000])
async def test_an_address_longer_than_an_address_is_refused(tmp_path, size):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.OpenSession(_request(config, "10.0.0.1:5" + "0" * (size - 10)))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "client_addr: longer than 256" in (refused.value.details() or "")
        assert await pdp.store.query(kind="session.open") == []


async def test_ordinary_addresses_open_as_before(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        for addr in ("127.0.0.1:50000", "[2001:db8::1]:443", "fe80::1%eth0:22", ""):
            opened = await stub.OpenSession(_request(config, addr))
            assert opened.session_id, addr
        opens = await pdp.store.query(kind="session.open")
        assert [r.body["session"]["client_addr"] for r in opens][:2] == [
            "127.0.0.1:50000",
            "[2001:db8::1]:443",
        ]
