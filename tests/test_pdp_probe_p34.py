"""PDP probe 34 (helper auditsec7): an approval's reason must say something.

Attack (an approver, or whoever holds an approver's token, wanting no justification on
record): every way to decide a request asks for a reason and refused an empty or blank
one (tests/test_pdp_probe_p24.py), but each checked `reason.strip()`, which keeps what
reads as nothing: a zero-width space, a soft hyphen, a word joiner, a bidi mark, the
Hangul filler or a braille blank. The request was approved and the evidence said "approved
by sam: " with nothing for an auditor to weigh. The approval book itself now refuses a
reason with no character one can read (a letter, digit, punctuation or symbol that is not
a blank letter), whichever API it came through; the request stays pending.

Real PDP (tests/pdp_harness.py, embedded OPA, SQLite store, its HTTP API).
"""

from __future__ import annotations

import pytest
from test_pdp_probe_p24 import no_approval_with

UNREADABLE = [
    "\u200b",  # zero-width space
    "\u00ad\u00ad",  # soft hyphens
    "\u2060 \u202e",  # word joiner, a space, right-to-left override
    "\u3164",  # Hangul filler (a letter that draws nothing)
    "\u2800\u2800",  # braille pattern blank
    "\u0301",  # a combining accent on nothing
    "\u200b" * 1000 + "ticket 42",  # (the reason kept is its first 1,000 characters)
]


@pytest.mark.parametrize("reason", UNREADABLE, ids=lambda r: f"{len(r)}:{ord(r[0]):04x}")
async def test_no_approval_is_recorded_with_a_reason_that_reads_as_nothing(tmp_path, reason):
    # the control: a short reason in any script is one
    await no_approval_with(tmp_path, reason, control="\u8ba4\u53ef #4")
