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
