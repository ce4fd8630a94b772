"""Probing the HTTP proxy's policy (P34, helper webmask16): a lookup by a masked field
written in the path.

Real PDP with the shipped policy, the HTTP proxy, a raw upstream answering a lookup by
phone (`{"matches": 1}` when the customer's phone begins with what the path holds), a
raw client: a reader outside pii-readers (`phone` and `email` masked). Before the fix:

- a request naming a masked field in its query or body needed approval (a filter, order
  or search on it answers what the mask hides), but the same lookup written in the path
  went as a read: `/customers/by-phone/555` answered `{"matches": 1}`, `/by-phone/556`
  `{"matches": 0}`: the masked phone number, a digit at a time; so did
  `/customers/findByEmail/ann@example.com` (Spring Data's finders, lookups by e-mail),
  `/customers/phone=555` and `/customers/phone:555`. A path segment naming a masked field
  with a value after it (a later segment, in the segment itself, or a query) needs
  approval now (http.rego); a field's name alone at the path's end (`/customers/7/phone`,
  `/customers/7/phoneNumbers`), which reads the value the mask hides, goes as before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from http_upstream import exchange, http_stack, raw_server, reader_get, status
from pdp_harness import token

pytestmark = pytest.mark.integration

PHONE = "5550100"
LOOKUPS = [
    "/customers/by-phone/555",
    "/customers/by-phone/556",
    "/customers/findByEmail/ann@example.com",
    "/customers/phone=555",
    "/customers/phone:555",
    "/customers/search/findByPhone?p=555",
    "/customers/7/phone?like=555",
]
READS = ["/customers/7/phone", "/customers/7/phoneNumbers", "/v1/invoices/7"]


async def test_a_lookup_by_a_masked_field_in_the_path_needs_approval(tmp_path: Path) -> None:
    forwarded: list[str] = []

    async def converse(reader: Any, writer: Any) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ")[1].decode()
        forwarded.append(path)
        prefix = path.partition("?")[0].rstrip("/").split("/")[-1].split("=")[-1]
        body = json.dumps(
            {"matches": int(PHONE.startswith(prefix.split(":")[-1])), "phone": PHONE}
        ).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        await writer.drain()

    async with (
        raw_server(converse) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        for n, path in enumerate(LOOKUPS):
            got = await exchange(s.proxy.port, reader_get(s, n, f"GET {path}"))
            assert status(got) == 202, (path, got)
            assert b"in its path before a value" in got, (path, got)
        assert forwarded == []
        for n, path in enumerate(READS, len(LOOKUPS)):
            got = await exchange(s.proxy.port, reader_get(s, n, f"GET {path}"))
            assert status(got) == 200, (path, got)
            assert json.loads(got.partition(b"\r\n\r\n")[2])["phone"] == "[REDACTED]"
        assert forwarded == READS
        # (a pii-reader is shown the values: its lookups go)
        bearer = token(s.config, "pat@example.com", ("readonly", "pii-readers"))
        got = await exchange(
            s.proxy.port,
            f"GET {LOOKUPS[0]} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {bearer}\r\n"
            "Connection: close\r\n\r\n".encode(),
        )
        assert status(got) == 200 and json.loads(got.partition(b"\r\n\r\n")[2]) == {
            "matches": 1,
            "phone": PHONE,
        }
