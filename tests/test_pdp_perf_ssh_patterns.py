"""An SSH exec is matched against the command lists once per decision (issue 27/26).

ssh.rego matched every part of a line against every pattern of
data.portcullis.ssh.allowed_commands and approval_commands in four rules (the deny of
an unlisted command twice, allow, needs_approval, and the glob-argument rule once more),
each match a call of the three-body ssh_matches: ~25 calls for `echo 1234`, about half
of the evaluator's steps for the line the SSH benchmark decides. Now ssh_listed matches
each part once, and only against the patterns its command's name can match (those whose
first word is that name, or a glob). Counted from the evaluator's trace (its Index
events), a number that does not depend on the machine's load; the decisions of lists
whose first words are globs, or that list one command twice, are checked beside it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from pdp.domain.policy_input import command_input
from pdp.engine.bundle import PolicyBundle, load_bundle
from pdp.engine.opa import new_engine

REGO = Path(__file__).resolve().parent.parent / "rego"
DECISION = "portcullis.decision"


def engine_with(**lists: list[str]) -> Any:
    """The shipped policy, the patterns given added to data.portcullis.ssh's lists."""
    bundle = load_bundle(REGO).without_tests()
    data = copy.deepcopy(bundle.data)
    for name, patterns in lists.items():
        data["portcullis"]["ssh"][name] = [*data["portcullis"]["ssh"][name], *patterns]
    return new_engine(PolicyBundle(bundle.modules, data, bundle.revision, bundle.root))


@pytest.fixture(scope="module")
def shipped() -> Any:
    engine = engine_with()
    yield engine
    engine.close()


def exec_input(line: str, groups: list[str]) -> dict[str, Any]:
    return {
        "identity": {"subject": "agent@example.com", "groups": groups},
        "connection": {"name": "web-1", "type": "ssh"},
        "session": {"id": "s"},
        "command": command_input("ssh.exec", line, {}),
        "now": "2026-01-01T00:00:00Z",
    }


def decide(engine: Any, line: str, groups: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The decision of line and the rules it looked up, one entry per lookup."""
    decision = engine.eval_document(DECISION, exec_input(line, groups), trace=True)
    nodes = [str(e.get("node", "")) for e in engine.last_trace or [] if e["op"] == "Index"]
    return decision, nodes


def matches(nodes: list[str]) -> int:
    return sum("data.portcullis.ssh_matches(" in node for node in nodes)


@pytest.mark.parametrize("groups", [["readonly"], ["pii-readers"], ["dba"]])
def test_a_filter_is_matched_against_no_pattern(shipped: Any, groups: list[str]) -> None:
    decision, nodes = decide(shipped, "echo 1234", groups)
    assert decision["verdict"] in ("allow", "mask")
    assert matches(nodes) == 0  # no listed pattern's first word is echo or a glob


@pytest.mark.parametrize(
    ("line", "most"),
    [
        ("uptime", 1),  # the one pattern named uptime
        ("systemctl status nginx", 3),  # the three patterns named systemctl, once each
        ("df -h && uptime && free -m", 3),  # each part its own pattern, once
    ],
)
def test_each_part_is_matched_once_against_the_patterns_it_names(
    shipped: Any, line: str, most: int
) -> None:
    decision, nodes = decide(shipped, line, ["readonly"])
    assert decision["verdict"] in ("allow", "mask")
    assert 0 < matches(nodes) <= most


def test_patterns_whose_first_word_is_a_glob_still_match() -> None:
    engine = engine_with(allowed_commands=["/usr/bin/*"], approval_commands=["s*"])
    try:
        allowed, _ = decide(engine, "/usr/bin/uptime", ["readonly"])
        assert allowed["verdict"] == "mask"
        assert '"/usr/bin/*" is an allowed command' in allowed["reasons"]
        held, _ = decide(engine, "sync", ["readonly"])  # a glob's words all match it
        assert held["verdict"] == "require_approval"
        assert '"s*" needs approval ("sync")' in held["reasons"]
        refused, _ = decide(engine, "/usr/sbin/reboot", ["readonly"])
        assert refused["verdict"] == "deny"
    finally:
        engine.close()


def test_a_command_in_both_lists_is_allowed_and_needs_approval() -> None:
    engine = engine_with(approval_commands=["df -h"])
    try:
        decision, _ = decide(engine, "df -h", ["readonly"])
        assert decision["verdict"] == "require_approval"
        assert '"df -h" needs approval ("df -h")' in decision["reasons"]
        plain, _ = decide(engine, "df", ["readonly"])
        assert plain["verdict"] == "mask"
        assert '"df" is an allowed command' in plain["reasons"]
    finally:
        engine.close()


def test_an_exec_decision_meets_rules_within_the_first_places_of_their_sets(
    shipped: Any,
) -> None:
    """The exec rules' reasons go into ssh_denials and ssh_approvals (decision.rego joins
    them): among every module's deny and needs_approval rules they came at places 29-35
    and 9-25, and OPA 1.20.2 walks one slot per place any lookup returned on every lookup
    (tests/test_pdp_perf_rule_positions.py); now an exec's rules end at place 17, the
    17th of its 17 approval rules."""
    from tests.test_pdp_perf_rule_positions import rule_positions

    placed = rule_positions()
    late = set()
    for line in ("echo 1234", "df -h | grep -i sda && uptime", "journalctl -u nginx -n 20"):
        for groups in (["readonly"], ["pii-readers"], ["dba"]):
            shipped.eval_document(DECISION, exec_input(line, groups), trace=True)
            for event in shipped.last_trace or []:
                at = placed.get(event.get("location", ""))
                if event["op"] == "Enter" and at is not None and at[1] > 16:
                    late.add(at)
    assert late == set()
