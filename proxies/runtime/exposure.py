"""Every byte a proxy sends its client, through one door: counted and scanned.

Owns the exposure accounting behind the signed "credential never exposed" statement
(DESIGN.md, data flow step 6): a protocol writes to its client only through
`ClientOutput.write`, which feeds each byte to the SecretScanner of the session's
credential (once the session holds one) and counts it; at close the count and whether a
secret went by become the session's `bytes_to_client` and `credential_exposed`. A byte
written to the client any other way is a byte this evidence does not cover.

It is a gate as well as a witness: a chunk in which the scanner finds the secret (any
form it knows: raw, case-changed, hex, base64, escaped) is not written, nor anything
after it, and the client's connection is aborted. An upstream that was handed the
password (a Postgres server asking for it in clear) and says it back in its refusal, a
notice or a row, or an HTTP upstream reflecting its token past the guard, reaches the
client with nothing of it. What the chunks before held of a secret split across writes
(its first bytes, never all of it) has gone; `credential_exposed` stays 1 then, as it
does whenever the secret was seen on its way out.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable

from proxies.runtime.secrets_scan import SecretScanner

log = logging.getLogger("portcullis.exposure")


class ClientOutput:
    """The one writer of bytes to a client."""

    __slots__ = ("_abort", "_write", "scanner", "sent", "withheld")

    def __init__(
        self, write: Callable[[bytes], object], abort: Callable[[], object] | None = None
    ) -> None:
        """write: the client's; abort: ends the client's connection at once (default: the
        abort of the transport, or of the StreamWriter's transport, `write` is bound to)."""
        self._write = write
        self._abort = abort
        self.scanner: SecretScanner | None = None
        self.sent = 0
        self.withheld = False  # the secret was seen: nothing more goes to the client

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
        if not data or self.withheld:
            return
        if self.scanner is not None and self.scanner.feed(data):
            self._withhold()
            return
        self.sent += len(data)
        try:
            self._write(data)
        except RuntimeError:
            # uvloop refuses a write to a socket already closed (asyncio drops it): the
            # client is gone, and the session must still end as one whose client left
            pass

    def _withhold(self) -> None:
        """The chunk holding the secret stays here, and the client's connection ends."""
        self.withheld = True
        assert self.scanner is not None
        log.error(
            "the session's upstream credential (%s) was on its way to the client: "
            "withheld, the client's connection aborted",
            ", ".join(self.scanner.findings),
        )
        abort = self._abort or _abort_of(self._write)
        if abort is not None:
            try:
                abort()
            except RuntimeError:
                pass

    def account(self, counters: Counter[str]) -> None:
        """The session's closing counters: bytes sent, and whether a secret was among them."""
        counters["bytes_to_client"] = self.sent
        counters["credential_exposed"] = int(self.exposed)


def _abort_of(write: Callable[[bytes], object]) -> Callable[[], object] | None:
    """The abort of the transport a write is bound to (a transport's write, or a
    StreamWriter's), if any."""
    owner = getattr(write, "__self__", None)
    transport = getattr(owner, "transport", owner)
    abort = getattr(transport, "abort", None)
    return abort if callable(abort) else None
