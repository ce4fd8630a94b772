"""Content codings undone, so that what a body says can be checked: no IO.

Owns `ContentDecoder`, which turns a body sent with `Content-Encoding` (RFC 9110 §8.4)
back into its bytes: `gzip` (and its alias `x-gzip`, several members in a row), `deflate`
(zlib-wrapped as the RFC says, or raw as some servers send it) and a list of them, undone
last first. A compressed body hides the upstream credential from the response guard and
the fields from a mask, so the proxy sends such a body on decoded; a coding it cannot
undo (`br`, `zstd`, `compress`, anything unknown) is `Undecodable` and the response is
refused, never passed on unchecked. Output is produced a bounded piece at a time, so a
small body that inflates to gigabytes is never held whole.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

PIECE = 256 * 1024  # decoded bytes produced per step
_GZIP = ("gzip", "x-gzip")


class Undecodable(Exception):
    """The body's coding is unknown or its bytes are not what the coding says; the
    message is safe to show."""


def codings(values: list[str]) -> list[str]:
    """The codings of Content-Encoding field values, in the order they were applied
    (`identity` and empty members dropped), lower-cased."""
    out: list[str] = []
    for value in values:
        for member in value.split(","):
            coding = member.strip().lower()
            if coding and coding != "identity":
                out.append(coding)
    return out


class _Stage:
    """One coding undone: bytes in, decoded pieces out."""

    def __init__(self, coding: str) -> None:
        if coding not in _GZIP and coding != "deflate":
            raise Undecodable(f"a body in the {coding!r} coding cannot be checked")
        self.coding = coding
        self._inflater: zlib._Decompress | None = None
        self._start = b""  # deflate: the first bytes, until the wrapping is known

    def _new(self, first: bytes) -> zlib._Decompress:
        if self.coding in _GZIP:
            return zlib.decompressobj(wbits=31)
        # RFC 9110's deflate is zlib-wrapped (RFC 1950); some servers send it raw
        cmf, flg = first[0], first[1]
        wrapped = cmf & 0x0F == 8 and (cmf << 8 | flg) % 31 == 0
        return zlib.decompressobj(wbits=15 if wrapped else -15)

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._inflater is None:
            if self.coding == "deflate" and len(self._start) + len(data) < 2:
                self._start += data
                return
            data, self._start = self._start + data, b""
            self._inflater = self._new(data)
        yield from self._inflate(data)

    def _inflate(self, data: bytes) -> Iterator[bytes]:
        inflater = self._inflater
        assert inflater is not None
        try:
            while data:
                piece = inflater.decompress(data, PIECE)
                if piece:
                    yield piece
                data = inflater.unconsumed_tail
                if inflater.eof:
                    rest = inflater.unused_data + data
                    if not rest:
                        return
                    if self.coding not in _GZIP:
                        raise Undecodable("bytes after the end of a deflate body")
                    # another gzip member follows (RFC 1952 §2.2)
                    inflater = self._inflater = zlib.decompressobj(wbits=31)
                    data = rest
        except zlib.error:
            raise Undecodable(f"the body is not valid {self.coding}") from None

    def finish(self) -> Iterator[bytes]:
        if self._inflater is None:
            if self._start:
                raise Undecodable(f"the body is not valid {self.coding}")
            return  # an empty body
        try:
            tail = self._inflater.flush()
        except zlib.error:
            raise Undecodable(f"the body is not valid {self.coding}") from None
        if tail:
            yield tail
        if not self._inflater.eof:
            raise Undecodable(f"the {self.coding} body ends early")


class ContentDecoder:
    """A body's codings undone, last applied first: `feed` each received chunk, then
    `finish`; both yield decoded pieces of at most PIECE bytes (a stage's flush aside)."""

    def __init__(self, applied: list[str]) -> None:
        if not applied:
            raise ValueError("no coding to undo")
        self.applied = applied
        self.stages = [_Stage(c) for c in reversed(applied)]

    def feed(self, data: bytes) -> Iterator[bytes]:
        yield from self._through(0, data)

    def _through(self, index: int, data: bytes) -> Iterator[bytes]:
        if index == len(self.stages):
            yield data
            return
        for piece in self.stages[index].feed(data):
            yield from self._through(index + 1, piece)

    def finish(self) -> Iterator[bytes]:
        for index, stage in enumerate(self.stages):
            for piece in stage.finish():
                yield from self._through(index + 1, piece)


def decode_whole(applied: list[str], data: bytes, limit: int) -> bytes:
    """A short body decoded whole, at most `limit + 1` bytes of it (the caller treats a
    longer one as too large)."""
    decoder = ContentDecoder(applied)
    out = bytearray()
    for piece in decoder.feed(data):
        out += piece
        if len(out) > limit:
            return bytes(out[: limit + 1])
    for piece in decoder.finish():
        out += piece
        if len(out) > limit:
            return bytes(out[: limit + 1])
    return bytes(out)
