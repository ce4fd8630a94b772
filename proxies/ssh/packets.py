"""How the SSH proxy's connections send packets: without asyncssh's chaff where it serves
nothing, and the packets of one turn of the event loop in one write.

Owns two changes to asyncssh's sending, on the proxy's own connections only (both sides).

Chaff. asyncssh sends an empty SSH_MSG_IGNORE before every packet once encryption is on
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

Writes. asyncssh hands each packet to its transport as it is made
(`SSHConnection._send`), and uvloop writes it to the socket then and there: one send()
per packet, and the peer woken for each. A relay makes packets in bursts — the
upstream's output, EOF, exit status and close, read together, become four packets to the
client in the same callback — so `coalesced_writes(conn)` holds the packets made in one
turn of the event loop and writes them together at its end (`loop.call_soon`: before the
loop next waits for I/O, and before an abort asyncssh schedules after them, so a
DISCONNECT still goes out ahead of it); their bytes and order are unchanged. With an
asyncssh whose `_send` is not the one this module knows (COALESCING false), nothing is
changed.
"""

from __future__ import annotations

import asyncio
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


def _writes_its_transport(send: Any) -> bool:
    """asyncssh's SSHConnection._send as this module knows it: `data` written to
    `self._transport` (when set), and nothing else."""
    try:
        source = inspect.getsource(send)
    except (OSError, TypeError):
        return False
    body = [line.strip() for line in source.splitlines()[1:] if line.strip()]
    known = ['"""Send data to the SSH connection"""', "if self._transport:", "try:",
             "self._transport.write(data)", "except ConnectionError: # pragma: no cover",
             "pass"]  # fmt: skip
    return tuple(inspect.signature(send).parameters)[1:] == ("data",) and body == known


COALESCING = _writes_its_transport(asyncssh.connection.SSHConnection._send)


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


def coalesced_writes(conn: Any) -> None:
    """`conn` (an asyncssh connection, its transport set) writes the packets it makes in
    one turn of the event loop to its transport at once, at the end of that turn."""
    if not COALESCING:
        return
    loop = asyncio.get_running_loop()
    held: list[bytes] = []

    def flush(transport: asyncio.Transport) -> None:
        data = b"".join(held)
        held.clear()
        if transport.is_closing():
            return  # aborted meanwhile (the peer left): asyncssh's own write would drop it
        try:
            transport.write(data)
        except (ConnectionError, RuntimeError):
            pass  # a socket closed under it: the connection's loss is asyncssh's to tell

    def send(data: bytes) -> None:
        transport = conn._transport
        if transport is None:
            return  # closed: asyncssh's _send drops the packet too
        if not held:
            loop.call_soon(flush, transport)
        held.append(data)

    conn._send = send
