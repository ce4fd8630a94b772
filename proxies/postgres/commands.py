"""What the Postgres enforcer asks of the runtime, and what it tells it to do (no IO here).

The enforcer (proxies.postgres.enforcer) is a state machine over frontend messages and
never waits. What it cannot know without waiting it asks for with a request, yielded from
the handler of the message; the runtime (proxies.postgres.driver) performs the request and
sends the result back into the handler, which goes on from there. What it decides comes out
in two outboxes the runtime drains: the bytes for the server, in order
(`Enforcer.to_server`, each forwarded message with its expectation left in the
ResponseTracker), and every other action, in order (`Enforcer.actions`).

mitmproxy's proxy core has the same split (`proxy/commands.py`, `proxy/events.py`): a
protocol layer yields commands, one place turns them into asyncio work.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from proxies.runtime.pdp_client import Ruling

# -- requests: the enforcer waits for their result ---------------------------------------


@dataclass(frozen=True, slots=True)
class Decide:
    """The verdict on one command (result: a Ruling), from the decision cache or the PDP.

    `shape_of`: the command may be answered by a verdict reused for its shape (None: never
    from the cache). `may_wait`: when a person must approve it, the client is told (a
    NoticeResponse, Enforcer.notice) and the approval is waited for; a cancel from the
    client ends the wait with a Ruling whose `canceled` is set."""

    kind: str  # postgres.query | postgres.function_call
    raw: str
    attributes: dict[str, Any]  # input.command.postgres beside the text
    shape_of: Callable[[str], str | None] | None = None
    may_wait: bool = False


@dataclass(frozen=True, slots=True)
class Settle:
    """Send what is queued and wait until the server has answered all of it (result: None):
    a statement that the session's settings could make the server read differently waits
    for everything before it."""


@dataclass(frozen=True, slots=True)
class SourceColumns:
    """The names of the columns a query returns, described apart from the session (result:
    list[str], or None when they cannot be told): a COPY out under column masks. A column
    that is no stored table column as it is (an expression, aggregate, function output,
    computed view column) adds COMPUTED to the names, besides its own name; a computed
    view column adds VIEW_COMPUTED too (masked whole in a SELECT whatever the verdict's
    derived rule, so a COPY of it is refused under masks)."""

    sql: str


# In SourceColumns' result: some column is computed (never a column's name: a name the
# server describes cannot hold a NUL), and some column is a view's computed column
COMPUTED = "\0computed"
VIEW_COMPUTED = "\0view computed"


@dataclass(frozen=True, slots=True)
class ResolveFunction:
    """The qualified name of a function, by OID (result: str, or None when it cannot be
    named): a fast-path FunctionCall."""

    oid: int


@dataclass(frozen=True, slots=True)
class ResolveType:
    """The qualified name of a type, by OID (result: str, or None when it cannot be
    named): a parameter type a Parse declares, which the statement's text never names."""

    oid: int


Request = Decide | Settle | SourceColumns | ResolveFunction | ResolveType

# what a message's handler is when it must ask: requests out, their results sent back in
Steps = Generator[Request, Any, None]

# -- actions: done in order, nothing comes back ------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """Bytes for the client, in their place among everything else it is owed."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Record:
    """A command refused before it reached the server, for the session recording (a
    forwarded one is recorded when it completes, with its result)."""

    command: str
    ruling: Ruling
    protocol: str


Action = Reply | Record
