"""An evaluation worker process: one OPA engine, one request at a time.

Started by pdp.engine.embedded with `python -m pdp.engine.worker FD` (a fresh
interpreter, never a fork of the PDP, so the Go runtime starts clean). It reads frames
from the socket FD and answers each:

    {"op": "load", "bundle": {...}}  → {"ok": true, "revision": ...} | {"ok": false, "error": ...}
    {"op": "ping"}                   → {"ok": true, "revision": ...}
    RAW_EVAL path \\n input-JSON      → header-JSON \\n evaluator-envelope-JSON

Evaluation is the hot path: the input JSON goes to the evaluator as it arrived and the
evaluator's answer goes back as it left, with no Python JSON work in between. A load that
fails keeps the previous policy running. The parent kills this process when an
evaluation overruns its deadline; nothing here needs to be interruptible.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from typing import Any

from pdp.engine import frames
from pdp.engine.bundle import PolicyBundle
from pdp.engine.opa import PolicyLoadError, new_engine, raw_evaluate


def error_envelope(message: str) -> bytes:
    return json.dumps({"error": {"code": "worker", "message": message}}).encode()


class Worker:
    def __init__(self) -> None:
        self.engine: Any = None
        self.revision = ""

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        op = message.get("op")
        if op == "load":
            return self.load(message["bundle"])
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

    def evaluate(self, path: str, input_json: bytes) -> bytes:
        if self.engine is None:
            envelope = error_envelope("no policy loaded")
        else:
            started = time.perf_counter()
            envelope = raw_evaluate(self.engine, path, input_json)
            elapsed = (time.perf_counter() - started) * 1000
        header = json.dumps({"revision": self.revision, "ms": elapsed if self.engine else 0})
        return header.encode() + b"\n" + envelope


def serve(sock: socket.socket) -> None:
    worker = Worker()
    reader = sock.makefile("rb")
    while True:
        header = reader.read(frames.HEADER.size)
        if len(header) < frames.HEADER.size:
            return
        body = reader.read(frames.decode_length(header))
        if body[:1] == frames.RAW_EVAL:
            path, _, input_json = body[1:].partition(b"\n")
            try:
                raw = worker.evaluate(path.decode(), input_json)
            except Exception as exc:  # a bad frame must not end the worker silently
                raw = b"{}\n" + error_envelope(f"worker error: {type(exc).__name__}: {exc}")
            sock.sendall(frames.HEADER.pack(len(raw)) + raw)
            continue
        try:
            reply = worker.handle(frames.decode(body))
        except Exception as exc:
            reply = {"ok": False, "error": f"worker error: {type(exc).__name__}: {exc}"}
        sock.sendall(frames.encode(reply))


def main() -> None:
    fd = int(sys.argv[1])
    with socket.socket(fileno=fd) as sock:
        serve(sock)


if __name__ == "__main__":
    main()
