"""Every session's end of a proxy on one timer (issue 27: 10,000 idle Postgres sessions
within 250 MiB; bench_idle --trace showed each idle session's own grant-expiry timer, its
future, callbacks and arguments, about 1.2 KiB).

Deadlines calls each at its time, in order, and never one withdrawn; what it keeps of a
withdrawn call is gone at once, so a soak of short sessions leaves nothing behind; one
loop timer serves every deadline. ProxySession.end_at_expiry ends a session through it,
and the session's close withdraws it.
"""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

from portcullis.config import ConnectionSettings
from portcullis.verdict import Verdict, VerdictKind
from proxies.runtime.deadlines import SLACK, Deadlines
from proxies.runtime.pdp_client import Ruling, SessionGrant
from proxies.runtime.session import ProxyRuntime, ProxySession


def test_calls_come_in_time_order_and_a_withdrawn_one_never() -> None:
    async def run() -> list[str]:
        deadlines, made = Deadlines(), []
        now = time.time()
        deadlines.add(now + 0.06, lambda: made.append("third"))
        deadlines.add(now + 0.02, lambda: made.append("first"))
        gone = deadlines.add(now + 0.03, lambda: made.append("withdrawn"))
        deadlines.add(now + 0.04, lambda: made.append("second"))
        deadlines.add(now - 1, lambda: made.append("past"))
        deadlines.withdraw(gone)
        await asyncio.sleep(0.15)
        assert len(deadlines) == 0
        return made

    assert asyncio.run(run()) == ["past", "first", "second", "third"]


def test_one_timer_serves_every_deadline() -> None:
    async def run() -> int:
        deadlines = Deadlines()
        now = time.time()
        for i in range(500):
            deadlines.add(now + 3600 + i, lambda: None)
        timers = [h for h in asyncio.get_running_loop()._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
        deadlines.stop()
        return len(timers)

    assert asyncio.run(run()) == 1


def test_a_withdrawn_call_is_let_go_at_once_and_the_heap_stays_bounded() -> None:
    class Session:
        def end(self) -> None:
            raise AssertionError("withdrawn")

    async def run() -> tuple[int, int, list[weakref.ref[Session]]]:
        deadlines = Deadlines()
        now, refs, live = time.time(), [], []
        for i in range(2000):
            session = Session()
            refs.append(weakref.ref(session))
            key = deadlines.add(now + 3600 + i, session.end)
            if i % 100 == 0:
                live.append(key)
            else:
                deadlines.withdraw(key)
        del session
        gc.collect()
        held = len(deadlines._heap)
        for key in live:
            deadlines.withdraw(key)
        return held, len(deadlines._heap), refs

    held, after, refs = asyncio.run(run())
    assert sum(r() is not None for r in refs) == 0
    assert held <= 2 * 20 + SLACK + 1
    assert after == 0


def test_a_failing_call_does_not_stop_the_others() -> None:
    async def run() -> list[str]:
        deadlines, made = Deadlines(), []
        now = time.time()

        def fails() -> None:
            raise RuntimeError("boom")

        deadlines.add(now + 0.01, fails)
        deadlines.add(now + 0.02, lambda: made.append("after"))
        await asyncio.sleep(0.1)
        return made

    assert asyncio.run(run()) == ["after"]


def _session(runtime: ProxyRuntime, grant_ends: float, token_expires: float) -> ProxySession:
    session = ProxySession(runtime, "127.0.0.1:5000", "deadlines")
    allowed = Ruling(Verdict(VerdictKind.ALLOW), "d-1", "rev-1")
    session.grant = SessionGrant(
        "s-1", allowed, "t@example.com", ("dba",), "ref", grant_ends, token_expires
    )
    return session


def _runtime() -> ProxyRuntime:
    connection = ConnectionSettings(
        name="deadlines", type="postgres", listen="127.0.0.1:0", upstream="127.0.0.1:5432"
    )
    runtime = ProxyRuntime(connection=connection, pdp=object(), provider=None)  # type: ignore[arg-type]
    runtime.token_leeway = 0.0
    return runtime


def test_a_session_ends_at_the_earlier_end_through_the_runtimes_deadlines() -> None:
    async def run() -> tuple[list[tuple[str, str]], bool, int]:
        runtime, ended = _runtime(), []
        now = time.time()
        first = _session(runtime, now + 0.03, now + 60)
        second = _session(runtime, 0.0, now + 0.02)
        none = _session(runtime, 0.0, 0.0)
        assert first.end_at_expiry(lambda reason, text: ended.append((reason, text)))
        assert second.end_at_expiry(lambda reason, text: ended.append((reason, text)))
        armed = none.end_at_expiry(lambda reason, text: ended.append((reason, text)))
        await asyncio.sleep(0.1)
        return ended, armed, len(runtime.deadlines)

    ended, armed, left = asyncio.run(run())
    assert [reason for reason, _ in ended] == ["token_expired", "grant_expired"]
    assert ended[1][1] == "the approved access window has ended"
    assert not armed and left == 0


def test_a_session_stopped_or_closed_is_never_ended_by_its_expiry() -> None:
    async def run() -> tuple[list[str], int]:
        runtime, ended = _runtime(), []
        now = time.time()
        stopped = _session(runtime, now + 0.02, 0.0)
        stopped.end_at_expiry(lambda reason, text: ended.append(reason))
        stopped.stop_expiry()
        closed = _session(runtime, now + 0.02, 0.0)
        closed.end_at_expiry(lambda reason, text: ended.append(reason))
        closed._closed = False
        closed.grant = None  # nothing to tell the PDP: close() withdraws and returns
        await closed.close("client_disconnect")
        await asyncio.sleep(0.08)
        return ended, len(runtime.deadlines)

    assert asyncio.run(run()) == ([], 0)
