"""A long-running service's heap as the garbage collector sees it: start-up objects frozen.

A service allocates most of its long-lived objects while it starts (modules, compiled
policies, configuration, protobuf descriptors, the evaluator). A full collection
(generation 2) traverses every one of them each time: measured here at 17 to 30 ms in the
PDP, about every ten seconds at 1,000 decisions/s, a pause for every session and
decision in flight. Once a service is listening, `freeze_startup_heap()` moves what it
holds to the permanent generation, so later collections look only at what it allocated
since (measured after it: no collection over 1 ms).
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Collect once, then exempt what survived from every later collection."""
    gc.collect()
    gc.freeze()
