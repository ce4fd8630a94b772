"""Attacks on the PDP's APIs and evidence (tenth probe).

Each test drives a real PDP (tests/pdp_harness.py: embedded OPA, its real audit store)
over its real listeners, as the attacker would reach them.
"""

from __future__ import annotations

import asyncio

from pdp_harness import free_port, pdp_raw, running_pdp

from pdp.api.proxy_auth import ProxyKey
from portcullis.config import parse_config
from portcullis.wire import CREDENTIAL_METADATA


async def _raw_get(address: str, path: str, header: bytes) -> bytes:
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"GET "
        + path.encode()
        + b" HTTP/1.1\r\nHost: pdp\r\n"
        + header
        + b"Connection: close\r\n\r\n"
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


async def test_a_proxy_credential_that_is_not_ascii_is_refused_not_an_error(tmp_path):
    """Attack (anyone who reaches pdp.http_listen): /metrics or /v1/status with a proxy
    credential header holding a byte past ASCII ('pcp1.x.é'). ProxyKey.verify handed it
    to hmac.compare_digest, which raises TypeError for such text: the PDP answered 500
    and logged a traceback for every such request, where it answers 401 to any other
    credential it did not issue (the gRPC side shares the check)."""
    key = ProxyKey(b"k" * 32)
    assert key.verify("pcp1.abc.\u00e9") is None
    assert key.verify(key.issue("p", ["x"])[:-1] + "\u00e9") is None
    raw = pdp_raw(tmp_path)
    http = f"127.0.0.1:{free_port()}"
    raw["pdp"]["http_listen"] = http
    config = parse_config(raw, base_dir=tmp_path)
    async with running_pdp(config):
        for path in ("/metrics", "/v1/status"):
            for header in (
                CREDENTIAL_METADATA.encode() + b": pcp1.abc.\xc3\xa9\r\n",
                b"Authorization: Bearer pcp1.abc.\xc3\xa9\r\n",
            ):
                answer = await _raw_get(http, path, header)
                assert answer.startswith(b"HTTP/1.1 401"), (path, header, answer[:200])


async def test_a_rollback_of_the_store_and_its_local_anchors_is_said_to_need_a_siem(tmp_path):
    """Attack (write access to the SQLite store and the directory of the signing key):
    keep a copy of the store, checkpoint.json and head.json; later, after alice's DROP
    TABLE, put the three back. Everything the PDP keeps on this host agrees with the
    older chain, so `audit verify` passes: nothing local can tell (known; not fixed
    here). It said OK as if the local anchors proved the tail, though. Now an OK without
    --anchor says what it checked against and how old the newest record is, and that the
    newest record a SIEM received (forwarding) is what catches this; given, it fails."""
    import shutil

    from pdp_harness import decide_sql, open_session, pdp_stub, token
    from test_evidence_macs import audit
    from test_pdp_probe_p7 import _written

    from pdp.forwarding import record_json
    from pdp.store import open_store
    from portcullis.config import load_config

    config_path = _written(tmp_path)
    config = load_config(config_path)
    var = config.pdp.signing_key.parent
    kept = tmp_path / "kept"
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        await decide_sql(stub, opened.session_id, "SELECT id FROM orders")
    kept.mkdir()
    files = [config.pdp.store.path, var / "checkpoint.json", var / "head.json"]
    for f in files:
        shutil.copy(f, kept / f.name)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config, groups=("dba",)))
        await decide_sql(stub, opened.session_id, "DROP TABLE orders")
    async with open_store(config.pdp.store) as store:
        newest = (await store.query())[-1]
    siem = tmp_path / "siem.json"
    siem.write_text(record_json(newest) + "\n")
    for f in files:
        for side in (f.with_name(f.name + "-wal"), f.with_name(f.name + "-shm")):
            side.unlink(missing_ok=True)
        shutil.copy(kept / f.name, f)
    result = await asyncio.to_thread(audit, config_path, "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rollback: checked against the files kept beside the signing key only" in (result.stdout)
    assert "its newest record is" in result.stdout
    caught = await asyncio.to_thread(audit, config_path, "verify", "--anchor", str(siem))
    assert caught.returncode == 1, caught.stdout
    assert "deleted from the end of the chain" in caught.stdout


async def test_a_bundle_says_when_and_for_which_window_it_was_exported(tmp_path):
    """Attack (whoever hands the auditor the evidence): a bundle exported with --until
    just before alice's DROP TABLE (or an older export) handed over as the whole log.
    Every signature is valid and `audit verify --bundle` said OK naming only the records'
    range: nothing said the store held more. The signed manifest and head knew (window,
    generated_at, the store's head at export); an OK now says them, and how many records
    after the bundle's last the store then held."""
    import time

    from pdp_harness import decide_sql, open_session, pdp_stub, token
    from test_evidence_macs import audit
    from test_pdp_probe_p7 import _written

    from portcullis.config import load_config

    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        await decide_sql(stub, opened.session_id, "SELECT id FROM orders")
        cut = time.time()
        await asyncio.sleep(0.01)
        dba = await open_session(stub, token(config, groups=("dba",)))
        await decide_sql(stub, dba.session_id, "DROP TABLE orders")
    bundle = tmp_path / "narrow.tar.gz"
    exported = await asyncio.to_thread(
        audit, config_path, "export", "--until", str(cut), "--out", str(bundle)
    )
    assert exported.returncode == 0, exported.stdout + exported.stderr
    result = await asyncio.to_thread(audit, config_path, "verify", "--bundle", str(bundle))
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if "exported:" in x)
    assert "records timed from the first to" in line, line
    assert "records after the bundle's last are not in it" in line, line
