"""Evaluation workers kept for the test PDPs of one pytest process.

A test PDP's engine starts its worker (a fresh interpreter that loads the OPA evaluator
and compiles the whole policy) when the PDP starts: ~0.5 s idle, 1-2 s on a loaded
2-core VM, and the suite starts hundreds of PDPs, mostly on the same shipped policy. Here
an engine that closes hands its idle workers back instead of stopping them, and the next
engine of the same policy (and worker environment) takes them (each one's socket joined to
the engine's event loop) instead of starting its own. Nothing else changes: the engine
evaluates, kills and replaces these workers as its own. A policy's first PDP starts its
workers as before; a process keeps at most WORKERS_KEPT idle, for its POLICIES_KEPT
policies used last. (Workers started ahead by a thread, which this replaces, were one start
per PDP all the same, and their key held pytest's per-test PYTEST_CURRENT_TEST, so no
test's PDP took one another test had made ready.)
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

from pdp.engine import embedded
from pdp.engine.bundle import PolicyBundle

# policies whose workers are kept (a test's own policy is often used by its module only)
POLICIES_KEPT = 3
# idle workers kept at once, in all (a worker loaded with the shipped policy: ~230 MB): two
# for an arena's pool of two, or a test's two PDPs side by side
WORKERS_KEPT = 4


class _Ready:
    """A worker process loaded with a policy, idle, not joined to an event loop."""

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


# what pytest sets in the environment for each test and phase ("tests/x.py::test_y (call)"):
# no worker reads it, and in the key it made each test's policy a new one
PER_TEST_VARIABLES = frozenset({"PYTEST_CURRENT_TEST"})


def _policy_key(bundle: PolicyBundle, environ: dict[str, str]) -> str:
    # not the bundle's root: a worker never reads it (tests copy rego/ to a directory
    # of their own, the same policy under the same content revision)
    kept = {name: value for name, value in environ.items() if name not in PER_TEST_VARIABLES}
    wire = json.dumps(
        [bundle.modules, bundle.data, bundle.revision, kept],
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(wire.encode()).hexdigest()


class WarmWorkers:
    """The idle workers engines handed back, by policy, most recently used last."""

    def __init__(self) -> None:
        self._ready: OrderedDict[str, list[_Ready]] = OrderedDict()
        self._paused = False
        self._closed = False
        self._lock = threading.Lock()

    def take(self, bundle: PolicyBundle, environ: dict[str, str]) -> _Ready | None:
        """An idle worker loaded with this policy, if one was handed back."""
        key = _policy_key(bundle, environ)
        with self._lock:
            if self._paused or self._closed:
                return None
            kept = self._ready.setdefault(key, [])
            self._ready.move_to_end(key)
            while len(self._ready) > POLICIES_KEPT:
                _, old = self._ready.popitem(last=False)
                for ready in old:
                    ready.discard()
            return kept.pop() if kept else None

    def give_back(self, key: str, ready: _Ready) -> None:
        """A worker an engine is done with, idle and loaded with the policy of `key`:
        kept for the next engine of that policy (while WORKERS_KEPT allow), else stopped."""
        with self._lock:
            if not self._closed and not self._paused and key in self._ready:
                self._ready[key].append(ready)
                self._ready.move_to_end(key)
                surplus = sum(len(kept) for kept in self._ready.values()) - WORKERS_KEPT
                for kept in self._ready.values():  # the least recently used first
                    while surplus > 0 and kept:
                        kept.pop(0).discard()
                        surplus -= 1
                return
        ready.discard()

    def pause(self) -> None:
        """No worker handed over while a test counts the PDP's worker processes: the kept
        ones stopped."""
        with self._lock:
            self._paused = True
            for kept in self._ready.values():
                while kept:
                    kept.pop().discard()

    def resume(self) -> None:
        with self._lock:
            self._paused = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for kept in self._ready.values():
                while kept:
                    kept.pop().discard()
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
