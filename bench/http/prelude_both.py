"""Both experiments at once (prelude_raw_upstream.py and prelude_caches.py)."""

from __future__ import annotations

import runpy
from pathlib import Path

for name in ("prelude_caches.py", "prelude_raw_upstream.py"):
    runpy.run_path(str(Path(__file__).with_name(name)), run_name="prelude")
