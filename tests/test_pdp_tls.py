"""TLS and mutual TLS between proxies and the PDP, with certificates made by the test."""

from __future__ import annotations

import datetime
import ipaddress

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pdp_harness import pdp_config, running_pdp
from portcullis.v1 import pdp_pb2, pdp_pb2_grpc


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(subject: str, key, issuer_key, issuer_name=None, ca=False, san=True):
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def pki(tmp_path):
    ca_key = _key()
    ca = _cert("portcullis test CA", ca_key, ca_key, ca=True, san=False)
    server_key, client_key = _key(), _key()
    server = _cert("pdp", server_key, ca_key, ca.subject)
    client = _cert("proxy-eu-prod", client_key, ca_key, ca.subject)
    files = {}
    for name, data in {
        "ca.pem": ca.public_bytes(serialization.Encoding.PEM),
        "server.pem": server.public_bytes(serialization.Encoding.PEM),
        "server.key": _pem_key(server_key),
        "client.pem": client.public_bytes(serialization.Encoding.PEM),
        "client.key": _pem_key(client_key),
    }.items():
        (tmp_path / name).write_bytes(data)
        files[name] = tmp_path / name
    return files


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
