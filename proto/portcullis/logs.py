"""Log lines every Portcullis process writes: text for people, JSON for log pipelines.

Owns the two formats (`logging.format: text | json` in portcullis.yaml), the context
that ties a line to its session (`session_context`, a context variable: set where a
session opens, inherited by the tasks that serve it), and the last guard against a
secret in a log line. With JSON each line is one object:

    {"ts": "2026-12-03T20:45:01.123Z", "level": "info", "logger": "portcullis.session",
     "msg": "session opened", "session_id": "...", "decision_id": "...", "connection": "..."}

The ids come from the record's `extra` (session_id, decision_id, approval_id, connection,
verdict, reason, ...: LOG_FIELDS) or, for session_id and connection, from the context.
Secrets: callers log names, ids and reasons, never a token, a password, a credential or
a command's text; and every line is scrubbed of what looks like a JWT or a bearer token
(`scrub`) before it is written, in both formats, should a library's message carry one.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from typing import Any

LOG_FORMATS = ("text", "json")
# the record attributes a JSON line carries when a caller set them (extra=...)
LOG_FIELDS = (
    "session_id",
    "decision_id",
    "approval_id",
    "connection",
    "worker",
    "verdict",
    "kind",
    "reason",
    "subject",
    "policy_revision",
)
_session: contextvars.ContextVar[tuple[str, str]] = contextvars.ContextVar(
    "portcullis_session", default=("", "")
)

# a JWT (three base64url parts, the first a JSON header), a bearer credential, a
# password= / token= pair: replaced whole. A JWT is read from the start of its run of
# base64url (what of the run comes before its `eyJ` goes with it): tried at every `eyJ`
# of a run, each read on to the run's end, a line of them was quadratic (1 MiB: minutes)
_SECRETS = re.compile(
    r"(?<![A-Za-z0-9_-])(?=[A-Za-z0-9_-]*?eyJ[A-Za-z0-9_-]{4})"
    r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"
    r"|(?i:(?:password|passwd|secret|token|api_key)\s*[=:]\s*)[^\s,;&\"']+"
)


def scrub(text: str) -> str:
    """text with anything shaped like a token or a password assignment replaced."""
    if "eyJ" not in text and "=" not in text and ":" not in text and "earer" not in text:
        return text
    return _SECRETS.sub("[redacted]", text)


def session_context(session_id: str, connection: str = "") -> None:
    """The session the current task (and the tasks it starts from here on) serves."""
    _session.set((session_id, connection))


class _ContextFilter(logging.Filter):
    """Adds the context's session id and connection to records that carry none."""

    def filter(self, record: logging.LogRecord) -> bool:
        session_id, connection = _session.get()
        if session_id and not getattr(record, "session_id", ""):
            record.session_id = session_id
        if connection and not getattr(record, "connection", ""):
            record.connection = connection
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        session_id = getattr(record, "session_id", "")
        if session_id and session_id not in line:
            line += f" [session {session_id}]"
        return scrub(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module's docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        created = time.gmtime(record.created)
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", created) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        for name in LOG_FIELDS:
            value = getattr(record, name, None)
            if value not in (None, ""):
                out[name] = scrub(str(value)) if isinstance(value, str) else value
        if record.exc_info:
            out["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False, default=str)


def setup(format: str = "text", level: int = logging.INFO) -> None:
    """The root logger writes to stderr in this format (replacing earlier handlers)."""
    if format not in LOG_FORMATS:
        raise ValueError(f"log format {format!r} is not one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
