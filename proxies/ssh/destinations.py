"""A forward's host as the policy decides it and the upstream receives it, sans-IO.

Owns the reading of the host of a forwarding request (direct-tcpip's destination, RFC 4254
section 7.2; tcpip-forward's address to bind, section 7.1). sshd hands the host to
getaddrinfo(3), which reads many spellings of one address: `0x7f000001`, `127.1`,
`2130706433` and `0177.0.0.1` are 127.0.0.1 to glibc's inet_aton, `::ffff:127.0.0.1` is
too, and a NUL ends the name sshd reads (OpenSSH's sshpkt_get_cstring refuses the packet
and the upstream connection with it). A policy deciding on the host would decide on one
spelling while the upstream connects to another, so a host is read by an allow-list:

- an IP literal in its standard form (Python's ipaddress: dotted quads without leading
  zeros, IPv6 without brackets), written canonically (compressed; an IPv4-mapped IPv6
  address as its IPv4 address) and given to the policy as `address` too;
- otherwise a DNS name: labels of letters, digits, `-` and `_` (1..63 characters, not
  starting or ending with `-`), at most 253 characters, lower-cased, without the root's
  trailing dot, its last label not all digits, and not every label a number inet_aton
  reads (`0x7f.1`, `017.0.0.1`): such a spelling is an address, not a name.

Anything else (brackets, a scope, spaces, controls, a NUL, an empty host for a local
forward) is refused before the policy is asked. A name is resolved by the upstream, not
here: a rule on `address` holds only for literals, and a name is decided as a name (an
allow-list of names, never a deny-list: `localhost`, a name in the upstream's
/etc/hosts, a DNS name resolving to a loopback address all reach what 127.0.0.1 does).
A remote forward's empty host and `*` (every address of the upstream, RFC 4254 7.1) pass
as they are.
"""

from __future__ import annotations

import ipaddress
import re

MAX_NAME = 253
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
# a label inet_aton reads as a number: decimal, octal (leading 0) or hexadecimal (0x)
_NUMBER = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")
WILDCARDS = frozenset({"", "*"})  # a remote forward's "every address" (RFC 4254 7.1)


class Refused(ValueError):
    """A host that is not read as one name or one address; the message is safe to show."""


def destination(host: str, remote: bool = False) -> tuple[str, str]:
    """The host as decided and sent upstream, and its address when it is an IP literal
    ("" for a name). `remote`: a tcpip-forward's address to bind (its wildcards pass).
    Raises Refused."""
    if remote and host in WILDCARDS:
        return host, ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if isinstance(address, ipaddress.IPv6Address):
            if address.scope_id is not None:
                raise Refused("an IPv6 address with a scope")
            if address.ipv4_mapped is not None:
                address = address.ipv4_mapped
        text = address.compressed
        return text, text
    name = host.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > MAX_NAME:
        raise Refused("a host that is neither a name nor an IP address")
    labels = name.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise Refused("a host that is neither a name nor an IP address")
    if labels[-1].isdigit() or all(_NUMBER.fullmatch(label) for label in labels):
        raise Refused("an IP address in a spelling other than its standard one")
    return name, ""


def shown(host: str, port: int) -> str:
    """host:port as a person reads it (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
