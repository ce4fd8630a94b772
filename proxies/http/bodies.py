"""Response bodies under a `mask` verdict: JSON masked per document, streams per record.

Owns how a body's bytes become masked bytes, with no IO: a JSON document
(`application/json`, `*+json`) is gathered up to a bound and masked whole (the proxy then
fixes Content-Length); newline-delimited JSON (`application/x-ndjson`, `jsonl`) is masked
line by line and a `text/event-stream` event by event as they pass, so a stream is never
held whole (lines of JSON typed as one document, Elasticsearch's, as NDJSON). Other text
(HTML, CSV, TSV, XML, plain: a representation an agent may ask for instead of JSON) is
masked line by line by the detectors, CSV and TSV by their columns too (a first line is
names only as far as it can be told: the cells under it no masked name heads are masked
as rows nothing names are, unless the Content-Type says `header=present`); text in a
charset they cannot read (UTF-16) is `unreadable`, and refused. An answer, a line or an
element's text that is one bare value (`5550100`) is masked as a cell nothing names is;
text is read as a browser renders it too (a value split by tags or emphasis), and a
stream's events or JSON lines whose texts a client puts together (an LLM's tokens, the
same string of one record after another) are held while a value may go on across them,
at most HELD_SECONDS (due). Field rules name JSON keys anywhere in a
document (`email`, `user.email`) or a JSON pointer (`/user/email`: masked wherever that
trail of keys ends, array indices ignored — more, never less); detectors run over every
other string, and over values split across siblings read together (a card as four
columns: values.masked_split_values). What cannot be masked (a JSON body that does not
parse or outgrows the bound, a record too large, text holding NUL bytes: UTF-16 or
binary under a text type) raises `Unmaskable`: the proxy fails closed. Under a mask,
only what the masker reads is forwarded (`answer_kind`, an allow-list): a body without a
Content-Type, with more than one, or of a type the masker does not read (binary,
multipart, unknown) is `withheld`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import csv
import functools
import html
import io
import itertools
import json
import re
import string
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import unquote

from portcullis.masking import (
    Masker,
    MaskingError,
    ScanBudgetExceeded,
    field_words,
    name_words,
    scan_budget,
    worded_field,
)
from portcullis.tails import tail_start
from portcullis.verdict import MaskRule
from proxies.http.composites import is_composite, masked_composite, masked_in_prose
from proxies.http.mcp_columns import AlignedRows, Ambiguous
from proxies.http.packed import TAR_SNIFFED, Unopenable, packed_kind, unpacked
from proxies.http.table_memory import TableView
from proxies.postgres.values import SPLIT_DETECTORS, cut_as_split, masked_lines, masked_split_values
from proxies.ssh.stream import mask_shown

MAX_MASKED_DOCUMENT = 8 * 1024 * 1024
MAX_RECORD = 1024 * 1024  # one NDJSON line or SSE event


class Unmaskable(Exception):
    """The body cannot be masked as the verdict says; safe to show the client."""


# the CPU time one call masking an answer's bytes may take (SCAN_SECONDS, and a second
# for each SCAN_BYTES_PER_SECOND it reads; masking.scan_budget): an upstream's answer
# the detectors cannot read in it is withheld, not passed on unread. Generous: ordinary
# JSON and text are masked at 0.5-2 MB/s, and what was read slower than this (`1 1 1
# ...`: each digit a card's possible start, 13 s a MiB) is now read as fast
SCAN_SECONDS = 10.0
SCAN_BYTES_PER_SECOND = 64 * 1024


@contextlib.contextmanager
def _scanned(size: int) -> Iterator[None]:
    """Within: the detectors read `size` bytes within the budget, else Unmaskable."""
    try:
        with scan_budget(SCAN_SECONDS + size / SCAN_BYTES_PER_SECOND):
            yield
    except ScanBudgetExceeded as exc:
        raise Unmaskable(f"the response could not be masked in the time allowed ({exc})") from None


def masker_for(rules: Sequence[MaskRule], hash_key: bytes) -> Masker:
    """A Masker whose field rules given as JSON pointers (RFC 6901) are key trails."""
    return Masker([_pointer_rule(r) for r in rules], hash_key)


def _pointer_rule(rule: MaskRule) -> MaskRule:
    if not rule.field.startswith("/"):
        return rule
    keys = [k.replace("~1", "/").replace("~0", "~") for k in rule.field[1:].split("/")]
    keys = [k for k in keys if k and not k.isdigit() and k != "-"]
    return replace(rule, field=".".join(keys)) if keys else rule


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


# text an agent may ask an API for instead of JSON (`?format=csv`, `Accept: text/html`):
# masked line by line by the detectors, so another representation is no way around a mask
_TEXT_TYPES = frozenset(
    {
        "application/xml",
        "application/javascript",
        "application/x-www-form-urlencoded",
        "application/yaml",
        "application/x-yaml",
        "application/csv",
        "application/graphql-response+text",
    }
)
# a media type naming JSON that the cases above do not know: never passed as binary
_JSON_NAMED = re.compile(r"json", re.I)
_JSON_DOCUMENT = re.compile(r"^application/(?:x-)?(?:[a-z0-9.\-]+[.\-])?json(?:-[0-9.]+)?$")
# tab-separated values (IANA's text/tab-separated-values: no quoting, a cell holds no tab)
TSV_TYPES = frozenset({"text/tab-separated-values", "text/tsv", "application/tsv"})
_READABLE_CHARSETS = frozenset({"", "utf-8", "utf8", "us-ascii", "ascii"})
_CHARSET = re.compile(r";\s*charset\*?\s*=\s*\"?([^\";\s]*)", re.I)


def body_kind(content_type: str | None) -> str:
    """json | lines | sse | "" (passes through: binary, or no Content-Type) for a
    response's Content-Type; `unreadable` for text in a charset the detectors cannot read
    (UTF-16 would carry every value past them), which the proxy refuses."""
    kind = media_type(content_type)
    if kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json")):
        found = "json"
    elif kind.startswith("text/") and _JSON_DOCUMENT.search("application/" + kind[5:]):
        # text/json, text/x-json: a JSON document by its name, masked whole as one (read
        # as lines, a member whose value is on the next line passed)
        found = "json"
    elif kind == "text/event-stream":
        found = "sse"
    elif kind in (
        "application/x-ndjson",
        "application/jsonl",
        "application/jsonlines",
        "application/x-jsonlines",
    ):
        found = "lines"
    elif kind in ("text/csv", "application/csv") or kind in TSV_TYPES:
        found = "csv"  # lines, whose first names the columns (TSV: parted by tabs)
    elif kind.startswith("text/") or kind in _TEXT_TYPES or kind.endswith("+xml"):
        found = "lines"  # (a line that is not JSON is masked by the detectors)
    elif _JSON_NAMED.search(kind):
        # JSON by another name (application/x-amz-json-1.1, x-json): a document, masked
        # whole (one that does not parse is refused); json-seq, jsonx and the like: lines
        found = "json" if _JSON_DOCUMENT.search(kind) else "lines"
    else:
        return ""
    # every charset named, not the first alone: clients differ on which of two they take
    # (Python's requests the last: `charset=utf-8; charset=cp037` is EBCDIC to it)
    charsets = _CHARSET.findall(content_type or "")
    if any(charset.lower() not in _READABLE_CHARSETS for charset in charsets):
        return "unreadable"
    return found


_HEADER_PARAMETER = re.compile(r";\s*header\s*=\s*\"?([a-z]*)", re.I)


def csv_header(content_types: list[str]) -> bool | None:
    """What a CSV answer's Content-Type says of its first line (RFC 4180, RFC 7111's
    `header=present` or `header=absent`): True, False, or None when it says neither
    (or, said more than once, both)."""
    said = {
        found.lower()
        for content_type in content_types
        for found in _HEADER_PARAMETER.findall(content_type)
    }
    if said == {"present"}:
        return True
    if said == {"absent"}:
        return False
    return None


WITHHELD = "withheld"
REDACTED_VALUE = "[REDACTED]"  # a header value whose escapes hide what the mask hides


def answer_kind(content_types: list[str]) -> tuple[str, str]:
    """(body_kind, media type) of an answer to be masked, given its Content-Type field
    values: `withheld` (any body refused) when it has none, more than one that differ
    (the client may read the other), or one body_kind passes as binary."""
    types = {media_type(v) for v in content_types}
    if len(types) != 1:
        return WITHHELD, ", ".join(sorted(types)) or "none"
    (shown,) = types
    kind = body_kind(content_types[0])
    return (kind or WITHHELD), shown or "none"


def masked_headers(
    masker: Masker, headers: list[tuple[str, str]]
) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """A response's header fields under a mask: a field named as a rule names a JSON key
    (`X-Customer-Email`, `X-Phone`, `X-Phone-Number`: its name without `x-`, `-` read as
    `_`, or a rule's words among its words) masked by that rule, a value's parts a rule
    names masked (`phone=...` in a Location's query) and values given after a field's
    name in prose (`199 - "phone 5550100"`), every value read by the detectors (a
    Location, a Content-Disposition's filename, a Link). Counts as mask_json's."""
    out: list[tuple[str, str]] = []
    counts: Counter[str] = Counter()
    values = BodyMask(masker, "lines")  # (a value's named parts: a Location's `phone=...`)
    for name, value in headers:
        if _name_holds_data(masker, values, name):
            # (`X-4111111111111111`, `X-Phone-5550100`: an object store's metadata key, a
            # name an API made of a value; a name cannot be masked and stay one: dropped)
            counts["detector:header_name"] += 1
            continue
        key = name.lower().removeprefix("x-").replace("-", "_")
        rule = key if masker.rule_for((key,)) is not None else values._field(name) or None
        if rule is None and (seen := as_read(name[2:] if key != name.lower() else name)):
            # (a name spelt out, `X-P-H-O-N-E`, as its reader reads it)
            rule = (values._label_field(seen) or None) if seen != name else None
        if rule is not None:
            masked, found = masker.mask_json({rule: value})
            counts.update(found)
            value = str(next(iter(masked.values())))
        else:
            before = sum(values.counts.values())
            seen = as_read(value)
            if seen != value:
                # (`p-h-o-n-e n-u-m-b-e-r 5550100` as its reader reads it: shown so when
                # that masks anything, as a text line is)
                shown = values._pairs_and_prose(seen)
                if sum(values.counts.values()) != before:
                    value = shown
            if "=" in value or ":" in value:
                value = values._inline(value)
            value = values._prose(value)  # (`Warning: 199 - "phone 5550100"`)
        text, found = masker.mask_text(value)
        if not found and not value.isascii():
            # (a card parted by soft hyphens, an e-mail with a fullwidth at sign, as its
            # reader reads it, and the bytes read as UTF-8 as most clients do: become
            # what the detectors make of that reading, or [REDACTED] when not ASCII)
            for seen in _header_readings(value):
                shown, found = masker.mask_text(seen)
                if found:
                    text = shown if shown.isascii() else REDACTED_VALUE
                    break
        counts.update({f"detector:{k}": v for k, v in found.items()})
        try:
            values._unescaped_clear(text)
            _coded_clear(masker, text)
        except Unmaskable:
            # (a Location's `/c/ann%40example.com`, a cookie's base64 JSON: what its reader
            # decodes is masked whole)
            text = REDACTED_VALUE
            counts["detector:escaped"] += 1
        out.append((name, text))
    counts.update(values.counts)
    return out, dict(counts)


def _name_holds_data(masker: Masker, values: BodyMask, name: str) -> bool:
    """Whether a header's name holds what the masks hide: read by the detectors as written
    and with its `-` and `_` as spaces (`X-123-45-6789`: what they find holds a digit or
    an `@`, or is a token of 16 characters or more), and as prose (`X Phone 5550100`: a
    value after a masked field's name), its counts left as they were."""
    spaced = name.replace("-", " ").replace("_", " ")
    if (len(name) > 16 or "@" in name or any(c.isdigit() for c in name)) and any(
        masker.mask_text(text)[1] for text in (name, spaced)
    ):
        return True
    counted = Counter(values.counts)
    shown = values._prose(spaced)
    values.counts.clear()
    values.counts.update(counted)
    return shown != spaced


def _header_readings(value: str) -> list[str]:
    """A header value (its bytes as Latin-1) as readers read it: as_read of it, and of
    its bytes as UTF-8 when they are (aiohttp, browsers, fetch read them so)."""
    readings = [as_read(value)]
    try:
        readings.append(as_read(value.encode("latin-1").decode("utf-8")))
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass
    return [r for r in dict.fromkeys(readings) if r != value]


# a line `name: value`, `name = value` or `"name": value,` (the name an identifier)
# (a name's letters any letters, fullwidth ones too, and a character may be escaped as its
# reader undoes it: `\\u0070assword`, `&#112;assword`, `pass%77ord`, which name_words
# reads as `password`)
_NAME_ESCAPE = (
    r"%[0-9A-Fa-f]{2}|\\u[0-9A-Fa-f]{4}|\\x[0-9A-Fa-f]{2}|&#[0-9]{1,7};|&#[xX][0-9A-Fa-f]{1,6};"
)
_KEYED = re.compile(
    rf"""(?P<lead>\s*(?:-\s+)?)(?P<q>["']?)(?P<key>(?:[^\W\d]|{_NAME_ESCAPE})(?:[\w.\-]|{_NAME_ESCAPE})*)"""
    r"""(?P=q)(?P<sep>\s*[:=]\s*)(?P<rest>.*)"""
)
# a URL's user and password (RFC 3986 §3.2.1, deprecated there, still written in
# connection strings: postgres://ann:hunter2@db/x)
_USERINFO = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#@:]*:)(?P<secret>[^\s/?#@]+)(?=@)"
)
# a run a header value may carry base64 in (a cookie's value, a query's, a token's part)
_CODED_RUN = re.compile(r"[A-Za-z0-9+/_\-]{12,}={0,6}")
_PERCENT_LAYERS = 3


def _coded_clear(masker: Masker, text: str) -> None:
    """Unmaskable when what a header value says decoded holds what the masks hide: its
    percent-escapes undone (up to three layers: `p=%7B%22phone%22%3A...`), its RFC 2047
    encoded words decoded (`=?utf-8?q?ann=40example.com?=`), the text of each base64 or
    hex run in it or in those (`session=eyJwaG9uZSI6...`, a JWT's payload), each
    read by the field rules and detectors as a line of text is (`{"phone": ...}`,
    `phone=...`). The value as written was masked already; a reader decoding it sees
    these."""
    views: list[str] = []
    seen = text
    for _ in range(_PERCENT_LAYERS):
        if "%" not in seen or (undone := unquote(seen)) == seen:
            break
        views.append(undone)
        seen = undone
    for written in [text, *views]:
        views.extend(_encoded_words(written))
    for written in [text, *views]:
        for run in _CODED_RUN.findall(written):  # (a JWT's parts apart: `.` ends a run)
            decoded = _base64_text(run)
            if decoded is not None:
                views.append(_UNPRINTABLE.sub(" ", decoded[0]))
            hexed = _hex_text(run)  # (text written as hex, read so in a body too)
            if hexed is not None:
                views.append(hexed)
            based = _base32_text(run)
            if based is not None:
                views.append(based)
    for view in views:
        body = BodyMask(masker, "lines")
        body.feed(view.encode("utf-8"))
        body.finish()
        if body.counts:
            raise Unmaskable("a header whose decoded value holds what the mask hides")


# an RFC 2047 encoded word (`=?utf-8?q?ann=40example.com?=`, `=?utf-16?b?...?=`): what a
# mail-minded reader (Python's email.header, a browser's filename) shows decoded
_ENCODED_WORD = re.compile(
    r"=\?(?P<charset>[^?\s*]+)(?:\*[^?\s]*)?\?(?P<coding>[BbQq])\?(?P<text>[^?\s]*)\?="
)
_Q_ESCAPE = re.compile(r"=([0-9A-Fa-f]{2})")
_ADJACENT_WORDS = re.compile(r"(?<=\?=)\s+(?==\?[^?\s*]+(?:\*[^?\s]*)?\?[BbQq]\?)")


def _encoded_words(text: str) -> list[str]:
    """A header value with each RFC 2047 encoded word in it decoded by its coding (B:
    base64, Q: `=XX` escapes and `_` for a space) and its charset (UTF-8 in its place when
    the charset is none Python knows), what does not decode replaced, and the white space
    between two adjacent words dropped (§6.2: `=?utf-8?q?ann?= =?utf-8?q?=40example.com?=`
    reads `ann@example.com`); [] when it holds none."""
    if _ENCODED_WORD.search(text) is None:
        return []
    joined = _ADJACENT_WORDS.sub("", text)
    return [_UNPRINTABLE.sub(" ", _ENCODED_WORD.sub(_decoded_word, joined))]


def _decoded_word(word: re.Match[str]) -> str:
    coded = word["text"]
    if word["coding"] in "Qq":
        escaped = coded.replace("_", " ")
        raw = _Q_ESCAPE.sub(lambda m: chr(int(m[1], 16)), escaped).encode("latin-1", "replace")
    else:
        try:
            raw = base64.b64decode(coded + "=" * (-len(coded) % 4))
        except (binascii.Error, ValueError):
            return word[0]
    try:
        return raw.decode(word["charset"], "replace")
    except (LookupError, UnicodeError):
        return raw.decode("utf-8", "replace")


# a label alone on its line, its value on the next (`Phone Number:`, `- Mobile phone:`)
_LABEL_ALONE = re.compile(
    r"\s*(?:[-*]\s+)?(?P<key>[A-Za-z][\w\-]*(?: [A-Za-z][\w\-]*){1,2})[ \t]*:[ \t]*(?:#.*)?"
)
# a label of words at a line's start, then `:` and a value: `Phone Number: 5550100`
_LABEL = re.compile(
    r"(?P<lead>\s*(?:[-*]\s+)?)(?P<key>[A-Za-z][\w\-]*(?: [A-Za-z][\w\-]*){1,2})"
    r"[ \t]*:[ \t]+(?P<rest>\S.*)"
)
# where a label (a column's or a field's name) stands in markup: a table or list cell, a
# form's label, and an attribute naming a field
_CELL = re.compile(r"<(?:th|td|dt|dd|label|caption|legend)\b[^>]*>(?P<text>[^<]{1,64})<", re.I)
_QUOTED_LABEL = re.compile(
    r"""\b(?:name|label|title|field|key|for|id|data-field)\s*=\s*["'](?P<text>[^"'<>]{1,64})["']""",
    re.I,
)
# an element holding text only, on one line: <name attrs>text</name>
_ELEMENT = re.compile(
    r"<(?P<tag>[A-Za-z_][\w.\-]*)(?P<attrs>\s[^<>]*)?>(?P<text>[^<]*)</(?P=tag)\s*>"
)


# a name as field rules spell one (a rule's segments are tested by Masker.rule_for)
_NAME_HINT = re.compile(r"(?<![\w.\-])[^\W\d][\w\-]*(?![\w\-])")
# after a name: quotes, a separator and a value on the same line (not one going on in
# the next lines: a YAML block's indicator, an array or object left open, see _BLOCK)
_KEYED_VALUE = re.compile(
    r"""["']?[ \t]*[:=][ \t]*(?!(?:(?:[|>][+\-0-9]*|[\[{])[ \t]*)?(?:#.*)?$)["']?[^\s"']"""
)
# a value that goes on in the next lines: a YAML block scalar's indicator, or an array or
# object opened and not closed on its line (pretty-printed JSON, YAML flow)
# (a YAML comment where the value would stand, `phone:  # mobile`, leaves it to the next
# lines as well)
_BLOCK = re.compile(r"(?:(?:[|>][+\-0-9]*|[\[{])[ \t]*)?(?:#.*)?")
# what a name in a table or markup follows (`-`: a YAML or Markdown item, `- phone:`)
_NAME_OPENS = frozenset("<>\t|,;\"'{[?*-")
_NAME_CLOSES = frozenset("<>\t|,;\"']}/*")  # and what it is followed by
_TAG_NAME_PART = re.compile(r"[\w.\-]")  # what _names_a_tag reads back over


# what a document says of its own charset, which its parser reads before the Content-Type's
# (an XML declaration's `encoding`, XML 1.0 §4.3.3; an HTML `<meta charset>` or its
# http-equiv Content-Type, which a parser given bytes honours: lxml, BeautifulSoup), and
# an XML document opening `<?xm` in EBCDIC (XML 1.0 Appendix F: detected without one)
_DECLARED_CHARSET = re.compile(
    rb"""<\?xml\b[^>]*?\bencoding\s*=\s*["']?(?P<xml>[^"'\s?>]*)"""
    rb"""|<meta\b[^>]*?\bcharset\s*=\s*["']?(?P<html>[^"'\s;/>]*)""",
    re.I,
)
_EBCDIC_XML = b"\x4c\x6f\xa7\x94"  # `<?xm` in EBCDIC
# what the masks read a document as (UTF-8, and Latin-1 and Windows-1252: legacy_readings)
_DECLARED_READABLE = _READABLE_CHARSETS | {
    "iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "windows-1252", "cp1252",
}  # fmt: skip


def _declares_unreadable(data: bytes) -> bool:
    """Whether text says it is in a charset the masks do not read it as (EBCDIC, UTF-7,
    ISO-2022-JP, Shift_JIS: `<?xml version="1.0" encoding="cp037"?>` and the e-mail
    after it, which an XML parser shows and the masks' UTF-8 or Latin-1 reading misses)."""
    if _EBCDIC_XML in data:
        return True
    if b"<" not in data:
        return False
    return any(
        (found["xml"] or found["html"] or b"").decode("latin-1").lower() not in _DECLARED_READABLE
        for found in _DECLARED_CHARSET.finditer(data)
    )


def legacy_readings(data: bytes) -> list[str]:
    """How a reader may read bytes no charset names: UTF-8 (invalid bytes replaced) and,
    when they are no UTF-8, Latin-1 and Windows-1252 too (`ex\xe4mple.com` is
    `exämple.com` to Python's requests and a browser, `ex\ufffdmple.com` as UTF-8), and
    EBCDIC (IBM's code page 037: a mainframe's text, which no ASCII reading shows)."""
    try:
        return [data.decode("utf-8")]
    except UnicodeDecodeError:
        pass
    return [
        data.decode("utf-8", "replace"),
        data.decode("latin-1"),
        data.decode("cp1252", "replace"),
        data.decode("cp037"),
    ]


def _names_a_tag(line: str, end: int) -> bool:
    """Whether line[:end] ends as a tag opens before a name (`<ns:` of `<ns:name`, `</`
    of `</name`): read back from `end` over the namespace only, so a line naming a field
    many times is read in time linear in its length."""
    if end >= 2 and line[end - 2 : end] == "</":
        return True
    if end == 0 or line[end - 1] != ":":
        return False
    first = end - 1
    while first > 0 and _TAG_NAME_PART.match(line, first - 1):
        first -= 1
    if first == end - 1:
        return False  # `<:`: no namespace
    opened = line[max(first - 2, 0) : first]  # (`<` or `</` before the namespace)
    return opened.endswith("<") or opened == "</"


def _dump(doc: Any) -> bytes:
    try:
        text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    except RecursionError:
        raise Unmaskable("the JSON response is nested too deep; it cannot be masked") from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # a lone surrogate (`"\ud83d"`: a text cut in the middle of an emoji), which no
        # UTF-8 holds: the document written with its escapes, as the upstream wrote it
        return json.dumps(doc, separators=(",", ":")).encode("ascii")


class BodyMask:
    """One response body's masking: `feed` chunks, then `finish`; `counts` at the end."""

    def __init__(
        self,
        masker: Masker,
        kind: str,
        limit: int = MAX_MASKED_DOCUMENT,
        media: str = "",
        path: str = "",
        tables: TableView | None = None,
        columns: list[str] | None = None,
        csv_header: bool | None = None,
    ) -> None:
        self.masker = masker
        self.kind = kind
        # the session's memory of the tables earlier answers named, as this answer's
        # request follows them (table_memory): a later answer's rows that come with no
        # names of their own (Databricks' result chunks, Snowflake's partitions, a next
        # page, rows beside their schema call) are read under them (_tabled), and the
        # tables this answer names are learnt for the requests that follow it
        self._tables = tables
        # the columns the answer's head names (`X-Columns: id,phone`: header_columns),
        # for rows in its body with no names of their own (CSV without its header line,
        # JSON arrays)
        self._given = columns or None
        self._enclosing: list[list[str]] = []  # (_mask_doc: the whole document's columns)
        self._anchors: set[str] = set()  # (YAML anchors met: _yaml_aliases)
        self.media = media  # (named when a `withheld` body is refused)
        self.limit = limit
        self.counts: Counter[str] = Counter()
        self._pending = bytearray()
        # a CSV body's cells are parted by commas, a TSV body's by tabs (_cells, _joined)
        self._tabbed = media in TSV_TYPES
        self._names: list[str] = []  # a CSV body's column names (its first line)
        self._columns: dict[int, Any] | None = None  # their indices field rules name
        # a CSV body whose first line holds values: no line names its columns (_row)
        self._rowless = False
        # what the answer's Content-Type says of a CSV body's first line (RFC 4180's
        # `header=present` / `header=absent`; None: it does not say, csv_header)
        self._csv_header = csv_header
        # a CSV body's first line read as names that name no masked column, and no
        # Content-Type said it is a header: it may be a row of data (`Ann,Smith`) read
        # as names, so the rows under it are masked as rows nothing names are, too (_row)
        self._unclear = False
        self._named = masker.strictest_field_rule() is not None  # any field rule at all
        # (a text body's aligned columns: _carried)
        self._aligned = AlignedRows(masker) if kind == "lines" and self._named else None
        self._rules: dict[str, str] = {}  # names asked of the masker, and its answers (_field)
        # a text body that is one JSON document on several lines (None: not yet known)
        self._document_text: bool | None = None if kind in ("lines", "csv") else False
        self._worded = field_words(masker)
        self._reading = False  # (only read for what it holds: _names_value)
        self._spoken: re.Pattern[str] | None = None  # (_prose: the fields in words)
        # a field prose named at a line's end, and how many of the next line's words may
        # still be its value (`Ann's phone is` / `555 0100`: _carried)
        self._carry: tuple[str, int] | None = None
        self._shown_value = False  # (the last line of text held a digit or `@`)
        # the field an event stream's last `id:` names (`id: phone`): the client's
        # lastEventId, which every event after it carries until an `id:` sets another
        self._id_field = ""
        # the last masked field an event's `id:` or `event:` named in the stream, and
        # whether an id or event name that may be a value went before any did
        # (_event_names)
        self._name_said = ""
        self._value_named = False
        # the field the last event's data named as a label alone, and whether the last
        # event's data shown may hold a value (_event)
        self._data_field = ""
        self._data_value = False
        # the columns a line's or an event's document named by position (`{"headers":
        # {"phone": 0}}`, `["id", "phone"]`): the rows of the documents after it in the
        # stream (`["5550100"]` on the next line) are masked at them (_tabled)
        self._stream_at: dict[int, str] = {}
        # events held while a value may go on in the next (an LLM's tokens: _released),
        # each with its texts by place; and whether the body's end is being read
        self._pieces: list[tuple[str, dict[tuple[Any, ...], str]]] = []
        self._finishing = False
        self._clock = time.monotonic
        self._held_since = 0.0  # (when the first event still held came: due)
        # whether the stream named its columns (`["id", "name"]` on its first line), if
        # by names no rule masks: its rows are named, not _nameless
        self._stream_named = False
        # the field the request's path ends in (`/customers/7/phone`): an answer that is a
        # bare value, with no name of its own, is that field's value. Its last segment
        # that names something: Express, Spring and others route `/phone/`, `/phone//`,
        # `/phone/.` and `/phone%20` (trimmed) as `/phone`
        segments = [unquote(s).strip() for s in path.split("/")]
        named = [s for s in segments if s.strip(".")]
        last = named[-1].split(".", 1)[0] if named else ""
        self.path_field = self._field(last) if last and self._named else ""

    @property
    def streams(self) -> bool:
        """Whether output comes as the body passes (else all of it at finish)."""
        return self.kind in ("lines", "csv", "sse")

    def feed(self, data: bytes) -> bytes:
        with _scanned(len(self._pending) + len(data)):
            return self._feed(data)

    def finish(self) -> bytes:
        with _scanned(len(self._pending)):
            return self._finish()

    def _feed(self, data: bytes) -> bytes:
        if self.kind == WITHHELD:
            if data:
                raise Unmaskable(f"an answer of type {self.media or 'none'} cannot be masked")
            return b""
        self._pending += data
        if self._document_text is None:
            self._document_text = _opens_document(self._pending)
        if self.kind == "json" or self._document_text is not False:
            # (a JSON document, one typed as text and written on several lines, or a
            # text not yet known to be either: held whole)
            if len(self._pending) > self.limit:
                raise Unmaskable("the JSON response is larger than this proxy masks")
            return b""
        separator = b"\n\n" if self.kind == "sse" else b"\n"
        buf, held = bytes(self._pending), b""
        if buf.endswith(b"\r"):  # (it may be the start of a CRLF)
            buf, held = buf[:-1], b"\r"
        buf = _lf(buf)
        cut = buf.rfind(separator)
        if cut < 0:
            if len(buf) > MAX_RECORD:
                raise Unmaskable("a streamed record is larger than this proxy masks")
            self._pending = bytearray(buf + held)
            return b""
        done, rest = buf[: cut + len(separator)], buf[cut + len(separator) :]
        self._pending = bytearray(rest + held)
        return self._records(done)

    def _finish(self) -> bytes:
        data, self._pending = bytes(self._pending), bytearray()
        if self.kind == WITHHELD:
            return b""
        if self.kind != "json":
            data = _lf(data)
        if self.kind == "json":
            return self._document(data)
        self._finishing = True
        if self._document_text:
            # a JSON document typed as text, on several lines (pretty-printed): masked
            # as the document it is, its structure and all (a table's column on one
            # line, its cells on others: no line tells them), else as lines
            try:
                return self._document(data)
            except Unmaskable:
                pass
        if not data and self._pieces:
            ends = "\n\n" if self.kind == "sse" else "\n"
            return "".join(e + ends for e in self._held_events()).encode("utf-8")
        return self._records(data) if data else b""

    def _document(self, data: bytes) -> bytes:
        if not data.strip():
            return data
        try:
            doc = json.loads(data, object_pairs_hook=_unique_names)
        except ValueError:
            if _json_lines(data):
                return self._lines_of_json(data)
            raise Unmaskable("the JSON response does not parse; it cannot be masked") from None
        except RecursionError:
            raise Unmaskable("the JSON response is nested too deep; it cannot be masked") from None
        if self.path_field and not isinstance(doc, dict | list):
            found: Counter[str] = Counter()
            masked = self._as_field(self.path_field, doc, found)
            self.counts.update(found)
            return _dump(masked)
        masked, counts = self._mask_doc(doc)
        if not counts and not isinstance(doc, dict | list) and self._named:
            # an answer that is a bare value (`"5550100"`, `5550100`, `"078051120"`): no
            # name, no row, and the detectors read no value in it — masked as a cell of
            # rows nothing names is, when it may be a masked field's value
            masked = self._unnamed_cells([doc], counts)[0]
        self.counts.update(counts)
        return _dump(masked)

    def _lines_of_json(self, data: bytes) -> bytes:
        """An answer typed as one JSON document that is lines of JSON (Elasticsearch's
        and OpenSearch's NDJSON under application/json): masked as an NDJSON answer is,
        line by line, the columns one line names carried to the rows after it."""
        lines = BodyMask(
            self.masker, "lines", self.limit, self.media, tables=self._tables, columns=self._given
        )
        lines.path_field = self.path_field
        out = lines.feed(data) + lines.finish()
        self.counts.update(lines.counts)
        return out

    def _mask_doc(self, doc: Any, depth: int = 0) -> tuple[Any, Counter[str]]:
        """mask_json, then what it reads by keys alone, in one walk (_named_values); a
        value split across siblings first (values.masked_split_values)."""
        split, split_counts = masked_split_values(self.masker, doc)
        masked, counts = self.masker.mask_json(split)
        found: Counter[str] = Counter(counts)
        found.update(split_counts)
        if depth == 0 and self._named:
            # (the columns the document names, for its rows written as a JSON string
            # beside them: `"data": "[[7, \"5550100\"]]"`, read as a document of its own)
            self._enclosing = _column_lists(doc)[0]
        if self._named and depth < 4:
            try:
                # (the maps naming keys read before _named_values takes one for a pair)
                masked = self.aliased(masked, found)
                masked = self._named_values(masked, found, depth)
                # (the positions read where the masks have not been: `{"phone": 0}`)
                masked = self._tabled(masked, found, _column_positions(doc), doc)
            except RecursionError:
                # (a document nested deeper than these walks go: json.loads reads ~1000
                # levels, they recurse once a level)
                raise Unmaskable(
                    "the JSON response is nested too deep; it cannot be masked"
                ) from None
        elif depth < 4 and self.masker.detects:
            # (under the detectors alone, a string carrying text (base64, hex, a data: URI,
            # a document in a string) is read as that text too, as under field rules:
            # `{"blob": "Y2FyZCA0MTEx..."}`, `card 4111 ...` in base64, went as it came)
            try:
                masked = self._named_values(masked, found, depth)
            except RecursionError:
                raise Unmaskable(
                    "the JSON response is nested too deep; it cannot be masked"
                ) from None
        if depth == 0:
            masked = self._rendered_doc(masked, found)
        return masked, found

    def _tabled(
        self,
        doc: Any,
        found: Counter[str],
        positions: list[dict[int, str]] | None = None,
        source: Any = None,
    ) -> Any:
        """Rows whose columns the document names away from them, masked by position: a
        list of column names anywhere in it (strings, or objects naming one under `name`,
        `label`, `title`: BigQuery's `schema.fields`, Snowflake's `rowType`, Databricks'
        `manifest.schema.columns`, Google's DataTable `cols`) names the cells at its
        positions of every row of its width (a list, or an object holding only one list:
        BigQuery's `{"f": [{"v": ...}]}`); and rows whose first is a row of names (Google
        Sheets' `values`, CSV as JSON) have their cells under those names masked. The
        rows beside their columns (`{"columns": [...], "rows": [...]}`) _named_values
        masked already; these are the rest. A cell that is itself a field's name is a
        name, not a value (a list of pairs), and stays. `positions`: the document's maps of
        column names to their positions (_column_positions: `{"headers": {"phone": 0}}`,
        descriptors giving their `index`), which name the cells at those positions of
        every row wider than them. `source`: the document before other masks, whose lists
        of column names name columns too (a masked name list is no longer one)."""
        at: dict[int, str] = {}
        for placed in positions or []:
            for index, name in sorted(placed.items()):
                if index not in at and (field := self._phrase(name)):
                    at[index] = field
        widths: dict[int, list[str]] = {}
        columns, heads = _column_lists(doc)
        if source is not None:
            columns = columns + _column_lists(source)[0]
        if self._given is not None:
            columns = [*columns, self._given]
        for names in columns:
            fields = [self._phrase(n) for n in names]
            if any(fields):
                known = widths.get(len(fields), [""] * len(fields))
                widths[len(fields)] = [a or b for a, b in zip(known, fields, strict=True)]
                if self._tables is not None:
                    self._tables.learn(names, source if source is not None else doc)
        if self._tables is not None and self._tables.known and not columns and not positions:
            # (rows with no names here: a page of a result whose columns an answer the
            # request follows named, read under them)
            for width, names in self._tables.known.items():
                widths[width] = [self._phrase(n) for n in names]
        if not columns and not positions:
            # (rows in a string of the document naming their columns)
            for names in self._enclosing:
                if any(fields := [self._phrase(n) for n in names]):
                    widths.setdefault(len(names), fields)
        if self.streams:
            # (a stream's documents one after another: a header line, then its rows)
            carried = self._stream_at
            named = [*columns, doc] if _column_names(doc) and _scalars(doc) else columns
            if columns and not (isinstance(doc, list) and _unnamed_row(doc)):
                # (named by a column list, `{"columns": ["id", "name"]}`: its rows are
                # named, if by names no rule masks. A line that is a list of words alone,
                # `["Ann", "Smith"]`, may as well be a row whose cells hold no digit:
                # the rows after it are read as rows nothing names)
                self._stream_named = True
            for names in named:
                for index, name in enumerate(names[:MAX_COLUMNS]):
                    if field := self._phrase(name):
                        carried.setdefault(index, field)
            for index, field in at.items():
                carried.setdefault(index, field)
            at = {**carried, **at}
            if isinstance(doc, list) and doc and _scalars(doc) and (at or len(doc) in widths):
                # (a row alone on its line, under the columns named before it or apart)
                return self._rows_masked([doc], widths, found, at)[0]
            if isinstance(doc, dict) and at and not columns:
                # (a row under a member of a later document: `{"row": [7, ...]}`, `{"type":
                # "row", "values": [...]}`, after `{"columns": ["id", "phone"]}`)
                doc = self._stream_rows(doc, widths, found, at)
        if not widths and not at and not any(self._phrase(n) for head in heads for n in head):
            # (no table names a masked field: nothing to rebuild, but the tables that
            # nothing names at all)
            if (self._tables is not None and self._tables.known) or self._enclosing or positions:
                return doc  # (columns named elsewhere, or by position: named rows)
            if self.streams and (self._stream_named or carried):
                return doc
            return self._nameless(doc, found, {len(c) for c in columns})
        return self._rows_masked(doc, widths, found, at)

    def _nameless(self, value: Any, found: Counter[str], widths: set[int], depth: int = 0) -> Any:
        """Rows that nothing names (no column list, no row of names over them, no header,
        no answer the request follows: `[[7, "5550100", "hunter2"]]`, `SELECT *` over
        HTTP, a stream's row alone on its line): which cell is a masked field's cannot be
        told, so every cell that may be one (_unnamed_value: a number of seven digits or
        more, a string holding a digit or `@` but a short number or a date) is masked by
        the strictest field rule. `widths`: those of the column lists the document has,
        whose rows are named (by columns no rule names). Dates, short numbers, words
        without a digit stay (a password of letters alone goes: the masks' bound)."""
        if depth > 64:
            raise Unmaskable("the JSON response is nested too deep; it cannot be masked")
        if isinstance(value, dict):
            if value and all(_index(k) is not None for k in value) and _rows(list(value.values())):
                # (rows keyed by their number, `{"0": [7, ...]}`: PHP's json_encode)
                rows = self._nameless(list(value.values()), found, widths, depth + 1)
                return dict(zip(value, rows, strict=True))
            if depth <= 1 and list(value) == ["result"] and isinstance(value["result"], list):
                # (a value that is no object, as the MCP SDK wraps a tool's structured
                # output, `{"result": ["Ann", "5550100"]}`, the document or a tool
                # result's structuredContent: read as the document it is)
                return {"result": self._nameless(value["result"], found, widths)}
            return {k: self._nameless(v, found, widths, depth + 1) for k, v in value.items()}
        if not isinstance(value, list) or not value:
            return value
        if depth == 0 and _unnamed_row(value) and (self.streams or _mixed(value)):
            # (a stream's row on its line; a document that is one row, `[7, "5550100"]`:
            # numbers and strings side by side, as a list of names or tags is not)
            return self._unnamed_cells(value, found)
        if depth == 0 and all(isinstance(v, str) for v in value) and any(map(_bare_value, value)):
            # (a document that is a list of strings, `["Ann", "5550100"]`: a row of
            # strings, or a list of names or tags; what reads as a value a mask hides,
            # and as no name nor tag, is masked)
            rule = self.masker.strictest_field_rule()
            if rule is not None:
                return [
                    self._as_field(rule.field, v, found) if _bare_value(v) else v for v in value
                ]
        if not _rows(value):
            return [self._nameless(v, found, widths, depth + 1) for v in value]
        first = value[0]
        if {len(r) for r in value} & widths:
            return value  # (columns named elsewhere: by names no rule masks)
        # a first row that may be names (`["id", "name"]`) names no masked field (else
        # _tabled read the rows under it), and may as well be a row of data whose
        # cells hold no digit (`["Ann", "Smith"]`, ordered first): shown as it came, the
        # rows under it masked as rows nothing names are
        header = _names_row(first) and not any(map(_unnamed_value, first)) and len(value) > 1
        return [
            row
            if header and n == 0
            else [
                self._unnamed_cells([c], found)[0]
                if _scalar(c)
                else self._nameless(c, found, widths, depth + 1)
                for c in row
            ]
            for n, row in enumerate(value)
        ]

    def _literal_cell(self, cell: re.Match[str], found: Counter[str]) -> str:
        """A quoted string or a number of rows printed as literals, masked as a cell of
        _nameless rows is."""
        text = cell.group(0)
        quoted = text[0] in "'\""
        value: Any = text[1:-1] if quoted else text.replace("_", "")
        if not quoted:
            try:
                value = int(value)
            except ValueError:
                return text
        if not _unnamed_value(value) or (rule := self.masker.strictest_field_rule()) is None:
            return text
        masked = str(self._as_field(rule.field, value, found))
        return text[0] + masked + text[-1] if quoted else masked

    def _unnamed_cells(self, row: list[Any], found: Counter[str]) -> list[Any]:
        rule = self.masker.strictest_field_rule()
        if rule is None:
            return row
        return [self._as_field(rule.field, c, found) if _unnamed_value(c) else c for c in row]

    def _stream_rows(
        self, doc: dict[str, Any], widths: dict[int, list[str]], found: Counter[str], at: dict
    ) -> dict[str, Any]:
        """A stream's document with its members that are one row (a list of scalars as
        wide as the positions named) masked at those positions, objects within read so."""
        out: dict[str, Any] = {}
        for key, member in doc.items():
            if isinstance(member, list) and member and _scalars(member) and max(at) < len(member):
                member = self._rows_masked([member], widths, found, at)[0]
            elif isinstance(member, dict):
                member = self._stream_rows(member, widths, found, at)
            out[key] = member
        return out

    def _rows_masked(
        self,
        value: Any,
        widths: dict[int, list[str]],
        found: Counter[str],
        at: dict[int, str] | None = None,
    ) -> Any:
        if isinstance(value, dict):
            if value and all(_index(k) is not None for k in value) and _rows(list(value.values())):
                # (rows in an object keyed by their number, `{"0": [7, ...], "1": ...}`:
                # PHP's json_encode of a list not numbered from 0, a keyed result set)
                rows = self._rows_masked(list(value.values()), widths, found, at)
                return dict(zip(value, rows, strict=True))
            if value and all(_index(k) is not None for k in value) and (widths or at):
                # (a row as an object keyed by position, `{"0": 7, "1": ...}`: PHP's
                # json_encode of an array not numbered from 0 in turn)
                by_index = {i: f for names in widths.values() for i, f in enumerate(names) if f}
                by_index.update(at or {})
                return {
                    k: self._cell(by_index[i], v, found)
                    if (i := _index(k)) is not None and i in by_index
                    else self._rows_masked(v, widths, found, at)
                    for k, v in value.items()
                }
            # (one row beside its columns: `{"keys": ["id", "phone"], "values": [7, ...]}`)
            beside = next((f for f in map(self._fields_of, value.values()) if any(f)), None)
            members: dict[str, Any] = {}
            for k, v in value.items():
                spelt = None
                if isinstance(v, list) and v and all(isinstance(r, str) for r in v):
                    # (rows as delimited strings beside their columns: not one row)
                    spelt = self._spelt_rows(v, widths, found, at or {})
                if spelt is not None:
                    members[k] = spelt
                elif beside and _scalars(v) and isinstance(v, list) and len(v) == len(beside):
                    members[k] = self._row_masked(beside, v, found)
                else:
                    members[k] = self._rows_masked(v, widths, found, at)
            return members
        if not isinstance(value, list) or not value:
            return value  # (an empty list beside a table, `"tags": []`: no row to read)
        if all(isinstance(r, str) for r in value):
            # (rows written as delimited strings, `["7,5550100"]`, or CSV lines in a list)
            spelt = self._spelt_rows(value, widths, found, at or {})
            if spelt is not None:
                return spelt
        rows = [_cells(r) for r in value]
        if (len(value) < 2 and not widths and not at) or not all(c is not None for c in rows):
            return [self._rows_masked(v, widths, found, at) for v in value]
        texts = [_cell_text(c) for c in rows[0] or []]
        header = [self._phrase(t) if t else "" for t in texts]
        if not (texts and all(texts) and any(header)):
            header = []
        out = []
        for n, (row, cells) in enumerate(zip(value, rows, strict=True)):
            assert cells is not None
            fields = header if header else widths.get(len(cells))
            if at and cells and not _nested(cells) and max(at) < len(cells):
                # (a row as wide as the positions named: its cells there are theirs)
                named = list(fields) if fields and len(fields) == len(cells) else [""] * len(cells)
                fields = [named[i] or at.get(i, "") for i in range(len(cells))]
            if header and n == 0:
                out.append(row)
            elif not fields or len(fields) != len(cells):
                out.append(self._rows_masked(row, widths, found, at))
            else:
                out.append(self._row_masked(fields, row, found))
        across = widths.get(len(value))
        lengths = {len(c) for c in rows if c is not None}
        if at and lengths == {len(value)} and max(at) < len(value):
            # (a square table named by positions: its lists may be columns too)
            known = across or [""] * len(value)
            across = [known[i] or at.get(i, "") for i in range(len(value))]
        if across and not header and len(lengths) == 1:
            # as many lists, each as long, as a table has columns: a column each (ES SQL's
            # columnar `values`, Arrow's JSON `columns`) or the rows of a square table,
            # read both ways (more, never less)
            out = [
                [self._cell(across[i], c, found) for c in col]
                if across[i] and isinstance(col, list) and not _nested(col)
                else col
                for i, col in enumerate(out)
            ]
        return out

    def _spelt_rows(
        self, value: list[str], widths: dict[int, list[str]], found: Counter[str], at: dict
    ) -> list[str] | None:
        """Rows each written as one delimited string, their cells under the columns named
        masked and the row written again; None when they are no such rows."""
        for delimiter in (",", "\t", ";", "|"):
            if not any(delimiter in r for r in value):
                continue
            try:
                rows = [next(csv.reader([r], delimiter=delimiter), []) for r in value]
            except csv.Error:
                return None
            lengths = {len(r) for r in rows}
            if len(lengths) != 1 or (width := lengths.pop()) < 2:
                return None
            fields = list(widths.get(width, [""] * width))
            fields = [fields[i] or at.get(i, "") for i in range(width)]
            first = 0
            if not any(fields):
                fields, first = [self._phrase(c) for c in rows[0]], 1  # (a header line)
            if not any(fields):
                return None
            out = list(value[:first])
            for row in rows[first:]:
                cells = [
                    str(self._cell(f, c, found)) if f and c.strip() else c
                    for f, c in zip(fields, row, strict=True)
                ]
                line = io.StringIO()
                csv.writer(line, delimiter=delimiter, lineterminator="").writerow(cells)
                out.append(line.getvalue())
            return out
        return None

    def _known_width(self, width: int) -> list[str] | None:
        """The columns an answer the request follows named for rows `width` wide, when
        they name a masked field."""
        if self._tables is None or width < 2:
            return None
        names = self._tables.known.get(width)
        return names if names and any(self._phrase(n) for n in names) else None

    def _fields_of(self, value: Any) -> list[str]:
        """The fields a list of column names names, by position ([] for no such list)."""
        return [self._phrase(n) for n in _column_names(value)]

    def _row_masked(self, fields: list[str], row: Any, found: Counter[str]) -> Any:
        cells = _cells(row) or []
        masked = [
            self._cell(field, cell, found) if field else cell
            for field, cell in zip(fields, cells, strict=True)
        ]
        return masked if isinstance(row, list) else {k: masked for k in row}

    def _holds_data(self, packed: bytes) -> bool:
        """Whether a compressed file holds text the detectors find anything in, or that
        names a masked field (a spreadsheet's `Phone` column), or cannot be opened."""
        try:
            for content in unpacked(packed):
                for text in legacy_readings(content.replace(b"\x00", b"")):
                    if self.masker.mask_text(text)[1]:
                        return True
                    if self._worded and worded_field(self._worded, name_words(text)):
                        return True
        except Unopenable:
            return True
        return False

    def _paired(self, value: Any, found: Counter[str]) -> Any:
        """Every pair `["phone", "5550100"]` in a value masked, and every list holding
        a label beside values (`["5550100", "phone"]`), as _named_values does."""
        if isinstance(value, dict):
            return {k: self._paired(v, found) for k, v in value.items()}
        if not isinstance(value, list):
            return value
        if len(value) == 2 and isinstance(value[0], str) and (field := self._pair(value[0])):
            value = [value[0], self._as_field(field, value[1], found)]
        value = self._labelled_list(value, found)  # (`["5550100", "phone"]`)
        return [self._paired(v, found) for v in value]

    def _cell(self, field: str, cell: Any, found: Counter[str]) -> Any:
        """A row's cell under a column a rule names: a value masked by it (an object's
        scalar members: BigQuery's `{"v": ...}`, a DataTable's `{"v": ..., "f": ...}`);
        a string that is itself a field's name stays."""
        if isinstance(cell, str) and self._phrase(cell):
            return cell
        if isinstance(cell, dict):
            if any(isinstance(v, str) and self._phrase(v) for v in cell.values()):
                return cell  # (a pair naming its field: `{"name": "phone", ...}`, masked so)
            return {
                k: self._as_field(field, v, found) if _scalars(v) else v for k, v in cell.items()
            }
        return self._as_field(field, cell, found)

    def _named_values(self, value: Any, found: Counter[str], depth: int) -> Any:
        """Fields a document names otherwise than by a key, masked as if keyed (more,
        never less): a string holding a document or named pairs of its own (`"event":
        "{\\"phone\\": ...}"`, `"query": "phone=..."`: an event's payload, a logged
        request); an object holding a string that names a rule, or a label of up to three
        words naming one (`{"name": "phone", "value": ...}`, `{"label": "Phone Number",
        ...}`, attribute lists, `{"field": "email", ...}`) has its other scalar
        members (and lists of scalars) masked by that rule; rows beside a list of column
        names (`{"columns": ["id", "phone"], "rows": [[7, ...]]}`, `{"meta": [{"name":
        "phone"}], "data": [[...]]}`: SQL over HTTP) have those columns masked; a key a rule's
        words name (`phoneNumber`, `Phone Number`: _key_field) has its value masked by it, and
        the keys of a map whose values all name rules by those rules."""
        if isinstance(value, str):
            return self._string(value, found, depth)
        if isinstance(value, list):
            if len(value) == 2 and isinstance(value[0], str) and (field := self._pair(value[0])):
                # a pair `["phone", "5550100"]` (headers, form fields, Object.entries)
                value = [value[0], self._as_field(field, value[1], found)]
            elif _flat_pairs(value):
                # names and values in turn (`["phone", "5550100", "plan", "gold"]`: Redis'
                # HGETALL, a logger's key-value attributes)
                value = list(value)
                for i in range(0, len(value), 2):
                    if (field := self._pair(value[i])) and not self._pair(str(value[i + 1])):
                        value[i + 1] = self._as_field(field, value[i + 1], found)
            value = self._labelled_list(value, found)
            return [self._named_values(v, found, depth) for v in value]
        if not isinstance(value, dict):
            return value
        named: str | None = None
        naming = ""  # (the key of the string naming it)
        columns: list[str] = []
        # a map from values to the fields they are (`{"5550100": "phone", "x@y": "email"}`):
        # its keys are the values; one member alone too (`{"hunter2": "password"}`) unless
        # its key is a word that names a field's role (`{"field": "email"}`: _role_key)
        # (an empty object `{}` is no such map: it has no first key to read)
        inverted = (
            bool(value)
            and all(isinstance(m, str) and self._rule(m) for m in value.values())
            and (len(value) > 1 or not _role_key(next(iter(value))))
        )
        for key, member in value.items():
            if isinstance(member, str):
                # (a name, or under a key naming a label a label of up to three words, as a
                # form or a CRM's custom fields write it: `{"name": "Phone Number", ...}`;
                # `{"status": "Phone support"}` is no label)
                if named is None and not inverted:
                    field = self._pair(member) if _label_key(key) else self._field(member)
                    if not field and _label_key(key) and (label := _coded_label(member)):
                        # (a label in base64, however short: HBase REST's `"column":
                        # "Y2Y6cGhvbmU="`, cf:phone; etcd's keys, customers/7/phone)
                        field = self._pair(label)
                    named, naming = (field, key) if field else (None, "")
                continue
            if named is None and not inverted and (field := self._path_field(key, member)):
                # (`{"loc": ["body", "phone"], "input": ...}`: a path of segments ending
                # in the field, as FastAPI's errors, GraphQL's `path`, a JSON Patch's)
                named, naming = field, key
            if named is None and not inverted and (isinstance(member, dict) or one_label(member)):
                # (`{"field": {"name": "phone"}, "value": ...}`, `{"field": ["phone"],
                # ...}`: a descriptor names it)
                labels = {key: member} if isinstance(member, list) else member
                named = labelled_field(labels, self._phrase) or None
                naming = key if named else ""  # (the descriptor names: it is no value)
            if isinstance(member, list) and not columns:
                names = _column_names(member)
                if any(self._rule(c) for c in names):
                    columns = names
        out: dict[str, Any] = {}
        for key, member in value.items():
            # (a number under a name in the plural is a count of them: `"tokens": 3`)
            worded = self._key_field(key, plural=not isinstance(member, int | float))
            if worded and member is not None:
                # (a key spelling a rule's name otherwise: `phoneNumber`, `Phone Number`)
                out[key] = self._as_field(worded, member, found)
                continue
            if isinstance(member, str) and inverted:
                key = _fresh_key(out, str(self._as_field(member, key, found)))
            else:
                described = self.value_key_field(key, member)
                if described:
                    key = _fresh_key(out, str(self._as_field(described, key, found)))
            if named is not None and key != naming and self._held(member):
                member = self._as_field(named, member, found)
            elif columns and _rows(member):
                if len(member) == len(columns):
                    # (columns, or a square table's rows: read both ways)
                    member = self._by_column(member, columns, found)
                if not _columnar(member, columns):
                    member = [
                        [
                            self._as_field(columns[i], cell, found)
                            if i < len(columns) and self._rule(columns[i])
                            else cell
                            for i, cell in enumerate(row)
                        ]
                        for row in member
                    ]
            out[key] = self._named_values(member, found, depth)
        return out

    def _path_field(self, key: str, member: Any) -> str:
        """The field a path given as a list of its segments names by its last (`"loc":
        ["body", "phone"]`, `"path": ["users", 0, "phone"]`) under a key naming a path
        or a field; "" for none."""
        last = path_end(key, member)
        return self._pair(last) if last else ""

    def _labelled_list(self, value: list[Any], found: Counter[str]) -> list[Any]:
        """A list of scalars holding a label naming a masked field (`["5550100",
        "phone"]`, `["Ann", "name", "hunter2", "password"]`, `[7, "phone", "5550100"]`:
        a pair or a row with its label after its value): every other scalar in it that
        may be a value (a number, a string with a digit or `@`) masked by the label
        nearest it, before or after (more, never less). A list of names alone (`["id",
        "phone"]`) holds no value and stays."""
        if not value or not all(_scalar(v) for v in value):
            return value
        labels = [
            (i, field)
            for i, v in enumerate(value)
            if isinstance(v, str) and (field := self._pair(v))
        ]
        if not labels:
            return value
        out = list(value)
        for i, v in enumerate(value):
            if any(i == at for at, _ in labels) or not _may_be_value(v):
                continue
            field = min(labels, key=lambda label: (abs(label[0] - i), label[0] < i))[1]
            out[i] = self._as_field(field, v, found)
        return out

    def _string(self, value: str, found: Counter[str], depth: int) -> str:
        if "\n" in value or "\r" in value:
            value = self._lines_read(value, found)
        packed = _packed_base64(value)
        if packed is not None:
            # an archive or a compressed file in base64 (an export, an Office document):
            # what it holds cannot be masked in place; withheld when it holds what the
            # masks would change or names a masked field, or cannot be opened
            if self._holds_data(packed):
                found["blob:withheld"] += 1
                return REDACTED_VALUE
            return value
        coded = _base64_text(value)
        # (read as the string it is too when its bytes hide nothing: `phone\n5550100`
        # is MIME base64 as well)
        if coded is not None and (shown := self._decoded(value, coded, found, depth)) != value:
            return shown
        hexed = _hex_text(value)
        if hexed is not None:
            # text written as hex (`70686f6e653a...`: a queue's payload, a bytea): masked
            # as the text it is, and written back as hex
            masked, found_in = self._inner_string(hexed, depth)
            if masked != hexed or found_in:
                found.update(found_in)
                shown = masked.encode().hex()
                return shown.upper() if value.strip().isupper() else shown
        based = _base32_text(value)
        if based is not None:
            # text written as base32 (`MNQXEZBAGQYTCMJA...`): as hex is, written back
            # as base32
            masked, found_in = self._inner_string(based, depth)
            if masked != based or found_in:
                found.update(found_in)
                return _as_base32(masked, value)
        text = value.lstrip()
        if text[:1] in ("{", "["):
            try:
                inner = json.loads(text, object_pairs_hook=_unique_names)
            except (ValueError, RecursionError):
                inner = None
            if isinstance(inner, dict | list):
                masked, counts = self._mask_doc(inner, depth + 1)
                if counts:
                    found.update(counts)
                    return json.dumps(masked, ensure_ascii=False)
                return value
        if text[:1] in ("(", "{") and self._named:
            # a whole row written as one value (PostgreSQL's record text, `(7,5550100,
            # ann)`, or an array of them): its fields masked (composites.py)
            composite = masked_composite(value, self.masker, found)
            if composite is not None:
                return composite
        if self._named and (in_prose := masked_in_prose(value, self.masker, found)):
            value = in_prose  # (`Failing row contains (7, ann, 5550100).`)
        if "base64," in value and depth < _LABELS_DEPTH:
            # a data: URI's base64 (RFC 2397: `data:text/plain;base64,dGVsOjU1NTAxMDA=`,
            # `tel:5550100`) is base64 by its own word, however short: read as a run is
            value = _DATA_BASE64.sub(
                lambda uri: uri["head"] + self._string(uri["payload"], found, depth + 1), value
            )
        if len(value) > _EMBEDDED_MIN:
            # base64 inside a text (`see cGhvbmU6...`, `prefs=eyJwaG9uZSI6...`): each run
            # read as a whole string is, and written back masked (or withheld)
            value = _EMBEDDED_RUN.sub(
                lambda run: run[0] if run[0] == value else self._string(run[0], found, depth + 1),
                value,
            )
        if (
            "\n" in value.strip()
            and depth < _LABELS_DEPTH
            and self._worded
            and worded_field(self._worded, name_words(as_read(value)))
        ):
            # a text of several lines naming a masked field (a note, a log, a document in
            # a field): read as a text body's lines are (a value on the line after its
            # label, a table's cells under its header, a YAML block), withheld when they
            # cannot be masked
            return self._as_text(value)
        seen = as_read(value)
        if seen != value:
            # (`ph\u0307one: 5550100`, `P-H-O-N-E=...` as its reader reads it: shown so
            # when that masks anything, as a text line is, _carried)
            before = sum(self.counts.values())
            masked = self._pairs_and_prose(seen)
            if sum(self.counts.values()) != before:
                return masked
            # (and the detectors: a card in fullwidth or Arabic-Indic digits, parted by
            # soft hyphens, an e-mail with a fullwidth at sign: what its reader reads)
            shown, counts = self.masker.mask_text(masked)
            if counts:
                found.update({f"detector:{k}": v for k, v in counts.items()})
                return shown
        return self._pairs_and_prose(value)

    def _lines_read(self, value: str, found: Counter[str]) -> str:
        """A string of several lines read as a text body's lines are, together
        (masked_lines): a value across them (`card 4111 1111\n1111 1111`: a client
        printing the string shows it on two lines) masked in the lines holding it. The
        detectors read no value across a line break, and a JSON answer's string was read
        alone: its lines went as they came, where a text body's were masked."""
        pieces = _LINE_ENDS.split(value)
        masked, counts = masked_lines(self.masker, pieces[0::2])
        if not counts:
            return value
        found.update(counts)
        pieces[0::2] = masked
        return "".join(pieces)

    def _decoded(self, value: str, coded: tuple[str, str], found: Counter[str], depth: int) -> str:
        """A string that is the base64 of text, masked as that text and encoded again;
        `value` itself when that text holds nothing masked."""
        # text carried as base64 (a queue's message `data`, a record's `Data`): masked
        # as the string it is, and carried so again (in its charset: UTF-8, else
        # Latin-1); bytes that are no text (a control character in them) read as the
        # text between those characters, and withheld when that holds anything masked
        decoded, charset = coded
        # (text in UTF-16 or UTF-32: a NUL beside each letter; read without them)
        view = _UNPRINTABLE.sub(" ", decoded.replace("\x00", "") if charset != "utf-8" else decoded)
        masked, found_in = self._inner_string(view, depth)
        if masked == view and not found_in:
            return value
        if view != decoded:
            found["blob:withheld"] += 1
            return REDACTED_VALUE
        found.update(found_in)
        return _base64_like(value.strip(), masked.encode(charset, "replace"))

    def _inner_string(self, text: str, depth: int) -> tuple[str, Counter[str]]:
        """`text` carried inside a string (decoded from base64 or hex), masked as a string
        one level down and then by the detectors (withheld whole when it cannot be
        masked), with what was found in it."""
        found_in: Counter[str] = Counter()
        try:
            masked = self._string(text, found_in, depth + 1)
        except Unmaskable:
            masked = REDACTED_VALUE
        masked, counts = self.masker.mask_text(masked)
        found_in.update({f"detector:{k}": v for k, v in counts.items()})
        return masked, found_in

    def _as_text(self, value: str) -> str:
        inner = BodyMask(self.masker, "lines", media="text/plain")
        inner._rules = self._rules
        try:
            masked = (inner.feed(value.encode()) + inner.finish()).decode()
        except Unmaskable:
            self.counts["text:withheld"] += 1
            return REDACTED_VALUE
        self.counts.update(inner.counts)
        return masked if inner.counts else value

    def _pairs_and_prose(self, value: str) -> str:
        text = value
        value = self._phone_uris(value)
        if "=" in value or ":" in value:
            value = self._inline(value)  # (counted in self.counts)
        return self._escapes_clear(text, self._unescaped_clear(self._prose(value)))

    def _phone_uris(self, text: str) -> str:
        """`text` with the number of each URI whose scheme dials or texts one (_PHONE_URI:
        `sms:+15550100`, `callto:`, `facetime:`, `wtai://wp/mc;`) masked as the value of
        the field a rule `phone` (or its aliases) names; as it came without such a rule."""
        if ":" not in text and ";" not in text:
            return text
        field = self._field("phone") or self._field("telephone")
        if not field:
            return text
        return masked_phone_uris(text, lambda number: self._value(field, number, text=True))

    def _escapes_clear(self, text: str, masked: str) -> str:
        """`masked` (`text` masked) unless the field rules masked nothing in `text` as
        written but find a value in it with its escapes undone
        (`filter=%7B%22phone%22%3A%225550100%22%7D`: what its reader decodes); then
        Unmaskable."""
        if masked != text or self._reading or not self._named or not _ESCAPED.search(text):
            return masked
        view = html.unescape(text) if "&" in text else text
        view = _JS_ESCAPE.sub(lambda m: chr(int(m[1] or m[2], 16)), view)
        view = unquote(view) if "%" in view else view
        if view != text and self._names_value(view):
            raise Unmaskable("text whose escapes hide what the mask hides cannot be masked")
        return masked

    def _unescaped_clear(self, text: str) -> str:
        """`text` (masked) when what it says with its escapes undone holds nothing the
        detectors find; else Unmaskable. A browser renders `ann&#64;example.com` as an
        address, a script's string `\\u0034111...` as a card, a link's `%40` as `@`, and a
        model reads them all: the masks, which read the escapes as written, missed them."""
        if not _ESCAPED.search(text):
            return text
        view = html.unescape(text) if "&" in text else text
        view = _JS_ESCAPE.sub(lambda m: chr(int(m[1] or m[2], 16)), view)
        view = unquote(view) if "%" in view else view
        if view != text and self.masker.detects and self.masker.mask_text(view)[1]:
            raise Unmaskable("text whose escapes hide what the mask hides cannot be masked")
        return text

    def _names_value(self, text: str) -> bool:
        """Whether a text, read as a text body's line is, holds a value the field rules
        mask (or names one where its value cannot be told)."""
        inner = BodyMask(self.masker, "lines", media=self.media if self.streams else "")
        inner._rules, inner._reading = self._rules, True
        try:
            inner.feed(text.encode() + b"\n")
            inner.finish()
        except Unmaskable:
            return True
        return any(not k.startswith("detector:") for k in inner.counts)

    def _as_field(self, name: str, value: Any, found: Counter[str]) -> Any:
        masked, counts = self.masker.mask_json({self._field(name) or name: value})
        found.update(counts)
        return next(iter(masked.values()))

    def _text(self, text: str) -> str:
        # read as a terminal shows it too (a client's `curl` prints it to one): a card
        # split by colour codes or overstrike is masked, as in SSH output
        masked, counts = mask_shown(self.masker, text)
        self.counts.update({f"detector:{k}": v for k, v in counts.items()})
        return self._rendered_clear(masked, self.counts)

    def _rendered_clear(self, masked: str, found: Counter[str]) -> str:
        """A masked text read as a browser or a Markdown viewer renders it too (its tags,
        comments and emphasis marks unseen): a value split by markup (`4111 <em>1111</em>
        1111 1111`, a search's highlight of the term asked for; `bob<!-- -->@example.com`,
        `078-05-**1120**`) shows whole where the detectors read its pieces apart. When the
        rendered text holds what the detectors find, it goes rendered and masked (the
        markup of that text lost), as mask_shown does with a terminal's escapes."""
        seen = _unmarked(masked)
        if seen == masked:
            return masked
        if not self.masker.may_detect(seen.encode("utf-8")):
            return masked
        again, counts = self.masker.mask_text(seen)
        if not counts:
            return masked
        found.update({f"detector:{k}": v for k, v in counts.items()})
        return again

    def _rendered_doc(self, value: Any, found: Counter[str], depth: int = 0) -> Any:
        """A masked document's strings read as rendered (_rendered_clear): an API's
        highlights (Elasticsearch's `"highlight": {"card": ["4111 <em>1111</em> ..."]}`)."""
        if depth > 64:
            raise Unmaskable("the JSON response is nested too deep; it cannot be masked")
        if isinstance(value, str):
            return self._rendered_clear(value, found)
        if isinstance(value, list):
            return [self._rendered_doc(v, found, depth + 1) for v in value]
        if isinstance(value, dict):
            return {k: self._rendered_doc(v, found, depth + 1) for k, v in value.items()}
        return value

    def _records(self, data: bytes) -> bytes:
        if b"\x00" in data:
            # UTF-16 or UTF-32 text with no charset named (a NUL beside every ASCII
            # letter), or binary under a text type: no detector reads it as text
            raise Unmaskable("text holding NUL bytes (UTF-16, binary) cannot be masked")
        if self.kind != "sse" and _declares_unreadable(data):
            raise Unmaskable("text naming a charset the masks cannot read cannot be masked")
        try:
            return self._records_read(data.decode("utf-8")).encode("utf-8")
        except UnicodeDecodeError:
            pass
        # bytes no UTF-8 (Latin-1 or Windows-1252 text, no charset named: what a client
        # without one reads them as, `ann.smith@ex\xe4mple.com`): masked as Latin-1 and
        # carried so, withheld if a detector still finds anything in another reading
        out = self._records_read(data.decode("latin-1")).encode("latin-1", "replace")
        if any(self.masker.mask_text(text)[1] for text in legacy_readings(out)):
            raise Unmaskable("text in no charset the masks can tell cannot be masked")
        return out

    def _records_read(self, text: str) -> str:
        if self.kind == "lines":
            *lines, last = text.split("\n")
            shown = [shown for line in lines for shown in self._released(self._carried(line))]
            if last and self._finishing:
                # (the body's last line, no newline after it: read with those held)
                shown += self._released(self._carried(last)) + self._held_events()
                return "".join(line + "\n" for line in shown)[:-1]
            if last or self._finishing:
                shown += self._held_events()  # (the body's end: what is held goes)
            return "".join(line + "\n" for line in shown) + (self._carried(last) if last else "")
        if self.kind == "csv":
            return "\n".join(self._row(self._split_cells(line)) for line in text.split("\n"))
        *whole, tail = text.split("\n\n")
        shown = [shown for event in whole for shown in self._released(self._event(event))]
        if tail and self._finishing:
            # (the stream's last event, cut short by its end: read with those held)
            shown += self._released(self._event(tail)) + self._held_events()
            return "".join(event + "\n\n" for event in shown)[:-2]
        if tail or self._finishing:
            # (the stream's end: what is held goes, then an event its end cut short)
            shown += self._held_events()
        out = "".join(event + "\n\n" for event in shown)
        return out + (self._event(tail) if tail else "")

    def _released(self, event: str) -> list[str]:
        """The events that go once `event` (masked) is read. A value may come across
        events (an LLM's tokens, each event a piece of one text the client puts together:
        OpenAI's `delta.content`, Anthropic's `delta.text`, Ollama's `response`: `4111`,
        ` 1111 1111`, ` 1111`), where the detectors read each piece apart. The texts of
        such pieces (its data as text; in its JSON, an LLM's piece of text: _doc_pieces)
        are put together by their place (a trail of keys) and read by the detectors: a
        value found across them is masked whole into the first event holding a piece of
        it, the pieces after it emptied. So the events from the one where a text's end
        may still be the start of a value (an LLM's piece: a word, or digits and their
        separators, _growing_tail; data as text: those, or a word with an `@`,
        _value_tail; a text body's line: digits and their separators, _digit_lines_tail, its
        lines read together with a newline between, and as one line; a record's other
        string, with the same string of the records after it, so: _SHOWN_TAIL) are held
        until a later event ends it; those before go. Held up to MAX_HELD_EVENTS events
        or MAX_HELD_CHARS characters, and HELD_SECONDS (due: the proxy sends what is
        held then, flush_held); what is held goes when the body ends."""
        texts = _event_texts(event) if self.kind == "sse" else _line_texts(event)
        if not self._pieces:
            self._held_since = self._clock()
        self._pieces.append((event, texts))
        self._spans_masked()
        keep = len(self._pieces)  # (the first event still held)
        for place in dict.fromkeys(p for _, held in self._pieces for p in held):
            pieces = self._place_pieces(place)
            if not pieces:
                continue
            sep = self._piece_separator(place)
            joined = sep.join(self._pieces[i][1][place] for i in pieces)
            tail = (
                _shown_tail
                if _shown_place(place)
                else _growing_tail
                if place
                else _value_tail
                if self.kind == "sse"
                else _digit_lines_tail
            )
            start = tail(joined)
            if start == len(joined):
                continue
            at = 0
            for i in pieces:  # (the event the tail starts in)
                at += len(self._pieces[i][1][place]) + len(sep)
                if at > start:
                    keep = min(keep, i)
                    break
        size = sum(len(held) for held, _ in self._pieces)
        if (
            len(self._pieces) >= MAX_HELD_EVENTS
            or size >= MAX_HELD_CHARS
            or _TEXT_ENDS.search(event)
        ):
            # (and once the stream says its text is whole: a client waiting for that
            # end, and a server waiting for the client, would wait for each other)
            keep = len(self._pieces)
        shown = [held for held, _ in self._pieces[:keep]]
        self._pieces = self._pieces[keep:]
        if keep and self._pieces:
            self._held_since = self._clock()
        return shown

    def due(self) -> float | None:
        """Seconds until the events held go whatever comes (flush_held), None if none
        are: a live stream (a log's tail, a feed) is not kept waiting on a next event
        that may come in hours, nor a client that waits for this one before it sends."""
        if not self._pieces:
            return None
        return max(0.0, self._held_since + HELD_SECONDS - self._clock())

    def flush_held(self) -> bytes:
        """The events held, as the body's bytes, to go now (due)."""
        ends = "\n\n" if self.kind == "sse" else "\n"
        return "".join(e + ends for e in self._held_events()).encode("utf-8")

    def released(self, event: str) -> list[str]:
        """The events that go once `event` (masked already) is read, for a stream whose
        pieces come apart (a WebSocket's messages, each as an event of its data:
        websocket.MaskedFrames): those from the one where a value may go on in the next
        are held, a value found across them masked into its first (_released)."""
        with _scanned(len(event)):
            return self._released(event)

    def held_events(self) -> list[str]:
        """The events `released` holds, to go now (the stream ended, or waited enough)."""
        return self._held_events()

    def _held_events(self) -> list[str]:
        shown = [event for event, _ in self._pieces]
        self._pieces = []
        return shown

    def _place_pieces(self, place: tuple[Any, ...]) -> list[int]:
        """The held events with a text at `place`, in order; at a record's string
        (SHOWN), from the first that is more than one bare number: a stream's ids or
        codes, one a record (`"4001"`, `"4002"`, ...), read as lines are printed cards
        one time in ten, where a value cut into lines holds its groups or words about
        them (`card 4111 1111`, `4111 1111`) where it starts."""
        pieces = [i for i, (_, texts) in enumerate(self._pieces) if place in texts]
        if not _shown_place(place):
            return pieces
        for n, i in enumerate(pieces):
            if not self._pieces[i][1][place].strip().isdigit():
                return pieces[n:]
        return []

    def _spans_masked(self) -> None:
        """The held events' texts at each place put together and read by the detectors
        (_released): a value found across them masked into the first piece's event."""
        places = dict.fromkeys(place for _, texts in self._pieces for place in texts)
        for place in places:
            pieces = self._place_pieces(place)
            if not pieces:
                continue
            if _shown_place(place):
                self._record_spans_masked(place, pieces)
                continue
            sep = self._piece_separator(place)
            joined = sep.join(self._pieces[i][1][place] for i in pieces)
            if len(pieces) < 2 and "\n" not in joined:
                continue
            masked, counts = mask_shown(self.masker, joined)
            if sep:
                # (a text body's lines, each masked already: what they show read again
                # is no new value; only one the lines read together find is masked)
                apart = sum(
                    sum(mask_shown(self.masker, self._pieces[i][1][place])[1].values())
                    for i in pieces
                )
                if sum(counts.values()) <= apart:
                    masked, counts = joined, Counter()
            if "\n" in joined:
                # (a value parted by a newline: an event's `data:` lines, which SSE joins
                # with one, a text body's lines, a piece of text holding one — `4111
                # 1111\n1111 1111` — read as one line too; the newlines kept where the
                # mask keeps the value's length)
                flat, flat_counts = mask_shown(self.masker, joined.replace("\n", " "))
                if sum(flat_counts.values()) > max(sum(counts.values()), apart if sep else 0):
                    masked, counts = _newlines_back(joined, flat), flat_counts
                elif len(pieces) < 2:
                    continue
            if not counts:
                continue
            self.counts.update({f"detector:{k}": v for k, v in counts.items()})
            parts = masked.split(sep) if sep else []
            if len(parts) != len(pieces):
                parts = [masked] + [""] * (len(pieces) - 1)
            for i, text in zip(pieces, parts, strict=True):
                event, texts = self._pieces[i]
                if self.kind == "sse":
                    held = _event_with(event, place, text)
                else:
                    held = _line_with(event, place, text) if place else text
                self._pieces[i] = (held, {**texts, place: text})

    def _record_spans_masked(self, place: tuple[Any, ...], pieces: list[int]) -> None:
        """The held records' strings at `place` read as lines (values.masked_lines): a
        card, an SSN, an IBAN found across them, cut as a reader cuts one
        (values.cut_as_split), masked into the pieces holding it."""
        if len(pieces) < 2:
            return
        texts = [self._pieces[i][1][place] for i in pieces]
        masked, counts = masked_lines(self.masker, texts, None, _RECORD_DETECTORS, cut_as_split)
        if not counts:
            return
        self.counts.update(counts)
        for i, text, now in zip(pieces, texts, masked, strict=True):
            if now != text:
                event, held = self._pieces[i]
                if self.kind == "sse":
                    event = _event_with(event, place, now)
                else:
                    event = _line_with(event, place, now)
                self._pieces[i] = (event, {**held, place: now})

    def _piece_separator(self, place: tuple[Any, ...]) -> str:
        """What parts the held texts at `place` as a client shows them (_released): the
        lines of a text body, a JSON string's in one record after another a newline; an
        LLM's pieces, a stream's data as text nothing."""
        return "\n" if (self.kind == "lines" and not place) or _shown_place(place) else ""

    def _coded_runs(self, text: str) -> str:
        """Base64 in a line of text (`data=eyJwaG9uZSI6...`, a cell, an element's text):
        each run of it read as a JSON string of it is (_string), written back masked, or
        withheld."""
        if len(text) < _EMBEDDED_MIN:
            return text
        found: Counter[str] = Counter()

        def read(run: re.Match[str]) -> str:
            coded = (
                _packed_base64(run[0]) is not None
                or _base64_text(run[0]) is not None
                or _hex_text(run[0]) is not None
                or _base32_text(run[0]) is not None
            )
            return self._string(run[0], found, 1) if coded else run[0]

        text = _EMBEDDED_RUN.sub(read, text)
        if "base64," in text:
            # (a data: URI's base64, however short: _string)
            text = _DATA_BASE64.sub(
                lambda uri: uri["head"] + self._string(uri["payload"], found, 1), text
            )
        self.counts.update(found)
        return text

    def _line(self, line: str) -> str:
        if not line.strip():
            return line
        if self.path_field and self.kind == "lines" and not self.media.endswith("/html"):
            # a text answer to a path naming a field: its lines are that field's value
            return self._value(self.path_field, line, text=True)
        docs = _json_texts(line)
        found: Counter[str] = Counter()
        if docs is None and self._named and line.lstrip()[:1] in ("(", "{"):
            # (a whole row written as one line: PostgreSQL's record text)
            composite = masked_composite(line, self.masker, found)
            line = line if composite is None else composite
        if docs is None and self._named and (in_prose := masked_in_prose(line, self.masker, found)):
            line = in_prose  # (an error's detail: `Failing row contains (7, ann, 5550100).`)
        self.counts.update(found)
        if docs is None:
            line = self._phone_uris(self._coded_runs(line))
            return self._escapes_clear(
                line, self._unescaped_clear(self._text(self._prose(self._fields(line))))
            )
        out = []
        for doc in docs:
            masked, counts = self._mask_doc(doc)
            self.counts.update(counts)
            out.append(_dump(masked).decode("utf-8"))
        return "\n".join(out)

    def _fields(self, line: str) -> str:
        """A text line's values that field rules name, masked as in JSON: `name: value`,
        `name = value`, `"name": value,` (JSON pretty-printed, YAML, properties, logs) and
        `<name ...>value</name>` (XML, HTML), and a URL's password (`scheme://user:pw@host`,
        RFC 3986 §3.2.1). More, never less: a name's whole value goes."""
        if "@" in line and "://" in line and self._field("password"):
            line = _USERINFO.sub(
                lambda m: m["head"] + self._value("password", m["secret"], text=True), line
            )
        found = _KEYED.match(line)
        whole = False
        if found is not None and self._rule(found["key"]):
            rest = found["rest"]
            value = rest.rstrip()
            if value.endswith(","):  # a pretty-printed JSON member's comma stays
                value = value[:-1].rstrip()
            if value and not _BLOCK.fullmatch(value):  # (a YAML block: _unresolved)
                line = line[: found.start("rest")] + self._value(found["key"], value)
                line += rest[len(value) :]
                whole = True
        if not whole:
            label = _LABEL.match(line)
            if label is not None and self._phrase(label["key"]):
                # `Phone Number: 5550100`, `- Mobile phone: ...`: a label's whole value
                value = label["rest"].rstrip()
                line = line[: label.start("rest")] + self._value(label["key"], value, text=True)
                whole = True
        if not whole:
            line = self._inline(line)
        if "</" in line:
            line = _ELEMENT.sub(self._element, line)
        self._unresolved(line)
        return line

    def _unresolved(self, line: str) -> None:
        """Unmaskable when a line, its named values masked, still holds a name a field rule
        names where a table, markup or a key puts a name whose value this line does not
        hold: a cell or column (`<th>phone</th>`, `id\tphone`, `a,phone,b`, `| phone |`), an element
        left open (`<password>` with its text on the next line, CDATA, a nested element),
        an attribute's value (`name="password" value=...`), a key with its value on the
        next line (`"password":` pretty-printed, a YAML block `password: |`). The value
        is somewhere the masks cannot tie to it: the answer is withheld (an allow-list of
        the shapes masked, `_fields`). A name in prose (`your phone number`) is text."""
        if not self._named or not _NAME_HINT.search(line):
            return
        labels = [m["text"] for m in _CELL.finditer(line)]
        if "|" in line or "\t" in line:
            labels += re.split(r"[|\t]", line)
        if "," in line and all(_HEADER_CELL.fullmatch(c) for c in line.split(",")):
            # (a CSV header in a text body, `name,Phone Number`: a column its rows' values
            # are in, which lines of text do not tell)
            labels += line.split(",")
        labels += [m["text"] for m in _QUOTED_LABEL.finditer(line)]
        alone = _LABEL_ALONE.fullmatch(line)
        if alone is not None:
            labels.append(alone["key"])
        for label in labels:
            if " " in label.strip() and self._phrase(label):
                raise Unmaskable(
                    f"text naming the masked field {label.strip()!r} where its value cannot be told"
                )
        if "</" in line:  # (elements whose text a rule masked: their names are done)
            line = _ELEMENT.sub(lambda m: "" if self._rule(m["tag"]) else m[0], line)
        # (read by position, never by copying what comes before or after a name: a line
        # naming a field thousands of times would cost time quadratic in its length)
        text_from = len(line) - len(line.lstrip())  # where the line's text begins
        text_to = len(line.rstrip())  # and ends
        for found in _NAME_HINT.finditer(line):
            start, end = found.span()
            if not self._rule(found[0]):
                continue
            keyed = _KEYED_VALUE.match(line, end)
            if keyed is not None:
                continue  # `name: value`, `name=value`: masked by _fields/_inline
            # (spaces around a cell's name, as Markdown's `| phone |`, are the cell's)
            before = start
            while before > 0 and line[before - 1] == " ":
                before -= 1
            after = end
            while after < len(line) and line[after] == " ":
                after += 1
            namespaced = _names_a_tag(line, before)
            opens = before <= text_from or line[before - 1] in _NAME_OPENS or namespaced
            closes = after >= text_to or line[after] in _NAME_CLOSES or line[after] in ":="
            # (an element's name, its attributes or text not masked: `<password value=..>`)
            tag = (before > 0 and line[before - 1] == "<") or namespaced
            if tag or (opens and closes):
                raise Unmaskable(
                    f"text naming the masked field {found[0]!r} where its value cannot be told"
                )

    def _inline(self, line: str) -> str:
        """Named values inside a line (`"customer": {"phone": ...}`, `id=7&phone=...`,
        `a: 1, phone: ...`): each value a field rule names masked — a JSON value whole,
        else up to the next `&`, `;`, `,`, `}` or `]`."""
        out: list[str] = []
        pos = 0
        pairs = list(_NAMED.finditer(line))
        # a pair whose key names a label and whose value is one naming a masked field
        # (`name=phone&value=5550100`, `{value: 5550100, name: phone}`: a record's
        # attribute written as text, its label before or after its value), as an
        # object `{"name": "phone", "value": ...}` names it: every other value beside it
        labelled, naming = "", None
        for found in pairs:
            if _label_key(found["key"]):
                said = _PLAIN.match(line, found.end())
                label = said[0].strip().strip("\"'") if said else ""
                if label and (labelled := self._pair(label)):
                    naming = found
                    break
        for found in pairs:
            if found.start() < pos or not (self._rule(found["key"]) or labelled):
                continue
            if found is naming:
                continue
            if not self._rule(found["key"]):
                # (a value beside a label naming its field: masked by it, to its end)
                start = found.end()
                plain = _PLAIN.match(line, start)
                end = start + (len(plain.group(0).rstrip()) if plain else 0)
                if end > start and not self._pair(line[start:end].strip().strip("\"'")):
                    out += [line[pos:start], self._value(labelled, line[start:end], text=True)]
                    pos = end
                continue
            start = found.end()
            try:
                value, end = _DECODER.raw_decode(line, start)
                if not _VALUE_ENDS.match(line, end):
                    # (`password=2024Secret`: JSON reads 2024 and stops; the value goes on)
                    raise ValueError("a JSON value's prefix")
            except (ValueError, RecursionError):
                plain = _PLAIN.match(line, start)
                end = start + (len(plain.group(0).rstrip()) if plain else 0)
                if end == start or _BLOCK.fullmatch(line[start:end]):
                    continue
                masked = self._value(found["key"], line[start:end], text=True)
            else:
                done, counts = self.masker.mask_json({self._field(found["key"]): value})
                self.counts.update(counts)
                masked = json.dumps(next(iter(done.values())), ensure_ascii=False)
            out += [line[pos:start], masked]
            pos = end
        if not out:
            return line
        out.append(line[pos:])
        return "".join(out)

    def _element(self, found: re.Match[str]) -> str:
        if not self._rule(found["tag"]):
            return found[0]
        masked = self._value(found["tag"], found["text"], text=True)
        return f"<{found['tag']}{found['attrs'] or ''}>{masked}</{found['tag']}>"

    def _key_field(self, key: str, plural: bool = True) -> str:
        """The field a JSON key names by its words alone (a key a rule names as it is was
        masked by mask_json already), spaces and all (`Phone Number`), in the plural too
        unless `plural` is false; "" for none."""
        if not self._worded or len(key) > 64 or self.masker.rule_for((key,)) is not None:
            return ""
        seen = as_read(key)
        if seen != key:
            # (`ph\u0307one`, `P-H-O-N-E`: a key its reader reads as a field's name,
            # which mask_json, reading keys as written, did not mask)
            read = self._field(seen) or self._phrase(seen)
            if read:
                return read
        return worded_field(self._worded, name_words(key), plural)

    def _rule(self, name: str) -> bool:
        return bool(self._field(name))

    def _held(self, value: Any) -> bool:
        """What a named attribute's value is: scalars (_scalars), or an object of them or
        a list of such objects holding it (`{"raw": ...}`, `[{"number": ...}]`), no
        deeper; not objects of labels alone (`[{"field": "email"}, {"missing": "phone"}]`
        beside `"sortBy": "phone"`: names of fields, not values)."""
        if _scalars(value):
            return True
        holders = value if isinstance(value, list) else [value]
        return all(
            isinstance(h, dict) and all(_scalars(v) for v in h.values()) for h in holders
        ) and any(not (isinstance(v, str) and self._pair(v)) for h in holders for v in h.values())

    def _pair(self, name: str) -> str:
        """The field a pair's name names: a name, or a label of up to three words."""
        return name if self._rule(name) else self._phrase(name)

    def _label_field(self, label: str) -> str:
        """The field a name or label standing alone names (`phone`, `Phone Number`,
        `P-H-O-N-E`, read as_read), "" for none."""
        label = label.strip()
        return self._field(label) or self._phrase(label) or self._phrase(as_read(label))

    def value_key_field(self, key: str, member: Any) -> str:
        """The field a key that is itself a value (no identifier: `+1 555 0100`,
        `ann@x.org`, `5550100`) is, as its member labels it: a label (`"phone"`, `"Phone
        number"`), a list of labels, an object holding one (`{"field": "phone"}`); "" for
        none. Whatever else the object holds (`{"+1 555 0100": "phone", "seen": 3}`: the
        map is not all labels), the key is the value."""
        if _IDENTIFIER.fullmatch(key):
            return ""  # (an id naming what it keys, `customfield_10010`: _aliased)
        if isinstance(member, str):
            return self._phrase(member)
        items = list(member.values()) if isinstance(member, dict) else member
        if not isinstance(items, list):
            return ""
        for m in items:
            # (a label, or an object of labels: `{"meta": {"type": "phone"}}`)
            field = self._phrase(m) if isinstance(m, str) else labelled_field(m, self._phrase)
            if field:
                return field
        return ""

    def aliased(self, doc: Any, found: Counter[str]) -> Any:
        """`doc` with the values under keys a map elsewhere in it names as fields masked
        by those fields: a map of ids to display labels (Jira's `names`, `{"customfield_
        10010": "Phone"}` beside `fields: {"customfield_10010": ...}`; a GraphQL alias
        map) says which field each key is, wherever it keys a value. Such a map: an object
        of labels alone (strings of up to three words), one naming a masked field, under
        keys that name no role (`{"name": "phone", "value": ...}` is a pair, _named_values'
        concern). Nothing else changed."""
        aliases: dict[str, str] = {}
        maps: set[int] = set()
        stack = [doc]
        while stack:
            node = stack.pop()
            if isinstance(node, list):
                stack.extend(node)
            elif isinstance(node, dict):
                if node and all(
                    isinstance(v, str) and _ALIAS_LABEL.fullmatch(v) for v in node.values()
                ):
                    named = {
                        k: f for k, v in node.items() if not _role_key(k) and (f := self._phrase(v))
                    }
                    if named:
                        aliases.update(named)
                        maps.add(id(node))
                described = self._described_keys(node)
                if described:
                    aliases.update(described)
                    if isinstance(context := node.get("@context"), dict):
                        maps.add(id(context))  # (its terms name fields; their IRIs stay)
                stack.extend(node.values())
        if not aliases:
            return doc
        return self._aliases_masked(doc, aliases, maps, found)

    def _described_keys(self, node: dict[str, Any]) -> dict[str, str]:
        """The keys an object describes as masked fields, by which the values they key
        elsewhere in the document are named: a field's descriptor giving its id and its
        label (`{"id": "f1", "label": "Phone"}` beside `"values": {"f1": ...}`: a form's
        or a CRM's custom fields, Airtable's field ids), and a JSON-LD context's terms
        (`"@context": {"p": "http://schema.org/telephone"}` or `{"p": {"@id":
        "schema:telephone"}}`: JSON-LD reads `"p"` as that IRI, W3C JSON-LD 1.1 §4.1)."""
        out: dict[str, str] = {}
        ids = [v for k, v in node.items() if isinstance(v, str | int) and _id_key(k)]
        if len(ids) == 1:
            labels = [v for k, v in node.items() if isinstance(v, str) and _display_key(k)]
            field = next((f for v in labels if (f := self._phrase(v))), "")
            if field:
                out[str(ids[0])] = field
        context = node.get("@context")
        for term, definition in context.items() if isinstance(context, dict) else ():
            iri = definition.get("@id") if isinstance(definition, dict) else definition
            if isinstance(iri, str) and not term.startswith("@"):
                last = re.split(r"[/#:]", iri.rstrip("/#"))[-1]
                if last and (field := self._phrase(last) or self._field(last)):
                    out[term] = field
        return out

    def _aliases_masked(
        self, value: Any, aliases: dict[str, str], maps: set[int], found: Counter[str]
    ) -> Any:
        if isinstance(value, list):
            return [self._aliases_masked(v, aliases, maps, found) for v in value]
        if not isinstance(value, dict) or id(value) in maps:
            return value
        out: dict[str, Any] = {}
        for key, member in value.items():
            field = aliases.get(key)
            if field and member is not None:
                out[key] = self._as_field(field, member, found)
            else:
                out[key] = self._aliases_masked(member, aliases, maps, found)
        return out

    def _by_column(self, lists: list[Any], columns: list[str], found: Counter[str]) -> Any:
        """Columns, not rows: one list per name (`{"names": ["id", "phone"], "columns":
        [[7, 8, 9], [...]]}`, a columnar export), each masked cell by cell by its name."""
        return [
            [self._as_field(columns[i], c, found) for c in cells]
            if self._rule(columns[i])
            else cells
            for i, cells in enumerate(lists)
        ]

    def columns_masked(self, value: Any, found: Counter[str]) -> Any:
        """`value` with its columnar tables (_columnar beside a list of names) masked by
        column, at any depth; nothing else changed (for masked_tables' readers)."""
        if isinstance(value, list):
            return [self.columns_masked(v, found) for v in value]
        if not isinstance(value, dict):
            return value
        names: list[str] = []
        for member in value.values():
            listed = _column_names(member)
            if any(self._rule(c) for c in listed):
                names = listed
                break
        return {
            k: self._by_column(v, names, found)
            if names and _rows(v) and _columnar(v, names)
            else self.columns_masked(v, found)
            for k, v in value.items()
        }

    def keys_masked(self, value: Any, found: Counter[str]) -> Any:
        """`value` with every key that is a value its member labels (value_key_field)
        masked as that field, at any depth; nothing else changed."""
        if isinstance(value, list):
            return [self.keys_masked(v, found) for v in value]
        if not isinstance(value, dict):
            return value
        out: dict[str, Any] = {}
        for key, member in value.items():
            described = self.value_key_field(key, member)
            if described:
                key = _fresh_key(out, str(self._as_field(described, key, found)))
            # (a key its reader reads as a field's name, `ph\u0307one`: mask_json did not)
            worded = self._key_field(key) if key != as_read(key) else ""
            if worded and member is not None:
                out[key] = self._as_field(worded, member, found)
                continue
            out[key] = self.keys_masked(member, found)
        return out

    def _phrase(self, text: str) -> str:
        """The field a label of up to three words names (`Phone Number`, `Mobile phone`,
        `IBAN Number`), as a table's header or a form's label names a column; "" for
        none. (Only where a label stands: a cell, a CSV header, a line's `label:`.)"""
        text = text.strip()
        if not text or len(text) > 64:
            return ""
        if len(text.split()) <= 3:
            if " " not in text:
                return self._field(text)  # (read as_read too)
            field = worded_field(self._worded, name_words(text))
            if field:
                return field
        seen = as_read(text)  # (`p h o n e`, `Phone\u0301 Number`: as its reader reads it)
        return self._phrase(seen) if seen != text else ""

    def _field(self, name: str) -> str:
        """The field a rule names that `name` is ("" for none): `name` itself when a rule
        names it, else the rule whose words `name`'s words hold in a row, as APIs spell a
        column (`phoneNumber`, `customer_phone`, `Card-Number`, `DB_PASSWORD`: the rules
        `phone`, `card_number`, `password`; name_words)."""
        known = self._rules.get(name)
        if known is None and "%" in name:
            # (a query's or form's name percent-encoded, as its reader decodes it: `pass%77ord`)
            known = self._field(unquote(name))
        if known is None:
            known = ""
            # (a field's name is a word: text with a space or of a sentence's length is none)
            if len(name) <= 64 and " " not in name:
                if self.masker.rule_for((name,)) is not None:
                    known = name
                else:
                    known = worded_field(self._worded, name_words(name))
            if not known and len(name) <= 64 and (seen := as_read(name)) != name:
                # (`ph\u0307one`, `P-H-O-N-E`, `p h o n e`: the name its reader reads)
                known = self._field(seen)
            if len(self._rules) < 4096:
                self._rules[name] = known
        return known

    def _value(self, name: str, value: str, text: bool = False) -> str:
        """`value` as the field rule for `name` masks it (a JSON scalar kept JSON)."""
        parsed: Any = value
        quoted = False
        if not text:
            try:
                parsed, quoted = json.loads(value), True
            except ValueError:
                pass
        field = self._field(name) or self._phrase(name) or name
        masked, counts = self.masker.mask_json({field: parsed})
        self.counts.update(counts)
        out = next(iter(masked.values()))
        return json.dumps(out, ensure_ascii=False) if quoted else str(out)

    def _row(self, line: str) -> str:
        """One CSV line: the first names the columns; values of the columns field rules
        name are masked, other cells as a JSON string is (a document or pairs of its own),
        then the detectors read the line. A body naming no such column is read as text is
        (JSON, `name: value` lines labelled CSV)."""
        if not line.strip():
            return line
        try:
            row = self._cells(line)
        except (csv.Error, StopIteration):
            return self._text(line)
        known = None if self._given else self._known_width(len(row))
        if (
            self._columns is None
            and not self._given
            and not known
            and (_values_first(row) or self._csv_header is False)
        ):
            # (a first line of values, not names, or one its Content-Type says is no
            # header: nothing names the columns)
            self._columns, self._rowless = {}, True
        if self._rowless:
            unnamed: Counter[str] = Counter()
            row = self._unnamed_cells(row, unnamed)
            self.counts.update(unnamed)
            return self._text(self._joined(row))
        if self._columns is None and (
            self._given or (known and (self._csv_header or not any(self._phrase(c) for c in row)))
        ):
            # columns the answer's head names (`X-Columns`), or an answer the request
            # follows named for rows this wide: this line is a row, unless it repeats them
            # or its Content-Type says it is a header (shown as it came, the rows under
            # it masked at the columns known). A first line of letters alone is a row
            # too (`Ann,hunter`: a row whose password holds no digit), not names of its
            # own that would leave the known columns unmasked
            names = self._given or known or []
            self._names = list(names)
            self._columns = {
                **{i: True for i, name in enumerate(names) if self._phrase(name)},
                **self.masker.columns_to_mask(names),
            }
            if [c.strip().lower() for c in row] == [n.strip().lower() for n in names] or (
                known and self._csv_header
            ):
                return self._text(line)
        if self._columns is None:
            row = [cell.removeprefix("\ufeff") for cell in row]
            self._names = row
            self._columns = {
                **{i: True for i, name in enumerate(row) if self._phrase(name)},
                **self.masker.columns_to_mask(row),
            }
            if not self._columns:
                self._unresolved(line)  # (columns split by `;` or tabs: not read as such)
            # nothing says it is names: maybe a row of data whose cells hold no digit
            # (`Ann,Smith`; `phone,unlisted`, a kind of contact and its value), read as
            # names over the rest; the cells under it that no masked name heads are read
            # as rows nothing names are, too
            self._unclear = not self._csv_header
            if (
                not self._columns
                or _json_texts(line) is not None
                or self._names_a_value(line)
                or any(_VALUE_BESIDE.search(row[i]) for i in self._columns if i < len(row))
            ):
                # (nor is JSON, or a `name: value` line, labelled CSV: read as text is;
                # nor a name beside a value in one cell, `5550100;phone`, `phone;5550100`:
                # cells parted by another separator)
                return self._line(line)
            named = [i for i in self._columns if i < len(row) and self._phrase(row[i])]
            if named and any(_header_value(c) for i, c in enumerate(row) if i not in self._columns):
                # a first line of pairs, not names (`phone,5550100`: a file of keys and
                # values): a cell that reads as a value is that of the field named
                # nearest before it
                for i, cell in enumerate(row):
                    before = [n for n in named if n < i] or named
                    if i not in self._columns and _header_value(cell):
                        row[i] = self._value(row[before[-1]].strip(), cell, text=True)
                return self._text(self._joined(row))
            return self._text(line)
        if not self._columns:
            if any(is_composite(cell) for cell in row):
                # (a whole row written as one cell: `"(7,5550100,ann)"`)
                whole: Counter[str] = Counter()
                row = [self._string(cell, whole, 0) for cell in row]
                self.counts.update(whole)
                return self._text(self._joined(row))
            if self._names and len(row) != len(self._names):
                line = self._joined(self._astray(row))
            elif self._unclear:
                line = self._joined(self._astray(row))  # (as rows nothing names are)
            return self._line(line)
        found: Counter[str] = Counter()
        for index, cell in enumerate(row):
            if index in self._columns and index < len(self._names):
                row[index] = self._value(self._names[index].strip(), cell, text=True)
            elif self._named:
                # (a cell holding a document or pairs of its own: `{"phone": ...}`)
                row[index] = self._string(cell, found, 0)
                if self._unclear and row[index] == cell and not self.masker.mask_text(cell)[1]:
                    # (what the detectors find they mask as they do, after: _text)
                    row[index] = self._unnamed_cells([cell], found)[0]
        self.counts.update(found)
        if len(row) != len(self._names):
            row = self._astray(row)
        return self._text(self._joined(row))

    def _split_cells(self, line: str) -> str:
        """A CSV line, before _row reads it, with a value cut into its cells masked: a
        card's groups in four cells of a row (`7,4111,1111,1111,1111`), an SSN's 3|2|4,
        which its reader sees side by side as columns. The detectors read the line as
        written, a card in four cells as one value (masked whole, the row's columns lost:
        read after _row, this kept them). Cells of digits side by side, cut as a reader
        cuts such a value (values.cut_as_split: a card's groups of one size, the last
        maybe shorter, or a printed layout, as long as an issued card; an SSN's 3|2|4),
        are read as a JSON
        array's strings are (masked_split_values: each part by its detector's rule); a
        row's other numbers side by side (ids, amounts, ports) are not read as one."""
        rules = self.masker.detector_rules
        if self._tabbed or not ("credit_card" in rules or "ssn" in rules):
            return line  # (TSV: its detectors read cells side by side; no detector to cut)
        if not _DIGIT_CELLS.search(line):
            return line  # (no two cells of digits side by side)
        try:
            cells = self._cells(line)
        except (csv.Error, StopIteration, Unmaskable):
            return line  # (not cells: _row read it as text)
        digits = [c.strip() if _DIGITS_ONLY.fullmatch(c.strip()) else "" for c in cells]
        shown, found, start = list(cells), Counter[str](), 0
        while start < len(cells):
            end = _value_cut_from(digits, start) if digits[start] else None
            if end is None:
                start += 1
                continue
            masked, parts = masked_split_values(self.masker, digits[start:end])
            if not parts:
                start += 1
                continue
            shown[start:end] = masked
            found.update(parts)
            start = end
        if not found:
            return line
        self.counts.update(found)
        return self._joined(shown)

    def _astray(self, row: list[str]) -> list[str]:
        """A row of another width than its header's: a reader puts its cells under other
        columns than the header's places say (pandas reads one cell more as the index,
        and the rest one column to the left), so none is named: each that may be a
        masked field's value is masked as rows nothing names are (_unnamed_cells)."""
        found: Counter[str] = Counter()
        row = self._unnamed_cells(row, found)
        self.counts.update(found)
        return row

    def _cells(self, line: str) -> list[str]:
        """A CSV or TSV line's cells. CSV: as Python's csv reads them; a quoted field
        across lines is Unmaskable (read line by line, its row's later values would
        shift out of the columns the rules name). TSV: parted at each tab; a cell that
        opens a quote it does not close there is Unmaskable (a reader taking TSV for
        CSV with tabs, pandas', reads a quoted tab inside it: other columns)."""
        if not self._tabbed:
            if line.count('"') % 2:
                raise Unmaskable("a CSV field across lines cannot be masked")
            return next(csv.reader([line]))
        cells = line.split("\t")
        if any(c.startswith('"') and (len(c) < 2 or not c.endswith('"')) for c in cells):
            raise Unmaskable("a TSV cell quoted across a tab cannot be masked")
        return cells

    def _joined(self, row: list[str]) -> str:
        """A row's cells written back as its line was (_cells)."""
        if self._tabbed:
            return "\t".join(row)
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow(row)
        return out.getvalue()

    def _prose(self, text: str) -> str:
        """Text that names a field in words and gives a value beside it (`the phone is
        5550100`, `Ann's password is hunter2.`, `5550100 is the phone`, `hunter2
        (password)`): each of the PROSE_WORDS words after the name, and of those before
        it, that holds a digit or `@` is masked by that rule (more, never less: `24/7`
        goes too). A value of letters alone (`password is hunter`) is not told from the
        sentence."""
        if not self._worded or not _ANY_DIGIT.search(text):
            return text
        spoken = self._spoken
        if spoken is None:
            spoken = self._spoken = _spoken_fields(self._worded)
        found = spoken.search(text)
        if found is None:
            return text
        hits: dict[int, tuple[int, str]] = {}  # a value word's start: (its end, its field)
        named_to = 0  # (where the last name ended: no word before it is read twice)
        while found is not None:
            field = worded_field(self._worded, name_words(found[0])) or found[0]
            # (the words before it, within a bounded stretch: a line naming a field
            # thousands of times costs time linear in its length)
            # (a name that is a key, `"email": ...`, `phone=`, names what follows it
            # alone: the words before it are another pair's)
            since = max(named_to, found.start() - _PROSE_BEFORE)
            keyed = _KEY_AFTER.match(text, found.end()) is not None
            # (a word joined to the name by a path's or an identifier's joiner is a part
            # of the name's own word: `customer://7/phone`, `order_7_phone`)
            joined = found.start() > 0 and text[found.start() - 1] in _NAME_JOINERS
            before = [
                w
                for w in ([] if keyed else _PROSE_WORD.finditer(text, since, found.start()))
                if w.end() < found.start() or not joined
            ]
            after = itertools.islice(_PROSE_WORD.finditer(text, found.end()), PROSE_WORDS)
            last = found.end()
            for word in (*before[-PROSE_WORDS:], *after):
                if _VALUE_LIKE.search(word[0]) and word.start() not in hits:
                    hits[word.start()] = (word.end(), field)
                    last = max(last, word.end())
            named_to = found.end()
            found = spoken.search(text, last)
        if not hits:
            return text
        out, at = [], 0
        for start in sorted(hits):
            end, field = hits[start]
            if start < at:
                continue
            out += [text[at:start], str(self._value(field, text[start:end], text=True))]
            at = end
        out.append(text[at:])
        return "".join(out)

    def _carried(self, line: str) -> str:
        """A line of text read as _line reads it, prose going on from the line before:
        a field named in words with fewer than PROSE_WORDS words after it on its line
        (`Ann's phone is`, `call her on the phone`, `Phone (mobile):`) has its value
        looked for in the next line's first words too, as _prose looks on one line."""
        carry, self._carry = self._carry, None
        if self._aligned is not None:
            # (columns aligned under a header naming a masked one: `column -t`, a
            # report, sqlcmd's or a CLI's table printed as text)
            found: Counter[str] = Counter()
            try:
                aligned = self._aligned.line(line, found)
            except Ambiguous:
                raise Unmaskable("rows under a header of aligned columns cannot be cut") from None
            self.counts.update(found)
            if aligned is not None:
                return self._text(aligned)
        if not line.strip():
            self._carry = carry  # (a blank line between the name and its value)
            return line
        if self._named and ("&" in line or "*" in line):
            self._yaml_aliases(line)
        if self._named and _LITERAL_ROWS.fullmatch(line.strip()):
            # (rows printed as a language's literals, `[(7, '5550100', 'hunter2')]`: a
            # driver's fetchall() shown as text, which names no column)
            literal: Counter[str] = Counter()
            line = _LITERAL_CELL.sub(lambda m: self._literal_cell(m, literal), line)
            self.counts.update(literal)
        shown_value, self._shown_value = self._shown_value, False
        if shown_value and self._names_label(line):
            # a label after its value (`- value: 5550100` then `  name: phone`: a
            # record's attribute in YAML or properties): the value went before the name
            raise Unmaskable("text naming a masked field after a line that may hold its value")
        masked = self._carried_line(line, carry)
        rule = self.masker.strictest_field_rule()
        if rule is not None and (lone_value(masked) or (">" in masked and "<" in masked)):
            # a line, or an element's text (`<td>5550100</td>`, `<v>5550100</v>`), that
            # is one value and nothing else (a text/plain answer `5550100`, `+15550100`,
            # `078051120`, one a line; a table's cell nothing names): the detectors read
            # no value in it; masked when it reads as a masked field's value (lone_value)
            lone: Counter[str] = Counter()

            def alone(text: str) -> str:
                token = text.strip().strip("\"'")
                return text.replace(token, str(self._as_field(rule.field, token, lone)))

            if lone_value(masked):
                masked = alone(masked)
            else:
                masked = _ELEMENT_TEXT.sub(
                    lambda m: ">" + alone(m[1]) + "<" if lone_value(m[1]) else m[0], masked
                )
            self.counts.update(lone)
        self._shown_value = bool(_VALUE_LIKE.search(masked))
        return masked

    def _names_label(self, line: str) -> bool:
        """Whether a line gives a label naming a masked field under a key naming a
        label (`name: phone`, `- key=Phone Number`, `field: "password"`), or is such a
        label alone between marks (`(phone)`, `: phone`, `# Phone Number`)."""
        found = _KEYED.match(line)
        if found is not None and _label_key(found["key"]):
            said = found["rest"].strip().rstrip(",").strip().strip("\"'")
            return bool(said) and bool(self._label_field(said))
        alone = line.strip().strip(_LABEL_MARKS).strip()
        if not _LABEL_ALONE_TEXT.fullmatch(alone):
            return False  # (`password   hunter2`: a name and its value, aligned)
        return bool(self._label_field(alone))

    def _yaml_aliases(self, line: str) -> None:
        """YAML anchors (`x: &a 5550100`) noted, and an alias of one under a masked field
        (`phone: *a`: its value stood on an earlier line, under another name) refused:
        masking the alias masks nothing."""
        for anchor in _YAML_ANCHOR.finditer(line):
            if len(self._anchors) < MAX_ANCHORS:
                self._anchors.add(anchor["name"])
        for alias in _yaml_aliases_under(line):
            name = alias["name"].strip().lstrip("-? ").strip()
            if alias["alias"] in self._anchors and self._field(name):
                raise Unmaskable("a YAML alias under a masked field cannot be masked")

    def _carried_line(self, line: str, carry: tuple[str, int] | None) -> str:
        shown = line
        if carry is not None:
            field, left = carry
            out, at = [], 0
            for n, word in enumerate(_PROSE_WORD.finditer(line)):
                if n >= left:
                    break
                if _VALUE_LIKE.search(word[0]):
                    out += [line[at : word.start()], str(self._value(field, word[0], text=True))]
                    at = word.end()
            shown = "".join(out) + line[at:]
        seen = as_read(shown)
        if seen != shown:
            # (a name split by characters no one sees, `ph<U+200B>one: 5550100`, marked
            # `ph\u0307one`, in fullwidth forms, spelt out `P-H-O-N-E`, as a reader reads
            # it: read so, and shown so when that masks anything)
            self._carry = self._tail_field(seen)
            before = sum(self.counts.values())
            masked = self._line(seen)
            if sum(self.counts.values()) != before:
                return masked
            return self._line(shown)
        self._carry = self._tail_field(line)
        if self._carry is not None and _document_line(line):
            # (a document naming columns, `["id", "phone"]`: they carry to the rows of
            # the documents after it, not its words as prose, which cut `{"0": 7, "1":
            # ...}` apart into `{"[REDACTED]"[REDACTED],...`)
            self._carry = None
        return self._line(shown)

    def _tail_field(self, line: str) -> tuple[str, int] | None:
        """The last field a line names in words, when fewer than PROSE_WORDS words follow
        it there and none of them a value (a digit or `@` in it): (its field, how many
        words of the next line may be its value)."""
        if not self._worded or _ALIGNED.search(line.strip()):
            return None  # (a header of columns aligned with spaces or tabs: a table's)
        spoken = self._spoken
        if spoken is None:
            spoken = self._spoken = _spoken_fields(self._worded)
        found = list(spoken.finditer(line))
        if not found:
            return None
        last = found[-1]
        words = [w[0] for w in _PROSE_WORD.finditer(line, last.end())]
        if len(words) >= PROSE_WORDS or any(_VALUE_LIKE.search(w) for w in words):
            return None  # (its value was on its line: `phone: 5550100`)
        after = len(words)
        return worded_field(self._worded, name_words(last[0])) or last[0], PROSE_WORDS - after

    def _names_a_value(self, line: str) -> bool:
        """Whether a line gives a value beside the name of a field a rule names
        (`phone: ...`, `Phone Number: ...`, `a=1&phone=...`), as _fields reads it."""
        found = _KEYED.match(line)
        if found is not None and self._rule(found["key"]):
            return True
        label = _LABEL.match(line)
        if label is not None and self._phrase(label["key"]):
            return True
        return ("=" in line or ":" in line) and self._inline(line) != line

    def _name_held(self, line: str) -> str:
        """An event's `id:` or `event:` line, its value withheld when a word of it names a
        masked field and it holds a digit or `@` beside (`id: phone/5550100`, `event:
        5550100-phone`: a name beside its value, which no separator tells)."""
        name, colon, value = line.partition(":")
        value = value.removeprefix(" ")
        if (
            name not in ("id", "event")
            or not colon
            or not self._worded
            or not value
            or not _VALUE_LIKE.search(value)  # (a label alone: `id: phone`)
        ):
            return line
        seen = as_read(value)
        if any(worded_field(self._worded, name_words(v)) for v in dict.fromkeys((value, seen))):
            self.counts["field:event"] += 1
            return f"{name}: {REDACTED_VALUE}"
        return line

    def _event_names(self, lines: list[str]) -> list[str]:
        """An event's `id:` and `event:` lines, a value in them masked when the event or
        one before it in the stream named a masked field in either (`event: phone` then
        `id: 5550100`; `id: phone`, then a later event's `id: 5550100`: the client's
        lastEventId or event type carries it beside the name). A name coming after such
        a value went (`id: 5550100`, then `event: phone`) cannot be masked: Unmaskable
        (a short stream is refused whole; a long one ends there)."""
        if not self._worded:
            return lines
        said = [
            (n, ln.partition(":")[2].removeprefix(" "))
            for n, ln in enumerate(lines)
            if ln.startswith(("id:", "event:")) or ln in ("id", "event")
        ]
        if not said:
            return lines
        naming = [f for _, v in said if (f := self._label_field(v))]
        if naming:
            if self._value_named and not self._name_said:
                raise Unmaskable(
                    "an event stream naming a masked field after ids that may be its value"
                )
            self._name_said = naming[-1]
        field = naming[-1] if naming else self._name_said
        out = list(lines)
        for n, value in said:
            if not value or self._label_field(value) or not _VALUE_LIKE.search(value):
                continue
            if field:
                name = lines[n].partition(":")[0]
                out[n] = f"{name}: {self._value(field, value, text=True)}"
            else:
                self._value_named = True  # (a value-like id went as it came)
        return out

    def _event(self, event: str) -> str:
        """One SSE event (WHATWG HTML §9.2.6): its data lines are one value, masked as
        JSON when they parse, else as a line of text; every other line (`event:`, `id:`,
        comments), which a client sees as well, is read as a line of text too; an event
        named as a rule names a field (`event: phone`) has its data masked by that rule."""
        if not event:
            return event
        lines = event.split("\n")
        lines = self._event_names(lines)
        data = [ln[5:].removeprefix(" ") for ln in lines if ln.startswith("data:")]
        # (`id:` is the client's lastEventId: read as text is; a comment, which a raw
        # client shows, as a line of a text body is, prose and all: `: phone 5550100`;
        # `retry:` only as the delay of up to six digits it is, `retry: 5550100` dropped)
        others = [
            ":" + self._line(ln[1:])
            if ln.startswith(":")
            else self._unescaped_clear(self._text(self._fields(self._name_held(ln))))
            for ln in lines
            if not ln.startswith("data:") and (not ln.startswith("retry") or _RETRY.fullmatch(ln))
        ]
        for ln in lines:
            if ln == "id" or ln.startswith("id:"):
                # (WHATWG HTML §9.2.6: `id` sets the last event ID, kept for the events
                # after it: an id naming a field names their data as that field's)
                self._id_field = self._label_field(ln[3:].removeprefix(" "))
        if not data:
            return "\n".join(others)
        value = "\n".join(data)
        names = [ln[6:].strip() for ln in lines if ln.startswith("event:")]
        named = next((n for n in names if self._label_field(n)), None) or self._id_field or None
        # an event whose data is a label alone (`data: {"field": "phone"}`, `data:
        # "phone"`) names the next event's data, as a label alone on its line names the
        # next line's; one after an event whose data may be a value cannot be masked
        labelled, self._data_field = self._data_field, self._data_label(value)
        shown_value, self._data_value = self._data_value, False
        if self._data_field:
            if shown_value or self._value_named:
                raise Unmaskable(
                    "an event stream naming a masked field after data or ids that may be its value"
                )
            self._name_said = self._data_field  # (and the ids and event names after it)
        named = named or labelled or None
        if named is not None:
            # an event whose name a rule names (`event: phone`) carries that field's value
            return "\n".join(others + [f"data: {self._value(named, d, text=True)}" for d in data])
        docs = _json_texts(value)
        if docs is None:
            # (prose too: `data: Ann's phone is 5550100`, `data: 5550100 (mobile)`)
            masked_lines = [
                f"data: {self._text(self._prose(self._fields(self._coded_runs(d))))}" for d in data
            ]
        else:
            masked_lines = []
            for doc in docs:
                masked, counts = self._mask_doc(doc)
                self.counts.update(counts)
                masked_lines.append("data: " + _dump(masked).decode("utf-8"))
            if (
                len(docs) == 1
                and not isinstance(docs[0], dict | list | str)
                and masked_lines[0] == "data: " + _dump(docs[0]).decode("utf-8")
            ):
                # (a number as it came, ` 1111` a piece of a text: _released)
                masked_lines = [f"data: {d}" for d in data]
        self._data_value = any(_VALUE_LIKE.search(ln[6:]) for ln in masked_lines)
        return "\n".join(others + masked_lines)

    def _data_label(self, value: str) -> str:
        """The field an event's data names when it is a label alone: a string (`phone`,
        `"Phone Number"`), or a JSON object of labels alone (`{"field": "phone"}`)."""
        if len(value) > _DATA_LABEL_CHARS or not self._named:
            return ""  # (a label alone is short: longer data is parsed once, below)
        try:
            doc = json.loads(value, object_pairs_hook=_unique_names)
        except (ValueError, RecursionError):
            doc = value
        if isinstance(doc, str):
            return self._label_field(doc) if len(doc) <= 64 else ""
        if isinstance(doc, dict | list) and (isinstance(doc, dict) or one_label(doc)):
            labels = doc if isinstance(doc, dict) else {"field": doc}
            return labelled_field(labels, self._phrase) or ""
        return ""


_DATA_LABEL_CHARS = 256  # (an event's data read for a label alone up to this length)
_RETRY = re.compile(r"retry: ?[0-9]{1,6}")  # (a reconnection delay in ms, WHATWG HTML §9.2.6)
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})+(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_BASE64URL = re.compile(r"[A-Za-z0-9_\-]+={0,2}")
_BASE64_UNPADDED = re.compile(r"[A-Za-z0-9+/]+")
MIN_BASE64_TEXT = 12  # (shorter: a word as like to be base64 as not)


# URIs whose body is a telephone number: tel (RFC 3966), fax and modem (RFC 2806), sms
# (RFC 5724), mms, SMSTO/MMSTO (QR codes), callto, facetime, skype, WTAI's make-call and
# add-to-phonebook, a viber link's `number=`: wherever such a URI stands (a link, an
# href, a resource's URI) its number is a phone number, whatever names the member
_PHONE_URI = re.compile(
    r"(?i)(?<![\w.+-])(?P<head>(?:tel|fax|modem|sms|smsto|mms|mmsto|callto|facetime"
    r"|facetime-audio|skype):(?://)?|wtai://wp/(?:mc|ap);"
    r"|viber://[^\s?#\"'<>]*\?(?:[^\s#\"'<>]*?&)?number=)"
    r"(?P<number>[^\s?;,&#\"'<>\\]+(?:[ \t]+(?=[\d(+])[^\s?;,&#\"'<>\\]+)*)"
)


_DATA_BASE64 = re.compile(
    r"(?i)(?P<head>\bdata:[^,\s\"'<>]*;base64,)(?P<payload>[A-Za-z0-9+/_-]+={0,2})"
)


def masked_phone_uris(text: str, mask: Callable[[str], str]) -> str:
    """`text` with the number of each URI of _PHONE_URI as `mask` makes it."""
    if ":" not in text and ";" not in text:
        return text
    return _PHONE_URI.sub(lambda found: found["head"] + mask(found["number"]), text)


def _packed_base64(value: str) -> bytes | None:
    """The bytes a string is the base64 of when they are a compressed file
    (packed.packed_kind: gzip, zip, bzip2, xz, tar, ...), else None; its opening
    decoded first (a tar archive's mark stands 257 bytes in), the rest only then."""
    if len(value) < MIN_BASE64_TEXT or not _BASE64_OPENING.match(value):
        return None
    try:
        opening = base64.b64decode(value[:_SNIFFED_LETTERS])
    except (binascii.Error, ValueError):
        return None
    if not packed_kind(opening):
        return None
    try:
        return base64.b64decode(_SPACES.sub("", value), validate=True)
    except (binascii.Error, ValueError):
        return None


_SNIFFED_LETTERS = 4 * -(-TAR_SNIFFED // 3)  # base64 letters of TAR_SNIFFED bytes
_BASE64_OPENING = re.compile(rf"[A-Za-z0-9+/]{{{MIN_BASE64_TEXT}}}")
_SPACES = re.compile(r"\s+")


def _base64_text(value: str) -> tuple[str, str] | None:
    """(the text, its charset) a string is the base64 (standard or URL-safe) of, or None:
    too short, or not base64. Bytes that are not UTF-8 are read as Latin-1 (text in a
    legacy charset, or binary: a reader's tool shows its runs of text either way)."""
    if len(value) < MIN_BASE64_TEXT:
        return None
    if "\n" in value and _MIME_LINES.fullmatch(value):
        value = _SPACES.sub("", value)  # (MIME's lines, RFC 2045 §6.8: read joined)
    letters = value.rstrip("=")
    padding = "=" * (-len(letters) % 4)
    if _BASE64.fullmatch(value):
        raw = base64.b64decode(value)
    elif len(letters) % 4 == 1:
        # (no base64 is 4n+1 letters long: a name such as `find_customer`, which
        # b64decode refuses with an error, not a None)
        return None
    elif _BASE64_UNPADDED.fullmatch(value):
        # (base64 without its padding: a JWT's segments, a cookie, an id)
        raw = base64.b64decode(letters + padding)
    elif _BASE64URL.fullmatch(value):
        raw = base64.urlsafe_b64decode(letters + padding)
    else:
        return None
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "latin-1"


_MIME_LINES = re.compile(r"(?:[A-Za-z0-9+/]+={0,2}\r?\n)+[A-Za-z0-9+/]*={0,2}")
_EMBEDDED_MIN = 16  # (a run of base64 inside a text read from this length, as MCP's)
_EMBEDDED_RUN = re.compile(r"(?<![\w+/-])[A-Za-z0-9+/_-]{16,}={0,6}(?![\w+/=-])")
# what no text holds: control characters (C0 but tab and line breaks, DEL, C1)
_UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _base64_like(original: str, data: bytes) -> str:
    """`data` in base64 as `original` was written (URL-safe or not, padded or not)."""
    if "-" in original or "_" in original:
        encoded = base64.urlsafe_b64encode(data).decode("ascii")
    else:
        encoded = base64.b64encode(data).decode("ascii")
    return encoded if original.endswith("=") or len(original) % 4 == 0 else encoded.rstrip("=")


# the words of a key that says what role the field its value names plays (`{"field":
# "email"}`, `{"sortBy": "phone"}`, `{"missing": "iban"}`), not what value it has: kept
_ROLE_NAMES = (
    "field fields name key type kind column col attribute attr label property prop sort order"
    " group by path title category class tag channel method via source target mode contact"
    " preferred error errors message msg detail reason hint missing invalid required"
    " description text value format default primary"
)
_ROLE_WORDS = frozenset(_ROLE_NAMES.split())


# the keys a field's label stands under (`{"name": "Phone Number", "value": ...}`)
_LABEL_WORDS = frozenset(
    {"field", "fields", "name", "key", "type", "kind", "column", "col", "attribute", "attr"}
    | {"label", "property", "prop", "display", "id"}
)


# the keys a field's descriptor gives its id under, and its display label under
# (`{"id": "f1", "label": "Phone"}`, `{"fieldId": 12, "displayName": "Phone"}`)
_ID_WORDS = frozenset({"id", "key", "uid", "ref", "slug", "code"})
_DISPLAY_WORDS = frozenset({"label", "name", "title", "display", "caption", "header"})


# the keys a path to a field stands under as a list of its segments (`"loc": ["body",
# "phone"]`: FastAPI/Pydantic errors; `"path"`: GraphQL errors; `"keys"`: a binding's)
_PATH_WORDS = frozenset({"path", "loc", "location", "pointer", "field", "key", "keys", "attr"})
_PATH_SEGMENTS = 16


@functools.lru_cache(maxsize=1024)
def _path_key(key: str) -> bool:
    words = name_words(key)
    return bool(words) and words[-1] in _PATH_WORDS and len(words) <= 2


def path_end(key: str, member: Any) -> str:
    """The last segment of a path given as a list of its segments (strings and indices)
    under a key naming a path (`"loc": ["body", "phone"]`), "" for none."""
    if (
        not isinstance(member, list)
        or not 1 < len(member) <= _PATH_SEGMENTS
        or not isinstance(member[-1], str)
        or not all(isinstance(s, str | int) and not isinstance(s, bool) for s in member)
        or not _path_key(key)
    ):
        return ""
    return member[-1]


@functools.lru_cache(maxsize=1024)
def _id_key(key: str) -> bool:
    words = name_words(key)
    return bool(words) and words[-1] in _ID_WORDS and len(words) <= 2


@functools.lru_cache(maxsize=1024)
def _display_key(key: str) -> bool:
    words = name_words(key)
    return bool(words) and words[-1] in _DISPLAY_WORDS and len(words) <= 2


@functools.lru_cache(maxsize=1024)
def _label_key(key: str) -> bool:
    words = name_words(key)
    return bool(words) and all(w in _LABEL_WORDS for w in words)


def _role_key(key: str) -> bool:
    words = name_words(key)
    return bool(words) and all(w in _ROLE_WORDS for w in words)


# characters a text shows as nothing: soft hyphen, zero-width space and joiners, marks of
# direction, word joiner and invisible operators, a BOM inside a text
_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
# a word spelt out letter by letter (`P-H-O-N-E`, `p h o n e`, `p.h.o.n.e`): three
# letters or more, each alone between separators
_SPELT = re.compile(r"(?<![^\W_])[^\W\d_](?:[\s\-._/*\u00b7\u2022]{1,3}[^\W\d_]){2,}(?![^\W_])")
_SPELT_GAP = re.compile(r"[\s\-._/*\u00b7\u2022]+")


_OTHER_DIGIT = re.compile(r"(?![0-9])\d")  # (a decimal digit of any other script)


def as_read(text: str) -> str:
    """`text` as a reader reads the words in it: without characters no one sees
    (_INVISIBLE, control characters), its compatibility forms as their letters (NFKD: a
    fullwidth colon is `:`), without combining marks (`ph\u0307one` is `phone`), a word
    spelt out letter by letter (`P-H-O-N-E`) as the word. (Read so to find names; as it
    came when nothing changes.)"""
    seen = _UNPRINTABLE.sub("", _INVISIBLE.sub("", text))
    if not seen.isascii():
        seen = "".join(
            c for c in unicodedata.normalize("NFKD", seen) if unicodedata.category(c) != "Mn"
        )
        # (a digit of another script as the digit it is: `٤١١١`, `४१११` read as 4111)
        seen = _OTHER_DIGIT.sub(lambda d: str(unicodedata.decimal(d[0])), seen)
    if _SPELT.search(seen):
        seen = _SPELT.sub(_spelt_words, seen)
    return seen


def _spelt_words(found: re.Match[str]) -> str:
    """A run of letters spelt out, as the words its reader reads: the letters joined, a
    gap unlike the one between most of its letters a space (`p-h-o-n-e n-u-m-b-e-r`,
    `P H O N E  N U M B E R`: phone_number, one name of its words)."""
    gaps = _SPELT_GAP.findall(found[0])
    letters = _SPELT_GAP.split(found[0])
    usual = Counter(gaps).most_common(1)[0][0]
    return letters[0] + "".join(
        ("" if gap == usual else "_") + letter
        for gap, letter in zip(gaps, letters[1:], strict=True)
    )


def labelled_field(member: Any, phrase: Callable[[str], str], depth: int = 0) -> str | None:
    """The field an object of labels alone names (`{"name": "phone"}`, `{"meta": {"type":
    "Phone number"}}`: a descriptor of a field, nested up to _LABELS_DEPTH objects, each
    label under a key naming a role, _role_key), by
    `phrase` (a label's field, "" for none); "" when it is such an object naming none,
    None when it is no such object (it holds a number, a value-like string, a list)."""
    if not isinstance(member, dict) or not member or depth > _LABELS_DEPTH:
        return None
    field = ""
    for key, item in member.items():
        if isinstance(item, list) and item and all(isinstance(i, str) for i in item):
            # (`"field": ["phone"]`)
            if not all(_ALIAS_LABEL.fullmatch(as_read(i)) for i in item) or not _role_key(key):
                return None
            field = field or next((f for i in item if (f := phrase(i))), "")
        elif isinstance(item, str):
            if not _ALIAS_LABEL.fullmatch(as_read(item)) or not _role_key(key):
                return None  # (`{"+1 555 0100": "phone"}` is a value keyed: no descriptor)
            field = field or phrase(item)
        elif isinstance(item, int) and key.lower() in _ORDINAL_KEYS:
            continue  # (`{"type": "phone", "id": 3}`: the descriptor's own number)
        elif isinstance(item, dict):
            inner = labelled_field(item, phrase, depth + 1)
            if inner is None:
                return None
            field = field or inner
        elif not isinstance(item, bool) and item is not None:
            return None
    return field


_LABELS_DEPTH = 3


def one_label(member: Any) -> bool:
    """A list holding one string (`["phone"]`: a label listed)."""
    return isinstance(member, list) and len(member) == 1 and isinstance(member[0], str)


_ORDINAL_KEYS = frozenset({"id", "index", "position", "order", "version", "ordinal"})
_ALIGNED = re.compile(r" {2,}|\t")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")  # a key naming, not a value keying
# a display label of up to three words (`Phone`, `Story Points`, `Mobile phone number`)
_ALIAS_LABEL = re.compile(r"[^\W\d][\w\-.]*(?: [^\W\d][\w\-.]*){0,2}")


def _value_like(key: str) -> bool:
    """A key that is no identifier (a digit, `@`, `+`, a space in it): a value keying."""
    return re.fullmatch(r"[A-Za-z_][A-Za-z_\-]*", key) is None


PROSE_WORDS = 4  # words after a field's name in prose read for its value, and before it
# a value beside a name in one CSV header cell: a digit or `@`, and a separator no name
# holds (`phone;5550100`; not `phone2`, `q1_2024`, `Phone No. 2`)
_VALUE_BESIDE = re.compile(r"(?=.*[0-9@])(?=.*[^\w .\-\ufeff])")
# a label alone: up to three words of letters (`phone`, `Phone Number`, `Teléfono`)
_LABEL_ALONE_TEXT = re.compile(r"[^\W\d_][^\W\d]*(?:[ \-][^\W\d_][^\W\d]*){0,2}")
_LABEL_MARKS = " \t()[]{}<>#*/:;=|-!\"'`"  # (around a label alone on its line)
_PROSE_BEFORE = 256  # characters before a name read for the words before it
_NAME_JOINERS = frozenset("/._-\\" + string.ascii_letters)
_KEY_AFTER = re.compile(r"""["']?[ \t]*[:=]""")  # (after a name: it is a key)
_ANY_DIGIT = re.compile(r"[0-9@]")
# two CSV cells of digits side by side (a value may be cut across them), and one cell's
_DIGIT_CELLS = re.compile(r"(?:^|,)[ \t]*\"?[ \t]*[0-9]+[ \t]*\"?[ \t]*,[ \t]*\"?[ \t]*[0-9]")
_DIGITS_ONLY = re.compile(r"[0-9]{1,19}")
_PROSE_WORD = re.compile(r"[^\s,;()\[\]{}\"'<>]+")
_VALUE_LIKE = re.compile(r"[0-9@]")


@functools.lru_cache(maxsize=64)
def _spoken_fields(worded: tuple[tuple[str, tuple[str, ...]], ...]) -> re.Pattern[str]:
    """A field rule's words as prose writes them (`card number`, `Phone`, `passwords`);
    a position is tried only when it holds a letter one of them begins with (a field's
    other names make a hundred alternatives, each tried in turn)."""
    spelt = sorted(
        {r"[\s_-]*".join(map(re.escape, words)) for _, words in worded if words},
        key=len,
        reverse=True,
    )
    firsts = "".join(sorted({c for _, words in worded if words for c in words[0][:1]}))
    return re.compile(
        r"(?i)(?<![a-z0-9])(?=[" + re.escape(firsts) + "])(?:" + "|".join(spelt) + r")"
        r"(?:e?s)?(?![a-z0-9])"
    )


def _fresh_key(out: dict[str, Any], key: str) -> str:
    """`key`, or `key#2`, `key#3`, ... when `out` has it (masked keys alike stay apart)."""
    n, fresh = 1, key
    while fresh in out:
        n += 1
        fresh = f"{key}#{n}"
    return fresh


_HEX = re.compile(r"(?:[0-9a-f]{2}){8,}|(?:[0-9A-F]{2}){8,}")


def _hex_text(value: str) -> str | None:
    """The text a string of 16 or more hex digits (one case) is written as, when its bytes
    are UTF-8 text of printable characters and white space; else None."""
    if len(value) < 16 or not _HEX.fullmatch(value := value.strip()):
        return None
    try:
        text = bytes.fromhex(value).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    return text if all(c.isprintable() or c in "\t\r\n" for c in text) else None


# RFC 4648 §6 base32, one case throughout, padded (to 8 characters) or not
_BASE32 = re.compile(
    r"(?:[A-Z2-7]{8})*(?:[A-Z2-7]{2}(?:={6})?|[A-Z2-7]{4}(?:={4})?|[A-Z2-7]{5}(?:={3})?"
    r"|[A-Z2-7]{7}=?)?"
    r"|(?:[a-z2-7]{8})*(?:[a-z2-7]{2}(?:={6})?|[a-z2-7]{4}(?:={4})?|[a-z2-7]{5}(?:={3})?"
    r"|[a-z2-7]{7}=?)?"
)
_BASE32_LINES = re.compile(
    r"(?:[A-Z2-7]+=*\r?\n)+[A-Z2-7]*=*\s*|(?:[a-z2-7]+=*\r?\n)+[a-z2-7]*=*\s*"
)


def _base32_text(value: str) -> str | None:
    """The text a string of 16 or more base32 characters (RFC 4648 §6: `base32`, TOTP
    secrets, some queues' ids; one case, padded or not) is written as, when its bytes
    are UTF-8 text of printable characters and white space; else None. Words in
    capitals run together are base32's letters as well, but their bytes are no text."""
    value = value.strip()
    if "\n" in value and _BASE32_LINES.fullmatch(value):
        value = _SPACES.sub("", value)  # (`base32` wraps its lines at 76: read joined)
    if len(value) < 16 or not _BASE32.fullmatch(value):
        return None
    letters = value.rstrip("=").upper()
    try:
        text = base64.b32decode(letters + "=" * (-len(letters) % 8)).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return text if all(c.isprintable() or c in "\t\r\n" for c in text) else None


def _as_base32(text: str, written: str) -> str:
    """`text` written as base32 as `written` was: its case, its padding or none, its
    lines as long."""
    coded = base64.b32encode(text.encode("utf-8")).decode("ascii")
    coded = coded if written.rstrip().endswith("=") else coded.rstrip("=")
    coded = coded.lower() if written.islower() else coded
    lines = written.strip().splitlines()
    if len(lines) < 2:
        return coded
    width = len(lines[0].rstrip("\r"))
    shown = "\n".join(coded[k : k + width] for k in range(0, len(coded), width))
    return shown + "\n" if written.endswith("\n") else shown


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _may_be_value(value: Any) -> bool:
    """A scalar that may be a field's value: a number, or a string holding a digit or
    `@` (not a name, true/false or null)."""
    if isinstance(value, bool) or value is None:
        return False
    return not isinstance(value, str) or bool(_VALUE_LIKE.search(value))


_PLAIN_NUMBER = re.compile(r"[-+]?[0-9]+(?:[.,][0-9]+)?%?")
_ISO_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?"
    r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?"
)
MAX_PLAIN_DIGITS = 6  # (a phone number has seven: 5550100)


def _unnamed_value(value: Any) -> bool:
    """Whether a cell no name reaches may be a masked field's value: an integer (or a
    float with no fraction) of seven digits or more, a string holding a digit or `@` but
    a number of up to six digits (`12.50`, `-3`, `40%`) or an ISO 8601 date or time."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int | float):
        return float(value).is_integer() and abs(value) >= 10**MAX_PLAIN_DIGITS
    if not isinstance(value, str) or not _VALUE_LIKE.search(value):
        return False
    text = value.strip()
    if _ISO_TIME.fullmatch(text):
        return False
    digits = sum(c.isdigit() for c in text)
    return not (_PLAIN_NUMBER.fullmatch(text) and digits <= MAX_PLAIN_DIGITS)


# a line of rows printed as literals: a tuple or list of tuples or lists (Python's repr
# of fetchall(), a REPL's), and its cells: quoted strings and whole numbers
_LITERAL_ROWS = re.compile(r"[\[(]\s*[\[(][^\n]*,[^\n]*[\])]\s*[\])],?|\([^\n]*,[^\n]*\),?")
_LITERAL_CELL = re.compile(
    r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"|(?<![\w.'\"])[-+]?[0-9][0-9_]*(?![\w.'\"])"
)


def table_shaped(text: str, delimiter: str = ",") -> bool:
    """Whether a text is comma-separated rows (tab-separated: `delimiter` `\t`) whatever
    its first line holds: two lines or more, every one as many cells (two or more), none
    opening as a literal or a document does. Its first line may be names or a row: which
    cannot be told when it names no masked column (BodyMask._row reads the rows under it
    as rows nothing names, too)."""
    lines = [line for line in text.split("\n") if line.strip()]
    if not 1 < len(lines) <= 100_000 or delimiter not in lines[0]:
        return False
    if any(line.lstrip()[:1] in ("[", "(", "{") for line in lines):
        return False
    try:
        rows = (
            [line.rstrip("\r").split("\t") for line in lines]
            if delimiter == "\t"
            else list(csv.reader(lines, delimiter=delimiter))
        )
    except csv.Error:
        return False
    return len({len(r) for r in rows}) == 1 and len(rows[0]) > 1


# a cell of a line of names parted by commas (a CSV header in a text body): a name of up
# to three words (letters first), quoted or not
_HEADER_CELL = re.compile(r' *"?[^\W\d][\w.\-/#()]{0,31}(?: [\w.\-/#()]{1,32}){0,2}"? *')
# The bounds of every stream held while a value may go on in what comes next: a body's
# events or lines (_released), a WebSocket's messages (websocket.MaskedFrames), an MCP
# stream's log messages (mcp_pieces.HeldPieces). Held for the next event at most
# HELD_SECONDS: the stream's pause after a value's first part is read as its end (a
# client waiting for a message before it sends again would otherwise wait for a server
# waiting for the client, and a server's stream may stay quiet for hours).
MAX_HELD_EVENTS = 32
MAX_HELD_CHARS = 64 * 1024
HELD_SECONDS = 0.5
# the end of a record's string a value may go on from in the same string of the next
# record (`{"line": "card 4111 1111"}`, then `{"line": "1111 1111"}`): digits and what
# parts a card's, an SSN's, an IBAN's groups, back as far as the longest of them reaches
# (a record's id, `"4112"`, in each record holds only the last few)
_SHOWN_REACH = 40
_SHOWN_TAIL = re.compile(rf"[0-9][0-9 \-\n]{{0,{_SHOWN_REACH}}}\Z")
MAX_SHOWN_TEXTS = 64  # strings of one record read with the next record's (_doc_texts)
_RECORD_DETECTORS = frozenset(SPLIT_DETECTORS)  # (what is read across records)


class _Shown:
    """What opens the place of a record's string read as a line with the same string of
    the records after it (_doc_texts): no JSON key can be it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SHOWN"


SHOWN = _Shown()


def _shown_place(place: tuple[Any, ...]) -> bool:
    return bool(place) and place[0] is SHOWN


def _may_go_on(text: str) -> bool:
    """Whether a string may hold part of a value another record's string holds the rest
    of: digits at its start or its end."""
    return any(c.isdigit() for c in text[:6]) or any(c.isdigit() for c in text[-6:])


# the end of a text a value may go on from: a word (an address, a token), or digits
# and what parts them (a card's, a phone number's groups, an SSN's)
_WORD_RUN = re.compile(r"[\w@.+\-]+")
_DIGITS_RUN = re.compile(r"[+(0-9][0-9 ().\-]*")
# an event or a line saying an LLM's text is whole (OpenAI's `finish_reason` and
# `[DONE]`, Anthropic's `stop_reason` and `message_stop`, the Responses API's `.done`
# and `response.completed`, Ollama's `"done": true`): what is held goes with it
_TEXT_ENDS = re.compile(
    r'"(?:finish_reason|stop_reason)"\s*:\s*"|"done"\s*:\s*true'
    r'|"type"\s*:\s*"(?:message_stop|content_block_stop|response\.completed|[\w.]*\.done)"'
    r"|^data: ?\[DONE\]",
    re.M,
)
# the end of data as text a value may go on from: digits and their separators, a word
# (what may start an address: `bob`, then `@example.com`), a word holding an `@` (its
# local part's run, an `@`, its domain's run)
_LOCAL_RUN = re.compile(r"[\w.+\-]+")
_DOMAIN_RUN = re.compile(r"[\w.\-]+")
# the end of a text body's line a value may go on from on the next line (a card's, a
# phone number's, an SSN's groups parted by a newline: `4111 1111\n1111 1111`)
_DIGIT_LINES_RUN = re.compile(r"[+(0-9][0-9 ().\-\n]*")


def _growing_tail(text: str) -> int:
    """Where the end of an LLM's piece of text a value may go on from starts (a word, or
    digits and their separators): len(text) when it ends in none. Each found in one pass
    (tail_start; searched for as `(...)\\Z`, 64 KiB of digits then a letter held the
    proxy's loop ~20 s)."""
    return min(tail_start(_WORD_RUN, text), tail_start(_DIGITS_RUN, text))


def _value_tail(text: str) -> int:
    """Where the end of an event's data a value may go on from starts: digits and their
    separators, a word, a word holding an `@`; len(text) when it ends in none."""
    start = min(tail_start(_DIGITS_RUN, text), tail_start(_LOCAL_RUN, text))
    domain = tail_start(_DOMAIN_RUN, text)
    if domain and text[domain - 1] == "@":
        start = min(start, tail_start(_LOCAL_RUN, text, domain - 1))
    return start


def _digit_lines_tail(text: str) -> int:
    """Where the end of a text body's lines (a newline between) a value may go on from
    starts: digits and their separators, newlines among them; len(text) when none."""
    return tail_start(_DIGIT_LINES_RUN, text)


def _shown_tail(text: str) -> int:
    """Where the end of a record's string a value may go on from starts (_SHOWN_TAIL,
    searched from where its bound reaches back to only); len(text) when none."""
    found = _SHOWN_TAIL.search(text, max(0, len(text) - _SHOWN_REACH - 1))
    return len(text) if found is None else found.start()


# the keys an LLM's pieces of text go by at the end of their trail (Anthropic's tool
# input `partial_json`, TGI's `generated_text`), and beside a `done` flag (Ollama's
# `response`, `message.content`)
_PIECE_ENDS = frozenset({"partial_json", "generated_text"})
_DONE_PIECES = frozenset({"response", "content", "thinking"})


def _piece(doc: Any, place: tuple[Any, ...]) -> bool:
    """Whether a string at `place` in a streamed document is a piece of an LLM's text,
    which the client puts together with the next: under a `delta` (OpenAI's chat and
    Responses events, Anthropic's, Mistral's), a candidate's part (Gemini's), a token
    (TGI's `token.text`), or a piece key (_PIECE_ENDS; beside a `done` flag:
    _DONE_PIECES)."""
    keys = [k for k in place if isinstance(k, str)]
    if not keys:
        return False
    if "delta" in keys or keys[-1] in _PIECE_ENDS:
        return True
    if keys[-1] == "text" and ("candidates" in keys or keys[0] == "token"):
        return True
    done = isinstance(doc, dict) and isinstance(doc.get("done"), bool)
    return done and keys[-1] in _DONE_PIECES


def _event_texts(event: str) -> dict[tuple[Any, ...], str]:
    """An SSE event's texts by place: its data read as JSON, each piece of an LLM's text
    by its trail of keys and indices (_doc_texts); else its data as text, at (); {} for
    an event with no data."""
    data = [ln[5:].removeprefix(" ") for ln in event.split("\n") if ln.startswith("data:")]
    if not data:
        return {}
    value = "\n".join(data)
    try:
        doc = json.loads(value)
    except (ValueError, RecursionError):
        return {(): value}
    if isinstance(doc, str):
        return {(): doc}
    if not isinstance(doc, dict | list):
        return {(): value}  # (a number, `true`: the data as text)
    return _doc_texts(doc)


def _line_texts(line: str) -> dict[tuple[Any, ...], str]:
    """A line's texts by place when it is a JSON object or array (a stream's document:
    Ollama's `{"response": "4111"}`), as _event_texts; a line of text at () (read with
    the lines next to it, a newline between: a value's groups parted by one); {} for a
    line of JSON that does not parse."""
    if line.lstrip()[:1] not in ("{", "["):
        return {(): line}  # (a line of text: read with the next, a newline between)
    try:
        doc = json.loads(line)
    except (ValueError, RecursionError):
        return {}
    return _doc_texts(doc) if isinstance(doc, dict | list) else {}


def _newlines_back(joined: str, flat: str) -> str:
    """`flat`, `joined` masked with its newlines read as spaces, with the newlines put back
    where `joined` had them, when the mask kept its length (a card's, an SSN's digits
    masked one for one); else as it is, on one line."""
    if len(flat) != len(joined):
        return flat
    return "".join("\n" if j == "\n" and f == " " else f for j, f in zip(joined, flat, strict=True))


def _line_with(line: str, place: tuple[Any, ...], text: str) -> str:
    """A line (masked) whose JSON has its text at `place` made `text` (_line_texts)."""
    doc = json.loads(line)
    _put_at(doc, place, text)
    return _dump(doc).decode("utf-8")


def _put_at(doc: Any, place: tuple[Any, ...], text: str) -> None:
    """`text` put in a JSON document at `place` (a trail of keys and indices, an item of
    a list named by its `index` member as _doc_texts names it)."""
    if _shown_place(place):
        place = place[1:]
    node = doc
    for key in place[:-1]:
        node = node[_placed_at(node, key)]
    node[_placed_at(node, place[-1])] = text


def _placed_at(node: Any, key: Any) -> Any:
    """Where `key` of a place is in `node`: a list's item named by its `index` member
    (`("index", 1)`: the one whose `index` is 1), else the key itself."""
    if isinstance(key, tuple):
        return next(n for n, item in enumerate(node) if _item_index(item) == key[1])
    return key


def _item_index(item: Any) -> int | None:
    """A streamed list item's own `index` member (OpenAI's choices and tool calls: the
    client puts an item's pieces together by it, not by where the item is in the list)."""
    if isinstance(item, dict):
        index = item.get("index")
        if isinstance(index, int) and not isinstance(index, bool):
            return index
    return None


def _doc_texts(doc: Any) -> dict[tuple[Any, ...], str]:
    """A streamed document's pieces of an LLM's text by place (_piece); and its other
    strings that may hold part of a value (_may_go_on, the first MAX_SHOWN_TEXTS), each
    at (SHOWN, place): a client shows the same string of one record after another as
    lines (a log's `{"line": "card 4111 1111"}`, then `{"line": "1111 1111"}`), read so
    with the records after it (_released)."""
    texts: dict[tuple[Any, ...], str] = {}
    shown = [0]

    def walk(node: Any, place: tuple[Any, ...]) -> None:
        if len(place) > 32:
            return
        if isinstance(node, str):
            if _piece(doc, place):
                texts[place] = node
            elif shown[0] < MAX_SHOWN_TEXTS and _may_go_on(node):
                shown[0] += 1
                texts[(SHOWN, *place)] = node
        elif isinstance(node, dict):
            for key, child in node.items():
                walk(child, (*place, key))
        elif isinstance(node, list):
            # (items naming their own index, each once: placed by it, as a client puts
            # their pieces together — `n: 2` interleaves two choices' texts, each event
            # holding either first)
            named = [_item_index(child) for child in node]
            by_index = None not in named and len(set(named)) == len(named)
            for position, child in enumerate(node):
                walk(child, (*place, ("index", named[position]) if by_index else position))

    walk(doc, ())
    return texts


def _event_with(event: str, place: tuple[Any, ...], text: str) -> str:
    """An SSE event (masked) with its text at `place` (_event_texts) made `text`: its
    other lines as they were, its data written again."""
    lines = event.split("\n")
    data = [ln[5:].removeprefix(" ") for ln in lines if ln.startswith("data:")]
    others = [ln for ln in lines if not ln.startswith("data:")]
    value = "\n".join(data)
    try:
        doc = json.loads(value)
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict | list | str):
        return "\n".join(others + [f"data: {line}" for line in text.split("\n")])
    if not place:
        return "\n".join([*others, "data: " + _dump(text).decode("utf-8")])
    _put_at(doc, place, text)
    return "\n".join([*others, "data: " + _dump(doc).decode("utf-8")])


def _mixed(row: list[Any]) -> bool:
    """Whether a list of scalars holds numbers and strings both."""
    numbers = any(isinstance(v, int | float) and not isinstance(v, bool) for v in row)
    return numbers and any(isinstance(v, str) for v in row)


def _values_first(row: list[str]) -> bool:
    """Whether a CSV body's first line is a row of values, not of names: a cell reading
    as a value (_header_value) with an `@` or five digits or more (`5550100`, not
    `q1_2024`), a first cell that is a number, or cells that are no row of names
    (_names_row; a first cell may be empty: pandas' index column)."""
    cells = [c.strip() for c in row]
    return bool(cells) and (
        any(_header_value(c) and ("@" in c or sum(d.isdigit() for d in c) >= 5) for c in cells)
        or bool(_PLAIN_NUMBER.fullmatch(cells[0]))
        or not _names_row(cells[1:] if len(cells) > 1 and not cells[0] else cells)
    )


# what a row's cell holds where a value is missing: no column is so named
_PLACEHOLDERS = frozenset(
    {"", "-", "--", "?", "n/a", "na", "none", "null", "nil", "undefined", "unknown", "tbd",
     "empty", "missing", "redacted", "hidden", "private", "withheld", "not set", "nan"}
)  # fmt: skip


def _names_row(row: list[Any]) -> bool:
    """Whether a row may be a row of names over others (a header), not a row of data
    whose cells hold no digit: strings, each a name (none empty, nor what a row holds
    where a value is missing: `""`, `n/a`, `none`), no two the same. A first row of data
    of letters alone (a customer whose phone is empty, ordered first) read as names
    would leave every row under it unmasked."""
    seen = set()
    for cell in row:
        if not isinstance(cell, str):
            return False
        name = cell.strip().casefold()
        if name in _PLACEHOLDERS or name in seen:
            return False
        seen.add(name)
    return bool(row)


# what a browser or a Markdown viewer does not show of a text: tags, comments, emphasis
_MARKUP = re.compile(r"<!--.*?-->|</?[A-Za-z][^<>]*>|\*\*|__|~~|`", re.S)
_MARKS = re.compile(r"</?[A-Za-z][^<>]*>|\*\*|__|~~|`")  # (those but comments)


def _unmarked(text: str) -> str:
    """`text` without its markup (_MARKUP), read in one pass: after the last `-->` no
    comment can close, so what follows it is read for the other marks alone (each `<!--`
    there was read on to the text's end: 64 KiB of them held the loop ~5 s)."""
    closed = text.rfind("-->") + 3 if "-->" in text else 0
    return _MARKUP.sub("", text[:closed]) + _MARKS.sub("", text[closed:])


# an element's text between its tags (`<td>5550100</td>`)
_ELEMENT_TEXT = re.compile(r">([^<>]*)<")
# a line of text that is one value alone: no space within it, no markup
_LONE_VALUE = re.compile(r"\s*([\"']?)[^\s<>&\[\]{}(),;=\"']+\1\s*")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
BARE_DIGITS = MAX_PLAIN_DIGITS + 1  # (a telephone number's, an account's)


def _bare_value(value: str) -> bool:
    """Whether a string in a list of strings reads as a masked field's value, not a name
    or a tag: an `@` between words (an address), or seven digits or more, more digits
    than letters and no `_` (`+1 555 0100`, `5550100`, an IBAN; not a date nor a UUID:
    `v1.2.3`, `bucket_2024`, `order-17` are names)."""
    text = value.strip()
    if "@" in text and re.search(r"\w@\w", text):
        return True
    if _ISO_TIME.fullmatch(text) or _UUID.fullmatch(text):
        return False
    digits = sum(c.isdigit() for c in text)
    letters = sum(c.isalpha() for c in text)
    return digits >= BARE_DIGITS and digits > letters and "_" not in text


MAX_LONE_VALUE = 34  # (an IBAN's longest; a card's 19, a phone number's 15 and signs)


def lone_value(text: str) -> bool:
    """Whether a text is one value alone that may be a masked field's: one word (no
    space, no markup, no brackets), quoted or not, that reads as a value (_bare_value:
    not a name, a tag, a date or a UUID), at most MAX_LONE_VALUE characters unless an
    address (a digest's hex is no one's phone)."""
    if not _LONE_VALUE.fullmatch(text):
        return False
    token = text.strip().strip("\"'")
    return _bare_value(token) and (len(token) <= MAX_LONE_VALUE or "@" in token)


def bare_value(value: str) -> bool:
    """_bare_value, for the MCP exchange's text items (mcp._content_row)."""
    return _bare_value(value)


def unnamed_value(value: Any) -> bool:
    """_unnamed_value, for the MCP exchange's text items (mcp._content_row)."""
    return _unnamed_value(value)


def _unnamed_row(value: list[Any]) -> bool:
    """A list that may be a row of values: scalars, one at least that may be a value."""
    return bool(value) and all(_scalar(v) for v in value) and any(map(_unnamed_value, value))


def _flat_pairs(value: list[Any]) -> bool:
    """Whether a list may be names and values in turn: four or more scalars, a string
    at every even place, and a value among the others (a number, or a digit or `@` in a
    string: a list of column names has none)."""
    return (
        len(value) >= 4
        and len(value) % 2 == 0
        and all(isinstance(v, str) for v in value[::2])
        and all(not isinstance(v, dict | list) for v in value[1::2])
        and any(not isinstance(v, str) or _VALUE_LIKE.search(v) for v in value[1::2])
    )


def _header_value(cell: str) -> bool:
    """Whether a CSV header's cell reads as a value, not a name: an `@`, or more digits
    than letters and no `_` (`+1 555 0100`, not `q1_2024`)."""
    if "@" in cell:
        return True
    digits = sum(c.isdigit() for c in cell)
    return digits > 0 and digits > sum(c.isalpha() for c in cell) and "_" not in cell


def _scalars(value: Any) -> bool:
    """A scalar, or a list of scalars (what a named attribute's value is)."""
    if isinstance(value, list):
        return all(not isinstance(v, dict | list) for v in value)
    return not isinstance(value, dict)


def masked_tables(
    masker: Masker,
    doc: Any,
    counts: Counter[str],
    source: Any = None,
    tables: TableView | None = None,
    enclosing: list[list[str]] | None = None,
) -> Any:
    """A JSON value (masked by the field rules' keys already) masked as BodyMask reads a
    document's tables, for a reader of JSON other than an HTTP answer's (an MCP result,
    whose objects naming a field that reader reads itself): pairs `["phone",
    "5550100"]`, rows beside their columns or away from them, rows under a row of names
    (_tabled), and rows whose columns `source` (the value before the masks: they
    rewrite `{"phone": 0}`) names by position (_column_positions); the masks' counts
    added to `counts`; `tables`: the columns earlier answers named (BodyMask). As it came
    when no field rule applies."""
    body = BodyMask(masker, "json", tables=tables)
    if not body._named:
        return doc
    # (the columns the document holding this one as a string names: `enclosing`)
    body._enclosing = enclosing or []
    found: Counter[str] = Counter()
    try:
        out = body.columns_masked(body.keys_masked(doc, found), found)
        positions = _column_positions(source) if source is not None else None
        out = body._tabled(body._paired(out, found), found, positions, source)
        out = _composites_masked(out, masker, found)
    except RecursionError:
        raise MaskingError("a JSON value nested too deep to be masked") from None
    counts.update(found)
    return out


def _composites_masked(value: Any, masker: Masker, found: Counter[str]) -> Any:
    """Every string of a JSON value that is a whole row as one value (composites.py)
    masked field by field."""
    if isinstance(value, dict):
        return {k: _composites_masked(v, masker, found) for k, v in value.items()}
    if isinstance(value, list):
        return [_composites_masked(v, masker, found) for v in value]
    if isinstance(value, str) and value.lstrip()[:1] in ("(", "{"):
        composite = masked_composite(value, masker, found)
        return value if composite is None else composite
    if isinstance(value, str) and (in_prose := masked_in_prose(value, masker, found)):
        return in_prose
    return value


def masked_aliases(masker: Masker, doc: Any, counts: Counter[str]) -> Any:
    """A JSON value with the values under keys a map in it names as masked fields masked
    (BodyMask.aliased), for a reader of JSON other than an HTTP answer's (an MCP result:
    read before its other readers change the map); the counts added to `counts`."""
    body = BodyMask(masker, "json")
    if not body._named:
        return doc
    found: Counter[str] = Counter()
    try:
        out = body.aliased(doc, found)
    except RecursionError:
        raise MaskingError("a JSON value nested too deep to be masked") from None
    counts.update(found)
    return out


def _opens_document(data: bytearray) -> bool | None:
    """Whether a text body so far opens a JSON document written on several lines (its
    first line `{` or `[` and no JSON value alone, as a pretty-printer writes one); None
    until its first line is whole."""
    start = len(data) - len(data.lstrip())
    if start == len(data):
        return None if len(data) <= MAX_RECORD else False
    if data[start] not in b"{[":
        return False
    end = data.find(b"\n", start)
    if end < 0:
        return None if len(data) <= MAX_RECORD else False
    try:
        json.loads(bytes(data[start:end]))
    except ValueError:
        return True
    except RecursionError:
        return False
    return False


def column_names(value: Any) -> list[str]:
    """A list of column names (strings, or objects each naming one), else []."""
    return _column_names(value)


def coded_label(text: str) -> str | None:
    """A short string that is base64 of printable text, decoded (_coded_label)."""
    return _coded_label(text)


def _column_names(value: Any) -> list[str]:
    """A list of column names: strings, or objects each naming one (_column_name)."""
    if not isinstance(value, list) or not value:
        return []
    if all(isinstance(v, str) for v in value):
        return value
    if all(isinstance(v, list) and 1 < len(v) <= 4 and _typed_name(v) for v in value):
        # (each a column as `[name, type]`: `[["id", "Int32"], ["phone", "String"]]`)
        return [v[0] for v in value]
    names = [n for n in map(_column_name, value) if n is not None]
    if len(names) == len(value):
        return names
    return _common_names(value)


# a YAML anchor (`&a` before a node) and an alias of one under a key (`phone: *a`,
# `"phone": [*a]`); MAX_ANCHORS noted in a body at most
_YAML_ANCHOR = re.compile(r"(?:^|[\s\[{,:])&(?P<name>[^\s,\[\]{}]+)")
_YAML_ALIAS_UNDER = re.compile(
    r"[\"']?(?P<name>[^\s:{},\[\]\"'#&*][^:{},\[\]\"'#]*?)[\"']?\s*:\s*(?:\[\s*)?"
    r"\*(?P<alias>[^\s,\[\]{}]+)"
)
MAX_ANCHORS = 4096
# what ends a name an alias is under (_YAML_ALIAS_UNDER's), the first character it may
# start with, and what follows its colon
_YAML_NAME_START = re.compile(r"[^\s:{},\[\]\"'#&*]")
_YAML_ALIAS_AFTER = re.compile(r":\s*(?:\[\s*)?\*")


def _yaml_aliases_under(line: str) -> list[re.Match[str]]:
    """_YAML_ALIAS_UNDER's matches in `line`, as its finditer finds them, read in one
    pass. Its name (no colon within) was tried from every character of a run of them,
    each try read on to the colon after: quadratic (16 KiB of a YAML line's words with
    no alias held the loop 3-5 s). A name is the one before a colon an alias follows:
    each such colon is tried once, from the first character a name may start with after
    what ends one (a mark, or a quote then spaces before the colon) and after the match
    before."""
    found: list[re.Match[str]] = []
    pos = 0  # (where the next match may start: the last one's end)
    lower = 0  # (the colon before, of those read: no name reaches back over it)
    for after in _YAML_ALIAS_AFTER.finditer(line):
        at = after.start()
        lower, low = at + 1, max(lower, line.rfind(":", lower, at) + 1)
        if at < pos or _YAML_NAME_START.search(line, max(pos, low), at) is None:
            continue
        name_end, mark = at, _last_mark(line, low, at)
        if mark >= 0 and line[mark] in "\"'" and not line[mark + 1 : at].strip():
            name_end, mark = mark, _last_mark(line, low, mark)  # (`"phone": *a`)
        first = _YAML_NAME_START.search(line, max(pos, mark + 1, low), name_end)
        if first is None:
            continue
        start = first.start()
        if start == mark + 1 and mark >= pos and line[mark] in "\"'":
            start = mark  # (its opening quote)
        alias = _YAML_ALIAS_UNDER.match(line, start)
        if alias is not None:
            found.append(alias)
            pos = alias.end()
    return found


def _last_mark(line: str, start: int, end: int) -> int:
    """Where the last of the marks that end a YAML name (other than a colon) is in
    line[start:end], -1 if none is."""
    return max(line.rfind(mark, start, end) for mark in "{},[]\"'#")


_CODED_LABEL = re.compile(r"[A-Za-z0-9+/]{4,172}={0,2}|[A-Za-z0-9_-]{4,172}={0,2}")


def _coded_label(text: str) -> str | None:
    """A short string that is base64 (or base64url) of printable UTF-8 text, decoded."""
    if not _CODED_LABEL.fullmatch(text):
        return None
    padded = text.rstrip("=")
    padded += "=" * (-len(padded) % 4)
    try:
        raw = base64.b64decode(padded, altchars=b"-_", validate=True)
        if "+" in text or "/" in text:
            raw = base64.b64decode(padded, validate=True)
        decoded = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return decoded if decoded.strip() and decoded.isprintable() else None


def _common_names(value: list[Any]) -> list[str]:
    """Column descriptors naming their columns under a key of their own (`[{"n": "id"},
    {"n": "phone"}]`, a DataTable's `{"id": "phone", "type": "string"}`): the member
    every one holds as a string, each a different one (an `id` first), else []."""
    if len(value) < 2 or not all(isinstance(v, dict) and v for v in value):
        return []
    keys = [k for k, v in value[0].items() if isinstance(v, str)]
    keys.sort(key=lambda k: k.lower() != "id")
    for key in keys:
        names = [v.get(key) for v in value]
        if all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names):
            return [str(n) for n in names]
    return []


# a column's type as a result's schema writes it (`Int32`, `varchar(255)`,
# `Nullable(String)`, `TIMESTAMP WITH TIME ZONE`): a word first, no digit alone
_TYPE_NAME = re.compile(r"[A-Za-z][\w ()\[\],.<>]{0,63}")


def _typed_name(column: list[Any]) -> bool:
    """Whether a list is a column as `[name, type, ...]`: a name, then a type's name."""
    name, kind = column[0], column[1]
    return (
        isinstance(name, str)
        and isinstance(kind, str)
        and bool(_TYPE_NAME.fullmatch(kind))
        and not name.strip().lstrip("+-").replace(".", "").isdigit()
    )


def _spelt_columns(key: str, value: Any) -> list[str]:
    """Column names written as one delimited string under a key naming them (`"columns":
    "id,phone"`, `"header": "id\tphone"`), else []."""
    if not isinstance(value, str) or key.lower() not in _NAMES_KEYS or len(value) > 64 * 1024:
        return []
    for delimiter in (",", "\t", ";", "|"):
        if delimiter in value:
            names = [n.strip().strip('"') for n in value.split(delimiter)]
            return names if len(names) <= MAX_COLUMNS and all(names) else []
    return []


def _typed_columns(key: str, value: Any) -> list[str]:
    """Column names as the keys of a map to their types under a key naming them
    (`"schema": {"id": "int", "phone": "text"}`, `"columns": {"phone": {"type": ...}}`:
    in their order), else []."""
    if not isinstance(value, dict) or key.lower() not in _NAMES_KEYS:
        return []
    if not value or len(value) > MAX_COLUMNS:
        return []
    if all(
        isinstance(v, dict) or (isinstance(v, str) and _TYPE_NAME.fullmatch(v))
        for v in value.values()
    ):
        return list(value)
    return []


def _column_name(column: Any) -> str | None:
    """The name a column's description gives it, under a key _COLUMN_KEYS names in
    any case (`name`, Athena's `Name`, Kusto's `ColumnName`, a DataTable's `label`)."""
    if not isinstance(column, dict):
        return None
    for key, value in column.items():
        if isinstance(value, str) and key.lower().replace("_", "") in _COLUMN_KEYS:
            return value
    return None


_COLUMN_KEYS = frozenset(
    {"name", "label", "title", "columnname", "fieldname", "key", "field", "column", "colname"}
)
# keys a list of column names written as one string stands under (`"columns": "id,phone"`)
_NAMES_KEYS = frozenset({"columns", "cols", "header", "headers", "fields", "names", "schema"})


# a column descriptor's key giving its position (Databricks' `position`, SQL's
# `ordinal_position`, `index`, `columnIndex`), read in any case, `_` left out
_POSITION_KEYS = frozenset(
    {"index", "position", "ordinal", "ordinalposition", "columnindex", "idx", "pos", "i"}
)
MAX_COLUMNS = 4096


def _column_positions(doc: Any) -> list[dict[int, str]]:
    """Every map of column names to their positions anywhere in a document: an object
    whose members are all positions (`{"headers": {"id": 0, "phone": 1}}`, a digit string
    too), or all names under positions (`{"0": "phone"}`); and a list of column
    descriptors each giving its position (`[{"name": "phone", "index": 1}, ...]`): their
    positions from 0 when they are 1.. as many (SQL's ordinal_position), else as given
    and at their place in the list too (more, never less)."""
    out: list[dict[int, str]] = []
    stack: list[Any] = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if 0 < len(item) <= MAX_COLUMNS:
                placed = _placed(item)
                if placed:
                    out.append(placed)
            stack.extend(v for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            names = _column_names(item)
            if names and len(names) <= MAX_COLUMNS:
                given = [_position(c) for c in item]
                if all(g is not None for g in given):
                    out.append(_descriptors_placed(names, [g for g in given if g is not None]))
            stack.extend(v for v in item if isinstance(v, dict | list))
    return out


def _placed(item: dict[str, Any]) -> dict[int, str]:
    """A map of names to positions read as positions to names ({} when it is none)."""
    if all(_index(v) is not None for v in item.values()):
        return {i: k for k, v in item.items() if (i := _index(v)) is not None}
    if all(isinstance(v, str) and _index(k) is not None for k, v in item.items()):
        return {i: v for k, v in item.items() if (i := _index(k)) is not None}
    return {}


def _descriptors_placed(names: list[str], given: list[int]) -> dict[int, str]:
    if sorted(given) == list(range(len(names))):
        return dict(zip(given, names, strict=True))
    if sorted(given) == list(range(1, len(names) + 1)):
        return {g - 1: n for g, n in zip(given, names, strict=True)}
    placed = dict(enumerate(names))
    for g, n in zip(given, names, strict=True):
        placed.setdefault(g, n)
    return placed


def _position(column: Any) -> int | None:
    """The position a column's descriptor gives it (_POSITION_KEYS), or None."""
    if not isinstance(column, dict):
        return None
    for key, value in column.items():
        if key.lower().replace("_", "") in _POSITION_KEYS:
            return _index(value)
    return None


def _index(value: Any) -> int | None:
    """A column's position: a non-negative integer (or one written as digits) below
    MAX_COLUMNS; else None."""
    if isinstance(value, str) and value.isdigit() and len(value) < 5 and value.isascii():
        value = int(value)
    if type(value) is int and 0 <= value < MAX_COLUMNS:
        return value
    return None


def _column_lists(doc: Any) -> tuple[list[list[str]], list[list[str]]]:
    """(every list of column names (_column_names) anywhere in a document: a list of
    objects naming one each, or of strings under a key of its own; the lists of strings
    first in a list, which may be a row of names over the rows after it: Google Sheets'
    `values`)."""
    out: list[list[str]] = []
    heads: list[list[str]] = []
    stack: list[tuple[Any, bool]] = [(doc, False)]
    while stack:
        item, keyed = stack.pop()
        if isinstance(item, dict):
            stack.extend((v, True) for v in item.values())
            out.extend(filter(None, (_spelt_columns(k, v) for k, v in item.items())))
            out.extend(filter(None, (_typed_columns(k, v) for k, v in item.items())))
        elif isinstance(item, list):
            names = _column_names(item)
            if names and len(names) <= 4096 and (keyed or not isinstance(item[0], str)):
                out.append(names)
            first = _cells(item[0]) if len(item) > 1 else None
            if first:
                texts = [_cell_text(c) for c in first]
                if all(texts):
                    heads.append([t for t in texts if t])
            stack.extend((v, False) for v in item if isinstance(v, dict | list))
    return out, heads


def _cell_text(cell: Any) -> str | None:
    """What a cell says, when it is text: a string, or an object's first string member
    when it holds only scalars (Google Sheets' `{"formattedValue": "Phone"}`)."""
    if isinstance(cell, str):
        return cell
    if isinstance(cell, dict) and cell and _scalars(list(cell.values())):
        return next((v for v in cell.values() if isinstance(v, str)), None)
    return None


def _cells(row: Any) -> list[Any] | None:
    """A row's cells: a list's items, or those of the one list an object holds alone
    (BigQuery's `{"f": [...]}`, a DataTable's `{"c": [...]}`); None for no row."""
    if isinstance(row, list):
        return row
    if isinstance(row, dict) and len(row) == 1:
        (only,) = row.values()
        return only if isinstance(only, list) else None
    return None


def _columnar(lists: list[Any], columns: list[str]) -> bool:
    """Whether lists beside column names are the columns (as many, not all of the names'
    width) rather than rows."""
    return len(lists) == len(columns) and any(len(r) != len(columns) for r in lists)


def _nested(cells: list[Any]) -> bool:
    """Whether a row's cells hold a list (a table inside: no row of cells)."""
    return any(isinstance(c, list) for c in cells)


def _rows(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(r, list) for r in value)


def _lf(data: bytes) -> bytes:
    """Lines ended by CRLF or a lone CR (as SSE and many readers take them) ended by LF."""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n") if b"\r" in data else data


def _json_lines(data: bytes) -> bool:
    """Whether a body is lines of JSON (NDJSON): two lines or more, or one ended by a
    newline, each a JSON value read one way only (no line that is not)."""
    text = data.rstrip(b" \t\r")
    if b"\n" not in text.rstrip(b"\n") and not text.endswith(b"\n"):
        return False
    lines = [line for line in data.split(b"\n") if line.strip(b" \t\r")]
    try:
        for line in lines:
            json.loads(line, object_pairs_hook=_unique_names)
    except (ValueError, RecursionError, Unmaskable):
        return False
    return bool(lines)


def _unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An answer's JSON object, which names each member once: one naming a member twice
    (`{"columns": ["id", "phone"], "rows": ..., "columns": ["id", "name"]}`) is read two
    ways by its clients (the first, the last, both), and the masks would read one of
    them: Unmaskable."""
    out = dict(pairs)
    if len(out) != len(pairs):
        raise Unmaskable("a JSON object naming a member twice cannot be masked")
    return out


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_names)
_LINE_ENDS = re.compile(r"(\r\n|\r|\n)")  # (kept: a string's lines written back as they were)
# escapes a reader of text undoes: HTML character references, JavaScript's \\u and \\x,
# percent-encoding
_ESCAPED = re.compile(
    r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);?|\\[ux][0-9a-fA-F]|%[0-9a-fA-F]{2}"
)
_JS_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\x([0-9a-fA-F]{2})")


def unescaped_view(text: str) -> str:
    """`text` with its escapes undone as the reader of a link, a page or a script does:
    HTML character references (`ann&#64;example.com`), JavaScript's `\\u0040`, URI
    percent-escapes (`%40`); `text` itself when it has none."""
    if not _ESCAPED.search(text):
        return text
    view = html.unescape(text) if "&" in text else text
    view = _JS_ESCAPE.sub(lambda m: chr(int(m[1] or m[2], 16)), view)
    return unquote(view) if "%" in view else view


# where a JSON value in a line of text ends: a separator, a space or the line's end
_VALUE_ENDS = re.compile(r"[ \t]*(?:[&;,}\])\r\n]|$)")


# where no name starts: inside an escape a name may hold (the `u` of `\u0041`, the `x`
# of `&#x41;`), or just after one (`&#65;`): no name character precedes there, and a
# line of such escapes tried a name at each of them, read on to the line's end
# (quadratic: 16 KiB of `&#65;` held the loop 1.6 s)
_IN_NAME = (
    r"(?!(?<=\\)[uUxX])(?!(?<=&#)[xX])(?!(?<=;)(?:"
    + "|".join(f"(?<=&#[0-9]{{{n}}};)" for n in range(1, 8))
    + "|"
    + "|".join(f"(?<=&#[xX][0-9A-Fa-f]{{{n}}};)" for n in range(1, 7))
    + "))"
)
# a name and its separator inside a line: "phone": / phone= / phone:
# (a name starts where no name character precedes it: one try per word, not per letter,
# so a long line is read in linear time)
_NAMED = re.compile(
    rf"""(?<![\w.\-"'%]){_IN_NAME}(?P<q>["']?)"""
    rf"""(?P<key>(?:[^\W\d]|{_NAME_ESCAPE})(?:[\w.\-]|{_NAME_ESCAPE})*)"""
    r"""(?P=q)[ \t]*[:=][ \t]*"""
)
_PLAIN = re.compile(r"[^&;,}\]\r\n]*")


def _document_line(line: str) -> bool:
    """Whether a line is JSON objects or arrays only (no bare value: `5550100` is text)."""
    if line.lstrip()[:1] not in ("{", "["):
        return False
    docs = _json_texts(line)
    return docs is not None and all(isinstance(d, dict | list) for d in docs)


def _json_texts(text: str) -> list[Any] | None:
    """The JSON texts a line holds: one, or objects and arrays one after another
    (whitespace between them, as jq and ijson's multiple_values read them); None when it
    is anything else."""
    try:
        return [json.loads(text, object_pairs_hook=_unique_names)]
    except (ValueError, RecursionError):
        pass
    out: list[Any] = []
    pos = 0
    end = len(text)
    while pos < end:
        while pos < end and text[pos] in " \t\r\n":
            pos += 1
        if pos == end:
            break
        try:
            doc, pos = _DECODER.raw_decode(text, pos)
        except (ValueError, RecursionError):
            return None
        if not isinstance(doc, dict | list):
            return None  # (`2024 12 05` is text, not three numbers)
        out.append(doc)
    return out or None


def _value_cut_from(digits: list[str], start: int) -> int | None:
    """The end of the longest run of cells from `start` (each a cell's digits, "" for a
    cell of anything else) that is a card's or an SSN's digits cut into them as a reader
    cuts one (values.cut_as_split), or None. (Sizes first: most rows of numbers side by
    side are no such cut, and are not joined and read.)"""
    best, sizes, total, even = None, [len(digits[start])], len(digits[start]), True
    for end in range(start + 2, len(digits) + 1):
        size = len(digits[end - 1])
        even = even and sizes[-1] == sizes[0]  # (the groups before the last: one size)
        sizes.append(size)
        total += size
        if not size or total > 19:
            break
        card = total >= 13 and ((even and size <= sizes[0]) or sizes in ([4, 6, 5], [4, 6, 4]))
        if card or sizes == [3, 2, 4]:
            joined = " ".join(digits[start:end])
            if cut_as_split("credit_card" if card else "ssn", joined):
                best = end
    return best
