"""PDP probe 30 (helper auditsec5): what the PDP tells whoever reaches its gRPC port.

Attack (an agent with an ordinary reader token, or nothing at all, that reaches the PDP's
port): `/v1/status` and `/metrics` answer only a proxy credential or an auditor, but the
gRPC ServerInfo answered anyone: the exact Portcullis version, the OPA evaluator's
version and the policy revision (a git commit of the policy repository), which is what
one needs to match a PDP to its known weaknesses and to tell when its policy changed.
ServerInfo now answers a proxy only (its decision cache watches the revision), and a
caller that is none is refused (UNAUTHENTICATED) and recorded as `proxy.refused`;
`portcullis status` asks it with the local proxy credential, as it asks /v1/status.

Real PDP (tests/pdp_harness.py, embedded OPA, SQLite store), the real CLI.
"""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from pdp_harness import pdp_stub, running_pdp, token
from test_pdp_probe_p7 import _written
from test_pdp_probe_p8 import _cli

from portcullis.config import load_config
from portcullis.v1 import pdp_pb2


async def test_server_info_answers_a_proxy_only(tmp_path):
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app:
        reader = token(config)
        # nobody, then a reader's token where a proxy puts its credential
        for metadata in ((), (("authorization", f"Bearer {reader}"),)):
            async with pdp_stub(app.address, credential="") as anonymous:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await anonymous.ServerInfo(pdp_pb2.ServerInfoRequest(), metadata=metadata)
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert app.engine.revision not in (err.value.details() or "")
        refused = [r.body for r in await app.store.query(kind="proxy.refused")]
        assert [r["rpc"] for r in refused].count("ServerInfo") == 2

        async with pdp_stub(app.address) as proxy:
            info = await proxy.ServerInfo(pdp_pb2.ServerInfoRequest())
            assert info.engine == "embedded" and info.policy_revision == app.engine.revision

        # the operator's `portcullis status` still reads it, with the local credential
        status = await asyncio.to_thread(_cli, config_path, "status", "--format", "json")
        report = json.loads(status.stdout)
        assert report["pdp"]["reachable"], status.stdout + status.stderr
        assert report["pdp"]["policy_revision"] == app.engine.revision
        assert report["pdp"]["engine"] == "embedded"
