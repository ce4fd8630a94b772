"""TLS and mutual TLS between proxies and the PDP, with certificates made by the test."""

from __future__ import annotations

import grpc
import pytest
from certs import make_pki
from pdp_harness import pdp_config, running_pdp

from portcullis.v1 import pdp_pb2, pdp_pb2_grpc


@pytest.fixture
def pki(tmp_path):
    return make_pki(tmp_path)


async def _server_info(address: str, credentials) -> pdp_pb2.ServerInfoResponse:
    async with grpc.aio.secure_channel(address, credentials) as channel:
        stub = pdp_pb2_grpc.DecisionServiceStub(channel)
        return await stub.ServerInfo(pdp_pb2.ServerInfoRequest(), timeout=5)


async def test_mutual_tls_requires_a_client_certificate(tmp_path, pki):
    base = pdp_config(tmp_path)
    config = pdp_config(
        tmp_path,
        pdp={
            "listen": base.pdp.listen,
            "engine": {"type": "embedded", "policies": str(base.pdp.engine.policies), "workers": 1},
            "store": {"type": "sqlite", "path": str(tmp_path / "audit.db")},
            "signing_key": str(tmp_path / "signing.key"),
            "tls": {
                "cert_file": str(pki["server.pem"]),
                "key_file": str(pki["server.key"]),
                "client_ca_file": str(pki["ca.pem"]),
            },
        },
    )
    async with running_pdp(config) as app:
        ca = pki["ca.pem"].read_bytes()
        with_cert = grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=pki["client.key"].read_bytes(),
            certificate_chain=pki["client.pem"].read_bytes(),
        )
        info = await _server_info(app.address, with_cert)
        assert info.engine == "embedded"

        without_cert = grpc.ssl_channel_credentials(root_certificates=ca)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _server_info(app.address, without_cert)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE

        async with grpc.aio.insecure_channel(app.address) as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                await pdp_pb2_grpc.DecisionServiceStub(channel).ServerInfo(
                    pdp_pb2.ServerInfoRequest(), timeout=5
                )
