"""Syslog sink: each audit record as one RFC 5424 message over TCP, RFC 6587 octet counting.

A message (RFC 5424 section 6) looks like

    <110>1 2024-05-01T12:00:00.123456Z pdp-1 portcullis 4242 session.open
    [portcullis@32473 seq="7" id="d-..." kind="session.open" session="s-..."
    subject="alice@example.com" hash="..."] BOM{"seq":7,"kind":"session.open",...}

PRI is facility * 8 + severity (facility 13 "log audit" by default; severity warning for
rejected tokens and denials, informational otherwise); TIMESTAMP is the record's own time
in UTC with microseconds; MSGID is the record kind; the structured data element carries
the fields a SIEM indexes and dedupes on (seq); MSG is the whole record as canonical JSON,
UTF-8 with the BOM that section 6.4 requires. 32473 is the enterprise number RFC 5612
reserves for documentation; SD-IDs with it are private to this format.

On the wire each message is framed as `MSG-LEN SP SYSLOG-MSG` (RFC 6587 section 3.4.1),
so messages may contain newlines. Plain TCP syslog has no acknowledgement: a batch counts
as accepted once written and drained on a connection the receiver has not closed; a batch
written into a connection that then turns out closed is sent again (at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from datetime import UTC, datetime

from pdp.forwarding import SinkUnavailable, record_json
from pdp.plumbing.rendering import inert
from pdp.store import AuditRecord
from portcullis.config import ForwarderSettings

SD_ID = "portcullis@32473"
BOM = "\ufeff"

SEVERITY_WARNING = 4
SEVERITY_NOTICE = 5
SEVERITY_INFO = 6


def severity(record: AuditRecord) -> int:
    if record.kind == "auth.rejected":
        return SEVERITY_WARNING
    verdict = record.body.get("verdict") if isinstance(record.body, dict) else None
    if verdict == "deny":
        return SEVERITY_WARNING
    if verdict == "require_approval" or record.kind == "session.close":
        return SEVERITY_NOTICE
    return SEVERITY_INFO


def timestamp(unix_seconds: float) -> str:
    """RFC 5424 section 6.2.3: RFC 3339 in UTC, at most six fractional digits."""
    moment = datetime.fromtimestamp(unix_seconds, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def sd_escape(value: str) -> str:
    """PARAM-VALUE escaping (RFC 5424 section 6.3.3): backslash before `"`, `\\` and `]`."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header_field(value: str, limit: int) -> str:
    """A header field is PRINTUSASCII without spaces, or NILVALUE `-` when empty."""
    cleaned = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return cleaned or "-"


def format_message(
    record: AuditRecord,
    *,
    app_name: str = "portcullis",
    hostname: str = "",
    facility: int = 13,
    procid: str = "",
    unverified: bool = False,
) -> bytes:
    """One SYSLOG-MSG (RFC 5424 section 6) for one audit record, without framing."""
    pri = facility * 8 + severity(record)
    params = [
        ("seq", str(record.seq)),
        ("id", record.id),
        ("kind", record.kind),
        ("session", record.session_id),
        ("subject", record.subject),
        ("hash", record.hash),
    ]
    # each value inert (pdp.plumbing.rendering) before it is escaped: a record INSERTed into
    # the store with a line break or an escape in its subject, kind or id put a raw LF or
    # ESC into the header a receiver indexes (a line-splitting one took the rest for a
    # message of its own); the record itself goes whole in MSG, as JSON
    sd = "[" + SD_ID + "".join(f' {k}="{sd_escape(inert(v))}"' for k, v in params if v) + "]"
    header = " ".join(
        [
            f"<{pri}>1",
            timestamp(record.time),
            _header_field(hostname or socket.gethostname(), 255),
            _header_field(app_name, 48),
            _header_field(procid or str(os.getpid()), 128),
            _header_field(record.kind, 32),
        ]
    )
    return f"{header} {sd} {BOM}{record_json(record, unverified)}".encode()


def frame(message: bytes) -> bytes:
    """Octet-counting framing (RFC 6587 section 3.4.1): `MSG-LEN SP SYSLOG-MSG`."""
    return b"%d %s" % (len(message), message)


class SyslogSink:
    def __init__(self, settings: ForwarderSettings) -> None:
        self.settings = settings
        host, _, port = settings.address.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self._hostname = settings.hostname or socket.gethostname()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def description(self) -> str:
        return f"syslog tcp://{self.settings.address}"

    def _peer_gone(self) -> bool:
        # receivers never send, so EOF on the read side means the receiver closed
        return (
            self._writer is None
            or self._writer.is_closing()
            or (self._reader is not None and self._reader.at_eof())
        )

    async def _connect(self) -> asyncio.StreamWriter:
        if self._writer is not None and not self._peer_gone():
            return self._writer
        await self.reset()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.settings.timeout_seconds
            )
        except (OSError, TimeoutError) as exc:
            raise SinkUnavailable(f"cannot connect: {exc or type(exc).__name__}") from None
        self._reader, self._writer = reader, writer
        return writer

    async def send(
        self, records: list[AuditRecord], unverified: frozenset[int] = frozenset()
    ) -> None:
        writer = await self._connect()
        data = b"".join(
            frame(
                format_message(
                    r,
                    app_name=self.settings.app_name,
                    hostname=self._hostname,
                    facility=self.settings.facility,
                    unverified=r.seq in unverified,
                )
            )
            for r in records
        )
        try:
            writer.write(data)
            await asyncio.wait_for(writer.drain(), self.settings.timeout_seconds)
            await asyncio.sleep(0)  # let a pending EOF or reset reach the protocol
        except (OSError, TimeoutError) as exc:
            await self.reset()
            raise SinkUnavailable(f"send failed: {exc or type(exc).__name__}") from None
        if self._peer_gone():
            await self.reset()
            raise SinkUnavailable("the receiver closed the connection")

    async def reset(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def close(self) -> None:
        await self.reset()
