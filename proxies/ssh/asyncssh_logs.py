"""asyncssh's logging, paid for only when something is logged.

Owns one change to asyncssh in the proxy's process: its log calls cost nothing when their
level is off. asyncssh formats before it asks whether anyone listens:
`SSHLogger.log` turns every argument into text (bytes decoded, lists joined, addresses
spelt) and only then lets logging.LoggerAdapter check the level; and every packet sent or
received goes through `SSHPacketLogger.log_sent_packet` / `log_received_packet`, which
name the packet type and count its bytes before `SSHLogger.packet` finds the debug level
below 3 and drops it. The proxy sets asyncssh's logger to WARNING (proxies/ssh/proxy.py),
so per exec that was about a dozen INFO lines built and thrown away, and 22 packet
descriptions: a tenth of the proxy's event-loop time per exec in cProfile.

`quiet_when_off()` wraps both so that the level is asked first; when it is on (a logger
set to DEBUG, asyncssh.set_debug_level(3)) they run unchanged, so what is logged is
exactly what asyncssh logs. Applied once per process; with an asyncssh whose methods do
not have the shape this module knows (KNOWN false), nothing is changed.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from asyncssh.logging import SSHLogger
from asyncssh.packet import SSHPacketLogger

_PACKET_ARGS = ("pkttype", "pktid", "packet", "note")

KNOWN = (
    tuple(inspect.signature(SSHPacketLogger.log_sent_packet).parameters)[1:] == _PACKET_ARGS
    and tuple(inspect.signature(SSHPacketLogger.log_received_packet).parameters)[1:] == _PACKET_ARGS
    and tuple(inspect.signature(SSHLogger.log).parameters)[1:] == ("level", "msg", "args", "kwargs")
    and isinstance(getattr(SSHLogger, "_debug_level", None), int)
)

_APPLIED = "_portcullis_quiet"


def quiet_when_off() -> None:
    """asyncssh's log calls and packet logs return at once while nothing would be logged."""
    if not KNOWN or getattr(SSHLogger.log, _APPLIED, False):
        return
    log = SSHLogger.log

    def log_when_on(self: SSHLogger, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            log(self, level, msg, *args, **kwargs)

    sent, received = SSHPacketLogger.log_sent_packet, SSHPacketLogger.log_received_packet

    def packets_logged(handler: Any) -> bool:
        # SSHLogger.packet's own test (debug level 3), then the logger's level
        return SSHLogger._debug_level >= 3 and handler.logger.isEnabledFor(logging.DEBUG)

    def log_sent(self: Any, pkttype: int, pktid: Any, packet: Any, note: str = "") -> None:
        if packets_logged(self):
            sent(self, pkttype, pktid, packet, note)

    def log_received(self: Any, pkttype: int, pktid: Any, packet: Any, note: str = "") -> None:
        if packets_logged(self):
            received(self, pkttype, pktid, packet, note)

    for wrapper in (log_when_on, log_sent, log_received):
        setattr(wrapper, _APPLIED, True)
    SSHLogger.log = log_when_on  # type: ignore[method-assign]
    SSHPacketLogger.log_sent_packet = log_sent  # type: ignore[method-assign]
    SSHPacketLogger.log_received_packet = log_received  # type: ignore[method-assign]
