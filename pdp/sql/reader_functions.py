"""Generates `data.portcullis.postgres.reader_functions`: the functions readers may call.

Owns the selection, so it can be re-run against any server and reviewed as a diff:

    portcullis policy reader-functions --dsn postgresql://postgres@127.0.0.1:5432/postgres
    portcullis policy reader-functions --dsn ... --write rego/data.json

A name is listed when every overload of it in pg_catalog that SQL can call is immutable or
stable (aggregates and window functions included), and the name is on none of the
exclusion lists below; plus the reviewed HARMLESS_VOLATILE functions. Apart, the reviewed
INFORMATION_SCHEMA_HELPERS that drivers call qualified with information_schema
(`data.portcullis.postgres.reader_information_schema_functions`). Policy judges calls
by name (pdp/sql/ cannot know argument types), so one overload that is not
harmless keeps the name off the list. The lists are the review: each entry says why.

Reads the catalog only; writes nothing but the file it is asked to write.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# Functions that run SQL text, or read whole tables by name (which skips the per-column
# judgement of the statement that calls them): the text or table is never classified.
RUNS_SQL = re.compile(
    r"^(query_to_xml.*|cursor_to_xml.*|table_to_xml.*|schema_to_xml.*|database_to_xml.*"
    r"|ts_stat|ts_rewrite)$"
)

# Functions that read the server's files or list its directories.
READS_FILES = re.compile(
    r"^(pg_read_.*|pg_ls_.*|pg_stat_file|pg_current_logfile|pg_hba_file_rules"
    r"|pg_ident_file_mappings|pg_show_all_file_settings|pg_file_.*)$"
)

# Large objects: server-side storage outside the tables policy names (read and write).
LARGE_OBJECTS = re.compile(r"^(lo_.*|loread|lowrite|be_lo_.*)$")

# Functions that change the server's or other sessions' state, or take locks and ids that
# outlive the statement. Most are volatile and would not be listed anyway; naming them
# keeps them off the list on a server that marks one stable. The replication patterns
# also catch a few stable readers of replication state (pg_get_replication_slots): no
# reader needs them, and one pattern reviews more easily than a list of exceptions.
SERVER_STATE = re.compile(
    r"^(pg_terminate_backend|pg_cancel_backend|pg_reload_conf|pg_rotate_logfile.*"
    r"|pg_stat_reset.*|pg_stat_clear_snapshot|pg_.*replication.*|pg_.*_slot.*"
    r"|pg_promote|pg_switch_wal|pg_create_restore_point|pg_backup_.*|pg_.*_backup"
    r"|pg_wal_replay_.*|pg_log_backend_memory_contexts|pg_import_system_collations"
    r"|pg_logical_.*|setval|nextval|pg_notify|pg_advisory_.*|pg_try_advisory_.*"
    r"|set_config|pg_sleep.*|txid_current|pg_current_xact_id)$"
)

# (set_config is judged by the setting it names, in rego/portcullis/postgres.rego.)

# Other sessions' SQL text (literal values included, which no masking sees).
OTHER_SESSIONS = re.compile(r"^(pg_stat_get_activity|pg_stat_get_backend_activity)$")

# Validators load a function's code (a C function's shared library) to check it.
VALIDATORS = re.compile(r"^.*_validator$")

# What PostgreSQL shows only to superusers, and the upstream role may be one: every setting
# with its value (primary_conninfo holds a password; current_setting is judged by the
# setting it names, in rego/portcullis/postgres.rego) and the server's build (pg_config,
# not granted to every role). tests/test_pg_server_secrets.py holds the list to the
# server: no function it withholds from a role without privileges is listed.
SUPERUSER_VIEWS = re.compile(r"^(pg_show_all_settings|pg_config)$")

# A type's input code named by OID or by name in a value: array_in('{x}', t, -1),
# record_in('(x)', t, -1), domain_in('x', t, -1), range_in, multirange_in run the input
# function of the type t names, a domain's CHECK expressions included (a function the
# database defines), though the statement names no such type: a cast to t is what policy
# judges (readers cast only to pg_catalog's types). pg_input_is_valid and
# pg_input_error_info (PostgreSQL 16+) take the type's name as text.
TYPE_INPUT = re.compile(
    r"^(array_in|record_in|domain_in|range_in|multirange_in"
    r"|pg_input_is_valid|pg_input_error_info)$"
)

EXCLUDED = {
    "runs SQL text": RUNS_SQL,
    "reads server files": READS_FILES,
    "large objects": LARGE_OBJECTS,
    "server state": SERVER_STATE,
    "other sessions": OTHER_SESSIONS,
    "validator": VALIDATORS,
    "shown to superusers only": SUPERUSER_VIEWS,
    "runs a type's input named by a value": TYPE_INPUT,
}

# Volatile functions agents and drivers call that only read, or release only what the
# session itself holds. Reviewed one by one; listed only where the server has them.
HARMLESS_VOLATILE = {
    "random": "a random number",
    "random_normal": "a random number (PostgreSQL 16+)",
    "clock_timestamp": "the time",
    "timeofday": "the time, as text",
    "gen_random_uuid": "a random UUID",
    "pg_is_in_recovery": "libpq's target_session_attrs check",
    "pg_blocking_pids": "which sessions block one (lock diagnosis)",
    "pg_database_size": "a database's size on disk",
    "pg_relation_size": "a relation's size on disk",
    "pg_table_size": "a table's size on disk",
    "pg_indexes_size": "a table's index size on disk",
    "pg_total_relation_size": "a relation's total size on disk",
    "pg_partition_tree": "a partitioned table's partitions (psql \\dP)",
    "pg_partition_ancestors": "a partition's parents",
    "pg_jit_available": "whether JIT compilation is available",
    # asyncpg's pool release sends SELECT pg_advisory_unlock_all(): releases only locks
    # this session holds.
    "pg_advisory_unlock_all": "releases this session's advisory locks",
    "pg_advisory_unlock": "releases one of this session's advisory locks",
    "pg_advisory_unlock_shared": "releases one of this session's shared advisory locks",
}

# information_schema's helpers that drivers call by their qualified name: pgjdbc's
# getPrimaryKeys, getIndexInfo and getBestRowIdentifier (so Metabase's, DBeaver's and
# DataGrip's key and index lists) read `information_schema._pg_expandarray(i.indkey)`.
# Reviewed one by one: SQL that initdb made, immutable, reading nothing but its arguments.
# Listed (`data.portcullis.postgres.reader_information_schema_functions`) only where the
# server has it as initdb made it (an OID below 16384, one overload, immutable, LANGUAGE
# sql), apart from reader_functions: the policy admits such a name only called qualified
# with information_schema (unqualified, or in a database that defines a function of its
# name, user_functions, the server may run another one), and the proxy's facts deny it in
# a database that changed it since initdb (shadowed_functions).
INFORMATION_SCHEMA_HELPERS = {
    "_pg_expandarray": "an array's elements with their positions: select $1[s], s - "
    "array_lower($1, 1) + 1 from generate_series(array_lower($1, 1), array_upper($1, 1))",
}

HELPERS_QUERY = """
SELECT p.proname
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_language l ON l.oid = p.prolang
WHERE p.pronamespace = 'information_schema'::regnamespace
AND p.proname = ANY (%s)
GROUP BY p.proname
HAVING count(*) = 1 AND bool_and(p.oid < '16384'::oid AND p.provolatile = 'i'
                                 AND l.lanname = 'sql')
ORDER BY 1
"""

# Overloads SQL cannot call: pseudo-type `internal` arguments (planner support, type
# analysis) and the handlers only the server invokes (triggers, access methods).
_UNCALLABLE_RETURNS = (
    "trigger",
    "event_trigger",
    "fdw_handler",
    "index_am_handler",
    "table_am_handler",
    "tsm_handler",
    "language_handler",
)

CATALOG_QUERY = """
SELECT p.proname, p.provolatile, p.prokind,
       'internal'::regtype = ANY (p.proargtypes::oid[]) AS takes_internal,
       p.prorettype::regtype::text AS returns
FROM pg_catalog.pg_proc p
WHERE p.pronamespace = 'pg_catalog'::regnamespace
ORDER BY p.proname
"""


# Functions the server's attribute notation can call on a whole row: `c.f` (and `(c).f`,
# `schema.table.f`) is the column f of c, or f(c) when c has no such column. A row (a
# table's composite type, or a RECORD) reaches a first argument of a composite type, a
# domain (over one), or a pseudo-type that takes any value (record, "any", anyelement,
# anynonarray, anycompatible...; VARIADIC "any" too); the others must have defaults. Window
# functions and ordered-set aggregates are left out: the server refuses them without OVER
# or WITHIN GROUP, which the notation cannot give (a column named rank stays readable).
# `c.concat`, `c.row_to_json` and `c.json_agg` read every column of the row, masked ones
# among them, under a name no mask knows: the policy (rego/portcullis/postgres.rego)
# denies a name after a dot that is one of these, outside pii-readers. The database's own
# (made after initdb, any schema) the proxy reads at start-up (proxies/postgres/user_code.py).
ROW_FUNCTIONS_QUERY = """
SELECT DISTINCT p.proname
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_type t ON t.oid = p.proargtypes[0]
WHERE p.pronamespace = 'pg_catalog'::regnamespace
AND p.pronargs >= 1 AND p.pronargs - p.pronargdefaults <= 1 AND p.prokind IN ('f', 'a')
AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_aggregate a
                WHERE a.aggfnoid = p.oid AND a.aggkind <> 'n')
AND (t.typtype IN ('c', 'd') OR t.typname IN ('record', 'any', 'anyelement', 'anynonarray',
     'anycompatible', 'anycompatiblenonarray'))
ORDER BY 1
"""


def row_functions_from_server(dsn: str) -> dict[str, bool]:
    """The pg_catalog functions attribute notation can call on a row (ROW_FUNCTIONS_QUERY),
    {name: true}: `data.portcullis.postgres.row_functions`."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(ROW_FUNCTIONS_QUERY).fetchall()
    return dict.fromkeys(sorted(str(r[0]) for r in rows), True)


def excluded_by(name: str) -> str | None:
    """Which exclusion list holds name, or None."""
    for reason, pattern in EXCLUDED.items():
        if pattern.match(name):
            return reason
    return None


def select(rows: Iterable[tuple[str, str, str, bool, str]]) -> dict[str, bool]:
    """The allow-list from pg_proc rows (proname, provolatile, prokind, takes_internal,
    return type): {name: true}, sorted by name."""
    callable_overloads: dict[str, list[tuple[str, str]]] = {}
    present: set[str] = set()
    for name, volatility, kind, takes_internal, returns in rows:
        present.add(name)
        if takes_internal or returns in _UNCALLABLE_RETURNS:
            continue
        callable_overloads.setdefault(name, []).append((volatility, kind))
    listed = {
        name
        for name, overloads in callable_overloads.items()
        if name == name.lower()
        and excluded_by(name) is None
        and all(v in ("i", "s") and k in ("f", "a", "w") for v, k in overloads)
    }
    listed.update(name for name in HARMLESS_VOLATILE if name in present)
    return dict.fromkeys(sorted(listed), True)


def from_server(dsn: str) -> dict[str, bool]:
    """The allow-list of the server dsn names."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(CATALOG_QUERY).fetchall()
    return select(rows)


def information_schema_from_server(dsn: str) -> dict[str, bool]:
    """`data.portcullis.postgres.reader_information_schema_functions`: the
    INFORMATION_SCHEMA_HELPERS the server dsn names has as initdb made them, {name: true}."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(HELPERS_QUERY, (list(INFORMATION_SCHEMA_HELPERS),)).fetchall()
    return dict.fromkeys(sorted(str(r[0]) for r in rows), True)


def write_into(
    path: Path, functions: dict[str, bool], row_functions: dict[str, bool] | None = None
) -> None:
    """Put functions at portcullis.postgres.reader_functions of the data file path (and
    row_functions, when given, at portcullis.postgres.row_functions)."""
    data = json.loads(path.read_text())
    data["portcullis"]["postgres"]["reader_functions"] = functions
    if row_functions is not None:
        data["portcullis"]["postgres"]["row_functions"] = row_functions
    path.write_text(dump(data))


def dump(value: Any, indent: str = "") -> str:
    """JSON as rego/data.json is written: one key a line, lists of plain values on one
    line, so a regenerated list reviews as one line per function added or removed."""
    if isinstance(value, dict) and value:
        inner = indent + "  "
        items = [f"{inner}{json.dumps(k)}: {dump(v, inner)}" for k, v in value.items()]
        text = "{\n" + ",\n".join(items) + "\n" + indent + "}"
        return text + "\n" if not indent else text
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        inner = indent + "  "
        return "[\n" + ",\n".join(inner + dump(v, inner) for v in value) + "\n" + indent + "]"
    return json.dumps(value, ensure_ascii=False)
