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
# `>=`, `>` for BETWEEN; `OPERATOR(schema.op)` as written) and the types it names
# (`type_names`, without those written pg_catalog.name). An unqualified type name resolves
# to pg_catalog's first (readers cannot set search_path), so only names the database
# defines outside pg_catalog count.
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
