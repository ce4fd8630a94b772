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


async def test_a_policy_revision_cannot_write_metric_lines(tmp_path):
    """A bundle's revision is its publisher's text (printable, its loader checks); written
    into /metrics as it was, its quotes gave the policy_info sample another engine and a
    second revision label, and a scraper's parser refuses the whole page (every alarm on
    it unread). Label values are escaped as the text format says."""
    import json

    from pdp_harness import REGO
    from prometheus_client.parser import text_string_to_metric_families

    from pdp.engine import opa_bundle

    hostile = 'v2",engine="remote\\'
    data, _ = opa_bundle.build(REGO)
    files = opa_bundle.unpack(data)
    files[".manifest"] = json.dumps({"revision": hostile, "roots": ["portcullis"]}).encode()
    bundle = tmp_path / "policy.tar.gz"
    bundle.write_bytes(opa_bundle.pack(files))
    port = free_port()
    base = pdp_config(tmp_path)
    config = pdp_config(tmp_path, pdp={
        "listen": base.pdp.listen, "http_listen": f"127.0.0.1:{port}",
        "engine": {"type": "embedded", "bundle": str(bundle), "workers": 1},
        "store": {"type": "sqlite", "path": str(tmp_path / "audit.db")},
        "signing_key": str(tmp_path / "signing.key"),
    })  # fmt: skip
    async with running_pdp(config) as app:
        assert app.engine.revision == hostile
        scraper = {"Authorization": f"Bearer {app.issue_proxy_credential('prometheus', [])}"}
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/metrics", headers=scraper) as response,
        ):
            text = await response.text()
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    alarms = [s for s in samples if s.name == "portcullis_signing_key_unknown"]
    infos = [s for s in samples if s.name == "portcullis_policy_info"]
    assert len(alarms) == 1 and len(infos) == 1, (alarms, infos)
    assert infos[0].labels == {"revision": hostile, "engine": app.engine.name}
