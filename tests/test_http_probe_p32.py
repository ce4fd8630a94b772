"""Probing the HTTP proxy's masks (P32, helper webmask15): RFC 2047 words in a response
header, and an empty list beside a table.

Real PDP with the shipped policy, the HTTP proxy, a raw upstream answering each path with
its own head and body, a raw client: a reader outside pii-readers (`phone` masked by its
name; cards and e-mails by the detectors). Before the fixes:

- a header value written as an RFC 2047 encoded word in its Q coding
  (`X-Who: =?utf-8?q?ann=40example.com?=`, what Python's email.header, a mail client or a
  browser reading a filename decodes) went as it came: the e-mail behind `=40`. The B
  coding of UTF-8 was masked (its base64 run read), but not of UTF-16 or UTF-7, nor a
  Q word in another charset. Each encoded word is now read decoded, by its coding and
  charset, as a header's percent-escapes and base64 runs are (bodies._encoded_words):
  what it hides withholds the value ([REDACTED]); two adjacent words are read joined, as
  RFC 2047 §6.2 reads them (`=?utf-8?q?ann?= =?utf-8?q?=40example.com?=`). And a header
  value written as hex (`X-Data: 7b2270686f6e65...`) is read as the text it is, as a
  JSON body's string is.
- a JSON answer holding a table and an empty list beside it (`{"columns": [...], "rows":
  [...], "next": []}`, `{"rows": [{"key": "phone", ...}], "tags": []}`) failed with a
  502 (an IndexError reading the empty list as rows): ordinary answers refused. An empty
  list is no row (bodies.BodyMask._rows_masked).

- a masked answer went with a digest of the upstream's bytes in a header whose name
  writes the digest's word into another: rclone's `X-Amz-Meta-Md5chksum` (an object's
  MD5, stored as its metadata), `X-Sha256sum`, `X-ContentMD5`. Only names with the word
  alone (`Content-MD5`, `X-Checksum-Sha256`) were dropped: the digest of the unmasked
  body tells a reader which guess of the masked phone number is right (seven digits: ten
  million hashes, offline). A name holding a digest's word anywhere in one of its words
  describes the body now (messages.describes_body), so it is dropped, a HEAD's too.

- text naming its own charset inside it, which its parser reads before the Content-Type
  says anything (XML 1.0 §4.3.3's `<?xml version="1.0" encoding="cp037"?>`, an HTML
  `<meta charset>`, which lxml and BeautifulSoup honour given bytes), went as the masks
  read it, UTF-8 or Latin-1: an XML document in EBCDIC (IBM's mainframe APIs answer so;
  XML 1.0 Appendix F detects `<?xm` in EBCDIC with no declaration at all) passed whole,
  the e-mail in it unread; so did `ann+AEA-example.com` under a UTF-7 `<meta charset>`.
  Text naming a charset the masks do not read it as (anything but UTF-8, ASCII,
  Latin-1, Windows-1252), or opening as XML in EBCDIC, is withheld
  (bodies._declares_unreadable), as one whose Content-Type names one is; and text that
  is no UTF-8 is read as EBCDIC too (bodies.legacy_readings), as it is as Latin-1.

- a header whose name holds the value (`X-4111111111111111`, `X-123-45-6789`,
  `X-Phone-5550100`: an object store's metadata key, an API naming a header after a
  value) went as it came, its value alone masked: a JSON key is masked as any string.
  A name cannot be masked and stay a name: such a header is dropped
  (bodies._name_holds_data), an upgrade's answer's too.

(Held already, pinned here: a header's B word of UTF-8, a card in a Q word, `ETag`,
`Content-MD5` and `X-Checksum-Sha256` dropped.)
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from http_upstream import exchange, http_stack, raw_server, reader_get, status

pytestmark = pytest.mark.integration


def _answer(head: str, body: str = "", line: str = "HTTP/1.1 200 OK") -> bytes:
    data = body.encode()
    return f"{line}\r\n{head}Content-Length: {len(data)}\r\n\r\n".encode() + data


def _b(text: str, charset: str) -> str:
    return f"=?{charset}?b?{base64.b64encode(text.encode(charset)).decode()}?="


PLAIN = "Content-Type: text/plain\r\n"
HEXED = b'{"phone":"5550100"}'.hex()
WORDS = {
    "q": _answer(f"X-Who: =?utf-8?q?ann=40example.com?=\r\n{PLAIN}", "ok"),
    "q-upper": _answer(f"X-Who: =?UTF-8?Q?ann=40example=2Ecom?=\r\n{PLAIN}", "ok"),
    "q-latin1": _answer(f"X-Who: =?iso-8859-1?q?mail_ann=40example.com?=\r\n{PLAIN}", "ok"),
    "q-utf7": _answer(f"X-Who: =?utf-7?q?ann+AEA-example.com?=\r\n{PLAIN}", "ok"),
    "b-utf16": _answer(f"X-Who: {_b('ann@example.com', 'utf-16')}\r\n{PLAIN}", "ok"),
    "b-utf8": _answer(f"X-Who: {_b('ann@example.com', 'utf-8')}\r\n{PLAIN}", "ok"),
    "q-filename": _answer(
        'Content-Disposition: attachment; filename="=?utf-8?q?ann=40example.com.txt?="\r\n' + PLAIN,
        "ok",
    ),
    "q-location": _answer(
        "Location: /next?who==?utf-8?q?ann=40example.com?=\r\n", "", "HTTP/1.1 302 Found"
    ),
    # (§6.2: white space between two adjacent words is dropped, `ann` + `@example.com`)
    "q-adjacent": _answer(f"X-Who: =?utf-8?q?ann?= =?utf-8?q?=40example.com?=\r\n{PLAIN}", "ok"),
    # (text written as hex, which a JSON body's string is read as already)
    "hex": _answer(f"X-Data: {HEXED}\r\n{PLAIN}", "ok"),
    "q-card": _answer(f"X-Ref: =?us-ascii?q?4111_1111_1111_1111?=\r\n{PLAIN}", "ok"),
}
# (a word hiding nothing goes as it came)
KEPT = {"q-plain": _answer(f"X-Note: =?utf-8?q?caf=C3=A9_au_lait?=\r\n{PLAIN}", "ok")}
JSON = "Content-Type: application/json\r\n"
TABLES = {
    "columns-next": (
        {"columns": ["name", "phone"], "rows": [["Ann", "5550100"]], "next": []},
        {"columns": ["name", "phone"], "rows": [["Ann", "[REDACTED]"]], "next": []},
    ),
    "pairs-tags": (
        {"rows": [{"key": "phone", "value": "5550100"}], "tags": []},
        {"rows": [{"key": "phone", "value": "[REDACTED]"}], "tags": []},
    ),
}


async def _read_all(tmp_path: Path, cases: dict[str, bytes]) -> dict[str, bytes]:
    async def converse(reader: Any, writer: Any) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        writer.write(cases[head.split(b" ")[1].decode().strip("/")])
        await writer.drain()

    got = {}
    async with (
        raw_server(converse) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        for n, path in enumerate(cases):
            got[path] = await exchange(s.proxy.port, reader_get(s, n, f"GET /{path}"))
    return got


async def test_encoded_words_in_a_header_are_read_decoded(tmp_path: Path) -> None:
    got = await _read_all(tmp_path, {**WORDS, **KEPT})
    for name in WORDS:
        head = got[name].partition(b"\r\n\r\n")[0].lower()
        assert status(got[name]) in (200, 302), (name, got[name])
        for hidden in (
            b"ann=40",
            b"ann?=",
            b"ann@",
            b"ann+aea",
            b"4111_1111_1111_1111",
            HEXED.encode(),
        ):
            assert hidden not in head, (name, head)
        assert b"[redacted]" in head or b"****" in head, (name, head)
    assert b"X-Note: =?utf-8?q?caf=C3=A9_au_lait?=\r\n" in got["q-plain"]


async def test_an_empty_list_beside_a_table_is_answered(tmp_path: Path) -> None:
    cases = {name: _answer(JSON, json.dumps(sent)) for name, (sent, _) in TABLES.items()}
    got = await _read_all(tmp_path, cases)
    for name, (_, shown) in TABLES.items():
        assert status(got[name]) == 200, (name, got[name])
        assert json.loads(got[name].partition(b"\r\n\r\n")[2]) == shown, (name, got[name])


DOCUMENT = json.dumps({"name": "Ann", "phone": "5550100"}).encode()
DIGESTS = {
    "X-Amz-Meta-Md5chksum": base64.b64encode(hashlib.md5(DOCUMENT).digest()).decode(),
    "X-Sha256sum": hashlib.sha256(DOCUMENT).hexdigest(),
    "X-ContentMD5": hashlib.md5(DOCUMENT).hexdigest(),
    "X-Object-Meta-Sha1sum": hashlib.sha1(DOCUMENT).hexdigest(),
    "ETag": f'"{hashlib.md5(DOCUMENT).hexdigest()}"',
    "Content-MD5": base64.b64encode(hashlib.md5(DOCUMENT).digest()).decode(),
    "X-Checksum-Sha256": hashlib.sha256(DOCUMENT).hexdigest(),
}


async def test_a_digest_of_the_unmasked_body_does_not_go(tmp_path: Path) -> None:
    fields = "".join(f"{n}: {v}\r\n" for n, v in DIGESTS.items())
    answer = f"HTTP/1.1 200 OK\r\n{JSON}{fields}Content-Length: {len(DOCUMENT)}\r\n\r\n"

    async def converse(reader: Any, writer: Any) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        writer.write(answer.encode() + (b"" if head.startswith(b"HEAD") else DOCUMENT))
        await writer.drain()

    async with (
        raw_server(converse) as port,
        http_stack(tmp_path, upstream_url=f"http://127.0.0.1:{port}") as s,
    ):
        got = await exchange(s.proxy.port, reader_get(s, 0, "GET /customer/7"))
        headed = await exchange(s.proxy.port, reader_get(s, 1, "HEAD /customer/7"))
    head, _, body = got.partition(b"\r\n\r\n")
    assert status(got) == 200 and json.loads(body) == {"name": "Ann", "phone": "[REDACTED]"}
    for answered in (head, headed.partition(b"\r\n\r\n")[0]):
        for name, value in DIGESTS.items():
            assert name.lower().encode() not in answered.lower(), (name, answered)
            assert value.encode() not in answered, (name, answered)


EBCDIC = '<?xml version="1.0" encoding="cp037"?><c><mail>ann@example.com</mail></c>'
DECLARED = {
    "xml-ebcdic": ("application/xml", EBCDIC.encode("cp037")),
    "xml-ebcdic-bare": ("text/xml", "<?xml version='1.0'?><c>ann@example.com</c>".encode("cp037")),
    # (no declaration, no XML: text in EBCDIC, read as its reader is told to)
    "plain-ebcdic": ("text/plain", "name,phone\nAnn,ann@example.com\n".encode("cp037")),
    "xml-utf7": (
        "application/xml",
        b'<?xml version="1.0" encoding="UTF-7"?>\n<c>mail ann+AEA-example.com</c>\n',
    ),
    "html-utf7": ("text/html", b'<meta charset="utf-7"><p>mail ann+AEA-example.com</p>'),
    "html-equiv": (
        "text/html",
        b'<meta http-equiv="Content-Type" content="text/html; charset=iso-2022-jp">\n'
        + "<p>mail ann\uff20example.com</p>".encode("iso-2022-jp"),
    ),
}
# (a declaration naming UTF-8 or Latin-1 is read as before: masked)
DECLARED_KEPT = {
    "xml-utf8": (
        "application/xml",
        b'<?xml version="1.0" encoding="UTF-8"?>\n<c>ann@example.com</c>\n',
        b'<?xml version="1.0" encoding="UTF-8"?>\n<c>a***@example.com</c>\n',
    ),
    "html-latin1": (
        "text/html",
        b'<meta charset="iso-8859-1">\n<p>ann@example.com</p>\n',
        b'<meta charset="iso-8859-1">\n<p>a***@example.com</p>\n',
    ),
}


async def test_text_naming_a_charset_the_masks_do_not_read_is_withheld(tmp_path: Path) -> None:
    def answer(kind: str, data: bytes) -> bytes:
        return f"HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\n".encode() + (
            b"Content-Length: %d\r\n\r\n%s" % (len(data), data)
        )

    cases = {n: answer(k, d) for n, (k, d) in DECLARED.items()}
    cases.update({n: answer(k, d) for n, (k, d, _) in DECLARED_KEPT.items()})
    got = await _read_all(tmp_path, cases)
    for name, (_, sent) in DECLARED.items():
        assert status(got[name]) == 502, (name, got[name])
        assert sent not in got[name] and b"example.com" not in got[name], (name, got[name])
    for name, (_, _, shown) in DECLARED_KEPT.items():
        assert status(got[name]) == 200, (name, got[name])
        assert got[name].partition(b"\r\n\r\n")[2] == shown, (name, got[name])


NAMED = ["X-4111111111111111", "X-Card-4111-1111-1111-1111", "X-123-45-6789", "X-Phone-5550100"]
# (names of what a header holds, its value masked, and names with digits that are none,
# go as before)
NAMES_KEPT = [
    "X-Phone-Number",
    "X-RateLimit-Remaining",
    "X-Request-Id",
    "X-Card-Type",
    "X-B3-TraceId",
]


async def test_a_header_named_after_a_value_does_not_go(tmp_path: Path) -> None:
    fields = "".join(f"{n}: yes\r\n" for n in NAMED + NAMES_KEPT)
    got = await _read_all(tmp_path, {"named": _answer(fields + PLAIN, "ok")})
    head = got["named"].partition(b"\r\n\r\n")[0]
    assert status(got["named"]) == 200, got
    for name in NAMED:
        assert name.encode() not in head, (name, head)
    for hidden in (b"4111", b"6789", b"5550100"):
        assert hidden not in head, head
    for name in NAMES_KEPT:
        assert f"\r\n{name}: ".encode() in head, (name, head)
