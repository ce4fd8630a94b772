"""How the SSH proxy's connections send packets: without asyncssh's chaff where it serves nothing.

Owns one change to asyncssh's sending, on the proxy's own connections only (both sides).
asyncssh sends an empty SSH_MSG_IGNORE before every packet once encryption is on
(`SSHConnection.send_packet`, since its first commit): RFC 4251 §9.3.1's countermeasure
against the chosen-plaintext attack on CBC mode, whose next IV is the last ciphertext
block. The proxy's connections never encrypt with CBC (proxies/ssh/proxy.py's
CLIENT_CIPHERS and UPSTREAM_CIPHERS: AES-GCM and ChaCha20-Poly1305, whose nonces are
per-packet counters, and AES-CTR, whose counter runs on across packets), and OpenSSH
sends no such chaff. On a relay it doubled every packet: twice the encryptions, twice
the writes to the socket, and the peer woken twice. Terrapin (CVE-2023-48795) does not
come back with it: asyncssh and OpenSSH answer it with strict key exchange, not this.

`without_chaff(conn)` drops, for that connection, the ignore packets asyncssh makes
inside its own send_packet — and only while the cipher it sends with is one of
CHAFF_FREE; an ignore packet sent on purpose (a keepalive, from outside send_packet)
still goes. With an asyncssh whose send_packet does not take the arguments this module
knows, nothing is changed.
"""

from __future__ import annotations

import inspect
from typing import Any

import asyncssh
from asyncssh.constants import MSG_IGNORE

# the send ciphers whose security owes nothing to an ignore packet before each packet
CHAFF_FREE = frozenset(
    {
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
        "chacha20-poly1305@openssh.com",
        "aes128-ctr",
        "aes192-ctr",
        "aes256-ctr",
    }
)

_SEND_ARGS = ("pkttype", "args", "handler")  # asyncssh's SSHConnection.send_packet

KNOWN = tuple(inspect.signature(asyncssh.SSHClientConnection.send_packet).parameters)[
    1:
] == _SEND_ARGS and tuple(
    inspect.signature(asyncssh.SSHClientConnection.set_extra_info).parameters
)[1:] == ("kwargs",)


def without_chaff(conn: Any) -> None:
    """`conn` (an asyncssh connection) sends no ignore packet of its own making before
    its packets while its send cipher is in CHAFF_FREE."""
    if not KNOWN:
        return
    send = conn.send_packet  # the class's, bound to conn
    set_extra = conn.set_extra_info
    inside = 0
    # the send cipher's answer, kept as asyncssh changes it: it names the cipher with
    # set_extra_info(send_cipher=...) right as it takes it up at each NEWKEYS (nothing is
    # sent in between), so a packet need not look it up (get_extra_info asks the
    # transport too, every time)
    chaff_free = conn.get_extra_info("send_cipher") in CHAFF_FREE

    def set_extra_info(**kwargs: Any) -> None:
        nonlocal chaff_free
        set_extra(**kwargs)
        if "send_cipher" in kwargs:
            chaff_free = kwargs["send_cipher"] in CHAFF_FREE

    def send_packet(pkttype: int, *args: bytes, handler: Any = None) -> None:
        nonlocal inside
        if inside and pkttype == MSG_IGNORE and chaff_free:
            return  # the one asyncssh makes within send_packet, before the packet
        inside += 1
        try:
            send(pkttype, *args, handler=handler)
        finally:
            inside -= 1

    conn.set_extra_info = set_extra_info
    conn.send_packet = send_packet
