# postgres.query: one judgement per classified statement (pdp/statements.py), nested
# ones included, so a write inside a CTE, EXPLAIN ANALYZE, PREPARE or DO block is judged
# as the write it is. A query is allowed only when every statement is allowed; one
# statement needing approval makes the whole query need it; one denied denies it all.
#
# Every rule here reads statement types, tags, tables, functions and setting names only,
# never literal values: decision.rego relies on that to offer cache_key "shape".
#
# One pass: pg_judgements judges every statement once (pg_judge: is it allowed, and
# which approval does it need), and the common sets below only read that array. Rule
# references and function calls are what the evaluator pays for on every SQL statement,
# so each statement costs one pg_judge call and the deny rules test input fields first.
# Deny rules iterate the statements without checking the command kind: only postgres
# commands carry statements, and a stray one could only add a denial.
package portcullis

# A fast-path FunctionCall message arrives as postgres.function_call with one "select"
# statement naming the function, and is judged like the query it stands for. Constant
# sets are written inline where they are used: a literal costs the evaluator nothing, a
# rule reference a lookup.

# --- one judgement per statement ---------------------------------------------

# pg_judgements[i] is [allowed, approval]: allowed is true when statement i may run as
# it is, approval the reason it needs approval ("" when it needs none). A statement
# neither allowed nor approvable denies the whole query.
pg_judgements := {i: pg_judge(s) | some i, s in input.command.postgres.statements}

# Privileged groups (dba) may run any statement, except the ones pg_dba_approval names.
pg_judge(s) := [allowed, pg_dba_approval(s)] if {
	privileged
	allowed := pg_dba_allows(s)
} else := [true, ""] if {
	# Everyone else: statement types anyone on the connection may run without approval.
	s.type in {
		"select", "show", "transaction", "prepare", "execute", "deallocate",
		"declare", "fetch", "close", "discard",
	}
	not pg_calls_protected(s)
} else := [true, ""] if {
	s.type == "explain"
	s.analyze == false
	not pg_calls_protected(s)
} else := [true, ""] if {
	s.type == "set"
	not s.setting in data.portcullis.postgres.protected_settings
} else := [true, ""] if {
	s.type == "copy"
	s.direction == "to"
	s.program == false
	not pg_calls_protected(s)
} else := [false, sprintf("%s needs approval", [upper(s.type)])] if {
	# Statement types that change data: approval for everyone but the privileged groups.
	s.type in {"insert", "update", "delete", "merge"}
	not pg_calls_protected(s)
} else := [false, "COPY FROM needs approval"] if {
	s.type == "copy"
	s.direction == "from"
	s.program == false
} else := [false, ""]

pg_dba_allows(s) if {
	input.command.kind in {"postgres.query", "postgres.function_call"}
	s.type != "unparseable"
} else := false

pg_dba_approval(s) := sprintf("DROP %s needs approval", [upper(s.object)]) if {
	s.type == "drop"
	s.object in {"database", "schema"}
} else := "TRUNCATE needs approval" if {
	s.type == "truncate"
} else := sprintf("%s without WHERE needs approval", [upper(s.type)]) if {
	s.type in {"update", "delete"}
	s.has_where == false
} else := "DO block with dynamic or non-SQL code needs approval" if {
	# A DO block whose SQL cannot all be seen (dynamic EXECUTE, another language) could
	# run any of the statements above, so it is not taken on trust.
	s.type == "do"
	s.opaque
} else := ""

pg_calls_protected(s) if {
	some f in s.functions
	f in data.portcullis.postgres.protected_functions
}

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
	pg_dangerous_function(f)
}

pg_dangerous_function(f) if f in data.portcullis.dangerous_functions

pg_dangerous_function(f) if {
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
	some i, judgement in pg_judgements
	judgement == [false, ""]
	s := input.command.postgres.statements[i]
	type := object.get(s, "type", "unknown")
	tag := object.get(s, "tag", "unknown")
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

# --- into the common sets --------------------------------------------------

# The common sets guard on the kind with `==`, once per kind: the evaluator indexes rules
# on equality with input, so other kinds skip these bodies without evaluating them.
allow contains "every statement is allowed" if {
	input.command.kind == "postgres.query"
	pg_all_allowed
}

allow contains "every statement is allowed" if {
	input.command.kind == "postgres.function_call"
	pg_all_allowed
}

pg_all_allowed if {
	count(input.command.postgres.statements) == count([1 | some judgement in pg_judgements; judgement[0]])
}

needs_approval contains reason if {
	input.command.kind == "postgres.query"
	some judgement in pg_judgements
	reason := judgement[1]
	reason != ""
}

needs_approval contains reason if {
	input.command.kind == "postgres.function_call"
	some judgement in pg_judgements
	reason := judgement[1]
	reason != ""
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
