"""Attacks on the PDP's identity, approvals and evidence (fifth probe).

Each test drives real components: the PDP over gRPC (tests/pdp_harness.py) with the
embedded OPA evaluator and its real audit store (sqlite), and the `portcullis` CLI in a
subprocess where an auditor would use it.
"""

from __future__ import annotations

import time

import grpc
import jwt
import pytest
from pdp_harness import open_session, pdp_config, pdp_stub, running_pdp
from test_pdp_probe_p4 import IDP, IDP_SECRET


def _idp_config(tmp_path):
    """A PDP trusting the corporate IdP (HS256, shared secret), with the stock policy."""
    identity = {"issuer": IDP, "shared_secret": IDP_SECRET, "algorithms": ["HS256"]}
    return pdp_config(tmp_path, identity=identity)


def _idp_token(sub: str, groups: object) -> str:
    now = int(time.time())
    claims = {"iss": IDP, "sub": sub, "aud": "portcullis", "iat": now, "exp": now + 3600}
    return jwt.encode({**claims, "groups": groups}, IDP_SECRET, algorithm="HS256")


# -- identity: a groups claim is never split into groups ---------------------------------


@pytest.mark.parametrize("groups", ["readonly,dba", "readonly dba", "dba\treadonly", ["x", " dba"]])
async def test_a_groups_string_is_not_split_into_dba(tmp_path, groups):
    """Attack (a reader whose IdP lets people name groups): a token whose groups claim is
    the string "readonly,dba" (or "readonly dba") was split on commas and blanks, and its
    holder was in dba: DELETE without approval, reads unmasked. A group is now taken as
    the provider wrote it; a string naming several groups (or an entry with surrounding
    blanks) rejects the token instead of guessing at membership."""
    config = _idp_config(tmp_path)
    async with running_pdp(config) as pdp, pdp_stub(pdp.address) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await open_session(stub, _idp_token("eve@example.com", groups))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "groups claim" in (refused.value.details() or "")
        # one group in a string is that group
        one = await open_session(stub, _idp_token("eve@example.com", "readonly"))
        assert one.session_id
