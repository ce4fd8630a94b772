"""Whether the built-in catalogue rows the proxy's own catalogue questions stand on are
still as initdb wrote them (no IO here).

The questions (catalog_watch's marks, the facts of user_code.py, columns.py, relations.py,
upstream.py) compare, join, aggregate and print through pg_catalog's operators, aggregates,
casts and types. A superuser may write those rows in place, keeping their OIDs:
`UPDATE pg_catalog.pg_operator SET oprcode = 'int8eq' WHERE oid = '>(int8,int8)'::
regoperator` made every `xmin > boundary` of the questions false, so a built-in changed
since initdb (CREATE OR REPLACE FUNCTION pg_catalog.age(timestamp) ... LANGUAGE plpgsql)
was no longer named, and a reader's `SELECT age(...)` ran it unjudged; an aggregate's
transition or final function, a type's input or output function, a cast's function or an
index support function rewritten alike answers for the built-in.

BUILTIN_ROWS_SQL reads every row of those catalogues whole, through no operator, function
call, filter or aggregate (a scan, casts pg_cast holds binary ones of, and the record's
own output): what it returns does not depend on the rows it checks. changed_builtins
then decides here, in Python: every built-in row (an OID below 16384) of pg_operator,
pg_type, pg_cast and pg_amproc for the types the questions use (QUESTION_TYPES), of
pg_aggregate for the aggregates they call, and the pg_proc rows of the functions they call
(user_code.QUESTION_FUNCTIONS) and of every function those rows name, must have been
written no later than initdb (xmin at most the boundary: template0's row, and
no later than any database made since, as user_code.AFTER_INITDB says, here computed from
the pg_database rows read alongside). Anything else, or rows that are not there, fails
closed: catalog_watch.read_facts reads no facts (sessions refused).

A built-in function of the internal language runs by its OID whatever its pg_proc row
says (fmgr's built-in table), but the parser and planner read the row (its result type,
strictness, support function), so the rows named count too.

A built-in row for other types (a money operator family's row written again: p20) is
judged where a statement applies it (user_code's user_casts), not here.

Left: a superuser who, before this proxy first reads the server, writes these rows and
then every pg_database row again (the boundary moves past them; catalog_watch keeps the
least boundary it read of a server, so not after).
"""

from __future__ import annotations

import hashlib
import re

FIRST_NORMAL_OID = 16384
PG_CATALOG = 11

# The built-in types the questions compare, join, convert or print (their catalogues'
# columns, the constants they write, what they return), by OID (fixed since they were
# made): bool, bytea, "char", name, int8, int2, int2vector, int4, regproc, text, oid, tid,
# xid, cid, oidvector, json, pg_node_tree, float4, float8, unknown, aclitem, timestamptz,
# numeric, regclass, regtype, cstring, record, "any", anyarray, anyelement, anynonarray,
# pg_lsn, regnamespace, regrole, pg_snapshot, and the arrays of those catalogues hold.
QUESTION_TYPES = frozenset(
    {16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 114, 194, 700, 701, 705}
    | {1033, 1184, 1700, 2205, 2206, 2275, 2249, 2276, 2277, 2283, 2776, 3220, 4089, 4096}
    | {5038, 1000, 1002, 1003, 1005, 1007, 1009, 1016, 1021, 1028, 1034}
)

# kind letter → catalogue, the row's OID, the function it names, the types it is for (a
# row for other types than QUESTION_TYPES is none of the questions' business): one arm of
# the UNION ALL each
_ZERO = "'0'::pg_catalog.oid"
_ARMS = (
    ("o", "pg_operator", "o.oid", "o.oprcode::pg_catalog.oid", "o.oprleft", "o.oprright"),
    ("a", "pg_aggregate", "o.aggfnoid::pg_catalog.oid", "o.aggtransfn::pg_catalog.oid"),
    ("a", "pg_aggregate", "o.aggfnoid::pg_catalog.oid", "o.aggfinalfn::pg_catalog.oid"),
    ("a", "pg_aggregate", "o.aggfnoid::pg_catalog.oid", "o.aggcombinefn::pg_catalog.oid"),
    ("t", "pg_type", "o.oid", "o.typinput::pg_catalog.oid", "o.oid", "o.oid"),
    ("t", "pg_type", "o.oid", "o.typoutput::pg_catalog.oid", "o.oid", "o.oid"),
    ("c", "pg_cast", "o.oid", "o.castfunc", "o.castsource", "o.casttarget"),
    (
        "s",
        "pg_amproc",
        "o.oid",
        "o.amproc::pg_catalog.oid",
        "o.amproclefttype",
        "o.amprocrighttype",
    ),
)
CATALOGS = {arm[0]: arm[1] for arm in _ARMS} | {"p": "pg_proc", "d": "pg_database"}


def _record(catalog: str, *fields: str) -> str:
    """One arm: each row as the text of its record (record_out: a record takes no cast,
    CREATE CAST refuses a pseudo-type), so every answer is one column of text."""
    return (
        f"SELECT pg_catalog.textin(pg_catalog.record_out(ROW({', '.join(fields)})))"
        f" FROM pg_catalog.{catalog} o"
    )


# the pg_database rows alone (the boundary: initdb_boundary), and the code rows alone (every
# other arm): a database made or dropped anywhere on the server changes the first, so a
# session start asks the two apart and keeps what it weighed of the second by its answer's
# bytes (catalog_watch); BUILTIN_ROWS_SQL is both in one answer
DATABASE_ROWS_SQL = _record(
    "pg_database",
    "'d'::pg_catalog.text",
    "o.oid",
    "o.xmin",
    _ZERO,
    _ZERO,
    _ZERO,
    "o.datname",
)
CODE_ROWS_SQL = " UNION ALL ".join(
    [
        _record(
            "pg_proc",
            "'p'::pg_catalog.text",
            "o.oid",
            "o.xmin",
            "o.pronamespace",
            _ZERO,
            _ZERO,
            "o.proname",
        ),
    ]
    + [
        _record(
            arm[1],
            f"'{arm[0]}'::pg_catalog.text",
            arm[2],
            "o.xmin",
            arm[3],
            *(arm[4:] or (_ZERO, _ZERO)),
            "NULL::pg_catalog.name",
        )
        for arm in _ARMS
    ]
)
# (pg_proc's arm, then pg_database's, then the rest, as the rows were always asked)
BUILTIN_ROWS_SQL = CODE_ROWS_SQL.replace(
    " UNION ALL ", f" UNION ALL {DATABASE_ROWS_SQL} UNION ALL ", 1
)

# One catalogue row as BUILTIN_ROWS_SQL gives it: its catalogue's letter, OID, xmin, the
# function it names (0: none; pg_proc's: its schema), the two types it is for (0: none),
# and a name (pg_proc's, pg_database's).
Row = tuple[str, int, int, int, int, int, str]


def record_fields(text: str) -> list[str] | None:
    """The fields of a record as the server prints it (record_out): `(a,"b,c",)`, a field
    quoted when it holds a delimiter (a quote or backslash doubled inside), an empty one
    NULL (given as ""). None when the text is not one record."""
    if len(text) < 2 or text[0] != "(" or text[-1] != ")":
        return None
    fields: list[str] = []
    i, end = 1, len(text) - 1
    while True:
        current: list[str] = []
        if i < end and text[i] == '"':
            i += 1
            while True:
                if i >= end:
                    return None
                char = text[i]
                if char in '"\\' and i + 1 < end and text[i + 1] == char:
                    current.append(char)
                    i += 2
                elif char == '"':
                    i += 1
                    break
                else:
                    current.append(char)
                    i += 1
        while i < end and text[i] != ",":
            current.append(text[i])
            i += 1
        fields.append("".join(current))
        if i >= end:
            return fields
        i += 1  # the comma


# a record none of whose fields is quoted (every built-in row's): read at once
_PLAIN = re.compile(r"\(([a-z]),([0-9]+),([0-9]+),([0-9]+),([0-9]+),([0-9]+),([^\"\\,()]*)\)")


def parse_rows(texts: list[str]) -> list[Row] | None:
    rows: list[Row] = []
    plain = _PLAIN.fullmatch
    for text in texts:
        found = plain(text)
        fields = found.groups() if found is not None else record_fields(text)
        if fields is None or len(fields) != 7 or fields[0] not in CATALOGS:
            return None
        kind, oid, xmin, ref, left, right, name = fields
        if not all(n.isdigit() for n in (oid, xmin, ref, left, right)):
            return None
        rows.append((kind, int(oid), int(xmin), int(ref), int(left), int(right), name))
    return rows


def initdb_boundary(rows: list[Row]) -> int | None:
    """The last transaction initdb ran, as the pg_database rows say: template0's row, and
    no later than any database made since (None without template0)."""
    databases = [row for row in rows if row[0] == "d"]
    template0 = [row[2] for row in databases if row[6] == "template0"]
    if not template0:
        return None
    later = [row[2] - 1 for row in databases if row[1] >= FIRST_NORMAL_OID]
    return min(template0 + later)


# the answers already weighed, by a digest of the rows themselves (the same rows, the same
# answer: every session start reads them, and reading them whole takes tens of ms)
_WEIGHED: dict[bytes, list[str]] = {}
_WEIGHED_MAX = 8


def changed_builtins(texts: list[str], questions: tuple[str, ...], bound: int) -> list[str]:
    """The built-in rows the questions stand on written since initdb (or missing), by
    catalogue and OID (pg_proc rows by name); empty when all are as initdb left them.
    `bound` is the least boundary the proxy read otherwise (the columns mark's)."""
    digest = hashlib.blake2b(f"{bound}\0{questions}\0".encode(), digest_size=32)
    digest.update("\n".join(texts).encode())
    key = digest.digest()
    known = _WEIGHED.get(key)
    if known is None:
        known = _weigh(texts, questions, bound)
        if len(_WEIGHED) >= _WEIGHED_MAX:
            _WEIGHED.clear()
        _WEIGHED[key] = known
    return list(known)


def _weigh(texts: list[str], questions: tuple[str, ...], bound: int) -> list[str]:
    rows = parse_rows(texts)
    if rows is None:
        return ["the built-in rows could not be read"]
    boundary = initdb_boundary(rows)
    if boundary is None:
        return ["pg_database has no template0"]
    boundary = min(boundary, bound)
    found: list[str] = []
    procs = {row[1]: row for row in rows if row[0] == "p"}
    called = [
        (row[1], row[6])
        for row in procs.values()
        if row[1] < FIRST_NORMAL_OID and row[3] == PG_CATALOG and row[6] in questions
    ]
    needed = {oid for oid, _ in called}
    missing = set(questions) - {name for _, name in called}
    found += [f"pg_proc {name} (not there)" for name in sorted(missing)]
    kinds = {row[0] for row in rows}
    found += [f"{CATALOGS[kind]} (empty)" for kind in sorted(set(CATALOGS) - kinds)]
    types = QUESTION_TYPES | {0}
    for kind, oid, xmin, ref, left, right, _ in rows:
        if kind in "pd" or oid >= FIRST_NORMAL_OID:
            continue
        if kind == "a" and oid not in needed:
            continue  # an aggregate the questions do not call
        if kind != "a" and (left not in types or right not in types):
            continue  # for a type the questions do not use
        if xmin > boundary:
            found.append(f"{CATALOGS[kind]} {oid}")
        if ref:
            needed.add(ref)
    for oid in sorted(needed):
        proc = procs.get(oid)
        if proc is None:
            found.append(f"pg_proc {oid} (not there)")
        elif proc[2] > boundary:
            found.append(f"pg_proc {proc[6]} ({oid})")
    return sorted(set(found))
