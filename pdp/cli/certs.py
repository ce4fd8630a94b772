"""`portcullis certs`: a development CA, the PDP's certificate and proxy certificates (mTLS).

Owns the shape of the certificates the PDP understands (pdp/api/proxy_auth.py): a proxy
certificate's subject common name names the proxy, and its subjectAltName URIs
`urn:portcullis:connection:NAME` the connections it may serve. The CA is reused when the
output folder already has one, so proxies can be added later; every private key is written
0600. For production, have your own CA issue certificates of the same shape.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pdp.api.proxy_auth import ANY_CONNECTION, CONNECTION_URI, write_private

Key = ec.EllipticCurvePrivateKey


def _pem_key(key: Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Portcullis (development)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _alt_names(values: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for value in values:
        if value.startswith("urn:"):
            names.append(x509.UniformResourceIdentifier(value))
            continue
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(value)))
        except ValueError:
            names.append(x509.DNSName(value))
    return names


def issue(
    common_name: str,
    ca_key: Key,
    ca_cert: x509.Certificate,
    *,
    alt_names: list[str],
    usage: x509.ObjectIdentifier,
    days: int,
    not_before: datetime.datetime | None = None,
) -> tuple[Key, x509.Certificate]:
    """A leaf certificate signed by the CA (tests pass not_before to make expired ones)."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if alt_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(_alt_names(alt_names)), critical=False
        )
    return key, builder.sign(ca_key, hashes.SHA256())


def load_or_create_ca(folder: Path, days: int) -> tuple[Key, x509.Certificate, bool]:
    cert_path, key_path = folder / "ca.pem", folder / "ca.key"
    if cert_path.exists() and key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} is not an EC private key")
        return key, x509.load_pem_x509_certificate(cert_path.read_bytes()), False
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = _name("Portcullis development CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    write_private(key_path, _pem_key(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, True


def write_pair(folder: Path, stem: str, key: Key, cert: x509.Certificate) -> tuple[Path, Path]:
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
    write_private(key_path, _pem_key(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def parse_proxy(spec: str, default_connections: list[str]) -> tuple[str, list[str]]:
    """NAME or NAME=conn1,conn2 (`*`: every connection)."""
    name, _, connections = spec.partition("=")
    if not name or any(c in name for c in "/\\"):
        raise argparse.ArgumentTypeError(f"--proxy {spec!r}: a proxy needs a plain name")
    chosen = [c for c in connections.split(",") if c] if connections else default_connections
    return name, chosen or [ANY_CONNECTION]


def mint(
    folder: Path,
    *,
    pdp_hosts: list[str],
    proxies: list[tuple[str, list[str]]],
    days: int,
) -> dict[str, Any]:
    """Write the CA (unless present), the PDP's pair and one pair per proxy; their paths."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_key, ca_cert, created = load_or_create_ca(folder, days)
    key, cert = issue(
        pdp_hosts[0],
        ca_key,
        ca_cert,
        alt_names=pdp_hosts,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        days=days,
    )
    out: dict[str, Any] = {"ca": folder / "ca.pem", "ca_created": created}
    out["pdp"] = write_pair(folder, "pdp", key, cert)
    out["proxies"] = {}
    for name, connections in proxies:
        uris = [CONNECTION_URI + c for c in connections]
        key, cert = issue(
            name,
            ca_key,
            ca_cert,
            alt_names=uris,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
            days=days,
        )
        out["proxies"][name] = (write_pair(folder, f"proxy-{name}", key, cert), connections)
    return out


def cmd_certs(args: argparse.Namespace) -> int:
    from pdp.cli import _config

    config = _config(args, strict=False)
    folder = Path(args.out) if args.out else config.base_dir / "var" / "certs"
    connections = [c.name for c in config.connections]
    specs = args.proxy or ["proxy"]
    proxies = [parse_proxy(spec, connections) for spec in specs]
    host = config.pdp.listen.rpartition(":")[0] if not config.pdp.listen.startswith("unix:") else ""
    hosts = list(dict.fromkeys([*(args.pdp_host or []), "localhost", "127.0.0.1", host]))
    made = mint(folder, pdp_hosts=[h for h in hosts if h], proxies=proxies, days=args.days)
    print(f"{'created' if made['ca_created'] else 'reused'} CA {made['ca']}", file=sys.stderr)
    pdp_cert, pdp_key = made["pdp"]
    first = next(iter(made["proxies"].values()))
    (proxy_cert, proxy_key), _ = first
    for name, ((cert, _key), served) in made["proxies"].items():
        print(f"proxy {name}: {cert} (serves {', '.join(served)})", file=sys.stderr)
    print(
        "# add to portcullis.yaml (each proxy uses its own cert_file/key_file):\n"
        "pdp:\n"
        f"  tls: {{cert_file: {pdp_cert}, key_file: {pdp_key}, client_ca_file: {made['ca']}}}\n"
        "proxies:\n"
        f"  pdp: {{ca_file: {made['ca']}, cert_file: {proxy_cert}, key_file: {proxy_key}}}"
    )
    return 0


def register(sub: Any) -> None:
    certs = sub.add_parser(
        "certs",
        help="dev CA + PDP and proxy certificates (mTLS)",
        description="Mint a development CA (reused when OUT already has one), a certificate "
        "for the PDP and one per proxy; print the pdp.tls and proxies.pdp settings that use "
        "them. A proxy certificate names the proxy (subject CN) and the connections it may "
        "serve (subjectAltName URIs urn:portcullis:connection:NAME). Private keys are 0600.",
    )
    certs.add_argument("--out", default=None, help="folder (default: var/certs by the config)")
    certs.add_argument(
        "--proxy",
        action="append",
        metavar="NAME[=CONN,...]",
        help="a proxy certificate (repeatable; default: 'proxy' serving every connection)",
    )
    certs.add_argument(
        "--pdp-host",
        action="append",
        metavar="HOST",
        help="a name or address the PDP's certificate carries (repeatable; localhost, "
        "127.0.0.1 and pdp.listen's host are always in)",
    )
    certs.add_argument("--days", type=int, default=365, help="validity (default: 365)")
    certs.set_defaults(func=cmd_certs)
