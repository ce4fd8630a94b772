"""The example connection billing-api's upstream: a toy invoices API on 127.0.0.1:9000.

Owns nothing of the gateway: it is what README's HTTP examples talk to through the proxy
(`python3 deploy/demo/billing_api.py &`, beside `make up`). Standard library only; it
answers `GET /v1/invoices/ID` with an invoice holding an email, a card number and a note
naming an email (what the shipped policy masks), `POST /v1/refunds` with the refund it
would make, `DELETE /v1/invoices/ID` with 204, and 404 otherwise. It keeps nothing.
"""

from __future__ import annotations

import argparse
import json
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_INVOICE = re.compile(r"/v1/invoices/(\d{1,9})")


def invoice(number: int) -> dict[str, object]:
    """The invoice every id names: the same customer, whose values the policy masks."""
    return {
        "id": number,
        "email": "ada@example.com",
        "customer": {"name": "Ada Lovelace", "card_number": "4111 1111 1111 1111"},
        "total": "99.50",
        "note": "paid by ada@example.com",
    }


class BillingApi(BaseHTTPRequestHandler):
    """One request: a JSON answer (or 204 / 404), never the request's headers back."""

    server_version = "billing-api-demo"

    def _answer(self, status: int, body: object | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        found = _INVOICE.fullmatch(self.path.partition("?")[0])
        if found:
            self._answer(200, invoice(int(found.group(1))))
        else:
            self._answer(404, {"title": "not found"})

    def do_DELETE(self) -> None:
        found = _INVOICE.fullmatch(self.path.partition("?")[0])
        self._answer(204 if found else 404, None if found else {"title": "not found"})

    def do_POST(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(size, 65536)) if size > 0 else b""
        if self.path.partition("?")[0] != "/v1/refunds":
            self._answer(404, {"title": "not found"})
            return
        try:
            amount = json.loads(body or b"{}").get("amount")
        except (ValueError, AttributeError):
            self._answer(400, {"title": "a JSON object with an amount, please"})
            return
        self._answer(201, {"refund": {"amount": amount, "status": "made"}})

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet beside `portcullis up`'s log


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="The demo upstream of billing-api (README's HTTP examples)."
    )
    parser.add_argument("--listen", default="127.0.0.1:9000", help="host:port (127.0.0.1:9000)")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), BillingApi)
    print(f"billing-api demo upstream on http://{args.listen}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
