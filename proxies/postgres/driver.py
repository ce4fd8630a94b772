"""Carrying out what the Postgres enforcer asks for and tells, with asyncio.

The one place that turns the enforcer's requests (proxies.postgres.commands) into work:
a decision from the session (the cache or the PDP, an approval waited for), the server
settled, a COPY source described and a function named on a side connection. And the one
place its actions are done: replies to the client, refusals recorded. The enforcer itself
never waits; its bytes for the server are written by the relay (proxies.postgres.proxy).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from portcullis.verdict import Verdict
from proxies.postgres.commands import (
    Decide,
    Record,
    Request,
    ResolveFunction,
    ResolveType,
    Settle,
    SourceColumns,
    Steps,
)
from proxies.postgres.enforcer import Enforcer
from proxies.runtime.pdp_client import Ruling
from proxies.runtime.session import ProxySession


def carry_out(
    enforcer: Enforcer, session: ProxySession, to_client: Callable[[bytes], None]
) -> None:
    """Do the enforcer's actions, in order, and forget them."""
    actions = enforcer.actions
    if not actions:
        return
    for action in actions:
        if isinstance(action, Record):
            session.record_command(action.command, action.ruling, protocol=action.protocol)
        else:
            to_client(action.data)
    actions.clear()


# A decision made while the database's catalogue could not be read
UNREAD = (
    "the database's catalogue could not be read (the proxy's catalogue watch lost its "
    "connection or the server refuses it), so the code this statement would run cannot be "
    "judged; try again once the server accepts connections"
)


# A statement decided again (with newer catalogue facts) this many times is then denied
DECIDED_AGAIN = 2
CHANGING = (
    "the database's code changed again while this statement waited to be decided; send it again"
)


def _denied(ruling: Ruling, reason: str) -> Ruling:
    return Ruling(Verdict.deny(reason), ruling.decision_id, ruling.policy_revision)


class EnforcerDriver:
    """Finishes the messages of one session's enforcer that must wait for something."""

    def __init__(
        self,
        enforcer: Enforcer,
        session: ProxySession,
        to_client: Callable[[bytes], None],
        settle: Callable[[], Awaitable[None]],
        source_columns: Callable[[str], Awaitable[list[str] | None]],
        function_name: Callable[[int], Awaitable[str | None]],
        type_name: Callable[[int], Awaitable[str | None]] | None = None,
        fresh_facts: Callable[[], Awaitable[bool | None]] | None = None,
        person_wait: Callable[[], None] | None = None,
    ) -> None:
        """fresh_facts: the catalogue asked again, True when newer facts were taken
        (proxies.postgres.catalog_watch): a decision is made with them; None when it could
        not be read: the decision is a deny (UNREAD). person_wait: called when a command
        begins to wait for a person (the client's socket is watched meanwhile)."""
        self.enforcer = enforcer
        self.session = session
        self.to_client = to_client
        self.settle = settle
        self.source_columns = source_columns
        self.function_name = function_name
        self.type_name = type_name
        self.fresh_facts = fresh_facts
        self.person_wait = person_wait
        # the decision being made waited for a person (_tell was called): an approval
        self.waited = False

    def carry_out(self) -> None:
        carry_out(self.enforcer, self.session, self.to_client)

    async def handle(self, message: Any) -> None:
        """One message: at once when it can be, else through its steps."""
        if not self.enforcer.now(message):
            await self.finish(self.enforcer.ask(message))

    async def finish(self, steps: Steps) -> None:
        """Run a message's steps: perform each request, send its result back in."""
        result: Any = None
        try:
            while True:
                try:
                    request = steps.send(result)
                except StopIteration:
                    break
                # what was decided before waiting is done first (a refusal is recorded in
                # its place among the completions the server's answers record meanwhile)
                self.carry_out()
                result = await self._perform(request)
        finally:
            self.carry_out()  # what was decided stands, even when the session is ending

    async def _perform(self, request: Request) -> Any:
        if type(request) is Decide:
            return await self._decide(request)
        if type(request) is Settle:
            return await self.settle()
        if type(request) is SourceColumns:
            return await self.source_columns(request.sql)
        if type(request) is ResolveFunction:
            return await self.function_name(request.oid)
        if type(request) is ResolveType:
            # without a way to name it, the type is unnamed: its statement is refused
            return None if self.type_name is None else await self.type_name(request.oid)
        raise TypeError(f"unknown enforcer request {request!r}")

    async def _decide(self, request: Decide) -> Any:
        """The verdict, judged with the catalogue as it is when the command came: when the
        PDP is asked, the catalogue is asked again alongside, and the command decided
        again with newer facts when there are (a statement a person approved with the
        older facts is then asked again: the rare second request is the price of not
        putting a catalogue round trip, through the one watch connection every session
        shares, before every uncached statement: that halved the uncached rate). A verdict
        from the cache is keyed by the facts the session has (the watch's poll brings
        newer ones within its interval). A statement a person approved is asked about
        once more after the wait (minutes, in which a trigger or view may have been made),
        and decided again with newer facts; at most DECIDED_AGAIN times, then denied
        (CHANGING)."""
        fresh = self.fresh_facts
        if fresh is None:
            return await self._decided(request)
        looked_up = False
        if not self.enforcer.unsure:
            known = self.session.ruling_now(
                request.kind, request.raw, request.shape_of, request.attributes
            )
            if known is not None:
                # from the cache, keyed by the facts: no PDP asked, nothing asked; and
                # what the session's decide answers for it, without looking it up again
                # (a lookup that finds one counts a reuse and spends one of a breaker's)
                if request.may_wait:
                    return await self.session.wait_if_held(
                        known, request.kind, request.raw, request.attributes, self._tell
                    )
                return known
            looked_up = True  # (nothing awaited before decide(): not looked up again)
        polled = asyncio.ensure_future(fresh())  # (runs once this task waits)
        self.waited = False
        ruling = await self._decided(request, looked_up)
        newer = await polled
        again = 0
        while True:
            if newer is not None and not newer and self.waited and ruling.verdict.allowed:
                # approved after a wait: the catalogue asked again, after it
                newer = await fresh()
            if newer is None:
                # the facts it was judged with may be old: fail closed until they are read
                return _denied(ruling, UNREAD)
            if not newer:
                return ruling
            if again == DECIDED_AGAIN:
                return _denied(ruling, CHANGING)
            again += 1
            request = self._renewed(request)
            self.waited = False
            ruling = await self._decided(request)
            newer = False  # decided with the newest facts; asked again once approved

    def _renewed(self, request: Decide) -> Decide:
        attributes = self.enforcer.with_facts(request.kind, request.attributes)
        return replace(request, attributes=attributes)

    async def _decided(self, request: Decide, looked_up: bool = False) -> Any:
        """The session's decision (looked_up: its ruling_now() answered None just now)."""
        if request.may_wait:
            return await self.session.decide_or_wait(
                request.kind,
                request.raw,
                request.attributes,
                request.shape_of,
                self._tell,
                looked_up=looked_up,
            )
        return await self.session.decide(
            request.kind, request.raw, request.attributes, request.shape_of, looked_up=looked_up
        )

    def _tell(self, text: str) -> None:
        """What the session says while a command waits (an approval to ask a person for):
        a NoticeResponse the client gets before the wait."""
        self.waited = True
        self.enforcer.notice(text)
        self.carry_out()
        if self.person_wait is not None:
            self.person_wait()
