"""A blocking socket to a real PostgreSQL server that speaks only through the codec."""

from __future__ import annotations

import socket

import pytest

from proxies.postgres.codec import BackendParser, Message


class Wire:
    """A blocking socket to the real server, speaking only through the codec."""

    def __init__(self, host: str = "127.0.0.1", port: int = 5432) -> None:
        try:
            self.sock = socket.create_connection((host, port), timeout=10)
        except OSError as exc:
            pytest.fail(f"PostgreSQL not reachable on {host}:{port}: {exc}")
        self.parser = BackendParser()
        self.pending: list[Message] = []
        self.received = bytearray()
        self.parsed: list[Message] = []

    def send(self, *messages: Message) -> None:
        self.sock.sendall(b"".join(m.encode() for m in messages))

    def recv(self) -> Message:
        while not self.pending:
            data = self.sock.recv(65536)
            assert data, "server closed the connection"
            self.received += data
            messages = self.parser.feed(data)
            self.parsed += messages
            self.pending += messages
        return self.pending.pop(0)

    def until(self, *kinds: type[Message]) -> list[Message]:
        out = [self.recv()]
        while not isinstance(out[-1], kinds):
            out.append(self.recv())
        return out

    def close(self) -> None:
        self.sock.close()
