"""An evaluation worker process: one OPA engine, one request at a time.

Started by pdp.engine.embedded with `python -m pdp.engine.worker FD` (a fresh
interpreter, never a fork of the PDP, so the Go runtime starts clean). It reads frames
from the socket FD and answers each:

    {"op": "load", "bundle": {...}}  → {"ok": true, "revision": ...} | {"ok": false, "error": ...}
    {"op": "eval", "input": {...}, "path": p}
                                     → {"ok": true, "result": ..., "revision": ..., "ms": ...}

A load that fails keeps the previous policy running. The parent kills this process when
an evaluation overruns its deadline; nothing here needs to be interruptible.
"""

from __future__ import annotations

import socket
import sys
import time
from typing import Any

from pdp.engine import frames
from pdp.engine.bundle import PolicyBundle
from pdp.engine.opa import PolicyLoadError, evaluate, new_engine


class Worker:
    def __init__(self) -> None:
        self.engine: Any = None
        self.revision = ""

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        op = message.get("op")
        if op == "load":
            return self.load(message["bundle"])
        if op == "eval":
            return self.eval(message.get("input"), message.get("path", "portcullis.decision"))
        if op == "ping":
            return {"ok": True, "revision": self.revision}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def load(self, wire: dict[str, Any]) -> dict[str, Any]:
        bundle = PolicyBundle.from_wire(wire)
        try:
            engine = new_engine(bundle)
        except PolicyLoadError as exc:
            return {"ok": False, "error": str(exc)}
        old, self.engine, self.revision = self.engine, engine, bundle.revision
        if old is not None:
            old.close()
        return {"ok": True, "revision": self.revision}

    def eval(self, policy_input: Any, path: str) -> dict[str, Any]:
        from opa_bindings import OpaError

        if self.engine is None:
            return {"ok": False, "error": "no policy loaded"}
        started = time.perf_counter()
        try:
            result = evaluate(self.engine, policy_input, path)
        except OpaError as exc:
            return {
                "ok": False,
                "error": f"policy evaluation failed: {exc.message}",
                "revision": self.revision,
            }
        elapsed = (time.perf_counter() - started) * 1000
        return {"ok": True, "result": result, "revision": self.revision, "ms": elapsed}


def serve(sock: socket.socket) -> None:
    worker = Worker()
    reader = sock.makefile("rb")
    while True:
        header = reader.read(frames.HEADER.size)
        if len(header) < frames.HEADER.size:
            return
        body = reader.read(frames.decode_length(header))
        try:
            reply = worker.handle(frames.decode(body))
        except Exception as exc:  # a bad frame must not end the worker silently
            reply = {"ok": False, "error": f"worker error: {type(exc).__name__}: {exc}"}
        sock.sendall(frames.encode(reply))


def main() -> None:
    fd = int(sys.argv[1])
    with socket.socket(fileno=fd) as sock:
        serve(sock)


if __name__ == "__main__":
    main()
