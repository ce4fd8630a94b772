"""What the console needs to know that portcullis.yaml does not say, with defaults from it.

Owns `ConsoleSettings`: the console's public URL (its OIDC redirect URI is built from it),
the OIDC client id (the identity audience by default: the ID token's `aud` is the client
id, so the PDP's own verifier accepts it), the issuer it signs people in with (the
configured OIDC issuer; the dev issuer of the embedded default when there is none), how
long a sign-in lasts, and which groups see every session and the evidence (auditors).
No IO but the one environment variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from portcullis.config import Config

DEFAULT_AUDITORS = ("security", "auditor")
URL_VARIABLE = "PORTCULLIS_CONSOLE_URL"


@dataclass(frozen=True)
class ConsoleSettings:
    public_url: str  # e.g. http://127.0.0.1:7001 — no trailing slash
    client_id: str = "portcullis"
    issuer: str = ""  # "" means the PDP's dev issuer (identity.dev)
    session_seconds: int = 8 * 3600
    idle_seconds: int = 3600
    auditor_groups: tuple[str, ...] = DEFAULT_AUDITORS
    # identity.insecure_plain_http_to_remote_idp: the issuer's sign-in endpoints may be
    # plain HTTP to another host (a closed network), as its keys may
    insecure_plain_http_to_remote_idp: bool = False

    @property
    def redirect_uri(self) -> str:
        return f"{self.public_url}/console/callback"

    @property
    def secure(self) -> bool:
        """Cookies are Secure when the console is reached over TLS."""
        # the scheme in any case: HTTPS://console.example is reached over TLS too
        return self.public_url[:8].lower() == "https://"

    @classmethod
    def from_config(cls, config: Config, env: Mapping[str, str] | None = None) -> ConsoleSettings:
        """From the configuration; PORTCULLIS_CONSOLE_URL names the URL browsers use when
        it is not http://<http_listen> (a wildcard listen address, a TLS proxy in front)."""
        listen = config.pdp.http_listen or "127.0.0.1:7001"
        public = "" if listen.startswith("unix:") else f"http://{listen}"
        public = (os.environ if env is None else env).get(URL_VARIABLE, "") or public
        return cls(
            public_url=public.rstrip("/"),
            client_id=config.identity.audience or "portcullis",
            issuer=config.identity.issuer,
            insecure_plain_http_to_remote_idp=config.identity.insecure_plain_http_to_remote_idp,
        )
