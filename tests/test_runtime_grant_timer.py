"""A session's grant expiry is a timer, not a task (issue 27: 10,000 idle Postgres sessions
within 250 MiB; bench_idle --trace showed each idle session's sleeping task: the task, its
coroutine, its sleep and its entry in asyncio's task set, about 1 KiB).

ProxySession.grant_expiry still resolves, at the earlier of the grant's end and the
token's expiry, to the close reason after telling the client why; cancelled, it never
tells; an exception of `tell` is its own. No task is made for it.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from portcullis.config import ConnectionSettings
from portcullis.verdict import Verdict, VerdictKind
from proxies.runtime.pdp_client import Ruling, SessionGrant
from proxies.runtime.session import ProxyRuntime, ProxySession


def _session(grant_ends: float, token_expires: float) -> ProxySession:
    connection = ConnectionSettings(
        name="timer", type="postgres", listen="127.0.0.1:0", upstream="127.0.0.1:5432"
    )
    runtime = ProxyRuntime(connection=connection, pdp=object(), provider=None)  # type: ignore[arg-type]
    runtime.token_leeway = 0.0
    session = ProxySession(runtime, "127.0.0.1:5000", "timer")
    allowed = Ruling(Verdict(VerdictKind.ALLOW), "d-1", "rev-1")
    session.grant = SessionGrant(
        "s-1", allowed, "timer@example.com", ("dba",), "ref", grant_ends, token_expires
    )
    return session


def test_the_earlier_end_is_told_and_resolves_to_its_reason_without_a_task() -> None:
    async def run() -> tuple[str, list[str], int]:
        told: list[str] = []
        now = time.time()
        session = _session(now + 0.05, now + 60)
        before = len(asyncio.all_tasks())
        ends = session.grant_expiry(told.append)
        assert ends is not None
        made = len(asyncio.all_tasks()) - before
        return await ends, told, made

    reason, told, made = asyncio.run(run())
    assert made == 0
    assert reason == "grant_expired"
    assert told == ["portcullis: the approved access window has ended"]


def test_a_token_expiring_first_ends_the_session_as_token_expired() -> None:
    async def run() -> tuple[str, list[str]]:
        told: list[str] = []
        now = time.time()
        ends = _session(0.0, now + 0.02).grant_expiry(told.append)
        assert ends is not None
        return await ends, told

    reason, told = asyncio.run(run())
    assert reason == "token_expired"
    assert told and told[0].startswith("portcullis: the token of this session has expired")


def test_a_cancelled_expiry_never_tells() -> None:
    async def run() -> list[str]:
        told: list[str] = []
        now = time.time()
        ends = _session(now + 0.02, 0.0).grant_expiry(told.append)
        assert ends is not None
        ends.cancel()
        await asyncio.sleep(0.1)
        return told

    assert asyncio.run(run()) == []


def test_what_tell_raises_is_the_expirys() -> None:
    def tell(text: str) -> None:
        raise RuntimeError("the client is gone")

    async def run() -> str:
        now = time.time()
        ends = _session(now + 0.01, 0.0).grant_expiry(tell)
        assert ends is not None
        return await ends

    with pytest.raises(RuntimeError, match="the client is gone"):
        asyncio.run(run())


def test_a_session_with_no_end_has_no_expiry() -> None:
    async def run() -> object:
        return _session(0.0, 0.0).grant_expiry(lambda text: None)

    assert asyncio.run(run()) is None
