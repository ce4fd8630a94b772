"""A policy that needs a newer policy input than this PDP builds is never evaluated by it.

Rules of the shipped policy open with flags the PDP sets (`has.pg_names`, …) so the
evaluator skips them for queries without the fact; an older PDP leaves a newer flag out,
and the rule it guards would be skipped for every query (fail open). The policy's data
names the input revision it needs; a PDP that builds less refuses the policy at start and
keeps the running one at a reload.
"""

from __future__ import annotations

import json
import shutil

import pytest
from pdp_harness import REGO

from pdp.engine.bundle import INPUT_REVISION, load_bundle, unmet_requirement
from pdp.engine.embedded import EmbeddedEngine
from pdp.engine.opa import PolicyLoadError, new_engine
from portcullis.config import EngineSettings


def _needing(folder, revision) -> None:
    data_file = folder / "data.json"
    data = json.loads(data_file.read_text())
    data["portcullis"]["requires"]["input_revision"] = revision
    data_file.write_text(json.dumps(data))


def test_the_shipped_policy_needs_exactly_what_this_pdp_builds():
    assert load_bundle(REGO).data["portcullis"]["requires"] == {"input_revision": INPUT_REVISION}


@pytest.mark.parametrize(
    "data, refused",
    [
        ({}, False),  # names no requirement: relies on no flag
        ({"portcullis": {"requires": {"input_revision": INPUT_REVISION}}}, False),
        ({"portcullis": {"requires": {"input_revision": 0}}}, False),
        ({"portcullis": {"requires": {"input_revision": INPUT_REVISION + 1}}}, True),
        ({"portcullis": {"requires": {"input_revision": "1"}}}, True),
        ({"portcullis": {"requires": {"input_revision": 1.5}}}, True),
        ({"portcullis": {"requires": {"input_revision": True}}}, True),
        ({"portcullis": {"requires": {"input_revision": -1}}}, True),
    ],
)
def test_the_requirement_is_a_whole_number_no_newer_than_this_pdp(data, refused):
    assert (unmet_requirement(data) is not None) is refused


def test_a_newer_policy_is_refused_before_it_loads(tmp_path):
    policies = tmp_path / "rego"
    shutil.copytree(REGO, policies, ignore=shutil.ignore_patterns("*_test.rego"))
    _needing(policies, INPUT_REVISION + 1)
    with pytest.raises(PolicyLoadError, match="upgrade the PDP before the policy"):
        new_engine(load_bundle(policies))


async def test_the_engine_refuses_it_at_start_and_keeps_the_running_policy_at_reload(tmp_path):
    policies = tmp_path / "rego"
    shutil.copytree(REGO, policies, ignore=shutil.ignore_patterns("*_test.rego"))
    _needing(policies, INPUT_REVISION + 1)
    refused = EmbeddedEngine(EngineSettings(policies=policies, workers=1, reload=False))
    with pytest.raises(PolicyLoadError, match="needs policy input revision"):
        await refused.start()
    await refused.close()

    _needing(policies, INPUT_REVISION)
    engine = EmbeddedEngine(EngineSettings(policies=policies, workers=1, reload=False))
    await engine.start()
    try:
        running = engine.revision
        _needing(policies, INPUT_REVISION + 1)
        assert not await engine.reload()
        assert "needs policy input revision" in engine.last_reload_error
        assert engine.revision == running
        result = await engine.evaluate({"command": {"kind": "session.open"}})
        assert result.revision == running
    finally:
        await engine.close()
