"""An evaluation worker process: one OPA engine, one request at a time.

Started by pdp.engine.embedded with `python -m pdp.engine.worker FD` (a fresh
interpreter, never a fork of the PDP, so the Go runtime starts clean). It reads frames
from the socket FD and answers each:

    {"op": "load", "bundle": {...}}  → {"ok": true, "revision": ...} | {"ok": false, "error": ...}
    {"op": "ping"}                   → {"ok": true, "revision": ...}
    RAW_EVAL path \\n input-JSON      → {"revision": ...} \\n evaluator-envelope-JSON

Evaluation is the hot path: the input JSON goes to the evaluator as it arrived and the
evaluator's answer goes back as it left, with no Python JSON work in between. Frames are
answered one by one in the order they came; the answers to frames that came in one read
go back together (one wake-up of the PDP instead of one per answer), but an answer held
HOLD_SECONDS is sent before the next evaluation starts. A load that fails keeps the
previous policy running. The parent kills this process when an evaluation overruns its
deadline (the answers held then are lost with it: their evaluations are denied); nothing
here needs to be interruptible, nor waits on a timer: the process runs with a timer slack
of 20 ms (TIMER_SLACK_NS), which spares the cores the Go runtime's 20 us naps.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from typing import Any

from pdp.engine import frames
from pdp.engine.bundle import PolicyBundle
from pdp.engine.opa import (
    DECISION_PATH,
    PolicyLoadError,
    decision_evaluator,
    new_engine,
    raw_evaluate,
)

# how long an answer may wait for the answers after it before it is sent: the PDP sends a
# busy worker several evaluations in one write (pdp.engine.embedded), and each answer sent
# alone wakes the PDP's event loop once (measured: 67 -> 41 us of the PDP's CPU per
# evaluation with 32 waiting; 1 ms: 48). An evaluation takes ~0.5 ms, the deadline 250 ms
HOLD_SECONDS = 0.002
RECEIVE_BYTES = 1 << 16
# Timer slack of this process's threads (Linux's PR_SET_TIMERSLACK, set before the
# evaluator loads: the Go runtime's threads inherit it). The Go runtime's monitor thread
# (sysmon) sleeps 20 us at a time while the evaluator runs, each sleep a wake-up on a
# core the PDP and the other worker need: strace of a worker over 800 evaluations in trips
# of 8, nanosleep 2,772 / 4,992 -> 470 / 481, futex 827 / 669 -> 449 / 462 with 2 ms.
# 20 ms, not 2: between evaluations a few ms apart (a PDP at a low pace) sysmon woke
# within the gap to hand the runtime to another thread for the goroutine each evaluation
# leaves behind (OPA's waitForDone), a wake-up of two threads per evaluation; with 20 ms
# that waits for the next evaluation or a later nap. One worker, evaluations 5 ms apart,
# 4 A-B pairs (2026-12-06, a loaded 2-core VM): voluntary switches 5.7-7.0 -> 1.8-2.5 per
# evaluation, the worker's CPU 868 -> 770 us (medians), p50 alike; back to back in trips
# of 8, 483 us both. Nothing here waits on a timer (the socket is read without a timeout;
# the parent keeps the deadlines); the runtime's own housekeeping runs up to 20 ms later.
TIMER_SLACK_NS = 20_000_000
PR_SET_TIMERSLACK = 29


def error_envelope(message: str) -> bytes:
    return json.dumps({"error": {"code": "worker", "message": message}}).encode()


def answer_header(revision: str) -> bytes:
    """The header line of an evaluation's answer: the revision of the policy that made it."""
    return json.dumps({"revision": revision}).encode() + b"\n"


class Worker:
    def __init__(self) -> None:
        self.engine: Any = None
        self.revision = ""
        self.header = answer_header("")  # made once per policy loaded, not per evaluation
        # the decision's evaluation (opa.decision_evaluator: the policy's `answer` with its
        # shipped mask set written in, where it has one), made once per policy loaded
        self.decide: Any = None

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
        self.decide = decision_evaluator(engine)
        self.header = answer_header(self.revision)
        if old is not None:
            old.close()
        return {"ok": True, "revision": self.revision}

    def evaluate(self, path: str, input_json: bytes) -> bytes:
        if self.engine is None:
            return self.header + error_envelope("no policy loaded")
        if path == DECISION_PATH:
            return self.header + self.decide(input_json)
        return self.header + raw_evaluate(self.engine, path, input_json)


def serve(sock: socket.socket) -> None:
    worker = Worker()
    buffer = bytearray()
    size = frames.HEADER.size
    while True:
        data = sock.recv(RECEIVE_BYTES)
        if not data:
            return
        buffer += data
        held: list[bytes] = []
        since = 0.0
        offset = 0
        while len(buffer) - offset >= size:
            end = offset + size + frames.decode_length(bytes(buffer[offset : offset + size]))
            if len(buffer) < end:
                break
            body = bytes(buffer[offset + size : end])
            offset = end
            if held and time.monotonic() - since > HOLD_SECONDS:
                sock.sendall(b"".join(held))
                held = []
            held.append(answer(worker, body))
            if len(held) == 1:
                since = time.monotonic()
        del buffer[:offset]
        if held:
            sock.sendall(b"".join(held) if len(held) > 1 else held[0])


def answer(worker: Worker, body: bytes) -> bytes:
    """The frame answering one request frame (every frame gets exactly one, in order)."""
    if body[:1] == frames.RAW_EVAL:
        path, _, input_json = body[1:].partition(b"\n")
        try:
            raw = worker.evaluate(path.decode(), input_json)
        except Exception as exc:  # a bad frame must not end the worker silently
            raw = b"{}\n" + error_envelope(f"worker error: {type(exc).__name__}: {exc}")
        return frames.HEADER.pack(len(raw)) + raw
    try:
        reply = worker.handle(frames.decode(body))
    except Exception as exc:
        reply = {"ok": False, "error": f"worker error: {type(exc).__name__}: {exc}"}
    return frames.encode(reply)


def relax_timers(slack_ns: int = TIMER_SLACK_NS) -> bool:
    """Set this thread's timer slack (inherited by the threads it starts); False where
    the system has no prctl (not Linux) or refuses it: the default slack then."""
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    return bool(prctl(PR_SET_TIMERSLACK, ctypes.c_ulong(slack_ns), 0, 0, 0) == 0)


def main() -> None:
    relax_timers()  # before the evaluator (and its Go runtime) loads
    fd = int(sys.argv[1])
    with socket.socket(fileno=fd) as sock:
        serve(sock)


if __name__ == "__main__":
    main()
