"""Bodies the PDP downloads (policy bundles, the issuer's documents), read whole under a cap.

`StreamReader.read(n)` hands back what is buffered, up to n bytes, not n bytes: a body
that arrives in more than one TCP segment would be cut short. `read_capped` reads to the
end of the body or one byte past the cap, whichever comes first.
"""

from __future__ import annotations

import aiohttp


async def read_capped(content: aiohttp.StreamReader, cap: int) -> bytes:
    """The whole body, or its first `cap + 1` bytes when it is longer than `cap` (the
    caller refuses those)."""
    parts: list[bytes] = []
    size = 0
    while size <= cap:
        chunk = await content.read(cap + 1 - size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)
