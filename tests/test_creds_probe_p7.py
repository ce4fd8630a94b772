"""Attacks on the upstream credential (probe p7): the secret in encodings the scanner did
not know, and split across what the client is sent.

The scanner behind ClientOutput (every byte to a Postgres or SSH client) and the
`credential_exposed` evidence knew the secret raw, case-changed, hex, base64, JSON-escaped
and percent-encoded where URL quoting changes it — not every byte percent-encoded
(%73%33%63..., how a URL encoder that quotes all bytes writes it) nor UTF-16 (a Windows or
Java upstream's text, a UCS-2 column): an upstream's answer in those forms reached the
client whole and the evidence said the credential was never exposed. Both are now forms
of their own, found across chunk boundaries like the others.

Real components: a PDP and the Postgres proxy in process (pg_harness); the upstream is
the hostile party itself (probe p2's refusing server), the client raw bytes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pg_harness import gateway_on, scratch_database
from test_creds_probe_p2 import _everything_sent, _refusing, serving

from proxies.runtime.exposure import ClientOutput
from proxies.runtime.secrets_scan import SecretScanner

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-Runtimesec2-key"


def _every_byte_percent(text: str, upper: bool = False) -> str:
    digits = text.encode().hex()
    digits = digits.upper() if upper else digits
    return "".join("%" + digits[i : i + 2] for i in range(0, len(digits), 2))


FORMS = {
    "every byte percent-encoded": _every_byte_percent(SECRET).encode(),
    "every byte percent-encoded, upper hex": _every_byte_percent(SECRET, True).encode(),
    "utf-16-le": SECRET.encode("utf-16-le"),
    "utf-16-be": SECRET.encode("utf-16-be"),
    "utf-16-le upper-cased": SECRET.upper().encode("utf-16-le"),
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_the_scanner_finds_the_secret_in_each_form_split_anywhere(form: str) -> None:
    sent = b"answer: " + FORMS[form] + b" (end)"
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
    assert FORMS[form] not in b"".join(written)


async def test_a_hostile_upstreams_refusal_in_percent_encoding_is_withheld(
    tmp_path: Path,
) -> None:
    with scratch_database() as (name, role, password):
        echoed = "debug " + _every_byte_percent(password)
        async with (
            serving(_refusing(echoed)) as port,
            gateway_on(tmp_path, name, role, password, f"127.0.0.1:{port}") as gw,
        ):
            sent = await asyncio.to_thread(_everything_sent, gw.proxy.port, name, gw.token())
    assert sent
    assert _every_byte_percent(password).encode() not in sent
