"""The query flags (input.command.postgres.has: pdp.domain.policy_input.statement_flags and
query_flags) never let a statement skip a denial: the shipped policy decides every input
with the flags the PDP sets exactly as with every flag set (every rule a flag guards runs).

`settings` and `untyped` also keep an answer from the decision cache (decision.rego), so the
whole decision (verdict, reasons, mask, cache hint, guards) is compared with every flag set
but those two as the PDP sets them, and the decision without the cache hint with every flag
set at all. Statements come from two sources: Hypothesis draws entries of the classifier's
fields (and fields of other shapes: a flag must be set when unsure), with catalogue facts;
and statements of PostgreSQL's regression suite classified by pdp.sql
(PORTCULLIS_FLAGS_SAMPLE of them, default 300), asked by a reader, a privileged identity and
a pii-reader, with the profiler's catalogue facts and behind a transaction pooler.
"""

from __future__ import annotations

import gzip
import os
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_harness import decide, shipped_engine

from pdp.domain.policy_input import (
    STATEMENT_FLAGS,
    postgres_command,
    query_flags,
    statement_flags,
    statement_names,
    statement_types,
    trim_to_names,
)

ROOT = Path(__file__).resolve().parent.parent
engine = pytest.fixture(scope="module")(shipped_engine)
CORPUS = ROOT / "tests" / "data" / "sql_corpus.txt.gz"
SAMPLE = int(os.environ.get("PORTCULLIS_FLAGS_SAMPLE", "300"))
EVERY_FLAG = dict.fromkeys((*STATEMENT_FLAGS, "user_code"), True)
GROUPS = (["readonly"], ["dba"], ["pii-readers", "readonly"])
CACHE_KEYS = ("cache_key", "cache_ttl_seconds")
CACHE_FLAGS = ("settings", "untyped")  # flags the cache hint reads

FUNCTIONS = ["now", "lower", "count", "set_config", "pg_read_file", "dblink_connect", "upper"]
TABLES = ["orders", "pg_authid", "pg_catalog.pg_authid", "contact_view", "public.v", "x.y.z"]
# the statistics and TOAST catalogs (has.pg_names), in other cases and with a schema
TABLES += ["PG_Stats", "pg_catalog.pg_statistic", "pg_toast.pg_toast_1", "PG_TOAST_2"]
COLUMNS = ["id", "email", "contact", "phone", "*"]
SETTINGS = ["DateStyle", "work_mem", "client_encoding", "search_path", "role"]
names = st.lists(st.sampled_from(FUNCTIONS + TABLES), max_size=3)
odd = st.one_of(st.none(), st.booleans(), st.integers(), st.just({"k": "set_config"}))

output = st.one_of(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(["", "?column?", "a", "email"]),
            "kind": st.sampled_from(["plain", "expression", "aggregate", "whole_row", "star"]),
            "columns": st.lists(st.sampled_from(COLUMNS), max_size=2),
            "tables": st.lists(st.sampled_from(TABLES), max_size=2),
        }
    ),
    odd,
)
predicate = st.fixed_dictionaries(
    {
        "column": st.sampled_from(COLUMNS),
        "use": st.sampled_from(["equality", "pattern", "range", "join", "other", "partial"]),
    }
)
statement = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(
                ["select", "insert", "update", "set", "copy", "transaction", "explain", "do"]
            ),
            "tag": st.sampled_from(["SelectStmt", "X"]),
            "tables": st.lists(st.sampled_from(TABLES), max_size=2),
            "functions": st.one_of(st.lists(st.sampled_from(FUNCTIONS), max_size=3), odd),
            "qualified_functions": st.one_of(
                st.lists(st.sampled_from(["pg_catalog.upper", "public.f"]), max_size=1), odd
            ),
        },
        optional={
            "cased_functions": st.one_of(st.lists(st.just("Upper"), max_size=1), odd),
            "operators": st.one_of(
                st.lists(st.sampled_from(["=", "+", "public.+", "pg_catalog.="]), max_size=2), odd
            ),
            "type_names": st.one_of(
                st.lists(st.sampled_from(["dd", "public.dd", "int4"]), max_size=2), odd
            ),
            "settings": st.one_of(st.lists(st.sampled_from(SETTINGS), max_size=2), odd),
            "dynamic_settings": odd,
            "locking": odd,
            "read_write": odd,
            "nested": odd,
            "outputs": st.one_of(st.lists(output, max_size=3), odd),
            "predicates": st.lists(predicate, max_size=2),
            "setting": st.sampled_from(SETTINGS),
            "value": st.sampled_from(["on", "5s", "pg_catalog, public"]),
            "reset": st.booleans(),
            "program": st.booleans(),
            "stdio": st.booleans(),
            "direction": st.sampled_from(["to", "from"]),
            "has_where": st.booleans(),
            "analyze": st.booleans(),
        },
    ),
    odd,
)
catalogue = st.fixed_dictionaries(
    {},
    optional={
        "shadowed_functions": st.one_of(st.lists(st.sampled_from(FUNCTIONS)), odd),
        "user_operators": st.one_of(st.lists(st.sampled_from(["+", "=", "public.+"])), odd),
        "user_types": st.one_of(st.lists(st.sampled_from(["dd", "public.dd"])), odd),
        "view_functions": st.one_of(
            st.dictionaries(st.sampled_from(["public.v", "public.contact_view"]), names), odd
        ),
        "view_columns": st.dictionaries(st.sampled_from(COLUMNS), st.lists(st.just("phone"))),
    },
)


def query_input(postgres: dict[str, Any], groups: list[str]) -> dict[str, Any]:
    return {
        "identity": {"subject": "agent@example.com", "groups": groups, "claims": {}},
        "connection": {"name": "orders-db", "type": "postgres"},
        "session": {"id": "s", "attributes": {}},
        "command": {"kind": "postgres.query", "raw": "-", "postgres": postgres},
        "now": "2026-01-01T00:00:00Z",
    }


def assert_flags_skip_nothing(engine: Any, postgres: dict[str, Any], groups: list[str]) -> None:
    """The decision with the PDP's flags equals the one with every flag set (the whole of
    it when the cache hint's flags are as the PDP sets them; all but the cache hint with
    them set too)."""
    flagged = decide(engine, query_input(postgres, groups))
    every_but_cache = {
        flag: True for flag in EVERY_FLAG if flag not in CACHE_FLAGS or flag in postgres["has"]
    }
    every = decide(engine, query_input({**postgres, "has": every_but_cache}, groups))
    assert flagged == every, (postgres, groups)
    everything = decide(engine, query_input({**postgres, "has": EVERY_FLAG}, groups))
    if isinstance(flagged, dict) and isinstance(everything, dict):
        flagged = {k: v for k, v in flagged.items() if k not in CACHE_KEYS}
        everything = {k: v for k, v in everything.items() if k not in CACHE_KEYS}
    assert flagged == everything, (postgres, groups)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    statements=st.lists(statement, min_size=1, max_size=3),
    facts=catalogue,
    groups=st.sampled_from(GROUPS),
    pooler=st.booleans(),
)
def test_drawn_statements_are_decided_alike_with_every_flag(
    engine: Any, statements: list[Any], facts: dict[str, Any], groups: list[str], pooler: bool
) -> None:
    postgres: dict[str, Any] = {"protocol": "simple", "statements": statements, **facts}
    postgres["types"] = statement_types([s for s in statements if isinstance(s, dict)])
    if pooler:
        postgres["pooler"] = "transaction"
    trim_to_names(postgres, statement_names(statements))
    postgres["has"] = query_flags(postgres, statement_flags(statements))
    assert_flags_skip_nothing(engine, postgres, groups)


def test_corpus_statements_are_decided_alike_with_every_flag(engine: Any) -> None:
    _, *corpus = gzip.decompress(CORPUS.read_bytes()).decode().split("\n\x1e\n")
    rng = random.Random(27)
    facts = {
        "shadowed_functions": ["upper", "lower", "length", "now", "md5"],
        "user_operators": ["+", "@@@"],
        "user_types": ["dd", "_dd"],
        "view_functions": {"public.contact_view": ["public.f"]},
        "view_columns": {"contact": ["phone"]},
    }
    flagged = 0
    for n, sql in enumerate(rng.sample(corpus, min(SAMPLE, len(corpus)))):
        postgres = postgres_command("postgres.query", sql, facts if n % 2 else {})
        if n % 5 == 0:
            postgres["pooler"] = "transaction"
        flagged += len(postgres["has"]) < len(EVERY_FLAG)
        assert_flags_skip_nothing(engine, postgres, GROUPS[n % len(GROUPS)])
    assert flagged > SAMPLE // 2  # the flags do leave rules out for most statements


@pytest.mark.parametrize(
    ("statements", "expected"),
    [
        ([{"type": "select", "functions": []}], {}),
        ([{"functions": []}, {"type": False}], {"untyped"}),
        ([{"type": "select", "outputs": [{"kind": "aggregate"}]}], {"computed"}),
        ([{"type": "select", "outputs": [{"kind": 1}]}], {"computed", "whole_row"}),
        (
            [{"type": "select", "functions": ["set_config"], "settings": ["work_mem"]}],
            {"settings", "functions"},
        ),
        ([{"type": "select", "functions": [], "dynamic_settings": True}], {"settings"}),
        ([{"type": "select", "functions": [], "locking": True}], {"locking"}),
        ([{"type": "select", "functions": [], "locking": False}], {}),
        ([{"type": "select", "functions": [], "nested": None}], {"nested"}),
        ([{"type": "select", "functions": [], "outputs": [{"kind": "whole_row"}]}], {"whole_row"}),
        ([{"type": "select", "functions": [], "operators": ["public.+"]}], {"qualified_names"}),
        ([{"type": "select", "functions": {"a": "set_config"}}], {"settings", "functions"}),
        ([{"type": "select", "functions": [], "type_names": "dd"}], {"qualified_names"}),
        ([{"type": "select", "functions": [], "tables": ["orders", "a.b"]}], {}),
        ([{"type": "select", "functions": [], "tables": ["x.PG_Toast_1"]}], {"pg_names"}),
        ([{"type": "select", "functions": [], "tables": ["pg_authid"]}], {"pg_names"}),
        ([{"type": "select", "functions": [], "tables": ["\uff30g_stats"]}], {"pg_names"}),
        ([{"type": "select", "functions": [], "tables": [1]}], {"pg_names"}),
        ([{"type": "select", "functions": [], "tables": "orders"}], {"pg_names"}),
        (["select"], set(STATEMENT_FLAGS)),
        ({"type": "select"}, set(STATEMENT_FLAGS)),
    ],
)
def test_statement_flags(statements: Any, expected: set[str]) -> None:
    assert statement_flags(statements) == dict.fromkeys(sorted(expected), True)


def test_a_proxys_flags_are_never_taken() -> None:
    sent = {"has": {}, "statements": [], "types": {}, "shadowed_functions": ["now"]}
    details = postgres_command("postgres.query", "SELECT now() FOR UPDATE", sent)
    expected = {"functions": True, "computed": True, "locking": True, "user_code": True}
    assert details["has"] == expected
    assert query_flags({"view_functions": {}}, {}) == {}
    assert query_flags({"user_types": "dd"}, {}) == {"user_code": True}
