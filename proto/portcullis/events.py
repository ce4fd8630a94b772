"""The recorded-event contract: the limits a proxy's session events keep and the PDP checks.

Owns what both ends agree on about one recorded event: how long a run of repeats may be,
how much of a command too long to store whole is kept, and the facts an event carries
about the part it cut (size and SHA-256 of the whole text). The proxy's recorder applies
them before it sends; the PDP's recordings check them again before they are stored.
"""

from __future__ import annotations

import hashlib
from typing import Any

MAX_REPEAT = 4096  # the longest run of one event repeated that a batch may carry
TRUNCATED_PREFIX = 4096  # what is kept of a command too long to store whole


def truncation_facts(command: str) -> dict[str, Any]:
    """What an event says of a command it carries only the start of."""
    whole = command.encode("utf-8", "surrogatepass")
    return {
        "command_truncated": True,
        "command_bytes": len(whole),
        "command_sha256": hashlib.sha256(whole).hexdigest(),
    }
