"""HTTP/1.1 requests as the proxy reads them from a client: bytes in, events out, no IO.

Owns the strict reading of RFC 9112: the request line (§3), header fields (§5), the
message body's framing (§6: Content-Length, chunked transfer coding §7.1) and where one
request ends and the next begins on a kept-alive connection. Anything a lenient server
and a strict one could read two ways is refused with `BadRequest` (the proxy answers 400
and forwards nothing): a bare LF, obs-fold (§5.2), whitespace before a colon (§5.1),
control characters, a duplicate or malformed Content-Length, more than one Content-Type,
Transfer-Encoding other than exactly `chunked` or next to a Content-Length (§6.3), an
invalid chunk size, a head or
body larger than the limits, a method that is no upper-case token, CONNECT, a missing or
repeated Host, an absolute-form target (§3.2.2) whose authority is not the Host.

No asyncio here: `RequestReader.feed(bytes)` returns `Head` / `Body` / `End` events; the
glue (proxies/http/proxy.py) does the reading and writing. Header values are kept as
latin-1 text (the octets as received).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_HEAD_BYTES = 32 * 1024
MAX_HEADERS = 100
MAX_CHUNK_LINE = 1024
MAX_BODY_BYTES = 8 * 1024 * 1024

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_METHOD = re.compile(rb"[A-Z]{1,20}")
# field-value: visible characters, SP and HTAB, obs-text; no CTL (§5.5)
_CTL = bytes(c for c in range(32) if c != 9) + b"\x7f"  # what a field value may not hold
_TARGET = re.compile(rb"[\x21-\x7e]+")
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]+)(:[0-9]{1,5})?")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")
_DIGITS = re.compile(rb"[0-9]{1,18}")


class BadRequest(Exception):
    """The request cannot be read one way only: answered with `status`, nothing forwarded.
    The message is safe to show the client (it names the rule, never echoes a header)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Head:
    """A request head (RFC 9112 §3 and §5)."""

    method: str
    target: str  # origin-form (an absolute-form target is reduced to it)
    version: str  # "HTTP/1.1" or "HTTP/1.0"
    headers: tuple[tuple[str, str], ...]  # (lower-case name, value), in order
    request_line: str  # as received
    chunked: bool = False
    content_length: int = 0
    host: str = ""
    # name → its values in order, made once as the head is read (many lookups follow)
    fields: dict[str, list[str]] = field(default_factory=dict, compare=False, repr=False)
    keep_alive: bool = True  # the connection persists after this request (§9.3)
    upgrade: str = ""  # the protocol asked for with Upgrade (lower case), when Connection names it

    def get(self, name: str) -> str | None:
        """The one value of a header, or None; several are joined with ", " (§5.3)."""
        values = self.fields.get(name)
        if not values:
            return None
        return values[0] if len(values) == 1 else ", ".join(values)

    def values(self, name: str) -> list[str]:
        return list(self.fields.get(name, ()))


@dataclass(frozen=True)
class Body:
    data: bytes


@dataclass(frozen=True)
class End:
    """The request's body is complete (its trailers, if any, are dropped)."""


Event = Head | Body | End
END = End()  # every request's end is this one (End holds nothing)


def parse_head(block: bytes) -> Head:
    """A request head without its final CRLF CRLF (RFC 9112 §2.2, §3, §5)."""
    lines = block.split(b"\r\n")
    # each CRLF the split took holds one CR and one LF: any other is bare
    if block.count(b"\r") != len(lines) - 1 or block.count(b"\n") != len(lines) - 1:
        raise BadRequest("bare CR or LF in the request head")
    request_line, fields = lines[0], lines[1:]
    parts = request_line.split(b" ")
    if len(parts) != 3:
        raise BadRequest("the request line is not METHOD SP target SP version")
    method, target, version = parts
    if not _METHOD.fullmatch(method):
        raise BadRequest("invalid method")
    if method == b"CONNECT":
        raise BadRequest("CONNECT is not served: this is a reverse proxy", 405)
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise BadRequest("only HTTP/1.1 and HTTP/1.0 are served", 505)
    if not _TARGET.fullmatch(target):
        raise BadRequest("invalid request target")
    if len(fields) > MAX_HEADERS:
        raise BadRequest("too many header fields", 431)
    known = _FIELDS.get
    headers = tuple([known(line) or _field(line) for line in fields])
    index: dict[str, list[str]] = {}
    for name, value in headers:
        values = index.get(name)
        if values is None:
            index[name] = [value]
        else:
            values.append(value)
    return _framed(
        method.decode(),
        target.decode("ascii"),
        version.decode(),
        headers,
        request_line.decode("ascii"),
        index,
    )


# field lines already read, by their bytes: a client sends the same ones request after
# request (Host, User-Agent, Accept), so most are checked once
_FIELDS: dict[bytes, tuple[str, str]] = {}
_FIELDS_KEPT = 4096
_NOT_KEPT = frozenset({"authorization", "proxy-authorization", "cookie"})


def _field(line: bytes) -> tuple[str, str]:
    """One field line (§5.1); obs-fold (§5.2) and whitespace before the colon refused."""
    known = _FIELDS.get(line)
    if known is not None:
        return known
    read = _read_field(line)
    if read[0] in _NOT_KEPT:
        return read  # a credential is not held past its request in a process-wide table
    if len(_FIELDS) >= _FIELDS_KEPT:
        _FIELDS.clear()
    _FIELDS[line] = read
    return read


def _read_field(line: bytes) -> tuple[str, str]:
    if not line or line[:1] in (b" ", b"\t"):
        raise BadRequest("obs-fold or an empty field line")
    name, colon, value = line.partition(b":")
    if not colon or not _TOKEN.fullmatch(name):
        raise BadRequest("invalid header field name")
    value = value.strip(b" \t")
    if len(value.translate(None, _CTL)) != len(value):
        raise BadRequest("control character in a header field value")
    return name.decode("ascii").lower(), value.decode("latin-1")


def _framed(
    method: str,
    target: str,
    version: str,
    headers: tuple[tuple[str, str], ...],
    request_line: str,
    index: dict[str, list[str]],
) -> Head:
    hosts = index.get("host", ())
    if len(hosts) > 1:
        raise BadRequest("more than one Host header")
    if not hosts and version == "HTTP/1.1":
        raise BadRequest("HTTP/1.1 request without Host")
    host = hosts[0] if hosts else ""
    if host and not _HOST.fullmatch(host):
        raise BadRequest("invalid Host")
    target = _origin_form(target, host, method)
    types = index.get("content-type", ())
    if len(types) > 1 or (types and "," in types[0].partition(";")[0]):
        # how the body is read: servers take the first, the last, or join them
        raise BadRequest("more than one Content-Type")
    encodings = index.get("transfer-encoding", ())
    lengths = index.get("content-length", ())
    chunked = False
    content_length = 0
    if encodings:
        if version == "HTTP/1.0":
            raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
        if lengths:
            raise BadRequest("both Transfer-Encoding and Content-Length")
        if len(encodings) != 1 or encodings[0].strip().lower() != "chunked":
            raise BadRequest("Transfer-Encoding other than exactly chunked")
        chunked = True
    elif lengths:
        if len(lengths) != 1 or not _DIGITS.fullmatch(lengths[0].encode("latin-1")):
            raise BadRequest("duplicate or invalid Content-Length")
        content_length = int(lengths[0])
        if content_length > MAX_BODY_BYTES:
            raise BadRequest("request body larger than this proxy takes", 413)
    connection = index.get("connection")
    tokens = {t.strip().lower() for t in ",".join(connection).split(",")} if connection else ()
    # (`close` ends the connection whatever the version, §9.3's first rule: an HTTP/1.0
    # request naming both keep-alive and close is not kept)
    keep_alive = "close" not in tokens and (version != "HTTP/1.0" or "keep-alive" in tokens)
    upgrade = ""
    if "upgrade" in tokens:
        upgrade = ", ".join(index.get("upgrade", ())).strip().lower()
    return Head(
        method, target, version, headers, request_line, chunked, content_length, host,
        index, keep_alive, upgrade,
    )  # fmt: skip


def _origin_form(target: str, host: str, method: str) -> str:
    """origin-form as is; absolute-form (§3.2.2) only for this Host, reduced to its path;
    asterisk-form only for OPTIONS; authority-form never (CONNECT is refused)."""
    if target.startswith("/"):
        return target
    if target == "*" and method == "OPTIONS":
        return target
    scheme, sep, rest = target.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        raise BadRequest("invalid request target")
    authority, slash, path = rest.partition("/")
    authority, query_mark, query = authority.partition("?")
    if "@" in authority or not host or authority.lower() != host.lower():
        raise BadRequest("absolute-form target for another host than Host names")
    origin = "/" + path if slash else "/"
    if query_mark:
        if slash:
            raise BadRequest("invalid request target")
        origin += "?" + query
    return origin


@dataclass
class RequestReader:
    """The requests of one client connection, one after another (§9.3 persistence).

    `feed` returns the events the bytes complete; bytes past a request's end wait for
    the next one. Raises BadRequest on the first thing it cannot read one way only;
    after that the connection is not read again."""

    max_head: int = MAX_HEAD_BYTES
    max_body: int = MAX_BODY_BYTES
    _buffer: bytearray = field(default_factory=bytearray)
    _state: str = "head"  # head | length | chunk-size | chunk-data | chunk-crlf | trailer
    _left: int = 0  # bytes of the body (length) or chunk still to come
    _body_seen: int = 0
    _paused: bool = False  # after a request: wait until the glue asks for the next one
    # the last head read, by its exact bytes: a client repeats its requests, and the same
    # bytes read the same way (parse_head is a function of them alone); held no longer
    # than the connection, whose token the glue holds anyway
    _last_block: bytes = b""
    _last_head: Head | None = None

    def feed(self, data: bytes) -> list[Event]:
        if self._state == "head" and not self._buffer and not self._paused:
            end = data.find(b"\r\n\r\n")
            if end == len(data) - 4 and 0 <= end <= self.max_head:
                # the usual read: one whole head and nothing after it, read in place
                head = self._head(data[:end])
                if self._state != "done":
                    return [head]  # its body follows
                self._state, self._paused = "head", True
                return [head, END]
        self._buffer += data
        return self._events()

    def next_request(self) -> list[Event]:
        """The glue is done with one request: the bytes already here may start the next."""
        self._paused = False
        if not self._buffer and self._state == "head":
            return []  # (the usual case: nothing of a next request came yet)
        return self._events()

    def take_buffered(self) -> bytes:
        """What the client sent past the last request (after an upgrade: the new
        protocol's first bytes); the reader is done."""
        data, self._buffer = bytes(self._buffer), bytearray()
        self._paused = True
        return data

    def _events(self) -> list[Event]:
        events: list[Event] = []
        while not self._paused:
            event = self._step()
            if event is None:
                break
            events.append(event)
            if isinstance(event, End):
                self._paused = True
        return events

    def _step(self) -> Event | None:
        state, buf = self._state, self._buffer
        if state == "head":
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > self.max_head:
                    raise BadRequest("request head larger than this proxy takes", 431)
                if buf.count(b"\n") != buf.count(b"\r\n"):
                    # a head ended by bare LFs would never see its CRLF CRLF: refused
                    # now, not left waiting for the idle timeout
                    raise BadRequest("bare CR or LF in the request head")
                return None
            if end > self.max_head:
                raise BadRequest("request head larger than this proxy takes", 431)
            head = self._head(bytes(buf[:end]))
            del buf[: end + 4]
            return head
        if state == "done":
            self._state = "head"
            return END
        if state == "length":
            if not buf:
                return None
            data = bytes(buf[: self._left])
            del buf[: len(data)]
            self._left -= len(data)
            if not self._left:
                self._state = "done"
            return Body(data)
        if state == "chunk-size":
            return self._chunk_size()
        if state == "chunk-data":
            if not buf:
                return None
            data = bytes(buf[: self._left])
            del buf[: len(data)]
            self._left -= len(data)
            if not self._left:
                self._state = "chunk-crlf"
            return Body(data)
        if state == "chunk-crlf":
            if len(buf) < 2:
                if buf[:1] not in (b"", b"\r"):
                    raise BadRequest("chunk data not followed by CRLF")
                return None
            if buf[:2] != b"\r\n":
                raise BadRequest("chunk data not followed by CRLF")
            del buf[:2]
            self._state = "chunk-size"
            return self._step()
        return self._trailer()

    def _head(self, block: bytes) -> Head:
        """A request's head (without its CRLF CRLF); the state for its body set."""
        head = self._last_head
        if head is None or block != self._last_block:
            head = parse_head(block)
            self._last_block, self._last_head = block, head
        if head.content_length > self.max_body:
            raise BadRequest("request body larger than this proxy takes", 413)
        self._body_seen = 0
        if head.chunked:
            self._state = "chunk-size"
        elif head.content_length:
            self._state, self._left = "length", head.content_length
        else:
            self._state = "done"
        return head

    def _line(self) -> bytes | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > MAX_CHUNK_LINE:
                raise BadRequest("chunk line too long")
            if b"\n" in self._buffer or b"\r" in self._buffer[:-1]:
                # a line ended by a bare LF (or holding a bare CR) would never see its
                # CRLF: refused now, not left waiting for the read timeout
                raise BadRequest("bare CR or LF in chunked framing")
            return None
        if end > MAX_CHUNK_LINE:
            raise BadRequest("chunk line too long")
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        if b"\n" in line or b"\r" in line:
            raise BadRequest("bare CR or LF in chunked framing")
        return line

    def _chunk_size(self) -> Event | None:
        """chunk-size [ chunk-ext ] CRLF (§7.1); the extension is a token list, ignored."""
        line = self._line()
        if line is None:
            return None
        size, semicolon, ext = line.partition(b";")
        if not _HEX.fullmatch(size):
            raise BadRequest("invalid chunk size")
        if semicolon and not re.fullmatch(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z=;\"]*", ext):
            raise BadRequest("invalid chunk extension")
        self._left = int(size, 16)
        self._body_seen += self._left
        if self._body_seen > self.max_body:
            raise BadRequest("request body larger than this proxy takes", 413)
        self._state = "chunk-data" if self._left else "trailer"
        return self._step()

    def _trailer(self) -> Event | None:
        """trailer-section CRLF (§7.1.2): field lines, checked and dropped."""
        while True:
            line = self._line()
            if line is None:
                return None
            if not line:
                self._state = "head"
                return END
            _field(line)
