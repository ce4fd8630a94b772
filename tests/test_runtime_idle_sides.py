"""An idle session's relay holds no set of its own for "nothing holds this side" (issue 27:
10,000 idle Postgres sessions within 250 MiB; bench/postgres/bench_idle.py --trace showed
relay.py's two empty frozensets a session, 216 bytes each, and a new one at every
release). Every side of every relay shares one empty frozenset while it is read, whatever
holds came and went; holds themselves behave as before (reading paused while any holds,
resumed once none does).
"""

from __future__ import annotations

import asyncio

from proxies.runtime.relay import PEER_FULL, WAITING, Relay


class _Transport:
    def __init__(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


def _relays(n: int) -> list[Relay]:
    async def made() -> list[Relay]:
        return [Relay(lambda data: None, lambda data: None) for _ in range(n)]

    return asyncio.run(made())


def test_idle_sides_share_one_empty_set() -> None:
    relays = _relays(50)
    held = {id(side._held) for r in relays for side in (r._client, r._server)}
    assert len(held) == 1
    assert not relays[0]._client._held


def test_a_side_released_of_every_hold_shares_it_again() -> None:
    first, second = _relays(2)
    side, transport = first._client, _Transport()
    side.transport = transport  # type: ignore[assignment]
    side.hold(WAITING)
    side.hold(PEER_FULL)
    assert not transport.reading and side._held == {WAITING, PEER_FULL}
    side.release(WAITING)
    assert not transport.reading and side._held == {PEER_FULL}
    side.release(PEER_FULL)
    assert transport.reading and not side._held
    assert side._held is second._server._held
