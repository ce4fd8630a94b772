"""Names both ends of the gRPC contract put in call metadata, beside portcullis.v1's messages.

Owns the metadata a proxy and the PDP exchange outside the protobuf messages: the
batching handshake of DecideStream (each side says it reads `more`) and the header that
carries a proxy's credential when it has no certificate; and the limits of a call both
ends must keep to (the PDP refuses a call past them whole).
"""

from __future__ import annotations

from typing import Any

# the metadata that says "I read `more`", both ways
BATCHING = ("portcullis-batch", "1")
# the metadata key of a proxy credential the PDP issued (pdp.api.proxy_auth checks it)
CREDENTIAL_METADATA = "portcullis-proxy-credential"
# sessions' batches in one RecordBatches call: a proxy with more due in one tick sends
# several calls
MAX_BATCHES_PER_CALL = 1000


def says_batching(metadata: Any) -> bool:
    """Whether gRPC metadata (the caller's, or the PDP's initial) carries BATCHING."""
    return any(tuple(entry) == BATCHING for entry in metadata or ())
