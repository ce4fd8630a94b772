"""DecideStream against a real PDP: calls answered by id, per-call failures that leave the
stream open, draining, batching both ways (and never towards a peer that did not ask for
it), and the proxies' client of it (deadline, PDP gone, fallback)."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pdp_harness import (
    free_port,
    open_session,
    pdp_config,
    pdp_stub,
    proxy_metadata,
    running_pdp,
    token,
)
from test_pdp_server import started_with_a_bit_slow_policy

from pdp.api.decide_stream import _calls_in, answers_serializer, batch_bytes
from pdp.api.http_api import metrics_text
from portcullis.v1 import pdp_pb2, pdp_pb2_grpc
from portcullis.wire import BATCHING, says_batching
from proxies.runtime.decide_calls import CallFailed, DecideCalls
from proxies.runtime.pdp_client import PDPClient


def _call(call_id: int, session_id: str, sql: str) -> pdp_pb2.DecideCall:
    return pdp_pb2.DecideCall(
        call_id=call_id,
        request=pdp_pb2.DecideRequest(
            session_id=session_id, command=pdp_pb2.Command(kind="postgres.query", raw=sql)
        ),
    )


async def test_calls_are_answered_by_id_and_a_failed_call_leaves_the_stream_open(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config, "alice@example.com", ("readonly",)))
        stream = stub.DecideStream()
        await stream.write(_call(7, opened.session_id, "DROP TABLE customers"))
        await stream.write(_call(8, "s-unknown", "select 1"))
        await stream.write(pdp_pb2.DecideCall(call_id=9, request=pdp_pb2.DecideRequest()))
        await stream.write(_call(10, opened.session_id, "SELECT id, email FROM customers"))
        await stream.done_writing()
        answers = {}
        async for answer in stream:
            answers[answer.call_id] = answer
        assert sorted(answers) == [7, 8, 9, 10]

        drop = answers[7].response.decision
        assert answers[7].code == 0 and drop.verdict == pdp_pb2.DENY and drop.decision_id
        assert answers[8].code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
        assert "not open" in answers[8].error
        assert answers[9].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "session_id" in answers[9].error
        select = answers[10].response.decision
        assert select.verdict == pdp_pb2.MASK

        # logged like unary decisions, on the same chain
        records = await app.store.query(session_id=opened.session_id)
        logged = {r.id for r in records if r.kind == "decision"}
        assert {drop.decision_id, select.decision_id} <= logged
        assert (await app.store.verify()).ok


async def test_draining_answers_calls_in_flight_then_ends_the_stream(tmp_path):
    app, config = await started_with_a_bit_slow_policy(tmp_path)
    async with pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        stream = stub.DecideStream()
        await stream.write(_call(1, opened.session_id, "a bit slow"))
        await asyncio.sleep(0.1)
        stopping = asyncio.ensure_future(app.stop(grace=10))
        answer = await stream.read()
        assert answer.call_id == 1
        assert list(answer.response.decision.reasons) == ["drained"]
        assert await stream.read() is grpc.aio.EOF  # ended by the server, not cut at grace
        await asyncio.wait_for(stopping, 5)


async def test_the_proxy_client_decides_over_one_stream_and_fails_closed(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app:
        client = PDPClient(app.address, timeout=2.0, metadata=proxy_metadata(app.address))
        await client.start()
        try:
            grant = await client.open_session(
                token(config), pdp_pb2.Connection(name="orders-db", type="postgres"), "a:1", "t"
            )
            rulings = await asyncio.gather(
                *(
                    client.decide(grant.session_id, "postgres.query", sql)
                    for sql in ["DROP TABLE customers", "SELECT id, email FROM customers"] * 10
                )
            )
            assert [r.verdict.kind.wire for r in rulings[:2]] == ["deny", "mask"]
            assert len({r.decision_id for r in rulings}) == 20
            assert client._calls is not None and len(client._calls._stream.waiting) == 0

            gone = await client.decide("s-unknown", "postgres.query", "select 1")
            assert not gone.verdict.allowed
            assert "no longer open" in gone.verdict.reasons[0]
            again = await client.decide(grant.session_id, "postgres.query", "select 1")
            assert again.decision_id  # the stream survived the failed call
        finally:
            await client.close()

    # the PDP has gone: a deny that says so, from the same client object
    client = PDPClient(app.address, timeout=1.0, metadata=proxy_metadata(app.address))
    await client.start()
    try:
        ruling = await client.decide(grant.session_id, "postgres.query", "select 1")
        assert not ruling.verdict.allowed
        assert "unreachable" in ruling.verdict.reasons[0]
    finally:
        await client.close()


class _SilentPDP(pdp_pb2_grpc.DecisionServiceServicer):
    """Takes DecideStream calls and never answers them."""

    async def DecideStream(self, calls, context):
        async for _ in calls:
            pass


async def test_a_call_the_pdp_never_answers_ends_at_its_deadline():
    async with _decide_calls(_SilentPDP()) as (calls, request):
        with pytest.raises(CallFailed) as failed:
            await calls.decide(request, timeout=0.3)
        assert failed.value.code is grpc.StatusCode.DEADLINE_EXCEEDED


class _UnaryOnlyPDP(pdp_pb2_grpc.DecisionServiceServicer):
    """An older PDP: Decide, no DecideStream."""

    async def Decide(self, request, context):
        return pdp_pb2.DecideResponse(
            decision=pdp_pb2.Decision(decision_id="d-1", verdict=pdp_pb2.ALLOW)
        )


class _UpgradedPDP(_UnaryOnlyPDP):
    """The same PDP after an upgrade: DecideStream too, its answers told apart."""

    async def DecideStream(self, calls, context):
        async for call in calls:
            decision = pdp_pb2.Decision(decision_id="d-stream", verdict=pdp_pb2.ALLOW)
            await context.write(
                pdp_pb2.DecideAnswer(
                    call_id=call.call_id, response=pdp_pb2.DecideResponse(decision=decision)
                )
            )


async def test_a_pdp_without_decide_stream_is_asked_a_call_per_command_for_a_while():
    address = f"127.0.0.1:{free_port()}"
    server = grpc.aio.server()
    pdp_pb2_grpc.add_DecisionServiceServicer_to_server(_UnaryOnlyPDP(), server)
    server.add_insecure_port(address)
    await server.start()
    client = PDPClient(address, timeout=2.0, stream_retry_seconds=0.5)
    await client.start()
    try:
        for _ in range(2):
            ruling = await client.decide("s-1", "postgres.query", "select 1")
            assert ruling.verdict.allowed and ruling.decision_id == "d-1"
        # upgraded in place: once the retry time is up, the stream is used again
        await server.stop(0)
        server = grpc.aio.server()
        pdp_pb2_grpc.add_DecisionServiceServicer_to_server(_UpgradedPDP(), server)
        server.add_insecure_port(address)
        await server.start()
        await asyncio.sleep(0.6)
        for _ in range(50):  # the channel may still be reconnecting (a deny meanwhile)
            ruling = await client.decide("s-1", "postgres.query", "select 1")
            if ruling.decision_id == "d-stream":
                break
            await asyncio.sleep(0.1)
        assert ruling.verdict.allowed and ruling.decision_id == "d-stream"
    finally:
        await client.close()
        await server.stop(0)


async def test_a_stream_decides_at_most_max_in_flight_calls_at_once(monkeypatch):
    import pdp.api.decide_stream as decide_stream

    monkeypatch.setattr(decide_stream, "MAX_IN_FLIGHT", 2)
    running, most = 0, 0

    async def decide(request, context):
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        return pdp_pb2.DecideResponse(decision=pdp_pb2.Decision(decision_id=request.session_id))

    async def calls():
        for n in range(10):
            yield _call(n, f"d-{n}", "select 1")

    class Context:
        def __init__(self) -> None:
            self.written: list[pdp_pb2.DecideAnswer] = []

        def invocation_metadata(self):
            return ()

        async def send_initial_metadata(self, metadata):
            pass

        async def write(self, message):
            self.written.append(message)

    context = Context()
    await decide_stream.DecideStreams(decide).serve(calls(), context)
    assert most == 2
    assert sorted(a.call_id for a in context.written) == list(range(10))
    assert {a.response.decision.decision_id for a in context.written} == {
        f"d-{n}" for n in range(10)
    }


def _answers(messages: list[pdp_pb2.DecideAnswer]) -> dict[int, pdp_pb2.DecideAnswer]:
    return {a.call_id: a for m in messages for a in (m, *m.more)}


async def test_calls_sent_together_are_each_answered_and_logged(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config, "alice@example.com", ("readonly",)))
        stream = stub.DecideStream(metadata=(BATCHING,))
        assert says_batching(await stream.initial_metadata())
        batch = _call(1, opened.session_id, "SELECT id, email FROM customers")
        nested = _call(4, opened.session_id, "DROP TABLE customers")
        nested.more.append(_call(5, "s-unknown", "select 1"))  # deeper: still a call
        batch.more.extend(
            [_call(2, opened.session_id, "select 1"), _call(3, opened.session_id, "select 2")]
        )
        batch.more.append(nested)
        await stream.write(batch)
        await stream.done_writing()
        messages = [m async for m in stream]
        answers = _answers(messages)
        assert sorted(answers) == [1, 2, 3, 4, 5]
        assert answers[1].response.decision.verdict == pdp_pb2.MASK
        assert answers[4].response.decision.verdict == pdp_pb2.DENY
        assert answers[5].code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
        decided = {a.response.decision.decision_id for a in answers.values() if not a.code}
        logged = {r.id for r in await app.store.query(session_id=opened.session_id)}
        assert decided <= logged and len(decided) == 4

        # what /metrics tells an operator: 5 calls came in 1 message, answers in fewer
        # messages than calls or as many, and the stream has closed
        metrics = metrics_text(app)
        assert "portcullis_decide_stream_calls_total 5\n" in metrics
        assert 'portcullis_decide_stream_messages_total{direction="in"} 1\n' in metrics
        assert f'{{direction="out"}} {len(messages)}\n' in metrics
        assert "portcullis_decide_streams_open 0\n" in metrics


async def test_a_caller_that_did_not_ask_for_batching_gets_one_answer_per_message(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config, "alice@example.com", ("readonly",)))
        stream = stub.DecideStream()  # an older proxy: no metadata
        for n in range(30):
            await stream.write(_call(n, opened.session_id, "select 1"))
        await stream.done_writing()
        messages = [m async for m in stream]
        assert sorted(m.call_id for m in messages) == list(range(30))
        assert all(not m.more for m in messages)


class _BatchingPDP(pdp_pb2_grpc.DecisionServiceServicer):
    """Announces batching, notes how many calls each message carried, and answers them all
    in one message."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.call_ids: list[int] = []

    async def DecideStream(self, calls, context):
        await context.send_initial_metadata((BATCHING,))
        async for message in calls:
            self.sizes.append(1 + len(message.more))
            self.call_ids.extend(c.call_id for c in (message, *message.more))
            await asyncio.sleep(0.01)  # meanwhile more calls queue up at the client
            answers = [
                pdp_pb2.DecideAnswer(
                    call_id=call.call_id,
                    response=pdp_pb2.DecideResponse(
                        decision=pdp_pb2.Decision(
                            decision_id=f"d-{call.call_id}", verdict=pdp_pb2.ALLOW
                        )
                    ),
                )
                for call in (message, *message.more)
            ]
            answers[0].more.extend(answers[1:])
            await context.write(answers[0])


@contextlib.asynccontextmanager
async def _decide_calls(servicer):
    """A proxy's DecideCalls against a server of `servicer`, and a request to send."""
    server = grpc.aio.server()
    pdp_pb2_grpc.add_DecisionServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"127.0.0.1:{free_port()}")
    await server.start()
    try:
        async with pdp_stub(f"127.0.0.1:{port}") as stub:
            calls = DecideCalls(stub)
            try:
                yield calls, _call(0, "s", "select 1").request
            finally:
                await calls.close()
    finally:
        await server.stop(0)


async def test_the_proxy_client_sends_queued_calls_together_to_a_pdp_that_takes_them():
    pdp = _BatchingPDP()
    async with _decide_calls(pdp) as (calls, request):
        first = await calls.decide(request, timeout=2)  # learns that the PDP batches
        assert first.decision.decision_id == "d-1"
        answers = await asyncio.gather(*(calls.decide(request, timeout=2) for _ in range(40)))
        assert {a.decision.decision_id for a in answers} == {f"d-{n}" for n in range(2, 42)}
        assert sum(pdp.sizes) == 41 and max(pdp.sizes) > 1  # some went together


async def test_the_proxy_client_sends_one_call_per_message_to_a_pdp_that_does_not_batch():
    # _UpgradedPDP reads calls one by one and knows nothing of `more`
    async with _decide_calls(_UpgradedPDP()) as (calls, request):
        answers = await asyncio.gather(*(calls.decide(request, timeout=2) for _ in range(40)))
        assert [a.decision.decision_id for a in answers] == ["d-stream"] * 40


async def test_answers_ready_together_leave_together_at_most_max_batch_a_message(monkeypatch):
    import pdp.api.decide_stream as decide_stream

    monkeypatch.setattr(decide_stream, "MAX_BATCH", 3)
    release = asyncio.Event()

    async def decide(request, context):
        await release.wait()  # every call is decided at the same moment
        return pdp_pb2.DecideResponse(decision=pdp_pb2.Decision(decision_id=request.session_id))

    async def calls():
        message = _call(0, "d-0", "select 1")
        message.more.extend(_call(n, f"d-{n}", "select 1") for n in range(1, 10))
        yield message
        await asyncio.sleep(0.05)
        release.set()

    class Context:
        def __init__(self, metadata) -> None:
            self.metadata = metadata
            self.written: list[pdp_pb2.DecideAnswer] = []

        def invocation_metadata(self):
            return self.metadata

        async def send_initial_metadata(self, metadata):
            assert BATCHING in metadata

        async def write(self, message):  # as the client reads it off the wire
            self.written.append(pdp_pb2.DecideAnswer.FromString(answers_serializer(message)))

    batched = Context((BATCHING,))
    await decide_stream.DecideStreams(decide).serve(calls(), batched)
    assert set(_answers(batched.written)) == set(range(10))
    assert [1 + len(m.more) for m in batched.written] == [3, 3, 3, 1]

    release.clear()
    older = Context(())
    await decide_stream.DecideStreams(decide).serve(calls(), older)
    assert sorted(m.call_id for m in older.written) == list(range(10))
    assert all(not m.more for m in older.written)


async def test_a_call_whose_caller_gave_up_while_it_was_queued_is_never_sent():
    pdp = _BatchingPDP()
    async with _decide_calls(pdp) as (calls, request):
        await calls.decide(request, timeout=2)  # call 1: the stream is open, batching
        stream = calls._stream
        gate = asyncio.Event()
        write = stream.call.write

        async def held_write(message):
            await gate.wait()
            await write(message)

        stream.call.write = held_write
        first = asyncio.ensure_future(calls.decide(request, timeout=2))  # call 2: held
        await asyncio.sleep(0.05)
        with pytest.raises(CallFailed) as gave_up:
            await calls.decide(request, timeout=0.05)  # call 3: queued, then given up
        assert gave_up.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
        last = asyncio.ensure_future(calls.decide(request, timeout=2))  # call 4: queued
        await asyncio.sleep(0.01)
        gate.set()
        assert (await first).decision.decision_id == "d-2"
        assert (await last).decision.decision_id == "d-4"
        assert pdp.call_ids == [1, 2, 4]


async def test_a_writer_that_fails_unforeseen_ends_the_stream_and_the_next_call_opens_one():
    async with _decide_calls(_BatchingPDP()) as (calls, request):
        await calls.decide(request, timeout=2)
        broken = calls._stream

        async def write(message):
            raise RuntimeError("unforeseen")

        broken.call.write = write
        with pytest.raises(CallFailed) as failed:
            await calls.decide(request, timeout=5)
        assert failed.value.code is grpc.StatusCode.CANCELLED  # at once, not at 5 s
        answer = await calls.decide(request, timeout=2)
        assert calls._stream is not broken and answer.decision.verdict == pdp_pb2.ALLOW


# a call and the calls it carries, nested to any depth (what a peer could send)
_nested_calls = st.recursive(
    st.just(()), lambda more: st.lists(more, max_size=4).map(tuple), max_leaves=60
)


@given(_nested_calls)
def test_every_call_a_message_carries_is_taken_once_in_order(shape):
    ids = iter(range(1, 10_000))

    def build(more) -> pdp_pb2.DecideCall:
        call = pdp_pb2.DecideCall(call_id=next(ids))
        call.more.extend(build(m) for m in more)
        return call

    message = build(shape)
    taken = [call.call_id for call in _calls_in(message)]
    assert taken == list(range(1, len(taken) + 1))  # depth first, as built: each once
    assert len(taken) == _count(message)


def _count(call: pdp_pb2.DecideCall) -> int:
    return 1 + sum(_count(more) for more in call.more)


async def test_an_answer_over_the_stream_is_the_unary_answer(tmp_path):
    # the stream's answers are written in place (pdp.api.decide_stream: no copy of the
    # response): the same fields as the unary Decide's, and a call ended carries none
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config, "alice@example.com", ("readonly",)))
        texts = [
            "SELECT id, email FROM customers",
            "SET search_path TO public",
            "DROP TABLE customers",
            "BEGIN",
        ]
        stream = stub.DecideStream()
        for n, sql in enumerate(texts):
            await stream.write(_call(n, opened.session_id, sql))
        await stream.write(_call(99, "s-unknown", "select 1"))
        await stream.done_writing()
        answers = {answer.call_id: answer async for answer in stream}
        assert not answers[99].HasField("response") and answers[99].code
        for n, sql in enumerate(texts):
            unary = await stub.Decide(
                pdp_pb2.DecideRequest(
                    session_id=opened.session_id,
                    command=pdp_pb2.Command(kind="postgres.query", raw=sql),
                )
            )
            streamed = answers[n]
            assert streamed.code == 0 and streamed.response.decision.decision_id
            for decision in (streamed.response.decision, unary.decision):
                decision.decision_id = ""
                decision.evaluation_ms = 0
                # the breaker's bound on reuse: what its counts leave, one less per call
                decision.reuses_left = 0
            assert streamed.response == unary, sql


@given(st.lists(st.integers(0, 2**64 - 1), min_size=2, max_size=70), st.text(max_size=300))
def test_a_batch_written_serialized_is_the_answers_appended(ids, text):
    """batch_bytes gives the bytes of the first answer with the others in its `more`:
    the same message as appending them (codes, errors, responses of any size)."""
    answers = [
        pdp_pb2.DecideAnswer(
            call_id=i,
            code=i % 3,
            error=text if i % 2 else "",
            response=pdp_pb2.DecideResponse(
                decision=pdp_pb2.Decision(decision_id=f"d-{i}", reasons=[text] * (i % 4))
            ),
        )
        for i in ids
    ]
    appended = pdp_pb2.DecideAnswer()
    appended.CopyFrom(answers[0])
    appended.more.extend(answers[1:])
    wire = answers_serializer(batch_bytes(answers[0], answers[1:]))
    assert pdp_pb2.DecideAnswer.FromString(wire) == appended
    assert answers_serializer(answers[0]) == answers[0].SerializeToString()
