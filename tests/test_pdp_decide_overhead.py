"""What a Decide does per decision besides deciding, held to what it must do: the
configuration asked once per connection name (not twice per decision), the randomness
of decision ids drawn ahead (not a system call per id) yet never shared, and a stream
call answered by one task of its own. Each a property a regression of the PDP's busiest
path would break; none timed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pdp_harness import open_session, pdp_config, pdp_stub, running_pdp, token

from pdp.domain import decisions
from portcullis.v1 import pdp_pb2

REPO = Path(__file__).resolve().parents[1]


def test_decision_ids_draw_randomness_ahead_and_never_share_it(monkeypatch):
    draws: list[int] = []
    real = os.urandom

    def counted(n: int) -> bytes:
        draws.append(n)
        return real(n)

    monkeypatch.setattr(decisions.os, "urandom", counted)
    decisions._random_hex.clear()
    ids = [decisions.new_decision_id() for _ in range(decisions.RANDOM_IDS * 3)]
    # one draw per RANDOM_IDS ids, not one per id
    assert len(draws) <= 4
    assert len(set(ids)) == len(ids)
    assert len({i[-20:] for i in ids}) == len(ids)  # every id its own 80 random bits
    assert all(re.fullmatch(r"d-[0-9a-f]{32}", i) for i in ids)


def test_a_forked_child_draws_its_own_decision_id_randomness():
    # a child made by fork() after ids were drawn must not hand out its parent's
    code = (
        "import os, sys\n"
        "from pdp.domain.decisions import new_decision_id\n"
        "new_decision_id()\n"
        "r, w = os.pipe()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.write(w, new_decision_id()[-20:].encode()); os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "child = os.read(r, 64).decode()\n"
        "print(child != new_decision_id()[-20:])\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'proto'}"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "True"


@pytest.mark.parametrize("enforce", [True, False])
async def test_a_decide_asks_the_configuration_once_per_connection(tmp_path, enforce):
    config = pdp_config(tmp_path)
    name = "orders-db"
    if not enforce:
        config.connection(name).options["enforce"] = False
    async with running_pdp(config) as app, pdp_stub(app.address) as stub:
        tok = token(config, "alice@example.com", ("readonly",))
        sid = (await open_session(stub, tok)).session_id
        asked: list[str] = []
        real = type(app.config).connection

        def counted(self, wanted: str):
            asked.append(wanted)
            return real(self, wanted)

        type(app.config).connection = counted  # type: ignore[method-assign]
        try:
            for i in range(5):
                response = await stub.Decide(
                    pdp_pb2.DecideRequest(
                        session_id=sid,
                        command=pdp_pb2.Command(kind="postgres.query", raw=f"SELECT {i}"),
                    )
                )
                assert response.decision.verdict != pdp_pb2.DENY
        finally:
            type(app.config).connection = real  # type: ignore[method-assign]
        # once for the first decision (OpenSession's answer is its own); before, twice for
        # every decision (the record's shadow facts, then the answer's enforcement). The
        # shadow facts of a connection not enforced are still read for each record.
        assert asked.count(name) == (6 if not enforce else 1)
        records = [r for r in await app.store.query(kind="decision") if r.session_id == sid]
        assert len(records) == 5
        assert all(("enforced" in r.body) is (not enforce) for r in records)
        if not enforce:
            assert all(r.body["enforced"] is False for r in records)
