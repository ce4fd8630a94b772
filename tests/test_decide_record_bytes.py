"""A decision record's bytes when parts of it were encoded once and spliced in (the
attributes a proxy sends with every statement, a repeated statement's classification):
the stored body is the canonical JSON of what was decided, the chain verifies, and a
statement or attributes that carry the splicing stand-in's own text change nothing."""

from __future__ import annotations

import json
import random
import sqlite3

from google.protobuf import struct_pb2
from pdp_harness import open_session, pdp_config, pdp_stub, running_pdp, token

from pdp.domain.decisions import Decider, Guarded, Reusable
from pdp.domain.policy_input import classified
from pdp.engine.embedded import EmbeddedEngine
from pdp.store.chain import canonical_json
from pdp.store.sqlite import SQLiteAuditStore
from portcullis.config import EngineSettings
from portcullis.v1 import pdp_pb2
from portcullis.verdict import MASK_STRATEGIES, Verdict

VIEWS = {
    "protocol": "extended",
    "shadowed_functions": ["upper", "lower", "round"],
    "view_columns": {f"contact_{i}": [f"phone_{i}"] for i in range(6)},
    "relation_sources": {f"public.view_{i}": [f"public.table_{i}"] for i in range(6)},
}
STAND_IN = "\0portcullis spliced value 0\0"


def command(sql: str, attributes: dict) -> pdp_pb2.Command:
    message = struct_pb2.Struct()
    message.update(attributes)
    return pdp_pb2.Command(kind="postgres.query", raw=sql, attributes=message)


async def test_records_spliced_from_remembered_parts_are_the_decided_values(tmp_path):
    config = pdp_config(tmp_path)
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        tok = token(config, "alice@example.com", ("readonly",))
        sid = (await open_session(stub, tok)).session_id
        odd = {**VIEWS, "view_columns": {"contact_0": [STAND_IN], STAND_IN: ["x"]}}
        sent = [
            ("SELECT id, email FROM customers WHERE id = 1", VIEWS),
            ("SELECT id, email FROM customers WHERE id = 1", VIEWS),  # both remembered
            ("SELECT count(*) FROM orders", VIEWS),
            (f"SELECT '{STAND_IN.strip(chr(0))}' FROM orders", odd),
            (f"SELECT '{STAND_IN}'", odd),  # the stand-in itself, NULs and all
            ("SELECT count(*) FROM orders", odd),
            ("SELECT 1", {"protocol": "simple"}),  # too small to be remembered
        ]
        ids = []
        for sql, attributes in sent:
            response = await stub.Decide(
                pdp_pb2.DecideRequest(session_id=sid, command=command(sql, attributes))
            )
            ids.append(response.decision.decision_id)
        records = {r.id: r for r in await app.store.query(kind="decision")}
        for decision_id, (sql, attributes) in zip(ids, sent, strict=True):
            body = records[decision_id].body  # read back from the stored text
            assert body["raw"] == sql
            assert body["attributes"] == json.loads(json.dumps(attributes))
            if "evaluation_reused_from" not in body:  # a reused evaluation names none
                assert body["statements"] == json.loads(json.dumps(classified(sql)))
            assert canonical_json(body) == canonical_json(json.loads(canonical_json(body)))
        assert (await app.store.verify()).ok


# a policy that answers whatever decision the command's text spells out, so one engine
# gives every kind of verdict: masks long and short, row filters, approvals, budgets
ECHO_POLICY = "package portcullis\n\ndecision := json.unmarshal(input.command.raw)\n"
ODD = ["plain", "ünïcödé ✓", 'quo"te', "back\\slash", "tab\there", STAND_IN, "\u2028", ""]


def _decision(rng: random.Random) -> dict:
    def text() -> str:
        return rng.choice(ODD) + str(rng.randrange(3))

    out: dict = {
        "verdict": rng.choice(["allow", "mask", "require_approval", "deny"]),
        "reasons": [text() for _ in range(rng.randrange(4))],
        "cache_ttl_seconds": rng.choice([0, 60]),
        "cache_key": "exact",
    }
    if rng.random() < 0.7:  # from a rule or two to dozens
        out["mask"] = [
            {rng.choice(["field", "detector"]): text(), "strategy": rng.choice(MASK_STRATEGIES)}
            for _ in range(rng.choice([1, 3, 12, 40]))
        ]
    if rng.random() < 0.3:
        out["approval"] = {
            "approvers": [text() for _ in range(rng.randrange(30))],
            "ttl_seconds": 5,
        }
    if rng.random() < 0.3:
        out["row_filter"] = {
            f"public.t{n}": [{"column": "tenant", "op": "=", "value": text()}] * rng.choice([1, 9])
            for n in range(rng.choice([1, 4]))
        }
    if rng.random() < 0.3:
        out["budget"] = {"rows_per_session": rng.randrange(9), "over": "deny"}
    if rng.random() < 0.3:
        out["breaker"] = {"statements_per_second": rng.randrange(9)}
    return out


def _guard(rng: random.Random):
    """What the guards may do to a verdict: nothing, add facts (one replacing a field the
    verdict has, as a tripped breaker replaces `breaker`), or answer a stricter one."""
    choice = rng.randrange(4)

    def guard(verdict: Verdict) -> Guarded:
        if choice == 1:
            return Guarded(verdict, facts={"breaker": "tripped", "egress_used": {"rows": 3}})
        if choice == 2:
            return Guarded(verdict, facts={"mask": [{"field": "x", "strategy": "redact"}]})
        if choice == 3:
            return Guarded(Verdict.deny(f"held {STAND_IN}"), facts={"guard_denied": "held"})
        return Guarded(verdict)

    return guard if choice else None


async def test_record_bytes_are_the_canonical_json_of_the_decided_body(tmp_path):
    """Over varied decisions, evaluated and reused, with guards that replace fields: the
    stored text of each record is canonical_json() of the body as decided, the bytes the
    record had before any part of it was spliced from text made once."""
    policies = tmp_path / "rego"
    policies.mkdir()
    (policies / "p.rego").write_text(ECHO_POLICY)
    engine = EmbeddedEngine(
        EngineSettings(policies=policies, workers=1, reload=False, timeout_ms=5000)
    )
    await engine.start()
    store = SQLiteAuditStore(tmp_path / "d.db", synchronous="normal")
    await store.start()
    try:
        decider = Decider(engine, store)
        rng = random.Random(27)
        answers = [json.dumps(_decision(rng)) for _ in range(60)]
        made = []
        for n in range(240):
            raw = answers[rng.randrange(len(answers))]  # answers repeat: mapped once each
            record = {"session_id": f"s-{n % 3}", "subject": "alice", "connection": "db"}
            if n % 5 == 0:
                record["attributes"] = {"protocol": STAND_IN, "n": [n % 2]}
            guard = _guard(rng)
            facts = guard(Verdict.deny("probe")).facts if guard else None
            decision = await decider.decide(
                {"command": {"kind": "postgres.query", "raw": raw}},
                record,
                Reusable(f"s-{n % 3}", "postgres.query", raw, "postgres.query"),
                guard,
            )
            made.append((decision, record, raw, facts))
        assert any(texts for _, _, texts in decider._verdicts.values())  # some were spliced
    finally:
        await store.close()
        await engine.close()
    rows = dict(
        sqlite3.connect(tmp_path / "d.db").execute(
            "SELECT id, body FROM audit_records WHERE kind = 'decision'"
        )
    )
    reused = 0
    for decision, record, raw, facts in made:
        stored = rows[decision.id]
        body = {
            **record,
            "decision_id": decision.id,
            "kind": "postgres.query",
            "raw": raw,
            **decision.verdict.to_dict(),
            "policy_revision": decision.policy_revision,
            "evaluation_ms": round(decision.evaluation_ms, 3),
        }
        if "evaluation_reused_from" in json.loads(stored):
            body["evaluation_reused_from"] = json.loads(stored)["evaluation_reused_from"]
            reused += 1
        body.update(facts or {})
        assert stored == canonical_json(body)
    assert reused > 20
