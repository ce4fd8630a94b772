"""What a result column is, as the server's catalog says: a stored table column, or derived.

Owns turning catalog rows into ColumnOrigin values keyed by (table OID, attribute number),
the key a RowDescription gives each result column (no IO here; the proxy asks the
catalog queries this module writes and feeds their rows back).

A RowDescription names a result column's table and attribute only when the column is a
plain reference (through aliases, subqueries and CTEs, which the server follows). For a
view it names the view's column, whose name may hide what it is (`phone AS contact`), so a
view column is resolved through the view's stored query: its target list records, for each
output, the table column it reads plainly (`resorigtbl`/`resorigcol`) or none when it is
computed. A computed view column is `derived`, from every column its view depends on
(pg_depend): masking too much is the safe mistake.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

from proxies.postgres.user_code import AFTER_INITDB, xid_number

# views and materialized views: their columns are resolved through their stored query
VIEW_KINDS = frozenset({"v", "m"})
MAX_VIEW_DEPTH = 8


@dataclass(frozen=True)
class ColumnOrigin:
    """Where one (table OID, attribute number) comes from.

    name: the column's name as stored; for a view's plain column, its base column's name
    (views over views followed). derived_from: for a computed view column, the names of
    every column its view reads (then `derived` is true)."""

    name: str
    derived_from: tuple[str, ...] = ()

    @property
    def derived(self) -> bool:
        return bool(self.derived_from)


# Columns of the server's own views that carry names, types, flags, owners and what DDL
# declared (an index's definition), never a table's rows, a setting's value, statistics,
# another session's text or a definition's text (view_definition, column_default,
# rolconfig, last_value are left out): an allow-list. Computed in their view, they would
# be masked whole as any computed view column is (ORM reflection, psql's describe
# commands); listed, they are read as stored columns (their names' field rules and the
# value detectors still apply). Only while the view is the one initdb made and reads
# nothing made since (SYSTEM_VIEW_SQL): a view replaced to read a table is not trusted.
SYSTEM_VIEW_COLUMNS = frozenset(
    f"{view}.{column}"
    for view, columns in {
        "information_schema.schemata": "catalog_name schema_name schema_owner",
        "information_schema.tables": "table_catalog table_schema table_name table_type "
        "is_insertable_into is_typed commit_action",
        "information_schema.columns": "table_catalog table_schema table_name column_name "
        "ordinal_position is_nullable data_type character_maximum_length "
        "character_octet_length numeric_precision numeric_precision_radix numeric_scale "
        "datetime_precision udt_catalog udt_schema udt_name dtd_identifier is_identity "
        "is_generated is_updatable collation_name",
        "information_schema.views": "table_catalog table_schema table_name check_option "
        "is_updatable is_insertable_into",
        "information_schema.table_constraints": "constraint_catalog constraint_schema "
        "constraint_name table_catalog table_schema table_name constraint_type "
        "is_deferrable initially_deferred enforced nulls_distinct",
        "information_schema.key_column_usage": "constraint_catalog constraint_schema "
        "constraint_name table_catalog table_schema table_name column_name "
        "ordinal_position position_in_unique_constraint",
        "information_schema.referential_constraints": "constraint_catalog "
        "constraint_schema constraint_name unique_constraint_catalog "
        "unique_constraint_schema unique_constraint_name match_option update_rule "
        "delete_rule",
        "information_schema.constraint_column_usage": "table_catalog table_schema "
        "table_name column_name constraint_catalog constraint_schema constraint_name",
        "pg_catalog.pg_tables": "schemaname tablename tableowner tablespace hasindexes "
        "hasrules hastriggers rowsecurity",
        "pg_catalog.pg_indexes": "schemaname tablename indexname tablespace indexdef",
        "pg_catalog.pg_views": "schemaname viewname viewowner",
        "pg_catalog.pg_matviews": "schemaname matviewname matviewowner tablespace "
        "hasindexes ispopulated",
        "pg_catalog.pg_roles": "rolname rolsuper rolinherit rolcreaterole rolcreatedb "
        "rolcanlogin rolreplication rolconnlimit rolvaliduntil rolbypassrls oid",
        "pg_catalog.pg_user": "usename usesysid usecreatedb usesuper userepl usebypassrls valuntil",
        # the server's own settings, as SHOW prints them to whoever may read them (readers:
        # the rows of postgres.reader_readable_settings, a row filter); not sourcefile and
        # sourceline, the configuration files' paths (refused to readers, postgres.rego)
        "pg_catalog.pg_settings": "name setting unit category short_desc extra_desc "
        "context vartype source min_val max_val enumvals boot_val reset_val pending_restart",
    }.items()
    for column in columns.split()
)

# FirstNormalObjectId: what initdb made has a lower OID, what was made since not
FIRST_NORMAL_OID = 16384
# ...as the questions write it: a constant of the column's type, so each comparison has a
# built-in exact match (p29: a superuser's operator for (oid, integer) in pg_catalog would
# otherwise be the one picked), and the same for every OID the questions name
_FIRST = "'16384'::pg_catalog.oid"


def _oids(*oids: int) -> str:
    """OIDs as a list of oid constants."""
    return ", ".join(f"'{int(o)}'::pg_catalog.oid" for o in oids)


_REGCLASS = "'pg_catalog.{}'::pg_catalog.regclass::pg_catalog.oid"
_SYSTEM_SCHEMAS = (
    "'pg_catalog'::pg_catalog.regnamespace::pg_catalog.oid,"
    " 'information_schema'::pg_catalog.regnamespace::pg_catalog.oid"
)

# a system view column of the list above, in a view initdb made (its OID below 16384:
# one dropped and made again has a new OID) whose query reads nothing made since (CREATE
# OR REPLACE VIEW keeps the OID, not the dependencies: a table, function, operator or
# type made since is a dependency from 16384 on)
SYSTEM_VIEW_SQL = (
    "c.relkind = 'v' AND c.oid < {first} "
    "AND n.nspname IN ('pg_catalog', 'information_schema') "
    "AND n.nspname::pg_catalog.text || '.' || c.relname::pg_catalog.text || '.'"
    " || a.attname::pg_catalog.text = ANY (ARRAY[{listed}]::pg_catalog.text[]) "
    "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_depend d "
    " ON d.classid = " + _REGCLASS.format("pg_rewrite") + " AND d.objid = r.oid "
    " WHERE r.ev_class = c.oid AND d.refobjid >= {first})"
).format(
    first=_FIRST,
    listed=",".join(f"'{name}'" for name in sorted(SYSTEM_VIEW_COLUMNS)),
)


# A column of a composite type holds a record whose fields are named by its type, not by
# the column: `info contact(nick, password)` is read as (zed,hunter2-zed), which no field
# rule names and no detector reads as a password. So does any type that holds one: an
# array of it, a domain over it, a range of it, and any of these over another (an array of
# a domain over a domain over a composite, `contact_d[]`, read in clear while only one
# step was followed). Such a column is read as derived from any column: masked whole
# outside pii-readers (the safe mistake; tables of composite columns are rare). The type
# is followed through every element, base, range subtype and multirange's range it holds;
# a chain longer than TYPE_STEPS counts as holding one.
COMPOSITE = "c!"
# how many steps of a type's chain are followed; a longer chain counts as holding one
TYPE_STEPS = 4


def _next_type(t: str) -> str:
    """The one type a type `t` holds: a domain's base, an array's element, a range's
    subtype, a multirange's range (none for a composite: it is the finding)."""
    return (
        f"CASE {t}.typtype WHEN 'c' THEN NULL "
        f"WHEN 'r' THEN (SELECT g.rngsubtype FROM pg_catalog.pg_range g "
        f"WHERE g.rngtypid = {t}.oid) "
        f"WHEN 'm' THEN (SELECT g.rngtypid FROM pg_catalog.pg_range g "
        f"WHERE g.rngmultitypid = {t}.oid) "
        f"ELSE COALESCE(NULLIF({t}.typbasetype, {_oids(0)}), NULLIF({t}.typelem, {_oids(0)})) END"
    )


def _holds_composite(column_type: str) -> str:
    """EXISTS: the type `column_type` names holds a composite within TYPE_STEPS steps
    (or has a step more to follow). Unrolled, not WITH RECURSIVE: the planner's guess for a
    recursive walk per column put the start-up query past jit_above_cost (seconds of
    compiling)."""
    joins = "".join(
        f" LEFT JOIN pg_catalog.pg_type t{i} ON t{i}.oid = {_next_type(f't{i - 1}')}"
        for i in range(1, TYPE_STEPS + 1)
    )
    kinds = ", ".join(f"t{i}.typtype" for i in range(TYPE_STEPS + 1))
    return (
        f"EXISTS (SELECT 1 FROM pg_catalog.pg_type t0{joins} WHERE t0.oid = {column_type} "
        f"AND ('c' IN ({kinds}) OR {_next_type(f't{TYPE_STEPS}')} IS NOT NULL))"
    )


# a pg_attribute row `a` whose type holds a composite
COMPOSITE_SQL = _holds_composite("a.atttypid")

# A JSON or XML document holds values under names the masks know (`profile` with a key
# `password`): the proxy masks them by name in the document it sends, but a question about
# the whole document (`profile::text LIKE '%"password": "h%'`, `ORDER BY profile`,
# `md5(profile::text) = ...`) answers about every value inside it. Such a column (json,
# jsonb, xml, hstore, an array of one, a domain over one, followed as composites are) is listed
# to the policy as a view column carrying DOCUMENT (renamed_view_columns), which it reads
# as a document wherever lineage meets the column whole rather than through a constant key.
DOCUMENT = "{}"
# A column of a string type (text, varchar, char, citext, a domain over one, an array of
# one) or of bytea or tsvector may hold free text the value detectors mask inside it (a
# note with 'SSN: 078-05-1120' in it): a question about its text (`note LIKE '%078-05%'`,
# `note > 'SSN: 07'`, `ORDER BY note`) answers about what the detectors masked in its
# answers. Listed to
# the policy as a column carrying FREE_TEXT, which judges such questions as a sensitive
# column's unless the team lists the name as holding none (postgres.plain_text_columns).
FREE_TEXT = "''"
# a string type (pg_type alias t), but `name`: an identifier's, 63 bytes (usename); and
# bytea, tsvector and tsquery (or a domain over one: a domain has its base type's output
# function, byteaout, tsvectorout, tsqueryout, compared as oids: a superuser's operators
# may make regproc's `=` ambiguous, test_pg_probe_p29), which the value detectors read as
# text (the text its bytes spell, the words: proxies/postgres/values.py), so `blob LIKE
# '%4111%'::bytea`, `1/(get_byte(blob, 5) - 52)`, `words @@ '4111'::tsquery` ask about
# the card they mask in it as a note's questions do
_STRING = (
    "(({t}.typcategory = 'S' AND {t}.oid <> '19'::pg_catalog.oid)"
    " OR {t}.typoutput::pg_catalog.oid IN ('31'::pg_catalog.oid, '3611'::pg_catalog.oid,"
    " '3613'::pg_catalog.oid))"
)
# A column of a number type that can hold 13 or more digits (bigint, numeric unconstrained
# or with precision - scale >= 13, double precision, money, a domain over one, an array or a
# range of one) may hold a card number: the value detectors read it as it is stored, but
# arithmetic over it (`num - 1`, `num % 100000000`, sum() beside a constant) gives another
# number they cannot tell from any. Listed to the policy as a column carrying NUMBER, whose
# arithmetic it masks whole unless the team lists the name as holding none
# (postgres.plain_number_columns). Not a column whose values the database makes (GENERATED
# AS IDENTITY, a nextval default: bigserial) nor one a validated foreign key fills from
# such a column, which hold no number anyone stored.
NUMBER = "0"
# int8, float8, money (numeric by its typmod); int8range, numrange and their multiranges
_WIDE_NUMBERS = _oids(20, 701, 790)
_WIDE_RANGES = _oids(3926, 3906, 4536, 4532)
# whether the type {t} (or what it is a domain over) is a wide number; numeric's typmod
# ({m}: -1 unconstrained, else (precision << 16 | scale) + 4, scale signed in 11 bits)
_NUMBER = (
    "({t}.oid IN ({wide}, {ranges}) OR {t}.typbasetype IN ({wide}, {ranges})"
    " OR ({t}.typtype IN ('r', 'm', 'd') AND ({t}.oid IN ({made_ranges})"
    " OR {t}.typbasetype IN ({made_ranges})))"
    " OR (({t}.oid = '1700'::pg_catalog.oid OR {t}.typbasetype = '1700'::pg_catalog.oid)"
    " AND ({m} < 4"
    " OR ((({m} - 4) >> 16) & 65535) - (((({m} - 4) & 2047) # 1024) - 1024) >= 13)))"
)
# a column the database fills: an identity column, or one whose default is nextval()
# (function 1574, read from the stored tree: pg_get_expr deparses it, ~10 µs a column)
_FILLED = (
    "(@.attidentity <> '' OR EXISTS (SELECT 1 FROM pg_catalog.pg_attrdef ad"
    " WHERE ad.adrelid = @.attrelid AND ad.adnum = @.attnum"
    " AND ad.adbin::text LIKE '{FUNCEXPR :funcid 1574 %'))"
)
# ... or a column whose values a validated one-column foreign key takes from such a column
# (an order's customer_id: every value is one the database made for customers.id)
_MADE_BY_DATABASE = (
    "(" + _FILLED.replace("@", "a") + " OR EXISTS (SELECT 1 FROM pg_catalog.pg_constraint fk"
    " JOIN pg_catalog.pg_attribute r ON r.attrelid = fk.confrelid AND r.attnum = fk.confkey[1]"
    " WHERE fk.contype = 'f' AND fk.convalidated AND fk.conrelid = a.attrelid"
    " AND fk.conkey = ARRAY[a.attnum]::int2[] AND " + _FILLED.replace("@", "r") + "))"
)


def _number_sql() -> str:
    """Whether the column a (types t and, for an array, its element e) is a wide number
    the database does not fill itself."""
    typmod = "(CASE WHEN {t}.typtype = 'd' THEN {t}.typtypmod ELSE a.atttypmod END)"
    # a range (or its multirange) made over a wide number (a subquery the server hashes)
    made = (
        "SELECT g.rngtypid FROM pg_catalog.pg_range g WHERE g.rngsubtype IN"
        f" ({_WIDE_NUMBERS}, {_oids(1700)}) UNION ALL SELECT g.rngmultitypid"
        f" FROM pg_catalog.pg_range g WHERE g.rngsubtype IN ({_WIDE_NUMBERS}, {_oids(1700)})"
    )
    each = [
        _NUMBER.format(
            t=t, m=typmod.format(t=t), wide=_WIDE_NUMBERS, ranges=_WIDE_RANGES, made_ranges=made
        )
        for t in ("t", "e")
    ]
    return f"(({each[0]} OR (e.oid IS NOT NULL AND {each[1]})) AND NOT {_MADE_BY_DATABASE})"


_WIDE_NUMBER = _number_sql()
# json, jsonb, xml and their arrays
DOCUMENT_TYPES = (114, 3802, 142, 199, 3807, 143)


def _holds_document(column_type: str) -> str:
    """EXISTS: the type `column_type` names is or holds (as a domain's base, an array's
    element, a range's subtype, within TYPE_STEPS steps) json, jsonb, xml or hstore."""
    joins = "".join(
        f" LEFT JOIN pg_catalog.pg_type t{i} ON t{i}.oid = {_next_type(f't{i - 1}')}"
        for i in range(1, TYPE_STEPS + 1)
    )
    oids = ", ".join(f"t{i}.oid" for i in range(TYPE_STEPS + 1))
    names = ", ".join(f"t{i}.typname" for i in range(TYPE_STEPS + 1))
    wanted = " OR ".join(f"{_oids(oid)} IN ({oids})" for oid in DOCUMENT_TYPES[:3])
    wanted += f" OR 'hstore' IN ({names})"  # (an extension's: keys and values too)
    return (
        f"EXISTS (SELECT 1 FROM pg_catalog.pg_type t0{joins} WHERE t0.oid = {column_type} "
        f"AND ({wanted}))"
    )


def attributes_sql(table_oids: set[int]) -> str:
    """Columns, kind and (for views) stored query of these relations; a column of
    SYSTEM_VIEW_COLUMNS in the view initdb made is given kind 'r': a stored column."""
    oids = _oids(*sorted(table_oids))
    return (
        "SELECT a.attrelid, a.attnum, a.attname, "
        f"CASE WHEN {SYSTEM_VIEW_SQL} THEN 'r' WHEN {COMPOSITE_SQL} THEN '{COMPOSITE}' "
        "ELSE c.relkind::pg_catalog.text END, "
        "(SELECT r.ev_action::pg_catalog.text FROM pg_catalog.pg_rewrite r "
        " WHERE r.ev_class = c.oid AND r.rulename = '_RETURN') "
        "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE a.attrelid IN ({oids}) AND a.attnum > 0 AND NOT a.attisdropped"
    )


def dependencies_sql(view_oids: set[int]) -> str:
    """The table columns each of these views reads (from pg_depend), by name."""
    oids = _oids(*sorted(view_oids))
    return (
        "SELECT r.ev_class, d.refobjid, d.refobjsubid, a.attname "
        "FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_depend d "
        " ON d.classid = " + _REGCLASS.format("pg_rewrite") + " AND d.objid = r.oid "
        "JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
        "WHERE d.refclassid = " + _REGCLASS.format("pg_class") + " AND d.refobjsubid > 0 "
        f"AND r.ev_class IN ({oids}) AND d.refobjid <> r.ev_class"
    )


_ORIGIN = re.compile(r":resno (\d+) .*?:resorigtbl (\d+) :resorigcol (\d+)", re.DOTALL)


def view_origins(ev_action: str) -> dict[int, tuple[int, int]]:
    """A view's output column number → the (table OID, attribute) it reads plainly, from
    its stored query (nodeToString text); a computed output maps to (0, 0). Only the top
    query's target list counts: the target lists of subqueries nested in its range table
    come first in the text, at a greater depth."""
    target_list = _top_target_list(ev_action)
    origins: dict[int, tuple[int, int]] = {}
    for entry in _top_nodes(target_list):
        match = _ORIGIN.search(entry)
        if match:
            resno, table, column = (int(g) for g in match.groups())
            origins[resno] = (table, column)
    return origins


def _scan(text: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """(position, character, depth after it) of every structural character of a
    nodeToString text from `start`: braces and parentheses change the depth, `:` starts a
    field name; what a backslash escapes is skipped."""
    depth = 0
    i = start
    n = len(text)
    while i < n:
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char in "{(":
            depth += 1
            yield i, char, depth
        elif char in "})":
            depth -= 1
            yield i, char, depth
        elif char == ":":
            yield i, char, depth
        i += 1


def _top_target_list(text: str) -> str:
    """The text of `:targetList (...)` of the first (top) QUERY node."""
    for i, char, depth in _scan(text):
        if char == ":" and depth == 2 and text.startswith(":targetList (", i):
            start = i + len(":targetList ")
            for j, _, inner in _scan(text, start):
                if inner == 0:
                    return text[start : j + 1]
            return ""
    return ""


def _top_nodes(group: str) -> list[str]:
    """The `{...}` nodes directly inside a parenthesised group."""
    nodes: list[str] = []
    start = -1
    for i, char, depth in _scan(group):
        if char == "{" and depth == 2:
            start = i
        elif char == "}" and depth == 1 and start >= 0:
            nodes.append(group[start : i + 1])
            start = -1
    return nodes


@dataclass
class CatalogRows:
    """What the catalog queries answered for one round of learning."""

    # (table, attnum) → (name, relkind, ev_action or None)
    attributes: dict[tuple[int, int], tuple[str, str, str | None]]
    # view → names of the columns it reads, and the tables they belong to
    dependencies: dict[int, set[str]]
    referenced: set[int]


def resolve(
    rows: CatalogRows, known: dict[tuple[int, int], ColumnOrigin]
) -> dict[tuple[int, int], ColumnOrigin]:
    """ColumnOrigins for the attributes in rows, views resolved through what is known
    (rows of the tables a view reads should be in `known` or `rows` already; a plain view
    column whose origin is not found anywhere counts as derived from everything its view
    reads)."""
    out: dict[tuple[int, int], ColumnOrigin] = {}
    views: dict[int, dict[int, tuple[int, int]]] = {}
    for (table, attnum), (name, kind, action) in rows.attributes.items():
        if kind == COMPOSITE:
            out[(table, attnum)] = ColumnOrigin(name, ("*",))
        elif kind not in VIEW_KINDS:
            out[(table, attnum)] = ColumnOrigin(name)
        elif table not in views:
            views[table] = view_origins(action or "")

    def lookup(key: tuple[int, int], depth: int) -> ColumnOrigin | None:
        found = out.get(key) or known.get(key)
        if found is not None:
            return found
        table, attnum = key
        if table in views and depth < MAX_VIEW_DEPTH:
            return view_column(table, attnum, depth + 1)
        return None

    def view_column(view: int, attnum: int, depth: int) -> ColumnOrigin:
        reads = tuple(sorted(rows.dependencies.get(view, ()))) or ("*",)
        base = views[view].get(attnum, (0, 0))
        origin = lookup(base, depth) if base[0] else None
        if origin is None:
            origin = ColumnOrigin(rows.attributes[(view, attnum)][0], reads)
        return origin

    for (table, attnum), (_, kind, _) in rows.attributes.items():
        if kind in VIEW_KINDS:  # not a column of a view read as stored (SYSTEM_VIEW_COLUMNS)
            out[(table, attnum)] = view_column(table, attnum, 0)
    return out


# The columns of SYSTEM_VIEW_COLUMNS whose view is not the one initdb made or reads
# something made since (SYSTEM_VIEW_SQL fails): replaced (CREATE OR REPLACE VIEW
# information_schema.tables AS SELECT note AS table_name ..., and a superuser may replace
# pg_catalog's views too: pg_user's usename a note cast to name), dropped and made again,
# or gone. Lineage trusts these columns (pdp/sql/lineage.py SYSTEM_VIEW_COLUMNS: what a
# query makes of them, quote_ident(table_name), is not masked), so each such column's name
# comes (in one row, as schema.view.column) as a view column carrying any column ("*":
# masked and questioned as a sensitive one wherever it is met). A view whose rule or
# column was written since initdb (xmin after user_code.AFTER_INITDB) counts too: CREATE OR
# REPLACE VIEW reading only catalogs, ALTER VIEW pg_catalog.pg_roles RENAME COLUMN
# rolconfig TO rolname.
LISTED_COLUMNS = tuple(sorted(SYSTEM_VIEW_COLUMNS))
UNTRUSTED = "untrusted"
UNTRUSTED_SQL = f"""
UNION ALL
SELECT pg_catalog.textin(pg_catalog.json_out(json_build_array(0, '',
  json_agg(json_build_array(0, l.name)), NULL, false,
  '{UNTRUSTED}')))
FROM pg_catalog.unnest(ARRAY[{",".join(f"'{c}'" for c in LISTED_COLUMNS)}]
  ::pg_catalog.text[]) AS l(name)
WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  WHERE {SYSTEM_VIEW_SQL}
  AND n.nspname::pg_catalog.text || '.' || c.relname::pg_catalog.text || '.'
    || a.attname::pg_catalog.text = l.name
  AND {xid_number("a.xmin")} OPERATOR(pg_catalog.<=) {AFTER_INITDB}
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite w WHERE w.ev_class = c.oid
    AND {xid_number("w.xmin")} OPERATOR(pg_catalog.>) {AFTER_INITDB}))
HAVING count(*) > 0"""


# Every view's columns, stored query, the table columns it reads and whether it runs code
# made after initdb (a function, or an operator's, OID from 16384: FirstNormalObjectId),
# one JSON row per view (the session's own connection reads it once, before the client is
# let in); then every table column of a composite type, as a view's column computed by
# code. Those are found through pg_depend (a column depends on its type), not by reading
# every pg_attribute row: every session start-up asks, and on a database of 4,000 tables
# the scan with a type lookup per column took 190-400 ms against 28-61 ms (loaded 2-core
# machine). The server records no dependency on a pinned type (a catalogue's own row type
# made at bootstrap, pg_class or pg_class[]): such a column is left out of this list, and
# still masked whole in results (attributes_sql reads each result column's type).
VIEW_COLUMNS_SQL = (
    """SELECT pg_catalog.textin(pg_catalog.json_out(json_build_array(c.oid,
  r.ev_action::pg_catalog.text,
  (SELECT json_agg(json_build_array(a.attnum, a.attname)) FROM pg_catalog.pg_attribute a
   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
  (SELECT json_agg(json_build_array(d.refobjid, d.refobjsubid, a.attname, t.relkind))
   FROM pg_catalog.pg_depend d
   JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
   JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
   WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass::pg_catalog.oid
     AND d.objid = r.oid
   AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid
     AND d.refobjsubid > 0
   AND d.refobjid <> c.oid),
  EXISTS (SELECT 1 FROM pg_catalog.pg_depend f
   WHERE f.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass::pg_catalog.oid
     AND f.objid = r.oid
   AND f.refclassid IN ('pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid,
     'pg_catalog.pg_operator'::pg_catalog.regclass::pg_catalog.oid)
   AND f.refobjid >= '16384'::pg_catalog.oid))))
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_rewrite r ON r.ev_class = c.oid AND r.rulename = '_RETURN'
WHERE c.relkind IN ('v', 'm')
AND c.relnamespace NOT IN ('pg_catalog'::pg_catalog.regnamespace::pg_catalog.oid,
  'information_schema'::pg_catalog.regnamespace::pg_catalog.oid)
UNION ALL
SELECT pg_catalog.textin(pg_catalog.json_out(json_build_array(c.oid, '',
  json_build_array(json_build_array(a.attnum, a.attname)),
  NULL, true)))
FROM pg_catalog.pg_depend d
JOIN pg_catalog.pg_attribute a
  ON a.attrelid = d.objid AND a.attnum = d.objsubid AND a.atttypid = d.refobjid
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
WHERE d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass::pg_catalog.oid
AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid AND d.objsubid > 0
AND c.relkind IN ('r', 'p', 'f') AND NOT a.attisdropped
AND c.relnamespace NOT IN ('pg_catalog'::pg_catalog.regnamespace::pg_catalog.oid,
  'information_schema'::pg_catalog.regnamespace::pg_catalog.oid)
AND """
    + COMPOSITE_SQL
    # the names of the columns of the database's tables and views holding a JSON or XML
    # document, in one row (a built-in type's, which pg_depend does not record: read from
    # pg_attribute, from the first relation made after initdb on, by its index; a type made
    # since, a domain or an array of one, followed to what it holds); and in another, those
    # holding free text (a string type but name: text, varchar, char, citext; bytea,
    # tsvector, tsquery; a domain over one, an array of one), and in a third those holding
    # wide numbers (NUMBER), read in the same pass
    + f"""
UNION ALL
SELECT pg_catalog.textin(pg_catalog.json_out(json_build_array(0, '', json_agg(json_build_array(0,
  d.name)), NULL, false,
  d.kind)))
FROM (SELECT DISTINCT a.attname::text AS name,
  CASE WHEN {_STRING.format(t="t")} OR {_STRING.format(t="e")} THEN 'text'
  WHEN {_WIDE_NUMBER} THEN 'number' ELSE 'document' END AS kind
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
WHERE a.attrelid >= {_FIRST} AND a.attnum > 0 AND NOT a.attisdropped
AND c.relkind IN ('r', 'p', 'f', 'v', 'm')
AND c.relnamespace NOT IN ({_SYSTEM_SCHEMAS})
AND (a.atttypid IN ({_oids(*DOCUMENT_TYPES)})
  OR {_STRING.format(t="t")} OR {_STRING.format(t="e")} OR {_WIDE_NUMBER}
  OR (a.atttypid >= {_FIRST} AND {_holds_document("a.atttypid")}))) d
GROUP BY d.kind"""
    + UNTRUSTED_SQL
)


def renamed_view_columns(rows: list[str]) -> dict[str, list[str]]:
    """View column name → the base column names it carries, for every view column whose
    name is not what it carries: a plain column under another name (`phone AS contact`:
    contact → [phone], views over views followed) or a computed one (every column its view
    reads; ["*"] when none is known, and when the view runs code the database made: what
    `pw_of(id) AS secret` returns is read by pw_of from any table, while pg_depend names
    only the id it is given). From VIEW_COLUMNS_SQL's rows; a table's column of a
    composite type comes as a view's column computed by code (["*"]: its record's fields
    are named by its type, `info::text LIKE '(zed,h%'` a question about a password).

    A column holding a JSON or XML document (its own type says so: a table's or a view's)
    carries DOCUMENT too: a question about the whole of it is one about the values its
    masked keys hold; so does a view column carrying a column of that name
    (`profile::text AS ptext`, by name: the safe mistake). Likewise NUMBER; and one carrying
    a free-text column carries FREE_TEXT followed by that column's name ("''note").

    The policy reads these names as the columns they carry wherever lineage meets them
    (a predicate, an expression), since the PDP sees only the statement's text."""
    attributes: dict[tuple[int, int], tuple[str, str, str | None]] = {}
    dependencies: dict[int, set[str]] = {}
    views: list[tuple[int, int, str]] = []
    renamed: dict[str, set[str]] = {}
    documents: set[str] = set()
    texts: set[str] = set()
    numbers: set[str] = set()
    parsed = []
    for row in rows:
        found = json.loads(row)
        if len(found) > 5 and found[5] == "document":
            documents.update(name.lower() for _, name in found[2])
        elif len(found) > 5 and found[5] == "text":
            texts.update(name.lower() for _, name in found[2])
        elif len(found) > 5 and found[5] == "number":
            numbers.update(name.lower() for _, name in found[2])
        elif len(found) > 5 and found[5] == UNTRUSTED:  # schema.view.column
            for _, listed in found[2]:
                renamed.setdefault(listed.rsplit(".", 1)[-1].lower(), set()).add("*")
        else:
            parsed.append(found)
    for name in documents:
        renamed[name] = {DOCUMENT}
    for name in texts:
        renamed.setdefault(name, set()).add(FREE_TEXT)
    for name in numbers:
        renamed.setdefault(name, set()).add(NUMBER)
    listed = {int(view) for view, *_ in parsed}
    for view, action, columns, reads, *runs_code in parsed:
        view = int(view)
        reads = [(int(t), int(n), name, kind) for t, n, name, kind in reads or ()]
        for attnum, name in columns or ():
            attributes[(view, attnum)] = (name, "v", action)
            views.append((view, attnum, name))
        # a view running the database's code: its computed columns derive from anything
        dependencies[view] = set() if any(runs_code) else {name for _, _, name, _ in reads}
        for table, attnum, name, kind in reads:
            # a view of pg_catalog's or information_schema's (not among the rows): its
            # column read plainly is that column by its name (pg_stat_activity.usename),
            # never every column the database's view reads of it
            if kind not in VIEW_KINDS or table not in listed:
                attributes.setdefault((table, attnum), (name, "r", None))
    origins = resolve(CatalogRows(attributes, dependencies, set()), {})
    for view, attnum, name in views:
        origin = origins.get((view, attnum))
        if origin is None:
            carried: tuple[str, ...] = ("*",)
        elif origin.derived:
            carried = origin.derived_from
        elif origin.name != name:
            carried = (origin.name,)
        else:
            continue
        carried_names = {c.lower() for c in carried}
        if carried_names & documents:
            carried_names.add(DOCUMENT)
        if carried_names & numbers:
            carried_names.add(NUMBER)
        # a view column computed from free text (`ascii(substr(note, 6, 1)) AS code`, an
        # int): FREE_TEXT + the name of each it carries ("''note"), so that the policy asks
        # `code > 52` as `note > ...` unless it lists note (postgres.plain_text_columns:
        # the PDP is sent the facts of a statement's own names only)
        carried_names.update(FREE_TEXT + name for name in carried_names & texts)
        renamed.setdefault(name.lower(), set()).update(carried_names)
    return {name: sorted(carried) for name, carried in sorted(renamed.items())}
