"""proxies.runtime.pdp_client.ruling_from_message reads a Decision into the Ruling every
uncached command is enforced by. It is made without the dataclasses' __init__ (issue 27:
Verdict() and Ruling() were two thirds of its cost) and plain verdicts are found again by
what they say: here it must give exactly what Ruling(Verdict(...), ...) with every field
read from the message gives (the reference below, the function as it was), over decisions
of every kind of content, repeated (the remembered verdicts) and mixed.
"""

from __future__ import annotations

import random
import sys
from dataclasses import fields
from typing import Any

from portcullis.literals import ShapeRewrite
from portcullis.v1 import pdp_pb2
from portcullis.verdict import ApprovalSpec, Verdict
from proxies.runtime import pdp_client
from proxies.runtime.pdp_client import Ruling, ruling_from_message


def _reference(message: pdp_pb2.Decision) -> Ruling:
    """ruling_from_message before issue 27's change (5cdccac's), spelt the long way."""
    kind = pdp_client._KINDS.get(message.verdict)
    if kind is None:
        return Ruling(Verdict.deny("the PDP sent no verdict — denied"), message.decision_id)
    approval = None
    if message.HasField("approval"):
        approval = ApprovalSpec(tuple(message.approval.approvers), message.approval.ttl_seconds)
    verdict = Verdict(
        kind,
        tuple(message.reasons),
        pdp_client._mask_rules(message.mask),
        approval,
        message.credential_ref,
        message.cache_ttl_seconds,
        "shape" if message.cache_key == pdp_pb2.SHAPE else "exact",
        tuple(sorted(message.session_settings.items())),
    )
    return Ruling(
        verdict,
        message.decision_id,
        sys.intern(message.policy_revision),
        approval_id=message.approval_id,
        effects=tuple(message.effects),
        rewritten=message.rewritten,
        rewrite=(
            ShapeRewrite(
                message.rewrite_shape, message.rewrite_template, message.rewrite_fingerprint
            )
            if message.rewrite_template
            else None
        ),
        egress_left=(
            (message.egress_rows_left, message.egress_bytes_left) if message.egress_budget else None
        ),
        reuses_left=message.reuses_left if message.reuse_bounded else None,
    )


def _decision(rng: random.Random, i: int) -> pdp_pb2.Decision:
    d = pdp_pb2.Decision(decision_id=f"d-{i}", verdict=rng.choice([0, 1, 2, 3, 4, 9]))
    pick = rng.random
    if pick() < 0.8:
        d.reasons.extend(rng.sample(["allowed", "read only", "masked: email", "x" * 40], 2))
    if pick() < 0.5:
        d.policy_revision = rng.choice(["rev-1", "sha256:abc", ""])
    if pick() < 0.2:
        rule = d.mask.add(field="email", detector="email", strategy=rng.choice(["", "hash"]))
        if pick() < 0.5:
            rule.derived, rule.outputs = True, 2
            rule.positions.extend([0, 1])
    if pick() < 0.15:
        d.approval.approvers.extend(["dba", "security"])
        d.approval.ttl_seconds = rng.choice([0, 60])
    if pick() < 0.2:
        d.approval_id = f"a-{i % 3}"
    if pick() < 0.2:
        d.credential_ref = rng.choice(["vault:db/creds/ro", "static"])
    if pick() < 0.5:
        d.cache_ttl_seconds = rng.choice([0, 30, 3600])
    if pick() < 0.5:
        d.cache_key = rng.choice([pdp_pb2.SHAPE, 0])
    if pick() < 0.15:
        d.session_settings["default_transaction_read_only"] = rng.choice(["on", "off"])
    if pick() < 0.3:
        d.effects.extend(rng.sample(["copy_out", "prepare:p1", "listen:c", "set"], 2))
    if pick() < 0.2:
        d.rewritten = "SELECT 1 WHERE tenant = 7"
    if pick() < 0.2:
        d.rewrite_shape, d.rewrite_template = "SELECT ?", "SELECT $1 AND t = 7"
        d.rewrite_fingerprint = rng.choice(["", "f-1"])
    if pick() < 0.2:
        d.egress_budget = True
        d.egress_rows_left, d.egress_bytes_left = rng.randrange(100), rng.randrange(10_000)
    if pick() < 0.2:
        d.reuse_bounded, d.reuses_left = True, rng.randrange(5)
    return d


def _every_field(ruling: Ruling) -> dict[str, Any]:
    values = {f.name: getattr(ruling, f.name) for f in fields(Ruling)}
    values["kind"] = ruling.kind
    values["verdict"] = {f.name: getattr(ruling.verdict, f.name) for f in fields(Verdict)}
    return values


def test_every_decision_reads_as_the_reference_reads_it() -> None:
    rng = random.Random(27)
    messages = [_decision(rng, i) for i in range(3000)]
    # each twice, apart: the second reading finds its verdict remembered
    for message in messages + rng.sample(messages, len(messages)):
        got, want = ruling_from_message(message), _reference(message)
        assert got == want, message
        assert _every_field(got) == _every_field(want), message
        assert type(got) is Ruling and got.__dict__.keys() == want.__dict__.keys()


def test_a_ruling_is_its_own_and_frozen() -> None:
    message = pdp_pb2.Decision(decision_id="d-1", verdict=1, reasons=["allowed"])
    first, second = ruling_from_message(message), ruling_from_message(message)
    assert first is not second and first.__dict__ is not second.__dict__
    assert first.verdict is second.verdict  # one plain verdict for the process
    try:
        first.decision_id = "d-2"  # type: ignore[misc]
    except AttributeError:
        pass
    else:
        raise AssertionError("a Ruling made without __init__ must stay frozen")
    assert second.decision_id == "d-1"
