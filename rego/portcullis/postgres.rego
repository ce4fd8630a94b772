# postgres.query: one judgement per classified statement (pdp/statements.py), nested
# ones included, so a write inside a CTE, EXPLAIN ANALYZE, PREPARE or DO block is judged
# as the write it is. A query is allowed only when every statement is allowed; one
# statement needing approval makes the whole query need it; one denied denies it all.
#
# Every rule here reads statement types, tags, tables, functions and setting names only,
# never literal values: decision.rego relies on that to offer cache_key "shape". The
# statements classified from a DO block's code (a literal) are the exception, and
# decision.rego offers no cache for a query holding one.
#
# Bodies test input fields before they test other rules: each rule reference costs the
# evaluator more than an input lookup, and this module runs on every SQL statement. Deny
# rules iterate the statements without checking the command kind: only postgres commands
# carry statements, and a stray one could only add a denial.
package portcullis


# A fast-path FunctionCall message arrives as postgres.function_call with one "select"
# statement naming the function, and is judged like the query it stands for: rules guard
# on {"postgres.query", "postgres.function_call"}. Constant sets are written inline where
# they are used: a literal costs the evaluator nothing, a rule reference a lookup.

# --- denied for everyone ---------------------------------------------------

deny contains "the statements of this query were not classified" if {
	input.command.kind in {"postgres.query", "postgres.function_call"}
	not input.command.postgres.statements
}

deny contains sprintf("SQL that cannot be parsed is denied: %s", [s.error]) if {
	some s in input.command.postgres.statements
	s.type == "unparseable"
}

deny contains sprintf("function %s reaches outside the database", [f]) if {
	some s in input.command.postgres.statements
	some f in s.functions
	f in data.portcullis.dangerous_functions
}

deny contains sprintf("function %s reaches outside the database", [f]) if {
	some s in input.command.postgres.statements
	some f in s.functions
	some prefix in data.portcullis.dangerous_function_prefixes
	startswith(f, prefix)
}

deny contains "COPY ... PROGRAM runs a program on the database server" if {
	some s in input.command.postgres.statements
	s.type == "copy"
	s.program
}

deny contains "COPY to or from a server file reaches outside the database" if {
	some s in input.command.postgres.statements
	s.type == "copy"
	s.program == false
	s.stdio == false
}

# Any statement no rule permits denies the whole query (e.g. `select 1; drop table x`).
deny contains sprintf("no rule allows %v statement (%v) for %s", [type, tag, subject]) if {
	some i, s in input.command.postgres.statements
	not i in pg_allowed
	not i in pg_approvable
	type := object.get(s, "type", "unknown")
	tag := object.get(s, "tag", "unknown")
}

# --- privileged groups (dba) -----------------------------------------------

pg_allowed contains i if {
	input.command.kind in {"postgres.query", "postgres.function_call"}
	privileged
	some i, s in input.command.postgres.statements
	s.type != "unparseable"
}

pg_approval contains [i, sprintf("DROP %s needs approval", [upper(s.object)])] if {
	some i, s in input.command.postgres.statements
	s.type == "drop"
	s.object in {"database", "schema"}
	privileged
}

pg_approval contains [i, "TRUNCATE needs approval"] if {
	some i, s in input.command.postgres.statements
	s.type == "truncate"
	privileged
}

pg_approval contains [i, sprintf("%s without WHERE needs approval", [upper(s.type)])] if {
	some i, s in input.command.postgres.statements
	s.type in {"update", "delete"}
	s.has_where == false
	privileged
}

# A DO block whose SQL cannot all be seen (dynamic EXECUTE, another language) could run
# any of the statements above, so it is not taken on trust.
pg_approval contains [i, "DO block with dynamic or non-SQL code needs approval"] if {
	some i, s in input.command.postgres.statements
	s.type == "do"
	s.opaque
	privileged
}

# --- everyone else ---------------------------------------------------------

# Statement types anyone on the connection may run without approval.
pg_allowed contains i if {
	some i, s in input.command.postgres.statements
	s.type in {
		"select", "show", "transaction", "prepare", "execute", "deallocate",
		"declare", "fetch", "close", "discard",
	}
	not pg_calls_protected(s)
	not privileged
}

pg_allowed contains i if {
	some i, s in input.command.postgres.statements
	s.type == "explain"
	s.analyze == false
	not pg_calls_protected(s)
	not privileged
}

pg_allowed contains i if {
	some i, s in input.command.postgres.statements
	s.type == "set"
	not s.setting in data.portcullis.postgres.protected_settings
	not privileged
}

pg_allowed contains i if {
	some i, s in input.command.postgres.statements
	s.type == "copy"
	s.direction == "to"
	s.program == false
	not pg_calls_protected(s)
	not privileged
}

# Statement types that change data: approval for everyone but the privileged groups.
pg_approval contains [i, sprintf("%s needs approval", [upper(s.type)])] if {
	some i, s in input.command.postgres.statements
	s.type in {"insert", "update", "delete", "merge"}
	not pg_calls_protected(s)
	not privileged
}

pg_approval contains [i, "COPY FROM needs approval"] if {
	some i, s in input.command.postgres.statements
	s.type == "copy"
	s.direction == "from"
	s.program == false
	not privileged
}

deny contains sprintf("SET %s changes who the session acts as", [upper(s.setting)]) if {
	some s in input.command.postgres.statements
	s.type == "set"
	s.setting in data.portcullis.postgres.protected_settings
	not privileged
}

# set_config('role', ...) is SET ROLE in disguise. Which setting it changes is a literal,
# and rules here must not read literals, so the function is denied whatever it sets.
deny contains sprintf("%s can change who the session acts as", [f]) if {
	some s in input.command.postgres.statements
	some f in s.functions
	f in data.portcullis.postgres.protected_functions
	not privileged
}

pg_calls_protected(s) if {
	some f in s.functions
	f in data.portcullis.postgres.protected_functions
}

# --- into the common sets --------------------------------------------------

pg_approvable := {i | some [i, _] in pg_approval}

# The common sets guard on the kind with `==`, once per kind: the evaluator indexes rules
# on equality with input, so other kinds skip these bodies without evaluating them.
allow contains "every statement is allowed" if {
	input.command.kind == "postgres.query"
	count(input.command.postgres.statements) == count(pg_allowed)
}

allow contains "every statement is allowed" if {
	input.command.kind == "postgres.function_call"
	count(input.command.postgres.statements) == count(pg_allowed)
}

needs_approval contains reason if {
	input.command.kind == "postgres.query"
	some [_, reason] in pg_approval
}

needs_approval contains reason if {
	input.command.kind == "postgres.function_call"
	some [_, reason] in pg_approval
}

mask_rules contains {"field": column, "strategy": "redact"} if {
	input.command.kind == "postgres.query"
	not pii_reader
	some column in data.portcullis.sensitive_columns
}

mask_rules contains {"field": column, "strategy": "redact"} if {
	input.command.kind == "postgres.function_call"
	not pii_reader
	some column in data.portcullis.sensitive_columns
}

# Detectors run over text answers of every kind that returns any.
mask_rules contains {"detector": detector, "strategy": "partial"} if {
	text_kinds := {"postgres.query", "postgres.function_call", "http.request", "ssh.exec", "ssh.shell"}
	input.command.kind in text_kinds
	not pii_reader
	some detector in data.portcullis.detectors
}
