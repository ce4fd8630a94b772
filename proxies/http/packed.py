"""Compressed files in an answer's body, opened so the credential guard reads what they hold:
no IO.

Owns `packed_format` (whether a body is a file in a compression or archive format, by its
first bytes: what a client unpacks whatever the media type says) and `unpacked` (the bytes
such a file holds, files inside it opened too, within bounds). An upstream handing its own
key back inside a `.gz` export or a `.zip` (an Office document is one) would carry it past
the guard, which reads bytes as they are; a tar archive (`.tar`, `.tar.gz`) is opened too,
its files taken out of their 512-byte headers. A file the proxy cannot open (an encrypted zip
member, zstd, 7z, RAR, a method zipfile does not know, broken bytes after a strong magic
number, more than PACKED_LIMIT bytes in or UNPACKED_LIMIT out) is `Unopenable`: with a
credential injected, the proxy refuses the body (502) rather than relay it unread.
Formats holding compressed streams of their own inside (PDF, PNG) are not opened.
"""

from __future__ import annotations

import bz2
import io
import lzma
import re
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import Protocol

PACKED_LIMIT = 32 * 1024 * 1024  # bytes of a compressed file held to be opened
UNPACKED_LIMIT = 128 * 1024 * 1024  # bytes it may hold, files inside it counted too
DEPTH = 4  # files inside files opened this deep
SNIFFED = 10  # bytes that tell a format
TAR_SNIFFED = 262  # bytes that tell a tar archive (its ustar mark is at 257)
PIECE = 1024 * 1024

# (magic number, format); a body opening with one is that file (RFC 1952, APPNOTE, bzip2,
# the xz and zstd formats, 7z, RAR; a zlib stream, RFC 1950, by its header: _zlib_opening)
_MAGIC = (
    (b"\x1f\x8b\x08", "gzip"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),  # (an empty archive)
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "rar"),
)
_BZIP2 = re.compile(rb"BZh[1-9]1AY&SY")  # (`BZh` alone opens text too)


class _Decoder(Protocol):
    """What bz2's and lzma's decompressors are (and _Gunzip): input in, bounded output."""

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


class _Gunzip:
    """One gzip member, with bz2's decompressor interface (zlib keeps input it has not
    read in unconsumed_tail where bz2 keeps it inside)."""

    def __init__(self) -> None:
        self._inflater = zlib.decompressobj(wbits=31)

    @property
    def eof(self) -> bool:
        return self._inflater.eof

    @property
    def unused_data(self) -> bytes:
        return self._inflater.unused_data

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        return self._inflater.decompress(self._inflater.unconsumed_tail + data, max_length)


class _Inflate(_Gunzip):
    """One zlib stream (RFC 1950), as _Gunzip reads a gzip member."""

    def __init__(self) -> None:
        self._inflater = zlib.decompressobj(wbits=15)


class Unopenable(Exception):
    """A compressed file the proxy cannot read through; the message is safe to show."""


def packed_format(first: bytes) -> str:
    """The format of a body that opens with `first` (at least SNIFFED bytes of it, or the
    whole body), or "" for none the proxy knows."""
    for magic, name in _MAGIC:
        if first.startswith(magic):
            return name
    if _BZIP2.match(first):
        return "bzip2"
    return "zlib" if _zlib_opening(first) else ""


def _zlib_opening(first: bytes) -> bool:
    """Whether `first` opens a zlib stream (RFC 1950 §2.2: deflate, a window of at most
    32K, no preset dictionary, the header's check bits) whose first bytes inflate: what
    Python's zlib.compress, PHP's gzcompress and Java's Deflater write (`x\x9c...`)."""
    if len(first) < 2 or first[0] & 0x0F != 8 or first[0] >> 4 > 7 or first[1] & 0x20:
        return False
    if (first[0] * 256 + first[1]) % 31:
        return False
    try:
        zlib.decompressobj().decompress(first[:SNIFFED])
    except zlib.error:
        return False  # (`x^2 ...`: text whose first two bytes pass the check)
    return True


def packed_kind(data: bytes) -> str:
    """packed_format of a whole body, or "tar" for a tar archive (POSIX ustar or GNU: its
    mark stands 257 bytes in, past what a stream is sniffed for). A tar file's files lie
    in it as they are, parted by 512-byte headers: a key cut across two of them is read
    whole only once they are taken out."""
    return packed_format(data[:SNIFFED]) or ("tar" if data[257:TAR_SNIFFED] == b"ustar" else "")


def unpacked(data: bytes) -> Iterator[bytes]:
    """What a compressed file holds, a bounded piece at a time, files inside it opened
    as well (each piece is whole text of one file, in the archive's order: the guard
    reads them one after another, check_unpacked);
    Unopenable when it cannot be read through."""
    budget = [UNPACKED_LIMIT]
    yield from _opened(data, budget, 0)


def _opened(data: bytes, budget: list[int], depth: int) -> Iterator[bytes]:
    kind = packed_kind(data)
    if not kind:
        yield data
        return
    if depth >= DEPTH:
        raise Unopenable("compressed files nested deeper than the proxy opens")
    if kind == "zlib" and (partly := _partly_inflated(data)) is not None:
        yield partly  # (no zlib stream after all: read as written)
        return
    for member in _members(kind, data):
        budget[0] -= len(member)
        if budget[0] < 0:
            raise Unopenable("a compressed file holding more than the proxy opens")
        yield from _opened(member, budget, depth + 1)


def _members(kind: str, data: bytes) -> Iterator[bytes]:
    """The contents of one file of `kind`: one member, or an archive's files."""
    try:
        if kind == "zip":
            yield from _zip_members(data)
        elif kind == "gzip":
            yield _streams(_Gunzip, data)
        elif kind == "bzip2":
            yield _streams(bz2.BZ2Decompressor, data)
        elif kind == "xz":
            yield _streams(lzma.LZMADecompressor, data)
        elif kind == "zlib":
            yield _streams(_Inflate, data)
        elif kind == "tar":
            yield from _tar_members(data)
        else:
            raise Unopenable(f"a {kind} file cannot be checked")
    except (
        OSError, EOFError, ValueError, zlib.error, lzma.LZMAError, zipfile.BadZipFile,
        tarfile.TarError,
    ):  # fmt: skip
        raise Unopenable(f"a {kind} file that does not read as one") from None


def _partly_inflated(data: bytes) -> bytes | None:
    """None for a zlib stream that inflates to its end. One that does not (a zlib header
    is two bytes any binary file may open with, one in about 2,000) is no file to refuse:
    what inflates of it before the error (a client's streaming inflater shows that much),
    then the body as written, are read instead."""
    inflater = zlib.decompressobj()
    shown = bytearray()
    try:
        for start in range(0, len(data), PIECE):
            shown += inflater.decompress(data[start : start + PIECE], UNPACKED_LIMIT)
            if len(shown) > UNPACKED_LIMIT:
                raise Unopenable("a compressed file holding more than the proxy opens")
    except zlib.error:
        return bytes(shown) + b"\n" + data
    return None if inflater.eof else bytes(shown) + b"\n" + data


def _zip_members(data: bytes) -> Iterator[bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            if info.flag_bits & 0x1:
                raise Unopenable("an encrypted zip member cannot be checked")
            if info.file_size > UNPACKED_LIMIT:
                raise Unopenable("a zip member larger than the proxy opens")
            try:
                with archive.open(info) as member:
                    held = member.read(UNPACKED_LIMIT + 1)
            except NotImplementedError:
                raise Unopenable("a zip member in a method the proxy cannot open") from None
            if len(held) > UNPACKED_LIMIT:
                raise Unopenable("a zip member larger than the proxy opens")
            yield held


def _tar_members(data: bytes) -> Iterator[bytes]:
    """A tar archive's files, in its order (their sizes are within the bytes it has)."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        for info in archive:
            member = archive.extractfile(info) if info.isfile() else None
            if member is not None:
                yield member.read()


def _streams(new: Callable[[], _Decoder], data: bytes) -> bytes:
    """`data` through decompressors `new` makes, streams one after another (gzip members,
    RFC 1952 §2.2; bzip2 and xz streams alike) read as one, at most UNPACKED_LIMIT bytes."""
    out = bytearray()
    while data:
        decoder = new()
        out += decoder.decompress(data, PIECE)
        while not decoder.eof and len(out) <= UNPACKED_LIMIT:
            more = decoder.decompress(b"", PIECE)
            if not more:
                break
            out += more
        if len(out) > UNPACKED_LIMIT:
            raise Unopenable("a compressed file holding more than the proxy opens")
        if not decoder.eof:
            raise Unopenable("a compressed file that ends early")
        data = decoder.unused_data
    return bytes(out)
