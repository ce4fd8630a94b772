package portcullis_test

import data.portcullis

# pgattack22: an EXECUTE of a PREPARE (a FETCH of a DECLARE) of the same text is judged
# with it (postgres_lineage.rego, prepared_here, declared_here); storing a setting that
# chooses how values are written for later sessions, or writing the system catalogs (a
# stored setting, a role, a column's name by other means), is denied outside pii-readers
# (postgres.rego); behind a transaction pooler nobody SETs such a setting or LISTENs
# (postgres_pooler.rego).

pg_prepared_here(execute) := [
	stmt_with("prepare", {"tag": "PrepareStmt", "name": "p", "outputs": [{"name": "two", "kind": "expression", "columns": [], "tables": []}], "predicates": []}),
	object.union(stmt_with("execute", {"tag": "ExecuteStmt", "name": "p", "tables": []}), execute),
]

test_an_execute_of_a_prepare_of_the_same_text_is_judged_with_it if {
	d := portcullis.decision with input as pg_input(["readonly"], pg_prepared_here({"prepared_here": true}))
	not d.verdict == "deny"
	every rule in d.mask {
		not rule.derived
	}
}

test_an_execute_of_a_body_prepared_before_masks_every_computed_column if {
	d := portcullis.decision with input as pg_input(["readonly"], pg_prepared_here({}))
	d.verdict == "mask"
	{"derived": true, "strategy": "redact"} in d.mask
}

stored(tag, type, name, extra) := object.union(stmt_with(type, {"tag": tag, "tables": [], "stored_setting": name}), extra)

test_storing_a_writing_setting_is_denied_outside_pii_readers if {
	every s in [
		stored("AlterRoleSetStmt", "grant", "bytea_output", {}),
		stored("AlterDatabaseSetStmt", "ddl", "extra_float_digits", {}),
		stored("AlterDatabaseSetStmt", "ddl", "lc_monetary", {}),
		stored("AlterSystemStmt", "alter_system", "lc_numeric", {}),
	] {
		d := portcullis.decision with input as pg_input(["dba"], [s])
		d.verdict == "deny"
		sprintf("%s stores %s for the sessions that start later, a setting that chooses how values are written where the value detectors read them: denied to everyone not in pii-readers", [s.tag, upper(s.stored_setting)]) in d.reasons
		verdict(["readonly"], [s]) == "deny"
	}
}

test_storing_other_settings_or_removing_one_still_asks_an_approver if {
	every s in [
		stored("AlterRoleSetStmt", "grant", "bytea_output", {"stored_reset": true}),
		stored("AlterDatabaseSetStmt", "ddl", "all", {"stored_reset": true}),
		stored("AlterRoleSetStmt", "grant", "work_mem", {}),
	] {
		verdict(["dba"], [s]) == "require_approval"
	}
	verdict(["dba", "pii-readers"], [stored("AlterDatabaseSetStmt", "ddl", "bytea_output", {})]) == "require_approval"
}

test_pooled_set_of_writing_settings_denied_for_everyone if {
	every name in ["bytea_output", "extra_float_digits", "lc_monetary", "lc_numeric"] {
		s := stmt_with("set", {"setting": name, "value": "hex", "reset": false})
		pooled_verdict(["dba", "pii-readers"], [s]) == "deny"
		sprintf("SET %s behind a transaction pooler: the setting chooses how values are written, and a session-level change would reach other sessions' transactions", [upper(name)]) in pooled_reasons(["dba", "pii-readers"], [s])
		called := stmt_with("select", {"settings": [name]})
		pooled_verdict(["dba", "pii-readers"], [called]) == "deny"
		# unpooled, a pii-reader's own session keeps its choice
		verdict(["dba", "pii-readers"], [s]) == "allow"
	}
	reset := stmt_with("set", {"setting": "bytea_output", "reset": true})
	pooled_verdict(["dba", "pii-readers"], [reset]) == "allow"
}

pg_declared_here(fetch) := [
	stmt_with("declare", {"tag": "DeclareCursorStmt", "cursor": "c", "outputs": [{"name": "two", "kind": "expression", "columns": [], "tables": []}], "predicates": []}),
	object.union(stmt_with("fetch", {"tag": "FetchStmt", "cursor": "c", "tables": []}), fetch),
]

test_a_fetch_of_a_declare_of_the_same_text_is_judged_with_it if {
	d := portcullis.decision with input as pg_input(["readonly"], pg_declared_here({"declared_here": true}))
	not d.verdict == "deny"
	every rule in d.mask {
		not rule.derived
	}
	e := portcullis.decision with input as pg_input(["readonly"], pg_declared_here({}))
	{"derived": true, "strategy": "redact"} in e.mask
}

test_pooled_listen_denied_for_everyone if {
	s := stmt_with("listen", {"tag": "ListenStmt", "tables": []})
	pooled_verdict(["dba", "pii-readers"], [s]) == "deny"
	"LISTEN behind a transaction pooler: it stays on the server connection, and what arrives for it would reach the next session whose transaction runs there" in pooled_reasons(["dba", "pii-readers"], [s])
	verdict(["dba", "pii-readers"], [s]) == "allow"
}

catalog_write(type, tables) := stmt_with(type, {"tag": "X", "tables": tables, "has_where": true, "direction": "from"})

test_writing_a_system_catalog_is_denied_outside_pii_readers if {
	every s in [
		catalog_write("insert", ["pg_db_role_setting"]),
		catalog_write("update", ["pg_catalog.pg_authid"]),
		catalog_write("delete", ["mydb.pg_catalog.pg_proc", "pg_catalog.pg_proc"]),
		catalog_write("merge", ["PG_ATTRIBUTE"]),
		catalog_write("copy", ["pg_catalog.pg_class"]),
		catalog_write("truncate", ["pg_db_role_setting"]),
	] {
		verdict(["dba"], [s]) == "deny"
		verdict(["readonly"], [s]) == "deny"
		verdict(["dba", "pii-readers"], [s]) == "require_approval"
	}
	# reading a catalog, or writing a table of another schema, is not writing one
	verdict(["dba"], [catalog_write("update", ["public.orders"])]) != "deny"
	verdict(["dba"], [catalog_write("update", ["public.pg_orders"])]) != "deny"
}

test_writing_through_a_view_over_a_system_catalog_is_denied if {
	s := catalog_write("insert", ["settings_view"])
	i := object.union(pg_input(["dba"], [s]), {"command": {"postgres": {"relation_sources": {"public.settings_view": ["pg_catalog.pg_db_role_setting"]}}}})
	d := portcullis.decision with input as i
	d.verdict == "deny"
}
