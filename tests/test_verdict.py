"""Policy result → Verdict: the one mapping, and it fails closed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portcullis.verdict import Verdict, VerdictKind, strictest, verdict_from_result

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (None, "undefined"),
        ([], "not an object"),
        ("allow", "not an object"),
        ({}, "unknown verdict"),
        ({"verdict": "ALLOWED"}, "unknown verdict"),
        ({"verdict": 1}, "unknown verdict"),
        ({"verdict": "allow", "reasons": [1]}, "malformed"),
        ({"verdict": "mask"}, "without mask rules"),
        ({"verdict": "mask", "mask": [{"field": "a", "detector": "b"}]}, "malformed"),
        ({"verdict": "mask", "mask": [{"field": "a", "strategy": "shred"}]}, "malformed"),
        ({"verdict": "require_approval"}, "without approvers"),
        ({"verdict": "allow", "cache_ttl_seconds": -1}, "malformed"),
        ({"verdict": "allow", "cache_key": "fuzzy"}, "malformed"),
        ({"verdict": "allow", "credential": "database/creds/x"}, "malformed"),
    ],
)
def test_doubtful_results_are_denied_with_a_reason(result, reason):
    verdict = verdict_from_result(result)
    assert verdict.kind is VerdictKind.DENY
    assert reason in verdict.reasons[0]


def test_a_well_formed_result_carries_everything_through():
    verdict = verdict_from_result(
        {
            "verdict": "mask",
            "reasons": ["pii"],
            "mask": [
                {"field": "email", "strategy": "redact"},
                {"detector": "credit_card", "strategy": "partial"},
            ],
            "credential": {"ref": "database/creds/ro"},
            "cache_ttl_seconds": 60,
            "cache_key": "shape",
        }
    )
    assert verdict.kind is VerdictKind.MASK
    assert [m.to_dict() for m in verdict.mask] == [
        {"field": "email", "strategy": "redact"},
        {"detector": "credit_card", "strategy": "partial"},
    ]
    assert verdict.credential_ref == "database/creds/ro"
    assert (verdict.cache_ttl_seconds, verdict.cache_key) == (60, "shape")


def test_a_deny_is_never_cached():
    verdict = verdict_from_result({"verdict": "deny", "cache_ttl_seconds": 60})
    assert verdict.cache_ttl_seconds == 0


def test_strictest_orders_deny_over_approval_over_mask_over_allow():
    allow = Verdict(VerdictKind.ALLOW, ("ok",), cache_ttl_seconds=30, cache_key="shape")
    mask = verdict_from_result({"verdict": "mask", "mask": [{"field": "email"}]})
    approval = verdict_from_result(
        {"verdict": "require_approval", "approval": {"approvers": ["group:security"]}}
    )
    deny = Verdict.deny("no")
    assert strictest([allow, mask]).kind is VerdictKind.MASK
    assert strictest([mask, approval, allow]).kind is VerdictKind.REQUIRE_APPROVAL
    assert strictest([allow, deny, approval]).kind is VerdictKind.DENY
    assert strictest([]).kind is VerdictKind.DENY
    assert strictest([allow, allow]).cache_key == "shape"


@given(JSON)
def test_any_json_maps_to_a_verdict_and_only_explicit_allows_allow(result):
    verdict = verdict_from_result(result)
    assert isinstance(verdict.kind, VerdictKind)
    if verdict.allowed:
        assert isinstance(result, dict) and result.get("verdict") in ("allow", "mask")
