"""The session key at the API: what binds each call about a session to the proxy that opened it.

A proxy credential (or certificate) names a proxy, not a session: whoever holds a stolen
one could otherwise decide, record, wait on, withdraw for and close every session that
proxy has open, and so write evidence for sessions it never carried. So at OpenSession the
proxy presents a secret it made for that session alone (`session_key`), held only in its
memory; the PDP keeps an HMAC of it (pdp.domain.sessions.SessionTable.key_digest), never
the key, and every later call about the session must carry the same key. A call without
it, or with another, is refused like a call from another proxy (PERMISSION_DENIED,
recorded as `proxy.refused`, the key itself never).

Owns the key's form and the check; the RPCs (pdp.api.service, recording_rpc, approval_rpc)
call it. Must not log or record a key.
"""

from __future__ import annotations

from typing import Any

from pdp.domain.sessions import Session, SessionTable
from portcullis.v1 import pdp_pb2

MIN_KEY_CHARS = 32  # a proxy's secrets.token_urlsafe(32) is 43
MAX_KEY_CHARS = 128
UNKEYED = "the call does not carry the session's key"


def key_problem(request: pdp_pb2.OpenSessionRequest) -> str:
    """Why an OpenSession's key cannot bind a session ("" when it can)."""
    key = request.session_key
    if not key:
        return "required (a secret the proxy made for this session alone)"
    if not (MIN_KEY_CHARS <= len(key) <= MAX_KEY_CHARS) or not key.isascii():
        return f"must be {MIN_KEY_CHARS} to {MAX_KEY_CHARS} ASCII characters"
    if not key.isprintable() or " " in key:
        return "must be printable ASCII without spaces"
    return ""


def digest_of(sessions: SessionTable, session_id: str, request: pdp_pb2.OpenSessionRequest) -> str:
    """The key digest a session opened by `request` keeps."""
    return sessions.key_digest(session_id, request.session_key)


def key_refusal(sessions: SessionTable, session: Session, request: Any) -> str:
    """Why a call about `session` does not speak for it ("" when it carries its key):
    `request` is any request about a session (each has `session_key`)."""
    return "" if sessions.keyed(session, str(request.session_key)) else UNKEYED
