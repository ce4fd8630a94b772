"""Builds the policy input document of DESIGN.md from a session and a command.

Owns the shape of `input` and the rule that the PDP classifies SQL itself from the raw
text (pglast, via pdp.statements) instead of trusting a proxy's description of it.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from pdp.sessions import Session, rfc3339
from pdp.statements import classify, proven_shape, shape, skeleton

COMMAND_KINDS = frozenset(
    {
        "session.open",
        "postgres.query",
        "postgres.function_call",
        "http.request",
        "ssh.exec",
        "ssh.shell",
        "ssh.forward",
        "ssh.sftp",
    }
)


CACHED_SQL_LENGTH = 4096


@functools.lru_cache(maxsize=8192)
def _classified(raw: str) -> list[dict[str, Any]]:
    return classify(raw)


def classified(raw: str) -> list[dict[str, Any]]:
    """classify() with memory for short texts: agents and pools repeat the same statements.

    The list may be shared between callers, who must treat it as read-only."""
    return _classified(raw) if len(raw) <= CACHED_SQL_LENGTH else classify(raw)


def shaped(raw: str) -> str | None:
    """The statement shape (pdp.statements.shape) that keys reuse of a verdict, with memory;
    None for unparseable text and for texts too long to remember, which are then reused
    only by their exact text.

    Remembered by the text's skeleton where one is proven (pdp.statements.proven_shape):
    the statements an agent repeats with other ids then cost a substitution, not a parse."""
    if len(raw) > CACHED_SQL_LENGTH:
        return None
    zeros = skeleton(raw)
    if zeros is not None:
        proven, value = _proven_shape(zeros)
        if proven:
            return value
    return _shape(raw)


_shape = functools.lru_cache(maxsize=8192)(shape)
_proven_shape = functools.lru_cache(maxsize=8192)(proven_shape)


def command_input(kind: str, raw: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """input.command for one command; protocol attributes go under their protocol's key."""
    command: dict[str, Any] = {"kind": kind, "raw": raw}
    protocol = kind.split(".", 1)[0]
    if protocol == "postgres":
        details = {k: v for k, v in attributes.items() if k != "statements"}
        if kind == "postgres.function_call":
            # a FunctionCall ('F') message names a function by OID; the proxy resolves it
            name = str(attributes.get("function", "")).lower()
            details["statements"] = [
                {
                    "type": "select",
                    "tag": "FunctionCall",
                    "tables": [],
                    "functions": [name.rsplit(".", 1)[-1]] if name else [],
                }
            ]
        else:
            details["statements"] = classified(raw)
        details.setdefault("protocol", "simple")
        command["postgres"] = details
    elif protocol in ("http", "ssh") and attributes:
        command[protocol] = attributes
    return command


def build_input(
    session: Session,
    command: dict[str, Any],
    approval: dict[str, Any] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    policy_input: dict[str, Any] = {
        "identity": session.identity.to_input(),
        "connection": session.connection,
        "session": session.to_input(),
        "command": command,
        "now": rfc3339(time.time() if now is None else now),
    }
    if approval:
        policy_input["approval"] = approval
    return policy_input
