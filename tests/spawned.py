"""A test stack served from a spawned child process for as long as a block lasts.

Blocking clients (psql, ssh, curl, psycopg2's cancel(), which holds the GIL while it waits)
must not stop the gateway they talk to, so test modules that drive them serve the gateway
from a process of its own, as it is deployed. The child runs `serve(*args, pipe)`: it sends
one message when it is up (what a client needs: ports, tokens...), then waits for "stop"."""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def spawned(
    serve: Callable[..., None], *args: Any, what: str = "the stack", start_seconds: float = 120
) -> Iterator[Any]:
    """Yields what the child sent once it was up; tells it to stop when the block ends,
    and terminates it if it has not stopped 30 s later."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=serve, args=(*args, theirs))
    child.start()
    try:
        if not ours.poll(start_seconds):
            raise RuntimeError(f"{what} did not start within {start_seconds} s")
        yield ours.recv()
        ours.send("stop")
        child.join(30)
    finally:
        if child.is_alive():
            child.terminate()
            child.join(10)
