"""Probes of token verification, ninth round (helper idsec6): one signed token, two
readings.

Attack (anyone who can get the issuer to sign a header of their choosing, or a reader
other than this PDP that honours more of the JOSE header): a JWS whose header said the
payload is compressed (`zip`, RFC 7516 §4.1.3: an encrypted token's, which a reader that
honours it inflates first), encrypted (`enc`), or itself a token to verify in turn (`cty`
JWT, RFC 7519 §5.2) was verified here as plain claims: the same signed bytes read as
another payload elsewhere. Each is refused; `cty` naming any other type stays allowed.
"""

from __future__ import annotations

import pytest

from pdp.domain.identity import TokenRejected


@pytest.mark.parametrize(
    "headers",
    [
        {"cty": "JWT"},
        {"cty": "jwt"},
        {"cty": "application/JWT"},
        {"cty": 1},
        {"zip": "DEF"},
        {"enc": "A128GCM"},
        {"epk": {"kty": "EC"}},
    ],
)
async def test_a_header_giving_the_payload_another_reading_is_refused(idp, verifier, headers):
    with pytest.raises(TokenRejected) as info:
        await verifier.verify(idp.token(headers=headers))
    assert info.value.reason == "token header names an encryption or a nested token"


@pytest.mark.parametrize("headers", [{}, {"cty": "json"}, {"typ": "JWT"}])
async def test_an_ordinary_header_is_accepted(idp, verifier, headers):
    assert (await verifier.verify(idp.token(headers=headers))).subject == "alice@example.com"
