"""Forwarding audit records to a SIEM: a real TCP syslog receiver and a real aiohttp JSON
receiver, a real SQLite audit store, sinks that go down and forwarders that restart."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pdp_harness import free_port, open_session, pdp_config, pdp_stub, running_pdp, token

from pdp.forwarding import Forwarder
from pdp.forwarding.spool import SpoolStateError, load_state
from pdp.store import GroupCommitStore, open_store
from portcullis.config import ConfigError, ForwarderSettings, StoreSettings, parse_config

# -- receivers -----------------------------------------------------------------------------


class SyslogReceiver:
    """RFC 6587 octet-counting TCP receiver; can go down and come back on the same port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[bytes] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            while True:
                length = await reader.readuntil(b" ")
                assert length[:-1].isdigit(), length
                self.messages.append(await reader.readexactly(int(length[:-1])))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def seqs(self) -> list[int]:
        return [int(parse_syslog(m)["sd"]["seq"]) for m in self.messages]


_HEADER = re.compile(
    rb"^<(?P<pri>\d{1,3})>(?P<version>1) (?P<timestamp>\S+) (?P<hostname>\S+) "
    rb"(?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) "
)
_SD = re.compile(r'^\[(?P<id>[^ \]]+)(?P<params>(?: [a-z_]+="(?:[^"\\\]]|\\.)*")*)\] ')
_PARAM = re.compile(r'([a-z_]+)="((?:[^"\\\]]|\\.)*)"')


def parse_syslog(message: bytes) -> dict[str, Any]:
    """Parse one RFC 5424 SYSLOG-MSG strictly enough that a malformed one fails."""
    header = _HEADER.match(message)
    assert header, message[:120]
    rest = message[header.end() :].decode()
    sd = _SD.match(rest)
    assert sd, rest[:200]
    params = {k: re.sub(r"\\(.)", r"\1", v) for k, v in _PARAM.findall(sd["params"])}
    msg = rest[sd.end() :]
    assert msg.startswith("\ufeff"), "MSG in UTF-8 starts with the BOM (RFC 5424 6.4)"
    return {
        **{k: v.decode() for k, v in header.groupdict().items()},
        "sd_id": sd["id"],
        "sd": params,
        "msg": json.loads(msg[1:]),
    }


class HTTPReceiver:
    """A JSON collector that can refuse (503) a number of batches, or be down entirely."""

    def __init__(self, port: int, refuse: int = 0) -> None:
        self.port = port
        self.refuse = refuse
        self.batches: list[dict[str, Any]] = []
        self.refused = 0
        self.headers: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None

    async def _collect(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/json"
        self.headers.append(dict(request.headers))
        if self.refused < self.refuse:
            self.refused += 1
            return web.json_response({"error": "busy"}, status=503)
        self.batches.append(await request.json())
        return web.json_response({"ok": True})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/ingest", self._collect)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ingest"

    def seqs(self) -> list[int]:
        return [r["seq"] for b in self.batches for r in b["records"]]


# -- helpers -------------------------------------------------------------------------------


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[GroupCommitStore]:
    s = open_store(StoreSettings(type="sqlite", path=tmp_path / "audit.db"))
    await s.start()
    yield s
    await s.close()


def syslog_settings(tmp_path: Path, port: int, **kw: Any) -> ForwarderSettings:
    values: dict[str, Any] = {
        "type": "syslog",
        "name": "siem",
        "state_file": tmp_path / "forwarding" / "siem.json",
        "address": f"127.0.0.1:{port}",
        "hostname": "pdp-test",
        "app_name": "portcullis-test",
        "retry_max_seconds": 1,
        "timeout_seconds": 2,
        "batch_size": 7,
    }
    values.update(kw)
    return ForwarderSettings(**values)


def forwarder(settings: ForwarderSettings, store: GroupCommitStore) -> Forwarder:
    return Forwarder(settings, store, poll_seconds=0.05, retry_initial_seconds=0.05)


async def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def append_many(store: GroupCommitStore, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        await store.append(
            "decision",
            {"verdict": "allow", "raw": f"SELECT {i}", "reasons": []},
            session_id=f"s-{i % 3}",
            subject="alice@example.com",
        )


# -- syslog --------------------------------------------------------------------------------


async def test_syslog_messages_are_rfc5424_with_octet_counting(tmp_path, store):
    receiver = SyslogReceiver(free_port())
    await receiver.start()
    opened = await store.append(
        "session.open",
        {"verdict": "allow", "session": {"client": 'psql "quoted" ]x[ \\'}},
        session_id="s-1",
        subject='eve "the" ]auditor[@example.com',
    )
    denied = await store.append(
        "decision",
        {"verdict": "deny", "raw": "DROP TABLE t;\nDROP TABLE u", "reasons": ["no"]},
        session_id="s-1",
        subject="alice@example.com",
    )
    rejected = await store.append("auth.rejected", {"reason": "expired", "client": "ünïcødé"})
    fwd = forwarder(syslog_settings(tmp_path, receiver.port), store)
    await fwd.start()
    try:
        await eventually(lambda: len(receiver.messages) == 3)
    finally:
        await fwd.stop()
        await receiver.stop()
    parsed = [parse_syslog(m) for m in receiver.messages]
    for record, msg in zip((opened, denied, rejected), parsed, strict=True):
        assert msg["version"] == "1"
        assert msg["hostname"] == "pdp-test" and msg["app"] == "portcullis-test"
        assert msg["procid"] == str(os.getpid()) and msg["msgid"] == record.kind
        stamp = datetime.fromisoformat(msg["timestamp"])
        assert msg["timestamp"].endswith("Z") and len(msg["timestamp"].split(".")[1]) == 7
        assert abs(stamp.timestamp() - record.time) < 1e-6
        assert msg["sd_id"] == "portcullis@32473"
        assert msg["sd"]["seq"] == str(record.seq) and msg["sd"]["id"] == record.id
        assert msg["sd"]["kind"] == record.kind and msg["sd"]["hash"] == record.hash
        assert msg["msg"] == {
            "seq": record.seq, "id": record.id, "kind": record.kind, "time": record.time,
            "session_id": record.session_id, "subject": record.subject, "body": record.body,
            "prev_hash": record.prev_hash, "hash": record.hash,
        }  # fmt: skip
    # facility 13 (log audit): informational 110, denial and rejected token warning 108
    assert [int(m["pri"]) for m in parsed] == [13 * 8 + 6, 13 * 8 + 4, 13 * 8 + 4]
    assert parsed[0]["sd"]["session"] == "s-1"
    assert parsed[0]["sd"]["subject"] == 'eve "the" ]auditor[@example.com'  # escaped, intact
    assert "session" not in parsed[2]["sd"]  # empty values are left out
    assert parsed[1]["msg"]["body"]["raw"] == "DROP TABLE t;\nDROP TABLE u"  # framing, not LF


async def test_syslog_down_for_a_while_then_up_delivers_each_record_once_in_order(tmp_path, store):
    port = free_port()
    receiver = SyslogReceiver(port)  # not listening yet
    fwd = forwarder(syslog_settings(tmp_path, port), store)
    await fwd.start()
    try:
        await append_many(store, 30)
        await eventually(lambda: fwd.failures >= 3)  # it kept trying while the SIEM was down
        assert fwd.delivered_seq == 0
        await append_many(store, 10, start=30)
        await receiver.start()
        await append_many(store, 20, start=40)
        await eventually(lambda: len(receiver.messages) >= 60)
        await asyncio.sleep(0.3)  # nothing more (no duplicates) arrives afterwards
    finally:
        await fwd.stop()
        await receiver.stop()
    assert receiver.seqs() == list(range(1, 61))
    assert load_state(tmp_path / "forwarding" / "siem.json").seq == 60


async def test_syslog_receiver_restart_loses_nothing(tmp_path, store):
    port = free_port()
    receiver = SyslogReceiver(port)
    await receiver.start()
    fwd = forwarder(syslog_settings(tmp_path, port), store)
    await fwd.start()
    try:
        await append_many(store, 10)
        await eventually(lambda: len(receiver.messages) == 10)
        await receiver.stop()  # the SIEM restarts: the open connection is closed under us
        await append_many(store, 15, start=10)
        await eventually(lambda: fwd.failures >= 2)
        await receiver.start()
        await eventually(lambda: len(receiver.messages) >= 25)
        await asyncio.sleep(0.3)
    finally:
        await fwd.stop()
        await receiver.stop()
    assert receiver.seqs() == list(range(1, 26))
    assert receiver.connections == 2


async def test_restarted_forwarder_resumes_after_the_last_delivered_seq(tmp_path, store):
    receiver = SyslogReceiver(free_port())
    await receiver.start()
    settings = syslog_settings(tmp_path, receiver.port)
    first = forwarder(settings, store)
    await first.start()
    try:
        await append_many(store, 12)
        await eventually(lambda: len(receiver.messages) == 12)
    finally:
        await first.stop()
    state_file = settings.state_file
    state = json.loads(state_file.read_text())
    assert state["delivered_seq"] == 12 and state["sink"] == "siem"
    assert state["delivered_hash"] == (await store.query(after_seq=11))[0].hash
    assert sorted(p.name for p in state_file.parent.iterdir()) == ["siem.json"]  # no temp left

    await append_many(store, 8, start=12)  # written while no forwarder runs
    second = forwarder(settings, store)  # a new process: only the state file carries over
    assert second.delivered_seq == 12
    await second.start()
    try:
        await eventually(lambda: len(receiver.messages) >= 20)
        await asyncio.sleep(0.3)
    finally:
        await second.stop()
        await receiver.stop()
    assert receiver.seqs() == list(range(1, 21))


async def test_state_from_another_store_starts_over_and_a_torn_state_file_stops(tmp_path, store):
    receiver = SyslogReceiver(free_port())
    await receiver.start()
    settings = syslog_settings(tmp_path, receiver.port)
    settings.state_file.parent.mkdir(parents=True)
    settings.state_file.write_text(json.dumps({"delivered_seq": 2, "delivered_hash": "ab" * 32}))
    await append_many(store, 4)
    fwd = forwarder(settings, store)
    await fwd.start()  # seq 2 here has another hash: this is not the chain it delivered from
    try:
        await eventually(lambda: len(receiver.messages) >= 4)
    finally:
        await fwd.stop()
        await receiver.stop()
    assert receiver.seqs() == [1, 2, 3, 4]

    settings.state_file.write_text('{"delivered_s')
    with pytest.raises(SpoolStateError, match="not a forwarding state file"):
        forwarder(settings, store)


async def test_kinds_filter_forwards_only_those_kinds_and_still_advances(tmp_path, store):
    receiver = SyslogReceiver(free_port())
    await receiver.start()
    settings = syslog_settings(tmp_path, receiver.port, kinds=("session.open",))
    await append_many(store, 3)
    await store.append("session.open", {"verdict": "allow"}, session_id="s-9")
    fwd = forwarder(settings, store)
    await fwd.start()
    try:
        await eventually(lambda: fwd.delivered_seq == 4)
    finally:
        await fwd.stop()
        await receiver.stop()
    assert receiver.seqs() == [4]


# -- http ----------------------------------------------------------------------------------


def http_settings(tmp_path: Path, url: str, **kw: Any) -> ForwarderSettings:
    values: dict[str, Any] = {
        "type": "http",
        "name": "collector",
        "state_file": tmp_path / "forwarding" / "collector.json",
        "url": url,
        "headers": {"Authorization": "Bearer siem-token"},
        "retry_max_seconds": 1,
        "timeout_seconds": 2,
        "batch_size": 10,
    }
    values.update(kw)
    return ForwarderSettings(**values)


async def test_http_sink_down_then_refusing_then_up(tmp_path, store):
    receiver = HTTPReceiver(free_port(), refuse=3)
    fwd = forwarder(http_settings(tmp_path, receiver.url), store)
    await fwd.start()
    try:
        await append_many(store, 25)
        await eventually(lambda: fwd.failures >= 2)  # connection refused
        await receiver.start()
        await append_many(store, 10, start=25)
        await eventually(lambda: len(receiver.seqs()) >= 35)
        await asyncio.sleep(0.3)
    finally:
        await fwd.stop()
        await receiver.stop()
    assert receiver.refused == 3  # 503 three times, then accepted
    assert receiver.seqs() == list(range(1, 36))
    first = receiver.batches[0]
    assert first["source"] == "portcullis"
    assert (first["first_seq"], first["last_seq"]) == (1, 10)
    assert set(first["records"][0]) == {
        "seq", "id", "kind", "time", "session_id", "subject", "body", "prev_hash", "hash"
    }  # fmt: skip
    chain = [r for b in receiver.batches for r in b["records"]]
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(chain))
    assert all(h["Authorization"] == "Bearer siem-token" for h in receiver.headers)


async def test_pdp_forwards_its_own_audit_records(tmp_path):
    receiver = HTTPReceiver(free_port())
    await receiver.start()
    config = pdp_config(tmp_path, forwarding=[{"type": "http", "url": receiver.url}])
    state_file = config.forwarding[0].state_file
    assert state_file.parent == tmp_path / "var" / "forwarding"
    try:
        async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
            opened = await open_session(stub, token(config))
            await eventually(
                lambda: any(r["session_id"] == opened.session_id for r in _records(receiver))
            )
    finally:
        await receiver.stop()
    kinds = [r["kind"] for r in _records(receiver)]
    assert kinds[0] == "session.open"
    assert load_state(state_file).seq == receiver.seqs()[-1]


def _records(receiver: HTTPReceiver) -> list[dict[str, Any]]:
    return [r for b in receiver.batches for r in b["records"]]


# -- configuration -------------------------------------------------------------------------


def _config(tmp_path: Path, forwarding: Any):
    return parse_config(
        {"identity": {"dev": True}, "pdp": {"engine": {"type": "remote", "url": "http://x"}},
         "forwarding": forwarding},
        base_dir=tmp_path,
    )  # fmt: skip


def test_forwarding_configuration(tmp_path):
    config = _config(
        tmp_path,
        [
            {"type": "syslog", "address": "siem.example.com:6514", "app_name": "pdp-eu"},
            {"type": "http", "url": "https://collector.example.com/in", "name": "splunk",
             "headers": {"Authorization": "Splunk abc"}, "kinds": ["session.open"]},
        ],
    )  # fmt: skip
    syslog, http = config.forwarding
    assert (syslog.type, syslog.address, syslog.app_name) == (
        "syslog", "siem.example.com:6514", "pdp-eu"
    )  # fmt: skip
    assert syslog.state_file.parent == tmp_path / "var" / "forwarding"
    assert http.name == "splunk" and http.state_file == tmp_path / "var/forwarding/splunk.json"
    assert http.headers == {"Authorization": "Splunk abc"} and http.kinds == ("session.open",)
    assert _config(tmp_path, None).forwarding == ()


@pytest.mark.parametrize(
    ("forwarding", "key"),
    [
        ({"type": "syslog"}, "forwarding"),
        ([{"type": "kafka"}], "forwarding[0].type"),
        ([{"type": "syslog"}], "forwarding[0].address"),
        ([{"type": "syslog", "address": "nowhere"}], "forwarding[0].address"),
        ([{"type": "http", "url": "http://a"}, {"type": "http", "url": "ftp://b"}],
         "forwarding[1].url"),
        ([{"type": "http", "url": "http://a", "colour": "red"}], "forwarding[0].colour"),
        ([{"type": "http", "url": "http://a"}, {"type": "http", "url": "http://a"}],
         "forwarding[1].name"),
        ([{"type": "syslog", "address": "h:1", "app_name": "has space"}],
         "forwarding[0].app_name"),
        ([{"type": "syslog", "address": "h:1", "facility": 30}], "forwarding[0].facility"),
        ([{"type": "http", "url": "http://a", "kinds": "decision"}], "forwarding[0].kinds"),
    ],
)  # fmt: skip
def test_forwarding_configuration_errors_name_the_key(tmp_path, forwarding, key):
    with pytest.raises(ConfigError) as caught:
        _config(tmp_path, forwarding)
    assert caught.value.key == key
