# Guards made for agents (issue 30): row filters, egress budgets and the runaway-loop
# breaker. This module only says which apply; the PDP enforces them (pdp/domain/guards.py)
# and the decision carries them as `row_filter`, `budget` and `breaker` (DESIGN.md
# "Policy contract"). Everything tunable is in rego/data.json, and nothing here applies
# to privileged groups (dba):
#
#   row_filters  {connection: {table: {"column": c, "claim": name}}}: on that connection
#                every statement reads only the rows of `table` whose column `c` equals
#                the identity's token claim `name` (input.identity.claims). The PDP rewrites
#                the statement (every reference: joins, subqueries, CTEs, set operations,
#                LATERAL); what it cannot prove filtered is denied. A token without the
#                claim is denied outright: a missing claim never means "no filter".
#   budgets      {group: {rows_per_session, bytes_per_session, rows_per_hour,
#                bytes_per_hour, over}}: what an identity may take out of one connection
#                (0: no limit); past it the next statement needs approval (over:
#                "require_approval") or is denied (over: "deny").
#   breakers     {group: {statements_per_second, identical_per_minute,
#                denials_per_minute, pause_seconds}}: crossing one pauses the identity
#                (every statement needs approval for pause_seconds; approvers are notified
#                through the approval webhook).
#
# An identity in several groups with a budget or breaker gets the first group's, in
# sorted order, so the answer never depends on the order of the token's groups.
package portcullis

# The guards of this command, from the session's standing (standing.rego: what applies to
# the identity, worked out once per session): row filters and budgets for postgres
# commands, the breaker for every command after session.open. decision.rego joins them to
# every answer that is not a deny; a standing naming none gives none at once. One pass
# over the standing's guards for a postgres command: each it names, with its settings
# read from data by the group's name. The usual standing, a budget and a breaker and
# nothing else, is read without the pass (its comprehension and function calls cost an
# agent's query ~39,000 evaluator instructions): the same object.
command_guards := object.union(guards, {"row_filter": object.union(object.get(guards, "row_filter", {}), reader_settings_filter)}) if {
	input.command.postgres.has.pg_names # a relation name holding pg_: most statements have none
	count(reader_settings_filter) > 0
	guards := standing_command_guards
} else := standing_command_guards

# Readers read pg_settings (pgjdbc's getImportedKeys reads max_index_keys there, psql's
# \dconfig lists it) through a row filter of the settings they may read: the names in
# postgres.reader_readable_settings, what PostgreSQL shows a role without
# pg_read_all_settings (the upstream role may be a superuser, shown data_directory,
# primary_conninfo). Put on a statement naming pg_settings, in any schema and case (the
# filter applies to every schema's pg_settings: the safe mistake); a relation the database
# defines over it is denied to readers (postgres.rego), as are its columns sourcefile and
# sourceline. The filter's `in` list reads the catalog in a subselect kept apart
# (pdp/sql/rowfilter.py), so no condition of the statement meets a row it hides.
reader_settings_filter["pg_settings"] := [{"column": "name", "op": "in", "value": names}] if {
	not privileged
	some s in input.command.postgres.statements
	some t in s.tables
	parts := split(lower(t), ".")
	parts[count(parts) - 1] == "pg_settings"
	names := [name | some name, _ in data.portcullis.postgres.reader_readable_settings]
}

standing_command_guards := {"budget": budget, "breaker": breaker} if {
	startswith(input.command.kind, "postgres.")
	guards := input.standing.guards
	budget := data.portcullis.budgets[guards.budget]
	breaker := data.portcullis.breakers[guards.breaker]
	count(guards) == 2
} else := {} if {
	count(input.standing.guards) == 0 # none applies to the identity (privileged groups)
} else := {name: guard |
	some name, chosen in session_standing.guards
	guard := command_guard(name, chosen)
} if {
	startswith(input.command.kind, "postgres.")
} else := guard_breaker if {
	input.command.kind != "session.open"
} else := {}

command_guard("row_filter", filters) := filters

command_guard("budget", group) := data.portcullis.budgets[group]

command_guard("breaker", group) := data.portcullis.breakers[group]

guard_breaker := {"breaker": breaker | breaker := data.portcullis.breakers[session_standing.guards.breaker]}

# The filters are read straight from data by the connection's name (a connection without
# filters reads an undefined document, and every rule iterating it stops at once).
guard_row_filter[table] := [{"column": f.column, "op": "=", "value": input.identity.claims[f.claim]}] if {
	some table, f in data.portcullis.row_filters[input.connection.name]
	not privileged
}

session_denials contains sprintf("rows of %s are filtered by the token's %s claim, which this token lacks", [table, f.claim]) if {
	some table, f in data.portcullis.row_filters[input.connection.name]
	not guard_usable_claim(f.claim)
	not privileged
}

guard_usable_claim(name) if {
	value := input.identity.claims[name]
	value != null
	value != ""
}
