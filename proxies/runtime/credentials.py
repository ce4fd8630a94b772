"""Upstream credentials per session: the provider interface and the static provider.

Owns which secret a session gets and when it is let go. A provider returns a
CredentialLease held only in proxy memory; `release` ends it (revokes a dynamic secret).
The policy may pick another reference only among the connection's
`credentials.allowed_refs`. The Vault provider plugs in through the same interface.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

from portcullis.config import ConfigError, ConnectionSettings, VaultSettings


class CredentialUnavailable(Exception):
    """No credential could be had; the reason is safe to show the client (no secret in it)."""


# How an upstream may have a password credential proven to it (`credentials.upstream_auth`,
# libpq's require_auth names): scram-sha-256 (the server proves it knows the password
# too), md5 (an impostor gets a salted hash it can crack offline), password (the password
# itself, and then only over TLS to a verified server, whatever is configured), none (a
# server that asks for nothing: trust; nothing is sent). What is not listed is refused.
UPSTREAM_AUTH_METHODS = ("scram-sha-256", "md5", "password", "none")
DEFAULT_UPSTREAM_AUTH = frozenset({"scram-sha-256", "none"})


def upstream_auth(connection: ConnectionSettings) -> frozenset[str]:
    """The connection's `credentials.upstream_auth` (default: scram-sha-256 and none);
    ConfigError, at start, for anything but a non-empty list of the names above."""
    given = connection.credentials.get("upstream_auth")
    if given is None:
        return DEFAULT_UPSTREAM_AUTH
    key = f"{connection.key or 'connection ' + connection.name}.credentials.upstream_auth"
    if not isinstance(given, list) or not given:
        raise ConfigError(key, f"must be a non-empty list of {', '.join(UPSTREAM_AUTH_METHODS)}")
    unknown = [m for m in given if m not in UPSTREAM_AUTH_METHODS]
    if unknown:
        raise ConfigError(key, f"{unknown[0]!r} is not one of {', '.join(UPSTREAM_AUTH_METHODS)}")
    return frozenset(given)


@dataclass(frozen=True)
class CredentialLease:
    ref: str
    username: str = ""
    password: str = field(default="", repr=False)
    header: str = ""
    value: str = field(default="", repr=False)
    private_key: str = field(default="", repr=False)
    lease_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    # how an upstream may have `password` proven to it (credentials.upstream_auth)
    upstream_auth: frozenset[str] = DEFAULT_UPSTREAM_AUTH
    # done when the credential ends before the session lets it go (a lease its provider
    # could not renew, or one at its maximum TTL): the session ends then, since the
    # upstream connection would otherwise outlive what let it in (None: it cannot end so)
    lost: asyncio.Future[None] | None = field(default=None, repr=False, compare=False)

    def secrets(self) -> list[str]:
        """Every secret string of the lease, for the never-exposed scanner."""
        return [s for s in (self.password, self.value, self.private_key) if s]


class CredentialProvider(Protocol):
    async def acquire(self, ref: str, session_id: str) -> CredentialLease: ...

    async def release(self, lease: CredentialLease) -> None: ...

    async def close(self) -> None: ...


class StaticProvider:
    """The credential written in the configuration (the embedded default)."""

    def __init__(self, connection: ConnectionSettings) -> None:
        spec = connection.credentials
        self.ref = f"static:{connection.name}"
        key_file = spec.get("private_key_file")
        self._lease = CredentialLease(
            ref=self.ref,
            username=str(spec.get("username", "")),
            password=str(spec.get("password", "")),
            header=str(spec.get("header", "")),
            value=str(spec.get("value", "")),
            private_key=str(key_file or ""),
            # an HTTP credential sent as a query parameter of this name instead of a header
            extra={"query": str(spec["query"])} if spec.get("query") else {},
            upstream_auth=upstream_auth(connection),
        )

    async def acquire(self, ref: str, session_id: str) -> CredentialLease:
        return self._lease

    async def release(self, lease: CredentialLease) -> None:
        return None

    async def close(self) -> None:
        return None


def default_ref(connection: ConnectionSettings) -> str:
    spec = connection.credentials
    return str(spec.get("ref") or f"{spec.get('provider', 'static')}:{connection.name}")


def choose_ref(connection: ConnectionSettings, policy_ref: str) -> str:
    """The reference a session uses: the configured one, or the policy's pick if allowed."""
    configured = default_ref(connection)
    if not policy_ref or policy_ref == configured:
        return configured
    allowed = connection.credentials.get("allowed_refs") or []
    if policy_ref not in allowed:
        raise CredentialUnavailable(
            f"policy chose credential {policy_ref!r}, which connection {connection.name!r} "
            "does not list under credentials.allowed_refs"
        )
    return policy_ref


def provider_for(
    connection: ConnectionSettings, vault_settings: VaultSettings | None = None
) -> CredentialProvider:
    kind = connection.credentials.get("provider")
    if kind == "static":
        return StaticProvider(connection)
    if kind == "vault":
        if vault_settings is None:
            raise CredentialUnavailable(
                f"connection {connection.name!r} uses credentials.provider vault, but the "
                "configuration has no vault: section"
            )
        from proxies.runtime.vault import VaultProvider  # hvac only where Vault is used

        return VaultProvider(connection, vault_settings)
    raise CredentialUnavailable(f"credential provider {kind!r} is not available in this build")
