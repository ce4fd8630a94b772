"""pdp.engine.input_paths: the input paths a policy reads, and inputs cut down to them.

The shipped policy decides every input of policy_profile's sets (agent queries, golden
cases and examples, ssh.exec lines) the same with the input whole and pruned; the reading
keeps the whole input for any spelling it does not follow; and the embedded engine sends
its workers the pruned input (which is smaller: the session's id, the token's id, `now`).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from pdp.engine.bundle import load_bundle
from pdp.engine.input_paths import kept_paths, merged, prune_spec, pruned, references
from pdp.engine.opa import DECISION_PATH, new_engine, parse_envelope, raw_evaluate

REPO = Path(__file__).resolve().parents[1]


def _profile() -> Any:
    spec = importlib.util.spec_from_file_location(
        "policy_profile", REPO / "bench" / "pdp" / "policy_profile.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dotted_chains_are_kept_whole() -> None:
    assert references("x if input.command.kind == 1\ny := input.identity.groups[_]") == [
        ("command", "kind"),
        ("identity", "groups"),
    ]


@pytest.mark.parametrize(
    "source",
    [
        "x := input",
        "x if input[k] == 1",
        "import input\n",
        "x := walk(input)",
        "x := json.marshal(input)",
        'x := object.get(input, k, "")',  # a key that is no literal
        'x := object.get(input, ["a", k], "")',
        "x := f(input )",
        "test_x if { y with input as {} }",
    ],
)
def test_any_other_spelling_keeps_the_whole_input(source: str) -> None:
    assert references(source) is None
    assert kept_paths([source, "y := input.a"]) is None


def test_strings_comments_and_other_names_are_not_references() -> None:
    source = '# input\nx := "input[0] \\" input"\ny := `input`\nz := my_input\nw := q.input\n'
    assert references(source) == []


def test_object_get_with_literal_keys_reads_their_path() -> None:
    source = (
        'a := object.get(input, ["command", "mcp"], {})\n'
        'b := object.get(input.session, ["attributes", "settings"], {})\n'
        'c := object.get(input.command.ssh, "flags", [])\n'
    )
    assert references(source) == [
        ("command", "mcp"),
        ("session", "attributes", "settings"),
        ("command", "ssh", "flags"),
    ]


def test_pruning_keeps_named_paths_and_drops_the_rest() -> None:
    kept = kept_paths(["a := input.identity.groups", "b := input.command", "c := input.x.y.z"])
    value = {
        "identity": {"groups": ["g"], "token_id": "t"},
        "command": {"kind": "k", "raw": "r"},
        "x": {"y": [1], "w": 2},
        "now": "2026",
    }
    assert pruned(value, kept) == {
        "identity": {"groups": ["g"]},
        "command": {"kind": "k", "raw": "r"},
        "x": {"y": [1]},  # not an object under a named key: kept as it is
    }
    assert pruned(value, None) is value
    # a path kept whole stays whole whichever way round the paths came
    assert kept_paths(["a := input.a.b", "b := input.a"]) == {"a": None}
    assert kept_paths(["b := input.a", "a := input.a.b"]) == {"a": None}


def test_merged_keeps_what_either_reads() -> None:
    one = kept_paths(["a := input.a.b"])
    two = kept_paths(["a := input.a.c", "b := input.d"])
    assert merged(one, two) == {"a": {"b": None, "c": None}, "d": None}
    assert merged(one, None) is None


def test_the_shipped_policy_reads_no_session_id_token_id_or_now() -> None:
    kept = prune_spec(load_bundle(REPO / "rego").without_tests().modules)
    assert kept is not None
    assert "now" not in kept
    assert set(kept["identity"] or {}) == {"subject", "groups", "claims"}
    assert "id" not in (kept["session"] or {})


def test_the_shipped_policy_decides_pruned_inputs_alike() -> None:
    profile = _profile()
    bundle = load_bundle(REPO / "rego").without_tests()
    kept = prune_spec(bundle.modules)
    engine = new_engine(bundle)
    inputs = profile.agent_inputs() + profile.golden_inputs() + profile.ssh_inputs()
    extra = {
        "now": "2026-12-06T17:00:00.123Z",
        "session": {"id": "0f6b", "started_at": "x", "client_addr": "1.2.3.4:5", "client": "c"},
    }
    smaller = 0
    for policy_input in inputs:
        for given in (policy_input, {**policy_input, **extra}):
            for each in (given, profile.with_standing(engine, given)):
                whole = json.dumps(each, separators=(",", ":")).encode()
                cut = json.dumps(pruned(each, kept), separators=(",", ":")).encode()
                smaller += len(cut) < len(whole)
                assert parse_envelope(raw_evaluate(engine, DECISION_PATH, cut)) == (
                    parse_envelope(raw_evaluate(engine, DECISION_PATH, whole))
                ), each
    assert smaller > len(inputs)


async def test_the_embedded_engine_sends_its_workers_the_pruned_input(tmp_path, monkeypatch):
    """What a worker is sent is the input cut to what the policy in force reads, again
    after a reload to a policy reading other paths."""
    from pdp.engine import embedded
    from pdp.engine.bundle import PolicyBundle
    from portcullis.config import EngineSettings

    sent: list[Any] = []
    encode = embedded.input_to_json

    def recorded(value: Any) -> bytes:
        sent.append(value)
        return encode(value)

    monkeypatch.setattr(embedded, "input_to_json", recorded)
    (tmp_path / "p.rego").write_text('package portcullis\n\ndecision := {"n": input.a.n}\n')
    engine = embedded.EmbeddedEngine(
        EngineSettings(policies=tmp_path, workers=1, reload=False, timeout_ms=5000)
    )
    await engine.start()
    try:
        given = {"a": {"n": 1, "secret": 2}, "b": {"m": 3}, "now": "x"}
        assert (await engine.evaluate(given)).result == {"n": 1}
        assert sent[-1] == {"a": {"n": 1}}
        other = PolicyBundle(
            {"p.rego": 'package portcullis\n\ndecision := {"m": input.b.m}\n'}, {}, "r2", ""
        )
        assert await engine.reload(other)
        assert (await engine.evaluate(given)).result == {"m": 3}
        assert sent[-1] == {"b": {"m": 3}}
        whole = PolicyBundle({"p.rego": "package portcullis\n\ndecision := input\n"}, {}, "r3", "")
        assert await engine.reload(whole)
        assert (await engine.evaluate(given)).result == given
    finally:
        await engine.close()
