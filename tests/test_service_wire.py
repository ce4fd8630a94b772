"""The DecisionService's translation between protobuf and Python values.

Both functions here sit on the path of every Decide, so each has a fast form; these
tests hold the fast forms to the plain ones (json_format, a message built field by field).
"""

from __future__ import annotations

from google.protobuf import json_format, struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from pdp.api.recording_rpc import struct_to_dict
from pdp.api.service import decision_message
from pdp.domain.decisions import Decision
from portcullis.v1 import pdp_pb2
from portcullis.verdict import ApprovalSpec, MaskRule, Verdict, VerdictKind

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=6), json_values, max_size=5))
def test_struct_to_dict_reads_a_struct_as_json_format_does(value):
    message = struct_pb2.Struct()
    message.update(value)
    assert struct_to_dict(message) == json_format.MessageToDict(message)


def test_decision_message_carries_every_field_of_the_verdict_and_the_decision():
    verdict = Verdict(
        VerdictKind.REQUIRE_APPROVAL,
        ("needs a second pair of eyes",),
        (MaskRule(field="email"), MaskRule(detector="iban", strategy="hash")),
        ApprovalSpec(("dba-leads",), 900),
        "vault:db/creds/ro",
        30,
        "shape",
    )
    for n in range(2):  # the second build comes from the verdict's cached wire form
        message = decision_message(Decision(f"d-{n}", verdict, "rev-7", 1.25, True))
        assert message == pdp_pb2.Decision(
            decision_id=f"d-{n}",
            verdict=pdp_pb2.REQUIRE_APPROVAL,
            reasons=["needs a second pair of eyes"],
            mask=[
                pdp_pb2.MaskRule(field="email", strategy="redact"),
                pdp_pb2.MaskRule(detector="iban", strategy="hash"),
            ],
            approval=pdp_pb2.ApprovalSpec(approvers=["dba-leads"], ttl_seconds=900),
            credential_ref="vault:db/creds/ro",
            cache_ttl_seconds=30,
            cache_key=pdp_pb2.SHAPE,
            policy_revision="rev-7",
            evaluation_ms=1.25,
        )
