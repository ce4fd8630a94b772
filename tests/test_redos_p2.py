"""ReDoS sweep, part 2: a COPY row's labels are found in one pass over a run of tabs.

In a COPY row every tab opens a field, and a label naming a masked field may follow any
opener, after an indentation (proxies/postgres/values.py, labelled_values). The indentation
was `[ \\t]*`, so from each tab of a run the search read on to the run's end: quadratic in
the run, on the event loop every session of the proxy shares, from a reader's own
`COPY (SELECT ',"' || repeat(E'\\t', n) || 'x:') TO STDOUT` (16,000 tabs: 16.6 s). In a
COPY row the indentation is now spaces alone (an indentation holding a tab opens after it
anyway): the same key, value and openness, found in one pass (1 MiB: ~0.5 s).
"""

from __future__ import annotations

import random
import re
import subprocess
import sys

from proxies.postgres import values

# bounded only so that the quadratic search fails the test instead of running for hours
HANG_GUARD = 30.0
QUADRATIC = re.compile(values._LABELLED.pattern.replace(r"(?:^|(?<=\n))", values._COPY_OPENS, 1))
PIECES = ["\t", " ", "  ", "\t\t", "\n", "\\n", ",", '"', "'", "-", "*", ":", "=", "=>"]
PIECES += ["a", "pw", "password", "x1", ";", "&", "b c", "pw:", "token ="]


def _found(pattern: re.Pattern[str], text: str, pos: int) -> object:
    m = pattern.search(text, pos)
    if m is None:
        return None
    return m.span("key"), m["open"] is not None, m.span("sep"), m.span("value")


def test_a_copy_row_s_labels_are_where_the_old_search_found_them() -> None:
    rnd = random.Random(2026)
    for _ in range(50_000):
        text = "".join(rnd.choice(PIECES) for _ in range(rnd.randint(1, 30)))
        pos = rnd.randint(0, len(text))
        assert _found(values._COPY_LABELLED, text, pos) == _found(QUADRATIC, text, pos), text


def test_a_megabyte_of_tabs_is_read_in_one_pass() -> None:
    # in a child process: the regex engine holds the GIL, so no thread of this one could
    # give up on it
    read = subprocess.run(
        [sys.executable, "-c", READ_ROW], capture_output=True, timeout=HANG_GUARD, check=True
    )
    assert read.stdout == b"None\n", read


READ_ROW = """
from proxies.postgres import values
print(values._COPY_LABELLED.search(',"' + "\\t" * (1 << 20) + "x"))
"""
