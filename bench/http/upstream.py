"""The benchmark's upstream: a small aiohttp app serving two JSON documents, nothing else.

Owns what every HTTP benchmark target ends at (directly, through nginx, through
Portcullis): `GET /doc.json` (an order of about 400 bytes) and `GET /large.json` (a list
of orders of about 100 KiB), both built once at start and answered from memory, on
uvloop, without an access log, so the upstream does as little as an upstream can. No
field is named like a sensitive column: the benchmark measures deciding and relaying,
not masking.

    python bench/http/upstream.py PORT
"""

from __future__ import annotations

import json
import sys

import uvloop
from aiohttp import web


def order(n: int) -> dict[str, object]:
    return {
        "id": n,
        "customer_id": 1000 + n % 97,
        "status": ("placed", "paid", "shipped", "delivered")[n % 4],
        "currency": "EUR",
        "total": round(12.5 + n * 3.17, 2),
        "placed_at": f"2026-11-{1 + n % 28:02d}T10:{n % 60:02d}:00Z",
        "lines": [
            {"sku": f"SKU-{n * 7 % 1000:04d}", "quantity": 1 + n % 3, "price": 9.99},
            {"sku": f"SKU-{n * 11 % 1000:04d}", "quantity": 2, "price": 4.5},
        ],
        "note": "leave at the front desk",
    }


SMALL = json.dumps(order(7)).encode()
LARGE = json.dumps({"orders": [order(n) for n in range(400)]}).encode()


def app() -> web.Application:
    def serve(body: bytes):
        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=body, content_type="application/json")

        return handler

    application = web.Application()
    application.router.add_get("/doc.json", serve(SMALL))
    application.router.add_get("/large.json", serve(LARGE))
    return application


if __name__ == "__main__":
    uvloop.install()
    web.run_app(app(), host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
