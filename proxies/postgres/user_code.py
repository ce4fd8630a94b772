"""Which operators and types the database defines outside pg_catalog: code a statement can run
without calling a function by name.

Owns USER_CODE_SQL, asked once per session on its own connection before the client is let
in, and reading its answer. An operator is a function under another name, resolved like one
by name and argument types over every schema on the search path; a cast runs the target
type's input function, a domain's CHECK expressions or a cast function. The PDP's policy
lets readers run only pg_catalog's code (rego/portcullis/postgres_user_code.rego), so it
must know which operator names the database also defines elsewhere, and which type names
(base types, domains, ranges, multiranges, arrays of them; and composite types, a table's
row type among them, with an attribute of such a type, followed through composites and
arrays: a cast to one, or jsonb_populate_record(NULL::t, ...), reads each attribute with its
type's input, a domain's CHECK included) an unqualified cast would reach outside pg_catalog,
named like a built-in type or not: pg_catalog is searched first only when the session's
search_path does not name it later, and the database's or the role's own default
(ALTER DATABASE ... SET search_path = public, pg_catalog) may, so a domain public.text made
`'x'::text` run its CHECK. And which
functions a view runs when it is read (`view_functions`: its rule's dependencies on
functions and on operators' functions, through the views it reads, as pg_depend records
them; the server records none on pg_catalog's own objects, so those are the functions
defined elsewhere). An installed extension's own operators (whose function is not volatile),
types and non-volatile functions are left out: CREATE EXTENSION is a superuser's reviewed
act, and citext, hstore or PostGIS define `=` and the other common names, which readers
would otherwise lose (a member only as CREATE or ALTER EXTENSION ... UPDATE made it, its
pg_depend row no newer than the extension's own: ALTER EXTENSION ... ADD FUNCTION public.f
writes only the former, and f stays the database's; one written in the very transaction
that made or updated the extension, a function only when the command that wrote its
membership wrote its own row too, as the script's CREATE FUNCTION does and a later ADD
does not, or when it is C or internal code, and an operator or cast only when its function
so counts); what a reader cannot install, such as
an operator or domain made by hand, or an extension's volatile function in a view
(dblink's), stays in. And the casts made after initdb that run a function (`user_casts`):
the server applies one wherever its source type meets its target, an implicit one with
nothing in the statement naming it, and a superuser may add one between built-in types (text
to integer has no pg_cast row of its own). And the functions made after initdb (extensions'
included: hstore(record)) that attribute notation can call on a whole row (`row_functions`:
`c.f` is f(c) when c has no column f; pdp/sql/reader_functions.py's ROW_FUNCTIONS_QUERY says
which for pg_catalog). And the names of every function made after initdb (`user_functions`;
an extension's non-volatile ones left out, as above): called without a schema (or as
pg_catalog's), lineage reads such a call as a built-in's, while it may return what it reads
from any table. Sent to the PDP as input.command.postgres. user_operators, user_types,
view_functions, user_casts, row_functions and user_functions, only when there are any.

And what writing to each relation runs that the statement does not name (`write_code`): its
triggers (a FOR EACH ROW trigger on t runs its function on every INSERT INTO t VALUES (1),
which may copy any table's rows anywhere), its rules (ON INSERT DO ALSO ...), and the
functions its column defaults, generated columns, CHECK constraints, index expressions and
predicates, partition key expressions, and its columns' domains' CHECKs and DEFAULTs call
(only those made after initdb or not immutable: `pg_catalog.nextval` of a serial column is
named, the policy says which built-ins pass); followed to what a write to it also writes: an
automatically updatable view's relations, a parent's inheritance children and partitions,
and the tables whose foreign keys cascade from it (ON DELETE/UPDATE CASCADE, SET NULL, SET
DEFAULT). Also what runs over its stored rows with nothing naming it: a materialized view's
query (and the views it reads) on REFRESH; index expressions and predicates, the functions
and operators of an operator class the database made, and extended statistics' expressions
on VACUUM, ANALYZE and REINDEX (an index's code is also keyed by the index's own name:
REINDEX INDEX i), and a foreign key's check of the other table, whose index scan runs that
table's operator classes. A volatile built-in in code that is given the rows' values (a
CHECK, an index, a generated column, a domain's CHECK, a materialized view's query; not a
DEFAULT, which sees none) is named "pg_catalog.f (given the rows' values)": `CHECK
(set_config('application_name', password, false) IS NOT NULL)` keeps what no mask reads,
while set_config called by a statement has its arguments judged. The policy makes a
privileged session outside pii-readers ask for approval before such a write or maintenance
(rego/portcullis/postgres_user_code.rego). Sent as input.command.postgres.write_code, only
when there is any. Kinds: triggers, rules, functions (all a write runs), maintenance (what
VACUUM, ANALYZE and REINDEX run), domains (its columns' domains' CHECKs and DEFAULTs, which a
table made from its columns by CREATE TABLE AS takes along).

And the code a column's type runs with nothing naming it (`type_code`): a range type's
subtype_diff (any language: the planner estimates `during && '[1,5)'` by it over a column
with statistics) and canonical, its subtype operator class's support functions (every
comparison of two ranges, `int4range(1, 5) && int4range(2, 6)`, runs its comparison), a base
type's input, output, send, receive, typmod and analyze functions, when they are the
database's (made after initdb or changed since): in view_functions under every relation with
a column of such a type (or of a domain, array, multirange or composite holding it); a
built-in type given such code (UPDATE pg_range of numrange) runs it in any statement, so it
is listed among `user_casts` ("numrange <-> text by public.f"), which judge every statement.
So are the members of an operator family with a default class (a type's own sorting,
grouping, hashing and comparing, which ORDER BY, DISTINCT, GROUP BY, UNION and a window's
RANGE offset apply with no operator named) made or written since initdb whose function is
the database's or volatile: a DEFAULT class for json or money, FUNCTION 3 added to
pg_catalog.text_ops ("json <-> json by public.f (btree operator family public.json_ops,
...)").

A table's row-level security policies (the functions their USING and WITH CHECK call) count
among what writing it runs and what reading a view over it runs: the superuser upstream
bypasses them, but not a view owned by another role, nor a session acting as one. And the
functions of an operator class the database made, which an index scan of a table indexed
with it runs (`WHERE x = 5`), or partition pruning of a table partitioned with it: in
view_functions under the table's name (view_functions is
what reading a relation runs), and a view's reading such a table. So are the functions
the planner runs when it reads a relation's index expressions and predicates, statistics
expressions and CHECKs: a call whose arguments are all constants, which it folds
(`CREATE INDEX ... WHERE x > public.f(1)`: every SELECT of the table runs f). And a
foreign table's wrapper handler (file_fdw_handler, postgres_fdw_handler): reading it runs
code outside the database (file_fdw's `program` is a shell command, its `filename` a
server file; postgres_fdw another server, with a user mapping's credentials), under the
table's name, a partitioned table's holding it as a partition, and a view's reading it.

And the enabled event triggers (`event_triggers`: "name on event (schema.function)"),
which run the database's code on DDL whatever the statement names (an installed
extension's own are left out, as above). No IO here.

"The database defines" means made after initdb (an OID from 16384 up, FirstNormalObjectId:
OIDs wrap around to it, never below), in any schema: a superuser may create a function,
operator or type in pg_catalog itself, and `lower(5)` would then run a `pg_catalog.lower
(int)` of theirs. Such a function in a view is named "pg_catalog.f (created after initdb)",
which no reader list holds. So is code initdb made whose catalogue row a superuser wrote
since (AFTER_INITDB: CREATE OR REPLACE FUNCTION pg_catalog.age(timestamp) keeps the OID,
as do an UPDATE of a built-in pg_proc, pg_cast, pg_operator or pg_aggregate row and CREATE
OR REPLACE VIEW pg_catalog.pg_roles): such a function is named "(changed after initdb)" in
a view and listed as `changed_functions` (catalog_watch.read_facts judges them as shadowed
built-in names); such an operator or cast counts as the database's own, such a view's
functions as a view's. A built-in of the internal language runs by its OID whatever its
row says (fmgr's built-in table), so only others count. A view also runs the CHECKs of
the domains it casts to (domain_calls, as pg_depend records the view's types): a view's
functions include theirs, and a built-in view counts as changed when a domain it casts to
gained a CHECK after initdb (information_schema.cardinal_number) or a function it calls
was changed (information_schema._pg_char_max_length). And a relation with a column of such a
domain (an array of it, a composite holding it) runs the CHECK's functions when read, in
view_functions under its name: a statement need not name the domain to make a value of it
(`array_append(array_agg(d), '5')` keeps the column's domain, and reads '5' as one: p40);
a built-in table's too (information_schema.sql_features) when its domain gained a CHECK
after initdb, the table then counted among changed_views.
"""

from __future__ import annotations

import json
from typing import Any

from proxies.postgres.relations import as_the_pdp_reads, read_as

# Every comparison and conversion in the proxy's catalogue questions resolves to a built-in
# exact match (p29): a constant is written as its column's type ('16384'::pg_catalog.oid,
# 'pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid), a regproc column is made an oid
# before it is compared, a name a text before it is joined with ||, and a value is turned
# into text or a number by the types' own I/O functions, never by a cast pg_cast has no row
# for (xid, cid, json or numeric to text, text to bigint or oid: I/O conversions). pg_catalog
# has no operator for (oid, integer), (oid, regclass), (oid, regproc) or (name, name), nor
# those casts, so the server resolved them by coercion, and a superuser's
# `CREATE OPERATOR pg_catalog.>= (LEFTARG = oid, RIGHTARG = integer, ...)` or
# `CREATE CAST (text AS bigint) WITH FUNCTION ...` was the exact match they picked, even with
# pg_catalog alone on their path: the marks read 0.0 and view_functions {}, so a view's
# plpgsql function ran for a reader unjudged. An operator or function of the same name and
# the exact types cannot be made again beside the built-in one.
FIRST_NORMAL_OID = "'16384'::pg_catalog.oid"


def xid_number(column: str) -> str:
    """A transaction id (xmin) as a bigint by xid's and int8's own I/O functions."""
    return f"pg_catalog.int8in(pg_catalog.xidout({column}))"


# The functions the proxy's catalogue questions call (catalog_watch's marks and facts). A
# built-in taking polymorphic or "any" arguments (json_agg(anyelement), json_object_agg,
# json_build_object and format's VARIADIC "any", unnest(anyarray)) loses to a function of
# the same name the database makes in pg_catalog with the exact argument types: a
# superuser's `CREATE AGGREGATE pg_catalog.json_agg(text)` answered the view_functions of
# every view as []. So while pg_catalog holds a function made after initdb under any of
# these names, the catalogue is not judged by (catalog_watch.read_facts: no facts, sessions
# refused, fail closed); test_pg_probe_p29 checks the list covers every call.
QUESTION_FUNCTIONS = (
    "cidout",
    "count",
    "format",
    "hashint8extended",
    "int8in",
    "int8out",
    "json_agg",
    "json_build_array",
    "json_build_object",
    "json_object_agg",
    "json_out",
    "max",
    "min",
    "numeric_out",
    "oidin",
    "pg_current_snapshot",
    "pg_get_function_sqlbody",
    "pg_snapshot_out",
    "record_out",
    "regexp_matches",
    "regexp_replace",
    "sum",
    "textin",
    "textout",
    "unnest",
    "xidout",
)
OVERLOADED_SQL = (
    "SELECT pg_catalog.textin(pg_catalog.nameout(p.proname)) FROM pg_catalog.pg_proc p"
    " WHERE p.pronamespace OPERATOR(pg_catalog.=)"
    " 'pg_catalog'::pg_catalog.regnamespace::pg_catalog.oid"
    f" AND p.oid OPERATOR(pg_catalog.>=) {FIRST_NORMAL_OID}"
    " AND p.proname OPERATOR(pg_catalog.=) ANY ('{"
    + ",".join(QUESTION_FUNCTIONS)
    + "}'::pg_catalog.name[])"
)


# The last transaction initdb ran (the pg_database row of template0, which it makes after
# everything else in template1, the template every database is copied from): a built-in
# catalogue row (an OID below 16384) whose xmin is newer was written since, by a superuser's
# CREATE OR REPLACE of a built-in function or view, ALTER OPERATOR, or UPDATE of pg_proc,
# pg_cast, pg_operator or pg_aggregate. Without template0 every row written after the
# bootstrap counts (more code judged as the database's, never less). A superuser may write
# template0's row again (UPDATE pg_database ... WHERE datname = 'template0'), which moved
# the boundary past a built-in changed before: so no later than the row of any database, or
# of any relation of this one, made since initdb (an OID from 16384 up, each made after it),
# which they would all have to write again; and a proxy keeps the least it read of its
# server (catalog_watch.read_facts: one read later than that is refused, fail closed).
AFTER_INITDB = (
    "(SELECT LEAST(COALESCE(pg_catalog.max(pg_catalog.int8in(pg_catalog.xidout(d.xmin)))"
    " FILTER (WHERE d.datname OPERATOR(pg_catalog.=) 'template0'), '2'),"
    " pg_catalog.min(pg_catalog.int8in(pg_catalog.xidout(d.xmin)))"
    " FILTER (WHERE d.oid OPERATOR(pg_catalog.>=) '16384'::pg_catalog.oid)"
    " OPERATOR(pg_catalog.-) 1,"
    " (SELECT pg_catalog.min(pg_catalog.int8in(pg_catalog.xidout(c.xmin)))"
    " FROM pg_catalog.pg_class c"
    " WHERE c.oid OPERATOR(pg_catalog.>=) '16384'::pg_catalog.oid) OPERATOR(pg_catalog.-) 1)"
    " FROM pg_catalog.pg_database d)"
)

USER_CODE_SQL = """WITH RECURSIVE extension_members AS (
  SELECT d.classid, d.objid, d.refobjid, pg_catalog.int8in(pg_catalog.xidout(d.xmin)) AS made,
    pg_catalog.int8in(pg_catalog.cidout(d.cmin)) AS command,
      pg_catalog.int8in(pg_catalog.xidout(e.xmin)) AS extension
  FROM pg_catalog.pg_depend d
  JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
  WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass::pg_catalog.oid
    AND d.deptype = 'e'
  AND pg_catalog.int8in(pg_catalog.xidout(d.xmin)) <= pg_catalog.int8in(pg_catalog.xidout(e.xmin))
), extension_functions AS (
  SELECT m.objid, m.refobjid FROM extension_members m
  JOIN pg_catalog.pg_proc p ON p.oid = m.objid
  WHERE m.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid
  AND (m.made < m.extension OR p.prolang IN ('12'::pg_catalog.oid, '13'::pg_catalog.oid)
       OR (pg_catalog.int8in(pg_catalog.xidout(p.xmin)) = m.made
         AND pg_catalog.int8in(pg_catalog.cidout(p.cmin)) = m.command))
), extension_code AS (
  SELECT m.classid, m.objid FROM extension_members m
  WHERE m.made < m.extension
  OR (m.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid
      AND EXISTS (SELECT 1 FROM extension_functions f WHERE f.objid = m.objid))
  OR (m.classid = 'pg_catalog.pg_operator'::pg_catalog.regclass::pg_catalog.oid
      AND EXISTS (SELECT 1 FROM pg_catalog.pg_operator o
                  JOIN extension_functions f ON f.objid = o.oprcode::pg_catalog.oid
                    AND f.refobjid = m.refobjid
                  WHERE o.oid = m.objid))
  OR (m.classid = 'pg_catalog.pg_cast'::pg_catalog.regclass::pg_catalog.oid
      AND EXISTS (SELECT 1 FROM pg_catalog.pg_cast c
                  WHERE c.oid = m.objid AND (c.castfunc = '0'::pg_catalog.oid OR EXISTS (
                    SELECT 1 FROM extension_functions f
                    WHERE f.objid = c.castfunc AND f.refobjid = m.refobjid))))
  OR m.classid NOT IN ('pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid,
    'pg_catalog.pg_operator'::pg_catalog.regclass::pg_catalog.oid,
                       'pg_catalog.pg_cast'::pg_catalog.regclass::pg_catalog.oid)
), after_initdb(xid) AS (
  SELECT %(after_initdb)s
), changed_functions(oid) AS (
  SELECT p.oid FROM pg_catalog.pg_proc p, after_initdb i
  WHERE p.oid < '16384'::pg_catalog.oid AND pg_catalog.int8in(pg_catalog.xidout(p.xmin)) > i.xid
  AND p.prolang <> (SELECT oid FROM pg_catalog.pg_language WHERE lanname = 'internal')
  UNION SELECT a.aggfnoid::pg_catalog.oid FROM pg_catalog.pg_aggregate a, after_initdb i
  WHERE a.aggfnoid::pg_catalog.oid < '16384'::pg_catalog.oid
    AND pg_catalog.int8in(pg_catalog.xidout(a.xmin)) > i.xid
), changed_views(oid) AS (
  SELECT r.ev_class FROM pg_catalog.pg_rewrite r, after_initdb i
  WHERE r.oid < '16384'::pg_catalog.oid AND pg_catalog.int8in(pg_catalog.xidout(r.xmin)) > i.xid
  UNION
  SELECT r.ev_class FROM pg_catalog.pg_rewrite r
  JOIN pg_catalog.pg_depend d ON d.classid
    = 'pg_catalog.pg_rewrite'::pg_catalog.regclass::pg_catalog.oid
  AND d.objid = r.oid
  WHERE r.ev_class < '16384'::pg_catalog.oid
  AND (EXISTS (SELECT 1 FROM changed_functions) OR EXISTS (SELECT 1 FROM domain_calls WHERE late))
  AND (
    (d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid
     AND d.refobjid IN (SELECT oid FROM changed_functions))
    OR (d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass::pg_catalog.oid
        AND d.refobjid IN (SELECT typ FROM domain_calls WHERE late)))
  UNION
  SELECT a.attrelid FROM pg_catalog.pg_attribute a
  JOIN domain_calls dc ON dc.typ = a.atttypid AND dc.late
  WHERE a.attrelid < '16384'::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped
), domain_code(dom, fn, late) AS (
  SELECT k.contypid, pg_catalog.oidin(pg_catalog.textout(m[1])),
    k.oid >= '16384'::pg_catalog.oid
      OR pg_catalog.int8in(pg_catalog.xidout(k.xmin)) > (SELECT xid FROM after_initdb)
  FROM pg_catalog.pg_constraint k,
  LATERAL pg_catalog.regexp_matches(k.conbin::text,
    ':(?:funcid|opfuncid|aggfnoid|winfnoid) ([0-9]+)', 'g') m
  WHERE k.contypid <> '0'::pg_catalog.oid AND k.conbin IS NOT NULL
), domain_holders(typ, dom) AS (
  SELECT domains.typ, domains.dom FROM domains
  WHERE domains.dom IN (SELECT c.dom FROM domain_code c
    JOIN pg_catalog.pg_proc p ON p.oid = c.fn
    WHERE p.oid >= '16384'::pg_catalog.oid OR p.provolatile = 'v'
    OR p.oid IN (SELECT oid FROM changed_functions))
  UNION
  SELECT w.typ, h.dom FROM domain_holders h
  JOIN LATERAL (
    SELECT t.oid FROM pg_catalog.pg_type t WHERE t.typelem = h.typ AND t.typcategory = 'A'
    UNION ALL
    SELECT c.reltype FROM pg_catalog.pg_attribute a
    JOIN pg_catalog.pg_class c ON c.oid = a.attrelid AND c.reltype <> '0'::pg_catalog.oid
    WHERE a.atttypid = h.typ AND a.attnum > 0 AND NOT a.attisdropped
  ) w(typ) ON true
), domain_calls(typ, fn, late) AS (
  SELECT h.typ, c.fn, c.late FROM domain_holders h JOIN domain_code c ON c.dom = h.dom
), code_types AS (
  SELECT t.typname FROM pg_catalog.pg_type t
  LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
  WHERE t.oid >= '16384'::pg_catalog.oid
  AND t.typtype IN ('b', 'd', 'r', 'm')
  AND (t.typcategory <> 'A' OR e.typtype IN ('b', 'd', 'r', 'm'))
  AND NOT EXISTS (SELECT 1 FROM extension_code x
                  WHERE x.classid = 'pg_catalog.pg_type'::pg_catalog.regclass::pg_catalog.oid
                  AND x.objid IN (t.oid, CASE WHEN t.typcategory = 'A' THEN t.typelem END))
), code_holders(oid) AS (
  SELECT t.oid FROM pg_catalog.pg_type t
  WHERE t.oid >= '16384'::pg_catalog.oid AND t.typtype IN ('b', 'd', 'r', 'm')
    AND t.typcategory <> 'A'
  AND NOT EXISTS (SELECT 1 FROM extension_code x
                  WHERE x.classid = 'pg_catalog.pg_type'::pg_catalog.regclass::pg_catalog.oid
                    AND x.objid = t.oid)
  UNION
  SELECT c.reltype FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_type at ON at.oid = a.atttypid
  CROSS JOIN LATERAL (VALUES (a.atttypid), (at.typelem)) held(oid)
  JOIN code_holders h ON h.oid = held.oid
  WHERE a.attnum > 0 AND NOT a.attisdropped AND c.reltype <> '0'::pg_catalog.oid
), code_composites AS (
  SELECT t.typname FROM pg_catalog.pg_type t
  LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
  LEFT JOIN (SELECT DISTINCT oid FROM code_holders) ht ON ht.oid = t.oid
  LEFT JOIN (SELECT DISTINCT oid FROM code_holders) he ON he.oid = e.oid
  WHERE t.oid >= '16384'::pg_catalog.oid
  AND (ht.oid IS NOT NULL OR he.oid IS NOT NULL)
  AND (t.typtype = 'c' OR e.typtype = 'c')
), code_operators AS (
  SELECT o.oprname FROM pg_catalog.pg_operator o
  JOIN pg_catalog.pg_proc f ON f.oid = o.oprcode::pg_catalog.oid
  WHERE (o.oid >= '16384'::pg_catalog.oid
    OR pg_catalog.int8in(pg_catalog.xidout(o.xmin)) > (SELECT xid FROM after_initdb))
  AND NOT (f.provolatile <> 'v' AND EXISTS (SELECT 1 FROM extension_code x
           WHERE x.classid = 'pg_catalog.pg_operator'::pg_catalog.regclass::pg_catalog.oid
             AND x.objid = o.oid))
), policy_calls(rel, fn) AS (
  SELECT p.polrelid, pg_catalog.oidin(pg_catalog.textout(m[1])) FROM pg_catalog.pg_policy p
  JOIN pg_catalog.pg_class c ON c.oid = p.polrelid AND c.relrowsecurity,
  LATERAL pg_catalog.regexp_matches(coalesce(p.polqual::pg_catalog.text, '')
    || coalesce(p.polwithcheck::pg_catalog.text, ''),
    ':(?:funcid|opfuncid|aggfnoid|winfnoid) ([0-9]+)', 'g') m
), opclasses(rel, opclass) AS (
  SELECT i.rel, oc.opclass FROM pg_catalog.pg_index x,
  LATERAL (VALUES (x.indrelid), (x.indexrelid)) i(rel),
  LATERAL pg_catalog.unnest(x.indclass::oid[]) oc(opclass)
  WHERE x.indrelid >= '16384'::pg_catalog.oid
  UNION SELECT pt.partrelid, oc.opclass FROM pg_catalog.pg_partitioned_table pt,
  LATERAL pg_catalog.unnest(pt.partclass::oid[]) oc(opclass)
  WHERE pt.partrelid >= '16384'::pg_catalog.oid
), opclass_calls(rel, fn) AS (
  SELECT x.rel, f.fn FROM opclasses x
  JOIN pg_catalog.pg_opclass c ON c.oid = x.opclass
  JOIN LATERAL (SELECT amproc::oid FROM pg_catalog.pg_amproc WHERE amprocfamily = c.opcfamily
                UNION SELECT o.oprcode::oid FROM pg_catalog.pg_amop a
                JOIN pg_catalog.pg_operator o ON o.oid = a.amopopr
                WHERE a.amopfamily = c.opcfamily) f(fn) ON true
  WHERE c.oid >= '16384'::pg_catalog.oid
  AND NOT EXISTS (SELECT 1 FROM extension_code xc
                  WHERE xc.classid
                    = 'pg_catalog.pg_opclass'::pg_catalog.regclass::pg_catalog.oid
                      AND xc.objid = c.oid)
), read_trees(rel, tree) AS (
  SELECT i.rel, coalesce(x.indexprs::pg_catalog.text, '') || ' '
    || coalesce(x.indpred::pg_catalog.text, '') FROM pg_catalog.pg_index x,
  LATERAL (VALUES (x.indrelid), (x.indexrelid)) i(rel)
  WHERE x.indrelid >= '16384'::pg_catalog.oid AND (x.indexprs IS NOT NULL OR x.indpred IS NOT NULL)
  UNION ALL SELECT stxrelid, stxexprs::text FROM pg_catalog.pg_statistic_ext
  WHERE stxrelid >= '16384'::pg_catalog.oid AND stxexprs IS NOT NULL
  UNION ALL SELECT conrelid, conbin::text FROM pg_catalog.pg_constraint
  WHERE conrelid >= '16384'::pg_catalog.oid AND contype = 'c'
  UNION ALL SELECT partrelid, partexprs::text FROM pg_catalog.pg_partitioned_table
  WHERE partrelid >= '16384'::pg_catalog.oid AND partexprs IS NOT NULL
), folding(rel, tree, round) AS (
  SELECT rel, tree, 0 FROM read_trees
  UNION ALL
  SELECT rel, pg_catalog.regexp_replace(tree, %(constant)s, '{CONST }', 'g'), round + 1
  FROM folding WHERE round < 8 AND tree ~ %(constant)s
), type_code(typ, fn) AS (
  SELECT c.typ, c.fn FROM (
    SELECT r.rngtypid, f.fn::oid FROM pg_catalog.pg_range r,
    LATERAL (VALUES (r.rngsubdiff), (r.rngcanonical)) f(fn)
    UNION ALL
    SELECT r.rngtypid, ap.amproc::oid FROM pg_catalog.pg_range r
    JOIN pg_catalog.pg_opclass oc ON oc.oid = r.rngsubopc
    JOIN pg_catalog.pg_amproc ap ON ap.amprocfamily = oc.opcfamily
    UNION ALL
    SELECT t.oid, f.fn::oid FROM pg_catalog.pg_type t,
    LATERAL (VALUES (t.typinput), (t.typoutput), (t.typreceive), (t.typsend), (t.typmodin),
      (t.typmodout), (t.typanalyze), (t.typsubscript)) f(fn)
  ) c(typ, fn)
  WHERE c.fn <> '0'::pg_catalog.oid
    AND (c.fn >= '16384'::pg_catalog.oid OR c.fn IN (SELECT oid FROM changed_functions))
  AND NOT EXISTS (SELECT 1 FROM extension_code x
                  WHERE x.classid = 'pg_catalog.pg_type'::pg_catalog.regclass::pg_catalog.oid
                    AND x.objid = c.typ)
), type_holders(typ, fn) AS (
  SELECT typ, fn FROM type_code
  UNION
  SELECT w.typ, h.fn FROM type_holders h
  JOIN LATERAL (
    SELECT t.oid FROM pg_catalog.pg_type t
    WHERE (t.typtype = 'd' AND t.typbasetype = h.typ)
    OR (t.typelem = h.typ AND t.typcategory = 'A')
    UNION ALL
    SELECT r.rngmultitypid FROM pg_catalog.pg_range r WHERE r.rngtypid = h.typ
    UNION ALL
    SELECT c.reltype FROM pg_catalog.pg_attribute a
    JOIN pg_catalog.pg_class c ON c.oid = a.attrelid AND c.reltype <> '0'::pg_catalog.oid
    WHERE a.atttypid = h.typ AND a.attnum > 0 AND NOT a.attisdropped
  ) w(typ) ON true
), type_calls(rel, fn) AS (
  SELECT a.attrelid, h.fn FROM pg_catalog.pg_attribute a
  JOIN type_holders h ON h.typ = a.atttypid
  WHERE a.attrelid >= '16384'::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped
), own_read_code(rel, fn) AS (
  SELECT f.rel, pg_catalog.oidin(pg_catalog.textout(m[1])) FROM folding f,
  LATERAL pg_catalog.regexp_matches(f.tree, %(constant_call)s, 'g') m
  UNION SELECT t.rel, p.oid FROM read_trees t,
  LATERAL pg_catalog.regexp_matches(t.tree, ':(?:funcid|opfuncid) ([0-9]+)', 'g') m
  JOIN pg_catalog.pg_proc p ON p.oid = pg_catalog.oidin(pg_catalog.textout(m[1]))
  AND p.prolang = (SELECT oid FROM pg_catalog.pg_language WHERE lanname = 'sql')
  UNION SELECT rel, fn FROM opclass_calls
  UNION SELECT rel, fn FROM type_calls
  UNION SELECT a.attrelid, dc.fn FROM pg_catalog.pg_attribute a
  JOIN domain_calls dc ON dc.typ = a.atttypid
  WHERE (a.attrelid >= '16384'::pg_catalog.oid OR dc.late)
  AND a.attnum > 0 AND NOT a.attisdropped
  UNION SELECT ft.ftrelid, w.fdwhandler FROM pg_catalog.pg_foreign_table ft
  JOIN pg_catalog.pg_foreign_server fs ON fs.oid = ft.ftserver
  JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = fs.srvfdw
  WHERE w.fdwhandler <> '0'::pg_catalog.oid
), read_reach(rel, target) AS (
  SELECT oid, oid FROM pg_catalog.pg_class
  WHERE (oid >= '16384'::pg_catalog.oid OR oid IN (SELECT oid FROM changed_views))
  AND relkind IN ('r', 'p', 'm', 'i', 'I', 'f')
  UNION
  SELECT r.rel, i.inhrelid FROM read_reach r JOIN pg_catalog.pg_inherits i ON i.inhparent = r.target
), read_code(rel, fn) AS (
  SELECT r.rel, c.fn FROM read_reach r JOIN own_read_code c ON c.rel = r.target
), session_lists(rel, fn) AS (
  SELECT v.oid, p.oid FROM pg_catalog.pg_class v, pg_catalog.pg_proc p
  WHERE v.relnamespace = 'pg_catalog'::pg_catalog.regnamespace::pg_catalog.oid
  AND p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace::pg_catalog.oid
  AND v.oid < '16384'::pg_catalog.oid AND p.oid < '16384'::pg_catalog.oid
  AND (v.relname, p.proname) IN (('pg_prepared_statements', 'pg_prepared_statement'),
    ('pg_cursors', 'pg_cursor'),
    ('pg_backend_memory_contexts', 'pg_get_backend_memory_contexts'))
), rule_deps AS (
  SELECT r.ev_class AS view, c.relkind AS kind, d.refclassid, d.refobjid
  FROM pg_catalog.pg_rewrite r
  JOIN pg_catalog.pg_class c ON c.oid = r.ev_class AND c.relkind IN ('v', 'm')
  JOIN pg_catalog.pg_depend d ON d.classid
    = 'pg_catalog.pg_rewrite'::pg_catalog.regclass::pg_catalog.oid AND d.objid = r.oid
), reach(view, src) AS (
  SELECT DISTINCT view, view FROM rule_deps
  UNION
  SELECT reach.view, d.refobjid FROM reach
  JOIN rule_deps d ON d.view = reach.src AND (d.kind = 'v' OR d.view = reach.view)
  AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid
    AND d.refobjid <> reach.src
), calls(view, fn) AS (
  SELECT reach.view, pg_catalog.oidin(pg_catalog.textout(m[1])) FROM reach
  JOIN pg_catalog.pg_rewrite r ON r.ev_class = reach.src AND r.ev_type = '1',
  LATERAL pg_catalog.regexp_matches(r.ev_action::text,
    ':(?:funcid|opfuncid|aggfnoid|winfnoid) ([0-9]+)', 'g') m
  WHERE (reach.view >= '16384'::pg_catalog.oid OR reach.view IN (SELECT oid FROM changed_views))
  AND (reach.src >= '16384'::pg_catalog.oid OR reach.src IN (SELECT oid FROM changed_views))
  UNION
  SELECT reach.view, d.refobjid FROM reach JOIN rule_deps d ON d.view = reach.src
  AND (d.kind = 'v' OR d.view = reach.view)
  AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid
  UNION
  SELECT reach.view, o.oprcode::oid FROM reach JOIN rule_deps d ON d.view = reach.src
  AND (d.kind = 'v' OR d.view = reach.view)
  AND d.refclassid = 'pg_catalog.pg_operator'::pg_catalog.regclass::pg_catalog.oid
  JOIN pg_catalog.pg_operator o ON o.oid = d.refobjid
  UNION
  SELECT reach.view, dc.fn FROM reach JOIN rule_deps d ON d.view = reach.src
  AND (d.kind = 'v' OR d.view = reach.view)
  AND d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass::pg_catalog.oid
  JOIN domain_calls dc ON dc.typ = d.refobjid
  UNION
  SELECT reach.view, f.fn FROM reach JOIN policy_calls f ON f.rel = reach.src
  UNION
  SELECT reach.view, l.fn FROM reach
  JOIN pg_catalog.pg_rewrite r ON r.ev_class = reach.src AND r.ev_type = '1',
  LATERAL pg_catalog.regexp_matches(r.ev_action::text, ':relid ([0-9]+)', 'g') m
  JOIN session_lists l ON l.rel = pg_catalog.oidin(pg_catalog.textout(m[1]))
  WHERE (reach.view >= '16384'::pg_catalog.oid OR reach.view IN (SELECT oid FROM changed_views))
  AND (reach.src >= '16384'::pg_catalog.oid OR reach.src IN (SELECT oid FROM changed_views))
  UNION
  SELECT reach.view, f.fn FROM reach JOIN read_code f ON f.rel = reach.src
), read_calls(view, fn) AS (
  SELECT calls.view, calls.fn FROM calls
  JOIN pg_catalog.pg_class v ON v.oid = calls.view AND v.relkind = 'v'
  UNION
  SELECT o.rel, o.fn FROM read_code o
  JOIN pg_catalog.pg_class t ON t.oid = o.rel AND t.relkind IN ('r', 'p', 'm', 'f')
), view_calls AS (
  SELECT vn.nspname::pg_catalog.text || '.' || v.relname::pg_catalog.text AS name,
    json_agg(DISTINCT pn.nspname::pg_catalog.text || '.' || p.proname::pg_catalog.text
      || CASE WHEN p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace::pg_catalog.oid
        AND p.oid >= '16384'::pg_catalog.oid
         THEN ' (created after initdb)'
         WHEN p.oid IN (SELECT oid FROM changed_functions)
         THEN ' (changed after initdb)' ELSE '' END) AS functions
  FROM read_calls calls
  JOIN pg_catalog.pg_class v ON v.oid = calls.view
  JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace
  JOIN pg_catalog.pg_proc p ON p.oid = calls.fn
  JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
  WHERE (v.oid >= '16384'::pg_catalog.oid OR v.oid IN (SELECT oid FROM changed_views))
  AND (p.oid >= '16384'::pg_catalog.oid OR p.provolatile = 'v'
    OR p.oid IN (SELECT oid FROM changed_functions)
    OR p.oid IN (SELECT fn FROM session_lists))
  AND NOT (p.provolatile <> 'v' AND EXISTS (SELECT 1 FROM extension_code x
           WHERE x.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid
             AND x.objid = p.oid))
  GROUP BY 1
), code_casts AS (
  SELECT format('%s -> %s by %s.%s (%s)', c.castsource::pg_catalog.regtype,
    c.casttarget::pg_catalog.regtype, pn.nspname, p.proname,
    CASE c.castcontext WHEN 'i' THEN 'implicit' WHEN 'a' THEN 'assignment'
    ELSE 'explicit' END) AS cast
  FROM pg_catalog.pg_cast c
  JOIN pg_catalog.pg_proc p ON p.oid = c.castfunc
  JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
  WHERE c.castmethod = 'f'
  AND (c.oid >= '16384'::pg_catalog.oid
    OR pg_catalog.int8in(pg_catalog.xidout(c.xmin)) > (SELECT xid FROM after_initdb))
  AND NOT (p.provolatile <> 'v' AND EXISTS (SELECT 1 FROM extension_code x
           WHERE x.classid = 'pg_catalog.pg_cast'::pg_catalog.regclass::pg_catalog.oid
             AND x.objid = c.oid))
  UNION
  SELECT format('%s <-> text by %s.%s (a built-in type''s own code: any statement)',
    tc.typ::pg_catalog.regtype, pn.nspname, p.proname)
  FROM type_code tc JOIN pg_catalog.pg_proc p ON p.oid = tc.fn
  JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
  WHERE tc.typ < '16384'::pg_catalog.oid
  UNION
  SELECT format('%s <-> %s by %s.%s (%s operator family %s.%s, which sorts, groups, hashes or'
    ' compares them unnamed: any statement)', f.lt::pg_catalog.regtype,
    f.rt::pg_catalog.regtype, pn.nspname, p.proname, am.amname, fn.nspname, fam.opfname)
  FROM (SELECT amprocfamily, amproclefttype, amprocrighttype, amproc::oid, oid, xmin
        FROM pg_catalog.pg_amproc
        UNION ALL SELECT a.amopfamily, a.amoplefttype, a.amoprighttype, o.oprcode::oid, a.oid,
        a.xmin FROM pg_catalog.pg_amop a JOIN pg_catalog.pg_operator o ON o.oid = a.amopopr
  ) f(fam, lt, rt, fn, row_oid, row_xmin)
  JOIN pg_catalog.pg_opfamily fam ON fam.oid = f.fam
  JOIN pg_catalog.pg_am am ON am.oid = fam.opfmethod
  JOIN pg_catalog.pg_namespace fn ON fn.oid = fam.opfnamespace
  JOIN pg_catalog.pg_proc p ON p.oid = f.fn
  JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
  WHERE (f.row_oid >= '16384'::pg_catalog.oid
    OR pg_catalog.int8in(pg_catalog.xidout(f.row_xmin)) > (SELECT xid FROM after_initdb))
  AND EXISTS (SELECT 1 FROM pg_catalog.pg_opclass c WHERE c.opcfamily = f.fam AND c.opcdefault)
  AND (p.oid >= '16384'::pg_catalog.oid OR p.provolatile = 'v'
    OR p.oid IN (SELECT oid FROM changed_functions))
  AND NOT (p.provolatile <> 'v' AND EXISTS (SELECT 1 FROM extension_code x
           WHERE x.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid
             AND x.objid = p.oid))
), own_functions AS (
  SELECT DISTINCT p.proname FROM pg_catalog.pg_proc p
  WHERE (p.oid >= '16384'::pg_catalog.oid OR p.oid IN (SELECT oid FROM changed_functions))
  AND NOT (p.provolatile <> 'v' AND EXISTS (SELECT 1 FROM extension_code x
           WHERE x.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid
             AND x.objid = p.oid))
), write_edges(rel, target) AS (
  SELECT r.ev_class, d.refobjid FROM pg_catalog.pg_rewrite r
  JOIN pg_catalog.pg_class c ON c.oid = r.ev_class AND c.relkind = 'v'
  JOIN pg_catalog.pg_depend d ON d.classid
    = 'pg_catalog.pg_rewrite'::pg_catalog.regclass::pg_catalog.oid AND d.objid = r.oid
  AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid
    AND d.refobjid <> r.ev_class
  UNION SELECT inhparent, inhrelid FROM pg_catalog.pg_inherits
  UNION SELECT confrelid, conrelid FROM pg_catalog.pg_constraint
  WHERE contype = 'f' AND (confdeltype IN ('c', 'n', 'd') OR confupdtype IN ('c', 'n', 'd'))
), write_reach(rel, target) AS (
  SELECT oid, oid FROM pg_catalog.pg_class
  WHERE oid >= '16384'::pg_catalog.oid AND relkind IN ('r', 'p', 'v', 'f', 'm', 'i', 'I')
  UNION
  SELECT w.rel, e.target FROM write_reach w JOIN write_edges e ON e.rel = w.target
), domains(typ, dom) AS (
  SELECT oid, oid FROM pg_catalog.pg_type WHERE typtype = 'd'
  UNION
  SELECT domains.typ, t.typbasetype FROM domains
  JOIN pg_catalog.pg_type t ON t.oid = domains.dom AND t.typtype = 'd'
), write_trees(rel, tree, sees_rows, maintains) AS (
  SELECT d.adrelid, d.adbin::text, a.attgenerated <> '', false FROM pg_catalog.pg_attrdef d
  JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
  WHERE d.adrelid >= '16384'::pg_catalog.oid
  UNION ALL SELECT conrelid, conbin::text, true, false FROM pg_catalog.pg_constraint
  WHERE conrelid >= '16384'::pg_catalog.oid AND conbin IS NOT NULL
  UNION ALL SELECT i.rel, coalesce(indexprs::pg_catalog.text, '')
    || coalesce(indpred::pg_catalog.text, ''), true, true
  FROM pg_catalog.pg_index,
  LATERAL (VALUES (indrelid), (indexrelid)) i(rel)
  WHERE indrelid >= '16384'::pg_catalog.oid AND (indexprs IS NOT NULL OR indpred IS NOT NULL)
  UNION ALL SELECT stxrelid, stxexprs::text, true, true FROM pg_catalog.pg_statistic_ext
  WHERE stxrelid >= '16384'::pg_catalog.oid AND stxexprs IS NOT NULL
  UNION ALL SELECT partrelid, partexprs::text, true, false FROM pg_catalog.pg_partitioned_table
  WHERE partrelid >= '16384'::pg_catalog.oid AND partexprs IS NOT NULL
  UNION ALL SELECT a.attrelid, k.conbin::text, true, NULL FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_type at ON at.oid = a.atttypid
  JOIN domains ON domains.typ IN (a.atttypid, at.typelem)
  JOIN pg_catalog.pg_constraint k ON k.contypid = domains.dom AND k.conbin IS NOT NULL
  WHERE a.attrelid >= '16384'::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL SELECT a.attrelid, dt.typdefaultbin::text, false, NULL
  FROM pg_catalog.pg_attribute a
  JOIN domains ON domains.typ = a.atttypid
  JOIN pg_catalog.pg_type dt ON dt.oid = domains.dom AND dt.typdefaultbin IS NOT NULL
  WHERE a.attrelid >= '16384'::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped
), write_calls(rel, fn, sees_rows, maintains) AS (
  SELECT e.rel, pg_catalog.oidin(pg_catalog.textout(m[1])), e.sees_rows,
    e.maintains FROM write_trees e,
  LATERAL pg_catalog.regexp_matches(e.tree,
    ':(?:funcid|opfuncid|aggfnoid|winfnoid) ([0-9]+)', 'g') m
  UNION ALL SELECT calls.view, calls.fn, true, false FROM calls
  JOIN pg_catalog.pg_class c ON c.oid = calls.view AND c.relkind = 'm'
  UNION ALL SELECT rel, fn, true, false FROM policy_calls
  UNION ALL SELECT rel, fn, true, true FROM opclass_calls
  UNION ALL SELECT k.rel, o.fn, true, false FROM (
    SELECT conrelid, confrelid FROM pg_catalog.pg_constraint WHERE contype = 'f'
    UNION SELECT confrelid, conrelid FROM pg_catalog.pg_constraint WHERE contype = 'f'
  ) k(rel, other) JOIN opclass_calls o ON o.rel = k.other
), write_items(rel, kind, item) AS (
  SELECT w.rel, 'triggers', format('%s on %s (%s.%s)', t.tgname, t.tgrelid::pg_catalog.regclass,
    pn.nspname, p.proname)
  FROM write_reach w JOIN pg_catalog.pg_trigger t ON t.tgrelid = w.target AND NOT t.tgisinternal
  JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
  JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
  UNION
  SELECT w.rel, 'rules', format('%s on %s', r.rulename, r.ev_class::pg_catalog.regclass)
  FROM write_reach w JOIN pg_catalog.pg_rewrite r ON r.ev_class = w.target
  AND r.rulename <> '_RETURN'
  UNION
  SELECT w.rel, k.kind, pn.nspname::pg_catalog.text || '.' || p.proname::pg_catalog.text
    || CASE WHEN p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace::pg_catalog.oid
      AND p.oid >= '16384'::pg_catalog.oid
       THEN ' (created after initdb)'
       WHEN p.oid IN (SELECT oid FROM changed_functions)
       THEN ' (changed after initdb)'
       WHEN e.sees_rows AND p.provolatile = 'v' AND p.oid < '16384'::pg_catalog.oid
       THEN ' (given the rows'' values)'
       ELSE '' END
  FROM write_reach w JOIN write_calls e ON e.rel = w.target
  JOIN (VALUES ('functions', 'f'), ('maintenance', 'm'), ('domains', 'd')) k(kind, part)
  ON k.part = 'f' OR (k.part = 'm' AND e.maintains) OR (k.part = 'd' AND e.maintains IS NULL)
  JOIN pg_catalog.pg_proc p ON p.oid = e.fn
  JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
  WHERE p.oid >= '16384'::pg_catalog.oid OR p.provolatile <> 'i'
    OR p.oid IN (SELECT oid FROM changed_functions)
), write_code AS (
  SELECT rn.nspname::pg_catalog.text || '.'
    || c.relname::pg_catalog.text AS name, json_object_agg(kind, items) AS code
  FROM (SELECT rel, kind, json_agg(DISTINCT item) AS items FROM write_items
        GROUP BY rel, kind) k
  JOIN pg_catalog.pg_class c ON c.oid = k.rel
  JOIN pg_catalog.pg_namespace rn ON rn.oid = c.relnamespace
  GROUP BY 1
), function_code AS (
  SELECT json_build_array(pn.nspname::pg_catalog.text, p.proname::pg_catalog.text,
    l.lanname::pg_catalog.text,
    CASE WHEN p.prokind = 'p' THEN 'procedure' WHEN p.prokind = 'a' THEN 'aggregate'
      WHEN p.proretset THEN 'setof'
      WHEN p.prorettype = '2279'::pg_catalog.oid THEN 'trigger'
      WHEN p.prorettype = '3838'::pg_catalog.oid THEN 'event_trigger'
      WHEN p.prorettype = '2278'::pg_catalog.oid
        OR p.proargmodes && '{o,b,t}'::pg_catalog."char"[] THEN 'void'
      ELSE 'value' END,
    CASE WHEN p.prosqlbody IS NULL THEN p.prosrc
      ELSE pg_catalog.pg_get_function_sqlbody(p.oid) END,
    (SELECT coalesce(json_agg(DISTINCT called.name), '[]') FROM (
       SELECT cp.proname::pg_catalog.text AS name
       FROM pg_catalog.regexp_matches(coalesce(p.prosqlbody::pg_catalog.text, ''),
         ':(?:funcid|opfuncid|aggfnoid|winfnoid) ([0-9]+)', 'g') m
       JOIN pg_catalog.pg_proc cp ON cp.oid = pg_catalog.oidin(pg_catalog.textout(m[1]))
       UNION
       SELECT sp.proname::pg_catalog.text FROM pg_catalog.pg_aggregate a,
       LATERAL (VALUES (a.aggtransfn), (a.aggfinalfn), (a.aggcombinefn), (a.aggserialfn),
         (a.aggdeserialfn), (a.aggmtransfn), (a.aggminvtransfn), (a.aggmfinalfn)) f(fn)
       JOIN pg_catalog.pg_proc sp ON sp.oid = f.fn::pg_catalog.oid
       WHERE a.aggfnoid = p.oid
       UNION
       SELECT bp.proname::pg_catalog.text FROM pg_catalog.pg_proc bp
       WHERE l.lanname = 'internal' AND p.prokind <> 'a' AND bp.prosrc = p.prosrc
       AND bp.oid < '16384'::pg_catalog.oid AND bp.prolang = p.prolang
       UNION
       SELECT 'operator ' || o.oprname::pg_catalog.text FROM pg_catalog.pg_aggregate a
       JOIN pg_catalog.pg_operator o ON o.oid = a.aggsortop
       WHERE a.aggfnoid = p.oid) called),
    EXISTS (SELECT 1 FROM extension_code x
            WHERE x.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid
              AND x.objid = p.oid))
    AS item
  FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
  JOIN pg_catalog.pg_language l ON l.oid = p.prolang
  WHERE (p.oid >= '16384'::pg_catalog.oid OR p.oid IN (SELECT oid FROM changed_functions))
  AND NOT (p.provolatile <> 'v' AND EXISTS (SELECT 1 FROM extension_code x
           WHERE x.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid
             AND x.objid = p.oid))
), operator_code AS (
  SELECT DISTINCT o.oprname::pg_catalog.text AS op,
    fn.nspname::pg_catalog.text || '.' || f.proname::pg_catalog.text AS fn
  FROM pg_catalog.pg_operator o
  JOIN pg_catalog.pg_proc f ON f.oid = o.oprcode::pg_catalog.oid
  JOIN pg_catalog.pg_namespace fn ON fn.oid = f.pronamespace
  WHERE o.oprname IN (SELECT oprname FROM code_operators)
), type_function_code AS (
  SELECT DISTINCT t.typname::pg_catalog.text AS typ,
    pn.nspname::pg_catalog.text || '.' || p.proname::pg_catalog.text AS fn
  FROM domain_calls d
  JOIN pg_catalog.pg_type t ON t.oid = d.typ
  JOIN pg_catalog.pg_proc p ON p.oid = d.fn
  JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
), rule_code AS (
  SELECT DISTINCT format('%s on %s', r.rulename, r.ev_class::pg_catalog.regclass) AS rule,
    pn.nspname::pg_catalog.text || '.' || p.proname::pg_catalog.text AS fn
  FROM pg_catalog.pg_rewrite r,
  LATERAL pg_catalog.regexp_matches(r.ev_action::pg_catalog.text || ' '
    || coalesce(r.ev_qual::pg_catalog.text, ''),
    ':(?:funcid|opfuncid|aggfnoid|winfnoid) ([0-9]+)', 'g') m
  JOIN pg_catalog.pg_proc p ON p.oid = pg_catalog.oidin(pg_catalog.textout(m[1]))
  JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
  WHERE r.rulename <> '_RETURN' AND r.ev_class >= '16384'::pg_catalog.oid
), row_calls AS (
  SELECT DISTINCT p.proname FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_type t ON t.oid = p.proargtypes[0]
  WHERE p.oid >= '16384'::pg_catalog.oid
  AND p.pronargs >= 1 AND p.pronargs - p.pronargdefaults <= 1 AND p.prokind IN ('f', 'a')
  AND (t.typtype IN ('c', 'd') OR t.typname IN ('record', 'any', 'anyelement',
       'anynonarray', 'anycompatible', 'anycompatiblenonarray'))
)
SELECT pg_catalog.textin(pg_catalog.json_out(json_build_object(
  'user_operators', (SELECT coalesce(json_agg(DISTINCT oprname::text), '[]')
                     FROM code_operators),
  'user_types', (SELECT coalesce(json_agg(DISTINCT typname::text), '[]')
                 FROM (SELECT typname FROM code_types
                       UNION SELECT typname FROM code_composites) types),
  'view_functions', (SELECT coalesce(json_object_agg(name, functions), '{}') FROM view_calls),
  'user_casts', (SELECT coalesce(json_agg(DISTINCT "cast"), '[]') FROM code_casts),
  'row_functions', (SELECT coalesce(json_agg(proname::text), '[]') FROM row_calls),
  'user_functions', (SELECT coalesce(json_agg(proname::text), '[]') FROM own_functions),
  'changed_functions', (SELECT coalesce(json_agg(DISTINCT p.proname::text), '[]')
                        FROM changed_functions c JOIN pg_catalog.pg_proc p ON p.oid = c.oid),
  'write_code', (SELECT coalesce(json_object_agg(name, code), '{}') FROM write_code),
  'function_code', (SELECT coalesce(json_agg(item), '[]') FROM function_code),
  'operator_code', (SELECT coalesce(json_agg(json_build_array(op, fn)), '[]')
                    FROM operator_code),
  'rule_code', (SELECT coalesce(json_agg(json_build_array(rule, fn)), '[]') FROM rule_code),
  'type_code', (SELECT coalesce(json_agg(json_build_array(typ, fn)), '[]')
                FROM type_function_code),
  'event_triggers', (SELECT coalesce(json_agg(format('%s on %s (%s.%s)', e.evtname, e.evtevent,
                       pn.nspname, p.proname) ORDER BY e.evtname), '[]')
                     FROM pg_catalog.pg_event_trigger e
                     JOIN pg_catalog.pg_proc p ON p.oid = e.evtfoid
                     JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
                     WHERE e.evtenabled <> 'D'
                     AND NOT EXISTS (SELECT 1 FROM extension_code x WHERE
                       (x.classid
                         = 'pg_catalog.pg_event_trigger'::pg_catalog.regclass::pg_catalog.oid
                           AND x.objid = e.oid)
                       OR (x.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid
                         AND x.objid = e.evtfoid)))
)))"""


# A call (function or operator) whose arguments are all constants, in a node tree's text
# (nodeToString): the planner folds it (eval_const_expressions), running an IMMUTABLE
# function, whenever it reads the relation's index expressions and predicates, statistics
# expressions, or (constraint exclusion) CHECKs, so a plain SELECT of the table runs it;
# folding's rounds replace each such call (and a relabelling of a constant) with a constant,
# so a call over calls of constants is found in a later round. A call over a column is not.
_CONSTANT_NODE = (
    r"'\{(?:FUNCEXPR|OPEXPR|DISTINCTEXPR|NULLIFEXPR|SCALARARRAYOPEXPR) [^{}]*:args "
    r"(?:<>|\((?:\s*\{CONST[^{}]*\})*\s*\))[^{}]*\}"
    r"|\{(?:RELABELTYPE|COERCEVIAIO) :arg \{CONST[^{}]*\}[^{}]*\}'"
)
_CONSTANT_CALL = (
    r"'\{(?:FUNCEXPR :funcid|(?:OPEXPR|DISTINCTEXPR|NULLIFEXPR|SCALARARRAYOPEXPR) :opno "
    r"[0-9]+ :opfuncid) ([0-9]+)[^{}]*:args (?:<>|\((?:\s*\{CONST[^{}]*\})*\s*\))[^{}]*\}'"
)
USER_CODE_SQL = (
    USER_CODE_SQL.replace("%(constant)s", _CONSTANT_NODE)
    .replace("%(constant_call)s", _CONSTANT_CALL)
    .replace("%(after_initdb)s", AFTER_INITDB)
)


def user_code(rows: list[str]) -> dict[str, Any]:
    """USER_CODE_SQL's one row → {"user_operators": [...], "user_types": [...],
    "row_functions": [...], "user_functions": [...],
    "event_triggers": [...], "view_functions": {"schema.view": ["schema.function", ...]},
    "user_casts": ["text ->
    integer by public.f (explicit)", ...], "write_code": {"schema.table": {"triggers": [...],
    "rules": [...], "functions": [...]}} (write_code's keys as write_code() makes them),
    each sorted and present
    only when not empty (names as the catalog spells them: the parser folds unquoted names
    the same way; a view also under the name the PDP reads in a statement's tables, folded
    to lower case: as_the_pdp_reads)."""
    if not rows:
        return {}
    found = json.loads(rows[0] or "{}")
    if not isinstance(found, dict):
        raise ValueError("user operators and types are not an object")
    code: dict[str, Any] = {}
    for key in (
        "user_operators",
        "user_types",
        "user_casts",
        "row_functions",
        "user_functions",
        "event_triggers",
        "changed_functions",
    ):
        names = found.get(key) or []
        if not isinstance(names, list):
            raise ValueError(f"{key} is not a list")
        if names:
            code[key] = sorted(str(n) for n in names)
    views = found.get("view_functions") or {}
    if not isinstance(views, dict) or not all(isinstance(f, list) for f in views.values()):
        raise ValueError("view_functions is not an object of lists")
    if views:
        code["view_functions"] = as_the_pdp_reads(
            {str(v): sorted(str(f) for f in fs) for v, fs in views.items()}
        )
    writes = found.get("write_code") or {}
    if not isinstance(writes, dict) or not all(isinstance(c, dict) for c in writes.values()):
        raise ValueError("write_code is not an object of objects")
    if writes:
        code["write_code"] = write_code(writes)
    return code


WRITE_CODE_KINDS = ("triggers", "rules", "functions", "maintenance", "domains")


def write_code(by_relation: dict[str, dict[str, Any]]) -> dict[str, dict[str, list[str]]]:
    """USER_CODE_SQL's write_code ("schema.relation" -> {"triggers": [...], "rules": [...],
    "functions": [...]}, each kind only when any) keyed as the PDP reads a statement's
    relation: as the catalog spells it, folded to lower case, and by the relation's name
    alone (a statement naming it without its schema may write any schema's relation of that
    name: the kinds of every one are joined, more to judge, never less)."""
    joined: dict[str, dict[str, set[str]]] = {}
    for name, kinds in by_relation.items():
        name = str(name)
        bare = name.rpartition(".")[2]
        for key in {*read_as(name), bare, bare.lower()}:
            into = joined.setdefault(key, {})
            for kind in WRITE_CODE_KINDS:
                items = kinds.get(kind) or []
                if not isinstance(items, list):
                    raise ValueError(f"write_code {kind} is not a list")
                if items:
                    into.setdefault(kind, set()).update(str(i) for i in items)
    return {
        key: {kind: sorted(items) for kind, items in kinds.items()}
        for key, kinds in joined.items()
        if kinds
    }
