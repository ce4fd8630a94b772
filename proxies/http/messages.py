"""What the HTTP proxy writes and rewrites, as bytes and header lists — no IO.

Owns: the proxy's own answers (RFC 9457 `application/problem+json`: 400, 401, 403 with
the policy's reasons and the decision id, 202 with the approval id, 503 when the PDP
cannot decide), the headers a request keeps on its way upstream (hop-by-hop ones removed,
RFC 9110 §7.6.1; the client's token and anything naming the upstream credential's header
removed; X-Forwarded-For/-Proto and Forwarded set by the proxy, never taken from the
client, nor anything naming another host, path or scheme to route by), the
headers a response keeps on its way back, a response head's bytes, chunked coding of a
body (RFC 9112 §7.1), and the command text (`raw`) a request is decided and recorded as.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from portcullis import strict_json
from portcullis.http_target import Target
from proxies.http import carried, request_words
from proxies.http.codec import BadRequest, Head
from proxies.http.codings import Undecodable, codings, decode_whole

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
    }
)
# never forwarded from the client: its token, framing the proxy redoes, what the proxy sets
REQUEST_DROPPED = HOP_BY_HOP | {
    "authorization",
    "proxy-authorization",
    "host",
    "content-length",
    "expect",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-real-ip",
    # the client's address as other proxies and CDNs hand it on: an upstream trusting one
    # (an IP allow-list, Rails' Client-IP, Akamai's True-Client-IP) would take the
    # client's word for it from the proxy's connection; the proxy sets X-Forwarded-For
    # and Forwarded
    "client-ip",
    "x-client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "x-forwarded",
    "forwarded-for",
    "x-forwarded-server",
    "x-proxyuser-ip",
    # a path some servers route by instead of the request line's (IIS URL Rewrite, older
    # Symfony and Zend): the target decided is the target sent
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-override-url",
    # a host, scheme or prefix an upstream routes or builds URLs by (virtual hosts, a
    # tenant per host): the upstream gets the configured authority in Host, nothing of the
    # client's choosing that the policy was not shown
    "x-host",
    "x-http-host-override",
    "front-end-https",
    "x-url-scheme",
    # the prefix and scheme Flask's ReverseProxied recipe and Tornado's xheaders read
    # (X-Script-Name moves a prefix of the path into SCRIPT_NAME: the app routes the rest)
    "x-script-name",
    "x-scheme",
    # Next.js reads it as "this request already went through the middleware" and skips
    # the middleware (its auth checks, CVE-2025-29927)
    "x-middleware-subrequest",
    # a WebSocket extension (permessage-deflate) would compress frames past the guard
    "sec-websocket-extensions",
}
# never forwarded from the client either, any name that opens so: routing and addressing
# claims of other proxies (X-Forwarded-Prefix, -Uri, -Path, -Scheme, -Ssl, -Server;
# X-Original-Host; Envoy's own), and framework-internal routing (Next.js x-invoke-*)
REQUEST_DROPPED_PREFIXES = (
    "x-forwarded-",
    "x-original-",
    "x-rewrite-",
    "x-envoy-",
    "x-middleware-",
    "x-invoke-",
)
# what the policy sees of a request's headers (never a credential or a cookie)
POLICY_HEADERS = (
    "content-type",
    "accept",
    "user-agent",
    "origin",
    "referer",
    "x-request-id",
    "x-requested-with",
    "mcp-session-id",
    "content-length",
    # the method a framework may act on instead of the request line's (http.rego)
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
)
REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    417: "Expectation Failed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}
# the words of a header's name (parted at `-`, `_`, `.`) that say it describes the body's
# bytes, their length or a range of them, under whatever vendor's name: an object store's
# hash of the upstream's bytes (`x-goog-hash`, `x-amz-checksum-sha256`,
# `x-ms-content-crc64`) is an oracle for a guessed body as an ETag is; its length
# (`x-goog-stored-content-length`, `X-Content-Length`, `OC-FileSize`, `Content-Range:
# bytes */49` on a HEAD) tells the unmasked length of a secret the masked body hides
_BODY_WORDS = frozenset(
    {"etag", "digest", "checksum", "hash", "md5", "sha", "sha1", "sha256", "sha512", "crc",
     "crc32", "crc32c", "crc64", "length", "size", "filesize", "range", "ranges", "bytes"}
)  # fmt: skip
_NAME_WORDS = re.compile(r"[-_.]+")
# the words of a digest's name that name one written into a word with others as well:
# rclone's `X-Amz-Meta-Md5chksum`, `X-Sha256sum`, `X-ContentMD5` (a length or a size is
# named by its word alone: `bytesize` is rare, `filesize` is listed)
_DIGEST_WORDS = ("etag", "digest", "checksum", "md5", "sha1", "sha2", "sha3", "sha5", "crc")


def describes_body(name: str) -> bool:
    """Whether a response header describes the upstream's body bytes (a digest, a length,
    a range of them): dropped when the body goes masked or decoded, a HEAD's as a GET's."""
    # (ETag, Content-MD5, Digest, Content-Digest, Repr-Digest among them, by their words)
    words = _NAME_WORDS.split(name.strip().lower())
    return any(word in _BODY_WORDS for word in words) or any(
        digest in word for word in words for digest in _DIGEST_WORDS
    )


def undescribed_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A masked or decoded answer's headers without what describes the upstream's body
    bytes (describes_body), and a Content-Disposition without its `size` parameter (RFC
    2183's `attachment; filename=card.txt; size=49`: the unmasked length); one whose
    quoting cannot be read, naming a size, is dropped whole."""
    kept = []
    for name, value in headers:
        if describes_body(name):
            continue
        if name.strip().lower() == "content-disposition":
            sizeless = _sizeless_disposition(value)
            if sizeless is None:
                continue
            value = sizeless
        kept.append((name, value))
    return kept


def _sizeless_disposition(value: str) -> str | None:
    """A Content-Disposition value without its `size` (or `size*`) parameters; None when
    its quoting cannot be read and it may name one."""
    parts, part, quoted, escaped = [], "", False, False
    for char in value:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            parts.append(part)
            part = ""
            continue
        part += char
    parts.append(part)
    if quoted or escaped:
        return None if "size" in value.lower() else value
    kept = [p for p in parts if p.partition("=")[0].strip().lower().rstrip("*").strip() != "size"]
    return value if len(kept) == len(parts) else ";".join(kept)


BODY_IN_RAW = 16 * 1024  # a request body shown whole in the command text up to this size
INSPECTED_BODY = 64 * 1024  # a JSON body handed to the policy up to this size
INSPECTED_CODED = 16 * 1024 * 1024  # a compressed request body read up to this, decoded


def decoded_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A response's headers once the proxy has undone its content coding (the client gets
    the identity representation: no Content-Encoding, and no range of the coded one)."""
    return [(n, v) for n, v in headers if n.lower() not in ("content-encoding", "accept-ranges")]


def connection_tokens(headers: Iterable[tuple[str, str]]) -> set[str]:
    """The header names a Connection header lists (hop-by-hop too, §7.6.1)."""
    return {
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
        if token.strip()
    }


def upstream_request_headers(
    head: Head,
    client_ip: str,
    scheme: str,
    credential_header: str = "",
    keep_upgrade: bool = False,
) -> list[tuple[str, str]]:
    """The client's headers as they go upstream, with X-Forwarded-* and Forwarded (RFC
    7239) set from what the proxy saw."""
    out = _client_headers_sent(head, credential_header, keep_upgrade)
    if keep_upgrade:
        out = [(n, v) for n, v in out if n != "connection"] + [("connection", "Upgrade")]
    out += _forwarding(client_ip, scheme)
    return out


def _client_headers_sent(
    head: Head, credential_header: str = "", keep_upgrade: bool = False
) -> list[tuple[str, str]]:
    """The client's own headers that go upstream (the proxy's are added to them)."""
    dropped = _request_dropped(credential_header.lower())
    connection = head.fields.get("connection")
    if connection:
        dropped = dropped | connection_tokens(("connection", v) for v in connection)
    if keep_upgrade:
        dropped = dropped - {"upgrade", "connection"}
    # a name spelled with `_` for `-` is dropped as that header is (CGI, WSGI and PHP
    # read X_Forwarded_For as X-Forwarded-For)
    return [
        (n, v)
        for n, v in head.headers
        if n not in dropped
        and _dashed(n) not in dropped
        and not _dashed(n).startswith(REQUEST_DROPPED_PREFIXES)
    ]


def _dashed(name: str) -> str:
    return name.replace("_", "-") if "_" in name else name


@functools.lru_cache(maxsize=64)
def _request_dropped(credential_header: str) -> frozenset[str]:
    return REQUEST_DROPPED | {credential_header} if credential_header else REQUEST_DROPPED


@functools.lru_cache(maxsize=1024)
def _forwarding(client_ip: str, scheme: str) -> tuple[tuple[str, str], ...]:
    """X-Forwarded-For/-Proto and Forwarded for a client. No X-Forwarded-Host and no
    Forwarded `host=`: the client's Host is its own choice, which the policy is not shown,
    and an upstream routing by it (virtual hosts, a tenant per host) would serve another
    site than the one decided; the upstream's Host is the configured authority."""
    node = f'"[{client_ip}]"' if ":" in client_ip else client_ip
    return (
        ("x-forwarded-for", client_ip),
        ("x-forwarded-proto", scheme),
        ("forwarded", f"for={node};proto={scheme}"),
    )


def response_headers(raw: Sequence[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """An upstream response's headers without hop-by-hop ones and without its framing."""
    pairs = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in raw]
    listed = connection_tokens(pairs)
    dropped = HOP_BY_HOP | listed | {"content-length"}
    return [(n, v) for n, v in pairs if n.lower() not in dropped]


_RESPONSE_DROPPED = HOP_BY_HOP | {"content-length"}


def relayed_headers(fields: Sequence[tuple[bytes, bytes, str, str, str]]) -> list[tuple[str, str]]:
    """response_headers() of fields as the upstream client reads them (proxies/http/upstream.py:
    name and value as bytes, as text, the name in lower case): nothing decoded again."""
    dropped = _RESPONSE_DROPPED
    for field in fields:
        if field[4] == "connection":
            dropped = HOP_BY_HOP | connection_tokens([(f[4], f[3]) for f in fields]) | dropped
            break
    return [(f[2], f[3]) for f in fields if f[4] not in dropped]


def response_head(status: int, reason: str, headers: Iterable[tuple[str, str]]) -> bytes:
    status_line = f"HTTP/1.1 {status} {reason or REASONS.get(status) or _phrase(status)}"
    pairs = list(headers)
    fields = "\r\n".join(map(": ".join, pairs))
    if fields.count("\r") != len(pairs) - 1 or fields.count("\n") != len(pairs) - 1:
        # an upstream value is forwarded as received, minus anything that would split it
        fields = "\r\n".join(
            f"{name}: {value.replace(chr(13), ' ').replace(chr(10), ' ')}" for name, value in pairs
        )
    if not pairs:
        return (status_line + "\r\n\r\n").encode("latin-1", "replace")
    return (status_line + "\r\n" + fields + "\r\n\r\n").encode("latin-1", "replace")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


LAST_CHUNK = b"0\r\n\r\n"


def problem(
    status: int,
    title: str,
    detail: str = "",
    close: bool = False,
    extra_headers: Sequence[tuple[str, str]] = (),
    **fields: Any,
) -> bytes:
    """A whole RFC 9457 problem response."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update({k: v for k, v in fields.items() if v not in (None, "", [])})
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    headers = [
        ("content-type", "application/problem+json"),
        ("content-length", str(len(data))),
        ("cache-control", "no-store"),
        *extra_headers,
    ]
    if close:
        headers.append(("connection", "close"))
    return response_head(status, "", headers) + data


def bearer(head: Head) -> tuple[str, str]:
    """(token, "") or ("", why not) — the client's JWT from Proxy-Authorization, else
    Authorization (RFC 6750 §2.1); more than one of either is refused."""
    for name in ("proxy-authorization", "authorization"):
        values = head.values(name)
        if len(values) > 1:
            return "", f"more than one {name} header"
        if values:
            scheme, _, token = values[0].strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip(), ""
    return "", "a bearer token is required (Authorization or Proxy-Authorization)"


def prefer_wait(head: Head) -> int:
    """Seconds of `Prefer: wait=N` (RFC 7240 §4.3), 0 without."""
    for value in head.values("prefer"):
        for preference in value.split(","):
            name, _, number = preference.strip().partition("=")
            if name.strip().lower() == "wait" and number.strip().isdigit():
                return min(int(number.strip()), 24 * 3600)
    return 0


# the headers that change the method the upstream acts on (http.rego judges them): part of
# the command text, so an approval binds to them and an approver sees them
BOUND_HEADERS = frozenset({"x-http-method-override", "x-http-method", "x-method-override"})


# the request headers that change nothing the upstream acts on, or never reach it as
# sent (what the proxy frames, sets or drops itself; content negotiation; tracing ids; a
# WebSocket's per-handshake key): left out of what an approval binds. Every other header
# that goes upstream is bound (command_text): a header may name the operation (AWS's
# X-Amz-Target), the account or tenant (Stripe-Account), a source to copy (S3's
# x-amz-copy-source), an upsert (PostgREST's Prefer), how the body is read (Content-Type)
UNBOUND_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "expect",
        "authorization",
        "proxy-authorization",
        "user-agent",
        "accept",
        "accept-encoding",
        "accept-language",
        "accept-charset",
        "cache-control",
        "pragma",
        "date",
        "origin",
        "referer",
        "dnt",
        "upgrade-insecure-requests",
        "x-request-id",
        "x-correlation-id",
        "traceparent",
        "tracestate",
        "baggage",
        "b3",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-amzn-trace-id",
        "x-cloud-trace-context",
        "sentry-trace",
        "sec-websocket-key",
        "sec-websocket-version",
    }
)
UNBOUND_PREFIXES = ("sec-fetch-", "sec-ch-")
# a bound header whose value is a credential of the client's: bound by its digest, shown
# by its name only (evidence holds no secret of anyone's)
_SECRET_NAME = re.compile(r"cookie|key|token|secret|auth|passw|session|signature|credential")


def bound_headers(head: Head, credential_header: str = "") -> list[tuple[str, str]]:
    """The headers an approval binds, as shown: each that goes upstream (as
    upstream_request_headers sends them) and is not UNBOUND_HEADERS, the method-override
    headers first; a credential's value as its SHA-256, `Prefer: wait` (the proxy's own)
    left out."""
    names = [n for n, _ in head.headers]
    if all(_dashed(n) in UNBOUND_HEADERS for n in names):
        return []  # (the usual request: nothing to bind)
    out: list[tuple[str, str]] = []
    for name, value in _client_headers_sent(head, credential_header):
        dashed = _dashed(name)
        if dashed in UNBOUND_HEADERS or dashed.startswith(UNBOUND_PREFIXES):
            continue
        if dashed == "prefer":
            value = ", ".join(
                p.strip()
                for p in value.split(",")
                if p.strip() and p.partition("=")[0].strip().lower() != "wait"
            )
            if not value:
                continue
        elif _SECRET_NAME.search(dashed):
            value = "sha256:" + hashlib.sha256(value.encode("latin-1")).hexdigest()
        out.append((name, value))
    out.sort(key=lambda pair: _dashed(pair[0]) not in BOUND_HEADERS)
    return out


def command_text(head: Head, body: bytes, credential_header: str = "") -> str:
    """What the request is decided, approved and recorded as: the request line as
    received, each header that goes upstream and may change what it acts on
    (bound_headers: the method-override headers first, any `_`/`-` spelling), then (for a
    body) its size and SHA-256 — an approval binds to these exact bytes — and the body
    itself when it is short text. An approval given for a POST covers no request that
    names another method, operation, account or content type in a header.
    `credential_header`: the upstream credential's header, which a client's is dropped
    from (never bound, never shown)."""
    text = head.request_line
    if text[len(head.method) + 1 : len(head.method) + 2] != "/" and head.target.startswith("/"):
        # an absolute-form target (RFC 9112 §3.2.2), for this Host: decided as the
        # origin-form the codec reduced it to and the upstream gets (the PDP re-reads the
        # path from this line and reads no absolute-form: it denied every such request)
        text = f"{head.method} {head.target} {head.version}"
    bound = bound_headers(head, credential_header)
    if bound:
        text += "".join(f"\n{name}: {value}" for name, value in bound)
    if body:
        text += f"\nbody: {len(body)} bytes sha256:{hashlib.sha256(body).hexdigest()}"
        if len(body) <= BODY_IN_RAW:
            try:
                text += "\n\n" + body.decode("utf-8")
            except UnicodeDecodeError:
                pass
    return text


def is_form(head: Head) -> bool:
    return media_type(head) == "application/x-www-form-urlencoded"


def media_type(head: Head) -> str:
    """The request's media type, lower-case, without parameters ("" when untyped)."""
    return (head.get("content-type") or "").split(";")[0].strip().lower()


def policy_body(head: Head, body: bytes) -> tuple[Any, bool]:
    """(the body the policy sees or None, whether it was too large to inspect): a JSON
    body as its value (a body of another type that reads as JSON too), a form body
    (application/x-www-form-urlencoded) as name → value (a list when a name repeats), as
    the query is. A body whose media type names JSON is
    read one way only or refused (BadRequest, see json_body)."""
    if not body:
        return None, False
    if len(body) > INSPECTED_BODY:
        return None, True
    content_type = media_type(head)
    if "json" in content_type:
        try:
            return json_body(head.get("content-type") or "", body), False
        except BadRequest:
            # lines of JSON (Elasticsearch's _bulk and _msearch, typed application/json
            # or x-ndjson): shown as the list of its lines' values, each read one way
            # only, or refused as before
            lines = ndjson_body(head.get("content-type") or "", body)
            if lines is None:
                raise
            return lines, False
    if content_type == "application/x-www-form-urlencoded":
        if _charset(head.get("content-type") or "") not in ("", "utf-8", "utf8", "us-ascii"):
            # Django and ASP.NET decode a form in the charset it names: in UTF-16,
            # `_method=DELETE` is bytes the policy's reading (ASCII pairs) never shows
            raise BadRequest("a form body is UTF-8")
        try:
            return Target("/", body.decode("ascii")).query_params(), False
        except UnicodeDecodeError:
            return None, False
    if body.lstrip()[:1] in (b"{", b"[") and not content_type.startswith("multipart/"):
        # JSON under another type (text/plain, none): the upstream may read it as JSON all
        # the same (Elasticsearch, Flask's get_json(force=True), body-parser's type */*),
        # so the policy sees it as such when it reads as JSON one way only
        try:
            return json_body("", body), False
        except BadRequest:
            if _loose_json(body):
                raise  # (JSON some parser reads one way and the policy could not)
            return None, False
    return None, False


def body_text(body: bytes) -> str | None:
    """A body the policy is not shown as a value, as text (UTF-8, up to INSPECTED_BODY
    bytes: policy_body calls a longer one truncated), or None when it is not text."""
    if len(body) > INSPECTED_BODY or b"\x00" in body:
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _loose_json(body: bytes) -> bool:
    """Whether some JSON parser reads `body` (a repeated name, NaN, a BOM, UTF-16)."""
    try:
        json.loads(body)
    except (ValueError, RecursionError):
        return False
    return True


def _charset(content_type: str) -> str:
    """The charset parameter of a Content-Type (lower case, unquoted), or ""."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return ""


def json_body(content_type: str, body: bytes) -> Any:
    """A request body whose media type names JSON, as every parser reads it, or
    BadRequest (400, nothing decided or forwarded). Refused: a name repeated in an object
    (parsers keep the first, the last, or fail: Python's json the last, Go's and
    Jackson's settings differ), text that is not UTF-8 or opens with a BOM (RFC 8259
    §8.1; Python's json.loads(bytes), Jackson and body-parser read UTF-16/32 or skip the
    BOM, the policy's re-reading would not), a charset other than UTF-8, text that is not
    JSON (NaN, Infinity), a number the policy's input (doubles) cannot hold exactly (1e400,
    an integer past 2**53), a lone surrogate, nesting deeper than the parser goes."""
    if _charset(content_type) not in ("", "utf-8", "utf8"):
        raise BadRequest("a JSON body must be UTF-8")
    if body.startswith(b"\xef\xbb\xbf"):
        raise BadRequest("a JSON body may not open with a byte order mark")
    try:
        value = strict_json.loads(body.decode("utf-8"))
        # a lone surrogate (\ud800) is no text in UTF-8: the policy's input cannot hold it
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeError:
        raise BadRequest("a JSON body must be UTF-8 text") from None
    except strict_json.RepeatedName:
        raise BadRequest("a name repeated in a JSON object of the body") from None
    except strict_json.Inexact:
        raise BadRequest("a number in the JSON body the policy cannot read exactly") from None
    except (ValueError, RecursionError):
        raise BadRequest("a body typed as JSON that is not JSON") from None
    return value


def ndjson_body(content_type: str, body: bytes) -> list[Any] | None:
    """A body of newline-delimited JSON (strict_json.lines_of) as the list of its lines'
    values, each as every parser reads it (json_body: a line that is not JSON, or that
    parsers read differently, refuses the body), or None when it is not so written. What a
    parser reading the first value alone acts on is shown too (more, never less)."""
    lines = strict_json.lines_of(body)
    if lines is None:
        return None
    try:
        return [json_body(content_type, line) for line in lines]
    except BadRequest:
        return None


def names_method(body: bytes, seen: Any, form: bool = False) -> bool:
    """A body that may name a method the policy was not shown (http.rego judges the
    method a `_method` field names). A body the policy was not shown (multipart, another
    type, too large or not valid): `_method` in its bytes, plain, percent- or
    JSON-escaped, or a multipart field whose name a framework reads as `_method`. A form
    the policy sees: a pair it shows under another name that a framework reads as
    `_method` (hides_method). A JSON body the policy sees shows its own `_method`."""
    if isinstance(seen, list):
        # (lines of JSON, or a JSON array: a parser reading the first value alone, or a
        # framework reading each object of a batch, may read an object's `_method`,
        # which the policy reads in an object body only)
        return any(
            isinstance(item, dict) and any(reads_as_method(str(key)) for key in item)
            for item in seen
        )
    if seen is not None:
        return form and hides_method(body.decode("latin-1"))
    if form and any(
        reads_as_method(pair_name(pair)) for pair in re.split(r"[&;]", body.decode("latin-1"))
    ):
        return True  # a form too large to show, with a pair read as `_method`
    if _NAMES_METHOD.search(body):
        return True
    try:
        # (a part's name in RFC 2231's forms: `name*0="_me"; name*1="thod"`)
        extended = request_words.disposition_names(body.decode("latin-1"))
    except request_words.Unread:
        return True
    if any(reads_as_method(name) for name in extended):
        return True
    return any(
        # (a quoted name's quoted-pairs undone, as busboy reads them: `"_meth\\od"`)
        reads_as_method(re.sub(r"\\(.)", r"\1", name.decode("latin-1").strip('"')))
        for name in re.findall(rb'(?i)\bname\s*=\s*("(?:[^"\\\r\n]|\\.)*"|[^";\r\n]*)', body)
    )


# the names of a query's or a form's field naming the method a framework acts on, as
# http.rego reads them (lower case, `_` for `-`): `_method` (Rails, Laravel, Symfony,
# Spring), `X-HTTP-Method-Override` (ASP.NET MVC reads a POST's form and query string as
# the header, Play 1 the raw query string), `X-HTTP-Method`, `X-Method-Override`,
# `_HttpMethod` (Salesforce's REST API)
METHOD_FIELDS = frozenset(
    {"_method", "x_http_method_override", "x_http_method", "x_method_override", "_httpmethod"}
)
# one of those names in a body's bytes, plain, percent- or JSON-escaped, in any spelling
_SEP = rb"(?:[-_. +]|%2d|%5f|%2e|%20|\\u002d|\\u005f)"
_NAMES_METHOD = re.compile(
    rb"(?i)(?:_|%5f|\\u005f)(?:http)?method|x" + _SEP + rb"?http" + _SEP + rb"?method"
    rb"|method" + _SEP + rb"?override"
)
# Play 1 finds a method override anywhere in the raw query string (its router's pattern
# `^.*x-http-method-override=(...).*$`), in another pair's name or value too
_PLAY_OVERRIDE = re.compile(r"(?i)x-http-method-override=")


def shown_as_method(name: str) -> bool:
    """Whether the policy judges a query or form field so named (as sent, decoded) as the
    method it names (http.rego's http_override_fields)."""
    return name.lower().replace("-", "_") in METHOD_FIELDS


# a request a batch carries inside a body, which the upstream carries out as its own:
# a JSON object naming a method beside a URL (Microsoft Graph's and Facebook's batches,
# Salesforce's composite), or a request line in text (OData's and Google's multipart
# batches, application/http parts); OData's MERGE is its PATCH
_EMBEDDED_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "MERGE"}
)
_EMBEDDED_URL_KEYS = frozenset({"url", "relative_url", "relativeurl", "path", "uri", "href"})
_REQUEST_LINE = re.compile(
    rb"(?im)^[ \t]*(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS|TRACE|CONNECT|MERGE)[ \t]+\S+[ \t]+HTTP/"
)
MAX_EMBEDDED_WALK = 100_000  # JSON values looked at for embedded requests
_JSON_METHOD = re.compile(
    rb'(?i)"method"\s*:\s*"\s*(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS|TRACE|CONNECT|MERGE)\s*"'
)


def embedded_methods(body: bytes, seen: Any, media: str = "") -> list[str]:
    """The methods of the requests a body carries for the upstream to carry out (a batch),
    sorted: http.rego judges each as a method of the request. `seen`: the body as the
    policy is shown it (JSON, or a form whose values may be JSON text), else None;
    `media`: its media type (request lines are read in multipart and application/http
    bodies, the batches that carry them)."""
    found: set[str] = set()
    if media.startswith("multipart/") or media == "application/http":
        for match in _REQUEST_LINE.finditer(body):
            found.add(match.group(1).decode("ascii").upper())
    value = seen
    if value is None and body.lstrip()[:1] in (b"{", b"["):
        try:
            value = json.loads(body)
        except (ValueError, RecursionError):
            # (lines of JSON: _bulk's action lines, each a method: carried.py)
            value = carried.ndjson_values(body)
            if value is None:  # (too many lines, or none of JSON: read by their bytes)
                found.update(carried.unbounded_methods(body))
    documents = value if isinstance(value, list) else [value]
    found.update(m for d in documents if (m := carried.action_method(d)))
    stack: list[Any] = [value]
    walked = 0
    while stack and walked < MAX_EMBEDDED_WALK:
        item = stack.pop()
        walked += 1
        if isinstance(item, dict):
            # (an operation of a JSON:API, JSON Patch or SCIM body: carried.py)
            found.update(carried.object_methods(item))
            keys = {str(k).lower(): v for k, v in item.items()}
            method = keys.get("method")
            if (
                isinstance(method, str)
                and method.strip().upper() in _EMBEDDED_METHODS
                and _EMBEDDED_URL_KEYS & keys.keys()
            ):
                found.add(method.strip().upper())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and item.lstrip()[:1] in ("{", "[") and len(item) > 2:
            try:  # (a form field holding JSON: Facebook's `batch=[...]`)
                stack.append(json.loads(item))
            except (ValueError, RecursionError):
                pass
    if stack:
        # too many values to walk: every `"method": "<a method>"` counts
        found.update(m.group(1).decode("ascii").upper() for m in _JSON_METHOD.finditer(body))
        found.update(carried.unbounded_methods(body))
    return sorted("PATCH" if m == "MERGE" else m for m in found)


def reads_as_method(name: str) -> bool:
    """Whether a parameter's name (percent-decoded) names the method to some framework
    (METHOD_FIELDS): PHP (Laravel, Symfony) strips leading spaces and reads `.` and ` ` as
    `_`, and `_method[x]` is `_method` made an array; a name read as a C string ends at a
    NUL (`_method%00`); case is ignored (more, never less)."""
    folded = name.split("\x00", 1)[0].lstrip(" ").lower()
    for sep in (".", " ", "-"):
        folded = folded.replace(sep, "_")
    return folded.split("[", 1)[0] in METHOD_FIELDS


def hides_method(text: str) -> bool:
    """Form-encoded text (a query, a form body) with a pair some framework reads as a
    method's field that the policy's view (pairs split on `&`, names as sent) does not
    show as one: a `;`-separated pair (Rack 2 splits on both), a name PHP rewrites
    (`.method`, `%20_method`, `_method[]`), or `x-http-method-override=` anywhere but at
    a pair's start (Play 1 reads it inside another pair)."""
    lowered = text.lower()
    if "method" not in lowered:
        return False
    if any(m.start() and text[m.start() - 1] != "&" for m in _PLAY_OVERRIDE.finditer(text)):
        return True
    shown = {pair for pair in text.split("&") if shown_as_method(pair_name(pair))}
    return any(
        reads_as_method(pair_name(pair)) and pair not in shown for pair in re.split(r"[&;]", text)
    )


def pair_name(pair: str) -> str:
    """The name of one `name=value` pair of a query or form, decoded (`+` is a space)."""
    return unquote(pair.partition("=")[0].replace("+", " "), errors="replace")


def inspected_body(head: Head, body: bytes) -> tuple[bytes, bool]:
    """(the request body as the upstream's framework reads it, whether it could be read):
    a body sent with Content-Encoding gzip or deflate decoded (up to INSPECTED_CODED
    bytes: past that, or in a coding the proxy cannot undo, it is not read)."""
    values = head.fields.get("content-encoding")
    applied = codings(list(values)) if values else []
    if not body or not applied:
        return body, True
    try:
        decoded = decode_whole(applied, body, INSPECTED_CODED)
    except Undecodable:
        return b"", False
    return decoded, len(decoded) <= INSPECTED_CODED


def policy_headers(head: Head) -> dict[str, str]:
    """The headers the policy sees, several values joined with ", " (as Head.get). A name
    spelled with `_` for `-` counts as that header: CGI, WSGI and PHP read both as the one
    HTTP_X_HTTP_METHOD_OVERRIDE, so `X_HTTP_Method_Override: DELETE` is an override. Beside
    POLICY_HEADERS, any header whose name holds `method` and whose value names a method."""
    fields = head.fields
    if any("_" in name for name in fields):
        merged: dict[str, list[str]] = {}
        for name, values in fields.items():
            merged.setdefault(name.replace("_", "-"), []).extend(values)
        fields = merged
    out: dict[str, str] = {}
    for name in POLICY_HEADERS:
        found = fields.get(name)
        if found:
            out[name] = found[0] if len(found) == 1 else ", ".join(found)
    for name, values in fields.items():
        # any other naming a method: the one a framework may act on (`Method-Override`,
        # a recipe's own name); http.rego judges one whose value names a method so
        if "method" in name and name not in out and values:
            value = ", ".join(values)
            if any(piece.strip().upper() in _METHOD_NAMES for piece in value.split(",")):
                out[name] = value
    return out


# what http.rego's http_method_names holds: a value naming one is an override
_METHOD_NAMES = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
