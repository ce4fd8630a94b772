"""Probes of token verification, seventh round (helper idsec6): a token issued to another
client of our issuer.

Attack (a client of the same IdP, say a CI bot's or a BI tool's, asks for a token and has
the IdP add `portcullis` to its audience list, or holds one whose `azp` names it): the PDP
checked only that its audience was among `aud`, so another client's token opened
sessions and approved. OIDC Core §3.1.3.7: with several audiences `azp` must be present
and be our client id; an `azp` naming another client is refused whatever `aud` says.
"""

from __future__ import annotations

from dataclasses import replace

import grpc
import pytest
from pdp_harness import open_session, pdp_config, pdp_stub, running_pdp

from pdp.domain.identity import TokenRejected, TokenVerifier


async def reason(verifier: TokenVerifier, tok: str) -> str:
    with pytest.raises(TokenRejected) as info:
        await verifier.verify(tok)
    return info.value.reason


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": ["ci-bot", "portcullis"]},  # several audiences, no azp
        {"aud": ["portcullis", "portcullis"]},  # one named twice is still a list of two
        {"aud": ["ci-bot", "portcullis"], "azp": "ci-bot"},
        {"aud": "portcullis", "azp": "ci-bot"},  # ours alone, issued to another client
        {"aud": ["portcullis"], "azp": ["portcullis"]},  # azp is a string
        {"aud": ["ci-bot", "portcullis"], "azp": "PORTCULLIS"},
    ],
)
async def test_another_clients_token_is_refused(idp, verifier, claims):
    assert "azp" in await reason(verifier, idp.token(**claims))


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": ["ci-bot", "portcullis"], "azp": "portcullis"},
        {"aud": "portcullis", "azp": "portcullis"},
        {"aud": ["portcullis"]},
        {"aud": "portcullis"},
    ],
)
async def test_a_token_issued_to_us_is_accepted(idp, verifier, claims):
    assert (await verifier.verify(idp.token(**claims))).subject == "alice@example.com"


async def test_an_approvers_token_is_checked_against_the_approvals_audience(idp, verifier):
    ours = idp.token(aud=["approvals", "ci-bot"], azp="approvals")
    assert (await verifier.verify(ours, audience="approvals")).subject == "alice@example.com"
    other = idp.token(aud=["approvals", "ci-bot"], azp="ci-bot")
    with pytest.raises(TokenRejected) as info:
        await verifier.verify(other, audience="approvals")
    assert "azp" in info.value.reason


async def test_the_pdp_opens_no_session_for_another_clients_token(idp, tmp_path):
    config = pdp_config(tmp_path, identity={"issuer": idp.issuer, "audience": idp.audience})
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await open_session(stub, idp.token(aud=["ci-bot", "portcullis"]))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "azp" in (refused.value.details() or "")
        ours = idp.token(aud=["ci-bot", "portcullis"], azp="portcullis", groups=["readonly"])
        assert (await open_session(stub, ours)).session_id


async def test_a_client_the_operator_names_may_hand_its_tokens_to_sessions(idp):
    settings = replace(idp.settings(algorithms=["RS256"]), authorized_parties=("psql-cli",))
    verifier = TokenVerifier(settings)
    try:
        named = idp.token(aud=["portcullis", "account"], azp="psql-cli")
        assert (await verifier.verify(named)).subject == "alice@example.com"
        assert (await verifier.verify(idp.token(azp="psql-cli"))).subject == "alice@example.com"
        for other in (idp.token(azp="ci-bot"), idp.token(aud=["portcullis", "account"])):
            assert "azp" in await reason(verifier, other)
        # never for an approver's own audience: approving takes a token issued to it
        approver = idp.token(aud=["approvals"], azp="psql-cli")
        with pytest.raises(TokenRejected):
            await verifier.verify(approver, audience="approvals")
    finally:
        await verifier.close()
