"""What every protocol proxy stands on; a protocol package uses only what is named here.

- `Listener`: accept (TCP or TLS), track and drain client connections.
- `ProxyRuntime.build(connection, pdp_address, ...)`: one per listening proxy — the PDP
  client (TLS/mTLS and the proxy credential from configuration), the credential provider,
  the spool, the sessions to drain.
- `ProxySession`: one client's session — `open(token)` (OpenSession, then the upstream
  credential), `decide` / `decide_or_wait` (the cache or the PDP; approval waits),
  `record_command` / `record_response` / `record_masking`, `close(reason)`.
- `Ruling`, `SessionRefused`: a decision as the proxy enforces it; a session refused.
- `SecretScanner`: the exposure check of the signed "credential never exposed" statement.
"""

from proxies.runtime.listener import Listener, split_address
from proxies.runtime.pdp_client import Ruling, SessionGrant, SessionRefused
from proxies.runtime.secrets_scan import SecretScanner
from proxies.runtime.session import ProxyRuntime, ProxySession

__all__ = [
    "Listener",
    "ProxyRuntime",
    "ProxySession",
    "Ruling",
    "SecretScanner",
    "SessionGrant",
    "SessionRefused",
    "split_address",
]
