"""Whether a URL names this host, and whether it is fetched in clear across the network:
plain HTTP to a host other than this one (loopback addresses and `localhost` are this
host). What answers such a URL is whoever sits on the path, so neither identity keys
(pdp.domain.identity, the console's sign-in) nor Vault (proxies.runtime.vault) are
fetched that way."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def names_this_host(url: str) -> bool:
    """Whether `url`'s host is this host: `localhost` or a loopback address."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cleartext_remote(url: str) -> bool:
    """Whether `url` is plain HTTP beyond this host."""
    return urlsplit(url).scheme == "http" and not names_this_host(url)
