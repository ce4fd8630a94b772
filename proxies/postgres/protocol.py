"""The Postgres protocol as it plugs into Portcullis: name, command kinds, options.

Owns the declaration portcullis.protocols reads (entry point `postgres`): the two command
kinds a Postgres proxy asks about (a statement's text, a fast-path function call), the
options of a Postgres connection besides the runtime's, and the rule between them. Light
on purpose: the configuration loader imports it; the proxy itself loads when served.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from portcullis.protocols import Option, Protocol

OPTIONS = {
    "tls_cert_file": Option("path", None, "TLS towards clients (SSLRequest): certificate"),
    "tls_key_file": Option("path", None, "TLS towards clients: its private key"),
    "upstream_tls": Option(("require", "verify-full"), None, "TLS towards the server"),
    "upstream_ca_file": Option("path", None, "CA bundle for upstream_tls: verify-full"),
    # pgbouncer (pool_mode = transaction) and the like: only the start-up parameters the
    # pooler tracks are sent; every other pin must hold through the upstream role's
    # configuration, checked at each session's start (proxies.postgres.startup)
    "upstream_pooler": Option(
        ("transaction",), None, "the upstream is a transaction pooler (e.g. pgbouncer)"
    ),
}


def _check(options: Mapping[str, Any]) -> tuple[str, str] | None:
    if ("tls_cert_file" in options) != ("tls_key_file" in options):
        return "", "TLS towards clients needs both tls_cert_file and tls_key_file"
    if "upstream_ca_file" in options and "upstream_tls" not in options:
        return "upstream_ca_file", "applies only with upstream_tls"
    return None


POSTGRES = Protocol(
    name="postgres",
    command_kinds=("postgres.query", "postgres.function_call"),
    options=OPTIONS,
    check_options=_check,
    serve="proxies.postgres.proxy:PostgresProxy",
    # the PDP classifies SQL itself from the raw text (pglast), never from a proxy's say
    policy_input="pdp.domain.policy_input:postgres_command",
)
