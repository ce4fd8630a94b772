"""How a proxy proves to the PDP that it is one (DESIGN.md: only proxies speak for sessions).

Owns turning `proxies.pdp` of portcullis.yaml into what the PDP client sends: TLS channel
credentials (`ca_file`; with `cert_file` + `key_file` the proxy's certificate for mTLS,
which is then its identity), else the proxy credential the PDP issued — handed over in
memory by `portcullis up`, or read from `proxies.pdp.credential_file` (default: the file
the PDP writes at start, `pdp.proxy_credential_file`). Never logs a credential.

A credential sent without TLS to a PDP beyond this host crosses the network in clear
(anyone on the path may then speak to the PDP as this proxy, and read the clients' tokens
the session calls carry): the proxy refuses to start (ConfigError naming proxies.pdp.ca_file),
as the Vault provider does for Vault, unless `proxies.pdp.insecure_plaintext_to_remote_pdp`
is true (then it is logged loudly at every start).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import replace
from typing import Any

import grpc

from portcullis.config import Config, ConfigError
from portcullis.config_keyfiles import check_key_file
from portcullis.wire import CREDENTIAL_METADATA

log = logging.getLogger("portcullis.pdp_auth")

# proxies.pdp's opt-out from refusing a credential sent in clear beyond this host
INSECURE_PLAINTEXT = "insecure_plaintext_to_remote_pdp"


def pdp_address(config: Config, override: str = "") -> str:
    """Where this proxy reaches the PDP."""
    return override or config.proxies.pdp.address or config.pdp.address or config.pdp.listen


def with_credential(config: Config, credential: str) -> Config:
    """The configuration a proxy of `portcullis up` starts with: its credential in hand."""
    return replace(
        config,
        proxies=replace(config.proxies, pdp=replace(config.proxies.pdp, credential=credential)),
    )


def client_auth(config: Config, address: str = "") -> dict[str, Any]:
    """PDPClient keyword arguments: `credentials` (TLS) and `metadata` (the credential).
    Raises ConfigError naming the key when a proxy has no way to prove itself. address:
    the PDP's, when the credential is about to be sent there (a warning when in clear)."""
    settings = config.proxies.pdp
    out: dict[str, Any] = {}
    readable = config.pdp.insecure_readable_key_files
    if settings.key_file is not None:
        check_key_file(settings.key_file, "proxies.pdp.key_file", readable)
    if settings.ca_file or settings.cert_file:
        out["credentials"] = grpc.ssl_channel_credentials(
            root_certificates=settings.ca_file.read_bytes() if settings.ca_file else None,
            private_key=settings.key_file.read_bytes() if settings.key_file else None,
            certificate_chain=settings.cert_file.read_bytes() if settings.cert_file else None,
        )
    if settings.cert_file:
        return out  # the certificate names the proxy and its connections
    credential = settings.credential
    if not credential:
        path = settings.credential_file or config.pdp.proxy_credential_file
        key = (
            "proxies.pdp.credential_file"
            if settings.credential_file
            else "pdp.proxy_credential_file"
        )
        check_key_file(path, key, readable)  # (it speaks for every connection it names)
        try:
            credential = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                key,
                f"cannot read the proxy credential {path} ({exc.strerror}): start the PDP "
                "first (it writes this file), or give the proxy a certificate "
                "(proxies.pdp.cert_file and key_file; see `portcullis certs`)",
            ) from None
    out["metadata"] = ((CREDENTIAL_METADATA, credential),)
    if address and "credentials" not in out and _beyond_this_host(address):
        # (getattr: the configuration names the opt-out from its own release on)
        if getattr(settings, INSECURE_PLAINTEXT, False) is not True:
            raise ConfigError(
                "proxies.pdp.ca_file",
                f"the PDP at {address} is beyond this host and reached without TLS: the "
                "proxy credential and every client's token would cross the network in "
                "clear; set proxies.pdp.ca_file (see `portcullis certs`), or, knowing "
                f"that, proxies.pdp.{INSECURE_PLAINTEXT}: true",
            )
        log.warning(
            "the proxy credential goes to the PDP at %s in clear (no proxies.pdp.ca_file): "
            "anyone on the path may speak to the PDP as this proxy; use TLS "
            "(see `portcullis certs`)",
            address,
        )
    return out


def _beyond_this_host(address: str) -> bool:
    """Whether a gRPC target is reached over the network: not a Unix socket, loopback, or
    localhost."""
    if address.startswith(("unix:", "unix-abstract:")):
        return False
    target = address.removeprefix("dns:///").removeprefix("ipv4:").removeprefix("ipv6:")
    host = target.rpartition(":")[0] if ":" in target else target
    host = host.strip("[]")
    if host == "localhost":
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return True
    # (0.0.0.0 and :: reach this host: pdp.listen when the PDP listens everywhere)
    return not (ip.is_loopback or ip.is_unspecified)
