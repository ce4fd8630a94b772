"""A proxy's Decide calls over one DecideStream (pdp.decide_stream), opened on first use.

Owns the stream's life on the client side: calls tagged with ids, written one at a time,
answers matched back to their callers by id, each call bounded by its own deadline. When
the stream ends or breaks, every call still waiting on it fails with the stream's status,
and the next call opens a new stream. Failures are raised as CallFailed, carrying the
status a unary Decide would have ended with; the PDP client turns them into denies.
"""

from __future__ import annotations

import asyncio
import contextlib

import grpc
from portcullis.v1 import pdp_pb2, pdp_pb2_grpc

_STATUS = {status.value[0]: status for status in grpc.StatusCode}


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

    def __init__(self, stub: pdp_pb2_grpc.DecisionServiceStub) -> None:
        self.call = stub.DecideStream()
        self.waiting: dict[int, asyncio.Future[pdp_pb2.DecideResponse]] = {}
        self.writing = asyncio.Lock()
        self.ended: CallFailed | None = None
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        failure = CallFailed(grpc.StatusCode.UNAVAILABLE, "the decision stream ended")
        try:
            while True:
                answer = await self.call.read()
                if answer is grpc.aio.EOF:
                    break
                future = self.waiting.get(answer.call_id)
                if future is None or future.done():
                    continue  # its caller gave up
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
            for future in self.waiting.values():
                if not future.done():
                    future.set_exception(failure)

    async def ask(self, call_id: int, request: pdp_pb2.DecideRequest) -> pdp_pb2.DecideResponse:
        future: asyncio.Future[pdp_pb2.DecideResponse] = asyncio.get_running_loop().create_future()
        self.waiting[call_id] = future
        try:
            async with self.writing:
                if self.ended is not None:
                    raise self.ended
                try:
                    await self.call.write(pdp_pb2.DecideCall(call_id=call_id, request=request))
                except grpc.aio.AioRpcError as exc:
                    raise CallFailed.of(exc) from None
                except asyncio.InvalidStateError:  # the stream finished meanwhile
                    raise self.ended or CallFailed(
                        grpc.StatusCode.UNAVAILABLE, "the decision stream ended"
                    ) from None
            return await future
        finally:
            del self.waiting[call_id]

    async def close(self) -> None:
        self.call.cancel()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader


class DecideCalls:
    """Decide over a stream of the given stub's channel."""

    def __init__(self, stub: pdp_pb2_grpc.DecisionServiceStub) -> None:
        self._stub = stub
        self._stream: _Stream | None = None
        self._last_id = 0

    async def decide(
        self, request: pdp_pb2.DecideRequest, timeout: float
    ) -> pdp_pb2.DecideResponse:
        """The answer, or CallFailed with the status the call ended with (a deadline
        that runs out: DEADLINE_EXCEEDED)."""
        stream = self._stream
        if stream is None or stream.ended is not None:
            stream = self._stream = _Stream(self._stub)
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
