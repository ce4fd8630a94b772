"""The trimming of a postgres command's catalogue facts (pdp.domain.policy_input.trim_to_names):
the shipped policy decides every input exactly as it does with the facts sent whole.

A differential run over statements of PostgreSQL's regression suite and the profiler's
agent statements, each with shadowed functions and view columns drawn from the names the
statement holds (some carrying sensitive columns, some "*") and from names it does not,
asked by a reader and a pii-reader: the whole decision document (verdict, reasons, mask,
cache hint, guards) with the trimmed input equals the one with the input as sent.
PORTCULLIS_TRIM_SAMPLE sets how many corpus statements (default 300). Hypothesis holds
the trimming to its rule: every name a statement holds is looked up alike.
"""

from __future__ import annotations

import copy
import gzip
import os
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from policy_harness import decide, shipped_engine

from pdp.domain.policy_input import (
    postgres_command,
    statement_names,
    trim_to_names,
)

ROOT = Path(__file__).resolve().parent.parent
engine = pytest.fixture(scope="module")(shipped_engine)
CORPUS = ROOT / "tests" / "data" / "sql_corpus.txt.gz"
SAMPLE = int(os.environ.get("PORTCULLIS_TRIM_SAMPLE", "300"))
SENSITIVE = ["email", "phone", "ssn"]
OTHERS = ["upper", "lower", "length", "now", "md5", "contact", "shout", "label", "zz_unused"]
FACTS = (
    "shadowed_functions",
    "view_columns",
    "relation_sources",
    "user_operators",
    "user_types",
    "view_functions",
)
OPERATORS = ["=", "<", "+", "~~", "@@@"]
AGENT_SQL = [
    "SELECT id, email, total FROM orders WHERE customer_id = 42",
    "SELECT o.id, c.email, sum(o.total) FROM orders o JOIN customers c ON c.id = o.customer_id "
    "GROUP BY o.id, c.email ORDER BY 3 DESC LIMIT 10",
    "SELECT name, lower(phone) FROM customers WHERE name ILIKE 'a%' ORDER BY name",
    "SELECT contact, upper(shout) FROM contact_view WHERE label LIKE 'x%'",
    "SELECT * FROM contact_view LIMIT 5",
    "UPDATE orders SET status = 'shipped' WHERE id = 7",
]


def catalogue(sql: str, rng: random.Random) -> dict[str, Any]:
    """Shadowed functions, operators and types the database defines outside pg_catalog,
    and view columns for a statement: names it holds and names it does not, views carrying
    sensitive columns, plain ones and "*"."""
    held = sorted(statement_names(postgres_command("postgres.query", sql, {})["statements"]))
    pool = held + OTHERS
    shadowed = rng.sample(pool, min(len(pool), rng.randint(0, 6)))
    views: dict[str, Any] = {}
    for name in rng.sample(pool, min(len(pool), rng.randint(0, 8))):
        views[name] = rng.choice([[rng.choice(SENSITIVE)], ["id"], ["*"], ["name", "id"]])
    sources = {
        rng.choice(["", "public."]) + name: [f"public.t_{rng.randint(0, 3)}"]
        for name in rng.sample(pool, min(len(pool), rng.randint(0, 4)))
    }
    operators = rng.sample(held + OPERATORS, min(len(held) + 5, rng.randint(0, 3)))
    types = rng.sample([*pool, "dd", "text"], min(len(pool) + 2, rng.randint(0, 3)))
    return {
        "protocol": "extended",
        "user_operators": operators,
        "user_types": types,
        "view_functions": {
            rng.choice(["", "public."]) + name: [rng.choice(["public.f", "pg_catalog.lower"])]
            for name in rng.sample(pool, min(len(pool), rng.randint(0, 3)))
        },
        "shadowed_functions": shadowed,
        "view_columns": views,
        "relation_sources": sources,
    }


def whole(sql: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """input.command.postgres as before trimming: the facts as the proxy sent them."""
    details = postgres_command("postgres.query", sql, attributes)
    return {**details, **{k: attributes[k] for k in FACTS}}


def policy_input(postgres: dict[str, Any], sql: str, groups: list[str]) -> dict[str, Any]:
    return {
        "identity": {"subject": "a@example.com", "groups": groups, "issuer": "dev", "claims": {}},
        "connection": {"name": "orders-db", "type": "postgres", "zone": "eu-prod", "labels": {}},
        "session": {"id": "s", "started_at": "2026-01-01T00:00:00Z", "attributes": {}},
        "command": {"kind": "postgres.query", "raw": sql, "postgres": postgres},
        "now": "2026-01-01T00:00:00Z",
    }


def statements() -> list[str]:
    _, *corpus = gzip.decompress(CORPUS.read_bytes()).decode().split("\n\x1e\n")
    return AGENT_SQL + random.Random(27).sample(corpus, min(SAMPLE, len(corpus)))


def test_trimmed_input_decides_as_the_whole_one(engine):
    rng = random.Random(2027)
    differ, trimmed_something, compared = [], 0, 0
    for n, sql in enumerate(statements()):
        attributes = catalogue(sql, rng)
        before = whole(sql, attributes)
        after = postgres_command("postgres.query", sql, copy.deepcopy(attributes))
        if after != before:
            trimmed_something += 1
        groups = [["readonly"], ["pii-readers", "readonly"]][n % 2]
        a = decide(engine, policy_input(before, sql, groups))
        b = decide(engine, policy_input(after, sql, groups))
        compared += 1
        if a != b:
            differ.append((sql, a, b))
    assert not differ, differ[:3]
    assert compared >= len(AGENT_SQL) and trimmed_something > compared // 2


def test_a_shadowed_function_the_statement_calls_is_still_denied(engine):
    sql = "SELECT upper(name) FROM customers"
    attributes = {"shadowed_functions": ["md5", "upper"], "view_columns": {}}
    postgres = postgres_command("postgres.query", sql, attributes)
    assert postgres["shadowed_functions"] == ["upper"]
    decision = decide(engine, policy_input(postgres, sql, ["readonly"]))
    assert decision["verdict"] == "deny"
    assert any("also defined outside pg_catalog" in r for r in decision["reasons"])


def test_a_view_column_carrying_a_sensitive_one_is_still_masked(engine):
    sql = "SELECT upper(contact) FROM contact_view"
    attributes = {"view_columns": {"contact": ["phone"], "other": ["email"]}}
    postgres = postgres_command("postgres.query", sql, attributes)
    assert postgres["view_columns"] == {"contact": ["phone"]}
    decision = decide(engine, policy_input(postgres, sql, ["readonly"]))
    assert any("sensitive column contact" in r for r in decision["reasons"]), decision


def test_the_attributes_sent_are_left_whole():
    """The guards (the row filter's relation_sources) and the record read the attributes
    as the proxy sent them: trimming makes new values, never changes those."""
    attributes = {
        "shadowed_functions": ["upper", "md5"],
        "view_columns": {"contact": ["phone"], "shout": ["email"]},
        "relation_sources": {"public.v": ["public.t"], "public.w": ["public.u"]},
    }
    sent = copy.deepcopy(attributes)
    postgres = postgres_command("postgres.query", "SELECT upper(contact) FROM v", attributes)
    assert attributes == sent
    assert postgres["relation_sources"] == {"public.v": ["public.t"]}
    assert postgres["shadowed_functions"] == ["upper"]


def test_facts_of_another_type_are_left_as_sent():
    sql = "SELECT upper(contact) FROM v"
    odd = {
        "shadowed_functions": {"a": "upper"},
        "view_columns": ["contact"],
        "relation_sources": "public.v",
    }
    postgres = postgres_command("postgres.query", sql, copy.deepcopy(odd))
    assert postgres["shadowed_functions"] == odd["shadowed_functions"]
    assert postgres["view_columns"] == odd["view_columns"]
    assert postgres["relation_sources"] == odd["relation_sources"]


def test_a_function_call_keeps_the_fact_about_its_function():
    postgres = postgres_command(
        "postgres.function_call",
        "",
        {"function": "lower", "shadowed_functions": ["upper", "lower"], "view_columns": {}},
    )
    assert postgres["shadowed_functions"] == ["lower"]


names_st = st.text(alphabet="abcxyz*_", min_size=0, max_size=3)
json_leaf = st.one_of(names_st, st.integers(), st.booleans(), st.none())
facts = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(names_st, inner, max_size=3)
    ),
    max_leaves=12,
)


@given(
    st.frozensets(names_st, max_size=8),
    st.lists(st.one_of(names_st, st.integers()), max_size=8),
    st.dictionaries(names_st, facts, max_size=8),
    st.dictionaries(st.tuples(names_st, names_st).map(".".join), facts, max_size=4),
)
def test_every_held_name_is_looked_up_alike(names, shadowed, views, sources):
    details = {
        "shadowed_functions": list(shadowed),
        "view_columns": dict(views),
        "relation_sources": dict(sources),
        "p": 1,
    }
    trim_to_names(details, names)
    assert set(details) == {"shadowed_functions", "view_columns", "relation_sources", "p"}
    for key, value in sources.items():
        held = key in names or key.rpartition(".")[2] in names
        assert details["relation_sources"].get(key, "absent") == (value if held else "absent")
    for name in names:
        assert (name in details["shadowed_functions"]) == (name in shadowed)
        assert details["view_columns"].get(name, "absent") == views.get(name, "absent")
    assert set(details["view_columns"]) <= set(names)
    assert set(details["shadowed_functions"]) <= set(names)
    again = copy.deepcopy(details)
    trim_to_names(again, names)
    assert again == details


@given(facts)
def test_statement_names_holds_every_string(value):
    found: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, str):
            found.add(v)
        elif isinstance(v, dict):
            for k, x in v.items():
                found.add(k)
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk([value])
    assert statement_names([value]) == found  # type: ignore[list-item]
