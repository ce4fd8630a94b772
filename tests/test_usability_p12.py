"""A newcomer's walk through README (round 11), Postgres approvals: a client that leaves
while its statement waits for a person (psql killed, a laptop closed) leaves no request an
approver can still grant. README: "A request whose session its proxy closed can no longer
be approved". The proxy held the client's socket unread during the wait, so it saw the
client go only once the wait ended: the request stayed pending, an approval granted then
ran the UPDATE upstream for nobody, and the session's timeline showed no command (found by
`timeout 5 psql -c "UPDATE customers ..."` against `portcullis up`, then `approvals
approve`: the row changed, `replay` said `0 commands`)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from adversary import RawClient, query
from pg_harness import running_gateway
from pg_probe_stack import SAM, pending_approval

pytestmark = pytest.mark.integration


def _left(client: RawClient) -> None:
    """The client goes without a word, as a killed psql does (no Terminate)."""
    client.sock.shutdown(socket.SHUT_RDWR)
    client.sock.close()


@pytest.mark.parametrize("leaving", ["closed", "reset"])
async def test_a_client_that_left_during_the_wait_leaves_nothing_to_approve(
    tmp_path, leaving: str
) -> None:
    async with running_gateway(tmp_path, approvals={"timeout_seconds": 60}) as gw:
        tok = gw.token("p12-leaver@example.com", ("readonly",))
        client = await asyncio.to_thread(RawClient, gw.proxy.port, tok, gw.database)
        assert client.ready
        client.sock.sendall(query("UPDATE orders SET total = 7 WHERE id = 10"))
        asked = await pending_approval(gw, set())
        if leaving == "reset":
            # RST instead of FIN
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            client.sock.close()
        else:
            _left(client)
        request = gw.pdp.approvals.requests[asked]
        for _ in range(300):  # the proxy sees the client go while the request is pending
            if request.state != "pending":
                break
            await asyncio.sleep(0.1)
        assert request.state == "withdrawn", request.state
        with pytest.raises(Exception):  # noqa: B017 (whichever refusal the book gives)
            await gw.pdp.approvals.decide(asked, SAM, True, "p12: too late")
        with gw.admin() as admin:
            total = admin.execute("SELECT total FROM orders WHERE id = 10").fetchone()[0]
        assert float(total) != 7.0


async def test_a_client_still_there_is_still_waited_for(tmp_path) -> None:
    """The watch reads nothing: a client that waits gets its approved statement run."""
    async with running_gateway(tmp_path, approvals={"timeout_seconds": 60}) as gw:
        tok = gw.token("p12-waiter@example.com", ("readonly",))
        client = await asyncio.to_thread(RawClient, gw.proxy.port, tok, gw.database)
        try:
            assert client.ready
            ran = asyncio.ensure_future(
                asyncio.to_thread(client.query, "UPDATE orders SET total = 8 WHERE id = 10")
            )
            asked = await pending_approval(gw, set())
            await asyncio.sleep(1.5)  # a few looks at the socket while it waits
            await gw.pdp.approvals.decide(asked, SAM, True, "p12: run it")
            done = await asyncio.wait_for(ran, 60)
            assert not done.errors and done.tags == ["UPDATE 1"], done.messages
        finally:
            client.close()
