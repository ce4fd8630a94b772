"""A proxy's Decide calls over one DecideStream (pdp.api.decide_stream), opened on first use.

Owns the stream's life on the client side: calls tagged with ids, written by one writer
task (calls queued while a message was being written go together in the next one, once
the PDP has said it takes them so: pdp.api.decide_stream's batching), answers matched back to
their callers by id, each call bounded by its own deadline. When the stream ends or
breaks, every call still waiting on it fails with the stream's status, and the next call
opens a new stream. Failures are raised as CallFailed, carrying the status a unary Decide
would have ended with; the PDP client turns them into denies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import grpc

from portcullis.v1 import pdp_pb2, pdp_pb2_grpc
from portcullis.wire import BATCHING, says_batching

log = logging.getLogger("portcullis.pdp_client")

_STATUS = {status.value[0]: status for status in grpc.StatusCode}
MAX_BATCH = 64  # calls in one message at most
MAX_GAVE_UP = 10_000  # calls out of time whose late answer is still looked out for
# told (session id, answer) when an answer arrives after its caller gave up
OnLate = Callable[[str, pdp_pb2.DecideResponse], None]


class CallFailed(Exception):
    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        super().__init__(details or code.name)
        self.code = code
        self.details = details

    @classmethod
    def of(cls, exc: grpc.aio.AioRpcError) -> CallFailed:
        """The status a gRPC call ended with."""
        return cls(exc.code(), exc.details() or "")


class _Stream:
    """One open DecideStream and the calls waiting on it."""

    def __init__(
        self, stub: pdp_pb2_grpc.DecisionServiceStub, metadata: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self.call = stub.DecideStream(metadata=(BATCHING, *metadata))
        self.waiting: dict[int, asyncio.Future[pdp_pb2.DecideResponse]] = {}
        self.on_late: OnLate | None = None
        self.gave_up: dict[int, str] = {}  # call id → session id, of callers out of time
        self.outbox: list[pdp_pb2.DecideCall] = []  # calls not yet written
        self.queued = asyncio.Event()
        self.batching = False  # the PDP takes several calls in one message
        self.ended: CallFailed | None = None
        self.reader = asyncio.ensure_future(self._read())
        self.writer = asyncio.ensure_future(self._write())

    async def _read(self) -> None:
        failure = CallFailed(grpc.StatusCode.UNAVAILABLE, "the decision stream ended")
        try:
            metadata = await self.call.initial_metadata()
            self.batching = says_batching(metadata)
            while True:
                message = await self.call.read()
                if message is grpc.aio.EOF:
                    break
                for answer in (message, *message.more):
                    future = self.waiting.get(answer.call_id)
                    if future is None or future.done():
                        self._late(answer)  # its caller gave up
                        continue
                    if answer.code:
                        code = _STATUS.get(answer.code, grpc.StatusCode.UNKNOWN)
                        future.set_exception(CallFailed(code, answer.error))
                    else:
                        future.set_result(answer.response)
        except grpc.aio.AioRpcError as exc:
            failure = CallFailed.of(exc)
        except asyncio.CancelledError:
            failure = CallFailed(grpc.StatusCode.CANCELLED, "the decision stream was closed")
            raise
        finally:
            self.ended = failure
            self._fail(list(self.waiting), failure)
            self.queued.set()  # the writer sees the end and stops

    async def _write(self) -> None:
        """Write the queued calls (together, once the PDP batches) until the stream ends.
        The callers only queue: one of them running out of time never cuts a message that
        carries others' calls. Should writing fail in a way nobody foresaw, the stream is
        ended (its calls fail at once, the next call opens a new one), never left open
        with nothing writing to it."""
        try:
            await self._write_queued()
        except Exception:
            log.exception("the decision stream's writer failed: ending the stream")
            self.call.cancel()

    async def _write_queued(self) -> None:
        while self.ended is None:
            await self.queued.wait()
            self.queued.clear()
            while self.outbox and self.ended is None:
                # a caller that gave up while its call was queued is not asked for
                calls = [c for c in self.outbox[:MAX_BATCH] if c.call_id in self.waiting]
                del self.outbox[:MAX_BATCH]
                if not calls:
                    continue
                try:
                    if self.batching:
                        calls[0].more.extend(calls[1:])
                        await self.call.write(calls[0])
                    else:
                        for call in calls:
                            await self.call.write(call)
                except grpc.aio.AioRpcError as exc:
                    self._fail([c.call_id for c in calls], CallFailed.of(exc))
                except asyncio.InvalidStateError:  # the stream finished meanwhile
                    ended = CallFailed(grpc.StatusCode.UNAVAILABLE, "the decision stream ended")
                    self._fail([c.call_id for c in calls], self.ended or ended)

    def _late(self, answer: pdp_pb2.DecideAnswer) -> None:
        session_id = self.gave_up.pop(answer.call_id, None)
        if session_id is not None and not answer.code and self.on_late is not None:
            self.on_late(session_id, answer.response)

    def _fail(self, call_ids: list[int], failure: CallFailed) -> None:
        for call_id in call_ids:
            future = self.waiting.get(call_id)
            if future is not None and not future.done():
                future.set_exception(failure)

    async def ask(self, call_id: int, request: pdp_pb2.DecideRequest) -> pdp_pb2.DecideResponse:
        if self.ended is not None:
            raise self.ended
        future: asyncio.Future[pdp_pb2.DecideResponse] = asyncio.get_running_loop().create_future()
        self.waiting[call_id] = future
        self.outbox.append(pdp_pb2.DecideCall(call_id=call_id, request=request))
        self.queued.set()
        try:
            return await future
        finally:
            del self.waiting[call_id]
            if not future.done():  # out of time: its answer, should it come, is reported
                if len(self.gave_up) >= MAX_GAVE_UP:
                    self.gave_up.pop(next(iter(self.gave_up)))
                self.gave_up[call_id] = request.session_id

    async def close(self) -> None:
        self.call.cancel()
        for task in (self.reader, self.writer):
            task.cancel()
        for task in (self.reader, self.writer):
            with contextlib.suppress(asyncio.CancelledError):
                await task


class DecideCalls:
    """Decide over a stream of the given stub's channel."""

    def __init__(
        self, stub: pdp_pb2_grpc.DecisionServiceStub, metadata: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self._stub = stub
        self._metadata = metadata  # the proxy's credential, when it has one
        self._stream: _Stream | None = None
        self._last_id = 0
        self.on_late: OnLate | None = None  # told of answers that came too late

    async def decide(
        self, request: pdp_pb2.DecideRequest, timeout: float
    ) -> pdp_pb2.DecideResponse:
        """The answer, or CallFailed with the status the call ended with (a deadline
        that runs out: DEADLINE_EXCEEDED)."""
        stream = self._stream
        if stream is None or stream.ended is not None:
            stream = self._stream = _Stream(self._stub, self._metadata)
            stream.on_late = self.on_late
        self._last_id += 1
        try:
            async with asyncio.timeout(timeout):
                return await stream.ask(self._last_id, request)
        except TimeoutError:
            raise CallFailed(grpc.StatusCode.DEADLINE_EXCEEDED) from None

    async def close(self) -> None:
        if self._stream is not None:
            await self._stream.close()
            self._stream = None
