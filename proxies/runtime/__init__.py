"""What every protocol proxy stands on; a protocol package uses only what is named here.

- `Listener`: accept (TCP or TLS), track and drain client connections; `split_address`.
- `ProxyRuntime.build(connection, pdp_address, ...)`: one per listening proxy — the PDP
  client (TLS/mTLS and the proxy credential from configuration), the credential provider,
  the spool, the sessions to drain.
- `ProxySession`: one client's session — `open(token)` (OpenSession, then the upstream
  credential), `decide` / `decide_or_wait` (the cache or the PDP; approval waits),
  `record_command` / `record_response` / `record_masking`, `grant_expiry(tell)` (a
  just-in-time grant's end or the client token's expiry), `close(reason)`.
- `Relay`: the two sockets of an open session, relayed in their callbacks — a protocol
  subclasses it with its two callbacks (`CLIENT` / `SERVER` name the sides); backpressure
  between the sides, `wait(side, work)` holds a side while async work finishes a chunk in
  order, `end(reason)` / `ended`, the statement watchdog (`busy` / `progress` / `overdue`).
- `ClientOutput`: the one writer of bytes to a client — counted and scanned for the
  session's credential (`guard(secrets)`, `account(counters)` at close).
- `Ruling`, `SessionGrant`, `SessionRefused`: a decision as the proxy enforces it; an open
  session's grant; a session refused.
- `SecretScanner`: the exposure check of the signed "credential never exposed" statement.
- `masking_key(secret, connection)`: the key of the `hash` masking strategy.
"""

from portcullis.masking import masking_key
from proxies.runtime.exposure import ClientOutput
from proxies.runtime.listener import Listener, split_address
from proxies.runtime.pdp_client import Ruling, SessionGrant, SessionRefused
from proxies.runtime.relay import CLIENT, SERVER, Relay
from proxies.runtime.secrets_scan import SecretScanner
from proxies.runtime.session import ProxyRuntime, ProxySession

__all__ = [
    "CLIENT",
    "SERVER",
    "ClientOutput",
    "Listener",
    "ProxyRuntime",
    "ProxySession",
    "Relay",
    "Ruling",
    "SecretScanner",
    "SessionGrant",
    "SessionRefused",
    "masking_key",
    "split_address",
]
