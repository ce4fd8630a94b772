"""`logging.format: json`: every line a proxy and the PDP write is one JSON object, the
lines about sessions and decisions carry their ids, and no secret is ever among them —
not the client's token, not the upstream password, not a token that came in a message.

Real processes (`portcullis pdp`, `portcullis proxy postgres`), psql and asyncpg."""

from __future__ import annotations

import io
import json
import logging

import asyncpg
import pytest
from test_metrics_proxy import eventually, proxy_stack

from portcullis import logs

pytestmark = pytest.mark.integration


def parsed(lines: list[str]) -> list[dict]:
    out = []
    for line in lines:
        if line.strip():
            out.append(json.loads(line))  # every line: one JSON object
    return out


async def test_json_log_lines_parse_and_carry_session_and_decision_ids(tmp_path):
    with proxy_stack(tmp_path, log_format="json") as stack:
        reader = stack.token("readonly")
        result = stack.psql(reader, "select name from customers order by id", "drop table orders")
        assert "Ada" in result.stdout and "denied" in result.stderr
        conn = await stack.asyncpg(reader)
        try:
            with pytest.raises(asyncpg.PostgresError):
                # denied outright (a write needing approval would hold the test for the
                # approvals timeout before it is refused)
                await conn.execute("drop table customers")
        finally:
            await conn.close()
        outsider = stack.token("nobody", sub="mallory@example.com")
        assert stack.psql(outsider, "select 1").returncode != 0  # session refused

        def closed() -> list[dict]:
            lines = parsed(stack.log_lines())
            done = [r for r in lines if r["msg"].startswith("session closed")]
            return lines if len(done) >= 2 else []

        lines = eventually(closed, "both sessions closed")
        for record in lines:
            assert {"ts", "level", "logger", "msg"} <= record.keys()
            assert record["ts"].endswith("Z")

        opened = [r for r in lines if r["msg"].startswith("session opened")]
        assert len(opened) == 2
        for record in opened:
            assert record["session_id"] and record["decision_id"].startswith("d-")
            assert record["connection"] == "orders-db"
        sessions = {r["session_id"] for r in opened}

        denied = [r for r in lines if r["msg"] == "command denied"]
        assert denied, "a denied statement is logged"
        for record in denied:
            assert record["session_id"] in sessions
            assert record["decision_id"].startswith("d-")
            assert record["verdict"] == "deny" and record["reason"]

        closed_lines = [r for r in lines if r["msg"].startswith("session closed")]
        assert {r["session_id"] for r in closed_lines} == sessions

        refused = [r for r in lines if r["msg"].startswith("session refused")]
        assert refused and refused[0]["decision_id"].startswith("d-")

        # the PDP's lines are JSON too
        assert parsed(stack.log_lines("pdp"))

        everything = "\n".join(stack.log_lines() + stack.log_lines("pdp"))
        for secret in (reader, outsider, stack.password):
            assert secret not in everything
        # nor any part of a token that could be replayed (its signature)
        assert reader.rsplit(".", 1)[1] not in everything


def test_a_token_in_a_message_is_scrubbed_in_both_formats():
    """A library's message that carries a credential does not reach the log as written."""
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl"
    for format in ("json", "text"):
        stream = io.StringIO()
        logs.setup(format)
        handler = logging.getLogger().handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(stream)
        log = logging.getLogger("portcullis.test")
        log.warning("upstream said: Authorization: Bearer %s", "tok_live_abcdefghijklmnop")
        log.warning("login failed for token %s", jwt)
        log.warning("dsn postgresql://app:x@db/orders?password=hunter2-secret")
        try:
            raise ValueError(f"bad token {jwt}")
        except ValueError:
            log.exception("failed", extra={"session_id": "s-1", "decision_id": "d-1"})
        out = stream.getvalue()
        for secret in (jwt, "tok_live_abcdefghijklmnop", "hunter2-secret", "c2lnbmF0dXJl"):
            assert secret not in out, (format, out)
        if format == "json":
            records = [json.loads(line) for line in out.splitlines()]
            assert records[-1]["session_id"] == "s-1" and records[-1]["decision_id"] == "d-1"
            assert "ValueError" in records[-1]["exception"]
    logs.setup("text")
