"""Evidence probe 16 (helper auditsec9): a bundle without values keeps only the claims decided on.

A `session.open` record kept the token's whole verified payload (`identity.claims`):
whatever the IdP put in the JWT, an email, a name, a phone number, reached an auditor
outside pii-readers through `audit export --withhold-values`, which keeps session.open
whole. The PDP now writes a session.open with the claims it decides on in the clear (the
registered ones, `iss`, `sub`, `aud`, `exp`, ..., the groups claim, and any
`identity.evidence_claims` names) and every other claim as a salted commitment; the
values and salts are a `session.claims` record of the same session, withheld whole from
such a bundle. The bundle still verifies offline; a full bundle's values re-derive each
commitment; a session found again after a restart, and `policy diff`, have its claims
back (the policy's `input.identity.claims` unchanged).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from pdp_harness import REGO, open_session, pdp_stub, running_pdp
from test_pdp_probe_p7 import _written
from test_pdp_probe_p8 import _cli

from pdp.domain.claims import commitment
from pdp.domain.identity import DevIssuer
from pdp.evidence.bundle import export_bundle, verify_bundle
from portcullis.config import ConfigError, load_config

EMAIL = "rita.private@example.org"
NAME = "Rita Q. Privateperson"
PHONE = "+1 555 0100 7788"


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in _members(path)["records.jsonl"].decode().splitlines()]


def _token(config: Any) -> str:
    extra = {"email": EMAIL, "name": NAME, "phone_number": PHONE, "department": "ops"}
    return DevIssuer(config.identity).issue(
        "rita@example.com", ["readonly"], 3600, extra_claims=extra
    )


async def test_a_withheld_bundle_keeps_only_the_decided_claims(tmp_path):
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, _token(config))
        assert opened.session_id
        withheld, full = tmp_path / "withheld.tar.gz", tmp_path / "full.tar.gz"
        await export_bundle(app.store, app.signer, withheld, withhold_values=True)
        await export_bundle(app.store, app.signer, full)
        public_key = app.signer.public_key
    for name, data in _members(withheld).items():
        for value in (EMAIL, NAME, PHONE):
            assert value.encode() not in data, (name, value)
    lines = _lines(withheld)
    (open_line,) = [x for x in lines if x["kind"] == "session.open"]
    claims = open_line["body"]["session"]["identity"]["claims"]
    assert claims["sub"] == "rita@example.com" and claims["groups"] == ["readonly"]
    assert claims["iss"] and claims["aud"] == "portcullis"
    assert set(claims["email"]) == {"$commit"}
    assert [x["body"] for x in lines if x["kind"] == "session.claims"] == [None]
    report = verify_bundle(withheld, public_key)
    assert report.ok, [p.describe() for p in report.problems]
    verified = await asyncio.to_thread(
        _cli, config_path, "audit", "verify", "--bundle", str(withheld)
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # the full bundle holds each value and its salt, which re-derive the commitment
    full_lines = _lines(full)
    assert verify_bundle(full, public_key).ok
    (opened_values,) = [x["body"] for x in full_lines if x["kind"] == "session.claims"]
    held = opened_values["claims"]["email"]
    assert held["value"] == EMAIL
    assert commitment(held["salt"], held["value"]) == claims["email"]["$commit"]


async def test_a_session_found_again_has_its_claims(tmp_path):
    config = load_config(_written(tmp_path))
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        opened = await open_session(stub, _token(config))
        sid = opened.session_id
        app.sessions._open.pop(sid)  # (as a restarted PDP: found again from the store)
        found = await app.sessions.find(sid)
    assert found is not None
    assert found.identity.claims["email"] == EMAIL
    assert found.identity.claims["department"] == "ops"
    assert EMAIL in found.identity.names


CLAIM_RULE = """package portcullis

import rego.v1

of_ops if input.identity.claims.department == "ops"

deny contains "only ops may open a session" if {
\tinput.command.kind == "session.open"
\tnot of_ops
}
"""


async def test_policy_diff_replays_a_rule_on_a_committed_claim_as_decided(tmp_path):
    """`policy diff` rebuilds each session's input from its open record: a candidate rule
    reading a claim the record commits reads the value from its session.claims record."""
    config_path = _written(tmp_path)
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        assert (await open_session(stub, _token(config))).session_id
    candidate = tmp_path / "candidate"
    shutil.copytree(REGO, candidate, ignore=shutil.ignore_patterns("*_test.rego"))
    (candidate / "portcullis" / "claims_gate.rego").write_text(CLAIM_RULE)
    said = await asyncio.to_thread(
        _cli, config_path, "policy", "diff", "--since", "24h", "--policies", str(candidate),
        "--json",
    )  # fmt: skip
    assert said.returncode == 0, said.stdout + said.stderr
    report = json.loads(said.stdout)
    assert report["replayed"] == 1 and report["changed"] == 0, report


async def test_identity_evidence_claims_are_kept_in_the_clear(tmp_path):
    """A claim the policy decides on besides groups (a row filter's tenant) is named in
    identity.evidence_claims and kept in the clear; the others are still committed. A
    name list that is not one stops the start naming the key."""
    config_path = _written(tmp_path, identity={"dev": True, "dev_key": str(tmp_path / "dev.key"),
                                               "evidence_claims": ["department"]})  # fmt: skip
    config = load_config(config_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        await open_session(stub, _token(config))
        withheld = tmp_path / "withheld.tar.gz"
        await export_bundle(app.store, app.signer, withheld, withhold_values=True)
        public_key = app.signer.public_key
    (open_line,) = [x for x in _lines(withheld) if x["kind"] == "session.open"]
    claims = open_line["body"]["session"]["identity"]["claims"]
    assert claims["department"] == "ops" and set(claims["email"]) == {"$commit"}
    assert verify_bundle(withheld, public_key).ok
    raw = yaml.safe_load(config_path.read_text())
    raw["identity"]["evidence_claims"] = "department"
    config_path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as refused:
        load_config(config_path)
    assert refused.value.key == "identity.evidence_claims"
