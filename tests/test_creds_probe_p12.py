"""Attacks on the upstream credential (probe p12): the secret written so that its reader
sees it while no byte form the scanner knew was sent.

The scanner behind ClientOutput (every byte to a Postgres or SSH client) and the
`credential_exposed` evidence searched fixed byte forms of the secret (raw, cased, hex,
base64, percent, JSON-escaped where JSON escapes it, UTF-16). Each of these reached the
client whole with the evidence saying the credential was never exposed: every character
an HTML character reference (`&#115;&#51;...`, `&#x73;...`), a JSON `\\u0073` or C
`\\x73` escape (of ASCII characters, which json.dumps leaves as they are), markup between
the characters (`s<b></b>3...`), fullwidth or mathematical letters, a zero-width space,
joiner or soft hyphen between the characters, and base64 of its UTF-16. The scanner now
reads the stream as its reader shows it too (SecretScanner's "shown" form) and knows the
base64 of the UTF-16 forms.

Real components: a PDP and the Postgres proxy in process (pg_harness); the upstream is
the hostile party itself (probe p2's refusing server), the client raw bytes.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from pg_harness import gateway_on, scratch_database
from test_creds_probe_p2 import _everything_sent, _refusing, serving

from proxies.runtime.exposure import ClientOutput
from proxies.runtime.secrets_scan import SecretScanner

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-Runtimesec2-key"


def _references(text: str) -> str:
    return "".join(f"&#{ord(c)};" for c in text)


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


FORMS = {
    "html decimal references": _references(SECRET),
    "html hex references": "".join(f"&#x{ord(c):x};" for c in SECRET),
    "html references without semicolons": "".join(f"&#{ord(c)}" for c in SECRET),
    "json escapes of every character": "".join(f"\\u{ord(c):04x}" for c in SECRET),
    "c escapes of every byte": "".join(f"\\x{b:02X}" for b in SECRET.encode()),
    "markup between characters": "<i></i>".join(SECRET),
    "fullwidth": _fullwidth(SECRET),
    "mathematical sans-serif": "".join(
        chr(0x1D5BA + ord(c) - 97) if c.islower() else c for c in SECRET
    ),
    "zero-width spaces": "\u200b".join(SECRET),
    "zero-width joiners": "\u200d".join(SECRET),
    "soft hyphens": "\u00ad".join(SECRET),
    "combining marks": "\u0301".join(SECRET),
    "fullwidth upper-cased": _fullwidth(SECRET.upper()),
    "base64 of utf-16-le": base64.b64encode(SECRET.encode("utf-16-le")).decode(),
}
# what the scanner must not read as the secret
HARMLESS = [
    "<p>s3cr3t</p> <b>Runtime</b> sec2 key",
    "&#115;3cr3t-Runtime sec2-key",
    "s3cr3t\u00a0Runtimesec2-key",
]


@pytest.mark.parametrize("form", sorted(FORMS))
def test_the_scanner_finds_the_secret_shown_in_each_form_split_anywhere(form: str) -> None:
    sent = ("answer: " + FORMS[form] + " (end)").encode()
    for cut in range(1, len(sent)):
        scanner = SecretScanner([SECRET])
        scanner.feed(sent[:cut])
        assert scanner.feed(sent[cut:]), (form, cut)
    written: list[bytes] = []
    out = ClientOutput(written.append)
    out.guard([SECRET])
    for byte in range(len(sent)):  # one byte a segment
        out.write(sent[byte : byte + 1])
    assert out.exposed and out.withheld
    assert FORMS[form].encode() not in b"".join(written)


@pytest.mark.parametrize("text", HARMLESS)
def test_what_shows_no_secret_passes(text: str) -> None:
    scanner = SecretScanner([SECRET])
    assert not scanner.feed(text.encode()), text
    assert scanner.findings == []


async def test_a_hostile_upstreams_refusal_in_html_references_is_withheld(
    tmp_path: Path,
) -> None:
    with scratch_database() as (name, role, password):
        echoed = "debug <pre>" + _references(password) + "</pre>"
        async with (
            serving(_refusing(echoed)) as port,
            gateway_on(tmp_path, name, role, password, f"127.0.0.1:{port}") as gw,
        ):
            sent = await asyncio.to_thread(_everything_sent, gw.proxy.port, name, gw.token())
    assert sent
    assert _references(password).encode() not in sent
