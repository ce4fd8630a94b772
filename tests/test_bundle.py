"""Policies as OPA bundles: `policy build`'s format, OPA's signature rules tried against
forgeries, and a real PDP loading a bundle from a real HTTP server, polling it with
If-None-Match, swapping under concurrent decisions with none failed or mixed, and
refusing a bundle whose signature does not verify while keeping the policy in force."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import logging
import shutil
import tarfile
from pathlib import Path

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pdp_harness import REGO, decide_sql, free_port, open_session, pdp_config, pdp_stub, running_pdp
from pdp_harness import token as dev_token

from pdp.engine import opa_bundle
from pdp.engine.bundle import BundleError, load_bundle
from pdp.engine.opa_bundle import SignatureError, SigningKey, VerificationKey
from portcullis.v1 import pdp_pb2

DBA = ("dba", "pii-readers")


def _rsa_pair(tmp: Path, name: str) -> tuple[SigningKey, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = tmp / f"{name}.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return SigningKey(private, "RS256", "portcullis-ci"), public


def _policy_dir(tmp: Path, name: str, extra: str = "") -> Path:
    target = tmp / name
    shutil.copytree(REGO, target, ignore=shutil.ignore_patterns("*_test.rego"))
    if extra:
        (target / "portcullis" / "zz_extra.rego").write_text("package portcullis\n\n" + extra)
    return target


def _repack(data: bytes, change) -> bytes:
    files = opa_bundle.unpack(data)
    change(files)
    return opa_bundle.pack(files)


# -- the format ------------------------------------------------------------------------


def test_a_built_bundle_holds_what_the_directory_holds(tmp_path):
    data, manifest = opa_bundle.build(REGO)
    files = opa_bundle.unpack(data)
    assert ".manifest" in files and "data.json" in files
    assert not [n for n in files if n.endswith("_test.rego")]
    assert json.loads(files[".manifest"])["roots"] == ["portcullis"] == manifest["roots"]
    direct = load_bundle(REGO).without_tests()
    read = opa_bundle.read(data)
    assert read.modules == direct.modules and read.data == direct.data
    # the same policy is named the same way, loaded from git or from its bundle
    if manifest["revision"] != direct.revision:  # a clean checkout: the full commit
        assert direct.revision == f"git:{manifest['revision'][:12]}" == read.revision
    else:  # uncommitted changes: the content hash
        assert read.revision == direct.revision


def test_structured_files_hash_as_opa_does_independent_of_layout():
    compact = b'{"b":[1,2.50,{"z":null,"a":true}],"a":"x<y>&\\u00e9"}'
    spaced = b'{\n  "a": "x<y>&\xc3\xa9",\n  "b": [1, 2.50, {"a": true, "z": null}]\n}'
    assert opa_bundle.file_hash("data.json", compact) == opa_bundle.file_hash("data.json", spaced)
    # OPA's walk: keys sorted, no whitespace, HTML characters unescaped, numbers as written
    expected = '{"a":"x<y>&\u00e9","b":[1,2.50,{"a":true,"z":null}]}'.encode()
    assert opa_bundle.file_hash("data.json", compact) == hashlib.sha256(expected).hexdigest()
    assert opa_bundle.file_hash("data.json", b'{"b":2.5}') != opa_bundle.file_hash(
        "data.json", b'{"b":2.50}'
    )
    # a module is hashed as bytes: whitespace counts
    assert opa_bundle.file_hash("a.rego", b"package a\n") != opa_bundle.file_hash(
        "a.rego", b"package a \n"
    )


def test_the_signature_is_opas_format(tmp_path):
    signing, public = _rsa_pair(tmp_path, "ci")
    data, _ = opa_bundle.build(REGO, signing)
    files = opa_bundle.unpack(data)
    [token] = json.loads(files[".signatures.json"])["signatures"]
    assert jwt.get_unverified_header(token) == {
        "alg": "RS256",
        "typ": "JWT",
        "kid": "portcullis-ci",
    }
    payload = jwt.decode(token, public.read_bytes(), algorithms=["RS256"])
    listed = {f["name"]: f for f in payload["files"]}
    assert set(listed) == set(files) - {".signatures.json"}
    assert all(f["algorithm"] == "SHA-256" for f in listed.values())
    assert (
        listed["portcullis/decision.rego"]["hash"]
        == hashlib.sha256(files["portcullis/decision.rego"]).hexdigest()
    )
    key = VerificationKey.from_file(public, "RS256", "portcullis-ci")
    assert opa_bundle.read(data, key).modules


@pytest.mark.parametrize(
    "forgery",
    [
        "module changed",
        "data changed",
        "manifest changed",
        "file added",
        "file removed",
        "signed by another key",
        "no signature",
        "signature without a key configured",
        "hmac with the public key",
        "other scope",
        "two signatures",
    ],
)
def test_a_bundle_that_is_not_exactly_what_was_signed_is_refused(tmp_path, forgery):
    signing, public = _rsa_pair(tmp_path, "ci")
    other, _ = _rsa_pair(tmp_path, "other")
    key = VerificationKey.from_file(public, "RS256")
    data, _ = opa_bundle.build(REGO, signing)

    def edit(name, text):
        return _repack(data, lambda f: f.__setitem__(name, text))

    if forgery == "module changed":
        forged = edit("portcullis/decision.rego", b"package portcullis\n\ndecision := {}\n")
    elif forgery == "data changed":
        data_doc = json.loads(opa_bundle.unpack(data)["data.json"])
        data_doc["portcullis"]["privileged_groups"] = ["everyone"]
        forged = edit("data.json", json.dumps(data_doc).encode())
    elif forgery == "manifest changed":
        forged = edit(".manifest", b'{"revision": "trust-me", "roots": ["portcullis"]}')
    elif forgery == "file added":
        forged = edit("portcullis/zz.rego", b"package portcullis\n\nbackdoor := true\n")
    elif forgery == "file removed":
        forged = _repack(data, lambda f: f.pop("portcullis/postgres.rego"))
    elif forgery == "signed by another key":
        forged = opa_bundle.build(REGO, other)[0]
    elif forgery == "no signature":
        forged = opa_bundle.build(REGO)[0]
    elif forgery == "signature without a key configured":
        forged, key = data, None  # type: ignore[assignment]
    elif forgery == "hmac with the public key":
        # the classic confusion: an HS256 token whose secret is the RSA public key
        hmac = SigningKey(public.read_bytes(), "HS256")
        forged = opa_bundle.pack(
            {**{k: v for k, v in opa_bundle.unpack(data).items() if k != ".signatures.json"}}
        )
        files = opa_bundle.unpack(forged)
        files[".signatures.json"] = _hmac_signature(files, hmac)
        forged = opa_bundle.pack(files)
    elif forgery == "other scope":
        forged = opa_bundle.build(REGO, SigningKey(signing.key, "RS256", scope="write"))[0]
    else:
        files = opa_bundle.unpack(data)
        [token] = json.loads(files[".signatures.json"])["signatures"]
        forged = edit(".signatures.json", json.dumps({"signatures": [token, token]}).encode())
    with pytest.raises(SignatureError):
        opa_bundle.read(forged, key)


def _hmac_signature(files: dict[str, bytes], key: SigningKey) -> bytes:
    payload = {
        "files": [
            {"name": n, "hash": opa_bundle.file_hash(n, b), "algorithm": "SHA-256"}
            for n, b in files.items()
        ]
    }
    # PyJWT refuses a PEM as an HMAC secret, as it should; an attacker is not so polite
    header = {"alg": "HS256", "typ": "JWT"}
    import base64
    import hmac as hmac_module

    def b64(raw: bytes) -> bytes:
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    signing_input = b64(json.dumps(header).encode()) + b"." + b64(json.dumps(payload).encode())
    mac = hmac_module.new(key.key, signing_input, hashlib.sha256).digest()
    return json.dumps({"signatures": [(signing_input + b"." + b64(mac)).decode()]}).encode()


def test_hs256_signing_verifies_with_the_shared_secret_only(tmp_path):
    secret = SigningKey(b"s3cret-shared-between-ci-and-pdp-0123456789", "HS256")
    data, _ = opa_bundle.build(REGO, secret)
    assert opa_bundle.read(data, VerificationKey(secret.key, "HS256")).modules
    with pytest.raises(SignatureError):
        opa_bundle.read(
            data, VerificationKey(b"another-secret-of-the-same-length-0123456", "HS256")
        )


@pytest.mark.parametrize("name", ["../escape.rego", "/../../etc/x.rego", "a/../../b.rego"])
def test_a_tar_path_outside_the_bundle_is_refused(name):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo(name)
        body = b"package portcullis\n"
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    with pytest.raises(BundleError):
        opa_bundle.read(gzip.compress(raw.getvalue()))


def test_links_and_oversized_bundles_are_refused():
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        link = tarfile.TarInfo("portcullis/x.rego")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(BundleError, match="not a regular file"):
        opa_bundle.read(gzip.compress(raw.getvalue()))
    bomb = gzip.compress(b"\0" * (opa_bundle.MAX_BUNDLE_BYTES + 1024))
    with pytest.raises(BundleError, match="larger than"):
        opa_bundle.read(bomb)


# -- the PDP with a bundle served over HTTP ----------------------------------------------


class BundleServer:
    """A bundle service as OPA's docs describe it: GET → 200 with an ETag, or 304 when
    If-None-Match names the bundle being served."""

    def __init__(self) -> None:
        self.body = b""
        self.seen_if_none_match: list[str] = []
        self.answered: list[int] = []
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bundles/portcullis.tar.gz"

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:20] + '"'

    async def handle(self, request: web.Request) -> web.Response:
        asked = request.headers.get("If-None-Match", "")
        self.seen_if_none_match.append(asked)
        if asked and asked == self.etag:
            self.answered.append(304)
            return web.Response(status=304, headers={"ETag": self.etag})
        self.answered.append(200)
        return web.Response(
            body=self.body, headers={"ETag": self.etag, "Content-Type": "application/gzip"}
        )

    async def __aenter__(self) -> BundleServer:
        app = web.Application()
        app.router.add_get("/bundles/portcullis.tar.gz", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def _until(predicate, what: str) -> None:
    for _ in range(600):  # a bound on waiting, not on how fast anything must be
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


async def test_a_served_bundle_swaps_under_load_and_a_bad_signature_is_refused(tmp_path, caplog):
    signing, public = _rsa_pair(tmp_path, "ci")
    intruder, _ = _rsa_pair(tmp_path, "intruder")
    first_dir = _policy_dir(tmp_path, "first")
    second_dir = _policy_dir(
        tmp_path,
        "second",
        'deny contains "bundle two refuses select 42" if input.command.raw == "select 42"\n',
    )
    first, first_manifest = opa_bundle.build(first_dir, signing)
    second, second_manifest = opa_bundle.build(second_dir, signing)
    rev_one, rev_two = first_manifest["revision"], second_manifest["revision"]
    assert rev_one != rev_two
    http_port = free_port()
    async with BundleServer() as server:
        server.body = first
        raw_pdp = {
            "listen": f"127.0.0.1:{free_port()}",
            "http_listen": f"127.0.0.1:{http_port}",
            "engine": {
                "type": "embedded",
                "bundle": server.url,
                "poll_seconds": 0.1,
                "verification": {"key_file": str(public), "algorithm": "RS256"},
                "workers": 2,
                "timeout_ms": 20000,
            },
            "store": {"type": "sqlite", "path": str(tmp_path / "audit.db")},
            "signing_key": str(tmp_path / "signing.key"),
        }
        config = pdp_config(tmp_path, pdp=raw_pdp)
        async with running_pdp(config) as app, pdp_stub(app.address) as stub:
            assert app.engine.revision == rev_one
            info = await stub.ServerInfo(pdp_pb2.ServerInfoRequest())
            assert info.policy_revision == rev_one
            readyz = f"http://127.0.0.1:{http_port}/readyz"
            async with aiohttp.ClientSession() as http, http.get(readyz) as response:
                assert (await response.json())["policy_revision"] == rev_one
            opened = await open_session(stub, dev_token(config, groups=DBA))
            # polling with the ETag of the bundle in force: unchanged → 304
            await _until(lambda: 304 in server.answered, "a 304 for an unchanged bundle")
            assert server.seen_if_none_match[-1] == server.etag

            answers: list[pdp_pb2.Decision] = []
            swapped = asyncio.Event()

            async def traffic() -> None:
                while not swapped.is_set() or len(answers) < 40:
                    answers.append(await decide_sql(stub, opened.session_id, "select 42"))

            loops = [asyncio.ensure_future(traffic()) for _ in range(6)]
            await _until(lambda: len(answers) >= 20, "traffic before the swap")
            server.body = second
            await _until(lambda: app.engine.revision == rev_two, "the second bundle in force")
            seen_at_swap = len(answers)
            await _until(lambda: len(answers) >= seen_at_swap + 40, "traffic after the swap")
            swapped.set()
            await asyncio.gather(*loops)

            # no decision failed, and each was made whole by the policy it names
            for answer in answers:
                assert answer.policy_revision in (rev_one, rev_two), answer
                if answer.policy_revision == rev_one:
                    assert answer.verdict == pdp_pb2.ALLOW, answer
                else:
                    assert answer.verdict == pdp_pb2.DENY, answer
                    assert list(answer.reasons) == ["bundle two refuses select 42"]
            assert {a.policy_revision for a in answers} == {rev_one, rev_two}
            assert app.decider.stats.engine_errors == 0
            records = await app.store.query(kind="decision")
            assert {r.body["policy_revision"] for r in records} == {rev_one, rev_two}

            # a bundle signed by someone else: refused, logged, the second one stays
            caplog.set_level(logging.ERROR, logger="portcullis.engine")
            forged_dir = _policy_dir(tmp_path, "forged", 'decision := {"verdict": "allow"}\n')
            server.body = opa_bundle.build(forged_dir, intruder)[0]
            await _until(lambda: bool(app.engine.last_reload_error), "the forgery refused")
            assert "signature" in app.engine.last_reload_error
            assert app.engine.revision == rev_two
            assert any("refused, keeping revision" in r.getMessage() for r in caplog.records)
            still = await decide_sql(stub, opened.session_id, "select 42")
            assert still.verdict == pdp_pb2.DENY and still.policy_revision == rev_two
            # the refused bundle's ETag is never sent back as the one in force
            forged_etag, polls = server.etag, len(server.answered)
            await _until(lambda: len(server.answered) >= polls + 3, "polls after the refusal")
            assert forged_etag not in server.seen_if_none_match
            assert app.engine.revision == rev_two


async def test_a_bundle_file_loads_and_a_bad_one_at_start_stops_the_pdp(tmp_path):
    signing, public = _rsa_pair(tmp_path, "ci")
    path = tmp_path / "bundle.tar.gz"
    data, manifest = opa_bundle.build(_policy_dir(tmp_path, "p"), signing)
    path.write_bytes(data)
    engine = {
        "type": "embedded",
        "bundle": str(path),
        "verification": {"key_file": str(public)},
        "workers": 1,
        "timeout_ms": 20000,
    }
    config = pdp_config(tmp_path, engine=engine)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, dev_token(config, groups=DBA))
        answer = await decide_sql(stub, opened.session_id, "select 1")
        assert answer.verdict == pdp_pb2.ALLOW
        assert answer.policy_revision == manifest["revision"]
        await stub.CloseSession(
            pdp_pb2.CloseSessionRequest(session_id=opened.session_id, reason="done")
        )
        [closed] = await app.store.query(kind="session.close")
        assert closed.body["policy_revision"] == manifest["revision"]
    path.write_bytes(opa_bundle.build(_policy_dir(tmp_path, "q"))[0])  # unsigned
    from pdp.engine.opa import PolicyLoadError

    with pytest.raises(PolicyLoadError, match="not signed"):
        async with running_pdp(pdp_config(tmp_path, engine=engine)):
            pass


async def test_the_remote_engine_names_the_bundle_revision_its_opa_loaded(tmp_path):
    """OPA's Data API (tests/opa_server.py over the real evaluator) serving a bundle
    from policy build: each remote decision names the manifest's revision."""
    import subprocess
    import sys

    from pdp.engine.remote import RemoteEngine
    from portcullis.config import EngineSettings

    path = tmp_path / "bundle.tar.gz"
    data, manifest = opa_bundle.build(_policy_dir(tmp_path, "p"))
    path.write_bytes(data)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "opa_server.py"),
         "--policies", str(path), "--port", str(port)],
    )  # fmt: skip
    engine = RemoteEngine(EngineSettings(type="remote", url=f"http://127.0.0.1:{port}"))
    try:
        for _ in range(400):  # until the server listens
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        await engine.start()
        result = await engine.evaluate({"command": {"kind": "session.open"}})
        assert result.revision == f"opa:rego@{manifest['revision']}" == engine.revision
    finally:
        await engine.close()
        server.terminate()
        server.wait()


@pytest.mark.parametrize(
    ("engine", "key", "problem"),
    [
        ({"type": "remote", "url": "http://x", "bundle": "b.tar.gz"}, "bundle", "embedded"),
        ({"bundle": "missing.tar.gz"}, "bundle", "is not a file"),
        (
            {"policies": str(REGO), "verification": {"key_file": "k.pem"}},
            "verification",
            "set pdp.engine.bundle",
        ),
        ({"bundle": "b.tar.gz", "verification": {"key_file": "nope.pem"}}, "key_file", "not a"),
        (
            {"bundle": "b.tar.gz", "verification": {"key_file": "k.pem", "algorithm": "none"}},
            "algorithm",
            "not an algorithm",
        ),
        ({"bundle": "b.tar.gz", "poll_seconds": 0}, "poll_seconds", "positive"),
    ],
)
def test_bundle_settings_are_validated(tmp_path, engine, key, problem):
    from portcullis.config import ConfigError

    (tmp_path / "b.tar.gz").write_bytes(b"x")
    (tmp_path / "k.pem").write_bytes(b"x")
    with pytest.raises(ConfigError) as err:
        pdp_config(tmp_path, engine={"type": "embedded", **engine})
    assert err.value.key.endswith(key), err.value.key
    assert problem in err.value.problem


def test_config_check_verifies_the_configured_bundle(tmp_path):
    import subprocess
    import sys

    import yaml

    signing, public = _rsa_pair(tmp_path, "ci")
    path = tmp_path / "bundle.tar.gz"
    data, manifest = opa_bundle.build(_policy_dir(tmp_path, "p"), signing)
    path.write_bytes(data)
    config = tmp_path / "portcullis.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "pdp": {
                    "engine": {
                        "type": "embedded",
                        "bundle": str(path),
                        "verification": {"key_file": str(public)},
                    },
                    "store": {"type": "sqlite", "path": str(tmp_path / "audit.db")},
                },
                "identity": {"dev": True, "dev_key": str(tmp_path / "dev.key")},
            }
        )
    )

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pdp.cli", "config", "check", "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=300,
        )

    good = check()
    assert good.returncode == 0, good.stderr
    assert f"revision {manifest['revision']}, signature verified" in good.stdout
    path.write_bytes(opa_bundle.build(_policy_dir(tmp_path, "q"), _rsa_pair(tmp_path, "x")[0])[0])
    bad = check()
    assert bad.returncode != 0
    assert "signature does not verify" in bad.stderr


def test_policy_build_on_the_command_line_writes_a_signed_bundle(tmp_path):
    import subprocess
    import sys

    signing, public = _rsa_pair(tmp_path, "ci")
    private = tmp_path / "ci.pem"
    private.write_bytes(signing.key)
    out = tmp_path / "bundle.tar.gz"
    result = subprocess.run(
        [sys.executable, "-m", "pdp.cli", "policy", "build", str(REGO), "--out", str(out),
         "--signing-key", str(private), "--key-id", "portcullis-ci"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "signed RS256" in result.stderr and "roots portcullis" in result.stderr
    assert signing.key.decode() not in result.stdout + result.stderr
    key = VerificationKey.from_file(public, key_id="portcullis-ci")
    bundle = opa_bundle.read(out.read_bytes(), key)
    assert bundle.modules == load_bundle(REGO).without_tests().modules
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.rego").write_text("package portcullis\n\ndecision := {")
    before = out.read_bytes()
    failed = subprocess.run(
        [sys.executable, "-m", "pdp.cli", "policy", "build", str(broken), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    # a policy that does not compile is no bundle; the one written before is left whole
    assert failed.returncode == 1 and "does not compile" in failed.stderr
    assert out.read_bytes() == before


async def test_a_bundle_url_that_redirects_is_not_followed(tmp_path):
    from pdp.engine.opa import PolicyLoadError

    async with BundleServer() as server:
        server.body = opa_bundle.build(_policy_dir(tmp_path, "p"))[0]
        app = web.Application()

        async def elsewhere(request: web.Request) -> web.Response:
            raise web.HTTPFound(server.url)

        app.router.add_get("/bundle.tar.gz", elsewhere)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            engine = {
                "type": "embedded",
                "bundle": f"http://127.0.0.1:{port}/bundle.tar.gz",
                "workers": 1,
            }
            with pytest.raises(PolicyLoadError, match="HTTP 302"):
                async with running_pdp(pdp_config(tmp_path, engine=engine)):
                    pass
            assert server.answered == []  # the redirect's target was never asked
        finally:
            await runner.cleanup()


async def _chunked_server(data: bytes, piece: int, pause: float):
    """An aiohttp server answering GET / with data `piece` bytes at a time; its URL."""
    app = web.Application()

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for start in range(0, len(data), piece):
            await response.write(data[start : start + piece])
            await asyncio.sleep(pause)
        await response.write_eof()
        return response

    app.router.add_get("/", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/"


async def test_a_bundle_that_arrives_in_pieces_is_read_whole(tmp_path):
    """A server that sends the bundle a few hundred bytes at a time (as a busy network
    does): the source reads to the end of the body, not what the first read found."""
    from pdp.engine.policy_source import BundleURLSource

    data, manifest = opa_bundle.build(_policy_dir(tmp_path, "p"))
    assert len(data) > 2000
    runner, url = await _chunked_server(data, 700, 0.01)
    source = BundleURLSource(url, None, 60.0)
    try:
        bundle = await source.load()
        assert bundle.revision == manifest["revision"] and bundle.modules
    finally:
        await source.close()
        await runner.cleanup()


async def test_read_capped_stops_one_byte_past_the_cap(tmp_path):
    from pdp.plumbing.downloads import read_capped

    runner, url = await _chunked_server(b"x" * 5000, 100, 0)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as response:
                assert len(await read_capped(response.content, 1234)) == 1235
            async with http.get(url) as response:
                assert len(await read_capped(response.content, 10_000)) == 5000
    finally:
        await runner.cleanup()
