"""A WebSocket once its upgrade was decided (`http.upgrade`): relayed and recorded frame by
frame.

Owns the two halves of a WebSocket relay: `FrameReader`, a sans-IO reader of RFC 6455
§5.2 frame headers (no IO: bytes in, (opcode, fin, length, first bytes of the payload)
out, a client's masked payload unmasked for the recording), and `relay_websocket`, the
asyncio glue that sends the decided upgrade upstream (the client's token removed, the
upstream credential injected, as for any request), hands the upstream's answer head back
(masked as an HTTP answer's under a mask; another status than 101 without its body), and
then copies bytes both ways, every frame recorded with its direction, opcode and size and
every byte towards the client checked for the upstream credential first. Under a mask
verdict (a reader's WebSocket), `MaskedFrames` masks each message towards the client as an
HTTP answer is masked, and the recording holds what the client got.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from portcullis.masking import Masker, MaskingError
from portcullis.verdict import VerdictKind
from proxies.http import messages
from proxies.http.bodies import (
    HELD_SECONDS,
    BodyMask,
    Unmaskable,
    field_words,
    masked_headers,
    masker_for,
    name_words,
    worded_field,
)
from proxies.http.guard import ResponseGuard
from proxies.http.upstream import ResponseHead, UpstreamError, read_head
from proxies.runtime.exposure import ClientOutput
from proxies.runtime.pdp_client import Ruling

if TYPE_CHECKING:
    from proxies.http.proxy import ClientConnection, Request

PREVIEW = 256
MAX_UPSTREAM_HEAD = 32 * 1024
OPCODES = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}
_DATA_FRAMES = frozenset({"continuation", "text", "binary"})


class FrameRefused(Exception):
    """A frame the proxy cannot read through (reserved bits set: an extension's)."""


@dataclass(frozen=True)
class Frame:
    opcode: str
    fin: bool
    length: int
    preview: bytes  # the payload's first bytes, unmasked


@dataclass
class FrameReader:
    """Frames of one direction (RFC 6455 §5.2), read only to record them: the bytes
    themselves are relayed unchanged. With `keeps_payload`, the payload of its data
    frames (text, binary, continuation), unmasked, is kept for take_payload: what the
    peer's application reads, without the frames' headers between."""

    keeps_payload: bool = False
    # a server's frames are never masked (RFC 6455 §5.1): one that is would carry its
    # payload XORed past the credential guard, which reads the bytes as they go
    from_server: bool = False
    _payload: bytearray = field(default_factory=bytearray)
    _buffer: bytearray = field(default_factory=bytearray)
    _left: int = 0  # payload bytes of the current frame still to come
    _key: bytes = b""
    _offset: int = 0
    _header: tuple[str, bool, int] | None = None
    _preview: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[Frame]:
        frames: list[Frame] = []
        self._buffer += data
        while True:
            if self._header is None and not self._parse_header():
                return frames
            take = min(self._left, len(self._buffer))
            chunk = bytes(self._buffer[:take])
            del self._buffer[:take]
            room = PREVIEW - len(self._preview)
            if room > 0 and chunk:
                self._preview += self._unmask(chunk[:room])
            if self.keeps_payload and chunk and self._header and self._header[0] in _DATA_FRAMES:
                self._payload += self._unmask(chunk)
            self._offset += take
            self._left -= take
            if self._left:
                return frames
            assert self._header is not None
            opcode, fin, length = self._header
            frames.append(Frame(opcode, fin, length, bytes(self._preview)))
            self._header, self._preview = None, bytearray()

    def take_payload(self) -> bytes:
        """The data frames' payload read since the last call (keeps_payload)."""
        out, self._payload = bytes(self._payload), bytearray()
        return out

    def _unmask(self, data: bytes) -> bytes:
        if not self._key:
            return data
        start = self._offset
        return bytes(b ^ self._key[(start + i) % 4] for i, b in enumerate(data))

    def _parse_header(self) -> bool:
        buf = self._buffer
        header = frame_header(buf)
        if header is None:
            return False
        size, at, self._key = header
        if self._key and self.from_server:
            raise FrameRefused("a server's frame is masked")
        opcode = OPCODES.get(buf[0] & 0x0F, f"reserved-{buf[0] & 0x0F}")
        self._header = (opcode, bool(buf[0] & 0x80), size)
        self._left, self._offset = size, 0
        del buf[:at]
        return True


def frame_header(buf: bytearray) -> tuple[int, int, bytes] | None:
    """A frame header at the start of buf: (payload size, header length, masking key or
    b""), or None until it is all there. Reserved bits refuse the frame: RSV1-3 belong to
    extensions; none is negotiated through the proxy, and a compressed (RSV1) frame would
    carry bytes the credential guard cannot read."""
    if len(buf) < 2:
        return None
    if buf[0] & 0x70:
        raise FrameRefused("a frame with reserved bits set")
    masked, size = buf[1] & 0x80, buf[1] & 0x7F
    at = 2
    if size == 126:
        if len(buf) < 4:
            return None
        size, at = int.from_bytes(buf[2:4], "big"), 4
    elif size == 127:
        if len(buf) < 10:
            return None
        size, at = int.from_bytes(buf[2:10], "big"), 10
    if not masked:
        return size, at, b""
    if len(buf) < at + 4:
        return None
    return size, at + 4, bytes(buf[at : at + 4])


# a server message ending in the credential's first bytes is held back (the secret could
# go on in the next) only from this many: a client waiting for an answer that ends in its
# first letter would wait forever; at most three bytes of it ever reach the client
WEBSOCKET_HELD = 4
MAX_MASKED_MESSAGE = 1024 * 1024  # a message towards the client held whole to be masked
MAX_CONTROL = 125  # a control frame's payload at most (RFC 6455 §5.5)


class MaskedFrames:
    """The server's frames towards a client under a mask verdict (sans-IO: bytes in, bytes
    out). A data message (its frames joined) is masked whole and goes as one frame, read
    as an HTTP answer of text is (`_masked`); a binary message that is UTF-8 alike. Control
    frames pass. What cannot be read one way (reserved bits, a continuation of nothing, a
    message past the bound, a message that is not UTF-8 or holds NULs, text naming a
    masked field where its value cannot be told) raises FrameRefused: the WebSocket ends
    there."""

    def __init__(
        self,
        masker: Masker,
        limit: int = MAX_MASKED_MESSAGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.masker = masker
        self.limit = limit
        self.counts: Counter[str] = Counter()
        self._buffer = bytearray()
        self._opcode: int | None = None  # the data message being gathered
        self._message = bytearray()
        # the messages masked, read as the pieces of one text too (each an event of its
        # data: BodyMask.released): those from one whose end may go on as a value in the
        # next are held (their opcodes and when they came, in order), until one ends
        # it, the bounds, or HELD_SECONDS after the first of them
        self._clock = clock
        self._pieces = BodyMask(masker, "sse", limit=limit)
        self._held: list[tuple[int, float]] = []

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        out = bytearray()
        while True:
            frame = self._frame()
            if frame is None:
                return bytes(out)
            opcode, fin, payload = frame
            if opcode in (8, 9, 10):  # close, ping, pong: inside a message or not
                if opcode == 8:
                    out += self.release()  # (what is held goes before the close)
                out += _frame_bytes(opcode, self._control(opcode, fin, payload))
                continue
            if opcode == 0:
                if self._opcode is None:
                    raise FrameRefused("a continuation frame of no message")
            elif self._opcode is not None:
                raise FrameRefused("a new message inside a fragmented one")
            elif opcode not in (1, 2):
                raise FrameRefused("a frame of a reserved opcode")
            else:
                self._opcode = opcode
            self._message += payload
            if len(self._message) > self.limit:
                raise FrameRefused("a message larger than this proxy masks")
            if fin:
                kind, message = self._opcode, bytes(self._message)
                self._opcode, self._message = None, bytearray()
                out += self._pieced(kind, self._masked(kind, message))

    def due(self) -> float | None:
        """Seconds until the held messages go whatever comes (release), None if none is."""
        if not self._held:
            return None
        return max(0.0, self._held[0][1] + HELD_SECONDS - self._clock())

    def release(self) -> bytes:
        """The held messages' frames, to go now (the socket ends, or they waited enough)."""
        return self._framed(self._pieces.held_events())

    def _pieced(self, opcode: int, payload: bytes) -> bytes:
        """A masked message read with those held before it (BodyMask.released): the frames
        of the messages that go now."""
        text = payload.decode("utf-8")
        self._held.append((opcode, self._clock()))
        event = "\n".join("data: " + line for line in text.split("\n"))
        return self._framed(self._pieces.released(event))

    def _framed(self, events: list[str]) -> bytes:
        self.counts.update(self._pieces.counts)
        self._pieces.counts.clear()
        out = bytearray()
        for event in events:
            data = [ln[5:].removeprefix(" ") for ln in event.split("\n") if ln.startswith("data:")]
            out += _frame_bytes(self._held.pop(0)[0], "\n".join(data).encode("utf-8"))
        return bytes(out)

    def _frame(self) -> tuple[int, bool, bytes] | None:
        buf = self._buffer
        header = frame_header(buf)
        if header is None:
            return None
        size, at, key = header
        if key:
            raise FrameRefused("a server's frame is masked")
        if size > self.limit:
            raise FrameRefused("a frame larger than this proxy masks")
        if len(buf) < at + size:
            return None
        payload = bytes(buf[at : at + size])
        opcode, fin = buf[0] & 0x0F, bool(buf[0] & 0x80)
        del buf[: at + size]
        return opcode, fin, payload

    def _control(self, opcode: int, fin: bool, payload: bytes) -> bytes:
        """A control frame's payload as the client gets it (RFC 6455 §5.5): a close's
        reason, a ping's or pong's application data are text a client's application may
        read (aiohttp's `extra`, a ping with autoping off), so they are masked as a
        message is; one that cannot be masked, or grows past a control frame's 125
        bytes, goes empty (a close keeps its status code). A control frame fragmented
        or longer than 125 bytes is no WebSocket's: refused."""
        if not fin or len(payload) > MAX_CONTROL:
            raise FrameRefused("a control frame fragmented or over 125 bytes")
        code, text = (payload[:2], payload[2:]) if opcode == 8 else (b"", payload)
        if not text:
            return payload
        try:
            masked = self._masked(1, text)
        except FrameRefused:
            self.counts["control:withheld"] += 1
            return code
        if len(code) + len(masked) > MAX_CONTROL:
            self.counts["control:withheld"] += 1
            return code
        return code + masked

    def _masked(self, opcode: int, payload: bytes) -> bytes:
        """A whole message as an HTTP answer of text is masked (BodyMask's `lines`: JSON
        documents with the field rules and fields named by values, other text's `name:
        value` and `name=value` by the field rules, every string by the detectors). Binary
        that is not UTF-8 (MessagePack, CBOR, compressed JSON) is no text the masks read:
        refused, as an HTTP answer's binary body is withheld under a mask."""
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            kind = "text" if opcode == 1 else "binary"
            raise FrameRefused(f"a {kind} message that is not UTF-8 cannot be masked") from None
        body = BodyMask(self.masker, "lines", limit=self.limit)
        try:
            masked = body.feed(payload) + body.finish()
        except Unmaskable as exc:
            raise FrameRefused(str(exc)) from None
        if not body.counts:
            return payload
        self.counts.update(body.counts)
        return masked


class NamingFrames:
    """A masked client's frames towards the upstream (sans-IO: bytes in, bytes out): the
    frames of a data message are held until it is whole, then passed as they came, unless
    the message names a field the mask hides (its words, as `field_words` reads a name:
    GraphQL's `subscription {c {x: phone}}`, `{"select": "x:phone"}`). A client naming
    the field chooses the name its value comes back under, past the mask (the request
    side of http.rego's rule for reads that name one): FrameRefused ends the socket. A
    message that is not UTF-8 cannot be read for names: refused too. Control frames pass."""

    def __init__(self, masker: Masker, limit: int = MAX_MASKED_MESSAGE) -> None:
        self.words = field_words(masker)
        self.limit = limit
        self._buffer = bytearray()
        self._held = bytearray()  # the message's frames as they came
        self._message = bytearray()  # its payload, unmasked

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        out = bytearray()
        while True:
            buf = self._buffer
            header = frame_header(buf)
            if header is None:
                return bytes(out)
            size, at, key = header
            if size > self.limit:
                raise FrameRefused("a frame larger than this proxy reads")
            if len(buf) < at + size:
                return bytes(out)
            raw, payload = bytes(buf[: at + size]), bytes(buf[at : at + size])
            opcode, fin = buf[0] & 0x0F, bool(buf[0] & 0x80)
            del buf[: at + size]
            if opcode >= 8:
                out += raw
                continue
            if key:
                payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            self._held += raw
            self._message += payload
            if len(self._message) > self.limit:
                raise FrameRefused("a message larger than this proxy reads")
            if fin:
                self._check(bytes(self._message))
                out += self._held
                self._held, self._message = bytearray(), bytearray()

    def _check(self, message: bytes) -> None:
        try:
            text = message.decode("utf-8")
        except UnicodeDecodeError:
            raise FrameRefused("a message that is not UTF-8 cannot be read for names") from None
        named = worded_field(self.words, name_words(text)) if self.words else ""
        if named:
            raise FrameRefused(f"a message naming the masked field {named!r}")


def _frame_bytes(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame (a server's, RFC 6455 §5.2)."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, size))
    elif size < 1 << 16:
        head = bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + size.to_bytes(8, "big")
    return head + payload


async def relay_websocket(
    conn: ClientConnection, request: Request, raw: str, ruling: Ruling
) -> None:
    """The decided upgrade sent upstream; on 101 both directions relayed until either ends."""
    session = request.session
    proxy = conn.proxy
    upstream = proxy.upstream
    tls: ssl.SSLContext | None = None
    if upstream.scheme == "https":
        context = proxy.upstream_tls()
        tls = context if isinstance(context, ssl.SSLContext) else None
    details: dict[str, Any] = {
        "kind": "http.upgrade",
        "method": request.head.method,
        "path": request.target.path,
        "upgrade": "websocket",
    }
    masking: MaskedFrames | None = None
    if ruling.kind is VerdictKind.MASK and ruling.verdict.mask:
        try:
            masking = MaskedFrames(masker_for(ruling.verdict.mask, proxy.hash_key))
        except MaskingError as exc:
            session.record_command(raw, ruling, status=500, error="mask_rules", **details)
            conn.send_problem(request, 500, "mask rules cannot be enforced", str(exc))
            return
    try:
        up_reader, up_writer = await asyncio.open_connection(
            upstream.host, upstream.port, ssl=tls, server_hostname=upstream.host if tls else None
        )
    except (OSError, ssl.SSLError) as exc:
        session.record_command(raw, ruling, status=502, error="upstream_unavailable", **details)
        conn.send_problem(request, 502, "upstream unavailable", type(exc).__name__)
        return
    try:
        url = conn.upstream_url(request)
        target = url.raw_path_qs
        lines = [f"GET {target} HTTP/1.1"]
        lines += [f"{n}: {v}" for n, v in conn.upstream_headers(request, keep_upgrade=True)]
        up_writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        try:
            answer = await up_reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            session.record_command(raw, ruling, status=502, error="upstream_closed", **details)
            conn.send_problem(request, 502, "upstream closed the upgrade")
            return
        try:
            head = read_head(answer[:-4])
        except UpstreamError:
            session.record_command(raw, ruling, status=502, error="upstream_answer", **details)
            conn.send_problem(request, 502, "the upstream's answer cannot be read")
            return
        status = head.status
        if status == 101 and head.get("sec-websocket-extensions") is not None:
            # the proxy offered none: frames an extension shapes cannot be checked
            session.record_command(raw, ruling, status=502, error="websocket_extension", **details)
            conn.send_problem(request, 502, "the upstream chose a WebSocket extension")
            return
        guard = ResponseGuard(conn.output, conn.secrets(request), least_held=WEBSOCKET_HELD)
        guard.write_head(answer_head(head, masking), final=True)
        session.record_command(raw, ruling, status=status, **details)
        if status != 101:
            return
        await _relay(conn, request, up_reader, up_writer, guard, masking)
        if masking is not None and masking.counts:
            session.record_masking(dict(masking.counts), ruling.decision_id)
    finally:
        up_writer.close()
        with contextlib.suppress(Exception):
            await up_writer.wait_closed()


def _dropped(data: bytes) -> None:
    return None


# the handshake's own fields (RFC 6455 §4.2.2): passed as they are, never masked
_HANDSHAKE = frozenset(
    {"upgrade", "connection", "sec-websocket-accept", "sec-websocket-protocol",
     "sec-websocket-version"}
)  # fmt: skip


def answer_head(head: ResponseHead, masking: MaskedFrames | None) -> bytes:
    """The upstream's answer to an upgrade, as the client gets it: a 101 with its fields;
    any other status without its body (which is not relayed: Content-Length 0, the
    connection closed) and without hop-by-hop fields. Under a mask, every field but the
    handshake's is masked as an HTTP answer's head is (masked_headers), and the reason
    phrase is the standard one."""
    if head.status == 101:
        fields = [(f[2], f[3]) for f in head.fields]
    else:
        fields = messages.relayed_headers(head.fields)
        fields += [("content-length", "0"), ("connection", "close")]
    reason = head.reason
    if masking is not None:
        reason = ""
        shown = []
        for name, value in fields:
            if name.lower() in _HANDSHAKE:
                shown.append((name, value))
                continue
            # (a field whose name holds what the masks hide does not go at all)
            masked, counts = masked_headers(masking.masker, [(name, value)])
            masking.counts.update(counts)
            shown += masked
        fields = shown
    return messages.response_head(head.status, reason, fields)


async def _relay(
    conn: ClientConnection,
    request: Request,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
    guard: Any,
    masking: MaskedFrames | None = None,
) -> None:
    session = request.session
    frames = {"client": FrameReader(), "server": FrameReader(keeps_payload=True, from_server=True)}
    # the server's messages as the client's application reads them, checked for the
    # credential before their frames go (guard): a key cut across two messages, or two
    # frames of one, has a frame's header between its pieces on the wire
    messages_read = ResponseGuard(ClientOutput(_dropped), conn.secrets(request))
    naming = NamingFrames(masking.masker) if masking is not None else None

    def record(direction: str, data: bytes) -> None:
        for frame in frames[direction].feed(data):
            preview = frame.preview.decode("utf-8", "replace") if frame.opcode == "text" else ""
            session.record_response(
                kind="http.frame",
                direction=direction,
                frame=frame.opcode,
                fin=frame.fin,
                bytes=frame.length,
                text=preview,
            )

    async def client_to_server() -> None:
        pending = conn.codec.take_buffered()
        while True:
            if pending and naming is not None:
                pending = naming.feed(pending)  # (whole messages, none naming a masked field)
            if pending:
                record("client", pending)
                up_writer.write(pending)
                await up_writer.drain()
            pending = await conn.io.read(64 * 1024)
            if not pending:
                return

    async def to_client(data: bytes) -> None:
        record("server", data)
        messages_read.write(frames["server"].take_payload())
        guard.write(data)
        await conn.io.drain()

    async def server_to_client() -> None:
        while True:
            due = masking.due() if masking is not None else None
            try:
                data = await asyncio.wait_for(up_reader.read(64 * 1024), due)
            except TimeoutError:
                # (messages held while a value might go on in the next: none came)
                assert masking is not None
                await to_client(masking.release())
                continue
            if not data:
                if masking is not None and (held := masking.release()):
                    await to_client(held)
                guard.flush()
                return
            if masking is not None:
                # what the client gets, and is recorded: each message masked whole, those
                # whose end may go on as a value in the next held for it
                data = masking.feed(data)
                if not data:
                    continue
            await to_client(data)

    tasks = [asyncio.ensure_future(client_to_server()), asyncio.ensure_future(server_to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, FrameRefused):
                # the frame and what follows it are not relayed: the WebSocket ends here
                session.record_response(kind="http.frame", error="frame_refused")
