"""Probe P63 (helper pgattack26): a message the server ignores inside COPY FROM STDIN
shifts the proxy's answers by one, and a masked dba then reads a password unmasked.

The server, in COPY FROM STDIN, ignores a Sync (and a Flush) "for the convenience of
client libraries" (libpq's PQexecParams sends one right after the COPY's Execute). The
proxy queued an answer for such a Sync all the same (proxies/postgres/enforcer.py _sync),
one the server never sends: every later answer was matched with the message before its
own. (A Query inside the COPY, which the server reads and drops as it fails the COPY,
left the answers in step: checked too.) Through the proxy
straight at the database, a dba outside pii-readers sent

    Query  COPY audit_log(what) FROM STDIN      (allowed)
    CopyData 'x\\n'  Sync  CopyDone
    Query  SELECT password FROM customers       -> hunter2-ada, hunter2-bob

the rows of the last Query taken for the answer to the ignored Sync, which masks nothing
(libpq's PQexecParams pattern, Parse Bind Describe Execute Sync, then CopyData CopyDone
Sync, alike). Now a Sync sent after a statement that may be COPY FROM STDIN (its text
holds STDIN), before CopyDone or CopyFail, is owed nothing once the server answers that
statement with CopyInResponse (proxies/postgres/tracker.py); one whose COPY never started
is answered as any Sync, and a COPY that fails after such a Sync (the server may have read
it before or after the failure) stops the session.
"""

from __future__ import annotations

import pytest
from adversary import Arena, bind, describe, execute, parse, query, ready_client, sync
from pg_probe_stack import arena_fixture

from proxies.postgres import codec

pytestmark = pytest.mark.integration

arena = arena_fixture()

COPY_IN = "COPY audit_log(what) FROM STDIN"


@pytest.mark.parametrize("inside", [sync(), query("SELECT 1")], ids=["sync", "query"])
def test_a_message_inside_copy_from_stdin_does_not_unmask_the_next_answer(
    arena: Arena, inside: bytes
) -> None:
    dba = ready_client(arena, ("dba",), "p63")
    try:
        answer = dba.query("SELECT password FROM customers")
        assert answer.rows and b"hunter2" not in answer.raw, answer.messages
        dba.send(query(COPY_IN), codec.CopyData(b"x\n").encode(), inside, codec.CopyDone().encode())
        answer = dba.query("SELECT password FROM customers")
        assert answer.closed or b"hunter2" not in answer.raw, answer.messages
    finally:
        dba.close()


MASKED = "SELECT password FROM customers"


def _masked_still(dba) -> None:  # type: ignore[no-untyped-def]
    for _ in range(2):
        answer = dba.query(MASKED)
        assert answer.rows and b"hunter2" not in answer.raw, answer.messages
        assert answer.tags == ["SELECT 2"], answer.messages


def test_libpqs_copy_with_a_sync_after_its_execute_runs_and_keeps_the_answers_in_step(
    arena: Arena,
) -> None:
    dba = ready_client(arena, ("dba",), "p63")
    try:
        run = (parse("", COPY_IN), bind("", ""), describe("P", ""), execute(), sync())
        dba.sock.sendall(b"".join(run))  # (the COPY waits for its data: nothing to read yet)
        answer = dba.send(codec.CopyData(b"p63\n").encode(), codec.CopyDone().encode(), sync())
        assert "COPY 1" in answer.tags and not answer.errors, answer.messages
        _masked_still(dba)
        # a COPY that never starts: its Sync is answered as any Sync
        answer = dba.send(parse("", "COPY p63_missing FROM STDIN"), bind("", ""), execute(), sync())
        assert answer.errors and "does not exist" in answer.errors[0], answer.messages
        _masked_still(dba)
        # a false alarm: STDIN in a statement that copies nothing
        answer = dba.send(parse("", "SELECT 'stdin' AS a"), bind("", ""), execute(), sync())
        assert answer.rows == [[b"stdin"]], answer.messages
        _masked_still(dba)
    finally:
        dba.close()


def test_a_copy_failing_after_a_sync_inside_it_stops_the_session(arena: Arena) -> None:
    dba = ready_client(arena, ("dba",), "p63")
    try:
        answer = dba.send(
            query("COPY orders FROM STDIN"),
            codec.CopyData(b"not-a-number\t1\t2\n").encode(),
            sync(),
            codec.CopyDone().encode(),
        )
        assert answer.errors, answer.messages
        # (the Sync's ReadyForQuery may come first, in the chunk that stopped the session)
        answers = [dba.query(MASKED), dba.query(MASKED)]
        assert answers[-1].closed, answers[0].messages
        assert not any(b"hunter2" in a.raw for a in answers), answers[0].messages
    finally:
        dba.close()
