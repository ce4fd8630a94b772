"""Evidence probe p8: a retired signing key, kept or stolen, vouches for no key after it.

Attack (the PDP's OLD signing private key, stolen before or kept after `audit rotate-key`;
an auditor who pins that old key): make a store of one's own — records saying whatever
one likes, a rotation from the old key to a key of one's own (signed by both, as the real
one is), checkpoints of the new key — and export it with the real `export_bundle`. The
verifier walked the key history forwards from the pinned key through any rotation that
key signed, so `audit verify --bundle forged --public-key old.pem` said OK: the thief's
key took over from the PDP's. The same held for the live store pinned to the old key.

Now trust runs backwards only (pdp.evidence.rotation.trusted_retired_problem): a pinned
key that a rotation retired is followed only to learn its range; what the keys after it
signed is refused, naming the rotation and asking for the PDP's current key, announced out
of band. Pinned to the current key, the genuine bundle and store verify, and so does a
store whose key was rotated (the key before is learned backwards, from the rotation the
current key signed). A bundle a thief of the old key signed without any rotation is
refused under the current key (the control). What no offline check can tell: an auditor
whose only pin is the old key, handed a bundle that stops at it, holds nothing that says
the key was retired — the pin must be the current key.

Real PDP (tests/pdp_harness.py, embedded OPA, SQLite store), the `portcullis` CLI in a
subprocess, as an operator and an auditor would.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from test_evidence_macs import audit
from test_evidence_rotation import _pem, _work
from test_pdp_probe_p7 import _written

from pdp.evidence.bundle import export_bundle
from pdp.evidence.checkpoints import CHECKPOINT_KIND
from pdp.evidence.rotation import ROTATION_KIND, rotation_body
from pdp.evidence.signing import Signer
from pdp.plumbing.keys import load_or_create_ed25519
from pdp.store.sqlite import SQLiteAuditStore
from portcullis.config import load_config


async def _forged_bundle(tmp_path: Path, old: Signer, rotate_to: Signer | None) -> Path:
    """A store of the thief's own (decisions they made up; a rotation from the stolen key
    to `rotate_to`, and its checkpoint, when given), exported as the PDP exports."""
    store = SQLiteAuditStore(tmp_path / "forged.db")
    await store.start()
    try:
        for n in range(3):
            await store.append(
                "decision",
                {"verdict": "allow", "reasons": ["made up"], "command": f"SELECT {n}"},
                subject="alice@example.com",
            )
        head = await store.head()
        cp = {"type": CHECKPOINT_KIND, "seq": head[0], "hash": head[1], "time": 1.0}
        await store.append(CHECKPOINT_KIND, old.sign(cp))
        signer = old
        if rotate_to is not None:
            head = await store.head()
            await store.append(ROTATION_KIND, rotation_body(old, rotate_to, head, "forged"))
            await store.append("decision", {"verdict": "allow", "reasons": ["after"]})
            head = await store.head()
            cp = {"type": CHECKPOINT_KIND, "seq": head[0], "hash": head[1], "time": 2.0}
            await store.append(CHECKPOINT_KIND, rotate_to.sign(cp))
            signer = rotate_to
        out = tmp_path / f"forged-{signer.key_id}.tar.gz"
        await export_bundle(store, signer, out)
    finally:
        await store.close()
    return out


async def _verify(config_path: Path, *args: str):
    return await asyncio.to_thread(audit, config_path, "verify", *args)


async def test_a_stolen_old_key_hands_over_to_no_key_of_the_thiefs(tmp_path):
    config_path = _written(tmp_path)
    config = load_config(config_path)
    await _work(config)
    stolen = tmp_path / "stolen.key"
    shutil.copy(config.pdp.signing_key, stolen)
    old = Signer(load_or_create_ed25519(stolen))
    old_pem = _pem(tmp_path, "old.pem", old)
    rotated = await asyncio.to_thread(audit, config_path, "rotate-key", "--reason", "leak")
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    await _work(config)
    current = Signer(load_or_create_ed25519(config.pdp.signing_key))
    current_pem = _pem(tmp_path, "current.pem", current)

    mine = Signer(load_or_create_ed25519(tmp_path / "mine.key"))
    forged = await _forged_bundle(tmp_path, old, rotate_to=mine)
    # the thief's bundle verifies as itself (its chain and signatures are sound) ...
    itself = await _verify(config_path, "--bundle", str(forged))
    assert itself.returncode == 0, itself.stdout + itself.stderr
    assert "NOT PINNED" in itself.stdout
    # ... and pinned to the PDP's old key it is refused: the old key's hand-over to the
    # thief's key is no more the PDP's than the old key's thief is
    pinned_old = await _verify(config_path, "--bundle", str(forged), "--public-key", str(old_pem))
    assert pinned_old.returncode == 1, pinned_old.stdout + pinned_old.stderr
    assert f"the key trusted, {old.key_id}, was retired at seq" in pinned_old.stdout
    assert f"rotated to {mine.key_id}" in pinned_old.stdout
    assert "PDP's current key" in pinned_old.stdout
    # pinned to the current key (announced out of band), refused as before
    pinned_now = await _verify(
        config_path, "--bundle", str(forged), "--public-key", str(current_pem)
    )
    assert pinned_now.returncode == 1, pinned_now.stdout


async def test_a_bundle_signed_by_the_stolen_old_key_alone_fails_under_the_current_key(
    tmp_path,
):
    """The control: the thief's bundle with no rotation at all, signed by the old key. It
    verifies under the old key alone (nothing in it says the key was retired: the auditor
    must pin the current key), and fails under the current key."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    await _work(config)
    stolen = tmp_path / "stolen.key"
    shutil.copy(config.pdp.signing_key, stolen)
    old = Signer(load_or_create_ed25519(stolen))
    rotated = await asyncio.to_thread(audit, config_path, "rotate-key", "--reason", "leak")
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    current = Signer(load_or_create_ed25519(config.pdp.signing_key))
    current_pem = _pem(tmp_path, "current.pem", current)
    forged = await _forged_bundle(tmp_path, old, rotate_to=None)
    pinned_now = await _verify(
        config_path, "--bundle", str(forged), "--public-key", str(current_pem)
    )
    assert pinned_now.returncode == 1, pinned_now.stdout
    assert f"public_key.pem is key {old.key_id}, not the pinned key" in pinned_now.stdout


async def test_the_genuine_evidence_verifies_under_the_current_key_only(tmp_path):
    """The PDP's own bundle and store after a rotation: pinned to the current key they
    verify, naming both keys (the old one learned backwards); pinned to the old key they
    are refused as the forgery is — the old key alone cannot tell them apart."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    await _work(config)
    old = Signer(load_or_create_ed25519(config.pdp.signing_key))
    old_pem = _pem(tmp_path, "old.pem", old)
    rotated = await asyncio.to_thread(audit, config_path, "rotate-key", "--reason", "yearly")
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    await _work(config)
    new = Signer(load_or_create_ed25519(config.pdp.signing_key))
    key = config.pdp.signing_key
    new_pem = key.with_name(f"{key.name}.{new.key_id}.pub")
    assert f"give auditors the new public key {new_pem}" in rotated.stdout
    assert new_pem.read_bytes() == new.public_pem()
    bundle = tmp_path / "evidence.tar.gz"
    exported = await asyncio.to_thread(audit, config_path, "export", "--out", str(bundle))
    assert exported.returncode == 0, exported.stdout + exported.stderr

    for where in ((), ("--bundle", str(bundle))):
        ok = await _verify(config_path, *where, "--public-key", str(new_pem))
        assert ok.returncode == 0, (where, ok.stdout + ok.stderr)
        assert f"signing keys: {old.key_id} (seq 1.." in ok.stdout, ok.stdout
        assert f"then {new.key_id} (seq " in ok.stdout, ok.stdout
        refused = await _verify(config_path, *where, "--public-key", str(old_pem))
        assert refused.returncode == 1, (where, refused.stdout)
        assert f"the key trusted, {old.key_id}, was retired at seq" in refused.stdout
        assert f"kind={ROTATION_KIND}" in refused.stdout
    # the store's own key file is the current key: verify without a pin still passes
    unpinned = await _verify(config_path)
    assert unpinned.returncode == 0, unpinned.stdout + unpinned.stderr
