"""OPA bundles: the `.tar.gz` format OPA itself loads, written and read here.

Owns `policy build` (a policy directory → a standard OPA bundle: `.manifest` with the
revision and roots, `data.json` files where the directory has them, the Rego modules, and
optionally `.signatures.json`) and reading a bundle back into a PolicyBundle, with its
signature verified when a key is configured. The formats are OPA's, as documented in
OPA's "Bundles" page (Bundle File Format, Signing) and implemented in its v1/bundle
package (hash.go, sign.go, verify.go):

- `.signatures.json` is `{"signatures": [JWT]}`, exactly one JWT, header `alg`/`typ`/`kid`,
  payload `{"files": [{"name", "hash", "algorithm"}], "scope"?, ...}`;
- a file's hash is over its bytes, except structured files (`.manifest`, `data.json`)
  which are hashed over OPA's canonical walk of the parsed JSON (object keys sorted, no
  whitespace, primitives as Go's encoder writes them without HTML escaping);
- verification fails when a signature is present and no key is configured, when a key is
  configured and no signature is present, when the signed file list and the bundle's
  files differ in any way, or when any hash differs.

Pure: bytes in, bytes or a PolicyBundle out; no network, no engine.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import jwt

from pdp.engine.bundle import (
    BundleError,
    PolicyBundle,
    _git,
    _merge_at,
    content_hash,
    load_bundle,
)

MANIFEST = ".manifest"
SIGNATURES = ".signatures.json"
HASH_ALGORITHM = "SHA-256"
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "HS256", "HS512")
MAX_BUNDLE_BYTES = 64 * 1024 * 1024  # unpacked; a policy library is a few hundred KB
MAX_FILES = 10_000
MAX_REVISION = 200
_COMMIT = re.compile(r"[0-9a-f]{40}")
_PACKAGE = re.compile(r"^\s*package\s+([A-Za-z_][\w.]*)", re.MULTILINE)


class SignatureError(BundleError):
    """The bundle's signature is missing, does not verify, or does not cover its files."""


@dataclass(frozen=True)
class SigningKey:
    """What signs a bundle: a PEM private key (RS*/PS*/ES*) or an HMAC secret (HS*)."""

    key: bytes
    algorithm: str = "RS256"
    key_id: str = ""
    scope: str = ""


@dataclass(frozen=True)
class VerificationKey:
    """What a bundle must be signed with: a PEM public key, or the HMAC secret."""

    key: bytes
    algorithm: str = "RS256"
    key_id: str = ""
    scope: str = ""

    @classmethod
    def from_file(
        cls, path: str | Path, algorithm: str = "RS256", key_id: str = "", scope: str = ""
    ) -> VerificationKey:
        if algorithm not in SIGNING_ALGORITHMS:
            raise BundleError(f"unsupported signing algorithm {algorithm!r}")
        return cls(Path(path).read_bytes(), algorithm, key_id, scope)


# -- OPA's file hash -----------------------------------------------------------------


class _Number(str):
    """A JSON number kept as written: OPA decodes with UseNumber and hashes the literal."""


def _parse_structured(raw: bytes, name: str) -> Any:
    try:
        return json.loads(raw, parse_int=_Number, parse_float=_Number, parse_constant=_bad_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{name}: not valid JSON: {exc}") from None


def _bad_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _go_string(text: str) -> str:
    """A string as Go's encoding/json writes it with SetEscapeHTML(false)."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or ch in "\u2028\u2029":
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:  # invalid UTF-8 in Go becomes U+FFFD
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _walk(value: Any, out: list[bytes]) -> None:
    """OPA's v1/bundle/hash.go walk(): the bytes a structured document is hashed over."""
    if isinstance(value, dict):
        out.append(b"{")
        for i, key in enumerate(sorted(value)):
            if i:
                out.append(b",")
            out.append(_go_string(key).encode())
            out.append(b":")
            _walk(value[key], out)
        out.append(b"}")
    elif isinstance(value, list):
        out.append(b"[")
        for i, item in enumerate(value):
            if i:
                out.append(b",")
            _walk(item, out)
        out.append(b"]")
    elif isinstance(value, _Number):
        out.append(str.__str__(value).encode())
    elif value is None:
        out.append(b"null")
    elif value is True:
        out.append(b"true")
    elif value is False:
        out.append(b"false")
    elif isinstance(value, str):
        out.append(_go_string(value).encode())
    else:  # a number built in Python (never from a parsed file)
        out.append(json.dumps(value).encode())


def is_structured(name: str) -> bool:
    """Files OPA hashes as parsed JSON (bundle.IsStructuredDoc)."""
    base = PurePosixPath(name).name
    return base in ("data.json", MANIFEST, SIGNATURES)


def file_hash(name: str, raw: bytes) -> str:
    """The SHA-256 OPA records for a bundle file (hex)."""
    if not is_structured(name):
        return hashlib.sha256(raw).hexdigest()
    parts: list[bytes] = []
    _walk(_parse_structured(raw, name), parts)
    return hashlib.sha256(b"".join(parts)).hexdigest()


# -- building --------------------------------------------------------------------------


def bundle_revision(root: Path, bundle: PolicyBundle) -> str:
    """The manifest's revision: the full git commit when the directory is committed and
    clean, else the content-hash revision the PDP names an uncommitted directory by."""
    commit = _git(root, "rev-parse", "HEAD")
    if commit and bundle.revision.startswith("git:") and _COMMIT.fullmatch(commit):
        return commit
    return bundle.revision


def roots_of(bundle: PolicyBundle) -> list[str]:
    """The first path segment of every package and of every top-level data key: the
    part of `data` this bundle owns (OPA checks packages and data lie under them)."""
    roots = set(bundle.data)
    for source in bundle.modules.values():
        found = _PACKAGE.search(source)
        if found:
            roots.add(found.group(1).split(".")[0])
    return sorted(roots)


def build(root: str | Path, signing: SigningKey | None = None) -> tuple[bytes, dict[str, Any]]:
    """A policy directory as an OPA bundle (gzipped tar bytes) and its manifest.

    `*_test.rego` modules stay out: a decision bundle carries what decides; the tests
    are run from git (`portcullis policy test`, `opa test`)."""
    root = Path(root)
    bundle = load_bundle(root).without_tests()
    manifest = {
        "revision": bundle_revision(root, bundle),
        "roots": roots_of(bundle),
        "rego_version": 1,
        "metadata": {
            "built_by": "portcullis policy build",
            "content_hash": content_hash(bundle.modules, bundle.data),
        },
    }
    files: dict[str, bytes] = {
        MANIFEST: json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    }
    for path in sorted(root.rglob("data.json")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        files[rel.as_posix()] = path.read_bytes()
    for name, source in bundle.modules.items():
        files[name] = source.encode()
    if signing is not None:
        files[SIGNATURES] = sign(files, signing)
    return pack(files), manifest


def sign(files: dict[str, bytes], key: SigningKey) -> bytes:
    """`.signatures.json` over every file (but itself), as `opa sign` writes it."""
    if key.algorithm not in SIGNING_ALGORITHMS:
        raise BundleError(f"unsupported signing algorithm {key.algorithm!r}")
    payload: dict[str, Any] = {
        "files": [
            {"name": name, "hash": file_hash(name, raw), "algorithm": HASH_ALGORITHM}
            for name, raw in sorted(files.items())
            if name != SIGNATURES
        ],
        "iat": int(time.time()),
        "iss": "portcullis",
    }
    if key.scope:
        payload["scope"] = key.scope
    headers = {"kid": key.key_id} if key.key_id else None
    token = jwt.encode(payload, key.key, algorithm=key.algorithm, headers=headers)
    return json.dumps({"signatures": [token]}, indent=2).encode() + b"\n"


def pack(files: dict[str, bytes]) -> bytes:
    """A gzipped tarball of files (names relative, `/` separated), deterministic bytes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo("/" + name)
            info.size = len(files[name])
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    return gzip.compress(raw.getvalue(), mtime=0)


# -- reading ---------------------------------------------------------------------------


def unpack(data: bytes) -> dict[str, bytes]:
    """The regular files of a bundle tarball by name (leading `/` dropped). Refuses
    links, devices, `..`, duplicates and anything past the size limits: the bytes may
    come from a server, and nothing here is written to disk."""
    files: dict[str, bytes] = {}
    try:
        raw = _gunzip(data)
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for member in tar:
                if member.isdir():
                    continue
                if not member.isfile():
                    raise BundleError(f"{member.name}: not a regular file")
                name = member.name.lstrip("/")
                parts = PurePosixPath(name).parts
                if not name or ".." in parts or name.startswith("./"):
                    raise BundleError(f"{member.name}: not a path inside the bundle")
                if name in files:
                    raise BundleError(f"{name}: twice in the bundle")
                if len(files) >= MAX_FILES:
                    raise BundleError(f"more than {MAX_FILES} files")
                extracted = tar.extractfile(member)
                files[name] = extracted.read() if extracted is not None else b""
    except (OSError, EOFError, zlib.error, tarfile.TarError) as exc:
        raise BundleError(f"not a gzipped tar bundle: {exc}") from None
    return files


def _gunzip(data: bytes) -> bytes:
    """Decompress with a bound on the output (a small download must not unpack to GBs)."""
    inflater = zlib.decompressobj(wbits=31)
    raw = inflater.decompress(data, MAX_BUNDLE_BYTES + 1)
    if len(raw) > MAX_BUNDLE_BYTES or inflater.unconsumed_tail:
        raise BundleError(f"bundle is larger than {MAX_BUNDLE_BYTES} bytes unpacked")
    return raw


def verify(files: dict[str, bytes], key: VerificationKey | None) -> None:
    """Raise SignatureError unless the files are exactly what a valid signature covers
    (OPA's table: signature without key → fail; key without signature → fail)."""
    signatures = files.get(SIGNATURES)
    if key is None:
        if signatures is not None:
            raise SignatureError("the bundle is signed but no verification key is configured")
        return
    if signatures is None:
        raise SignatureError("a verification key is configured but the bundle is not signed")
    try:
        tokens = json.loads(signatures).get("signatures")
    except (ValueError, AttributeError):
        raise SignatureError(f"{SIGNATURES}: not a JSON object") from None
    if not isinstance(tokens, list) or len(tokens) != 1 or not isinstance(tokens[0], str):
        raise SignatureError(f"{SIGNATURES}: expected exactly one JWT")
    payload = _verified_payload(tokens[0], key)
    signed = payload.get("files")
    if not isinstance(signed, list):
        raise SignatureError("signature payload has no file list")
    listed: dict[str, dict[str, Any]] = {}
    for entry in signed:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise SignatureError("signature payload lists a file without a name")
        listed[entry["name"].lstrip("/")] = entry
    present = {name for name in files if name != SIGNATURES}
    if present - set(listed):
        raise SignatureError(f"file {sorted(present - set(listed))[0]} is not signed")
    if set(listed) - present:
        raise SignatureError(f"signed file {sorted(set(listed) - present)[0]} is missing")
    for name in sorted(present):
        entry = listed[name]
        if entry.get("algorithm") != HASH_ALGORITHM:
            # OPA accepts weaker hashes (MD5, SHA-1); a policy's integrity does not
            raise SignatureError(f"{name}: hash algorithm {entry.get('algorithm')!r} refused")
        if not isinstance(entry.get("hash"), str) or entry["hash"].lower() != file_hash(
            name, files[name]
        ):
            raise SignatureError(f"{name}: digest mismatch")


def _verified_payload(token: str, key: VerificationKey) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise SignatureError(f"signature is not a JWT: {exc}") from None
    if header.get("alg") != key.algorithm:
        raise SignatureError(
            f"signature algorithm {header.get('alg')!r} is not the configured {key.algorithm}"
        )
    kid = header.get("kid")
    if key.key_id and kid and kid != key.key_id:
        raise SignatureError(f"signed with key {kid!r}, not the configured {key.key_id!r}")
    try:
        payload = jwt.decode(
            token,
            key.key,
            algorithms=[key.algorithm],
            options={
                "verify_signature": True,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,  # informational in OPA's format
                "verify_aud": False,
                "verify_iss": False,
            },
        )
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise SignatureError(f"signature does not verify: {type(exc).__name__}: {exc}") from None
    if not isinstance(payload, dict):
        raise SignatureError("signature payload is not an object")
    if payload.get("scope", "") != key.scope:
        raise SignatureError("signature scope mismatch")
    return payload


def read(data: bytes, key: VerificationKey | None = None, source: str = "bundle") -> PolicyBundle:
    """A bundle's bytes as the PolicyBundle an engine loads: its signature verified
    first (when configured), its modules, its data merged at each data.json's directory,
    its revision from the manifest (a full git commit is named `git:<12 hex>`, as the
    PDP names the same commit loaded from a directory)."""
    files = unpack(data)
    verify(files, key)
    manifest: dict[str, Any] = {}
    if MANIFEST in files:
        parsed = _parse_plain(files[MANIFEST], MANIFEST)
        if not isinstance(parsed, dict):
            raise BundleError(f"{MANIFEST}: must hold a JSON object")
        manifest = parsed
    modules: dict[str, str] = {}
    data_doc: dict[str, Any] = {}
    for name in sorted(files):
        path = PurePosixPath(name)
        if path.suffix == ".rego":
            if name.endswith("_test.rego"):
                continue
            try:
                modules[name] = files[name].decode()
            except UnicodeDecodeError:
                raise BundleError(f"{name}: not UTF-8") from None
        elif path.name == "data.json":
            loaded = _parse_plain(files[name], name)
            if not isinstance(loaded, dict):
                raise BundleError(f"{name}: must hold a JSON object")
            _merge_at(data_doc, path.parent.parts if str(path.parent) != "." else (), loaded)
    if not modules:
        raise BundleError(f"{source} holds no .rego files")
    return PolicyBundle(modules, data_doc, _revision_of(manifest, modules, data_doc), source)


def _parse_plain(raw: bytes, name: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{name}: not valid JSON: {exc}") from None


def _revision_of(manifest: dict[str, Any], modules: dict[str, str], data: dict[str, Any]) -> str:
    revision = manifest.get("revision")
    if not isinstance(revision, str) or not revision:
        return "bundle:" + content_hash(modules, data)
    if _COMMIT.fullmatch(revision):
        return f"git:{revision[:12]}"
    if len(revision) > MAX_REVISION or not revision.isprintable():
        raise BundleError(f"{MANIFEST}: revision is not a short printable string")
    return revision
