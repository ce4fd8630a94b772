"""A derived mask rule's positions, from the policy's result to the columns the proxy masks
(MaskRule.positions and .outputs): parsed strictly (a malformed list is a deny), carried
over gRPC, combined with another derived rule, and read by the tracker only for a result
of the width they were judged for. A rule without them (an older PDP, a proxy reading a
decision field it does not know) masks every computed column, as before.
"""

from __future__ import annotations

import pytest

from portcullis.masking import Masker
from portcullis.v1 import pdp_pb2
from portcullis.verdict import MaskRule, VerdictKind, verdict_from_result
from proxies.postgres import codec
from proxies.postgres.tracker import ResponseTracker
from proxies.runtime.pdp_client import _mask_rules

DETECTOR = {"detector": "email", "strategy": "partial"}


def _mask(rule: dict[str, object]) -> dict[str, object]:
    return {"verdict": "mask", "mask": [rule, DETECTOR]}


def test_positions_are_parsed_with_their_outputs():
    verdict = verdict_from_result(
        _mask({"derived": True, "strategy": "redact", "positions": [0, 3], "outputs": 4})
    )
    assert verdict.kind is VerdictKind.MASK
    (rule,) = [r for r in verdict.mask if r.derived]
    assert (rule.positions, rule.outputs) == ((0, 3), 4)
    assert rule.to_dict() == {
        "derived": True,
        "strategy": "redact",
        "positions": [0, 3],
        "outputs": 4,
    }
    plain = verdict_from_result(_mask({"derived": True, "strategy": "redact"}))
    (rule,) = [r for r in plain.mask if r.derived]
    assert (rule.positions, rule.outputs) == ((), 0)


@pytest.mark.parametrize(
    "extra",
    [
        {"positions": [0]},  # without outputs
        {"outputs": 2},  # without positions
        {"positions": [2], "outputs": 2},  # past the result
        {"positions": [-1], "outputs": 2},
        {"positions": [1, 0], "outputs": 2},  # not ascending
        {"positions": [0, 0], "outputs": 2},
        {"positions": [True], "outputs": 2},
        {"positions": ["0"], "outputs": 2},
        {"positions": [0], "outputs": 0},
        {"positions": [0], "outputs": True},
        {"positions": 0, "outputs": 1},
    ],
)
def test_malformed_positions_deny(extra):
    verdict = verdict_from_result(_mask({"derived": True, "strategy": "redact", **extra}))
    assert verdict.kind is VerdictKind.DENY


def test_only_a_derived_rule_names_positions():
    verdict = verdict_from_result(
        _mask({"field": "email", "strategy": "redact", "positions": [0], "outputs": 1})
    )
    assert verdict.kind is VerdictKind.DENY


def test_positions_cross_grpc_and_an_older_pdps_rule_masks_all():
    sent = pdp_pb2.MaskRule(derived=True, strategy="redact", positions=[1], outputs=3)
    (rule,) = _mask_rules([pdp_pb2.MaskRule.FromString(sent.SerializeToString())])
    assert (rule.derived, rule.positions, rule.outputs) == (True, (1,), 3)
    # an older PDP's rule: no positions on the wire
    (old,) = _mask_rules([pdp_pb2.MaskRule(derived=True, strategy="redact")])
    assert (old.positions, old.outputs) == ((), 0)
    # positions on a field rule are no positions
    (field,) = _mask_rules([pdp_pb2.MaskRule(field="email", positions=[0], outputs=1)])
    assert (field.positions, field.outputs) == ((), 0)


def test_two_derived_rules_mask_what_either_masks():
    a = MaskRule(derived=True, positions=(0,), outputs=3)
    b = MaskRule(derived=True, strategy="hash", positions=(2,), outputs=3)
    both = Masker([a, b], b"k" * 32).derived
    assert both is not None and (both.positions, both.outputs) == ((0, 2), 3)
    assert both.strategy == "redact"
    # of results of other widths, or one without positions: every computed column
    for other in (MaskRule(derived=True, positions=(0,), outputs=2), MaskRule(derived=True)):
        joined = Masker([a, other], b"").derived
        assert joined is not None and joined.outputs == 0


def _masked_columns(masker: Masker, width: int) -> list[int]:
    fields = [codec.Field(f"c{i}", type_oid=23) for i in range(width)]
    rules, _ = ResponseTracker()._columns_to_mask(fields, masker)
    return sorted(rules)


def test_the_tracker_masks_the_positions_of_a_result_of_their_width_only():
    positioned = Masker([MaskRule(derived=True, positions=(1, 3), outputs=4)], b"")
    assert _masked_columns(positioned, 4) == [1, 3]
    # another width: a `*` expanded, a statement the rule was not decided for
    assert _masked_columns(positioned, 3) == [0, 1, 2]
    assert _masked_columns(positioned, 5) == [0, 1, 2, 3, 4]
    everything = Masker([MaskRule(derived=True)], b"")
    assert _masked_columns(everything, 4) == [0, 1, 2, 3]
    # a column named by a field rule is masked wherever it is
    named = Masker([MaskRule(derived=True, positions=(1,), outputs=2), MaskRule(field="c0")], b"")
    assert _masked_columns(named, 2) == [0, 1]
