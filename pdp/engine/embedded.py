"""The embedded engine: the real OPA evaluator in a pool of replaceable worker processes.

Owns the worker pool, per-evaluation deadlines and hot reload of the policy directory.
Evaluations that wait for a worker together go to it together (one write, answered in
order, EVALUATIONS_PER_TRIP at most): under load, one round trip serves several.
The Go evaluator has no timeout of its own, so an evaluation that overruns its deadline
is answered with EngineError (the PDP turns that into a deny), and the worker that ran it
is killed and replaced when it has still not answered OVERRUN_GRACE_SECONDS later.
Workers are fresh interpreters (`python -m pdp.engine.worker`), never forks of this
process. The policy comes from pdp.engine.policy_source (a directory,
a bundle file or a bundle URL). A policy change that fails to load, to verify or to
evaluate once is reported and the running policy stays in place.

A swap never mixes policies inside one evaluation: a worker loads the new policy into a
fresh evaluator while it is out of the pool and answers every evaluation with the
revision of the one evaluator it ran on, so each decision names exactly the policy that
made it; while the pool rolls over, some decisions are still made by the previous one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from pdp.engine import DECISION_PATH, EngineError, EngineResult, frames
from pdp.engine.bundle import BundleError, PolicyBundle
from pdp.engine.input_paths import Kept, merged, prune_spec, pruned
from pdp.engine.opa import EvaluationFailed, PolicyLoadError, engine_version, parse_envelope
from pdp.engine.policy_source import PolicySource, source_for
from pdp.plumbing.deadlines import answered_by
from portcullis.config import EngineSettings

log = logging.getLogger("portcullis.engine")

START_TIMEOUT_SECONDS = 30.0
# How long past its deadline an evaluation may still answer before the worker running it
# is taken for a runaway and replaced. Its caller is denied at the deadline all the same;
# the grace spares the pool a replacement for an evaluation that was only late. Under a
# load spike a finite evaluation overruns by a little, while a replacement costs a worker
# start (0.5-2 s of a core) during which the pool is one worker short: replacing at the
# deadline turned late answers into seconds of denials (seen: psql's `\d customers` at a
# PDP host's load of 12, each ~3 ms of evaluation CPU: two overruns, both workers
# replaced, then session opens refused "no evaluation worker free"). A runaway holds its
# worker this much longer before it goes.
OVERRUN_GRACE_SECONDS = 1.0
# The Go runtime inside each worker: one evaluation at a time needs one scheduler thread
# (the pool gives the parallelism), and collecting at 8x the live heap instead of 2x
# cuts the collector's work for some MB more. Measured here: GOGC 100 -> 400, ~850 -> ~555
# µs of CPU per evaluation of the shipped policy; 400 -> 800 (agent inputs, 4,800
# evaluations, gctrace): collector CPU 23-25 -> 11 µs per evaluation, a worker's peak RSS
# 88 -> 124 MB (1600: 6-10 µs, 172 MB). An operator's own GOMAXPROCS/GOGC wins.
GO_RUNTIME = {"GOMAXPROCS": "1", "GOGC": "800"}


def restart_with_go_runtime() -> None:
    """Start this process again with GO_RUNTIME in its environment, unless it is there
    already: for a process that loads the evaluator itself (a benchmark) and must measure
    it as the workers run it. The Go runtime inside the evaluator's library reads the
    environment the process started with, not os.environ as changed later: set there,
    GOMAXPROCS=1 and GOGC=800 went unread (gctrace: 2 P, a 28 MB goal instead of ~124)."""
    missing = {k: v for k, v in GO_RUNTIME.items() if k not in os.environ}
    if missing:
        argv = [sys.executable, *sys.orig_argv[1:]]  # this interpreter, as it was started
        os.execve(sys.executable, argv, {**os.environ, **missing})  # noqa: S606


# answers whose document is remembered by their bytes (EmbeddedEngine._read); each holds
# about 1 KB and its document, and the table starts over when full
ANSWERS_REMEMBERED = 1024
_UNREAD = object()
# evaluations sent to a worker in one write at most: a busy PDP's evaluations wait for a
# worker together anyway, and one round trip for several saves a wake-up of the worker and
# of the loop per evaluation; bounded because an overrun fails the ones sent after it
EVALUATIONS_PER_TRIP = 8

_make_encoder = getattr(json.encoder, "c_make_encoder", None)  # CPython's accelerator


def _not_json(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# json.dumps(policy_input, separators=(",", ":"), ensure_ascii=False), without the encoder
# object json.dumps builds for every call with arguments (an input is encoded for every
# evaluation). No circular-reference check: inputs are trees this program builds (a cycle
# raises RecursionError, taken as not JSON)
_c_input = (
    _make_encoder(
        None, _not_json, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )
    if _make_encoder is not None
    else None
)
_INPUT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


# orjson, where installed, writes the same JSON value for about a seventh of the CPU
# (json's C encoder cost ~150,000 instructions for a 1.3 KB postgres.query input, an
# eighth of the PDP's own work per evaluated decision). Whatever it would write otherwise
# goes to json.dumps instead, so the evaluator sees what it always saw: what orjson refuses
# (keys that are not str, integers past 64 bits, lone surrogates, subclasses of dict,
# list, str and int, dataclasses, dates: passed through to a default that refuses), and
# every output holding a `null` value (orjson writes NaN and infinity as null, where
# json.dumps writes them as the evaluator refuses them: a deny; a None takes the slow way
# too). A value follows `:`, `[` or `,` in orjson's compact bytes; `null` inside a string
# (SQL's IS NULL: ~150,000 instructions down the slow way) is not one, unless its text
# holds one of those three spellings, which goes the slow way, as any doubt does.
# Beyond JSON's own types only values no input holds differ: a uuid.UUID or a plain
# Enum is written as its text or value instead of refused.
try:
    import orjson
except ImportError:  # pragma: no cover - the json module's encoder alone
    orjson = None  # type: ignore[assignment]

_ORJSON_REFUSES = (
    orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    if orjson is not None
    else 0
)


def _holds_null_value(written: bytes) -> bool:
    """Whether orjson's compact bytes may hold a null value (or a NaN or an infinity
    written as one): `null` after `:`, `[` or `,`, where any value starts. One scan for
    `null` first: most inputs hold none, and the three scans cost more than orjson's
    encoding itself (1.5 KB postgres.query input: 2.65 -> 1.02 µs, orjson 1.7 µs)."""
    return b"null" in written and (
        b":null" in written or b",null" in written or b"[null" in written
    )


def input_to_json(policy_input: dict[str, Any]) -> bytes:
    """The policy input as the JSON bytes a worker hands the evaluator: json.dumps's JSON
    value (its very bytes whenever they hold null, NaN or infinity)."""
    if orjson is not None:
        try:
            fast = orjson.dumps(policy_input, default=_not_json, option=_ORJSON_REFUSES)
        except TypeError:  # orjson.JSONEncodeError: json.dumps decides
            pass
        else:
            if not _holds_null_value(fast):
                return fast
    if _c_input is None:
        return _INPUT.encode(policy_input).encode()
    return "".join(_c_input(policy_input, 0)).encode()


def start_worker_process(environ: dict[str, str]) -> tuple[subprocess.Popen[bytes], socket.socket]:
    """A worker process started with `environ`, and the parent's end of its socket."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # subprocess.Popen, not the event loop's subprocess support: under uvloop that is
        # libuv's uv_spawn, a fork() of this process with gRPC's threads running (gRPC logs
        # "fork_posix.cc ... skipping fork() handlers"), while CPython's Popen execs
        # through vfork, so no fork handler runs and nothing is copied
        proc = subprocess.Popen(
            [sys.executable, "-m", "pdp.engine.worker", str(child.fileno())],
            pass_fds=(child.fileno(),),
            stdin=subprocess.DEVNULL,
            env=environ,
        )
    finally:
        child.close()
    return proc, parent


class _Process:
    """A child process started by Popen, waited for without blocking the event loop."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def kill(self) -> None:
        self.popen.kill()

    async def wait(self) -> int:
        while (code := self.popen.poll()) is None:
            await asyncio.sleep(0.02)
        return code


class _Channel(asyncio.Protocol):
    """The parent's end of a worker's socket: requests written together, answered in
    order, one frame each. A protocol, not a StreamReader/Writer pair: an evaluation costs
    one future and no wake-up of its own, where readexactly() of a header and then of a
    body cost two of each (this hop is paid on every evaluated decision)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiters: collections.deque[asyncio.Future[bytes]] = collections.deque()
        self._lost: BaseException | None = None
        self._then: Callable[[], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._deliver()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = exc or ConnectionResetError("evaluation worker closed its socket")
        self._then = None
        waiters, self._waiters = self._waiters, collections.deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(self._lost)

    def _deliver(self) -> None:
        size = frames.HEADER.size
        buffer = self._buffer
        taken = 0
        while self._waiters and len(buffer) - taken >= size:
            try:
                length = frames.decode_length(bytes(buffer[taken : taken + size]))
            except ValueError as exc:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(exc)
                break
            end = taken + size + length
            if len(buffer) < end:
                break
            body = bytes(buffer[taken + size : end])
            taken = end
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(body)
        if taken:
            del buffer[:taken]
            if not self._waiters and self._then is not None:
                then, self._then = self._then, None
                then()

    def request(self, frame: bytes) -> asyncio.Future[bytes]:
        """Send one frame: a future for the body of the frame that answers it."""
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.send(frame, (waiter,))
        return waiter

    def send(
        self,
        data: bytes,
        waiters: Iterable[asyncio.Future[bytes]],
        then: Callable[[], None] | None = None,
    ) -> None:
        """Write frames (one or several, joined) and wait for their answers in order, each
        into its waiter (a waiter already done, its caller gone, is passed over); `then`
        runs once every waiter so far is answered. Raises ConnectionResetError when the
        worker's socket is gone (then nothing is sent)."""
        if self._lost is not None or self.transport is None:
            raise ConnectionResetError("evaluation worker closed its socket")
        self._waiters.extend(waiters)
        self._then = then
        self.transport.write(data)

    def awaits(self, waiter: asyncio.Future[bytes]) -> bool:
        """Whether the answer for `waiter` has yet to come."""
        return waiter in self._waiters

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _WorkerProcess:
    """The parent's handle on one worker: its process and its end of the socket."""

    def __init__(self, proc: _Process, channel: _Channel) -> None:
        self.proc = proc
        self.channel = channel
        self.revision = ""
        self.generation = 0

    @classmethod
    async def spawn(cls) -> _WorkerProcess:
        proc, parent = start_worker_process({**GO_RUNTIME, **os.environ})
        loop = asyncio.get_running_loop()
        _, channel = await loop.create_unix_connection(_Channel, sock=parent)
        return cls(_Process(proc), channel)

    async def call(self, message: dict[str, Any]) -> dict[str, Any]:
        return frames.decode(await self.channel.request(frames.encode(message)))

    async def evaluate(self, path: str, input_json: bytes) -> bytes:
        return await self.channel.request(frames.encode_eval(path, input_json))

    async def load(self, bundle: PolicyBundle) -> None:
        reply = await asyncio.wait_for(
            self.call({"op": "load", "bundle": bundle.to_wire()}), START_TIMEOUT_SECONDS
        )
        if not reply.get("ok"):
            raise PolicyLoadError(reply.get("error", "unknown load error"))
        self.revision = reply["revision"]

    def kill(self) -> None:
        self.channel.close()
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    async def stop(self) -> None:
        self.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.proc.wait(), 5)


class _Evaluation:
    """One evaluation: its frame, the worker it was sent to, its answer's body."""

    __slots__ = ("answer", "frame", "worker")

    def __init__(self, frame: bytes, loop: asyncio.AbstractEventLoop) -> None:
        self.frame = frame
        self.worker: _WorkerProcess | None = None
        self.answer: asyncio.Future[bytes] = loop.create_future()


class EmbeddedEngine:
    name = "embedded"
    knows_revision = True

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self.size = settings.workers or os.cpu_count() or 1
        self.timeout = settings.timeout_ms / 1000
        self.bundle: PolicyBundle | None = None
        # the input paths the policies in force read (pdp.engine.input_paths): an input
        # is cut down to them before it is encoded for a worker; None keeps it whole (not
        # started, or a policy that reads the whole input)
        self._kept: Kept = None
        self.last_reload_error = ""
        # workers free for evaluations, and evaluations waiting for one (_dispatch)
        self._free: list[_WorkerProcess] = []
        self._waiting: collections.deque[_Evaluation] = collections.deque()
        # a reload waiting for a worker of the previous policy to be free (reload)
        self._rolling: asyncio.Future[_WorkerProcess | None] | None = None
        self.batch_limit = EVALUATIONS_PER_TRIP
        self._all: set[_WorkerProcess] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.source: PolicySource | None = None
        self._closing = False
        self.generation = 0
        self._published = ""
        self._revisions: dict[bytes, str] = {}  # an answer's header -> its revision
        self._results: dict[bytes, Any] = {}  # an answer's bytes -> its document (_read)
        # the deadlines of evaluations in flight, in order, and the one loop timer set for
        # the first (_expire_overdue): a timer per evaluation, its entry in the loop's
        # timers and its cancellation cost ~5,700 instructions (uvloop)
        self._deadlines: collections.deque[tuple[float, asyncio.Future[bytes]]] = (
            collections.deque()
        )
        self._deadline_timer: asyncio.TimerHandle | None = None
        # the event loop the engine runs on, kept from start(): on Python 3.11 every
        # asyncio.get_running_loop() is a getpid() system call (its check for a fork)
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def revision(self) -> str:
        """The revision every worker answers with (during a reload: the previous one)."""
        return self._published

    @property
    def version(self) -> str:
        return engine_version()

    async def start(self) -> None:
        """Load the policy into every worker; a policy that does not load stops start-up."""
        self._loop = asyncio.get_running_loop()
        try:
            self.source = source_for(self.settings)
            bundle = await self.source.load()
        except BundleError as exc:
            if self.source is not None:
                await self.source.close()
            raise PolicyLoadError(str(exc)) from None
        workers = await asyncio.gather(
            *(self._spawn(bundle) for _ in range(self.size)), return_exceptions=True
        )
        failures = [w for w in workers if isinstance(w, BaseException)]
        if failures:
            for w in workers:
                if isinstance(w, _WorkerProcess):
                    await w.stop()
            raise PolicyLoadError(str(failures[0]))
        self.bundle = bundle
        self._kept = prune_spec(bundle.modules)
        self._published = bundle.revision
        assert self.source is not None
        self.source.accept()
        for w in workers:
            assert isinstance(w, _WorkerProcess)
            self._all.add(w)
            self._release(w)
        if self.settings.reload:
            self._background(self._watch())
        log.info("embedded OPA engine: %d workers, policy %s", self.size, bundle.revision)

    async def _spawn(self, bundle: PolicyBundle) -> _WorkerProcess:
        worker = await _WorkerProcess.spawn()
        try:
            await worker.load(bundle)
        except BaseException:
            await worker.stop()
            raise
        return worker

    def _background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        for worker in list(self._all):
            await worker.stop()
        self._all.clear()
        if self.source is not None:
            await self.source.close()

    async def evaluate(
        self, policy_input: dict[str, Any], path: str = DECISION_PATH
    ) -> EngineResult:
        started = time.perf_counter()
        try:
            frame = frames.encode_eval(path, input_to_json(pruned(policy_input, self._kept)))
        except (TypeError, ValueError, RecursionError) as exc:
            raise EngineError(f"policy input is not JSON: {exc}") from None
        loop = self._loop
        if loop is None:  # not started: it waits for a worker until its deadline
            loop = self._loop = asyncio.get_running_loop()
        job = _Evaluation(frame, loop)
        self._waiting.append(job)
        if self._free:
            self._dispatch()
        deadline = loop.time() + self.timeout
        # one deadline for the wait for a free worker and the evaluation together, kept
        # in the engine's queue of deadlines (one loop timer for them all: _expire_overdue)
        deadlines = self._deadlines
        waited: Awaitable[bytes] = job.answer
        if deadlines and deadline < deadlines[-1][0]:  # out of order: a timer of its own
            waited = answered_by(job.answer, deadline)
        else:
            deadlines.append((deadline, job.answer))
            if self._deadline_timer is None:
                self._deadline_timer = loop.call_at(deadline, self._expire_overdue, deadline)
        try:
            raw = await waited
        except (TimeoutError, asyncio.CancelledError) as exc:
            worker = job.worker
            if worker is None:  # never sent: it waits no more (nor does its frame)
                with contextlib.suppress(ValueError):
                    self._waiting.remove(job)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise EngineError(
                    f"no evaluation worker free within {self.settings.timeout_ms} ms"
                ) from None
            # its answer, when it comes, is passed over (_Channel._deliver). The evaluator
            # cannot be interrupted: a worker that has not answered by the deadline and
            # its grace is replaced, and the evaluations sent after this one on it fail
            # with it (denied); the call of a caller gone is an overrun all the same
            loop.call_at(deadline + OVERRUN_GRACE_SECONDS, self._overdue, worker, job)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise EngineError(
                f"policy evaluation exceeded its {self.settings.timeout_ms} ms deadline"
            ) from None
        except (OSError, ValueError) as exc:
            if job.worker is not None:  # its worker died, or answered garbage
                self._replace(job.worker)
            raise EngineError(f"evaluation worker failed: {type(exc).__name__}") from None
        header, _, envelope = raw.partition(b"\n")
        try:
            revision = self._revisions.get(header)
            if revision is None:
                revision = self._revision_of(header)
            result = self._results.get(envelope, _UNREAD)
            if result is _UNREAD:
                result = self._read(envelope)
        except EvaluationFailed as exc:
            raise EngineError(f"policy evaluation failed: {exc}") from None
        except ValueError:
            raise EngineError("evaluation worker answered garbage") from None
        elapsed = (time.perf_counter() - started) * 1000
        return EngineResult(result, revision, elapsed, envelope)

    def _dispatch(self) -> None:
        """Send the evaluations waiting to the free workers, several to a worker in one
        write (at most batch_limit, shared out when several workers are free): the worker
        reads them at once and answers each in turn, so a busy PDP pays one round trip to
        a worker (its write, the worker's wake-up, the loop's read) per batch instead of
        per evaluation."""
        waiting, free = self._waiting, self._free
        while waiting and free:
            worker = free.pop()
            share = min(self.batch_limit, -(-len(waiting) // (len(free) + 1)))
            batch: list[_Evaluation] = []
            while waiting and len(batch) < share:
                job = waiting.popleft()
                if not job.answer.done():  # else its caller is gone: never evaluated
                    job.worker = worker
                    batch.append(job)
            if not batch:
                free.append(worker)
                return
            try:
                worker.channel.send(
                    b"".join(job.frame for job in batch),
                    [job.answer for job in batch],
                    functools.partial(self._release, worker),
                )
            except ConnectionResetError as exc:
                for job in batch:  # each caller replaces the worker (once) and is denied
                    if not job.answer.done():
                        job.answer.set_exception(exc)

    def _expire_overdue(self, armed: float) -> None:
        """The engine's deadline timer, set for the first deadline of its queue: every
        evaluation whose deadline has come (the one the timer was set for, and any other
        up to now) and that has no answer yet gets TimeoutError, as a timer of its own
        would have given it (pdp.plumbing.deadlines); evaluations answered meanwhile
        leave the queue; then the timer is set for the first deadline still ahead.
        Deadlines enter the queue in order (one timeout per engine, the loop's clock
        never goes back), so its head is always the first to come."""
        self._deadline_timer = None
        deadlines = self._deadlines
        loop = asyncio.get_running_loop()
        now = max(armed, loop.time())
        while deadlines:
            when, answer = deadlines[0]
            if not answer.done():
                if when > now:
                    self._deadline_timer = loop.call_at(when, self._expire_overdue, when)
                    return
                answer.set_exception(TimeoutError())
            deadlines.popleft()

    def _overdue(self, worker: _WorkerProcess, job: _Evaluation) -> None:
        """The deadline and grace of an evaluation that overran or whose caller left: the
        worker is replaced if it has still not answered it (else an input that never
        ends would hold a worker for good)."""
        if worker.channel.awaits(job.answer):
            self._replace(worker)

    def _release(self, worker: _WorkerProcess) -> None:
        """A worker has answered all it was sent: to a reload waiting for a worker of the
        previous policy, else free for the evaluations waiting."""
        if worker not in self._all:  # replaced or retired meanwhile
            return
        rolling = self._rolling
        if rolling is not None and worker.generation != self.generation and not rolling.done():
            self._rolling = None
            rolling.set_result(worker)
            return
        self._free.append(worker)
        if self._waiting:
            self._dispatch()

    async def _stale_worker(self) -> _WorkerProcess | None:
        """A free worker still on the previous policy, once there is one (None: look
        again, the pool changed)."""
        for worker in self._free:
            if worker.generation != self.generation:
                self._free.remove(worker)
                return worker
        self._rolling = asyncio.get_running_loop().create_future()
        return await self._rolling

    def _read(self, envelope: bytes) -> Any:
        """The document in an answer, remembered by the answer's bytes: the same few
        answers come again and again (a session's statements, sessions of the same groups),
        and reading one (about 1 KB) cost ~25 us. An answer that reports an error raises
        (EvaluationFailed) every time it comes; it is never remembered."""
        result = parse_envelope(envelope)
        if len(self._results) >= ANSWERS_REMEMBERED:
            self._results.clear()
        self._results[envelope] = result
        return result

    def _revision_of(self, header: bytes) -> str:
        """The revision an answer's header names (a worker sends the same header for every
        answer of one policy: read once per policy, not per evaluation)."""
        meta = json.loads(header)
        if not isinstance(meta, dict):
            raise ValueError("an answer's header is not an object")
        revision = str(meta.get("revision", ""))
        if len(self._revisions) >= 64:
            self._revisions.clear()
        self._revisions[header] = revision
        return revision

    def _retire(self, worker: _WorkerProcess) -> None:
        """Stop a worker the pool no longer needs (the pool keeps `size` workers)."""
        worker.kill()
        self._all.discard(worker)
        self._background(worker.stop())

    @property
    def live_workers(self) -> int:
        """Worker processes of the pool that are running (for tests and /metrics)."""
        return sum(1 for w in self._all if w.proc.returncode is None)

    def _replace(self, worker: _WorkerProcess) -> None:
        """Kill a worker that overran or failed and start another with the current policy
        (once: every evaluation it held fails, and each of their callers asks)."""
        if worker not in self._all:
            return
        if worker in self._free:
            self._free.remove(worker)
        if self._rolling is not None and not self._rolling.done():
            self._rolling.set_result(None)  # the reload looks at the pool again
            self._rolling = None
        worker.kill()
        self._all.discard(worker)
        self._background(worker.stop())
        if not self._closing and self.bundle is not None:
            self._background(self._respawn())

    async def _respawn(self) -> None:
        while not self._closing and self.bundle is not None:
            generation = self.generation
            try:
                worker = await self._spawn(self.bundle)
            except Exception:
                log.exception("could not start a replacement evaluation worker; retrying")
                await asyncio.sleep(1)
                continue
            if generation != self.generation:  # a reload happened while it started
                try:
                    await worker.load(self.bundle)
                except Exception:
                    await worker.stop()
                    continue
                generation = self.generation
            worker.generation = generation
            self._all.add(worker)
            self._release(worker)
            return

    async def _watch(self) -> None:
        assert self.source is not None
        while True:
            await asyncio.sleep(self.source.poll_seconds)
            await self.poll()

    async def poll(self) -> bool:
        """Ask the source once; put a changed policy in force. False: nothing changed, or
        the new policy was refused (it does not load, or its signature does not verify)
        and the running one stays."""
        assert self.source is not None
        try:
            bundle = await self.source.changed()
        except BundleError as exc:
            self.last_reload_error = str(exc)
            log.error(
                "policy from %s refused, keeping revision %s: %s",
                self.source.description,
                self.revision,
                exc,
            )
            return False
        if bundle is None:
            return False
        if not await self.reload(bundle):
            return False
        self.source.accept()
        return True

    async def reload(self, bundle: PolicyBundle | None = None) -> bool:
        """Put a policy in force (default: the source's as it is now); on any failure keep
        the running policy."""
        try:
            if bundle is None:
                assert self.source is not None
                bundle = await self.source.load()
            probe = await self._spawn(bundle)
        except (BundleError, PolicyLoadError, OSError) as exc:
            self.last_reload_error = str(exc)
            log.error("policy reload failed, keeping revision %s: %s", self.revision, exc)
            return False
        self.bundle = bundle
        # while the pool rolls over, an evaluation may run on either policy: it is sent
        # what either reads (the previous policy's paths may be None already: whole)
        self._kept = merged(self._kept, prune_spec(bundle.modules))
        self.last_reload_error = ""
        self.generation += 1
        probe.generation = self.generation
        self._all.add(probe)
        self._release(probe)
        # roll the pool in place: the probe takes a stale worker's place (that one retires),
        # and each other stale worker loads the validated policy when it is free
        while any(w.generation != self.generation for w in self._all):
            worker = await self._stale_worker()
            if worker is None:
                continue
            if len(self._all) > self.size:
                self._retire(worker)
                continue
            try:
                await worker.load(bundle)
                worker.generation = self.generation
            except Exception:
                self._replace(worker)
                continue
            self._release(worker)
        if self.bundle is bundle:  # every worker runs it now (and no newer one is rolling)
            self._kept = prune_spec(bundle.modules)
        self._published = bundle.revision
        log.info("policy reloaded: revision %s", bundle.revision)
        return True
