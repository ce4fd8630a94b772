"""The words of a request body the policy is not shown as a value: what http.rego reads
for a masked field's name in a body past INSPECTED_BODY, or of a type it is not shown
(multipart, XML, text), without the body itself going to the PDP.

A body is read as its upstream's parser may read it: JSON as its keys and strings
(escapes undone: `\\u0070hone`), other text as written and with its escapes undone
(JSON's `\\uXXXX`, XML/HTML character references `&#112;hone`, percent-encoding
`%70hone`, full-width letters by NFKC; a multipart body's parts under base64 or
quoted-printable, and RFC 2047 words in its headers, decoded too; a JSON string that is
base64 as a whole and decodes to text, read as that text). Each text is split
into words as http.rego and bodies.name_words split a name (at what is not a letter or
digit, and where camelCase changes case), lower-cased; the policy gets the distinct runs
of one to three words (`card number`), so a masked field of up to three words is named
when its words are there in a row. A body the proxy cannot read this way is told as
unread, with why: binary (not UTF-8 text, or a NUL outside multipart; `undecoded` when
typed as text or untyped; `structured` whatever its bytes when typed as a binary data
format, CBOR, MessagePack, protobuf, BSON, Avro, Smile, Ion, Thrift: a document whose
names and strings sit behind length prefixes, a search as well as a record, never a file
upload), or too many distinct words to hand on (MAX_RUNS,
MAX_RUN_CHARS) or to read (MAX_WORDS_READ: every reading of the body counted, so a body
of many escapes costs a bounded time to read); http.rego decides what an unread body
needs. Reading a large body takes CPU time (up to about a second): the proxy does it off
its event loop (proxy.READ_ON_LOOP)."""

from __future__ import annotations

import base64
import html
import json
import quopri
import re
import unicodedata
from collections.abc import Iterable, Iterator
from email.header import decode_header, make_header
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import Any
from urllib.parse import unquote_plus

MAX_RUN_WORDS = 3  # a run of words handed on is one to this many words long
MAX_RUNS = 16384  # distinct runs handed on at most: past that, the body counts as unread
MAX_RUN_CHARS = 256 * 1024  # their characters at most, likewise
LONGEST_RUN = 64  # a run longer than this names no field (and is not handed on)
# words read at most, over every reading of a body (as written, each escape undone): past
# that the body counts as unread (size). 8 MiB of `a&amp;%41\u0041` took 14 s of CPU
MAX_WORDS_READ = 2_000_000

# a word as http.rego's http_spaced_words splits one (at what is not a letter or digit,
# where camelCase changes case, where letters meet digits): `PHONENumber` PHONE Number
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# a part's body under Content-Transfer-Encoding: base64, an RFC 2047 word in base64
_BASE64_PART = re.compile(
    rb"(?is)content-transfer-encoding:[ \t]*base64[^\n]*\n(?:[^\r\n][^\n]*\n)*\r?\n"
    rb"(.*?)(?:\r?\n--|$)"
)
_BASE64_WORD = re.compile(rb"=\?[^?\s]*\?[bB]\?([A-Za-z0-9+/=]*)\?=")
# base64 or base64url as a whole (white space left out), as an API's `?filter=` or a
# JSON field carrying a document may be: a text's decoding is read too (coded_runs)
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/]+={0,2}|[A-Za-z0-9_-]+={0,2}")
_SPACE = re.compile(r"\s+")
MIN_CODED = 6  # characters: `cGhvbmU` is `phone`
# a run of base64 letters in text (6 or more), and how many a body may hold to be read
_CODED_RUN = re.compile(r"[A-Za-z0-9+/_-]{6,}={0,2}")
MAX_CODED_RUNS = 65536
# media types of binary data formats (application/cbor, application/x-msgpack,
# application/x-protobuf, application/vnd.google.protobuf, application/grpc,
# application/bson, avro/binary, application/x-jackson-smile, application/ion,
# application/x-thrift): what they carry is a document, not a file
_STRUCTURED_TYPES = (
    "cbor", "msgpack", "messagepack", "protobuf", "grpc", "bson", "avro", "smile", "ion",
    "thrift", "capnp", "flatbuffers",
)  # fmt: skip
_TEXT_TYPES = ("text/", "json", "xml", "form-urlencoded", "yaml", "javascript", "graphql", "csv")
_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
# a multipart part's Content-Disposition (its continuation lines unfolded first, as Go's
# textproto reads them) that gives a parameter in RFC 2231's forms (`name*=`, `name*0=`)
# or as an RFC 2047 encoded word (`name="=?utf-8?B?X21ldGhvZA==?="`)
_DISPOSITION = re.compile(r"(?im)^content-disposition[ \t]*:([^\r\n]*(?:\*|=\?)[^\r\n]*)")
_FOLDED = re.compile(r"\r?\n[ \t]+")
# such headers' characters read in one body, and in one (Python's email splits a header's
# parameters in time quadratic in its length): past that, unread (size)
MAX_DISPOSITION_CHARS = 64 * 1024
MAX_DISPOSITION_LINE = 4096


class Unread(Exception):
    """A body the proxy could not read for words: `kind` (binary, size), and why."""

    def __init__(self, kind: str, why: str) -> None:
        super().__init__(why)
        self.kind = kind
        self.why = why


# charsets whose text holds every ASCII letter as that byte and no other way (what a
# body read as UTF-8 shows as a word, its upstream reads as that word): any other a body
# declares (UTF-7's `+AHA-hone` is `phone`, EBCDIC, UTF-16) makes its words unread
_ASCII_CHARSETS = frozenset(
    {"utf-8", "utf8", "us-ascii", "ascii", "latin1", "latin-1", "iso-8859-1", "l1"}
    | {f"iso-8859-{n}" for n in range(2, 17)}
    | {f"windows-{n}" for n in range(1250, 1259)}
    | {f"cp{n}" for n in range(1250, 1259)}
    | {"shift_jis", "sjis", "windows-31j", "cp932", "euc-jp", "euc-kr", "gb2312", "gbk"}
    | {"gb18030", "big5", "koi8-r", "koi8-u", "shift-jis", "x-sjis", "euc_jp", "ms932"}
)
_CHARSET_PARAM = re.compile(rb"""charset\*?\s*=\s*["']?([^"';\s]*)""", re.I)
_XML_ENCODING = re.compile(rb"""\A\s*<\?xml[^>]*?encoding\s*=\s*["']([^"']*)["']""", re.I)
_CHARSET_FIELD = re.compile(
    rb"""(?is)name\s*=\s*["']?_charset_["']?[^\n]*\n(?:[^\r\n][^\n]*\n)*\r?\n([^\r\n]*)"""
)


def foreign_charset(content_type: str, body: bytes) -> str | None:
    """A charset other than an ASCII one (_ASCII_CHARSETS) that a request body declares,
    and by which its upstream may read it: its Content-Type's `charset`, an XML
    declaration's `encoding`, a multipart part's `charset` or `_charset_` field (HTML
    §4.10.22.7, which Tomcat and Sling read); None when it declares none other."""
    declared = _CHARSET_PARAM.findall(content_type.encode("latin-1", "replace"))
    declared += _XML_ENCODING.findall(body[:1024])
    if content_type.lower().lstrip().startswith("multipart/"):
        declared += _CHARSET_PARAM.findall(body)
        declared += _CHARSET_FIELD.findall(body)
    for charset in declared:
        name = charset.decode("latin-1").strip().lower()
        if name and name not in _ASCII_CHARSETS:
            return name
    return None


def charset_field(params: Any) -> str | None:
    """A charset other than an ASCII one named by a `_charset_` parameter (in any case)
    of a query's or a form's name → value: HTML's field naming the charset of the
    others (§4.10.22.7), which Sling and Tomcat read their names and values in
    (`?%2BAHA-hone=555&_charset_=utf-7` is `phone=555` in UTF-7); None when none."""
    if not isinstance(params, dict):
        return None
    for key, value in params.items():
        if isinstance(key, str) and key.strip().lower() == "_charset_":
            for name in value if isinstance(value, list) else [value]:
                name = str(name).strip().lower()
                if name not in _ASCII_CHARSETS:
                    return name or "(empty)"
    return None


def body_runs(media_type: str, body: bytes) -> list[str]:
    """The distinct runs of one to MAX_RUN_WORDS words of `body` (decoded already, if
    it was sent coded), sorted; or Unread."""
    multipart = media_type.startswith("multipart/")
    if multipart:
        # parts may be files: a byte outside ASCII is no letter of a word either way
        text = body.decode("latin-1")
    elif _structured(media_type):
        # a body typed as binary data (a CBOR search, a protobuf filter): its names sit
        # behind length prefixes that may read as letters (CBOR's `ephone`), not read
        raise Unread("structured", f"a body in a binary data format ({media_type})")
    else:
        # (text in another encoding, UTF-16 JSON, is read by Jackson, json.loads: a body
        # typed as text, or untyped, that is not UTF-8 is no upload of a binary file)
        kind = "undecoded" if _texty(media_type) else "binary"
        if b"\x00" in body:
            raise Unread(kind, "a body holding NUL bytes")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Unread(kind, "a body that is not UTF-8 text") from None
    return _collect(_texts(text, multipart), "a body with too many distinct words to read")


def coded_runs(texts: Iterator[str] | list[str]) -> list[str]:
    """The distinct runs of words of those of `texts` that are base64 as a whole and
    decode to text (a query's names and values, a path's segments, the strings of a body
    the policy is shown as a value: an upstream decoding `?filter=eyJwaG9uZSI6...` acts on
    `{"phone": ...}`), read as a body is (JSON keys and strings, escapes undone, base64
    inside decoded again); or Unread (size)."""
    pieces = (
        piece
        for text in texts
        if (decoded := decoded_base64(text)) is not None
        for piece in _texts(decoded)
    )
    return _collect(pieces, "base64 text with too many distinct words to read")


def _collect(pieces: Iterable[str], too_many: str) -> list[str]:
    """The distinct runs of words of `pieces` (texts read one after another, within one
    MAX_WORDS_READ budget), sorted; Unread (size, `too_many`) past MAX_RUNS runs or
    MAX_RUN_CHARS characters of them."""
    runs: set[str] = set()
    size = 0
    budget = [MAX_WORDS_READ]
    for piece in pieces:
        for found in _runs(piece, budget):
            new = found - runs
            runs |= new
            size += sum(map(len, new))
            if len(runs) > MAX_RUNS or size > MAX_RUN_CHARS:
                raise Unread("size", too_many)
    return sorted(runs)


def decoded_base64(text: str) -> str | None:
    """`text` decoded when it is base64 or base64url as a whole (padded or not, white
    space left out) of UTF-8 text without control characters but white space; else
    None."""
    if len(text) < MIN_CODED:
        return None
    squeezed = _SPACE.sub("", text) if not text.isalnum() else text
    if len(squeezed) < MIN_CODED or not _BASE64_TEXT.fullmatch(squeezed):
        return None
    bare = squeezed.rstrip("=")
    if len(bare) % 4 == 1:
        return None
    try:
        data = base64.b64decode(
            bare.replace("-", "+").replace("_", "/") + "=" * (-len(bare) % 4), validate=True
        )
        decoded = data.decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    if any(c < " " and c not in "\t\n\r" for c in decoded) or "\x7f" in decoded:
        return None
    return decoded


def _structured(media_type: str) -> bool:
    """Whether a media type names a binary data format (a document, not a file)."""
    parts = set(re.split(r"[/+.;\-]", media_type))
    return any(kind in parts or f"x-{kind}" in media_type for kind in _STRUCTURED_TYPES)


def _texty(media_type: str) -> bool:
    """Whether a media type (or none) says text a parser reads as words."""
    return not media_type or any(t in media_type for t in _TEXT_TYPES)


def _texts(text: str, multipart: bool = False) -> Iterator[str]:
    """The texts of a body to split into words: a JSON value's keys and strings, or the
    text as written and with each kind of escape undone."""
    if text.lstrip()[:1] in ("{", "["):
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            pass
        else:
            yield from _json_texts(value)
            return
    yield text
    for undone in _undoings(text, multipart):
        if undone != text:
            yield undone
            if not unicodedata.is_normalized("NFKC", undone):
                yield unicodedata.normalize("NFKC", undone)
    if not unicodedata.is_normalized("NFKC", text):
        yield unicodedata.normalize("NFKC", text)


def _undoings(text: str, multipart: bool) -> Iterator[str]:
    """`text` with each kind of escape undone, one at a time (made only when read: the
    reading may stop at MAX_WORDS_READ), and only where the text holds the escape."""
    if "\\u" in text:
        yield _JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    if "&" in text:
        yield html.unescape(text)
    if "%" in text or "+" in text:
        yield unquote_plus(text, errors="replace")
    if multipart:
        yield from _part_codings(text)
    coded = _coded_runs_in(text)
    if coded:
        yield coded


def _coded_runs_in(text: str) -> str:
    """The runs of base64 (or base64url) letters in a text (an XML element's
    base64Binary, `q=cGhvbmU6NTU1MCo=` in a line) that decode to text, decoded, one a
    line; at most MAX_CODED_RUNS tried (past that, Unread: size). A run must look coded:
    a digit, `+`, `/`, `=`, or a capital after its first letter (prose words do not)."""
    decoded = []
    tried = 0
    for match in _CODED_RUN.finditer(text):
        run = match.group()
        if run[1:].islower() and run.isalpha():
            continue
        tried += 1
        if tried > MAX_CODED_RUNS:
            raise Unread("size", "a body with too many base64-like runs to read")
        found = decoded_base64(run)
        if found is not None:
            decoded.append(found)
    return "\n".join(decoded)


def disposition_names(text: str) -> list[str]:
    """The parameters (a part's name, its file name) that a multipart body's
    Content-Disposition headers give in RFC 2231's forms, as the parsers reading them read
    them (Go's mime.ParseMediaType, Werkzeug's parse_options_header, busboy, Python's
    email): continuations joined (`name*0="_me"; name*1="thod"`), extended values decoded
    (`name*=UTF-8''%5Fme%74hod`), encoded words decoded (Python's email, mailparser):
    `_method` each, which the text as written names in none of its readings. Past
    MAX_DISPOSITION_CHARS of such headers, or one of MAX_DISPOSITION_LINE, Unread (size)."""
    names: list[str] = []
    if "*" not in text and "=?" not in text:
        return names
    read = 0
    for match in _DISPOSITION.finditer(_FOLDED.sub(" ", text)):
        read += len(match.group(1))
        if read > MAX_DISPOSITION_CHARS or len(match.group(1)) > MAX_DISPOSITION_LINE:
            raise Unread("size", "a body with Content-Disposition headers too long to read")
        header = Message()
        try:
            header["content-disposition"] = match.group(1).strip()
            params = header.get_params(header="content-disposition", failobj=[])[1:]
            for _, value in params:
                name = str(collapse_rfc2231_value(value))
                names.append(str(make_header(decode_header(name))) if "=?" in name else name)
        except (ValueError, LookupError, TypeError, UnicodeError, IndexError):
            names.append(match.group(1))  # (read as written, escapes undone elsewhere)
    return names


def _part_codings(text: str) -> list[str]:
    """A multipart body with its parts' transfer codings undone, as some parsers do (Go's
    mime/multipart quoted-printable, Python's email base64 and RFC 2047 encoded words in a
    part's name): every run of base64 letters of a part decoded, and the whole read as
    quoted-printable."""
    raw = text.encode("latin-1")
    decoded = [quopri.decodestring(raw).decode("latin-1")]
    pieces = []
    for run in _BASE64_PART.findall(raw) + _BASE64_WORD.findall(raw):
        try:
            pieces.append(base64.b64decode(re.sub(rb"\s+", b"", run) + b"==").decode("latin-1"))
        except ValueError:
            continue
    decoded.append("\n".join(pieces))
    decoded.append("\n".join(disposition_names(text)))
    return decoded


def _json_texts(value: Any) -> Iterator[str]:
    """Every key and string of a JSON value, however deep (without recursion)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
            if not unicodedata.is_normalized("NFKC", item):
                yield unicodedata.normalize("NFKC", item)
            decoded = decoded_base64(item)
            if decoded is not None:
                # (a document carried as base64: read as a body is, its own base64 too)
                yield from _texts(decoded)
        elif isinstance(item, dict):
            for key, inner in item.items():
                stack.append(key)
                stack.append(inner)
        elif isinstance(item, list):
            stack.extend(item)


def words(text: str) -> list[str]:
    """`text`'s words as http.rego's http_spaced_words gives them."""
    return [w.lower() for w in _WORD.findall(text)]


def _runs(text: str, budget: list[int]) -> Iterator[set[str]]:
    """The distinct runs of one to MAX_RUN_WORDS words of `text`, none past LONGEST_RUN,
    a slice of the text's words at a time (so that a body of too many stops early);
    `budget`: the words left to read (Unread once spent)."""
    step = 8192
    found = _WORD.findall(text)
    budget[0] -= len(found)
    if budget[0] < 0:
        raise Unread("size", "a body with too many words to read")
    found = [w.lower() for w in found if len(w) <= LONGEST_RUN]
    for start in range(0, max(len(found), 1), step):
        part = found[start : start + step + MAX_RUN_WORDS - 1]
        runs = set(part[:step])
        for n in range(2, MAX_RUN_WORDS + 1):
            # (distinct tuples first: joined once each)
            tuples = set(zip(*(part[i:] for i in range(n)), strict=False))
            runs.update(" ".join(t) for t in tuples)
        yield {r for r in runs if len(r) <= LONGEST_RUN}
