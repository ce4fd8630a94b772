"""ReDoS sweep, part 1: a quiet interactive upstream's held tail is found in one pass.

Once an interactive (recorded) upstream goes quiet, the SSH proxy sends what its mask held
but a tail of digits and separators that may still become a card with what comes next
(proxies/ssh/stream.py, _GROWING). That tail was searched for as `(...)*\\Z`: from every
start in a run of digits the search read on to the run's end, quadratic in the run. Through
the real stack a masked dba's shell running `printf '\\n %08186dy' 0; sleep 1` (the ~8 KB
after the space held, sshd reading the terminal 4095 bytes at a time) stalled the proxy's
event loop, every session's, 2.1-2.3 s per quiet flush; 32 KB took 42 s, 128 KB 456 s. The
tail is now the last run found left to right, when it reaches the end: 1 MiB in 0.2 s.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys

from portcullis.masking import Masker
from portcullis.verdict import MaskRule
from proxies.ssh import stream

RULES = (MaskRule("", "email", "partial"), MaskRule("", "credit_card", "partial"))
KEY = b"k" * 32
# bounded only so that the quadratic search fails the test instead of running for hours:
# the linear pass takes well under a second
HANG_GUARD = 30.0
QUADRATIC = re.compile(rb"(?:[0-9]|" + stream._SEPARATOR_BYTES + rb"|\x1b\[[0-9;]*[A-Za-z])*\Z")
PIECES = [
    b"1",
    b"0",
    b" ",
    b"\t",
    b"-",
    b".",
    b"x",
    b"\x1b",
    b"[",
    b";",
    b"m",
    b"\xe2\x80\x93",
    b"\xe2",
    b"\x80",
    b"\xc2\xa0",
    b"\r",
    b"\x08",
    b"\x1b[",
    b"\x1b[12;3m",
    b"\n",
    b"'",
]


def test_the_held_tail_is_where_the_old_search_found_it() -> None:
    pick = random.Random(7)
    for _ in range(50000):
        data = b"".join(pick.choice(PIECES) for _ in range(pick.randint(0, 14)))
        found = QUADRATIC.search(data)  # (it matches at the end at least)
        assert found is not None and stream._growing_tail(data) == found.start(), data


def test_a_quiet_flush_still_holds_a_card_in_progress() -> None:
    out = stream.MaskedOutput(Masker(RULES, KEY), terminal=True)
    assert out.feed(b"paid 4111 1111") == b""
    assert out.flush(final=False) == b"paid"
    assert out.holding


def test_a_long_digit_run_before_a_letter_is_flushed_in_one_pass() -> None:
    # in a child process: the regex engine holds the GIL, so no thread of this one could
    # give up on it
    flushed = subprocess.run(
        [sys.executable, "-c", FLUSH_HELD], capture_output=True, timeout=HANG_GUARD, check=True
    )
    assert flushed.stdout.endswith(b" False\n"), flushed  # sent, nothing held


FLUSH_HELD = """
from portcullis.masking import Masker
from portcullis.verdict import MaskRule
from proxies.ssh import stream
out = stream.MaskedOutput(Masker((MaskRule("", "credit_card", "partial"),), b"k" * 32), True)
out._held = b"0" * (1 << 20) + b"y"  # what a 1 MiB line of digits then a letter holds
print(len(out.flush(final=False)), out.holding)
"""
