# Operators and types are code too: a reader's statement runs only pg_catalog's.
#
# postgres.rego lets readers call only functions in pg_catalog. An operator is a function
# under another name, and the server resolves an operator as it resolves a function: by
# name and argument types over every schema on the search path, so a `public.+(int, text)`
# the database defines is picked for `1 + 'x'::text` over pg_catalog's. A cast runs code
# too: the target type's input function, a domain's CHECK expressions, a cast function.
# Neither is a function call the classifier sees, so the proxy reads at start-up which
# operator and type names the database defines outside pg_catalog:
#
#   input.command.postgres.user_operators  operator names defined outside pg_catalog
#   input.command.postgres.user_types      type names defined outside pg_catalog whose
#                                          use runs code: base types, domains, ranges,
#                                          multiranges, and arrays of them
#   input.command.postgres.view_functions  view ("schema.name") -> the functions reading
#                                          it runs ("schema.name"), its own and those of
#                                          the views it reads, operators' included, as
#                                          pg_depend records them (the server records
#                                          none on pg_catalog's own functions), and the
#                                          volatile pg_catalog functions the query of a
#                                          view the database defines calls (read from its
#                                          rule's tree): set_config, setval, ...
#
# (an installed extension's own operators, types and non-volatile functions are left out
# by the proxy: CREATE EXTENSION is a superuser's reviewed act, and citext, hstore or PostGIS
# define `=` and the other common names), and the classifier lists, per statement, the operators it applies or implies
# (`operators`: `=` for IN (subquery), simple CASE, JOIN USING and NATURAL JOIN; `<`, `<=`,
# `>=`, `>` for BETWEEN; `OPERATOR(schema.op)` as written, `OPERATOR(pg_catalog.op)` by
# its bare name) and the types it names (`type_names`, pg_catalog.name by its bare name: a
# superuser may make an operator or a domain in pg_catalog too, and the proxy's facts name
# the database's own by bare name). The database's types count named like a built-in too
# (public.text): pg_catalog is searched first only where the search_path does not name it
# later, and the database's or the role's default may (ALTER DATABASE ... SET search_path =
# public, pg_catalog), readers' SET aside.
#
# A view a reader's statement names (with or without its schema) whose functions are not
# all ones readers may call is denied too: reading it runs them.
#
# Not covered: a view's stable and immutable pg_catalog functions (what they return is
# masked as any value of unknown origin, and they change nothing); the operators a type's default operator class brings to ORDER BY, GROUP BY,
# DISTINCT and set operations on a column of an extension's type; such columns are the
# extension's own, and a reader's statement names no operator for them.

package portcullis

import rego.v1

# A cast made with a function after initdb runs that function wherever the server applies
# it: an implicit one wherever its two types meet, with nothing in the statement naming it,
# and a superuser may add one between built-in types (text to integer has no pg_cast row of
# its own, so `'5'::text::int` would run it). Which casts a statement applies is not in its
# text, so while the database defines one the security team has not reviewed (listed,
# as the proxy spells it, in postgres.reviewed_casts) every statement of a reader is denied.
#
#   input.command.postgres.user_casts  "source -> target by schema.function (context)"
pg_reader_calls contains [i, sprintf("this database defines the cast %s outside pg_catalog; a statement may run it without naming it (list it in postgres.reviewed_casts once reviewed)", [c])] if {
	input.command.postgres.has.user_code
	some c in input.command.postgres.user_casts
	not data.portcullis.postgres.reviewed_casts[c]
	some i, _ in input.command.postgres.statements
}

pg_reader_calls contains [i, sprintf("operator %s is also defined outside pg_catalog in this database, so it may run a function readers may not call", [o])] if {
	input.command.postgres.has.user_code
	defined := input.command.postgres.user_operators
	some i, s in input.command.postgres.statements
	some o in s.operators
	o in defined
}

pg_reader_calls contains [i, sprintf("operator %s is not in pg_catalog; readers may use only operators there", [o])] if {
	input.command.postgres.has.qualified_names
	some i, s in input.command.postgres.statements
	some o in s.operators
	contains(o, ".")
	not pg_catalog_function(o)
}

pg_reader_calls contains [i, sprintf("type %s is defined outside pg_catalog in this database: a cast to it runs code readers may not call", [t])] if {
	input.command.postgres.has.user_code
	defined := input.command.postgres.user_types
	some i, s in input.command.postgres.statements
	some t in s.type_names
	t in defined
}

pg_reader_calls contains [i, sprintf("type %s is not in pg_catalog; readers may cast only to types there", [t])] if {
	input.command.postgres.has.qualified_names
	some i, s in input.command.postgres.statements
	some t in s.type_names
	contains(t, ".")
}

pg_reader_calls contains [i, sprintf("view %s runs function %s, which readers may not call", [v, f])] if {
	input.command.postgres.has.user_code
	views := input.command.postgres.view_functions
	some i, s in input.command.postgres.statements
	some t in s.tables
	some v, functions in views
	view_named(v, t)
	some f in functions
	not reader_callable(f)
}

# "schema.view" as a statement names it: whole, or by its name alone (the search path
# picks the schema; every schema's view of that name counts), or with the database's name
# before it (`orders.public.v`: the server takes a catalog name that is its own database's).
view_named(v, t) if v == t

view_named(v, t) if {
	not contains(t, ".")
	endswith(v, concat("", [".", t]))
}

view_named(v, t) if {
	parts := split(t, ".")
	count(parts) == 3
	v == concat(".", [parts[1], parts[2]])
}

reader_callable(f) if {
	pg_catalog_function(f)
	data.portcullis.postgres.reader_functions[substring(f, 11, -1)]
}

# --- code under the masks (a privileged session not in pii-readers) ----------------------
#
# A masked dba may run any statement, but what a function does besides returning a value
# no mask reads: a function the database already has (made earlier by a pii-reading dba or
# the application) runs with the upstream's rights over every column, and may keep what it
# reads where the masked session reads it back unmasked. `SELECT public.leak()` whose body
# runs set_config('application_name', (SELECT string_agg(password, ',') FROM customers),
# false) gave the passwords in the server's ParameterStatus and SHOW application_name;
# `SELECT public.stash()` INSERTing them into audit_log gave them to SELECT what FROM
# audit_log. Its result is masked whole; its side effects are not, and a function's
# volatility is no boundary (a STABLE function may call set_config). So outside pii-readers
# a privileged session calls without approval only the functions known to have none: those
# readers may call (postgres.reader_functions, reviewed from pg_proc) and the few volatile
# built-ins listed in postgres.masked_admin_functions (sequences, advisory locks, ending or
# cancelling a session, statistics resets, set_config: none keeps a value given to it that
# lineage did not judge, since a value computed from any column is denied to every function
# outside reader_functions: postgres_lineage.rego's "function may keep what it is given").
# Every other call needs approval: directly, by CALL, in a DO block, qualified outside
# pg_catalog, through a type the database defines (a domain's CHECK), a view the database
# defines running one of the database's functions, and a write to a relation whose
# triggers, rules, defaults or constraints run code (input.command.postgres.write_code, read
# by the proxy at start-up: proxies/postgres/user_code.py). The database's operators and
# casts and its functions called without their schema are denied outside pii-readers
# already (postgres_lineage.rego). Readers are unchanged: they may call only
# reader_functions (postgres.rego, above).
#
# Code DDL without approval would give a relation within the session (whose facts were read
# when it started) is kept out by the rules at the end: CREATE TABLE copying a relation's
# code, an index with an operator class not written pg_catalog's (the classifier's
# value_expressions). Not covered: code another session adds while this one runs, and code
# an approved DDL statement adds (the approver saw it); a table's row-level security
# policies (the upstream credential, a superuser, bypasses them, unless SET ROLE moves the
# session to a role that does not).

# A privileged identity outside pii-readers calling a function not known to have no side
# effects needs approval: that rule is written in postgres.rego, among pg_privileged_approval's
# (for the rule index, decision.rego: here, after postgres_lineage.rego's, it came 9th).

pg_approval contains [i, sprintf("function %s is not pg_catalog's: what it keeps or sends is read past the masks, so calling it needs approval for everyone not in pii-readers", [f])] if {
	input.command.postgres.has.qualified_names
	privileged
	not pii_reader
	some i, s in input.command.postgres.statements
	some f in s.qualified_functions
	not pg_catalog_function(f)
}

pg_approval contains [i, sprintf("function %q is not pg_catalog's (whose names have no capitals): calling it needs approval for everyone not in pii-readers", [f])] if {
	input.command.postgres.has.qualified_names
	privileged
	not pii_reader
	some i, s in input.command.postgres.statements
	some f in s.cased_functions
}

pg_approval contains [i, sprintf("type %s is defined in this database: a cast to it runs its code (a domain's CHECK), so it needs approval for everyone not in pii-readers", [t])] if {
	input.command.postgres.has.user_code
	defined := input.command.postgres.user_types
	privileged
	not pii_reader
	some i, s in input.command.postgres.statements
	some t in s.type_names
	t in defined
}

pg_approval contains [i, sprintf("type %s is not pg_catalog's: a cast to it runs its code, so it needs approval for everyone not in pii-readers", [t])] if {
	input.command.postgres.has.qualified_names
	privileged
	not pii_reader
	some i, s in input.command.postgres.statements
	some t in s.type_names
	contains(t, ".")
	not pg_catalog_function(t)
}

# (a view running a built-in no reader may call is denied: postgres_lineage.rego)
pg_approval contains [i, sprintf("view %s runs %s, the database's code, which may keep what it reads past the masks: reading it needs approval for everyone not in pii-readers", [v, f])] if {
	input.command.postgres.has.user_code
	views := input.command.postgres.view_functions
	privileged
	not pii_reader
	some i, s in input.command.postgres.statements
	some t in s.tables
	some v, functions in views
	view_named(v, t)
	some f in functions
	not pg_builtin(f)
}

# A write runs what its relation's triggers, rules, defaults and constraints call. Every
# relation a writing statement names counts (its classifier entry does not say which one
# it writes: an INSERT ... SELECT's source too; more approvals, never fewer).
pg_approval contains [i, sprintf("writing to %s fires trigger %s, the database's code, which may keep what it reads past the masks: needs approval for everyone not in pii-readers", [t, trigger])] if {
	input.command.postgres.write_code
	privileged
	not pii_reader
	some i, s in input.command.postgres.statements
	pg_writes_rows(s)
	some t in s.tables
	some trigger in pg_write_code(t).triggers
}

# TRUNCATE fires the table's ON TRUNCATE triggers (once, FOR EACH STATEMENT); it runs no
# rule, default or constraint
pg_approval contains [i, sprintf("truncating %s fires trigger %s, the database's code, which may keep what it reads past the masks: needs approval for everyone not in pii-readers", [t, trigger])] if {
	input.command.postgres.write_code
	privileged
	not pii_reader
	some i, s in input.command.postgres.statements
	s.type == "truncate"
	some t in s.tables
	some trigger in pg_write_code(t).triggers
}

pg_approval contains [i, sprintf("writing to %s runs rule %s, which may store what it reads past the masks: needs approval for everyone not in pii-readers", [t, rule])] if {
	input.command.postgres.write_code
	privileged
	not pii_reader
	some i, s in input.command.postgres.statements
	pg_writes_rows(s)
	some t in s.tables
	some rule in pg_write_code(t).rules
}

pg_approval contains [i, sprintf("writing to %s runs %s (a column default, generated column, constraint or index expression), which is not known to have no side effects: needs approval for everyone not in pii-readers", [t, f])] if {
	input.command.postgres.write_code
	privileged
	not pii_reader
	some i, s in input.command.postgres.statements
	pg_writes_rows(s)
	some t in s.tables
	some f in pg_write_code(t).functions
	not pg_callable_under_masks(f)
}

pg_writes_rows(s) if s.type in {"insert", "update", "delete", "merge"}

# REFRESH MATERIALIZED VIEW runs the view's query again: the functions it calls (the proxy
# puts them in write_code, by the materialized view's name) run with the rows it reads
pg_writes_rows(s) if s.tag == "RefreshMatViewStmt"

pg_writes_rows(s) if {
	s.type == "copy"
	s.direction == "from"
}

# the proxy keys write_code by "schema.name", lower-cased, and by the name alone; a name
# with the database's before it is read as its last two parts (view_named)
pg_write_code(t) := code if {
	code := input.command.postgres.write_code[t]
} else := code if {
	parts := split(t, ".")
	count(parts) == 3
	code := input.command.postgres.write_code[concat(".", [parts[1], parts[2]])]
}

pg_callable_under_masks(f) if {
	pg_builtin(f)
	name := substring(f, 11, -1)
	pg_masked_callable_name(name)
}

pg_masked_callable_name(name) if data.portcullis.postgres.reader_functions[name]

pg_masked_callable_name(name) if data.portcullis.postgres.masked_admin_functions[name]

# VACUUM (FULL, ANALYZE), ANALYZE and REINDEX compute a table's index expressions and
# predicates (and ANALYZE its extended statistics' expressions) over every stored row, and
# an operator class's functions order them: `ANALYZE t` ran an index's public.f(id), which
# INSERTed every password into a table the masked dba read back. The proxy's write_code
# names them by the table and by the index (REINDEX INDEX i); a maintenance statement
# naming no relation (VACUUM, ANALYZE, REINDEX SCHEMA/DATABASE) runs every table's. The
# proxy lists these apart (write_code's `maintenance`): a column DEFAULT runs on no VACUUM.
pg_approval contains [i, sprintf("%s of %s runs %s (an index expression, predicate or operator class, or a statistics expression), which is not known to have no side effects: needs approval for everyone not in pii-readers", [s.tag, t, f])] if {
	input.command.postgres.write_code
	input.command.postgres.types.maintenance
	privileged
	not pii_reader
	some i, s in input.command.postgres.statements
	s.tag in {"VacuumStmt", "ReindexStmt"}
	some t in s.tables
	some f in pg_write_code(t).maintenance
	not pg_callable_under_masks(f)
}

pg_approval contains [i, sprintf("%s of every table runs %s of %s (an index expression, predicate or operator class, or a statistics expression), which is not known to have no side effects: needs approval for everyone not in pii-readers", [s.tag, f, t])] if {
	input.command.postgres.write_code
	input.command.postgres.types.maintenance
	privileged
	not pii_reader
	some i, s in input.command.postgres.statements
	s.tag in {"VacuumStmt", "ReindexStmt"}
	count(s.tables) == 0
	some t, code in input.command.postgres.write_code
	some f in code.maintenance
	not pg_callable_under_masks(f)
}

# CREATE TABLE ... (LIKE t INCLUDING ...), INHERITS (t) and PARTITION OF t give the new
# table t's defaults, CHECKs, indexes or row triggers, which the session's facts (read when
# it started) do not name for the new table: `CREATE TABLE x (LIKE t INCLUDING DEFAULTS)`
# then `INSERT INTO x` ran t's DEFAULT public.f() unapproved. Under the masks, a CREATE
# TABLE naming a relation whose writes run code needs approval itself.
pg_approval contains [i, sprintf("CREATE TABLE naming %s (LIKE, INHERITS, PARTITION OF) gives the new table its code (%s), which this session's facts do not name for it: needs approval for everyone not in pii-readers", [t, concat(", ", pg_code_run(code))])] if {
	input.command.postgres.write_code
	input.command.postgres.types.ddl
	privileged
	not pii_reader
	some i, s in input.command.postgres.statements
	s.tag == "CreateStmt"
	some t in s.tables
	code := pg_write_code(t)
	count(pg_code_run(code)) > 0
}

# CREATE TABLE ... AS and SELECT ... INTO give the new table the columns' types, domains
# among them, and with a domain its CHECKs and DEFAULT (write_code's `domains`): `CREATE
# TABLE x AS SELECT d FROM t` (d of a domain whose CHECK calls public.f) then `INSERT INTO
# x` ran f unapproved.
pg_approval contains [i, sprintf("%s naming %s gives the new table the domains of its columns, whose code (%s) this session's facts do not name for it: needs approval for everyone not in pii-readers", [s.tag, t, concat(", ", fs)])] if {
	input.command.postgres.write_code
	input.command.postgres.types.ddl
	privileged
	not pii_reader
	some i, s in input.command.postgres.statements
	s.tag in {"CreateTableAsStmt", "SelectStmt"}
	s.type == "ddl"
	some t in s.tables
	fs := {f | some f in pg_write_code(t).domains; not pg_callable_under_masks(f)}
	count(fs) > 0
}

pg_code_run(code) := {x |
	some x in object.get(code, "triggers", [])
} | {x |
	some x in object.get(code, "rules", [])
} | {f |
	some f in object.get(code, "functions", [])
	not pg_callable_under_masks(f)
}

# An event trigger runs its function on DDL (CREATE, ALTER, DROP, COMMENT, GRANT, SELECT
# INTO, REFRESH ...), whatever the statement names: the database's code, which may keep
# what it reads past the masks. The proxy reads the enabled ones at start-up
# (input.command.postgres.event_triggers: "name on event (schema.function)").
pg_approval contains [i, sprintf("this database's event trigger %s runs on DDL, the database's code, which may keep what it reads past the masks: DDL needs approval for everyone not in pii-readers", [e])] if {
	input.command.postgres.event_triggers # read by the rule index (sent only when there are some)
	some e in input.command.postgres.event_triggers
	privileged
	not pii_reader
	some i, s in input.command.postgres.statements
	pg_fires_event_triggers(s)
}

pg_fires_event_triggers(s) if s.type in {"ddl", "drop", "grant", "other", "create_extension"}

# Row-level security: the upstream credential, a superuser, bypasses a table's policies,
# but a session acting as another role (SET ROLE, SET SESSION AUTHORIZATION, set_config of
# either, in a DO block too) does not, and every read or write of the table then runs the
# functions its policies call (`USING (public.f(id))`, the database's code: p15 stashed
# every password so). A view owned by such a role applies them too: the proxy counts a
# policy's functions among the functions a view reading its table runs (view_functions)
# and a write to the table runs (write_code). Under the masks, acting as another role
# needs approval, and choosing one at start-up is refused.
pg_acting_as_another_role(name) if name in {"role", "session_authorization"}

pg_approval contains [i, sprintf("SET %s under the masks needs approval: acting as another role applies its row-level security policies, whose functions are the database's code", [upper(s.setting)])] if {
	input.command.postgres.types.set
	privileged
	not pii_reader
	some i, s in input.command.postgres.statements
	s.type == "set"
	not s.reset
	pg_acting_as_another_role(s.setting)
}

pg_approval contains [i, sprintf("set_config of %s under the masks needs approval: acting as another role applies its row-level security policies, whose functions are the database's code", [name])] if {
	input.command.postgres.has.settings
	privileged
	not pii_reader
	some i, s in input.command.postgres.statements
	some name in s.settings
	pg_acting_as_another_role(name)
}

deny contains sprintf("start-up parameter %s acts as another role, whose row-level security policies run the database's code: not chosen at start-up under the masks", [name]) if {
	input.command.kind == "session.open"
	privileged
	not pii_reader
	some name, _ in object.get(input.session, ["attributes", "settings"], {})
	pg_acting_as_another_role(lower(name))
}

# EXPLAIN runs nothing without ANALYZE, but the planner folds what it plans: the rewriter
# gives an INSERT its columns' DEFAULTs (a domain's among them) and a write its relation's
# rules, and an IMMUTABLE function of the database called there with constants runs while
# planning (`EXPLAIN INSERT INTO t (id) VALUES (1)`, t's DEFAULT public.f(5): f ran as the
# upstream's superuser for a reader, and the set_config in it gave the passwords back).
# The classifier says what an EXPLAIN plans (`explains`, the type of its statement); one
# planning anything but a read or a new table is judged by what writing its relations runs
# (input.command.postgres.write_code; triggers do not run while planning): readers may not
# explain it, and outside pii-readers a privileged session asks for approval, as for the
# write itself. The functions every reader may call, and the volatile built-ins of
# postgres.masked_admin_functions (nextval of a serial column), which no planner folds, pass.
pg_explained_write(s) if {
	s.type == "explain"
	not object.get(s, "explains", "unknown") in {"select", "declare", "ddl"}
}

pg_planned_code(code) := {x | some x in object.get(code, "rules", [])} | {f |
	some kind in ["functions", "domains"]
	some f in object.get(code, kind, [])
	not pg_callable_under_masks(f)
}

pg_reader_calls contains [i, sprintf("EXPLAIN of a write to %s plans %s, the database's code (a column default or rule the planner runs ahead): readers may not explain it", [t, x])] if {
	input.command.postgres.types.explain
	input.command.postgres.write_code
	some i, s in input.command.postgres.statements
	pg_explained_write(s)
	some t in s.tables
	some x in pg_planned_code(pg_write_code(t))
}

pg_approval contains [i, sprintf("EXPLAIN of a write to %s plans %s, the database's code (a column default or rule the planner runs ahead), which may keep what it reads past the masks: needs approval for everyone not in pii-readers", [t, x])] if {
	input.command.postgres.types.explain
	input.command.postgres.write_code
	privileged
	not pii_reader
	some i, s in input.command.postgres.statements
	pg_explained_write(s)
	some t in s.tables
	some x in pg_planned_code(pg_write_code(t))
}
