package portcullis_test

import data.portcullis

# Operators and types the database defines outside pg_catalog (postgres_user_code.rego).

user_code_input(groups, statement) := {
	"identity": {"subject": "alice@example.com", "groups": groups},
	"connection": {"name": "orders-db", "type": "postgres"},
	"command": {"kind": "postgres.query", "raw": "-", "postgres": {
		"statements": [statement],
		"has": pg_every_flag, "types": {statement.type: true},
		"user_operators": ["+", "@@@"],
		"user_types": ["dd", "_dd"],
		"view_functions": {
			"public.v_wipe": ["public.innocent"],
			"sales.v_sum": ["pg_catalog.lower"],
			"sales.v_read": ["pg_catalog.pg_read_file"],
		},
	}},
}

user_code_decision(groups, extra) := d if {
	d := portcullis.decision with input as user_code_input(groups, stmt_with("select", extra))
}

test_an_operator_the_database_also_defines_is_denied_to_readers if {
	d := user_code_decision(["readonly"], {"operators": ["=", "+"]})
	d.verdict == "deny"
	"operator + is also defined outside pg_catalog in this database, so it may run a function readers may not call" in d.reasons
	user_code_decision(["dba", "pii-readers"], {"operators": ["=", "+"]}).verdict == "allow"
}

test_operators_only_pg_catalog_defines_pass if {
	user_code_decision(["readonly"], {"operators": ["=", "<", "~~"]}).verdict == "mask"
	user_code_decision(["readonly"], {"operators": ["pg_catalog.+"]}).verdict == "mask"
}

test_an_operator_qualified_outside_pg_catalog_is_denied_to_readers if {
	every o in ["public.=", "pg_catalog.x.=", "PG_CATALOG.="] {
		d := user_code_decision(["readonly"], {"operators": [o]})
		d.verdict == "deny"
		sprintf("operator %s is not in pg_catalog; readers may use only operators there", [o]) in d.reasons
	}
}

test_a_cast_to_a_type_the_database_defines_is_denied_to_readers if {
	every t in ["dd", "_dd"] {
		d := user_code_decision(["readonly"], {"type_names": [t]})
		d.verdict == "deny"
		sprintf("type %s is defined outside pg_catalog in this database: a cast to it runs code readers may not call", [t]) in d.reasons
	}
	user_code_decision(["readonly"], {"type_names": ["text", "Dd"]}).verdict == "mask"
	user_code_decision(["readonly"], {"type_names": ["public.dd"]}).verdict == "deny"
	user_code_decision(["dba", "pii-readers"], {"type_names": ["dd", "public.dd"]}).verdict == "allow"
}

test_without_the_proxys_facts_only_qualified_names_count if {
	d := portcullis.decision with input as pg_input(["readonly"], [stmt_with("select", {"operators": ["+"], "type_names": ["dd"]})])
	d.verdict == "mask"
}

test_user_code_in_a_write_goes_to_the_approver if {
	d := portcullis.decision with input as user_code_input(["readonly"], stmt_with("insert", {"operators": ["+"]}))
	d.verdict == "require_approval"
}

test_a_view_that_runs_a_function_readers_may_not_call_is_denied_to_readers if {
	every t in ["v_wipe", "public.v_wipe", "orders.public.v_wipe"] {
		d := user_code_decision(["readonly"], {"tables": [t]})
		d.verdict == "deny"
		"view public.v_wipe runs function public.innocent, which readers may not call" in d.reasons
	}
	d := user_code_decision(["readonly"], {"tables": ["v_read"]})
	"view sales.v_read runs function pg_catalog.pg_read_file, which readers may not call" in d.reasons
	user_code_decision(["dba", "pii-readers"], {"tables": ["v_wipe"]}).verdict == "allow"
}

test_views_running_reader_functions_or_named_elsewhere_pass if {
	user_code_decision(["readonly"], {"tables": ["v_sum", "sales.v_sum"]}).verdict == "mask"
	user_code_decision(["readonly"], {"tables": ["other.v_wipe", "public.v_wipe_2", "orders.other.v_wipe", "public.other.v_sum.x"]}).verdict == "mask"
}

cast_input(groups, casts) := {
	"identity": {"subject": "alice@example.com", "groups": groups},
	"connection": {"name": "orders-db", "type": "postgres"},
	"command": {"kind": "postgres.query", "raw": "-", "postgres": {
		"statements": [stmt("select")],
		"types": {"select": true},
		"has": pg_every_flag,
		"user_casts": casts,
	}},
}

test_a_cast_the_database_defines_denies_readers_until_reviewed if {
	cast := "date -> integer by public.evil (implicit)"
	d := portcullis.decision with input as cast_input(["pii-readers"], [cast])
	d.verdict == "deny"
	sprintf("this database defines the cast %s outside pg_catalog; a statement may run it without naming it (list it in postgres.reviewed_casts once reviewed)", [cast]) in d.reasons
	# an unmasked dba runs it; a masked one is denied too (postgres_lineage.rego)
	dba := portcullis.decision with input as cast_input(["dba", "pii-readers"], [cast])
	dba.verdict != "deny"
	reviewed := portcullis.decision with input as cast_input(["pii-readers"], [cast])
		with data.portcullis.postgres.reviewed_casts as {cast: true}
	reviewed.verdict == "allow"
	none := portcullis.decision with input as cast_input(["pii-readers"], [])
	none.verdict == "allow"
}

# --- code under the masks: a privileged session outside pii-readers ------------------

masked_call(groups, extra) := d if {
	d := portcullis.decision with input as pg_input(groups, [object.union(stmt_with("select", extra), {"tables": []})])
}

test_a_function_not_known_to_have_no_side_effects_needs_approval_under_the_masks if {
	# SELECT public.leak(): its result is masked whole, what it sets or stores is not
	d := masked_call(["dba"], {"functions": ["leak"], "qualified_functions": ["public.leak"]})
	d.verdict == "require_approval"
	"function leak is not known to have no side effects (not in postgres.reader_functions or postgres.masked_admin_functions): what it keeps or sends is read past the masks, so calling it needs approval for everyone not in pii-readers" in d.reasons
	"function public.leak is not pg_catalog's: what it keeps or sends is read past the masks, so calling it needs approval for everyone not in pii-readers" in d.reasons
	masked_call(["dba", "pii-readers"], {"functions": ["leak"], "qualified_functions": ["public.leak"]}).verdict == "allow"
	# a reader is denied it, as before
	masked_call(["readonly"], {"functions": ["leak"], "qualified_functions": ["public.leak"]}).verdict == "deny"
}

test_a_qualified_call_outside_pg_catalog_needs_approval_whatever_its_name if {
	# public.upper(varchar) beats pg_catalog's for a varchar: the name alone proves nothing
	d := masked_call(["dba"], {"functions": ["upper"], "qualified_functions": ["public.upper"]})
	d.verdict == "require_approval"
	masked_call(["dba"], {"functions": ["upper"], "qualified_functions": ["pg_catalog.upper"]}).verdict == "mask"
	masked_call(["dba"], {"functions": ["upper"], "qualified_functions": ["pg_catalog.x.upper"]}).verdict == "require_approval"
	masked_call(["dba"], {"functions": ["upper"], "cased_functions": ["Upper"]}).verdict == "require_approval"
}

test_call_of_a_procedure_needs_approval_under_the_masks if {
	call := {"type": "call", "tag": "CallStmt", "tables": [], "functions": ["proc"], "qualified_functions": ["public.proc"]}
	portcullis.decision.verdict == "require_approval" with input as pg_input(["dba"], [call])
	portcullis.decision.verdict == "allow" with input as pg_input(["dba", "pii-readers"], [call])
}

test_a_do_blocks_call_needs_approval_under_the_masks if {
	do := {"type": "do", "tag": "DoStmt", "tables": [], "functions": []}
	inner := {"type": "select", "tag": "PLpgSQL_stmt_perform", "nested": true, "tables": [], "functions": ["stash"], "qualified_functions": ["public.stash"]}
	portcullis.decision.verdict == "require_approval" with input as pg_input(["dba"], [do, inner])
}

test_the_dbas_built_ins_run_without_approval_under_the_masks if {
	every f in ["pg_terminate_backend", "pg_cancel_backend", "nextval", "setval", "pg_advisory_lock", "pg_try_advisory_xact_lock", "pg_reload_conf", "pg_stat_reset", "txid_current", "pg_sleep", "lower", "now", "pg_relation_size", "pg_replication_origin_create", "lo_create", "lo_unlink"] {
		masked_call(["dba"], {"functions": [f]}).verdict in {"allow", "mask"}
	}
	every f in ["pg_notify", "pg_create_restore_point", "pg_logical_emit_message", "pg_promote", "brin_summarize_range", "pg_replication_origin_advance", "pg_backup_start", "lo_put", "lo_from_bytea"] {
		masked_call(["dba"], {"functions": [f]}).verdict == "require_approval"
	}
}

test_a_value_computed_from_columns_is_still_denied_to_an_admin_built_in if {
	d := masked_call(["dba"], {"functions": ["setval"], "arguments": [{"function": "setval", "columns": ["note"], "tables": []}]})
	d.verdict == "deny"
}

test_a_cast_to_a_type_the_database_defines_needs_approval_under_the_masks if {
	d := user_code_decision(["dba"], {"type_names": ["dd"]})
	d.verdict == "require_approval"
	"type dd is defined in this database: a cast to it runs its code (a domain's CHECK), so it needs approval for everyone not in pii-readers" in d.reasons
	user_code_decision(["dba"], {"type_names": ["public.dd"]}).verdict == "require_approval"
	user_code_decision(["dba"], {"type_names": ["text", "Dd"]}).verdict != "require_approval"
	user_code_decision(["dba", "pii-readers"], {"type_names": ["dd"]}).verdict == "allow"
}

test_a_view_running_the_databases_code_needs_approval_under_the_masks if {
	every t in ["v_wipe", "public.v_wipe", "orders.public.v_wipe"] {
		d := user_code_decision(["dba"], {"tables": [t]})
		d.verdict == "require_approval"
		"view public.v_wipe runs public.innocent, the database's code, which may keep what it reads past the masks: reading it needs approval for everyone not in pii-readers" in d.reasons
	}
	user_code_decision(["dba"], {"tables": ["v_sum"]}).verdict != "require_approval"
	user_code_decision(["dba", "pii-readers"], {"tables": ["v_wipe"]}).verdict == "allow"
}

write_code_input(groups, statement) := {
	"identity": {"subject": "alice@example.com", "groups": groups},
	"connection": {"name": "orders-db", "type": "postgres"},
	"command": {"kind": "postgres.query", "raw": "-", "postgres": {
		"statements": [statement],
		"has": pg_every_flag, "types": {statement.type: true},
		"write_code": {
			"public.t": {"triggers": ["t_copy on t (public.copy_pw)"]},
			"t": {"triggers": ["t_copy on t (public.copy_pw)"]},
			"public.r": {"rules": ["r_copy on r"]},
			"r": {"rules": ["r_copy on r"]},
			"public.d": {"functions": ["public.f"]},
			"d": {"functions": ["public.f"]},
			"public.ix": {"functions": ["public.f"], "maintenance": ["public.f"]},
			"public.dom": {"functions": ["public.f"], "domains": ["public.f"]},
			"ix": {"functions": ["public.f"], "maintenance": ["public.f"]},
			"public.audit_log": {"functions": ["pg_catalog.nextval", "pg_catalog.now"]},
			"audit_log": {"functions": ["pg_catalog.nextval", "pg_catalog.now"]},
			"public.b": {"functions": ["pg_catalog.pg_notify", "pg_catalog.lower (created after initdb)"]},
		},
	}},
}

write_decision(groups, type, tables) := d if {
	d := portcullis.decision with input as write_code_input(groups, object.union(stmt_with(type, {"has_where": true}), {"tables": tables}))
}

test_a_write_firing_a_trigger_needs_approval_under_the_masks if {
	every t in ["t", "public.t", "orders.public.t"] {
		d := write_decision(["dba"], "insert", [t])
		d.verdict == "require_approval"
		sprintf("writing to %s fires trigger t_copy on t (public.copy_pw), the database's code, which may keep what it reads past the masks: needs approval for everyone not in pii-readers", [t]) in d.reasons
	}
	every type in ["update", "delete", "merge"] {
		write_decision(["dba"], type, ["t"]).verdict == "require_approval"
	}
	copy := object.union(stmt_with("copy", {"direction": "from", "program": false, "stdio": true}), {"tables": ["t"]})
	portcullis.decision.verdict == "require_approval" with input as write_code_input(["dba"], copy)
	write_decision(["dba", "pii-readers"], "insert", ["t"]).verdict == "allow"
	# reading it runs nothing
	write_decision(["dba"], "select", ["t"]).verdict != "require_approval"
}

test_truncate_names_the_trigger_it_fires_to_the_approver if {
	d := write_decision(["dba"], "truncate", ["t"])
	d.verdict == "require_approval"
	"truncating t fires trigger t_copy on t (public.copy_pw), the database's code, which may keep what it reads past the masks: needs approval for everyone not in pii-readers" in d.reasons
	# no trigger: only TRUNCATE's own reason; rules, defaults and constraints do not run
	every table in ["r", "d"] {
		not contains(concat(" ", write_decision(["dba"], "truncate", [table]).reasons), "runs")
	}
}

test_a_write_running_a_rule_or_the_databases_function_needs_approval_under_the_masks if {
	d := write_decision(["dba"], "insert", ["r"])
	d.verdict == "require_approval"
	"writing to r runs rule r_copy on r, which may store what it reads past the masks: needs approval for everyone not in pii-readers" in d.reasons
	e := write_decision(["dba"], "insert", ["d"])
	e.verdict == "require_approval"
	"writing to d runs public.f (a column default, generated column, constraint or index expression), which is not known to have no side effects: needs approval for everyone not in pii-readers" in e.reasons
	write_decision(["dba"], "insert", ["public.b"]).verdict == "require_approval"
}

test_a_write_running_only_allowed_built_ins_or_nothing_runs_under_the_masks if {
	every tables in [["audit_log"], ["public.audit_log"], ["orders"], ["other.t2"]] {
		write_decision(["dba"], "insert", tables).verdict == "mask"
		write_decision(["dba"], "update", tables).verdict == "mask"
	}
}

# what runs with nothing in the statement naming it (p15): a materialized view's query on
# REFRESH, index expressions on VACUUM/ANALYZE/REINDEX, a relation's code copied by CREATE
# TABLE, an event trigger on DDL
tagged(type, tag, tables) := object.union(stmt_with(type, {"has_where": true}), {"tag": tag, "tables": tables})

test_a_refresh_running_the_databases_function_needs_approval_under_the_masks if {
	refresh := tagged("ddl", "RefreshMatViewStmt", ["d"])
	d := portcullis.decision with input as write_code_input(["dba"], refresh)
	d.verdict == "require_approval"
	"writing to d runs public.f (a column default, generated column, constraint or index expression), which is not known to have no side effects: needs approval for everyone not in pii-readers" in d.reasons
	portcullis.decision.verdict == "mask" with input as write_code_input(["dba"], tagged("ddl", "RefreshMatViewStmt", ["audit_log"]))
	portcullis.decision.verdict == "allow" with input as write_code_input(["dba", "pii-readers"], refresh)
}

test_maintenance_running_the_databases_index_code_needs_approval_under_the_masks if {
	every tag in ["VacuumStmt", "ReindexStmt"] {
		d := portcullis.decision with input as write_code_input(["dba"], tagged("maintenance", tag, ["public.ix"]))
		d.verdict == "require_approval"
		sprintf("%s of public.ix runs public.f (an index expression, predicate or operator class, or a statistics expression), which is not known to have no side effects: needs approval for everyone not in pii-readers", [tag]) in d.reasons
		# a column DEFAULT runs on no VACUUM
		portcullis.decision.verdict == "mask" with input as write_code_input(["dba"], tagged("maintenance", tag, ["d"]))
		# naming no relation: every table's
		e := portcullis.decision with input as write_code_input(["dba"], tagged("maintenance", tag, []))
		e.verdict == "require_approval"
		portcullis.decision.verdict == "mask" with input as write_code_input(["dba"], tagged("maintenance", tag, ["audit_log", "t"]))
		portcullis.decision.verdict == "allow" with input as write_code_input(["dba", "pii-readers"], tagged("maintenance", tag, []))
	}
}

test_a_volatile_built_in_given_the_rows_values_needs_approval_under_the_masks if {
	given := object.union(write_code_input(["dba"], tagged("update", "UpdateStmt", ["acct"])), {"command": {"postgres": {"write_code": {"acct": {"functions": ["pg_catalog.set_config (given the rows' values)"]}}}}})
	portcullis.decision.verdict == "require_approval" with input as given
}

test_create_table_copying_a_relations_code_needs_approval_under_the_masks if {
	every t in ["t", "r", "d", "public.d"] {
		d := portcullis.decision with input as write_code_input(["dba"], tagged("ddl", "CreateStmt", ["x", t]))
		d.verdict == "require_approval"
	}
	d := portcullis.decision with input as write_code_input(["dba"], tagged("ddl", "CreateStmt", ["x", "t"]))
	"CREATE TABLE naming t (LIKE, INHERITS, PARTITION OF) gives the new table its code (t_copy on t (public.copy_pw)), which this session's facts do not name for it: needs approval for everyone not in pii-readers" in d.reasons
	portcullis.decision.verdict == "mask" with input as write_code_input(["dba"], tagged("ddl", "CreateStmt", ["x", "audit_log"]))
	portcullis.decision.verdict == "allow" with input as write_code_input(["dba", "pii-readers"], tagged("ddl", "CreateStmt", ["x", "t"]))
}

test_ddl_under_an_event_trigger_needs_approval_under_the_masks if {
	ddl := tagged("ddl", "CreateSeqStmt", ["s"])
	with_trigger := object.union(write_code_input(["dba"], ddl), {"command": {"postgres": {"event_triggers": ["et on ddl_command_end (public.et)"]}}})
	d := portcullis.decision with input as with_trigger
	d.verdict == "require_approval"
	"this database's event trigger et on ddl_command_end (public.et) runs on DDL, the database's code, which may keep what it reads past the masks: DDL needs approval for everyone not in pii-readers" in d.reasons
	# without one, or a statement that fires none
	portcullis.decision.verdict == "mask" with input as write_code_input(["dba"], ddl)
	select := object.union(write_code_input(["dba"], tagged("select", "SelectStmt", ["orders"])), {"command": {"postgres": {"event_triggers": ["et on ddl_command_end (public.et)"]}}})
	portcullis.decision.verdict != "require_approval" with input as select
}

test_acting_as_another_role_needs_approval_under_the_masks if {
	every setting in ["role", "session_authorization"] {
		set := object.union(stmt("set"), {"tag": "VariableSetStmt", "setting": setting, "reset": false, "value": "app"})
		d := portcullis.decision with input as pg_input(["dba"], [set])
		d.verdict == "require_approval"
		sprintf("SET %s under the masks needs approval: acting as another role applies its row-level security policies, whose functions are the database's code", [upper(setting)]) in d.reasons
		verdict(["dba", "pii-readers"], [set]) == "allow"
		reset := object.union(set, {"reset": true})
		verdict(["dba"], [reset]) != "require_approval"
		call := stmt_with("select", {"functions": ["set_config"], "settings": [setting]})
		verdict(["dba"], [call]) == "require_approval"
	}
}

test_create_table_as_taking_a_domains_code_needs_approval_under_the_masks if {
	every tag in ["CreateTableAsStmt", "SelectStmt"] {
		d := portcullis.decision with input as write_code_input(["dba"], tagged("ddl", tag, ["x", "public.dom"]))
		d.verdict == "require_approval"
		sprintf("%s naming public.dom gives the new table the domains of its columns, whose code (public.f) this session's facts do not name for it: needs approval for everyone not in pii-readers", [tag]) in d.reasons
		# the table's other code stays with it
		portcullis.decision.verdict == "mask" with input as write_code_input(["dba"], tagged("ddl", tag, ["x", "t"]))
		portcullis.decision.verdict == "allow" with input as write_code_input(["dba", "pii-readers"], tagged("ddl", tag, ["x", "public.dom"]))
	}
}

# EXPLAIN of a write plans its DEFAULTs and rules, whose IMMUTABLE functions the planner
# runs ahead (p26)
explain_of(explains, tables) := object.union(stmt_with("explain", {"analyze": false}), {"explains": explains, "tables": tables})

test_explaining_a_write_planning_the_databases_code_is_judged_as_the_write if {
	every explains in ["insert", "update", "merge", "execute", "unknown"] {
		every t in ["d", "r", "public.dom"] {
			d := portcullis.decision with input as write_code_input(["readonly"], explain_of(explains, [t]))
			d.verdict == "deny"
			portcullis.decision.verdict == "require_approval" with input as write_code_input(["dba"], explain_of(explains, [t]))
			portcullis.decision.verdict == "allow" with input as write_code_input(["dba", "pii-readers"], explain_of(explains, [t]))
		}
	}
	d := portcullis.decision with input as write_code_input(["readonly"], explain_of("insert", ["d"]))
	"EXPLAIN of a write to d plans public.f, the database's code (a column default or rule the planner runs ahead): readers may not explain it" in d.reasons
	# no explains at all: judged as a write
	no_field := object.union(stmt_with("explain", {"analyze": false}), {"tables": ["r"]})
	portcullis.decision.verdict == "deny" with input as write_code_input(["readonly"], no_field)
}

test_explaining_a_read_or_a_write_running_no_code_is_as_before if {
	every explains in ["select", "declare", "ddl"] {
		portcullis.decision.verdict == "mask" with input as write_code_input(["readonly"], explain_of(explains, ["d"]))
	}
	# triggers do not run while planning; nextval is never folded
	every t in ["t", "audit_log", "orders"] {
		portcullis.decision.verdict == "mask" with input as write_code_input(["readonly"], explain_of("insert", [t]))
		portcullis.decision.verdict == "mask" with input as write_code_input(["dba"], explain_of("insert", [t]))
	}
}
