"""The bound-parameter contract: how a proxy hands a statement's bound values to the PDP.

Owns the shape of one entry of `input.command.<protocol>.parameters`, which an approval
binds to (the PDP keys an HMAC on the entries as it receives them) and which an approver is
shown. A value whose text spells it exactly travels as that text; any other — cut to
MAX_SHOWN_PARAMETER bytes, sent in binary format, not valid UTF-8, the SQL NULL's spelling,
or text that starts like an entry of the other kind — travels as an object with what is
shown of it and the exact value's size and SHA-256, so two values that look alike to a
person never bind alike. Plain text entries never start with "{": an object's JSON and a
text cannot be taken for each other.

The digest is for binding only: an approver's view shows `shown` (and that it was cut),
never the digest, which would let a reader test guesses of a value's hidden tail.

No IO here.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

MAX_SHOWN_PARAMETER = 4096  # bytes of one bound value an approver is shown
NULL = "NULL"  # how an SQL NULL is shown and sent


def parameter_entry(value: bytes | None, binary: bool, shown: str) -> str | dict[str, Any]:
    """The entry for one bound value (None: NULL), given what a person is shown of it."""
    if value is None:
        return NULL
    exact = (
        not binary
        and len(value) <= MAX_SHOWN_PARAMETER
        and shown != NULL
        and not shown.startswith("{")
        and _spells(shown, value)
    )
    if exact:
        return shown
    entry: dict[str, Any] = {"shown": shown}
    if len(value) > MAX_SHOWN_PARAMETER:
        entry["cut"] = True
    if binary:
        entry["format"] = "binary"
    # the size as text: the PDP receives numbers as floats
    entry["bytes"] = str(len(value))
    entry["sha256"] = hashlib.sha256(value).hexdigest()
    return entry


def _spells(shown: str, value: bytes) -> bool:
    try:
        return shown.encode("utf-8") == value
    except UnicodeEncodeError:
        return False


def shown_parameter(entry: str) -> tuple[str, str]:
    """What a person reads of an entry as the PDP holds it (an object as its JSON text):
    the shown value, and a note about it ("" for none) — that it was cut, its size. The
    note carries no digest."""
    if not entry.startswith("{"):
        return entry, ""
    try:
        doc = json.loads(entry)
    except ValueError:
        return entry, ""
    if not isinstance(doc, dict) or not isinstance(doc.get("shown"), str):
        return entry, ""
    # a value in binary format reads as the proxy rendered it (text, integer, hex): saying
    # so on every value a driver sends in binary would only be noise
    if doc.get("cut"):
        return doc["shown"], f" (the first {MAX_SHOWN_PARAMETER} of {doc.get('bytes', '?')} bytes)"
    if doc["shown"] == NULL:
        return doc["shown"], " (the text 'NULL', not SQL NULL)"
    return doc["shown"], ""
