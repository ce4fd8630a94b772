"""What the PDP remembers per SQL text (issue 27, memory that returns): each distinct text an
agent sends fills one entry of each bounded memory of texts (pdp.domain.policy_input's
classification and typing, pdp.domain.effects' effects), and
with a new literal in every statement all of them fill to their bound and stay there. The
bound and the size of an entry are what the PDP keeps after a soak of short sessions
(bench/pdp/bench_session_soak.py): 8,192 texts at ~3.9 KB each held ~35 MB over a
baseline of ~95 MB. Sizes and bounds are checked here, never times."""

from __future__ import annotations

import sys

from pdp.domain import effects, policy_input

AGENT_SQL = (
    "SELECT o.id, c.email, sum(o.total) FROM orders o JOIN customers c ON c.id = o.customer_id "
    "WHERE o.created_at > now() - interval '1 day' GROUP BY o.id, c.email ORDER BY 3 DESC LIMIT 10"
)


def test_a_remembered_text_keeps_its_names_as_a_tuple_not_a_set() -> None:
    statements, _types, names, _flags = policy_input._classified_with_types(AGENT_SQL)
    assert type(names) is tuple
    assert set(names) == policy_input.statement_names(statements)
    assert sys.getsizeof(names) < sys.getsizeof(frozenset(names)) / 3


def test_the_memories_of_texts_are_bounded_at_2048() -> None:
    for remembered in (
        policy_input._classified,
        policy_input._typed,
        effects._sql_effects,
    ):
        assert remembered.cache_info().maxsize == policy_input.TEXTS_REMEMBERED == 2048


def test_the_facts_are_trimmed_to_the_statements_names_as_before() -> None:
    facts = {
        "shadowed_functions": ["now", "lower", "md5"],
        "view_columns": {"email": ["email"], "phone": ["phone"]},
        "relation_sources": {"public.orders": ["public.t"], "public.other": ["public.u"]},
        "write_code": {"orders": ["f"], "other": ["g"]},
    }
    details = policy_input.postgres_command("postgres.query", AGENT_SQL, facts)
    assert details["shadowed_functions"] == ["now"]
    assert details["view_columns"] == {"email": ["email"]}
    assert details["relation_sources"] == {"public.orders": ["public.t"]}
    assert details["write_code"] == {"orders": ["f"]}


def test_a_command_without_facts_is_built_as_before() -> None:
    details = policy_input.postgres_command("postgres.query", AGENT_SQL, {})
    for key in ("shadowed_functions", "view_columns", "relation_sources", "write_code"):
        assert key not in details
    assert details["types"] == {"select": True}
