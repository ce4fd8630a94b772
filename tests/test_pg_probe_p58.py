"""Probe P58 (helper pgattack24): the settings a transaction pooler's sessions need from the
upstream role are one list.

Behind pgbouncer the proxy checks, as each session starts, that the upstream role's
configuration holds its pins (proxies/postgres/startup.py role_pins: POOLER_ROLE_PINS,
bytea_output=hex, extra_float_digits=1 and backslash_quote, and what policy pinned for the
session), and the policy refuses SET and set_config of what must not move there
(rego/portcullis/postgres_pooler.rego). The two lists were kept apart, by hand: a pin added
to the proxy's list and not the policy's would be checked at start and then SET by any
session for the next one. Now postgres_pooler.rego's pg_pooler_role_pins is held equal to
POOLER_ROLE_PINS here, and every pin a reader's pooled session needs (policy's included)
is refused to SET, SET LOCAL and set_config behind the pooler, for everyone, on the shipped
policy with the real evaluator. Likewise the built-ins that keep session state, which the
policy refuses a pooled statement (P59) and the proxy's body reader a function (P57).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from policy_harness import decide, shipped_engine

from pdp.domain.policy_input import postgres_command
from pdp.engine.opa import raw_evaluate
from proxies.postgres.session_code import SESSION_STATE_BUILTINS
from proxies.postgres.startup import POOLER_ROLE_PINS, role_pins, session_pins

engine = pytest.fixture(scope="module")(shipped_engine)

GROUPS = [["readonly"], ["dba"], ["dba", "pii-readers"], ["readonly", "pii-readers"]]


def _input(kind: str, groups: list[str], postgres: dict[str, Any] | None = None) -> dict[str, Any]:
    command: dict[str, Any] = {"kind": kind, "raw": "-"}
    if postgres is not None:
        command["postgres"] = postgres
    return {
        "identity": {"subject": "p58@example.com", "groups": groups, "claims": {}},
        "connection": {"name": "orders-db", "type": "postgres"},
        "session": {"id": "s", "attributes": {}},
        "command": command,
        "now": "2026-01-01T00:00:00Z",
    }


def _pooled(engine: Any, sql: str, groups: list[str]) -> Any:
    postgres = postgres_command("postgres.query", sql, {"pooler": "transaction"})
    return decide(engine, _input("postgres.query", groups, postgres))


def _value(engine: Any, rule: str) -> Any:
    answer = json.loads(raw_evaluate(engine, f"portcullis.{rule}", b"{}"))
    return answer["result"][0]["expressions"][0]["value"]


def test_the_policys_role_pins_are_the_proxys(engine: Any) -> None:
    assert set(_value(engine, "pg_pooler_role_pins")) == set(POOLER_ROLE_PINS)


def test_the_built_ins_refused_in_a_statement_are_those_refused_in_a_body(engine: Any) -> None:
    """What the policy refuses a pooled statement to call (pg_pooler_session_builtins) is
    what proxies/postgres/session_code.py refuses a function's body, but set_config (judged
    by its setting and is_local in a statement) and dblink's (an extension's functions,
    judged as the database's code in a statement)."""
    apart = {"set_config", "dblink_connect", "dblink_connect_u", "dblink_open"}
    assert set(_value(engine, "pg_pooler_session_builtins")) == SESSION_STATE_BUILTINS - apart


def test_every_pin_of_a_pooled_readers_session_is_refused_to_set(engine: Any) -> None:
    opened = decide(engine, _input("session.open", ["readonly"]))
    assert opened["verdict"] == "allow", opened
    pins = role_pins(session_pins(opened["session_settings"], "transaction"), "transaction")
    assert set(POOLER_ROLE_PINS) < set(pins)  # and policy's: read-only, statement_timeout
    for name, value in pins.items():
        for sql in (
            f"SET {name} = '{value}x'",
            f"SET LOCAL {name} = '{value}x'",
            f"SELECT set_config('{name}', '{value}x', false)",
            f"SELECT set_config('{name}', '{value}x', true)",
        ):
            for groups in GROUPS:
                made = _pooled(engine, sql, groups)
                assert made["verdict"] == "deny", (sql, groups, made)
                assert any("behind a transaction pooler" in r for r in made["reasons"]), made
