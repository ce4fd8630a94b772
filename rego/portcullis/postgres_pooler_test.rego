package portcullis_test

import data.portcullis

# Behind a transaction pooler, pinned settings may not be changed by anyone; without one,
# nothing changes.

pooled_input(groups, statements) := object.union(pg_input(groups, statements), {"command": {"postgres": {"pooler": "transaction"}}})

pooled_verdict(groups, statements) := d.verdict if {
	d := portcullis.decision with input as pooled_input(groups, statements)
}

pooled_reasons(groups, statements) := d.reasons if {
	d := portcullis.decision with input as pooled_input(groups, statements)
}

test_pooled_set_of_pinned_settings_denied_for_everyone if {
	every name in ["statement_timeout", "default_transaction_read_only", "session characteristics", "role", "session_authorization", "backslash_quote"] {
		s := stmt_with("set", {"setting": name, "value": "on", "reset": false})
		pooled_verdict(["readonly"], [s]) == "deny"
		pooled_verdict(["dba", "pii-readers"], [s]) == "deny"
		sprintf("SET %s: behind a transaction pooler the setting is pinned by the upstream role's configuration, and a session-level change would reach other sessions' transactions", [upper(name)]) in pooled_reasons(["dba"], [s])
	}
}

test_pooled_reset_of_pinned_settings_denied if {
	every name in ["statement_timeout", "backslash_quote", "all"] {
		s := stmt_with("set", {"setting": name, "reset": true})
		pooled_verdict(["dba", "pii-readers"], [s]) == "deny"
		pooled_verdict(["readonly"], [s]) == "deny"
	}
}

test_pooled_set_config_of_pinned_settings_denied if {
	every name in ["statement_timeout", "default_transaction_read_only", "role"] {
		s := stmt_with("select", {"functions": ["set_config"], "settings": [name]})
		pooled_verdict(["dba", "pii-readers"], [s]) == "deny"
		sprintf("set_config may not change %s behind a transaction pooler: the setting is pinned by the upstream role's configuration", [name]) in pooled_reasons(["dba"], [s])
	}
}

test_pooled_other_settings_unchanged if {
	s := stmt_with("set", {"setting": "datestyle", "value": "ISO", "reset": false})
	pooled_verdict(["pii-readers"], [s]) == "allow"
	pooled_verdict(["dba", "pii-readers"], [s]) == "allow"
}

test_without_a_pooler_statement_timeout_and_reset_all_stay_allowed if {
	verdict(["pii-readers"], [stmt_with("set", {"setting": "statement_timeout", "value": "5s", "reset": false})]) == "allow"
	verdict(["pii-readers"], [stmt_with("set", {"setting": "all", "reset": true})]) == "allow"
	verdict(["dba", "pii-readers"], [stmt_with("set", {"setting": "default_transaction_read_only", "value": "off", "reset": false, "read_write": true})]) == "allow"
}

test_pooled_prepare_execute_declare_denied if {
	every t in ["prepare", "execute", "declare"] {
		pooled_verdict(["dba", "pii-readers"], [stmt(t)]) == "deny"
		sprintf("%s behind a transaction pooler: what it names may be another session's on the server connection the next transaction runs on", [upper(t)]) in pooled_reasons(["readonly"], [stmt(t)])
		verdict(["pii-readers"], [stmt(t)]) == "allow"
	}
}

# a session-level SET behind the pooler: only of a setting that cannot reach another session
test_pooled_session_set_of_other_settings_denied_for_everyone if {
	every name in ["search_path", "client_min_messages", "lock_timeout", "idle_session_timeout", "default_transaction_isolation", "intervalstyle", "seed", "jit_above_cost", "enable_seqscan"] {
		s := stmt_with("set", {"setting": name, "value": "x", "reset": false})
		pooled_verdict(["readonly"], [s]) == "deny"
		pooled_verdict(["dba", "pii-readers"], [s]) == "deny"
		sprintf("SET %s behind a transaction pooler: a session-level change stays on the server connection for other sessions' transactions (SET LOCAL ends with the transaction)", [upper(name)]) in pooled_reasons(["dba", "pii-readers"], [s])
		c := stmt_with("select", {"functions": ["set_config"], "settings": [name], "session_settings": [name]})
		pooled_verdict(["dba", "pii-readers"], [c]) == "deny"
		sprintf("set_config may not change %s for the session behind a transaction pooler: the change stays on the server connection for other sessions' transactions (is_local true ends it with the transaction)", [name]) in pooled_reasons(["dba", "pii-readers"], [c])
		local := stmt_with("select", {"functions": ["set_config"], "settings": [name]})
		pooled_verdict(["dba", "pii-readers"], [local]) == "allow"
		verdict(["dba", "pii-readers"], [s]) == "allow"
	}
}

test_pooled_set_local_reset_and_tracked_settings_allowed if {
	every s in [
		stmt_with("set", {"setting": "search_path", "value": "public", "reset": false, "local": true}),
		stmt_with("set", {"setting": "lock_timeout", "value": "1s", "reset": false, "local": true}),
		stmt_with("set", {"setting": "search_path", "reset": true}),
		stmt_with("set", {"setting": "timezone", "value": "UTC", "reset": false}),
		stmt_with("set", {"setting": "application_name", "value": "x", "reset": false}),
		stmt_with("set", {"setting": "transaction", "reset": false}),
		stmt_with("select", {"functions": ["set_config"], "settings": ["jit"], "session_settings": ["jit"]}),
	] {
		pooled_verdict(["dba", "pii-readers"], [s]) == "allow"
	}
}

test_pooled_temporary_objects_denied_for_everyone if {
	s := stmt_with("ddl", {"tag": "ViewStmt", "tables": ["customers"], "temporary": true})
	pooled_verdict(["dba", "pii-readers"], [s]) == "deny"
	"a temporary object behind a transaction pooler: it stays on the server connection, where the next session's names would find it first" in pooled_reasons(["dba"], [s])
	not "a temporary object behind a transaction pooler: it stays on the server connection, where the next session's names would find it first" in reasons(["dba"], [s])
}

test_pooled_opaque_do_blocks_denied_for_everyone if {
	s := stmt_with("do", {"opaque": true})
	pooled_verdict(["dba", "pii-readers"], [s]) == "deny"
	pooled_verdict(["dba", "pii-readers"], [stmt("do")]) != "deny"
	verdict(["dba", "pii-readers"], [s]) != "deny"
}

test_pooled_view_running_set_config_denied_for_everyone if {
	sel := object.union(stmt("select"), {"tables": ["vset"]})
	views := [{"op": "add", "path": "/command/postgres/view_functions", "value": {"public.vset": ["pg_catalog.set_config"]}}]
	pooled := json.patch(pooled_input(["dba", "pii-readers"], [sel]), views)
	d := portcullis.decision with input as pooled
	d.verdict == "deny"
	"view public.vset runs set_config behind a transaction pooler: the setting it changes would stay on the server connection for other sessions' transactions" in d.reasons
	plain := json.patch(pg_input(["dba", "pii-readers"], [sel]), views)
	dp := portcullis.decision with input as plain
	dp.verdict != "deny"
	other := json.patch(pooled_input(["dba", "pii-readers"], [sel]), [{"op": "add", "path": "/command/postgres/view_functions", "value": {"public.vset": ["pg_catalog.random"]}}])
	do := portcullis.decision with input as other
	do.verdict != "deny"
}

# The database's code that may leave session state (proxies/postgres/session_code.py):
# refused behind the pooler by name, by a view or a write running it, by an operator, an
# event trigger or a cast; other code and other sessions unchanged.
pooler_code := {
	"functions": ["p57_path", "public.p57_path", "p57_trigger", "public.p57_trigger"],
	"operators": ["###"],
	"types": ["p57_domain"],
	"reads": {"public.p57_view": ["public.p57_path"]},
	"writes": {"public.p57_log": ["p57_log_t on p57_log (public.p57_trigger)"], "p57_log": ["p57_log_t on p57_log (public.p57_trigger)"]},
}

pooled_code_input(groups, statements, code) := object.union(pooled_input(groups, statements), {"command": {"postgres": {"pooler_session_code": code}}})

pooled_code_verdict(groups, statements, code) := d.verdict if {
	d := portcullis.decision with input as pooled_code_input(groups, statements, code)
}

test_pooled_code_leaving_session_state_denied_for_everyone if {
	every s in [
		stmt_with("select", {"tables": [], "functions": ["p57_path"]}),
		stmt_with("select", {"tables": [], "functions": ["p57_path"], "qualified_functions": ["public.p57_path"]}),
		stmt_with("call", {"tables": [], "functions": ["x"], "cased_functions": ["p57_path"]}),
		stmt_with("select", {"tables": ["p57_view"]}),
		stmt_with("select", {"tables": ["orders.public.p57_view"]}),
		stmt_with("insert", {"tables": ["p57_log"]}),
		stmt_with("delete", {"tables": ["orders.public.p57_log"]}),
		stmt_with("truncate", {"tables": ["public.p57_log"]}),
		stmt_with("select", {"tables": [], "operators": ["###"]}),
		stmt_with("select", {"tables": [], "type_names": ["p57_domain"]}),
	] {
		pooled_code_verdict(["dba", "pii-readers"], [s], pooler_code) == "deny"
		pooled_code_verdict(["readonly", "pii-readers"], [s], pooler_code) == "deny"
	}
}

test_pooled_code_event_triggers_and_casts_denied if {
	ddl := stmt_with("ddl", {"tables": []})
	pooled_code_verdict(["dba", "pii-readers"], [ddl], {"event_triggers": ["e on ddl_command_end (public.p57_path)"]}) == "deny"
	plain := stmt_with("select", {"tables": []})
	pooled_code_verdict(["pii-readers"], [plain], {"casts": ["text -> p57 by public.p57_path (implicit)"]}) == "deny"
	pooled_code_verdict(["pii-readers"], [plain], {"event_triggers": ["e on ddl_command_end (public.p57_path)"]}) == "allow"
}

test_pooled_code_leaving_nothing_and_reads_of_written_tables_stay if {
	pooled_code_verdict(["dba", "pii-readers"], [stmt_with("select", {"tables": [], "functions": ["p57_count"]})], pooler_code) == "allow"
	pooled_code_verdict(["dba", "pii-readers"], [stmt_with("select", {"tables": ["p57_log"]})], pooler_code) == "allow"
	pooled_code_verdict(["dba", "pii-readers"], [stmt_with("select", {"tables": ["public.orders"]})], pooler_code) == "allow"
}

test_without_a_pooler_the_code_fact_is_not_judged if {
	s := stmt_with("select", {"tables": [], "functions": ["p57_path"]})
	d := portcullis.decision with input as object.union(pg_input(["dba", "pii-readers"], [s]), {"command": {"postgres": {"pooler_session_code": pooler_code}}})
	d.verdict == "allow"
}

# What the server connection keeps for its session is another session's behind the pooler
test_pooled_session_builtins_cursors_and_session_lists if {
	every f in ["setseed", "pg_advisory_lock", "pg_advisory_unlock_all", "pg_try_advisory_lock_shared"] {
		s := stmt_with("select", {"tables": [], "functions": [f]})
		pooled_verdict(["dba", "pii-readers"], [s]) == "deny"
		pooled_verdict(["readonly"], [s]) == "deny"
	}
	every tag in ["FetchStmt", "ClosePortalStmt", "PLpgSQL_stmt_fetch"] {
		pooled_verdict(["dba", "pii-readers"], [object.union(stmt("fetch"), {"tag": tag, "tables": []})]) == "deny"
	}
	every s in [
		stmt_with("select", {"tables": ["pg_prepared_statements"]}),
		stmt_with("select", {"tables": ["PG_CATALOG.pg_cursors"]}),
		stmt_with("select", {"tables": [], "functions": ["pg_cursor"]}),
		stmt_with("select", {"tables": ["pg_backend_memory_contexts"]}),
		stmt_with("select", {"tables": [], "functions": ["pg_get_backend_memory_contexts"]}),
	] {
		pooled_verdict(["readonly"], [s]) == "deny"
		pooled_verdict(["dba"], [s]) == "deny"
		pooled_verdict(["dba", "pii-readers"], [s]) == "allow"
	}
	# the transaction's advisory locks stay
	pooled_verdict(["dba"], [stmt_with("select", {"tables": [], "functions": ["pg_advisory_xact_lock"]})]) != "deny"
}

test_without_a_pooler_the_session_lists_and_cursors_stay if {
	verdict(["dba"], [stmt_with("select", {"tables": ["pg_prepared_statements"]})]) != "deny"
	verdict(["dba"], [stmt_with("select", {"tables": [], "functions": ["setseed"]})]) != "deny"
}

test_pooled_statements_dropping_session_state_denied if {
	every s in [
		stmt_with("deallocate", {"tables": [], "name": "*"}),
		stmt_with("deallocate", {"tables": [], "name": "_pg3_0"}),
		stmt_with("unlisten", {"tables": []}),
		stmt_with("discard", {"tables": [], "target": "all"}),
		stmt_with("discard", {"tables": [], "target": "temp"}),
	] {
		pooled_verdict(["readonly"], [s]) == "deny"
		pooled_verdict(["dba", "pii-readers"], [s]) == "deny"
	}
	pooled_verdict(["dba", "pii-readers"], [stmt_with("discard", {"tables": [], "target": "plans"})]) == "allow"
	verdict(["dba", "pii-readers"], [stmt_with("deallocate", {"tables": [], "name": "*"})]) == "allow"
}

# A sequence's last value and a loaded library stay on the server connection
test_pooled_sequence_values_and_load_denied if {
	every f in ["lastval", "currval"] {
		s := stmt_with("select", {"tables": [], "functions": [f]})
		pooled_verdict(["dba", "pii-readers"], [s]) == "deny"
		sprintf("function %s reads the server connection's last sequence value, which behind a transaction pooler may be another session's: refused there (use nextval's own answer or RETURNING)", [f]) in pooled_reasons(["dba"], [s])
	}
	load := stmt_with("load", {"tables": []})
	pooled_verdict(["dba", "pii-readers"], [load]) == "deny"
	"LOAD behind a transaction pooler: the library stays loaded in the server connection for other sessions' transactions" in pooled_reasons(["dba", "pii-readers"], [load])
}

test_without_a_pooler_sequence_values_stay if {
	verdict(["dba", "pii-readers"], [stmt_with("select", {"tables": [], "functions": ["lastval", "currval"]})]) == "allow"
	verdict(["dba", "pii-readers"], [stmt_with("load", {"tables": []})]) != "deny"
}

p61_views := {"public.p61_statements": ["pg_catalog.pg_prepared_statement"], "public.p61_last": ["pg_catalog.lastval"]}

p61_verdict(groups, t) := d.verdict if {
	d := portcullis.decision with input as object.union(pooled_input(groups, [stmt_with("select", {"tables": [t]})]), {"command": {"postgres": {"view_functions": p61_views, "has": {"user_code": true}}}})
}

test_pooled_views_over_session_lists_and_sequence_values if {
	p61_verdict(["dba"], "p61_statements") == "deny"
	p61_verdict(["dba", "pii-readers"], "p61_statements") == "allow"
	p61_verdict(["dba", "pii-readers"], "p61_last") == "deny"
	p61_verdict(["dba", "pii-readers"], "public.p61_last") == "deny"
}
