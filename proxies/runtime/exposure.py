"""Every byte a proxy sends its client, through one door: counted and scanned.

Owns the exposure accounting behind the signed "credential never exposed" statement
(DESIGN.md, data flow step 6): a protocol writes to its client only through
`ClientOutput.write`, which feeds each byte to the SecretScanner of the session's
credential (once the session holds one) and counts it; at close the count and whether a
secret went by become the session's `bytes_to_client` and `credential_exposed`. A byte
written to the client any other way is a byte this evidence does not cover.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from proxies.runtime.secrets_scan import SecretScanner


class ClientOutput:
    """The one writer of bytes to a client."""

    __slots__ = ("_write", "scanner", "sent")

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write
        self.scanner: SecretScanner | None = None
        self.sent = 0

    def write_with(self, write: Callable[[bytes], object]) -> None:
        """From now on, bytes go to the client through this write (a session's relay
        writes to the transport itself once the session is open)."""
        self._write = write

    def guard(self, secrets: Iterable[str]) -> None:
        """From now on, watch for these secrets (the session's upstream credential)."""
        self.scanner = SecretScanner(secrets)

    @property
    def exposed(self) -> bool:
        return self.scanner.exposed if self.scanner is not None else False

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self.scanner is not None:
            self.scanner.feed(data)
        self.sent += len(data)
        try:
            self._write(data)
        except RuntimeError:
            # uvloop refuses a write to a socket already closed (asyncio drops it): the
            # client is gone, and the session must still end as one whose client left
            pass

    def account(self, counters: Counter[str]) -> None:
        """The session's closing counters: bytes sent, and whether a secret was among them."""
        counters["bytes_to_client"] = self.sent
        counters["credential_exposed"] = int(self.exposed)
