"""asyncssh's logging in the proxy's process (proxies/ssh/asyncssh_logs.py): nothing is
formatted while its level is off, and exactly asyncssh's lines are logged when it is on."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import asyncssh
import pytest
from asyncssh.constants import MSG_CHANNEL_DATA
from asyncssh.logging import SSHLogger
from asyncssh.packet import SSHPacketLogger

from proxies.ssh import asyncssh_logs


class Unprintable:
    """An argument whose text must never be asked for."""

    def __str__(self) -> str:
        raise AssertionError("formatted while its level is off")


class Unmeasurable(bytes):
    """A packet whose length must never be asked for."""

    def __len__(self) -> int:
        raise AssertionError("described while packet logging is off")


class Handler(SSHPacketLogger):
    def __init__(self, logger: SSHLogger) -> None:
        self._logger = logger

    @property
    def logger(self) -> SSHLogger:
        return self._logger


@pytest.fixture
def ssh_logger() -> Iterator[SSHLogger]:
    asyncssh_logs.quiet_when_off()
    base = logging.getLogger("asyncssh.test_ssh_logs")
    level, debug = base.level, SSHLogger._debug_level
    try:
        yield SSHLogger(base)
    finally:
        base.setLevel(level)
        asyncssh.set_debug_level(debug)


def test_the_installed_asyncssh_takes_the_change() -> None:
    # a newer asyncssh whose logging changed shape formats as before: say so here
    assert asyncssh_logs.KNOWN


def test_nothing_is_formatted_while_the_level_is_off(ssh_logger: SSHLogger) -> None:
    ssh_logger.logger.setLevel(logging.WARNING)
    ssh_logger.info("Received exec request for %s", [Unprintable()])
    ssh_logger.debug1("Opening channel %s", [Unprintable()])
    handler = Handler(ssh_logger)
    asyncssh.set_debug_level(1)
    ssh_logger.logger.setLevel(logging.DEBUG)  # debug level 1: packets are not logged
    handler.log_sent_packet(MSG_CHANNEL_DATA, 7, Unmeasurable(b"x"))
    handler.log_received_packet(MSG_CHANNEL_DATA, 8, Unmeasurable(b"x"), "a note")


def test_asyncssh_lines_are_logged_as_before_when_on(
    ssh_logger: SSHLogger, caplog: pytest.LogCaptureFixture
) -> None:
    ssh_logger.logger.setLevel(logging.DEBUG)
    asyncssh.set_debug_level(3)
    handler = Handler(ssh_logger)
    with caplog.at_level(logging.DEBUG, logger=ssh_logger.logger.name):
        ssh_logger.info("Received exec request for %s", [b"uptime", "now"])
        handler.log_sent_packet(MSG_CHANNEL_DATA, 7, b"\x00\x00\x00\x01hello")
        handler.log_received_packet(MSG_CHANNEL_DATA, 8, b"\x00\x00\x00\x01hi", "a note")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "Received exec request for uptime,now"
    assert lines[1].startswith("[pktid=7] Sent packet type 94, 9 bytes")
    assert lines[2].startswith("[pktid=8] Received packet type 94, 6 bytes (a note)")
    assert "68 65 6c 6c 6f" in lines[1]  # the packet's bytes, as asyncssh dumps them


def test_applied_once(ssh_logger: SSHLogger) -> None:
    wrapped: Any = SSHLogger.log
    asyncssh_logs.quiet_when_off()
    assert SSHLogger.log is wrapped
