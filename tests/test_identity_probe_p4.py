"""Probes of token verification, fourth round (helper identity3): claims the PDP cannot
carry, and subjects that print as someone else.

Attack (a token from an issuer that lets users shape a claim: a profile field, a custom
attribute; the dev issuer signs any): JSON as Python reads it takes NaN, Infinity and
1e400 (a float past range), and a lone surrogate escape ("\\ud800") is a str Python
holds but UTF-8 cannot. Such a token verified, and OpenSession then failed inside the
PDP with UNKNOWN 'Unexpected ValueError: Out of range float values are not JSON
compliant' or 'UnicodeEncodeError' (the records are canonical JSON without NaN, the
wire is UTF-8): an internal error with a traceback per attempt, where a token that
proves no identity is UNAUTHENTICATED naming why. A payload must now be JSON every
reader reads alike (RFC 8259: no NaN/Infinity, numbers in range, text that is Unicode).

Attack (a subject that prints as another's): a sub holding U+202E (right-to-left
override), U+2028 (line separator), a zero-width space or another format character
was accepted (only C0/C1 controls were refused): in the console, an approval request
or a terminal's log line, 'eve\\u202emoc.elpmaxe@ecila' reads as someone else, and a
line separator starts a new line where it is shown. A subject or group holding a
Unicode control, format (Cf), surrogate or line/paragraph separator is refused.
"""

from __future__ import annotations

import base64
import json
import time

import grpc
import pytest
from pdp_harness import decide_sql, open_session, pdp_config, pdp_stub, running_pdp, token

from pdp.domain.identity import DevIssuer


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(dev: DevIssuer, payload: str) -> str:
    """A dev-issuer token whose payload is exactly this JSON text."""
    header = json.dumps({"alg": "EdDSA", "kid": dev.kid, "typ": "JWT"}).encode()
    signing_input = f"{_b64(header)}.{_b64(payload.encode('utf-8', 'surrogatepass'))}"
    return f"{signing_input}.{_b64(dev._key.sign(signing_input.encode()))}"


def payload(sub: str = '"eve@example.com"', groups: str = '["readonly"]', extra: str = "") -> str:
    now = int(time.time())
    return (
        f'{{"sub":{sub},"iss":"portcullis-dev","aud":"portcullis","exp":{now + 600},'
        f'"iat":{now},"groups":{groups}{extra}}}'
    )


UNCARRIABLE = {
    "claim-nan": payload(extra=',"x":NaN'),
    "claim-infinity": payload(extra=',"x":-Infinity'),
    "claim-float-past-range": payload(extra=',"x":1e400'),
    "claim-lone-surrogate": payload(extra=',"x":"\\ud800"'),
    "nested-lone-surrogate": payload(extra=',"profile":{"name":["a\\udfff"]}'),
    "sub-lone-surrogate": payload(sub='"eve\\ud800"'),
    "group-lone-surrogate": payload(groups='["readonly\\udc00"]'),
}

UNPRINTABLE = {
    "sub-rtl-override": payload(sub='"eve\\u202emoc.elpmaxe@ecila"'),
    "sub-line-separator": payload(sub='"eve\\u2028alice@example.com"'),
    "sub-paragraph-separator": payload(sub='"eve\\u2029"'),
    "sub-zero-width-space": payload(sub='"ali\\u200bce@example.com"'),
    "sub-bom": payload(sub='"\\ufeffalice@example.com"'),
    "sub-isolate": payload(sub='"eve\\u2066x\\u2069"'),
    "group-rtl-override": payload(groups='["readonly","\\u202eabd"]'),
    "group-zero-width-joiner": payload(groups='["db\\u200da"]'),
}


@pytest.fixture
async def pdp(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app:
        yield config, app


@pytest.mark.parametrize("case", sorted(UNCARRIABLE))
async def test_a_claim_the_pdp_cannot_carry_is_a_refused_token(pdp, case):
    config, app = pdp
    dev = DevIssuer(config.identity)
    async with pdp_stub(app.address) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await open_session(stub, signed(dev, UNCARRIABLE[case]))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, refused.value
        assert "malformed token" in str(refused.value.details())
        # the PDP is unharmed: an ordinary token opens and decides
        opened = await open_session(stub, token(config))
        assert (await decide_sql(stub, opened.session_id, "SELECT 1")).decision_id


@pytest.mark.parametrize("case", sorted(UNPRINTABLE))
async def test_a_subject_or_group_that_prints_as_another_is_refused(pdp, case):
    config, app = pdp
    dev = DevIssuer(config.identity)
    async with pdp_stub(app.address) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await open_session(stub, signed(dev, UNPRINTABLE[case]))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, refused.value


@pytest.mark.parametrize(
    "sub,groups",
    [
        ('"Zoë Müller"', '["lecteurs-équipe"]'),  # letters past ASCII stay names
        ('"\\u674e\\u96f7@example.cn"', '["\\u8bfb\\u8005"]'),
        ('"bob@example.com"', '"readonly"'),
    ],
)
async def test_names_in_any_script_are_still_identities(pdp, sub, groups):
    config, app = pdp
    dev = DevIssuer(config.identity)
    async with pdp_stub(app.address) as stub:
        opened = await open_session(stub, signed(dev, payload(sub=sub, groups=groups)))
        assert opened.identity.subject == json.loads(sub)  # verified: the policy's to judge
