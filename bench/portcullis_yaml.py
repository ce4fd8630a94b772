"""The pieces of a bench's portcullis.yaml.

`pdp_and_identity`: a PDP on the embedded OPA evaluator that never reloads (a bench
measures; its policies do not change under it), a SQLite audit store and the signing key
under the bench's temporary folder, and the dev issuer whose tokens the bench mints.
`postgres_connection`: one proxied Postgres connection with static upstream credentials.
Each bench puts them together with settings of its own; nothing here starts a process.
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


def postgres_connection(
    name: str, port: int, upstream: str, database: str, username: str, password: str, **options: Any
) -> dict[str, Any]:
    """The connection `name` listening on 127.0.0.1:`port` for `database` at `upstream`
    (host:port), reached as `username`; `options` are its other settings."""
    return {
        "name": name,
        "type": "postgres",
        "listen": f"127.0.0.1:{port}",
        "upstream": upstream,
        "database": database,
        **options,
        "credentials": {"provider": "static", "username": username, "password": password},
    }
