"""/metrics speaks the Prometheus text format: evaluation latency is a real histogram."""

from __future__ import annotations

import aiohttp
from pdp_harness import (
    decide_sql,
    free_port,
    open_session,
    pdp_config,
    pdp_stub,
    running_pdp,
    token,
)


async def test_evaluation_latency_is_a_histogram(tmp_path):
    port = free_port()
    base = pdp_config(tmp_path)
    config = pdp_config(tmp_path, pdp={
        "listen": base.pdp.listen, "http_listen": f"127.0.0.1:{port}",
        "engine": {"type": "embedded", "policies": str(base.pdp.engine.policies), "workers": 1},
        "store": {"type": "sqlite", "path": str(tmp_path / "audit.db")},
        "signing_key": str(tmp_path / "signing.key"),
    })  # fmt: skip
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config, groups=("dba",)))
        for _ in range(3):
            await decide_sql(stub, opened.session_id, "select 1")
        # a scraper's credential, naming no connection (test_pdp_probe_p9)
        scraper = {"Authorization": f"Bearer {app.issue_proxy_credential('prometheus', [])}"}
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/metrics", headers=scraper) as response,
        ):
            text = await response.text()
    lines = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert "# TYPE portcullis_evaluation_seconds histogram" in text
    count = int(lines["portcullis_evaluation_seconds_count"])
    assert count == 4  # session.open and three statements
    assert int(lines['portcullis_evaluation_seconds_bucket{le="+Inf"}']) == count
    buckets = [
        int(v) for k, v in lines.items() if k.startswith("portcullis_evaluation_seconds_bucket")
    ]
    assert buckets == sorted(buckets)  # cumulative
    assert float(lines["portcullis_evaluation_seconds_sum"]) > 0
