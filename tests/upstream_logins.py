"""Logins of the proxy to an upstream, one connection per case, checked from the client's
side: the shared stage of the tests of which upstream authentication methods the proxy
answers (test_pg_proxy, test_creds_probe_p10)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pdp_harness import pdp_config, running_pdp, token

from proxies.postgres.proxy import PostgresProxy

DBA = ("dba", "pii-readers")
ALLOW_ALL = 'package portcullis\n\ndecision := {"verdict": "allow", "reasons": ["test"]}\n'


async def check_logins(
    tmp_path: Path,
    connections: Sequence[dict[str, Any]],
    cases: Sequence[tuple[str, str, str]],
) -> None:
    """A proxy per connection (a PDP whose policy allows everything: the shipped data
    names no such connections) and a dba's client login through each: case (role,
    secret, refusal) logs in as `role`, or is refused with `refusal` in the error and
    without `secret` in it."""
    policies = tmp_path / "policy"
    policies.mkdir()
    (policies / "p.rego").write_text(ALLOW_ALL)
    config = pdp_config(tmp_path, connections=list(connections), policies=policies)
    async with running_pdp(config) as pdp:
        proxies = [PostgresProxy(c, config, pdp.address) for c in config.connections]
        for proxy in proxies:
            await proxy.start()
        try:
            tok = token(config, "dana", DBA)
            for proxy, (role, secret, refusal) in zip(proxies, cases, strict=True):
                dsn = f"postgresql://agent:{tok}@127.0.0.1:{proxy.port}/postgres"
                if not refusal:
                    conn = await asyncpg.connect(dsn, ssl=False)
                    assert await conn.fetchval("SELECT current_user") == role
                    await conn.close()
                    continue
                with pytest.raises(asyncpg.PostgresError) as err:
                    await asyncpg.connect(dsn, ssl=False)
                assert refusal in str(err.value), (role, str(err.value))
                assert secret not in str(err.value)
        finally:
            for proxy in proxies:
                await proxy.stop()
