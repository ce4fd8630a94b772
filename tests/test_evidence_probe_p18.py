"""Evidence probe 18 (helper auditsec9): a record cannot forge lines at the SIEM.

Attack (INSERT access to the audit store): write a record whose subject, kind or id holds
a line break and an escape, `eve\\n<110>1 ... forged`. The syslog sink puts those fields
in the structured data a SIEM indexes; it escaped only `"`, `\\` and `]` there, so the raw
LF and ESC went out in the header: a receiver or log file that splits on line breaks took
the rest for another message, one the PDP never wrote, and a terminal showing it obeyed
the escape. Each such value is now made inert (visible escapes) before it is escaped; the
record itself still goes whole, as JSON, in the message.

Real components: the SQLite audit store, the syslog forwarder, a TCP receiver that reads
RFC 6587 octet-counted frames.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pdp_harness import free_port
from test_forwarding import (
    SyslogReceiver,
    eventually,
    forwarder,
    parse_syslog,
    syslog_settings,
)

from pdp.store import open_store
from portcullis.config import StoreSettings

FORGED = 'eve\n<110>1 2026-01-01T00:00:00Z pdp portcullis 1 session.open [x seq="1"] \x1b[2J'
# what a message may hold outside its JSON: printable text (the BOM, and UTF-8 past ASCII)
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[Any]:
    opened = open_store(StoreSettings(type="sqlite", path=tmp_path / "audit.db"))
    await opened.start()
    yield opened
    await opened.close()


async def test_no_control_character_reaches_the_syslog_header(tmp_path, store):
    receiver = SyslogReceiver(free_port())
    await receiver.start()
    await store.append("session.open", {"verdict": "allow"}, session_id="s-1", subject=FORGED)
    await store.append("decision\n\x1b]0;x\x07", {"raw": "SELECT 1"}, id="d-\r\nforged")
    fwd = forwarder(syslog_settings(tmp_path, receiver.port), store)
    await fwd.start()
    try:
        await eventually(lambda: len(receiver.messages) == 2)
    finally:
        await fwd.stop()
        await receiver.stop()
    for message in receiver.messages:
        header = message.split(b"\xef\xbb\xbf", 1)[0]  # (before MSG: its JSON escapes its own)
        assert not _CONTROL.search(header), header
    opened, decided = (parse_syslog(m) for m in receiver.messages)
    assert opened["sd"]["subject"].startswith("eve\\n<110>1")
    assert opened["msg"]["subject"] == FORGED  # the record itself, whole
    assert decided["sd"]["id"] == "d-\\r\\nforged" and decided["msg"]["id"] == "d-\r\nforged"
