"""The embedded engine: the real OPA evaluator in a pool of replaceable worker processes.

Owns the worker pool, per-evaluation deadlines and hot reload of the policy directory.
The Go evaluator has no timeout of its own, so an evaluation that overruns its deadline
is answered with EngineError (the PDP turns that into a deny) and the worker that ran it
is killed and replaced. Workers are fresh interpreters (`python -m pdp.engine.worker`),
never forks of this process. The policy comes from pdp.engine.policy_source (a directory,
a bundle file or a bundle URL). A policy change that fails to load, to verify or to
evaluate once is reported and the running policy stays in place.

A swap never mixes policies inside one evaluation: a worker loads the new policy into a
fresh evaluator while it is out of the pool and answers every evaluation with the
revision of the one evaluator it ran on, so each decision names exactly the policy that
made it; while the pool rolls over, some decisions are still made by the previous one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from typing import Any

from pdp.engine import DECISION_PATH, EngineError, EngineResult, frames
from pdp.engine.bundle import BundleError, PolicyBundle
from pdp.engine.opa import EvaluationFailed, PolicyLoadError, engine_version, parse_envelope
from pdp.engine.policy_source import PolicySource, source_for
from portcullis.config import EngineSettings

log = logging.getLogger("portcullis.engine")

START_TIMEOUT_SECONDS = 30.0
# The Go runtime inside each worker: one evaluation at a time needs one scheduler thread
# (the pool gives the parallelism), and collecting at 4x the live heap instead of 2x
# halves the collector's work for a few MB more. Measured here: ~850 → ~555 µs of CPU
# per evaluation of the shipped policy. An operator's own GOMAXPROCS/GOGC wins.
GO_RUNTIME = {"GOMAXPROCS": "1", "GOGC": "400"}


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
    """The parent's end of a worker's socket: one request in flight, its answer the next
    frame. A protocol, not a StreamReader/Writer pair: an evaluation costs one future and
    one wake-up of the event loop, where readexactly() of a header and then of a body
    cost two of each (this hop is paid on every evaluated decision)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[bytes] | None = None
        self._lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._deliver()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = exc or ConnectionResetError("evaluation worker closed its socket")
        self._settle(exception=self._lost)

    def _settle(self, result: bytes = b"", exception: BaseException | None = None) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        if exception is not None:
            waiter.set_exception(exception)
        else:
            waiter.set_result(result)

    def _deliver(self) -> None:
        size = frames.HEADER.size
        if self._waiter is None or len(self._buffer) < size:
            return
        try:
            length = frames.decode_length(bytes(self._buffer[:size]))
        except ValueError as exc:
            self._settle(exception=exc)
            return
        if len(self._buffer) < size + length:
            return
        body = bytes(self._buffer[size : size + length])
        del self._buffer[: size + length]
        self._settle(body)

    async def request(self, frame: bytes) -> bytes:
        """Send one frame and return the body of the frame that answers it."""
        if self._lost is not None or self.transport is None:
            raise ConnectionResetError("evaluation worker closed its socket")
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self.transport.write(frame)
        return await waiter

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
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # subprocess.Popen, not the event loop's subprocess support: under uvloop that
            # is libuv's uv_spawn, a fork() of this process with gRPC's threads running
            # (gRPC logs "fork_posix.cc ... skipping fork() handlers"), while CPython's
            # Popen execs through vfork, so no fork handler runs and nothing is copied
            proc = subprocess.Popen(
                [sys.executable, "-m", "pdp.engine.worker", str(child.fileno())],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                env={**GO_RUNTIME, **os.environ},
            )
        finally:
            child.close()
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


class EmbeddedEngine:
    name = "embedded"
    knows_revision = True

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self.size = settings.workers or os.cpu_count() or 1
        self.timeout = settings.timeout_ms / 1000
        self.bundle: PolicyBundle | None = None
        self.last_reload_error = ""
        self._idle: asyncio.Queue[_WorkerProcess] = asyncio.Queue()
        self._all: set[_WorkerProcess] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.source: PolicySource | None = None
        self._closing = False
        self.generation = 0
        self._published = ""

    @property
    def revision(self) -> str:
        """The revision every worker answers with (during a reload: the previous one)."""
        return self._published

    @property
    def version(self) -> str:
        return engine_version()

    async def start(self) -> None:
        """Load the policy into every worker; a policy that does not load stops start-up."""
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
        self._published = bundle.revision
        assert self.source is not None
        self.source.accept()
        for w in workers:
            assert isinstance(w, _WorkerProcess)
            self._all.add(w)
            self._idle.put_nowait(w)
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
            input_json = json.dumps(
                policy_input, separators=(",", ":"), ensure_ascii=False
            ).encode()
        except (TypeError, ValueError) as exc:
            raise EngineError(f"policy input is not JSON: {exc}") from None
        worker: _WorkerProcess | None = None
        try:
            # one deadline for the wait for a free worker and the evaluation together
            # (asyncio.timeout, not wait_for: no task made per evaluation; when a worker
            # is free, the usual case, there is no wait for one at all)
            async with asyncio.timeout(self.timeout):
                worker = self._idle.get_nowait() if self._idle.qsize() else None
                if worker is None:
                    worker = await self._idle.get()
                raw = await worker.evaluate(path, input_json)
        except (TimeoutError, asyncio.CancelledError) as exc:
            if worker is None:
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise EngineError(
                    f"no evaluation worker free within {self.settings.timeout_ms} ms"
                ) from None
            self._replace(worker)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise EngineError(
                f"policy evaluation exceeded its {self.settings.timeout_ms} ms deadline"
            ) from None
        except (OSError, ValueError) as exc:
            assert worker is not None  # nothing before the evaluation raises these
            self._replace(worker)
            raise EngineError(f"evaluation worker failed: {type(exc).__name__}") from None
        self._idle.put_nowait(worker)
        header, _, envelope = raw.partition(b"\n")
        try:
            meta = json.loads(header)
            result = parse_envelope(envelope)
        except EvaluationFailed as exc:
            raise EngineError(f"policy evaluation failed: {exc}") from None
        except ValueError:
            raise EngineError("evaluation worker answered garbage") from None
        elapsed = (time.perf_counter() - started) * 1000
        return EngineResult(result, meta.get("revision", ""), elapsed, envelope)

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
        """Kill a worker that overran or failed and start another with the current policy."""
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
            self._idle.put_nowait(worker)
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
        self.last_reload_error = ""
        self.generation += 1
        probe.generation = self.generation
        self._all.add(probe)
        self._idle.put_nowait(probe)
        # roll the pool in place: the probe takes a stale worker's place (that one retires),
        # and each other stale worker loads the validated policy when it is free
        while any(w.generation != self.generation for w in self._all):
            worker = await self._idle.get()
            if worker.generation != self.generation and len(self._all) > self.size:
                self._retire(worker)
                continue
            if worker.generation != self.generation:
                try:
                    await worker.load(bundle)
                    worker.generation = self.generation
                except Exception:
                    self._replace(worker)
                    continue
            self._idle.put_nowait(worker)
            await asyncio.sleep(0)
        self._published = bundle.revision
        log.info("policy reloaded: revision %s", bundle.revision)
        return True
