"""An expired token opens nothing: the PDP refuses it at OpenSession, with the same small
clock-skew leeway (identity.leeway_seconds) there as for every command of a session."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from pdp_harness import decide_sql, open_session, pdp_config, pdp_stub, running_pdp, token

from portcullis.config import ConfigError, IdentitySettings, parse_config
from portcullis.v1 import pdp_pb2


async def test_a_token_expired_three_seconds_ago_is_refused_at_open(tmp_path):
    config = pdp_config(tmp_path)
    assert config.identity.leeway_seconds <= 5
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await open_session(stub, token(config, groups=("dba",), ttl=-3))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "expired" in refused.value.details()


async def test_the_leeway_is_the_same_at_open_and_during_the_session(tmp_path):
    config = pdp_config(tmp_path, identity={"dev": True, "dev_key": str(tmp_path / "dev.key"),
                                            "leeway_seconds": 2})  # fmt: skip
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        # expired 1 s ago, inside the 2 s leeway: opens, and its commands are decided
        opened = await open_session(stub, token(config, groups=("dba", "pii-readers"), ttl=-1))
        assert (await decide_sql(stub, opened.session_id, "select 1")).verdict == pdp_pb2.ALLOW
        await asyncio.sleep(1.5)  # now 2.5 s past expiry: beyond the leeway
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await decide_sql(stub, opened.session_id, "select 1")
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError):
            await open_session(stub, token(config, groups=("dba",), ttl=-3))


def test_the_leeway_is_small_by_default_and_bounded(tmp_path):
    (tmp_path / "rego").mkdir()
    assert IdentitySettings().leeway_seconds <= 5
    with pytest.raises(ConfigError) as err:
        parse_config({"identity": {"dev": True, "leeway_seconds": 3600}}, base_dir=tmp_path)
    assert err.value.key == "identity.leeway_seconds"
