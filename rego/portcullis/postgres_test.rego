package portcullis_test

import data.portcullis

pg_input(groups, statements) := {
	"identity": {"subject": "alice@example.com", "groups": groups},
	"connection": {"name": "orders-db", "type": "postgres"},
	"command": {"kind": "postgres.query", "raw": "-", "postgres": {"statements": statements, "has": pg_has(statements), "types": pg_types(statements)}},
}

# input.command.postgres.types as the PDP adds it (pdp/domain/policy_input.py)
pg_types(statements) := {s.type: true | some s in statements}

# input.command.postgres.has with every flag set: every rule a flag guards runs, as if
# there were no flags (tests/test_policy_flags.py holds the flags the PDP sets to the same
# decisions as these)
pg_every_flag := {flag: true | some flag in {
	"settings", "untyped", "locking", "read_write", "nested", "functions", "whole_row",
	"computed", "qualified_names", "user_code", "attributes", "pg_names", "writes", "shadows",
}}

# the same, but `settings` and `untyped` (which also keep an answer from the cache) only as
# the PDP sets them: for a statement that names settings or calls set_config or
# current_setting, and for one without a type
pg_has(statements) := object.union_n([
	object.remove(pg_every_flag, {"settings", "untyped"}),
	{"settings": true | some s in statements; pg_names_settings(s)},
	{"untyped": true | some s in statements; not s.type},
])

pg_names_settings(s) if s.settings

pg_names_settings(s) if s.dynamic_settings

pg_names_settings(s) if "set_config" in s.functions

pg_names_settings(s) if s.read_settings

pg_names_settings(s) if s.dynamic_read_settings

pg_names_settings(s) if "current_setting" in s.functions

stmt(type) := {"type": type, "tag": "X", "tables": ["public.orders"], "functions": []}

stmt_with(type, extra) := object.union(stmt(type), extra)

verdict(groups, statements) := d.verdict if {
	d := portcullis.decision with input as pg_input(groups, statements)
}

reasons(groups, statements) := d.reasons if {
	d := portcullis.decision with input as pg_input(groups, statements)
}

# --- readonly / analyst ------------------------------------------------------

test_readonly_select_is_masked if {
	d := portcullis.decision with input as pg_input(["readonly"], [stmt("select")])
	d.verdict == "mask"
	{"field": "email", "strategy": "redact"} in d.mask
	{"detector": "credit_card", "strategy": "partial"} in d.mask
	d.cache_key == "shape"
	d.cache_ttl_seconds == 60
}

test_pii_reader_select_is_not_masked if {
	d := portcullis.decision with input as pg_input(["analyst", "pii-readers"], [stmt("select")])
	d.verdict == "allow"
	count(d.mask) == 0
}

test_read_only_types_allowed if {
	every t in ["show", "transaction", "prepare", "execute", "deallocate", "declare", "fetch", "close", "discard", "listen", "unlisten"] {
		verdict(["pii-readers"], [stmt(t)]) == "allow"
	}
}

test_empty_query_allowed if {
	verdict(["pii-readers"], []) == "allow"
}

test_explain_without_analyze_allowed if {
	verdict(["pii-readers"], [stmt_with("explain", {"analyze": false})]) == "allow"
}

test_explain_analyze_denied if {
	verdict(["readonly"], [stmt_with("explain", {"analyze": true})]) == "deny"
}

test_explain_analyze_delete_not_allowed if {
	statements := [
		stmt_with("explain", {"analyze": true}),
		stmt_with("delete", {"has_where": true, "nested": true}),
	]
	verdict(["readonly"], statements) == "deny"
}

test_session_setting_allowed if {
	verdict(["pii-readers"], [stmt_with("set", {"setting": "datestyle", "reset": false})]) == "allow"
	verdict(["pii-readers"], [stmt_with("set", {"setting": "statement_timeout", "value": "5s"})]) == "allow"
}

# A transaction left idle is bounded like a statement: shortened by SET only, never
# lifted (0, past the bound, a fraction), never by set_config; RESET returns to the pin.
test_idle_in_transaction_bound_only_shortened if {
	name := "idle_in_transaction_session_timeout"
	every value in ["5s", "1500", "60000", "1min"] {
		verdict(["pii-readers"], [stmt_with("set", {"setting": name, "value": value, "reset": false})]) == "allow"
	}
	every value in ["0", "60001", "2h", "0.5", "-1", "1us"] {
		verdict(["readonly"], [stmt_with("set", {"setting": name, "value": value, "reset": false})]) == "deny"
	}
	verdict(["pii-readers"], [stmt_with("set", {"setting": name, "reset": true})]) == "allow"
	verdict(["readonly"], [stmt_with("select", {"functions": ["set_config"], "settings": [name]})]) == "deny"
	verdict(["dba", "pii-readers"], [stmt_with("set", {"setting": name, "value": "0", "reset": false})]) == "allow"
}

idle_open(settings) := {
	"identity": {"subject": "r@example.com", "groups": ["readonly"]},
	"connection": {"name": "orders-db", "type": "postgres"},
	"session": {"attributes": {"settings": settings}},
	"command": {"kind": "session.open", "raw": ""},
}

test_idle_in_transaction_bound_at_start_up if {
	portcullis.decision.verdict == "allow" with input as idle_open({"idle_in_transaction_session_timeout": "2s"})
	portcullis.decision.verdict == "deny" with input as idle_open({"idle_in_transaction_session_timeout": "0"})
	portcullis.decision.verdict == "deny" with input as idle_open({"IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "0"})
}

test_set_role_denied if {
	verdict(["readonly"], [stmt_with("set", {"setting": "role"})]) == "deny"
	"SET ROLE changes who the session acts as" in reasons(["readonly"], [stmt_with("set", {"setting": "role"})])
	verdict(["readonly"], [stmt_with("set", {"setting": "session_authorization"})]) == "deny"
}

test_set_config_denied_for_readonly if {
	s := stmt_with("select", {"functions": ["set_config"], "settings": ["role"]})
	verdict(["readonly"], [s]) == "deny"
	"set_config may not change role for readers" in reasons(["readonly"], [s])
}

test_set_config_without_settings_is_judged_dynamic if {
	s := stmt_with("select", {"functions": ["set_config"]})
	every g in [["readonly"], ["dba"]] {
		verdict(g, [s]) == "deny"
		"set_config with a setting name that is not a literal: what it changes cannot be judged" in reasons(g, [s])
	}
}

test_set_config_in_write_or_explain_or_copy_denied if {
	every t in ["insert", "explain", "copy"] {
		s := stmt_with(t, {"functions": ["set_config"], "settings": ["role"], "analyze": false, "direction": "to", "program": false, "stdio": true})
		verdict(["readonly"], [s]) == "deny"
	}
}

test_copy_to_stdout_allowed if {
	s := stmt_with("copy", {"direction": "to", "program": false, "stdio": true})
	verdict(["pii-readers"], [s]) == "allow"
}

test_writes_need_approval if {
	every t in ["insert", "update", "delete", "merge"] {
		d := portcullis.decision with input as pg_input(["readonly"], [stmt_with(t, {"has_where": true})])
		d.verdict == "require_approval"
		d.approval.approvers == ["group:security", "group:dba"]
		d.approval.ttl_seconds == 900
	}
}

test_copy_to_options_that_rewrite_values_denied_under_masks if {
	every o in ["delimiter", "quote", "escape", "encoding", "something_new"] {
		s := stmt_with("copy", {"direction": "to", "program": false, "stdio": true, "copy_options": ["format", o]})
		verdict(["readonly"], [s]) == "deny"
		verdict(["dba"], [s]) == "deny"
		sprintf("COPY option %s rewrites values, so the value detectors could not read the rows; use FORMAT, HEADER, NULL or FORCE_QUOTE only", [upper(o)]) in reasons(["readonly"], [s])
		verdict(["pii-readers"], [s]) == "allow"
	}
}

test_copy_to_options_that_keep_values_allowed if {
	s := stmt_with("copy", {"direction": "to", "program": false, "stdio": true, "copy_options": ["force_quote", "format", "header", "null"]})
	verdict(["readonly"], [s]) != "deny"
	verdict(["dba"], [s]) != "deny"
}

test_copy_from_options_not_judged_by_the_detectors_rule if {
	s := stmt_with("copy", {"direction": "from", "program": false, "stdio": true, "copy_options": ["delimiter"]})
	verdict(["readonly"], [s]) == "require_approval"
}

test_copy_from_stdin_needs_approval if {
	s := stmt_with("copy", {"direction": "from", "program": false, "stdio": true})
	verdict(["readonly"], [s]) == "require_approval"
	"COPY FROM needs approval" in reasons(["readonly"], [s])
}

test_select_then_write_needs_approval if {
	verdict(["readonly"], [stmt("select"), stmt_with("delete", {"has_where": true, "nested": true})]) == "require_approval"
}

test_schema_changes_denied if {
	every t in ["ddl", "drop", "truncate", "grant", "alter_system", "create_extension", "do", "call", "notify", "lock", "load", "maintenance", "other"] {
		verdict(["readonly"], [stmt(t)]) == "deny"
	}
}

test_select_then_drop_denied if {
	statements := [stmt("select"), stmt_with("drop", {"object": "table"})]
	verdict(["readonly"], statements) == "deny"
	"no rule allows drop statement (X) for alice@example.com" in reasons(["readonly"], statements)
}

# The reason a statement is denied is given once: not repeated as "no rule allows
# postgres.query", which is only for a command no module says anything about.
test_a_denied_statement_gives_its_reason_once if {
	statements := [stmt_with("drop", {"object": "table"})]
	reasons(["readonly"], statements) == {"no rule allows drop statement (X) for alice@example.com"}
}

test_unparseable_denied_and_not_cached if {
	s := {"type": "unparseable", "tag": "ParseError", "tables": [], "functions": [], "error": "syntax error"}
	d := portcullis.decision with input as pg_input(["dba"], [s])
	d.verdict == "deny"
	"SQL that cannot be parsed is denied: syntax error" in d.reasons
	d.cache_key == "exact"
	d.cache_ttl_seconds == 0
}

test_unclassified_query_denied if {
	i := json.patch(pg_input(["dba"], []), [{"op": "remove", "path": "/command/postgres"}])
	d := portcullis.decision with input as i
	d.verdict == "deny"
	"the statements of this query were not classified" in d.reasons
}

# --- everyone, dba included ------------------------------------------------------

test_dangerous_functions_denied_for_everyone if {
	every f in ["pg_read_file", "pg_read_binary_file", "pg_ls_dir", "lo_import", "lo_export", "dblink", "dblink_exec"] {
		every g in ["dba", "readonly", "pii-readers"] {
			verdict([g], [stmt_with("select", {"functions": ["count", f]})]) == "deny"
		}
	}
}

test_copy_program_denied_for_everyone if {
	every dir in ["to", "from"] {
		s := stmt_with("copy", {"direction": dir, "program": true, "stdio": false})
		verdict(["dba"], [s]) == "deny"
		verdict(["readonly"], [s]) == "deny"
		"COPY ... PROGRAM runs a program on the database server" in reasons(["dba"], [s])
	}
}

test_copy_server_file_denied_for_everyone if {
	s := stmt_with("copy", {"direction": "from", "program": false, "stdio": false})
	verdict(["dba"], [s]) == "deny"
	verdict(["readonly"], [s]) == "deny"
}

# --- dba -------------------------------------------------------------------------

test_dba_alter_system_needs_approval if {
	every groups in [["dba"], ["dba", "pii-readers"]] {
		d := portcullis.decision with input as pg_input(groups, [stmt_with("alter_system", {"tag": "AlterSystemStmt"})])
		d.verdict == "require_approval"
		"ALTER SYSTEM changes the server's configuration files (file writes, programs) and needs approval" in d.reasons
	}
}

test_dba_reaching_past_the_database_needs_approval if {
	every groups in [["dba"], ["dba", "pii-readers"]] {
		every tag in ["CreateExtensionStmt", "LoadStmt", "CreateForeignServerStmt", "CreateForeignTableStmt", "CreateSubscriptionStmt", "CreateTableSpaceStmt", "CreateRoleStmt", "AlterRoleStmt", "GrantRoleStmt", "AlterRoleSetStmt", "AlterDatabaseSetStmt", "CreateEventTrigStmt", "CreateUserMappingStmt"] {
			d := portcullis.decision with input as pg_input(groups, [stmt_with("ddl", {"tag": tag})])
			d.verdict == "require_approval"
			sprintf("%s reaches past the database or makes a way in that bypasses the gateway, and needs approval", [tag]) in d.reasons
		}
	}
}

test_dba_functions_outside_the_trusted_languages_need_approval if {
	every language in ["c", "internal", "plpython3u", "plperlu", "pltclu"] {
		d := portcullis.decision with input as pg_input(["dba", "pii-readers"], [stmt_with("ddl", {"tag": "CreateFunctionStmt", "language": language})])
		d.verdict == "require_approval"
	}
	every language in ["sql", "plpgsql"] {
		verdict(["dba", "pii-readers"], [stmt_with("ddl", {"tag": "CreateFunctionStmt", "language": language})]) == "allow"
	}
}

test_dba_function_bodies_written_as_strings_need_approval if {
	every groups in [["dba"], ["dba", "pii-readers"]] {
		d := portcullis.decision with input as pg_input(groups, [stmt_with("ddl", {"tag": "CreateFunctionStmt", "language": "sql", "body_text": true})])
		d.verdict == "require_approval"
	}
}

test_dba_runs_ddl_and_writes if {
	every t in ["ddl", "grant", "insert", "other"] {
		verdict(["dba", "pii-readers"], [stmt_with(t, {"has_where": true})]) == "allow"
	}
	verdict(["dba", "pii-readers"], [stmt_with("drop", {"object": "table"})]) == "allow"
	verdict(["dba", "pii-readers"], [stmt_with("do", {"opaque": false})]) == "allow"
	verdict(["dba", "pii-readers"], [stmt_with("set", {"setting": "role"})]) == "allow"
}

test_do_block_answers_are_not_cached if {
	# the block's code is a literal, which a shape ignores, yet its statements are judged
	harmless := [stmt_with("do", {"opaque": false}), stmt_with("select", {"nested": true})]
	d := portcullis.decision with input as pg_input(["dba", "pii-readers"], harmless)
	d.verdict == "allow"
	d.cache_key == "exact"
	d.cache_ttl_seconds == 0
	plain := portcullis.decision with input as pg_input(["dba", "pii-readers"], [stmt("select")])
	plain.cache_key == "shape"
}

test_dba_reads_are_masked_without_pii_readers if {
	verdict(["dba"], [stmt("select")]) == "mask"
}

test_dba_dangerous_statements_need_approval if {
	cases := [
		[stmt_with("drop", {"object": "database"}), "DROP DATABASE needs approval"],
		[stmt_with("drop", {"object": "schema"}), "DROP SCHEMA needs approval"],
		[stmt("truncate"), "TRUNCATE needs approval"],
		[stmt_with("update", {"has_where": false}), "UPDATE without WHERE needs approval"],
		[stmt_with("delete", {"has_where": false, "nested": true}), "DELETE without WHERE needs approval"],
		[stmt_with("do", {"opaque": true}), "DO block with dynamic or non-SQL code needs approval"],
	]
	every c in cases {
		d := portcullis.decision with input as pg_input(["dba"], [stmt("select"), c[0]])
		d.verdict == "require_approval"
		c[1] in d.reasons
	}
}

test_dba_delete_with_where_allowed if {
	verdict(["dba", "pii-readers"], [stmt_with("delete", {"has_where": true})]) == "allow"
}

test_malformed_statement_denied_even_beside_a_write if {
	statements := [stmt_with("insert", {}), {"tables": []}]
	verdict(["readonly"], statements) == "deny"
	"no rule allows unknown statement (unknown) for alice@example.com" in reasons(["readonly"], statements)
}

test_function_call_judged_like_a_query if {
	i := {
		"identity": {"subject": "alice@example.com", "groups": ["dba"]},
		"connection": {"name": "orders-db", "type": "postgres"},
		"command": {"kind": "postgres.function_call", "raw": "lo_import", "postgres": {"statements": [stmt_with("select", {"tag": "FunctionCall", "functions": ["lo_import"]})], "has": pg_every_flag, "types": {"select": true}}},
	}
	d := portcullis.decision with input as i
	d.verdict == "deny"
	d.cache_key == "exact"
	ok := json.patch(i, [{"op": "replace", "path": "/command/postgres/statements/0/functions", "value": ["lower"]}])
	d2 := portcullis.decision with input as ok
	d2.verdict == "mask"
}

# --- the helper sets the answers are built from (rewritten for the evaluator's cost) ---

# pg_reads and pg_writes say what a statement does whoever asks; only the rules that turn
# them into answers look at the identity.
test_reads_and_writes_are_the_same_sets_for_everyone if {
	statements := [stmt("select"), stmt("insert"), stmt_with("select", {"locking": true})]
	every groups in [["readonly"], ["dba"]] {
		portcullis.pg_reads == {0} with input as pg_input(groups, statements)
		{i | some [i, _] in portcullis.pg_writes} == {1, 2} with input as pg_input(groups, statements)
	}
}

# the privileged approvals reach needs_approval only for the privileged
test_privileged_approvals_apply_only_to_the_privileged if {
	statements := [stmt("truncate")]
	portcullis.pg_privileged_approval == {[0, "TRUNCATE needs approval"]} with input as pg_input(["readonly"], statements)
	not "TRUNCATE needs approval" in reasons(["readonly"], statements)
	"TRUNCATE needs approval" in reasons(["dba"], statements)
}

# the reader denials reach deny only for everyone not privileged
test_reader_denials_apply_only_to_readers if {
	statements := [stmt_with("select", {"tables": ["pg_catalog.pg_authid"]})]
	"pg_catalog.pg_authid holds secrets; only privileged groups may read it" in portcullis.pg_reader_denials with input as pg_input(["dba"], statements)
	verdict(["readonly"], statements) == "deny"
	verdict(["dba"], statements) == "mask"
}

# a transaction statement is a read unless it is two-phase; one without an action is one
test_transaction_reads_exclude_two_phase if {
	verdict(["readonly"], [stmt("transaction")]) == "mask"
	every action in ["prepare", "commit_prepared", "rollback_prepared"] {
		verdict(["readonly"], [stmt_with("transaction", {"action": action})]) == "deny"
	}
	verdict(["readonly"], [stmt_with("transaction", {"action": "commit"})]) == "mask"
	verdict(["readonly"], [stmt_with("transaction", {"action": null})]) == "mask"
}
