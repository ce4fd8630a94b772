"""Session recordings in the audit store: how events are written and read back.

Owns the record shape of a recording: a proxy's batch of session events (commands with
their verdicts, results, masking counts) becomes ONE hash-chained `session.events`
record, so recording costs one append per batch rather than one per statement. Readers
get the events back flat, in order, each with its session and time.
"""

from __future__ import annotations

from typing import Any

from pdp.store import AuditRecord, AuditStore

EVENTS_KIND = "session.events"


def events_of(record: AuditRecord) -> list[dict[str, Any]]:
    return [{**event, "session_id": record.session_id} for event in record.body["events"]]


async def session_events(store: AuditStore, session_id: str | None = None) -> list[dict[str, Any]]:
    """Every recorded event (of one session, or of all), in the order they happened."""
    records = await store.query(kind=EVENTS_KIND, session_id=session_id)
    events = [event for record in records for event in events_of(record)]
    events.sort(key=lambda e: e.get("time", 0))
    return events
