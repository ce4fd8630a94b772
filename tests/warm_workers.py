"""Evaluation workers started ahead for the test PDPs of one pytest process.

A test PDP's engine starts its worker (a fresh interpreter that loads the OPA evaluator
and compiles the whole policy) when the PDP starts: ~0.5 s idle, 1-2 s on a loaded
2-core VM, and the suite starts hundreds of PDPs, mostly on the same shipped policy. Here
each pytest process keeps one worker per recent policy started and loaded ahead, by a
thread that does the same spawn and load the engine does (`python -m pdp.engine.worker`,
the same load frame, the same answer checked); an engine that starts a worker for a policy
with one ready takes it (its socket joined to the engine's event loop) and the thread
starts the next; an engine that closes hands an idle worker of its policy back instead of
stopping it. Nothing else changes: the engine evaluates, kills and replaces these workers
as its own. Workers are made ready for a policy from its second start on.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import threading
import weakref
from collections import OrderedDict
from typing import Any

from pdp.engine import embedded, frames
from pdp.engine.bundle import PolicyBundle

# policies kept ready at once (a test's own policy is often used by its module only)
POLICIES_KEPT = 3
LOAD_TIMEOUT_SECONDS = embedded.START_TIMEOUT_SECONDS


class _Ready:
    """A worker process started and loaded, not yet joined to an event loop."""

    def __init__(self, popen: subprocess.Popen[bytes], sock: socket.socket, revision: str):
        self.popen = popen
        self.sock = sock
        self.revision = revision

    def discard(self) -> None:
        self.sock.close()
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()


def _worker_environ() -> dict[str, str]:
    """The environment the engine starts a worker with now (a test may change it)."""
    return {**embedded.GO_RUNTIME, **os.environ}


def _policy_key(bundle: PolicyBundle, environ: dict[str, str]) -> str:
    # not the bundle's root: a worker never reads it (tests copy rego/ to a directory
    # of their own, the same policy under the same content revision)
    wire = json.dumps(
        [bundle.modules, bundle.data, bundle.revision, environ],
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(wire.encode()).hexdigest()


def _receive(sock: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionResetError("evaluation worker closed its socket")
        data += chunk
    return bytes(data)


def _start_loaded(bundle: PolicyBundle, environ: dict[str, str]) -> _Ready | None:
    """What EmbeddedEngine._spawn does, blocking: None when the policy does not load."""
    popen, parent = embedded.start_worker_process(environ)
    ready = _Ready(popen, parent, "")
    try:
        parent.settimeout(LOAD_TIMEOUT_SECONDS)
        parent.sendall(frames.encode({"op": "load", "bundle": bundle.to_wire()}))
        length = frames.decode_length(_receive(parent, frames.HEADER.size))
        reply = frames.decode(_receive(parent, length))
        parent.settimeout(None)
    except (OSError, ValueError):
        ready.discard()
        return None
    if not reply.get("ok"):
        ready.discard()
        return None
    ready.revision = reply["revision"]
    return ready


class WarmWorkers:
    """One loaded worker kept ready per recent policy; a thread refills what is taken."""

    def __init__(self) -> None:
        self._ready: OrderedDict[str, _Ready | None] = OrderedDict()
        self._wanted: dict[str, tuple[PolicyBundle, dict[str, str]]] = {}
        self._seen: set[str] = set()
        self._paused = False
        self._starting = False  # the thread is starting a worker now
        self._lock = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._refill, name="warm-workers", daemon=True)
        self._thread.start()

    def take(self, bundle: PolicyBundle, environ: dict[str, str]) -> _Ready | None:
        """A loaded worker for this policy if one is ready (and ask for the next)."""
        key = _policy_key(bundle, environ)
        with self._lock:
            if self._paused:
                return None
            if key not in self._seen:  # a policy started once may never come back
                self._seen.add(key)
                return None
            ready = self._ready.pop(key, None)
            self._ready[key] = None
            self._wanted[key] = (bundle, environ)
            while len(self._ready) > POLICIES_KEPT:
                _, old = self._ready.popitem(last=False)
                if old is not None:
                    old.discard()
            self._lock.notify_all()
        return ready

    def give_back(self, key: str, ready: _Ready) -> None:
        """A worker an engine is done with, idle and loaded with the policy of `key`:
        kept for the next engine if none is ready for it, else stopped."""
        with self._lock:
            if not self._closed and not self._paused and self._ready.get(key, 1) is None:
                self._ready[key] = ready
                self._wanted.pop(key, None)
                return
        ready.discard()

    def _refill(self) -> None:
        while True:
            with self._lock:
                while not self._closed and (self._paused or not self._wanted):
                    self._lock.wait()
                if self._closed:
                    return
                key, (bundle, environ) = self._wanted.popitem()
                self._starting = True
            ready = _start_loaded(bundle, environ)
            with self._lock:
                self._starting = False
                self._lock.notify_all()
                stale = self._closed or self._paused or key not in self._ready
                if stale or self._ready[key] is not None:
                    if ready is not None:
                        ready.discard()
                    continue
                self._ready[key] = ready

    def pause(self) -> None:
        """No worker started ahead while a test counts the PDP's worker processes: the
        ready ones stopped, the one starting waited for and stopped."""
        with self._lock:
            self._paused = True
            while self._starting:
                self._lock.wait()
            for key, ready in list(self._ready.items()):
                if ready is not None:
                    ready.discard()
                    self._ready[key] = None

    def resume(self) -> None:
        with self._lock:
            self._paused = False
            self._lock.notify_all()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
            for ready in self._ready.values():
                if ready is not None:
                    ready.discard()
            self._ready.clear()


# the environment each worker an engine took was started with
_ENVIRONS: weakref.WeakKeyDictionary[embedded._WorkerProcess, dict[str, str]] = (
    weakref.WeakKeyDictionary()
)


def install() -> WarmWorkers:
    """Have every EmbeddedEngine of this process take a worker ready for its policy."""
    warm = WarmWorkers()
    own_spawn = embedded.EmbeddedEngine._spawn

    async def spawn(engine: embedded.EmbeddedEngine, bundle: PolicyBundle) -> Any:
        environ = _worker_environ()
        ready = warm.take(bundle, environ)
        if ready is None:
            worker = await own_spawn(engine, bundle)
        else:
            loop = embedded.asyncio.get_running_loop()
            _, channel = await loop.create_unix_connection(embedded._Channel, sock=ready.sock)
            worker = embedded._WorkerProcess(embedded._Process(ready.popen), channel)
            worker.revision = ready.revision
        _ENVIRONS[worker] = environ
        return worker

    own_close = embedded.EmbeddedEngine.close

    async def close(engine: embedded.EmbeddedEngine) -> None:
        bundle = engine.bundle
        for worker in list(engine._free):
            if bundle is None or worker.revision != bundle.revision:
                continue
            if worker.generation != engine.generation or worker.proc.returncode is not None:
                continue
            environ = _ENVIRONS.pop(worker, None)
            ready = _detached(worker) if environ is not None else None
            if environ is not None and ready is not None:
                # (the engine's policy now: a reload loads it into the same workers)
                key = _policy_key(bundle, environ)
                engine._free.remove(worker)
                engine._all.discard(worker)
                warm.give_back(key, ready)
        await own_close(engine)

    setattr(embedded.EmbeddedEngine, "_spawn", spawn)  # noqa: B010
    setattr(embedded.EmbeddedEngine, "close", close)  # noqa: B010
    return warm


def _detached(worker: embedded._WorkerProcess) -> _Ready | None:
    """An idle worker's process and its socket, taken off the engine's event loop."""
    channel = worker.channel
    transport = channel.transport
    if transport is None or channel._waiters or channel._buffer or channel._lost is not None:
        return None
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    kept = socket.socket(fileno=os.dup(sock.fileno()))
    transport.abort()
    assert isinstance(worker.proc, embedded._Process)
    return _Ready(worker.proc.popen, kept, worker.revision)
