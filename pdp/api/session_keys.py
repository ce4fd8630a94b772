"""The session key at the API: what binds each call about a session to the proxy that opened it.

A proxy credential (or certificate) names a proxy, not a session: whoever holds a stolen
one could otherwise decide, record, wait on, withdraw for and close every session that
proxy has open, and so write evidence for sessions it never carried. So at OpenSession the
proxy presents a secret it made for that session alone (`session_key`), held only in its
memory; the PDP keeps an HMAC of it (pdp.domain.sessions.SessionTable.key_digest), never
the key, and every later call about the session must carry the same key. A call without
it, or with another, is refused like a call from another proxy (PERMISSION_DENIED,
recorded as `proxy.refused`, the key itself never).

A delivery from the proxy's spool outlives the process that held the key (a proxy that
crashed: its restarted process adopts the spool, not the keys). So each entry is spooled
with a seal: an HMAC of the very request it becomes (its session_key aside) under a key
made from the session's key (pdp.domain.sessions.spool_key), which the PDP keeps wrapped
under its record key. Such a request carries `spooled:` and the seal in place of the key,
and is taken for RecordEvents (a numbered batch) and CloseSession only, exactly as
sealed: the spool's reader can deliver what the proxy spooled, again (a numbered batch is
stored once) or first, and nothing else: no other events, no other close, no decision. A
sealed delivery is no word from a live proxy (the reaper still ends a session whose proxy
is gone), and its record says it came from the spool.

Owns the key's form and the checks; the RPCs (pdp.api.service, recording_rpc,
approval_rpc) call them. Must not log or record a key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

from pdp.domain.sessions import Session, SessionTable
from portcullis.v1 import pdp_pb2

MIN_KEY_CHARS = 32  # a proxy's secrets.token_urlsafe(32) is 43
MAX_KEY_CHARS = 128
UNKEYED = "the call does not carry the session's key"
# a spooled delivery's session_key: this, then its seal (proxies.runtime.spool.SEALED)
SEALED = "spooled:"
_SEAL = re.compile(r"spooled:[0-9a-f]{64}")
# the calls a spool delivers, as the seal names them (a RecordBatches' batch: RecordEvents)
SPOOLED_RPCS = frozenset({"RecordEvents", "CloseSession"})


def key_problem(request: pdp_pb2.OpenSessionRequest) -> str:
    """Why an OpenSession's key cannot bind a session ("" when it can)."""
    key = request.session_key
    if not key:
        return "required (a secret the proxy made for this session alone)"
    if not (MIN_KEY_CHARS <= len(key) <= MAX_KEY_CHARS) or not key.isascii():
        return f"must be {MIN_KEY_CHARS} to {MAX_KEY_CHARS} ASCII characters"
    if not key.isprintable() or " " in key:
        return "must be printable ASCII without spaces"
    if key.startswith(SEALED):  # (a key of that form would read as a seal)
        return f"must not start with {SEALED!r}"
    return ""


def seal(spool_key: bytes, rpc: str, request: Any) -> str:
    """The seal of a spooled `rpc` request: an HMAC of its deterministic serialization
    without its session_key (proxies.runtime.spool.seal makes the same)."""
    bare = type(request)()
    bare.CopyFrom(request)
    bare.session_key = ""
    content = f"{rpc}\0".encode() + bare.SerializeToString(deterministic=True)
    return hmac.new(spool_key, content, hashlib.sha256).hexdigest()


def standing(sessions: SessionTable, session: Session, rpc: str, request: Any) -> tuple[str, bool]:
    """Whether `request` (any request about `session`: each has `session_key`) speaks for
    it: ("", True) when it carries the session's key; ("", False) when it is a spooled
    delivery carrying its seal (RecordEvents of a numbered batch, CloseSession); (why, False)
    when neither."""
    key = str(request.session_key)
    if sessions.keyed(session, key):
        return "", True
    if rpc in SPOOLED_RPCS and _SEAL.fullmatch(key):
        spool_key = sessions.spool_key_of(session)
        numbered = rpc != "RecordEvents" or request.batch_seq > 0
        if (
            spool_key is not None
            and numbered
            and hmac.compare_digest(key[len(SEALED) :], seal(spool_key, rpc, request))
        ):
            return "", False
    return UNKEYED, False
