"""MCP over streamable HTTP, as the proxy reads and rewrites it: bytes in, messages out, no IO.

Owns JSON-RPC 2.0 (https://www.jsonrpc.org/specification) as the Model Context Protocol
carries it over its streamable-HTTP transport (MCP specification, Base Protocol →
Transports → Streamable HTTP; revisions 2025-03-26 to 2026-07-28):

- a POST body (`application/json`) holds one message, or a batch (2025-03-26) of requests
  and notifications, or of responses; `parse_request` reads it strictly and refuses what
  two JSON readers could read two ways (duplicate keys, by portcullis.strict_json's rule,
  lone surrogates, non-finite numbers, keys JSON-RPC does not define, params keys
  MCP does not define for a known method (portcullis.mcp.PARAMS), a batch mixing
  requests with responses, ids repeated in a batch, numbers a double does not hold
  exactly), anything too large or too deep, and
  anything that is no JSON-RPC;
- each message becomes the command the PDP decides (`Message.command`: the canonical JSON
  of the endpoint it was posted to, its method and params with their `_meta` — all but
  its progressToken — or a response's result, so a retry with another id is the same
  command an approval covered, and nothing is forwarded that was not decided);
- the routing headers of revision 2026-07-28 (`Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`)
  must agree with the body (`check_routing_headers`), so no intermediary routes on a value
  the policy did not see;
- responses: `application/json` documents and `text/event-stream` events (`SseReader`:
  HTML Living Standard §9.2 "Server-sent events", event stream interpretation), one event
  at a time, never the whole stream; `error_response` is the JSON-RPC error a refusal is.

What is forwarded is re-serialised from what was decided (`Message.body` → `encode`),
never the client's bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from portcullis import strict_json
from portcullis.mcp import (
    TARGETS,
    URI_METHODS,
    WITH_ARGUMENTS,
    params_problem,
    template_problem,
    uri_problem,
)

MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_BATCH = 64
MAX_DEPTH = 64
MAX_METHOD = 256
# characters of a string id: the proxy keeps a request's id until its answer comes (and a
# server's, until the client answers it), up to 256 a session, so it is bounded as well
MAX_ID = 256
MAX_EVENT_BYTES = 16 * 1024 * 1024

# JSON-RPC error codes: the specification's, and ours from the implementation-defined band
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
DENIED = -32010  # the policy denied this message
APPROVAL_REQUIRED = -32011  # a person must approve it first; data.approval_id names the request
NOT_INSPECTABLE = -32012  # an answer the proxy could not read to mask or filter
SESSION_REFUSED = -32013  # an Mcp-Session-Id this client may not use (HTTP 404), or hand out
TOO_MANY_SESSIONS = -32014  # the identity holds as many sessions as it may (HTTP 429)

NAME_HEADER_METHODS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
ROUTING_HEADERS = ("mcp-method", "mcp-name", "mcp-protocol-version")
PARAM_HEADER_PREFIX = "mcp-param-"

_REQUEST_KEYS = frozenset({"jsonrpc", "id", "method", "params"})
_RESPONSE_KEYS = (frozenset({"jsonrpc", "id", "result"}), frozenset({"jsonrpc", "id", "error"}))
METHOD_TEXT = re.compile(r"[\x21-\x7e]+")
_B64_SENTINEL = re.compile(r"=\?base64\?(?P<payload>[A-Za-z0-9+/=]*)\?=")


class Refused(ValueError):
    """A body or header the proxy will not read one way only: nothing is forwarded. The
    client gets `error_response(None, code, message)` with HTTP `status`; the message
    names the rule and never echoes the client's data."""

    def __init__(self, message: str, code: int = INVALID_REQUEST, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True)
class Message:
    """One JSON-RPC message of a request body, as decided and as forwarded."""

    kind: str  # request | notification | response
    body: dict[str, Any]
    id: str | int | None = None
    method: str = ""

    @property
    def params(self) -> dict[str, Any]:
        params = self.body.get("params", {})
        return params if isinstance(params, dict) else {}

    def command(
        self,
        endpoint: str,
        answers: str = "",
        headers: Sequence[tuple[str, str]] = (),
        during: Sequence[str] = (),
        template_variables: Sequence[str] = (),
    ) -> str:
        """The command text the PDP decides: the endpoint (path and query) it was posted
        to and the message, canonical JSON without the id or `_meta.progressToken`; a
        response with the method of the server's request it `answers` and the tools
        running `during` it (the session's calls in flight when it reached the client,
        which an answer may steer: an elicitation's amount); the `headers` the
        request carries upstream that a server may act on, as [name, value] pairs in their
        order (an approval binds them, its approver is shown them); a resources/read or
        subscribe with the `template_variables` of the listed templates its URI fills
        (mcp_templates.py: `customers://{email}` read filled in is a lookup by email)."""
        bound = {"headers": [[n, v] for n, v in headers]} if headers else {}
        if self.kind == "response":
            shown = {k: v for k, v in self.body.items() if k in ("result", "error")}
            shown["answers"] = answers
            if during:
                shown["during"] = list(during)
        else:
            params = dict(self.params)
            meta = params.get("_meta")
            if isinstance(meta, dict) and "progressToken" in meta:
                # a token the client picks per call to match progress notifications (a
                # string or an integer, _check_params): like the id, not part of what is
                # decided, so a retry is the same command an approval covered
                meta = {k: v for k, v in meta.items() if k != "progressToken"}
                if meta:
                    params["_meta"] = meta
                else:
                    del params["_meta"]
            shown = {"method": self.method, "params": params}
            if template_variables:
                shown["template_variables"] = list(template_variables)
        return canonical({"endpoint": endpoint, **shown, **bound})

    @property
    def attributes(self) -> dict[str, Any]:
        """What the proxy tells the PDP besides the text (the PDP reads the rest from it)."""
        return {"notification": True} if self.kind == "notification" else {}

    @property
    def target(self) -> str | None:
        """The tool, prompt or resource a request names (tools/call, prompts/get, ...)."""
        named = TARGETS.get(self.method)
        if named is None:
            return None
        value = self.params.get(named[0])
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class RequestBody:
    messages: tuple[Message, ...]
    batch: bool

    @property
    def requests(self) -> tuple[Message, ...]:
        return tuple(m for m in self.messages if m.kind == "request")


def canonical(value: Any) -> str:
    """One text per JSON value: sorted keys, no spaces, non-ASCII kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def encode(value: Any) -> bytes:
    """What the proxy sends: JSON text in ASCII (no encoding question for any reader)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def error_response(id_: str | int | None, code: int, message: str, data: Any = None) -> dict:
    """A JSON-RPC 2.0 error response object (specification §5.1)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": id_, "error": error}


# -- reading JSON strictly -------------------------------------------------------------


def _constant(name: str) -> Any:
    raise Refused(f"{name} is not JSON", PARSE_ERROR)


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Refused("a number out of range", PARSE_ERROR)
    return value


def loads(data: bytes, limit: int = MAX_BODY_BYTES, exact: bool = False) -> Any:
    """JSON text (RFC 8259) read one way only, or Refused: UTF-8 without a BOM, no repeated
    key, no NaN/Infinity or overflowing number, no lone surrogate, at most MAX_DEPTH deep.
    `exact` (what a client sends, which is decided): no number a double does not hold
    exactly either (an integer past 2**53, written as one or as a float), by
    portcullis.strict_json's rule, as an HTTP body: the policy's input holds doubles, a
    server may read the digits, so the two would see other numbers."""
    if len(data) > limit:
        raise Refused(f"body larger than {limit} bytes", INVALID_REQUEST, 413)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("body is not UTF-8", PARSE_ERROR) from None
    if text.startswith("\ufeff"):
        raise Refused("body starts with a byte order mark", PARSE_ERROR)
    try:
        if exact:
            value = strict_json.loads(text)
        else:
            value = json.loads(
                text,
                object_pairs_hook=strict_json.unique_names,
                parse_constant=_constant,
                parse_float=_number,
            )
    except Refused:
        raise
    except strict_json.RepeatedName:
        raise Refused("a JSON object repeats a key", PARSE_ERROR) from None
    except strict_json.Inexact:
        raise Refused("a number out of range (no double holds it exactly)", PARSE_ERROR) from None
    except RecursionError:
        raise Refused("JSON nested too deep", PARSE_ERROR) from None
    except ValueError:
        raise Refused("body is not JSON", PARSE_ERROR) from None
    _check_tree(value)
    return value


def _check_tree(value: Any) -> None:
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise Refused(f"JSON nested deeper than {MAX_DEPTH}", PARSE_ERROR)
        if isinstance(node, str):
            _check_text(node)
        elif isinstance(node, dict):
            for key, child in node.items():
                _check_text(key)
                stack.append((child, depth + 1))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Refused("a JSON string holds a lone surrogate", PARSE_ERROR) from None


# -- requests --------------------------------------------------------------------------


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_request(
    data: bytes, content_type: str | None, limit: int = MAX_BODY_BYTES
) -> RequestBody:
    """A POST body of the streamable-HTTP transport: one JSON-RPC message or a batch."""
    if media_type(content_type) != "application/json":
        raise Refused("an MCP message is posted as application/json", INVALID_REQUEST, 415)
    charset = re.search(r";\s*charset\s*=\s*\"?([^\";\s]+)", content_type or "", re.I)
    if charset and charset.group(1).lower() not in ("utf-8", "utf8"):
        raise Refused("an MCP message is UTF-8", INVALID_REQUEST, 415)
    document = loads(data, limit, exact=True)
    if isinstance(document, dict):
        return RequestBody((read_message(document),), batch=False)
    if not isinstance(document, list):
        raise Refused("a JSON-RPC message is an object, a batch an array")
    if not document:
        raise Refused("an empty batch")
    if len(document) > MAX_BATCH:
        raise Refused(f"a batch of more than {MAX_BATCH} messages")
    messages = tuple(read_message(item) for item in document)
    if len({m.kind == "response" for m in messages}) > 1:
        raise Refused("a batch mixes responses with requests or notifications")
    ids = [m.id for m in messages if m.id is not None]
    if len({(type(i).__name__, i) for i in ids}) != len(ids):
        raise Refused("a batch repeats a request id")
    return RequestBody(messages, batch=True)


NOTIFICATIONS = "notifications/"  # the methods MCP sends as notifications, and only they


def _valid_id(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= MAX_ID
    return isinstance(value, int) and not isinstance(value, bool)


def _case_twins(value: Any) -> bool:
    """Whether an object anywhere in value has two keys equal but for case (casefold)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if len({key.casefold() for key in item}) != len(item):
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def read_message(item: Any) -> Message:
    """One JSON-RPC 2.0 message (specification §4 request/notification, §5 response)."""
    if not isinstance(item, dict):
        raise Refused("a JSON-RPC message is an object")
    if item.get("jsonrpc") != "2.0":
        raise Refused('a JSON-RPC message has "jsonrpc": "2.0"')
    keys = frozenset(item)
    if "method" in item:
        if not keys <= _REQUEST_KEYS:
            raise Refused("a JSON-RPC request has a key JSON-RPC does not define")
        method = item["method"]
        if not isinstance(method, str) or not METHOD_TEXT.fullmatch(method):
            raise Refused("a JSON-RPC method is a name of visible ASCII")
        if len(method) > MAX_METHOD:
            raise Refused(f"a method name longer than {MAX_METHOD}")
        if "params" in item and not isinstance(item["params"], dict):
            raise Refused("MCP params are an object")
        # MCP names every notification notifications/... and nothing else: a request sent
        # without an id (which a server would run and answer nobody) or a notification
        # with one is one message read two ways
        if "id" in item:
            if not _valid_id(item["id"]):
                raise Refused(
                    f"a request id is a string or an integer (strings of {MAX_ID} at most)"
                )
            if method.startswith(NOTIFICATIONS):
                raise Refused("a notification carries no id")
            message = Message("request", item, item["id"], method)
        else:
            if not method.startswith(NOTIFICATIONS):
                raise Refused(f"{method} is a request: it carries an id")
            message = Message("notification", item, None, method)
        _check_params(message)
        return message
    if keys in _RESPONSE_KEYS:
        if not _valid_id(item["id"]):
            raise Refused(f"a response id is a string or an integer (strings of {MAX_ID} at most)")
        if "error" in item and not isinstance(item["error"], dict):
            raise Refused("a JSON-RPC error is an object")
        return Message("response", item, item["id"])
    raise Refused("neither a JSON-RPC request, notification nor response")


def _check_params(message: Message) -> None:
    params = message.params
    problem = params_problem(message.method, params)
    if problem is not None:
        raise Refused(problem)
    if _case_twins(params):
        # ({"amount": 1, "AMOUNT": 900}: the policy reads both, a server decoding keys
        # case-insensitively one only — Go's encoding/json the last, by Unicode's simple
        # folding: a long s, U+017F, is an s there)
        raise Refused("an object of the params has two keys equal but for case")
    named = TARGETS.get(message.method)
    if named is not None and not isinstance(params.get(named[0]), str):
        raise Refused(f"{message.method} names its {named[0]} as a string")
    if message.method in URI_METHODS:
        problem = uri_problem(params["uri"])
        if problem is not None:
            raise Refused(problem)
    ref = params.get("ref") if message.method == "completion/complete" else None
    if isinstance(ref, dict) and isinstance(ref.get("uri"), str):
        problem = template_problem(ref["uri"])
        if problem is not None:
            raise Refused(problem)
    if message.method in WITH_ARGUMENTS and not isinstance(params.get("arguments", {}), dict):
        raise Refused(f"{message.method} arguments are an object")
    meta = params.get("_meta", {})
    if not isinstance(meta, dict):
        raise Refused("_meta is an object")
    token = meta.get("progressToken", "")
    if not isinstance(token, str | int) or isinstance(token, bool):
        # (left out of the decided command: it may carry nothing but a token)
        raise Refused("_meta.progressToken is a string or an integer")


def check_routing_headers(
    headers: Sequence[tuple[str, str]],
    body: RequestBody,
    schema: dict[str, tuple[str, ...]] | None = None,
) -> None:
    """Headers that repeat part of the body (MCP 2026-07-28, Transports → Custom Headers)
    must say what the body says, once: `Mcp-Method` its method, `Mcp-Name` the tool,
    prompt or resource it names, each `Mcp-Param-{Name}` the value of the argument it
    names. `schema`: the tool's `x-mcp-header` names (lower case) → property paths, when
    its tools/list answer passed through this proxy; without it, {Name} names an argument
    (case-insensitively, at any depth through objects only)."""
    seen: dict[str, str] = {}
    params: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        if key in ROUTING_HEADERS:
            if key in seen:
                raise Refused(f"{key} appears more than once")
            seen[key] = value
        elif key.startswith(PARAM_HEADER_PREFIX):
            if key in params:
                raise Refused(f"{key} appears more than once")
            params[key[len(PARAM_HEADER_PREFIX) :]] = value
    if not seen.keys() - {"mcp-protocol-version"} and not params:
        return
    if body.batch or len(body.messages) != 1:
        raise Refused("routing headers name one message, this body is a batch")
    message = body.messages[0]
    if "mcp-method" in seen and seen["mcp-method"] != message.method:
        raise Refused("Mcp-Method does not match the body's method")
    if "mcp-name" in seen:
        named = NAME_HEADER_METHODS.get(message.method)
        if named is None or decode_header_value(seen["mcp-name"]) != message.params.get(named):
            raise Refused("Mcp-Name does not match what the body names")
    if params:
        if message.method != "tools/call":
            raise Refused("Mcp-Param headers belong to a tools/call")
        arguments = message.params.get("arguments", {})
        for name, value in params.items():
            decoded = decode_header_value(value)
            if schema is not None:
                path = schema.get(name)
                found = [] if path is None else list(_at_path(arguments, path))
            else:
                found = list(_named(arguments, name))
            if not found:
                raise Refused("an Mcp-Param header names no argument of the body")
            if decoded is None or any(v != decoded for v in found):
                raise Refused("an Mcp-Param header says another value than its argument")


def decode_header_value(value: str) -> str | None:
    """A header value, or the UTF-8 text inside its `=?base64?...?=` sentinel (None when
    the sentinel is malformed or not canonical base64)."""
    match = _B64_SENTINEL.fullmatch(value)
    if match is None:
        return value
    payload = match.group("payload")
    try:
        decoded = base64.b64decode(payload, validate=True)
        if base64.b64encode(decoded).decode("ascii") != payload:
            return None
        return decoded.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def _rendered(value: Any) -> str | None:
    """A primitive argument as its Mcp-Param header renders it (string, integer, boolean;
    a number with a fraction, an object, an array or null is none)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int):
        return str(value)
    return None


def _named(arguments: Any, name: str) -> Iterator[str | None]:
    """What each property called `name` (case-insensitively) holds, reached from the
    arguments through objects only (x-mcp-header's statically reachable properties)."""
    stack = [arguments]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, child in node.items():
                if key.lower() == name:
                    yield _rendered(child)
                stack.append(child)


def _at_path(arguments: Any, path: tuple[str, ...]) -> Iterator[str | None]:
    node = arguments
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return
        node = node[key]
    yield _rendered(node)


def header_schema(tool: Any) -> dict[str, tuple[str, ...]] | None:
    """A listed tool's `x-mcp-header` names (lower case) → property paths (MCP 2026-07-28,
    Custom Headers → Schema Extension: reachable through `properties` keys only); None
    when its inputSchema is not one this proxy can read that way."""
    schema = tool.get("inputSchema") if isinstance(tool, dict) else None
    if not isinstance(schema, dict):
        return None
    out: dict[str, tuple[str, ...]] = {}
    stack: list[tuple[dict[str, Any], tuple[str, ...]]] = [(schema, ())]
    while stack:
        node, path = stack.pop()
        properties = node.get("properties", {})
        if not isinstance(properties, dict):
            return None
        for key, child in properties.items():
            if not isinstance(child, dict):
                continue
            named = child.get("x-mcp-header")
            if named is not None:
                if not isinstance(named, str) or not named or named.lower() in out:
                    return None
                out[named.lower()] = (*path, key)
            stack.append((child, (*path, key)))
    return out


# -- responses -------------------------------------------------------------------------


def response_messages(document: Any) -> list[dict[str, Any]] | None:
    """The JSON-RPC messages of a server's answer (one object or a batch), or None when it
    is not JSON-RPC (the caller fails closed where it must read it)."""
    items = document if isinstance(document, list) else [document]
    if not items or not all(isinstance(i, dict) and i.get("jsonrpc") == "2.0" for i in items):
        return None
    return items


# a list method → the result's array, the key naming each item, and the request (method,
# params key) the policy is asked whether the caller may make of an item (`listing`)
LISTINGS: dict[str, tuple[str, str, str, str]] = {
    "tools/list": ("tools", "name", "tools/call", "name"),
    "prompts/list": ("prompts", "name", "prompts/get", "name"),
    "resources/list": ("resources", "uri", "resources/read", "uri"),
    # a template asked as the read of its literal prefix (what comes before its first
    # expression): shown when every URI it expands to starts with a listed prefix
    "resources/templates/list": ("resourceTemplates", "uriTemplate", "resources/read", "uri"),
}


def listed(result: Any, method: str = "tools/list") -> list[str] | None:
    """The names (uris) a list result lists, None if it is not one (MCP Server → Tools,
    Prompts, Resources)."""
    array, key = LISTINGS[method][:2]
    if not isinstance(result, dict) or not isinstance(result.get(array), list):
        return None
    names = []
    for item in result[array]:
        if not isinstance(item, dict) or not isinstance(item.get(key), str):
            return None
        names.append(item[key])
    return names


def filtered(result: dict[str, Any], shown: set[str], method: str = "tools/list") -> dict[str, Any]:
    """A list result with only the items in `shown`."""
    array, key = LISTINGS[method][:2]
    return {**result, array: [item for item in result[array] if item[key] in shown]}


def listed_tools(result: Any) -> list[str] | None:
    """The names a `tools/list` result lists, None if it is not one."""
    return listed(result, "tools/list")


def filtered_tools(result: dict[str, Any], shown: set[str]) -> dict[str, Any]:
    """A `tools/list` result with only the tools in `shown`."""
    return filtered(result, shown, "tools/list")


# -- server-sent events ----------------------------------------------------------------


@dataclass
class SseEvent:
    """One dispatched event: its data (lines joined with LF) and the other fields as sent."""

    data: str
    fields: list[tuple[str, str]] = field(default_factory=list)  # id, event, retry in order
    has_data: bool = True

    def encode(self, data: str | None = None) -> bytes:
        """The event as a stream carries it, its data replaced by `data` when given."""
        lines = [f"{name}: {value}" if value else name for name, value in self.fields]
        text = self.data if data is None else data
        if self.has_data or data is not None:
            lines.extend(f"data: {line}" for line in text.split("\n"))
        return ("\n".join(lines) + "\n\n").encode("utf-8")


class SseTooLarge(ValueError):
    pass


class SseReader:
    """Event stream interpretation (HTML §9.2.6): feed bytes, get whole events; one event
    is held at most (MAX_EVENT_BYTES), never the stream. Comments are counted, their text
    dropped; the fields id, event and retry are kept in order; a field with another name
    is ignored, as the standard says."""

    def __init__(self, limit: int = MAX_EVENT_BYTES) -> None:
        # what is not read yet is _buffer[_start:]; no line end lies in its first
        # _searched bytes (a line not yet ended is not searched again, and the buffer is
        # compacted only when half of it is read: linear in what the server sends)
        self._buffer = bytearray()
        self._start = 0
        self._searched = 0
        self._limit = limit
        self._data: list[str] = []
        self._fields: list[tuple[str, str]] = []
        self._size = 0
        self._started = False
        self.comments = 0  # comment lines read (keep-alives)

    def feed(self, chunk: bytes) -> list[SseEvent]:
        self._buffer += chunk
        if not self._started:
            if len(self._buffer) < 3 and b"\xef\xbb\xbf".startswith(self._buffer):
                return []
            self._started = True
            if self._buffer.startswith(b"\xef\xbb\xbf"):
                del self._buffer[:3]
        events: list[SseEvent] = []
        buffer = self._buffer
        while True:
            pos = self._start
            end = _line_end(buffer, pos, self._searched)
            if end is None:
                self._searched = max(0, len(buffer) - pos - 1)
                if pos > len(buffer) // 2:
                    del buffer[:pos]
                    self._start = 0
                if len(buffer) - self._start + self._size > self._limit:
                    raise SseTooLarge(f"an event larger than {self._limit} bytes")
                return events
            stop, after = end
            line = buffer[pos:stop].decode("utf-8", "replace")
            self._size += stop - pos
            self._start, self._searched = after, 0
            if self._size > self._limit:
                raise SseTooLarge(f"an event larger than {self._limit} bytes")
            event = self._line(line)
            if event is not None:
                events.append(event)

    def finish(self) -> list[SseEvent]:
        """The stream ended: a CR that waited for a possible LF ends its line; an event
        not ended by a blank line is discarded (HTML §9.2.6)."""
        events = []
        rest = self._buffer[self._start :]
        if rest.endswith(b"\r"):
            event = self._line(rest[:-1].decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
        self._buffer, self._data, self._fields, self._size = bytearray(), [], [], 0
        self._start = self._searched = 0
        return events

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            if not self._data and not self._fields:
                self._size = 0
                return None
            event = SseEvent("\n".join(self._data), self._fields, bool(self._data))
            self._data, self._fields, self._size = [], [], 0
            return event
        if line.startswith(":"):
            self.comments += 1  # its text is not passed on; that the server is alive, is
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name in ("id", "event", "retry"):
            self._fields.append((name, value))
        return None


_LINE_BREAK = re.compile(rb"[\r\n]")


def _line_end(
    buffer: bytes | bytearray, start: int = 0, searched: int = 0
) -> tuple[int, int] | None:
    """(end of the first line from `start`, start of the next) for CRLF, LF or CR endings;
    a CR at the very end waits for the next byte (it may be the start of a CRLF). No line
    end lies in the `searched` bytes after `start`."""
    found = _LINE_BREAK.search(buffer, start + searched)
    if found is None:
        return None
    at = found.start()
    if buffer[at] == 0x0A:
        return at, at + 1
    if at + 1 == len(buffer):
        return None
    return at, at + 2 if buffer[at + 1] == 0x0A else at + 1
