"""Attacks on the upstream credential (probe p3): an upstream that asks for the password.

The Postgres proxy answered AuthenticationCleartextPassword whatever the connection: on a
plain TCP connection whoever answers at the upstream's address (a local user holding
127.0.0.1:5432 while the server restarts, anyone on the path) had the session's password
(Vault-issued or static) for the asking. It now goes in clear only over TLS to a verified
server; SCRAM and md5 prove it without sending it.

Real components: a PDP and the Postgres proxy in process (pg_harness); the upstream is
the hostile party itself (tests/test_creds_probe_p2.py's), the client raw bytes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pg_harness import gateway_on, scratch_database
from test_creds_probe_p2 import _everything_sent, _hostile_upstream

pytestmark = pytest.mark.integration


async def test_a_plain_upstream_asking_the_password_in_clear_is_not_given_it(
    tmp_path: Path,
) -> None:
    with scratch_database() as (name, role, password):
        async with (
            _hostile_upstream(lambda p: "thanks") as (port, given),
            gateway_on(tmp_path, name, role, password, f"127.0.0.1:{port}") as gw,
        ):
            sent = await asyncio.to_thread(_everything_sent, gw.proxy.port, name, gw.token())
    assert given == []
    assert b"in clear" in sent and password.encode() not in sent
