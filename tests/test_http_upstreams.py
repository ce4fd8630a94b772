"""The HTTP proxy before other upstreams and behind TLS: nginx from Debian as the upstream,
an https upstream whose certificate is verified (an unknown CA is refused, nothing sent),
TLS towards clients (curl --cacert), and `portcullis up`'s launcher serving an http
connection with no edit of its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from certs import make_pki
from http_upstream import SECRET, http_connection, http_stack, running_upstream
from pdp_harness import free_port, pdp_config, running_pdp, token

from proxies.launcher import factory_for, handed_credential, start_proxies, stop_proxies

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=60)
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

NGINX_CONF = """
worker_processes 1;
daemon off;
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      if ($http_x_api_key != "{secret}") {{ return 401; }}
      root {dir}/www;
      default_type application/json;
      types {{ application/octet-stream bin; }}
    }}
  }}
}}
"""


@contextlib.asynccontextmanager
async def running_nginx(directory: Path) -> AsyncIterator[int]:
    port = free_port()
    (directory / "www" / "v1").mkdir(parents=True)
    customer = {
        "id": 1,
        "email": "ann@example.com",
        "iban": "DE89370400440532013000",
        "note": "card 4111 1111 1111 1111",
    }
    (directory / "www" / "v1" / "customer").write_text(json.dumps(customer))
    (directory / "www" / "big.bin").write_bytes(bytes(range(256)) * 4096 * 8)
    conf = directory / "nginx.conf"
    # as root, nginx's worker would become nobody, who cannot read the test's directory
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(NGINX_CONF.format(dir=directory, port=port, secret=SECRET, user=user))
    process = await asyncio.create_subprocess_exec(NGINX, "-c", str(conf), "-p", str(directory))
    try:
        for _ in range(200):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.05)
        yield port
    finally:
        process.terminate()
        await process.wait()


PII = ("readonly", "pii-readers")


async def test_nginx_as_the_upstream(tmp_path):
    async with running_nginx(tmp_path / "nginx") as port:
        connection = http_connection(f"http://127.0.0.1:{port}", spool_dir=str(tmp_path / "s"))
        config = pdp_config(tmp_path, connections=[connection])
        async with running_pdp(config) as pdp:
            served = handed_credential(config, "billing-api", pdp.issue_proxy_credential)
            proxies = await start_proxies(served.connections, served, pdp.address)
            try:
                url = f"http://{connection['listen']}"
                auth = {"Authorization": f"Bearer {token(config)}"}
                async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
                    async with client.get(url + "/v1/customer", headers=auth) as r:
                        status, doc = r.status, await r.json(content_type=None)
                    async with client.get(url + "/big.bin", headers=auth) as r:
                        withheld = r.status  # binary, under a reader's mask
                    pii = {"Authorization": f"Bearer {token(config, groups=PII)}"}
                    async with client.get(url + "/big.bin", headers=pii) as r:
                        big = await r.read()
                    async with client.get(url + "/v1/../../etc/passwd", headers=auth) as r:
                        escaped = r.status
            finally:
                await stop_proxies(proxies)
    assert status == 200
    assert doc == {
        "id": 1,
        "email": "[REDACTED]",
        "iban": "[REDACTED]",
        "note": "card **** **** **** 1111",
    }
    assert withheld == 502
    assert big == bytes(range(256)) * 4096 * 8
    assert escaped == 404  # decided and sent as /etc/passwd, which nginx's root does not hold


async def test_an_https_upstream_is_verified(tmp_path):
    pki = make_pki(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(pki["server.pem"], pki["server.key"])
    async with http_stack(tmp_path / "untrusted", upstream_tls=server) as s:
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as client,
            client.get(
                s.url + "/echo", headers={"Authorization": f"Bearer {token(s.config)}"}
            ) as r,
        ):
            refused = r.status, await r.json(content_type=None)
        assert s.upstream.seen == []
    async with (
        http_stack(
            tmp_path / "trusted", upstream_tls=server, upstream_ca_file=str(pki["ca.pem"])
        ) as s,
        aiohttp.ClientSession(timeout=TIMEOUT) as client,
        client.get(s.url + "/echo", headers={"Authorization": f"Bearer {token(s.config)}"}) as r,
    ):
        trusted = r.status
    assert refused[0] == 502 and "Cert" in refused[1]["detail"]  # a certificate error
    assert trusted == 200


async def test_tls_towards_clients(tmp_path):
    pki = make_pki(tmp_path)
    async with running_upstream() as up:
        connection = http_connection(
            f"http://127.0.0.1:{up.port}",
            spool_dir=str(tmp_path / "spool"),
            tls_cert_file=str(pki["server.pem"]),
            tls_key_file=str(pki["server.key"]),
        )
        config = pdp_config(tmp_path, connections=[connection])
        async with running_pdp(config) as pdp:
            served = handed_credential(config, "billing-api", pdp.issue_proxy_credential)
            proxies = await start_proxies(served.connections, served, pdp.address)
            try:
                port = connection["listen"].rsplit(":", 1)[1]
                curl = await asyncio.create_subprocess_exec(
                    "curl",
                    "-sS",
                    "--cacert",
                    str(pki["ca.pem"]),
                    "-H",
                    f"Authorization: Bearer {token(config)}",
                    f"https://localhost:{port}/echo/tls",
                    stdout=asyncio.subprocess.PIPE,
                )
                out, _ = await curl.communicate()
            finally:
                await stop_proxies(proxies)
    doc = json.loads(out)
    assert doc["headers"]["X-Forwarded-Proto"] == "https"


def test_the_launcher_serves_http_connections():
    from proxies.http.proxy import HttpProxy

    assert factory_for("http") is HttpProxy
