"""Prelude for the SSH proxy in bench/ssh/decide_wait.py: each Decide's wait, as the proxy
sees it, appended to the file PORTCULLIS_DECIDE_TIMES (one line of ms per call).

Run by bench/http/profiled_proxy.py before the proxy's modules load (its
PORTCULLIS_BENCH_PRELUDE); wraps PDPClient.decide, changing nothing it does. Never for
production.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

from proxies.runtime import pdp_client

_path = os.environ["PORTCULLIS_DECIDE_TIMES"]
_original = pdp_client.PDPClient.decide


@functools.wraps(_original)
async def _timed(self: Any, *args: Any, **kwargs: Any) -> Any:
    started = time.perf_counter()
    try:
        return await _original(self, *args, **kwargs)
    finally:
        with open(_path, "a") as out:
            out.write(f"{(time.perf_counter() - started) * 1000:.4f}\n")


pdp_client.PDPClient.decide = _timed  # type: ignore[method-assign]
