"""The set-up the PostgreSQL probe tests (tests/test_pg_probe_p*.py) share: a module's
arena (tests/adversary.py), its raw clients, the check that a statement was refused with
nothing secret in the answer, and the approval round trip of an approved TRUNCATE that
must be asked again once name resolution may have changed (tests/pg_harness.py's
gateway). Set-up and shared checks only: what each probe attacks stays in its file.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from adversary import Answer, Arena, RawClient, assert_no_secret, ready_client, running_arena
from pg_harness import running_gateway

from pdp.domain.approvals import ApprovalRefused
from proxies.postgres import codec

# the approver of the approval round trips
SAM = {"subject": "sam@example.com", "groups": ["security"], "issuer": "portcullis-dev"}


def arena_fixture(setup: str = "", teardown: str = "") -> Any:
    """A module-scoped `arena` fixture: the adversary's gateway, with `setup` run by the
    admin once it is up and `teardown` once the module is done (SQL; empty: none)."""

    @pytest.fixture(scope="module")
    def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
        with running_arena(tmp_path_factory.mktemp("arena")) as gateway:
            if setup:
                with gateway.admin() as admin:
                    admin.execute(setup)
            yield gateway
            if teardown:
                with gateway.admin() as admin:
                    admin.execute(teardown)

    return arena


def reader_fixture(who: str) -> Any:
    """A `reader` fixture: for each test, a ready raw client of a new reader (group
    readonly, outside pii-readers) named for the probe `who`, closed after it."""

    @pytest.fixture
    def reader(arena: Arena) -> Iterator[RawClient]:
        c = ready_client(arena, ("readonly",), who)
        yield c
        c.close()

    return reader


def probe_client(who: str, groups: tuple[str, ...] | None = None) -> Callable[..., RawClient]:
    """client(arena, groups): a ready raw client of a new identity named for the probe
    `who`, in `groups` (default: the given ones; None: every call names them)."""

    def client(arena: Arena, groups: tuple[str, ...] | None = groups) -> RawClient:
        assert groups is not None, "this probe's clients name their groups"
        return ready_client(arena, groups, who)

    return client


def assert_refused(c: RawClient, sql: str, because: str) -> Answer:
    """`sql` answered by an error whose first message says `because`, and no secret of
    the arena anywhere in the answer."""
    answer = c.query(sql)
    assert_no_secret(answer)
    assert answer.errors and because in answer.errors[0], answer.messages
    return answer


def assert_answered(c: RawClient, sql: str, rows: list[list[bytes | None]]) -> Answer:
    """`sql` answered with exactly `rows`, no error, and no secret of the arena anywhere
    in the answer."""
    answer = c.query(sql)
    assert_no_secret(answer)
    assert not answer.errors, answer.errors
    assert answer.rows == rows, answer.rows
    return answer


def code_ran(answer: Answer, marker: str) -> bool:
    """The database's code ran: its NOTICE (withheld or not) came back, or the
    application_name it set to `marker` was reported."""
    return any(
        isinstance(m, codec.NoticeResponse)
        or (isinstance(m, codec.ParameterStatus) and m.value == marker)
        for m in answer.messages
    )


def assert_read_refused_unrun(arena: Arena, groups: tuple[str, ...], marker: str, sql: str) -> None:
    """A client of `groups` (application_name `marker`) sends `sql`: denied by policy, and
    the database's code did not run."""
    c = ready_client(arena, groups, marker)
    try:
        answer = c.query(sql)
        assert answer.errors and "denied by policy" in answer.errors[0], answer.messages
        assert not code_ran(answer, marker), answer.messages
    finally:
        c.close()


async def pending_approval(gw: Any, other_than: set[str]) -> str:
    """The id of a pending approval request other than those named, once one appears."""
    for _ in range(100):
        for r in gw.pdp.approvals.requests.values():
            if r.state == "pending" and r.id not in other_than:
                return r.id
        await asyncio.sleep(0.1)
    raise AssertionError("no approval request appeared")


@asynccontextmanager
async def decoy_orders_gateway(
    tmp_path: Path, *setup: str
) -> AsyncIterator[tuple[Any, asyncpg.Connection]]:
    """A gateway whose approvals time out after 3 s, `setup` run by its admin (each
    statement formatted with {role}: the upstream role), a decoy order (id -1) in
    public.orders and a pii-reading dba's connection. After the body: the decoy is still
    there (no approved TRUNCATE reached public.orders)."""
    async with running_gateway(tmp_path, approvals={"timeout_seconds": 3}) as gw:
        with gw.admin() as admin:
            for sql in setup:
                admin.execute(sql.format(role=gw.role))
            admin.execute("INSERT INTO orders VALUES (-1, 1, 9.5)")
        conn = await asyncpg.connect(gw.dsn(gw.token("dana@example.com", ("dba", "pii-readers"))))
        try:
            yield gw, conn
        finally:
            await conn.close()
        with gw.admin() as admin:
            kept = admin.execute("SELECT count(*) FROM public.orders WHERE id = -1").fetchone()
            assert kept == (1,)


async def approve_truncate(gw: Any, conn: asyncpg.Connection, why: str) -> str:
    """TRUNCATE orders, held for approval, approved by SAM and run: the request's id."""
    first = asyncio.ensure_future(conn.execute("TRUNCATE orders"))
    asked = await pending_approval(gw, set())
    await gw.pdp.approvals.decide(asked, SAM, True, why)
    assert await asyncio.wait_for(first, 15) == "TRUNCATE TABLE"
    return asked


async def assert_asked_again(gw: Any, conn: asyncpg.Connection, asked: str) -> None:
    """The same TRUNCATE orders is held for a new approval, not run under `asked`; SAM
    refuses that one, so it is refused (refused at once, not at the approvals' timeout)."""
    again = asyncio.ensure_future(conn.execute("TRUNCATE orders"))
    new = await pending_approval(gw, {asked})
    with contextlib.suppress(ApprovalRefused):  # (it expired first: refused all the same)
        await gw.pdp.approvals.decide(new, SAM, False, "asked again: refused")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await asyncio.wait_for(again, 15)
