"""Signing-key rotation (pdp.evidence.rotation, `portcullis audit rotate-key`).

Before it, a PDP's signing key could not be replaced: a new key file (scheduled rotation,
or a key feared stolen) made every checkpoint and credential statement the old key signed
fail `audit verify` ("signed by key X, not by Y"), and `audit export` refused the store,
for good. Now the old key signs the hand-over into the chain (and the new key signs it
too), an auditor pinning the current key verifies the whole chain and every bundle (the
old key alone vouches for no key after it: test_evidence_probe_p8), and a
signature by a key outside the seqs it signed for — a retired key still held by a PDP,
or stolen — fails, as does a rotation made with any other key.

Each test drives a real PDP (tests/pdp_harness.py: embedded OPA, its real SQLite or
PostgreSQL store) and the `portcullis` CLI in a subprocess, as an operator and an auditor
would; forged records are INSERTed as anyone with access to the store can
(test_evidence_macs.forge).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from pdp_harness import decide_sql, open_session, pdp_stub, running_pdp, token
from test_evidence import close
from test_evidence_macs import audit, forge
from test_pdp_probe_p7 import _store, _written

from pdp.evidence.checkpoints import CHECKPOINT_KIND, verify_store
from pdp.evidence.rotation import ROTATION_KIND, rotation_body
from pdp.evidence.signing import Signer
from pdp.plumbing.keys import load_or_create_ed25519
from portcullis.config import load_config


async def _work(config, checkpoint: bool = True) -> str:
    """A session through a running PDP: decisions, a credential statement at its close,
    a checkpoint at stop. Its session id."""
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        await decide_sql(stub, opened.session_id, "SELECT id FROM orders")
        await decide_sql(stub, opened.session_id, "DROP TABLE orders")
        if checkpoint:
            assert await app.checkpoints.checkpoint() is not None
        await close(stub, opened.session_id, exposed=0, sent=100)
    return opened.session_id


def _pem(tmp_path: Path, name: str, signer: Signer) -> Path:
    path = tmp_path / name
    path.write_bytes(signer.public_pem())
    return path


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_rotated_key_keeps_every_signature_verifying(backend, tmp_path, request):
    config_path = _written(tmp_path, store=_store(backend, request, tmp_path))
    config = load_config(config_path)
    await _work(config)
    old = Signer(load_or_create_ed25519(config.pdp.signing_key))
    old_pem = _pem(tmp_path, "old.pem", old)

    rotated = await asyncio.to_thread(audit, config_path, "rotate-key", "--reason", "yearly")
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    new = Signer(load_or_create_ed25519(config.pdp.signing_key))
    assert new.key_id != old.key_id
    assert f"{old.key_id} -> {new.key_id}" in rotated.stdout
    assert not config.pdp.signing_key.with_name("signing.key.next").exists()
    new_pem = _pem(tmp_path, "new.pem", new)

    await _work(config)  # the PDP restarted with the new key
    for pinned in ((), ("--public-key", str(new_pem))):
        result = await asyncio.to_thread(audit, config_path, "verify", *pinned)
        assert result.returncode == 0, (pinned, result.stdout + result.stderr)
        assert f"signing keys: {old.key_id} (seq 1.." in result.stdout, result.stdout
        assert f"then {new.key_id} (seq " in result.stdout, result.stdout
    # the retired key vouches for no key after it (its thief could sign a hand-over too:
    # tests/test_evidence_probe_p8.py): pinned alone, it is refused
    only_old = await asyncio.to_thread(audit, config_path, "verify", "--public-key", str(old_pem))
    assert only_old.returncode == 1, only_old.stdout
    assert "PDP's current key" in only_old.stdout
    # signatures of both keys were checked: two sessions' statements, checkpoints of each
    assert "2 signed credential-never-exposed statements" in result.stdout

    bundle = tmp_path / "evidence.tar.gz"
    exported = await asyncio.to_thread(audit, config_path, "export", "--out", str(bundle))
    assert exported.returncode == 0, exported.stdout + exported.stderr
    for pem, code in ((old_pem, 1), (new_pem, 0)):
        offline = await asyncio.to_thread(
            audit, config_path, "verify", "--bundle", str(bundle), "--public-key", str(pem)
        )
        assert offline.returncode == code, offline.stdout + offline.stderr
    assert "signing keys:" in offline.stdout
    stranger = _pem(tmp_path, "stranger.pem", Signer(load_or_create_ed25519(tmp_path / "x.key")))
    refused = await asyncio.to_thread(
        audit, config_path, "verify", "--bundle", str(bundle), "--public-key", str(stranger)
    )
    assert refused.returncode == 1, refused.stdout
    assert "nor a key it was rotated to" in refused.stdout


async def test_a_key_file_replaced_without_a_rotation_still_fails(tmp_path):
    """The control: a new key put in place by hand (or by whoever may write the key's
    directory) makes the old key's signatures fail under it, as before."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    await _work(config)
    config.pdp.signing_key.unlink()
    load_or_create_ed25519(config.pdp.signing_key)  # another key, put in place by hand
    await _work(config)  # the PDP signs on with the key it finds (a key file gone and
    # made at start is refused: test_a_pdp_whose_key_the_chain_does_not_know_...)
    result = await asyncio.to_thread(audit, config_path, "verify")
    assert result.returncode == 1, result.stdout
    assert "checkpoint signed by key" in result.stdout


async def test_a_pdp_left_on_the_retired_key_signs_no_more_checkpoints(tmp_path):
    """An operator rotates while a PDP still runs on the old key: its checkpoints would
    each fail verification. It sees the rotation and signs none (and says why)."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        await decide_sql(stub, opened.session_id, "SELECT id FROM orders")
        rotated = await asyncio.to_thread(audit, config_path, "rotate-key", "--reason", "now")
        assert rotated.returncode == 0, rotated.stdout + rotated.stderr
        await decide_sql(stub, opened.session_id, "SELECT id FROM customers")
        assert await app.checkpoints.checkpoint() is None
        assert "was retired at seq" in app.checkpoints.retired
    kinds = [r.kind for r in await _records(config)]
    assert kinds.count(ROTATION_KIND) == 1
    assert kinds[-1] != CHECKPOINT_KIND  # nothing signed by the old key after it
    result = await asyncio.to_thread(audit, config_path, "verify")
    assert result.returncode == 0, result.stdout + result.stderr


async def _records(config):
    from pdp.store import open_store

    async with open_store(config.pdp.store) as store:
        return await store.query()


async def test_a_stolen_retired_key_forges_nothing_after_its_rotation(tmp_path):
    """Attack (the old private key, kept or stolen, and INSERT access to the store): after
    the rotation, append a checkpoint signed by the old key, and a rotation from the old
    key to a key of one's own (doubly signed, as the real one). Both fail verification:
    the old key signs for no seq past its rotation, and a key signs one rotation only."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    await _work(config)
    stolen = tmp_path / "stolen.key"
    shutil.copy(config.pdp.signing_key, stolen)
    rotated = await asyncio.to_thread(audit, config_path, "rotate-key", "--reason", "leak")
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    await _work(config)
    old = Signer(load_or_create_ed25519(stolen))
    mine = Signer(load_or_create_ed25519(tmp_path / "mine.key"))
    head = (await _records(config))[-1]
    forged_checkpoint = await forge(
        config.pdp.store,
        CHECKPOINT_KIND,
        old.sign({"type": CHECKPOINT_KIND, "seq": head.seq, "hash": head.hash, "time": 1.0}),
    )
    head = (await _records(config))[-1]
    forged_rotation = await forge(
        config.pdp.store, ROTATION_KIND, rotation_body(old, mine, (head.seq, head.hash), "x")
    )
    result = await asyncio.to_thread(audit, config_path, "verify")
    assert result.returncode == 1, result.stdout
    assert f"seq={forged_checkpoint} kind=checkpoint" in result.stdout
    assert "retired at seq" in result.stdout
    assert f"seq={forged_rotation} kind={ROTATION_KIND}" in result.stdout
    assert "not in the PDP's key history" in result.stdout
    # pinned to the stolen key, the forged rotation is still not the key history's
    store_report = await _verify_with(config, old.public_key)
    assert {p.seq for p in store_report.problems} >= {forged_checkpoint, forged_rotation}


async def test_a_rotation_made_with_keys_of_ones_own_hands_over_nothing(tmp_path):
    """Attack (INSERT access, no key): a rotation record from a key of one's own to
    another, then checkpoints of the second: verify names the rotation and every
    checkpoint it would vouch for."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    await _work(config)
    a = Signer(load_or_create_ed25519(tmp_path / "a.key"))
    b = Signer(load_or_create_ed25519(tmp_path / "b.key"))
    head = (await _records(config))[-1]
    rotation = await forge(
        config.pdp.store, ROTATION_KIND, rotation_body(a, b, (head.seq, head.hash), "x")
    )
    head = (await _records(config))[-1]
    checkpoint = await forge(
        config.pdp.store,
        CHECKPOINT_KIND,
        b.sign({"type": CHECKPOINT_KIND, "seq": head.seq, "hash": head.hash, "time": 1.0}),
    )
    report = await _verify_with(config, Signer(load_or_create_ed25519(config.pdp.signing_key)))
    assert [p.seq for p in report.problems if p.seq in (rotation, checkpoint)] == [
        rotation,
        checkpoint,
    ], report.problems


async def _verify_with(config, key):
    from pdp.store import open_store

    public = key.public_key if isinstance(key, Signer) else key
    async with open_store(config.pdp.store) as store:
        return await verify_store(store, public)


async def test_a_copy_of_the_rotation_moves_no_key_s_range(tmp_path):
    """Attack (INSERT access, no key): append a copy of the genuine rotation record (its
    two signatures are valid wherever it lies). Taken as the hand-over, it moved the new
    key's range past every checkpoint the new key signed before it, failing them all and
    blaming the genuine rotation. The first rotation into a key is its hand-over: the
    copy alone is named."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    await _work(config)
    rotated = await asyncio.to_thread(audit, config_path, "rotate-key", "--reason", "yearly")
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    await _work(config)
    genuine = next(r for r in await _records(config) if r.kind == ROTATION_KIND)
    copy = await forge(config.pdp.store, ROTATION_KIND, genuine.body)
    report = await _verify_with(config, Signer(load_or_create_ed25519(config.pdp.signing_key)))
    assert [p.seq for p in report.problems] == [copy], report.problems
    assert "not in the PDP's key history" in report.problems[0].text


async def test_a_pdp_whose_key_the_chain_does_not_know_says_so_at_start(tmp_path):
    """A signing key replaced by hand was found only at the next `audit verify`, every
    signature of one key or the other failing. Now the PDP says so at start (logged, and
    portcullis_signing_key_unknown 1 on /metrics); after a rotation it does not. A key
    file that is gone is worse: the PDP made a new key at start and signed on with it, so
    the store no longer verified under the old key and `rotate-key --old-key-lost` refused
    it. Now the PDP refuses to start (SigningKeyMissing), the key it made removed."""
    from pdp.api.http_api import metrics_text
    from pdp.app import SigningKeyMissing

    config_path = _written(tmp_path)
    config = load_config(config_path)
    await _work(config)
    kept = tmp_path / "kept.key"
    shutil.copy(config.pdp.signing_key, kept)
    config.pdp.signing_key.unlink()
    with pytest.raises(SigningKeyMissing, match="rotate-key --old-key-lost"):
        async with running_pdp(config):
            pass
    assert not config.pdp.signing_key.exists()  # the key made at start signed nothing
    stranger = Signer(load_or_create_ed25519(config.pdp.signing_key))  # replaced by hand
    assert stranger.key_id != Signer(load_or_create_ed25519(kept)).key_id
    async with running_pdp(config) as app:
        await _key_checked(app)
        assert "no rotation hands over to this key" in app.checkpoints.key_problem
        assert "portcullis_signing_key_unknown 1\n" in metrics_text(app)
    shutil.copy(kept, config.pdp.signing_key)  # the key before, back
    rotated = await asyncio.to_thread(audit, config_path, "rotate-key", "--reason", "x")
    assert rotated.returncode == 1, rotated.stdout  # the stranger's checkpoint fails it
    assert "checkpoint signed by key" in rotated.stdout
    # a store that verifies, rotated: the new key is known
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    config_path = _written(fresh)
    config = load_config(config_path)
    await _work(config)
    rotated = await asyncio.to_thread(audit, config_path, "rotate-key", "--reason", "x")
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    async with running_pdp(config) as app:
        await _key_checked(app)
        assert app.checkpoints.key_problem == ""
        assert "portcullis_signing_key_unknown 0\n" in metrics_text(app)


async def _key_checked(app) -> None:
    """Until the checkpoint writer has checked its key at start (at most 60 s)."""
    for _ in range(1200):
        if app.checkpoints._key_checked:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the signing key was not checked at start")


async def test_a_lost_key_is_handed_over_by_the_new_key_alone_and_said_so(tmp_path):
    """A signing key whose private key is gone (a disk, a container without its volume)
    could not be rotated (the old key signs the hand-over), and a PDP started without it
    made a new key whose signatures fail under the old one. `audit rotate-key
    --old-key-lost --old-public-key PEM` checks the store under the old public key and
    hands over with the new key's signature alone: whoever pins the new key verifies the
    whole chain, told the old key was declared lost; whoever pins only the old key is
    not asked to trust the new one."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    await _work(config)
    old = Signer(load_or_create_ed25519(config.pdp.signing_key))
    old_pem = _pem(tmp_path, "old.pem", old)
    config.pdp.signing_key.unlink()  # lost
    rotated = await asyncio.to_thread(
        audit, config_path, "rotate-key", "--reason", "disk lost",
        "--old-key-lost", "--old-public-key", str(old_pem),
    )  # fmt: skip
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert "declared lost" in rotated.stdout
    new = Signer(load_or_create_ed25519(config.pdp.signing_key))
    new_pem = _pem(tmp_path, "new.pem", new)
    await _work(config)
    trusted = await asyncio.to_thread(audit, config_path, "verify", "--public-key", str(new_pem))
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert "declared LOST by this one" in trusted.stdout
    only_old = await asyncio.to_thread(audit, config_path, "verify", "--public-key", str(old_pem))
    assert only_old.returncode == 1, only_old.stdout
    assert "signed by key" in only_old.stdout and "alone" in only_old.stdout


async def test_a_lost_key_rotation_made_by_someone_else_stops_nothing(tmp_path):
    """Attack (INSERT access, a key of one's own): a rotation declaring the PDP's key lost,
    handing over to one's own key (it needs no signature of the PDP's key). The PDP's key
    is not retired by it (its checkpoints go on), and verify names it."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    await _work(config)
    from pdp.evidence.rotation import lost_key_rotation_body

    pdp_key = Signer(load_or_create_ed25519(config.pdp.signing_key))
    mine = Signer(load_or_create_ed25519(tmp_path / "mine.key"))
    head = (await _records(config))[-1]
    forged = await forge(
        config.pdp.store,
        ROTATION_KIND,
        lost_key_rotation_body(pdp_key.public_key, mine, (head.seq, head.hash), "x"),
    )
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, token(config))
        await decide_sql(stub, opened.session_id, "SELECT 1")
        assert await app.checkpoints.checkpoint() is not None
        assert app.checkpoints.retired == ""
    report = await _verify_with(config, pdp_key)
    assert {p.seq for p in report.problems} == {forged}, report.problems
    assert any("declaring key" in p.text for p in report.problems)


async def test_portcullis_pdp_without_its_key_over_signed_evidence_is_one_line_and_exit_2(
    tmp_path,
):
    """The CLI's face of SigningKeyMissing: `portcullis pdp` says in one line why it does
    not start and what to do, exits 2, and leaves no key behind."""
    import os
    import subprocess
    import sys

    config_path = _written(tmp_path)
    config = load_config(config_path)
    await _work(config)
    config.pdp.signing_key.unlink()
    repo = Path(__file__).resolve().parent.parent
    started = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pdp.cli", "-c", str(config_path), "pdp"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": f"{repo}{os.pathsep}{repo / 'proto'}"},
    )
    assert started.returncode == 2, started.stdout + started.stderr
    assert "cannot start: signing key" in started.stderr
    assert "rotate-key --old-key-lost" in started.stderr
    assert "Traceback" not in started.stderr
    assert not config.pdp.signing_key.exists()
