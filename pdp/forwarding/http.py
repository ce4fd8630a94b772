"""HTTP sink: audit records as JSON batches POSTed to a SIEM's collector endpoint.

Each request body is

    {"source": "portcullis", "first_seq": 7, "last_seq": 9,
     "records": [{"seq": 7, "id": ..., "kind": ..., "time": ..., "session_id": ...,
                  "subject": ..., "body": {...}, "prev_hash": ..., "hash": ...}, ...]}

with `Content-Type: application/json`. Any 2xx status means the whole batch was accepted;
anything else (or no answer within the timeout) means it was not, and the same batch is
sent again later: at-least-once, so the receiver dedupes on `seq`. A redirect is not
followed (a 3xx is not accepted: the batch is sent again to the configured URL alone).
A 4xx is retried too: dropping evidence because a collector is misconfigured would be
worse than waiting.
"""

from __future__ import annotations

import aiohttp

from pdp.forwarding import SinkUnavailable, record_json
from pdp.store import AuditRecord
from portcullis.config import ForwarderSettings


def batch_body(records: list[AuditRecord], unverified: frozenset[int] = frozenset()) -> bytes:
    items = ",".join(record_json(r, r.seq in unverified) for r in records)
    first, last = records[0].seq, records[-1].seq
    head = f'{{"source":"portcullis","first_seq":{first},"last_seq":{last},"records":['
    return (head + items + "]}").encode()


class HTTPSink:
    def __init__(self, settings: ForwarderSettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    @property
    def description(self) -> str:
        return f"http {self.settings.url}"

    async def send(
        self, records: list[AuditRecord], unverified: frozenset[int] = frozenset()
    ) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
            )
        headers = {**self.settings.headers, "Content-Type": "application/json"}
        try:
            # never a redirect: whoever answers at the URL could point the PDP, with the
            # collector's headers and every record, at an address of their choosing (and
            # a 301-303 turned the POST into a GET whose 200 counted the batch delivered)
            async with self._session.post(
                self.settings.url,
                data=batch_body(records, unverified),
                headers=headers,
                allow_redirects=False,
            ) as response:
                if not 200 <= response.status < 300:
                    text = (await response.text(errors="replace"))[:200]
                    raise SinkUnavailable(f"HTTP {response.status}: {text}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SinkUnavailable(f"POST failed: {exc or type(exc).__name__}") from None

    async def reset(self) -> None:
        """Keep the connection pool; aiohttp replaces broken connections itself."""

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
