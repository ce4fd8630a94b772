"""What people read cannot be forged by a client, and approvers see all they approve.

Terminal escapes and newlines a client puts in its application_name or its SQL reach
`portcullis sessions list` and `replay` made inert (JSON stays exact); an approval of a
two-statement command shows both statements in full, in the CLI, the approvals API and the
webhook text.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import psycopg
import pytest
import yaml
from pg_harness import running_gateway

from pdp.api.webhooks import notice
from pdp.domain.approvals import ApprovalRequest
from pdp.plumbing.rendering import inert, statement_lines

ESCAPES = "\x1b[2K\x1b[1G"
SMUGGLED = (
    "/* justification: fix typo, ticket OPS-1 */ UPDATE customers SET note='VIP' WHERE id = 1;"
    + " " * 120
    + "UPDATE customers SET card_number = 'wiped'"
)


def test_control_characters_bidi_overrides_and_backslashes_become_visible_escapes() -> None:
    assert inert("ok") == "ok"
    assert inert(f"a{ESCAPES}b\nc\r\u202ed\u2028\\") == (
        "a\\x1b[2K\\x1b[1Gb\\nc\\r\\u202ed\\u2028\\\\"
    )
    assert "\x1b" not in inert("\x9b31m") and "\\x9b" in inert("\x9b31m")


def test_every_statement_is_shown_in_full_with_its_own_classification() -> None:
    lines = statement_lines(SMUGGLED)
    assert lines[0].strip() == "2 statements:"
    assert "UPDATE customers SET card_number = 'wiped'" in lines[2]
    assert "without WHERE" in lines[2] and "without WHERE" not in lines[1]


def test_the_webhook_and_the_api_show_both_statements() -> None:
    request = ApprovalRequest(
        id="a-1", requester={"subject": f"eve{ESCAPES}@example.com"}, session_id="s",
        connection="orders-db", command_kind="postgres.query", command=SMUGGLED,
        reasons=["UPDATE needs approval"], approvers=["group:security"], justification="x",
        created_at=time.time(), expires_at=time.time() + 60, ttl_seconds=900,
    )  # fmt: skip
    body = notice(request)
    assert "card_number = 'wiped'" in body["text"] and "2 statements" in body["text"]
    assert "\x1b" not in body["text"]
    assert [len(s["classification"]) for s in body["approval"]["statements"]] == [1, 1]


def _cli(config_path, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "pdp.cli", "-c", str(config_path), *args],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.integration
async def test_escapes_from_a_client_reach_auditors_inert(tmp_path) -> None:
    async with running_gateway(tmp_path) as gw:
        dsn = gw.dsn(gw.token("dave@example.com", ("dba",)))

        def work() -> None:
            with psycopg.connect(dsn, application_name=f"agent{ESCAPES}forged") as conn:
                conn.execute(f"SELECT 1 /* {ESCAPES}\nforged line */").fetchall()

        await asyncio.to_thread(work)
        await asyncio.sleep(1.0)
        path = tmp_path / "auditor.yaml"
        store = {"type": "sqlite", "path": str(tmp_path / "audit.db")}
        engine = {"policies": str(gw.config.pdp.engine.policies)}
        identity = {"dev": True, "dev_key": str(gw.config.identity.dev_key)}
        config = {"pdp": {"listen": gw.pdp.address, "store": store, "engine": engine}}
        path.write_text(yaml.safe_dump({**config, "identity": identity}))
        listing = await asyncio.to_thread(_cli, path, "sessions", "list")
        assert "\x1b" not in listing and "agent\\x1b[2K" in listing
        session = json.loads(
            await asyncio.to_thread(_cli, path, "sessions", "list", "--format", "json")
        )
        sid = session[-1]["session_id"]
        replay = await asyncio.to_thread(_cli, path, "replay", sid)
        assert "\x1b" not in replay
        assert not any(line.startswith("forged line") for line in replay.splitlines())
        exact = json.loads(await asyncio.to_thread(_cli, path, "replay", sid, "--format", "json"))
        assert any(ESCAPES in e.get("command", "") for e in exact["events"])  # JSON stays exact
