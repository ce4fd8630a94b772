"""Probes of token verification, fifth round (helper approvals4): tokens the issuer signs
that say nothing about who is asking, and a subject spelt with blanks.

Attack (whoever gets hold of one, e.g. at the RP's back-channel logout endpoint or in its
logs): an OpenID Connect issuer signs other tokens than ID and access tokens with the
same keys. A back-channel logout token (`typ: logout+jwt`) carries the person's `sub`,
the client's `aud`, the issuer and an `exp`: every claim the PDP required, so it was
taken as that person's identity, and opened their sessions. RFC 8725 §3.11 (explicit
typing) and RFC 8417 §2.2 (a Security Event Token carries `events`): a token whose `typ`
names another kind, or that carries `events`, is refused; ID and access tokens (`typ`
JWT, at+jwt, or none) are taken as before.

Attack (a person whose IdP keeps a username as typed): a subject with blanks at either
end (' rita@example.com', 'rita@example.com\\u3000') verified, and was another identity
to everything the PDP counts or grants per subject: rita's sessions past the cap per
identity (max_sessions_per_identity), a budget, a grant of her own. A group with such
blanks was refused already; a subject is now too.
"""

from __future__ import annotations

import grpc
import pytest
from pdp_harness import open_session, pdp_config, pdp_stub, running_pdp, token

from pdp.domain.identity import TokenRejected
from portcullis.v1 import pdp_pb2

LOGOUT_EVENT = {"http://schemas.openid.net/event/backchannel-logout": {}}


@pytest.mark.parametrize(
    "headers,claims",
    [
        ({"typ": "logout+jwt"}, {"events": LOGOUT_EVENT, "sid": "s-1"}),
        ({}, {"events": LOGOUT_EVENT, "sid": "s-1"}),  # the older form: no typ
        ({"typ": "secevent+jwt"}, {"events": {"https://example.com/ev": {}}}),
        ({"typ": "dpop+jwt"}, {}),
        ({"typ": 7}, {}),
    ],
    ids=["logout", "logout-untyped", "secevent", "dpop", "typ-not-text"],
)
async def test_a_token_of_another_kind_is_no_identity(idp, verifier, headers, claims):
    with pytest.raises(TokenRejected) as refused:
        await verifier.verify(idp.token(headers=headers, **claims))
    assert refused.value.reason in (
        "the token is not an identity token (typ)",
        "a security event token is no identity",
    )


@pytest.mark.parametrize("typ", [None, "JWT", "jwt", "at+jwt", "application/at+jwt"])
async def test_id_and_access_tokens_are_still_identities(idp, verifier, typ):
    headers = {} if typ is None else {"typ": typ}
    made = idp.token(headers=headers)
    if typ is None:  # PyJWT writes typ JWT unless told otherwise: take it out
        made = idp.sign(idp.claims(), headers={"typ": None})
    assert (await verifier.verify(made)).subject == "alice@example.com"


@pytest.mark.parametrize(
    "subject",
    [" alice@example.com", "alice@example.com ", "alice@example.com\u3000", "\u00a0alice"],
    ids=["leading", "trailing", "ideographic-space", "no-break-space"],
)
async def test_a_subject_with_blanks_at_either_end_is_refused(idp, verifier, subject):
    with pytest.raises(TokenRejected) as refused:
        await verifier.verify(idp.token(sub=subject))
    assert refused.value.reason == "the subject has blanks at either end"


async def test_a_padded_subject_opens_no_session_past_the_cap(tmp_path):
    """rita holds 16 sessions on orders-db, the cap per identity; a 17th is refused. The
    same person as ' rita@example.com' opened it (and 16 more)."""
    config = pdp_config(tmp_path)
    rita = token(config, "rita@example.com", ("readonly",))
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        for _ in range(16):
            assert (await open_session(stub, rita)).session_id
        capped = await open_session(stub, rita)
        assert not capped.session_id and capped.decision.verdict == pdp_pb2.DENY
        assert "already holds 16 sessions" in " ".join(capped.decision.reasons)
        padded = token(config, " rita@example.com", ("readonly",))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await open_session(stub, padded)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "blanks" in str(refused.value.details())
