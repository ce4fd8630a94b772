"""A new protocol is one package on the runtime (issue 24 §3): a toy line protocol,
declared and served from this file alone, through a real PDP.

The toy: a client sends its token as the first line, then commands, one per line; each is
decided by the PDP (the policy sees `input.command.lines.length`), an allowed line goes to
a real upstream TCP server (which answers it upper-cased), a denied one is answered
`denied: <reason>`. Session open, each decision, the recording and the close reach the
audit store; options are validated from the protocol's own schema. Once the session is
open the runtime's Relay carries both sockets (the toy supplies its two callbacks), and
every byte to the client goes through the runtime's ClientOutput."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pdp_harness import free_port, pdp_config, running_pdp, token

from pdp.domain.recordings import session_events
from portcullis import protocols
from portcullis.config import Config, ConfigError, ConnectionSettings
from proxies.launcher import handed_credential, start_proxies, stop_proxies
from proxies.runtime import (
    CLIENT,
    SERVER,
    ClientOutput,
    Listener,
    ProxyRuntime,
    ProxySession,
    Relay,
    SessionRefused,
    split_address,
)

POLICY = """package portcullis

decision := {"verdict": "allow", "reasons": ["lines may connect"]} if {
  input.command.kind == "session.open"
}

decision := {"verdict": "allow", "reasons": ["a short line"]} if {
  input.command.kind == "lines.line"
  input.command.lines.length <= 20
  not startswith(input.command.raw, "drop")
}

decision := {"verdict": "deny", "reasons": ["no dropping lines"]} if {
  input.command.kind == "lines.line"
  startswith(input.command.raw, "drop")
}
"""


class LineProxy:
    """The whole toy protocol proxy: a Listener, a ProxyRuntime, one ProxySession each."""

    def __init__(
        self,
        connection: ConnectionSettings,
        config: Config,
        pdp_address: str,
        runtime: ProxyRuntime | None = None,
    ) -> None:
        self.connection = connection
        self.runtime = runtime or ProxyRuntime.standalone(connection, config, pdp_address)
        self.listener = Listener(connection.name, connection.listen, self.serve)
        self.prefix = connection.options["prefix"]

    async def start(self) -> None:
        await self.runtime.start()
        await self.listener.start()

    async def stop(self) -> None:
        await self.listener.stop()
        await self.runtime.stop()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        output = ClientOutput(writer.write)
        session = ProxySession(self.runtime, "127.0.0.1:0", "toy-client")
        try:
            await session.open((await reader.readline()).decode().strip())
        except SessionRefused as refused:
            output.write(f"refused: {refused.reason}\n".encode())
            return
        assert session.lease is not None
        output.guard(session.lease.secrets())
        host, port = split_address(self.connection.upstream)
        up_reader, up_writer = await asyncio.open_connection(host, port)
        relay = LineRelay(session, output, up_writer, self.prefix.encode())
        reason = "proxy_shutdown"
        try:
            relay.adopt(writer, up_writer)
            relay.catch_up(reader, up_reader)
            reason = await relay.ended
        finally:
            await relay.stop()
            up_writer.close()
            output.account(session.counters)
            await session.close(reason)


class LineRelay(Relay):
    """The toy's two callbacks: client lines decided (in a task: the PDP is asked), server
    lines prefixed on their way back."""

    def __init__(
        self,
        session: ProxySession,
        output: ClientOutput,
        upstream: asyncio.StreamWriter,
        prefix: bytes,
    ) -> None:
        super().__init__(self._client_data, self._server_data, name="lines proxy")
        self.session, self.output, self.upstream, self.prefix = session, output, upstream, prefix
        self._partial = {CLIENT: b"", SERVER: b""}

    def _lines(self, side: str, data: bytes) -> list[bytes]:
        *lines, self._partial[side] = (self._partial[side] + data).split(b"\n")
        return lines

    def _client_data(self, data: bytes) -> None:
        if not self.held_back(CLIENT, data):
            self.wait(CLIENT, self._decide(self._lines(CLIENT, data)))

    async def _decide(self, lines: list[bytes]) -> None:
        for raw in lines:
            line = raw.decode()
            if not line:  # an empty line ends the session
                self.end("client_closed")
                return
            ruling = await self.session.decide("lines.line", line, {"length": len(line)})
            self.session.record_command(line, ruling)
            if ruling.verdict.allowed:
                self.upstream.write(raw + b"\n")
            else:
                self.output.write(f"denied: {'; '.join(ruling.verdict.reasons)}\n".encode())

    def _server_data(self, data: bytes) -> None:
        if self.held_back(SERVER, data):
            return
        for answer in self._lines(SERVER, data):
            self.session.record_response(bytes=len(answer) + 1)
            self.output.write(self.prefix + answer + b"\n")


LINES = protocols.Protocol(
    name="lines",
    command_kinds=("lines.line",),
    options={"prefix": protocols.Option(("> ", "< "), "> ", "what answers start with")},
    serve=LineProxy,
)


@pytest.fixture
def lines_protocol():
    protocols.register(LINES)
    yield LINES
    protocols.unregister("lines")


async def _upper_server() -> tuple[asyncio.Server, int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(line.upper())
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _connection(upstream_port: int, **options: Any) -> dict[str, Any]:
    return {
        "name": "toy",
        "type": "lines",
        "listen": f"127.0.0.1:{free_port()}",
        "upstream": f"127.0.0.1:{upstream_port}",
        "credentials": {"provider": "static", "username": "u", "password": "p"},
        **options,
    }


def test_the_protocols_options_are_its_own(lines_protocol, tmp_path):
    (tmp_path / "policy").mkdir()
    with pytest.raises(ConfigError) as err:
        pdp_config(tmp_path, connections=[_connection(1, prefix="$ ")])
    assert err.value.key == "connections[0].prefix" and "is not one of" in err.value.problem
    with pytest.raises(ConfigError) as err:
        pdp_config(tmp_path, connections=[_connection(1, tls_cert_file="x")])
    assert "not an option of lines connections" in err.value.problem
    config = pdp_config(tmp_path, connections=[_connection(1)])
    assert config.connections[0].options["prefix"] == "> "  # the default, filled in


@pytest.mark.integration
async def test_a_toy_protocol_served_through_the_runtime(lines_protocol, tmp_path):
    policies = tmp_path / "policy"
    policies.mkdir()
    (policies / "lines.rego").write_text(POLICY)
    upstream, upstream_port = await _upper_server()
    connection = _connection(upstream_port, prefix="< ", spool_dir=str(tmp_path / "spool"))
    config = pdp_config(tmp_path, policies=policies, connections=[connection])
    try:
        async with running_pdp(config) as pdp:
            served = handed_credential(config, "toy", pdp.issue_proxy_credential)
            proxies = await start_proxies(served.connections, served, pdp.address)
            try:
                host, port = split_address(connection["listen"])
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(f"{token(config, 'ann@example.com', ['readonly'])}\n".encode())
                answers = []
                for line in ("hello", "drop everything", "x" * 30, "bye"):
                    writer.write(f"{line}\n".encode())
                    answers.append((await reader.readline()).decode().rstrip("\n"))
                writer.write(b"\n")  # an empty line ends the session
                await reader.read()
                writer.close()
            finally:
                await stop_proxies(proxies)
            assert answers[0] == "< HELLO" and answers[3] == "< BYE"
            assert answers[1] == "denied: no dropping lines"
            assert answers[2].startswith("denied: ")  # no rule allows it: the default deny
            opened = await pdp.store.query(kind="session.open")
            decisions = await pdp.store.query(kind="decision")
            closes = await pdp.store.query(kind="session.close")
            events = await session_events(pdp.store)
    finally:
        upstream.close()
    assert len(opened) == 1 and opened[0].body["connection"] == "toy"
    lines = [d.body for d in decisions if d.body.get("kind") == "lines.line"]
    assert [d["raw"] for d in lines] == ["hello", "drop everything", "x" * 30, "bye"]
    assert [d["verdict"] for d in lines] == ["allow", "deny", "deny", "allow"]
    commands = [e for e in events if e["type"] == "command"]
    assert [e["command"] for e in commands] == ["hello", "drop everything", "x" * 30, "bye"]
    assert len(closes) == 1 and closes[0].body["reason"] == "client_closed"
