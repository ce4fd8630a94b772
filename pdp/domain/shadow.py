"""Shadow mode (`enforce: false` on a connection): decide and record, block nothing.

Owns the one rule every proxy gets without a line of its own: for a connection the
PDP's configuration marks `enforce: false`, the policy is evaluated and its decision
recorded exactly as it would be — with `enforced: false` in the decision record — and
the proxy is answered allow, with no mask rules, no approval, and no session settings
(a reader's read-only default would block writes at the server). The proxy forwards,
and the client gets what the upstream sent.

Why here, in the PDP's answer, and not in the proxies' runtime: the decision record is
the PDP's, so only the PDP can write `enforced: false` into it; an approval request is
created by the PDP the moment it answers require_approval, and in shadow mode nobody
must be asked; and the PDP's own configuration, not a proxy's say, decides whether a
connection is enforced (a proxy cannot switch enforcement off for itself).

What stays enforced in shadow mode, because it is not the policy's verdict: identity (a
token that does not verify opens nothing), the binding of sessions to their proxy, a
decision that could not be recorded (evidence first: still a deny), a command too large
to evaluate, how often one identity opens sessions (pdp/domain/open_rate.py), the
proxies' own protocol safety (unparseable input, lexing settings,
the evidence spool). A policy engine error is the policy's verdict failing: recorded as
the deny it would be, with `enforced: false`, and not enforced.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from portcullis.config import Config
from portcullis.verdict import Verdict, VerdictKind

log = logging.getLogger("portcullis.shadow")

SHADOW_FACT = {"enforced": False}


def announce(config: Config) -> list[str]:
    """Log, loudly, every connection the PDP will not enforce on (and name them)."""
    names = [c.name for c in config.connections if not enforced(config, c.name)]
    for name in names:
        log.warning(
            "connection %s is in shadow mode (enforce: false): decisions are recorded, "
            "nothing is blocked or masked",
            name,
        )
    return names


def enforced(config: Config, connection: str) -> bool:
    """Whether the PDP enforces its verdicts on a connection (unknown ones: enforced)."""
    known = config.connection(connection)
    if known is None:
        return True
    return known.options.get("enforce", True) is not False


def record_facts(config: Config, connection: str) -> dict[str, Any]:
    """What a decision record of this connection carries about enforcement."""
    return {} if enforced(config, connection) else dict(SHADOW_FACT)


def shadow_verdict(verdict: Verdict) -> Verdict:
    """The answer a shadow-mode connection gets for the policy's `verdict`."""
    if verdict.kind is VerdictKind.ALLOW and not verdict.mask and not verdict.session_settings:
        return verdict
    said = "; ".join(verdict.reasons)
    reason = f"shadow mode: the policy would {verdict.kind.wire}" + (f" ({said})" if said else "")
    return dataclasses.replace(
        verdict,
        kind=VerdictKind.ALLOW,
        reasons=(reason,),
        mask=(),
        approval=None,
        session_settings=(),
    )


def shadowed(decision: Any) -> Any:
    """A recorded decision as a shadow-mode connection is answered. A decision that was
    not recorded stays a deny: nothing runs without its evidence."""
    if not decision.recorded:
        return decision
    changes: dict[str, Any] = {"verdict": shadow_verdict(decision.verdict)}
    # a guard's rewrite of the statement (a row filter) and its egress budget (rows and
    # bytes the proxy lets through) are enforcement too: neither is applied
    if getattr(decision, "rewritten", ""):
        changes["rewritten"] = ""
    if getattr(decision, "egress_left", None) is not None:
        changes["egress_left"] = None
    return dataclasses.replace(decision, **changes)
