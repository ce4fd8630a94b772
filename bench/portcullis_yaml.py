"""The part of a bench's portcullis.yaml that is not its connections.

A PDP on the embedded OPA evaluator that never reloads (a bench measures; its policies do
not change under it), a SQLite audit store and the signing key under the bench's temporary
folder, and the dev issuer whose tokens the bench mints. Each bench adds its connections
(and any PDP setting of its own) to the mapping this returns; nothing here starts a process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pdp_and_identity(tmp: Path, policies: Path, pdp_port: int, **pdp: Any) -> dict[str, Any]:
    """The `pdp` and `identity` sections: the PDP on 127.0.0.1:`pdp_port` evaluating
    `policies`, its files under `tmp`, with `pdp`'s settings added to its section."""
    return {
        "pdp": {
            "listen": f"127.0.0.1:{pdp_port}",
            "engine": {"type": "embedded", "policies": str(policies), "reload": False},
            "store": {"type": "sqlite", "path": str(tmp / "audit.db")},
            "signing_key": str(tmp / "signing.key"),
            **pdp,
        },
        "identity": {"dev": True, "dev_key": str(tmp / "dev.key")},
    }
