"""SFTP version 3 packets, sans-IO: framing, requests read field by field, paths normalised.

Owns the wire half of the SSH proxy's SFTP relay (proxies/ssh/sftp.py does the asyncio and
the decisions): SFTP as draft-ietf-secsh-filexfer-02 (version 3, the version OpenSSH's
sftp-server speaks) plus the OpenSSH extensions listed in EXTENSIONS (PROTOCOL, section 4,
of OpenSSH's source). No sockets, no asyncio here.

- `Framer.feed()`: bytes in, whole packets (uint32 length, then the body) out; a packet
  longer than its limit is a `Malformed` stream, never buffered.
- `read_request()`: a client request by its SCHEMAS entry, every field read and the packet
  required to end where its last field does; a packet type or an extension not in the
  tables is `Unsupported` (answered, never relayed), a field that does not read is
  `Malformed`. `Request.encode()` writes it back from the fields, so what the upstream
  receives is exactly what was read — with each path replaced by its normalised form.
- `normalise()`: a path as the policy sees it and the upstream receives it: absolute
  (relative to the session's home directory, or to a symlink's own directory for its
  target), `.`/`..`/duplicate slashes resolved lexically; not UTF-8 or a NUL in it:
  `Malformed`. Symlinks are not resolved here (no IO): the relay asks the server for
  that (proxies/ssh/sftp.py), and a symlink's creation is decided on both of its paths.
- `open_access()`: whether an open's SSH_FXF_* bits let the server's descriptor read and
  write (OpenSSH's sftp-server: O_RDONLY without WRITE, whatever else is set).
- `read_reply()`: what the relay needs of an upstream packet (type, id, a HANDLE's handle,
  a DATA's length); `read_names()` a NAME's entries whole (the relay masks names); encoders
  for the packets the proxy writes itself (INIT, VERSION, STATUS, REALPATH, NAME, and the
  `home-directory` extension's request).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

# packet types (filexfer-02 section 3)
INIT, VERSION = 1, 2
OPEN, CLOSE, READ, WRITE, LSTAT, FSTAT, SETSTAT, FSETSTAT = 3, 4, 5, 6, 7, 8, 9, 10
OPENDIR, READDIR, REMOVE, MKDIR, RMDIR, REALPATH, STAT, RENAME = 11, 12, 13, 14, 15, 16, 17, 18
READLINK, SYMLINK = 19, 20
STATUS, HANDLE, DATA, NAME, ATTRS = 101, 102, 103, 104, 105
EXTENDED, EXTENDED_REPLY = 200, 201

# status codes (filexfer-02 section 7)
FX_OK, FX_EOF, FX_NO_SUCH_FILE, FX_PERMISSION_DENIED, FX_FAILURE = 0, 1, 2, 3, 4
FX_BAD_MESSAGE, FX_OP_UNSUPPORTED = 5, 8

# SSH_FXF_* open flags (filexfer-02 section 6.3)
PFLAGS = {0x01: "read", 0x02: "write", 0x04: "append", 0x08: "create", 0x10: "truncate",
          0x20: "exclusive"}  # fmt: skip
FXF_READ, FXF_WRITE = 0x01, 0x02
WRITING_FLAGS = 0x02 | 0x04 | 0x08 | 0x10 | 0x20

# SSH_FILEXFER_ATTR_* (filexfer-02 section 5)
ATTR_SIZE, ATTR_UIDGID, ATTR_PERMISSIONS, ATTR_ACMODTIME = 0x1, 0x2, 0x4, 0x8
ATTR_EXTENDED = 0x80000000
ATTR_KNOWN = ATTR_SIZE | ATTR_UIDGID | ATTR_PERMISSIONS | ATTR_ACMODTIME | ATTR_EXTENDED

VERSION_SPOKEN = 3
# the extension an upstream names the account's home by (home_directory); asked by the
# proxy itself, never relayed for a client
HOME_DIRECTORY = b"home-directory"
MAX_CLIENT_PACKET = 260 * 1024  # OpenSSH's sftp-server takes at most 256 KiB
MAX_UPSTREAM_PACKET = 1024 * 1024
MAX_ATTR_EXTENSIONS = 64

# Field kinds: path (a name the policy decides on), handle, u32, u64, string (data), attrs
SCHEMAS: dict[int, tuple[str, ...]] = {
    OPEN: ("path", "u32", "attrs"),
    CLOSE: ("handle",),
    READ: ("handle", "u64", "u32"),
    WRITE: ("handle", "u64", "string"),
    LSTAT: ("path",),
    FSTAT: ("handle",),
    SETSTAT: ("path", "attrs"),
    FSETSTAT: ("handle", "attrs"),
    OPENDIR: ("path",),
    READDIR: ("handle",),
    REMOVE: ("path",),
    MKDIR: ("path", "attrs"),
    RMDIR: ("path",),
    REALPATH: ("path",),
    STAT: ("path",),
    RENAME: ("path", "path"),
    READLINK: ("path",),
    SYMLINK: ("path", "path"),  # OpenSSH's order: the link's target, then the link
}

# OpenSSH extensions the relay understands (the others are not offered to clients)
EXTENSIONS: dict[bytes, tuple[str, ...]] = {
    b"posix-rename@openssh.com": ("path", "path"),
    b"hardlink@openssh.com": ("path", "path"),
    b"statvfs@openssh.com": ("path",),
    b"fstatvfs@openssh.com": ("handle",),
    b"fsync@openssh.com": ("handle",),
    b"lsetstat@openssh.com": ("path", "attrs"),
    b"limits@openssh.com": (),
}

NAMES = {
    INIT: "INIT", OPEN: "OPEN", CLOSE: "CLOSE", READ: "READ", WRITE: "WRITE",
    LSTAT: "LSTAT", FSTAT: "FSTAT", SETSTAT: "SETSTAT", FSETSTAT: "FSETSTAT",
    OPENDIR: "OPENDIR", READDIR: "READDIR", REMOVE: "REMOVE", MKDIR: "MKDIR",
    RMDIR: "RMDIR", REALPATH: "REALPATH", STAT: "STAT", RENAME: "RENAME",
    READLINK: "READLINK", SYMLINK: "SYMLINK", EXTENDED: "EXTENDED",
}  # fmt: skip
REPLIES = frozenset({VERSION, STATUS, HANDLE, DATA, NAME, ATTRS, EXTENDED_REPLY})


class Malformed(Exception):
    """A packet (or the stream) that does not read as SFTP; the message is safe to show."""


class Unsupported(Exception):
    """A well-framed request of a type or extension the relay does not understand."""

    def __init__(self, request_id: int, what: str) -> None:
        super().__init__(what)
        self.request_id = request_id
        self.what = what


class Framer:
    """SFTP packets out of a byte stream (filexfer-02 section 3: uint32 length, body)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The packet bodies (type byte first) completed by `data`. Raises Malformed."""
        self._buffer += data
        packets: list[bytes] = []
        buffer = self._buffer
        start = 0
        while len(buffer) - start >= 4:
            (length,) = struct.unpack_from(">I", buffer, start)
            if length < 1 or length > self.limit:
                raise Malformed(f"an SFTP packet of {length} bytes")
            if len(buffer) - start - 4 < length:
                break
            with memoryview(buffer) as view:  # one copy of each body, not two
                packets.append(view[start + 4 : start + 4 + length].tobytes())
            start += 4 + length
        del buffer[:start]
        return packets

    @property
    def pending(self) -> int:
        return len(self._buffer)


class _Reader:
    def __init__(self, body: bytes, offset: int = 0) -> None:
        self.body = body
        self.offset = offset

    def take(self, n: int) -> bytes:
        end = self.offset + n
        if end > len(self.body):
            raise Malformed("a truncated SFTP packet")
        chunk = self.body[self.offset : end]
        self.offset = end
        return chunk

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self.take(8))[0])

    def string(self) -> bytes:
        return self.take(self.u32())

    def attrs(self) -> bytes:
        """ATTRS (filexfer-02 section 5), validated and returned as the bytes read."""
        start = self.offset
        flags = self.u32()
        if flags & ~ATTR_KNOWN:
            raise Malformed(f"ATTRS flags {flags:#x} not understood")
        if flags & ATTR_SIZE:
            self.take(8)
        if flags & ATTR_UIDGID:
            self.take(8)
        if flags & ATTR_PERMISSIONS:
            self.take(4)
        if flags & ATTR_ACMODTIME:
            self.take(8)
        if flags & ATTR_EXTENDED:
            count = self.u32()
            if count > MAX_ATTR_EXTENSIONS:
                raise Malformed("too many extended attributes")
            for _ in range(count):
                self.string()
                self.string()
        return self.body[start : self.offset]

    def end(self) -> None:
        if self.offset != len(self.body):
            raise Malformed("trailing bytes after an SFTP packet's fields")


def _u32(value: int) -> bytes:
    return struct.pack(">I", value)


def _string(value: bytes) -> bytes:
    return _u32(len(value)) + value


def packet(kind: int, payload: bytes) -> bytes:
    """A framed packet: uint32 length, type byte, payload."""
    return _u32(len(payload) + 1) + bytes([kind]) + payload


def frame(body: bytes) -> bytes:
    """A packet body (type byte first) framed again as it came: uint32 length, body."""
    return _u32(len(body)) + body


@dataclass
class Request:
    """One client request as read: its type, id, extension name and fields in order."""

    kind: int
    id: int
    schema: tuple[str, ...]
    fields: list[int | bytes]
    extension: bytes = b""

    @property
    def name(self) -> str:
        return self.extension.decode() if self.kind == EXTENDED else NAMES[self.kind]

    def values(self, of: str) -> list[bytes]:
        return [v for k, v in zip(self.schema, self.fields, strict=True) if k == of]  # type: ignore[misc]

    @property
    def paths(self) -> list[bytes]:
        return self.values("path")

    @property
    def handle(self) -> bytes | None:
        handles = self.values("handle")
        return handles[0] if handles else None

    def number(self, index: int) -> int:
        value = self.fields[index]
        assert isinstance(value, int)
        return value

    def encode(self, paths: list[str] | None = None) -> bytes:
        """The framed request from its fields, its paths replaced by `paths` in order."""
        replacements = iter(p.encode() for p in paths) if paths is not None else None
        out = [_u32(self.id)]
        if self.kind == EXTENDED:
            out.append(_string(self.extension))
        for kind, value in zip(self.schema, self.fields, strict=True):
            if kind == "path" and replacements is not None:
                value = next(replacements)
            if kind == "u32":
                assert isinstance(value, int)
                out.append(_u32(value))
            elif kind == "u64":
                assert isinstance(value, int)
                out.append(struct.pack(">Q", value))
            elif kind == "attrs":
                assert isinstance(value, bytes)
                out.append(value)
            else:
                assert isinstance(value, bytes)
                out.append(_string(value))
        return packet(self.kind, b"".join(out))


def read_init(body: bytes) -> int:
    """SSH_FXP_INIT (filexfer-02 section 4): the client's version (its extensions ignored)."""
    if not body or body[0] != INIT:
        raise Malformed("the SFTP session did not start with INIT")
    return _Reader(body, 1).u32()


def read_request(body: bytes) -> Request:
    """One client request (filexfer-02 sections 6-8, OpenSSH PROTOCOL section 4).
    Raises Malformed, or Unsupported with the id to answer."""
    reader = _Reader(body, 1)
    kind = body[0]
    request_id = reader.u32()
    extension = b""
    if kind == EXTENDED:
        extension = reader.string()
        schema = EXTENSIONS.get(extension)
        if schema is None:
            shown = extension[:64].decode("ascii", "replace")
            raise Unsupported(request_id, f"the SFTP extension {shown!r}")
    else:
        schema = SCHEMAS.get(kind)  # type: ignore[assignment]
        if schema is None:
            raise Unsupported(request_id, f"the SFTP packet type {kind}")
    fields: list[int | bytes] = []
    for item in schema:
        if item == "u32":
            fields.append(reader.u32())
        elif item == "u64":
            fields.append(reader.u64())
        elif item == "attrs":
            fields.append(reader.attrs())
        else:
            fields.append(reader.string())
    reader.end()
    return Request(kind, request_id, schema, fields, extension)


@dataclass
class Reply:
    """What the relay needs of an upstream packet."""

    kind: int
    id: int | None = None
    handle: bytes = b""
    data_length: int = 0
    status: int | None = None
    names: list[bytes] = field(default_factory=list)
    extensions: list[tuple[bytes, bytes]] = field(default_factory=list)
    version: int = 0


def read_reply(body: bytes) -> Reply:
    """An upstream packet: VERSION (its extensions), STATUS, HANDLE, DATA, NAME (its
    names), ATTRS, EXTENDED_REPLY (filexfer-02 sections 4 and 7). Raises Malformed."""
    kind = body[0]
    reader = _Reader(body, 1)
    if kind not in REPLIES:
        raise Malformed(f"the upstream sent SFTP packet type {kind}")
    if kind == VERSION:
        version = reader.u32()
        extensions = []
        while reader.offset < len(body):
            extensions.append((reader.string(), reader.string()))
        return Reply(kind, version=version, extensions=extensions)
    reply = Reply(kind, reader.u32())
    if kind == HANDLE:
        reply.handle = reader.string()
    elif kind == DATA:
        reply.data_length = reader.u32()
    elif kind == STATUS:
        reply.status = reader.u32()
    elif kind == NAME:
        count = reader.u32()
        if count:
            reply.names.append(reader.string())
    return reply


def read_names(body: bytes) -> tuple[int, list[tuple[bytes, bytes, bytes]]]:
    """SSH_FXP_NAME (filexfer-02 section 7) whole: its id and each entry's filename,
    longname and ATTRS (as read), the packet ending where the last entry does. Raises
    Malformed."""
    reader = _Reader(body, 1)
    request_id = reader.u32()
    entries = [(reader.string(), reader.string(), reader.attrs()) for _ in range(reader.u32())]
    reader.end()
    return request_id, entries


def names(request_id: int, entries: list[tuple[bytes, bytes, bytes]]) -> bytes:
    """SSH_FXP_NAME (filexfer-02 section 7) of these entries (filename, longname, ATTRS)."""
    body = b"".join(_string(name) + _string(long) + attrs for name, long, attrs in entries)
    return packet(NAME, _u32(request_id) + _u32(len(entries)) + body)


def init(version: int = VERSION_SPOKEN) -> bytes:
    """SSH_FXP_INIT (filexfer-02 section 4), without extensions."""
    return packet(INIT, _u32(version))


def version(extensions: list[tuple[bytes, bytes]]) -> bytes:
    """SSH_FXP_VERSION 3 with the extensions offered (filexfer-02 section 4)."""
    body = _u32(VERSION_SPOKEN) + b"".join(_string(n) + _string(d) for n, d in extensions)
    return packet(VERSION, body)


def status(request_id: int, code: int, message: str) -> bytes:
    """SSH_FXP_STATUS (filexfer-02 section 7): code, message, language tag."""
    text = message.encode("utf-8", "replace")[:1024]
    return packet(STATUS, _u32(request_id) + _u32(code) + _string(text) + _string(b"en"))


def realpath(request_id: int, path: bytes) -> bytes:
    """SSH_FXP_REALPATH (filexfer-02 section 6.9)."""
    return packet(REALPATH, _u32(request_id) + _string(path))


def attrs_set(attrs: bytes) -> tuple[int | None, tuple[int, int] | None]:
    """What an ATTRS (as read_request validated it) sets that the policy decides on: its
    permissions (the mode bits, set-user-ID ones included) and its owner (uid, gid), each
    None when not given."""
    reader = _Reader(attrs, 0)
    flags = reader.u32()
    if flags & ATTR_SIZE:
        reader.take(8)
    owner = (reader.u32(), reader.u32()) if flags & ATTR_UIDGID else None
    mode = reader.u32() if flags & ATTR_PERMISSIONS else None
    return mode, owner


def home_directory(request_id: int, username: bytes) -> bytes:
    """SSH_FXP_EXTENDED `home-directory` (draft-ietf-secsh-filexfer-extensions-00 section
    5; OpenSSH's sftp-server answers it since 9.0): the account's home, answered by NAME."""
    body = _u32(request_id) + _string(HOME_DIRECTORY) + _string(username)
    return packet(EXTENDED, body)


def open_flags(pflags: int) -> list[str]:
    """The names of SSH_FXF_* bits; Malformed for a bit not defined in version 3."""
    if pflags & ~sum(PFLAGS):
        raise Malformed(f"open flags {pflags:#x} not understood")
    return [name for bit, name in PFLAGS.items() if pflags & bit]


def open_access(pflags: int) -> tuple[bool, bool]:
    """Whether an open with these SSH_FXF_* bits can read and can write the file, as
    OpenSSH's sftp-server opens it (flags_from_portable): the access mode comes from READ
    and WRITE alone (O_RDWR, O_RDONLY, O_WRONLY), and is O_RDONLY when neither is given;
    APPEND, CREAT, TRUNC and EXCL only add to it. So an open naming CREAT (or APPEND, or
    EXCL) without WRITE reads the file."""
    return bool(pflags & FXF_READ) or not pflags & FXF_WRITE, bool(pflags & FXF_WRITE)


def normalise(path: bytes, base: str) -> str:
    """`path` made absolute against `base` (itself absolute and normal), with `.`, `..` and
    duplicate slashes resolved as text (`..` at the root stays at the root). Raises
    Malformed for a path that is not UTF-8 or holds a NUL."""
    try:
        text = path.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("a path that is not UTF-8") from None
    if "\x00" in text:
        raise Malformed("a NUL byte in a path")
    if not text.startswith("/"):
        text = f"{base}/{text}"
    parts: list[str] = []
    for part in text.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def parent(path: str) -> str:
    """The directory of a normal absolute path."""
    head = path.rsplit("/", 1)[0]
    return head or "/"
