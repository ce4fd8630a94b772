package portcullis_test

import data.portcullis

# Statements as pdp/sql/lineage.py gives them; pg_input and stmt come from postgres_test.rego.
selecting(outputs, predicates) := object.union(stmt("select"), {"outputs": outputs, "predicates": predicates})

out(name, kind, columns) := {"name": name, "kind": kind, "columns": columns, "tables": []}

row(name, tables) := {"name": name, "kind": "whole_row", "columns": [], "tables": tables}

lineage_decision(groups, s) := d if {
	d := portcullis.decision with input as pg_input(groups, [s])
}

derived := {"derived": true, "strategy": "redact"}

test_plain_sensitive_output_is_masked_by_name if {
	d := lineage_decision(["readonly"], selecting([out("email", "plain", ["email"])], []))
	d.verdict == "mask"
	{"field": "email", "strategy": "redact"} in d.mask
	not derived in d.mask
	d.cache_key == "shape"
}

test_expression_over_sensitive_column_is_masked_whole if {
	d := lineage_decision(["readonly"], selecting([out("upper", "expression", ["email"])], []))
	d.verdict == "mask"
	derived in d.mask
	"output upper (expression) derives from sensitive column email: masked whole" in d.reasons
	d.cache_key == "shape"
}

test_aggregate_over_sensitive_column_is_masked_whole_for_dba if {
	d := lineage_decision(["dba"], selecting([out("", "aggregate", ["phone"])], []))
	d.verdict == "mask"
	derived in d.mask
	"an unnamed output (aggregate) derives from sensitive column phone: masked whole" in d.reasons
}

keeping(name, kind, columns) := object.union(out(name, kind, columns), {"keeps": true})

test_expression_keeping_other_columns_needs_no_derived_mask if {
	d := lineage_decision(["readonly"], selecting([keeping("total", "expression", ["amount"]), keeping("max", "aggregate", ["note"]), out("id", "plain", ["id"])], []))
	d.verdict == "mask"
	not derived in d.mask
}

test_expression_changing_other_columns_is_masked_whole if {
	d := lineage_decision(["readonly"], selecting([out("translate", "expression", ["note"]), out("id", "plain", ["id"])], []))
	d.verdict == "mask"
	derived in d.mask
	"output translate (expression) is computed from column(s) note in a way that may change their text, which the value detectors then cannot read: masked whole" in d.reasons
	d.cache_key == "shape"
}

test_expression_changing_other_columns_is_masked_whole_for_dba_not_pii_readers if {
	s := selecting([out("", "aggregate", ["note", "name"])], [])
	derived in lineage_decision(["dba"], s).mask
	not derived in lineage_decision(["pii-readers"], s).mask
}

test_expression_keeping_a_sensitive_column_is_still_masked_whole if {
	d := lineage_decision(["readonly"], selecting([keeping("coalesce", "expression", ["email"])], []))
	derived in d.mask
}

test_set_operation_over_star_is_masked_whole if {
	o := {"name": "", "kind": "expression", "columns": [], "tables": ["a", "b"]}
	d := lineage_decision(["analyst"], selecting([o], []))
	derived in d.mask
	some r in d.reasons
	contains(r, "computed from columns of a, b")
}

test_whole_row_is_denied if {
	d := lineage_decision(["readonly"], selecting([row("row_to_json", ["public.customers"])], []))
	d.verdict == "deny"
	some r in d.reasons
	contains(r, "output row_to_json is a whole row of public.customers")
	contains(r, "JSON/XML")
}

test_whole_row_is_denied_for_dba_too if {
	lineage_decision(["dba"], selecting([row("c", ["customers"])], [])).verdict == "deny"
}

test_explain_outputs_are_a_plan_not_values if {
	s := object.union(stmt("explain"), {"analyze": false, "outputs": [row("c", ["customers"])], "predicates": []})
	lineage_decision(["readonly"], s).verdict == "mask"
}

test_pii_readers_see_everything if {
	s := selecting(
		[row("c", ["customers"]), out("upper", "expression", ["email"])],
		[{"column": "email", "use": "pattern"}, {"column": "*", "use": "order"}],
	)
	d := lineage_decision(["readonly", "pii-readers"], s)
	d.verdict == "allow"
	count(d.mask) == 0
}

test_pattern_range_order_and_other_predicates_are_denied if {
	some use in ["pattern", "range", "order", "other"]
	d := lineage_decision(["readonly"], selecting([], [{"column": "ssn", "use": use}]))
	d.verdict == "deny"
	some r in d.reasons
	contains(r, sprintf("%s use of sensitive column ssn", [use]))
}

test_every_oracle_use_is_denied if {
	every use in ["pattern", "range", "order", "other"] {
		lineage_decision(["dba"], selecting([], [{"column": "email", "use": use}])).verdict == "deny"
	}
}

test_equality_group_and_join_are_allowed if {
	every use in ["equality", "group", "join"] {
		lineage_decision(["readonly"], selecting([], [{"column": "email", "use": use}])).verdict == "mask"
	}
}

test_a_sequence_of_a_sensitive_column_is_denied if {
	d := lineage_decision(["readonly"], selecting([out("id", "plain", ["id"])], [{"column": "ssn", "use": "sequence"}]))
	d.verdict == "deny"
	"the rows come back in the order of the values of column ssn or of their hashes (grouped or joined on beside another output), which answers how those values compare: denied to everyone not in pii-readers; name every output in ORDER BY, or leave the other outputs out" in d.reasons
	lineage_decision(["dba"], selecting([], [{"column": "*", "use": "sequence"}])).verdict == "deny"
}

test_a_sequence_of_other_columns_is_allowed if {
	every column in ["id", "note", "customer_id"] {
		lineage_decision(["readonly"], selecting([out("id", "plain", ["id"])], [{"column": column, "use": "sequence"}])).verdict != "deny"
	}
	d := portcullis.decision with input as pg_input(["readonly", "pii-readers"], [selecting([], [{"column": "ssn", "use": "sequence"}])])
	d.verdict != "deny"
}

test_equality_is_denied_when_the_oracle_setting_says_so if {
	s := selecting([], [{"column": "email", "use": "equality"}])
	d := portcullis.decision with input as pg_input(["readonly"], [s]) with data.portcullis.oracle.equality as false
	d.verdict == "deny"
	"equality on sensitive column email is denied: the oracle setting allows no equality tests" in d.reasons
}

test_a_sensitive_value_in_a_computation_that_can_fail_is_denied if {
	d := lineage_decision(["readonly"], selecting([], [{"column": "email", "use": "partial"}]))
	d.verdict == "deny"
	some r in d.reasons
	contains(r, "sensitive column email goes into a computation that can fail")
}

test_a_pii_reader_may_compute_anything_over_sensitive_values if {
	lineage_decision(["pii-readers"], selecting([], [{"column": "email", "use": "partial"}])).verdict != "deny"
}

test_predicates_on_other_columns_are_allowed if {
	s := selecting([], [{"column": "name", "use": "pattern"}, {"column": "created_at", "use": "range"}])
	lineage_decision(["readonly"], s).verdict == "mask"
}

test_whole_row_in_a_predicate_is_denied if {
	d := lineage_decision(["readonly"], selecting([], [{"column": "*", "use": "other"}]))
	d.verdict == "deny"
	some r in d.reasons
	contains(r, "a whole row used in a condition")
}

test_do_block_reading_sensitive_columns_is_denied if {
	inner := object.union(selecting([out("email", "plain", ["email"])], []), {"nested": true})
	inner_row := object.union(selecting([{"name": "", "kind": "star", "columns": [], "tables": ["customers"]}], []), {"nested": true})
	do := object.union(stmt("do"), {"opaque": false})
	d := portcullis.decision with input as pg_input(["dba"], [do, inner])
	d.verdict == "deny"
	"a DO block reads sensitive column email: notices and errors that could carry it are not masked" in d.reasons
	d2 := portcullis.decision with input as pg_input(["dba"], [do, inner_row])
	d2.verdict == "deny"
}

test_a_dba_do_block_reading_no_column_runs if {
	inner := object.union(selecting([out("", "expression", [])], []), {"nested": true})
	do := object.union(stmt("do"), {"opaque": false})
	d := portcullis.decision with input as pg_input(["dba"], [do, inner])
	d.verdict == "mask"
}

test_a_dba_do_block_reading_any_column_is_denied_outside_pii_readers if {
	# translate(note, ...) into a variable, then RAISE or set_config: a card past the detectors
	reading := object.union(selecting([out("translate", "expression", ["note"])], [{"column": "id", "use": "range"}]), {"nested": true, "tables": []})
	inner := object.union(reading, {"tables": ["customers"]})
	do := object.union(stmt("do"), {"opaque": false})
	d := portcullis.decision with input as pg_input(["dba"], [do, inner])
	d.verdict == "deny"
	"a DO block reads column(s) note: its code can print, set or store what it makes of them where neither lineage nor the value detectors follow; denied to everyone not in pii-readers" in d.reasons
	rows := object.union(selecting([row("", ["orders"])], []), {"nested": true})
	portcullis.decision.verdict == "deny" with input as pg_input(["dba"], [do, rows])
	portcullis.decision.verdict == "allow" with input as pg_input(["dba", "pii-readers"], [do, inner])
	# a variable's name reads as a column: a statement reading no relation is not denied
	portcullis.decision.verdict == "mask" with input as pg_input(["dba"], [do, reading])
}

test_fetch_and_execute_mask_computed_columns if {
	every kind in ["fetch", "execute"] {
		i := {
			"identity": {"subject": "alice@example.com", "groups": ["readonly"]},
			"connection": {"name": "orders-db", "type": "postgres"},
			"command": {"kind": "postgres.query", "raw": "FETCH 10 FROM c", "postgres": {"statements": [{"type": kind, "tag": "FetchStmt", "tables": [], "functions": [], "qualified_functions": []}], "has": pg_every_flag, "types": {kind: true}}},
		}
		d := portcullis.decision with input as i
		d.verdict == "mask"
		{"derived": true, "strategy": "redact"} in d.mask
	}
}

# --- view columns that carry sensitive columns under other names ----------------------

with_views(groups, s, views) := d if {
	i := object.union(pg_input(groups, [s]), {"command": {"postgres": {"view_columns": views}}})
	d := portcullis.decision with input as i
}

test_a_pattern_on_a_view_column_renaming_a_sensitive_column_is_denied if {
	s := selecting([out("?column?", "expression", [])], [{"column": "contact", "use": "pattern"}])
	d := with_views(["readonly"], s, {"contact": ["phone"]})
	d.verdict == "deny"
	"pattern use of sensitive column contact in a condition or ordering answers questions about its values: denied to everyone not in pii-readers" in d.reasons
}

test_order_and_range_on_a_computed_view_column_are_denied if {
	every use in ["order", "range", "other"] {
		s := selecting([], [{"column": "shout", "use": use}])
		with_views(["dba"], s, {"shout": ["email", "id"]}).verdict == "deny"
	}
}

test_an_expression_over_a_renaming_view_column_is_masked_whole if {
	d := with_views(["readonly"], selecting([out("upper", "expression", ["contact"])], []), {"contact": ["phone"]})
	d.verdict == "mask"
	derived in d.mask
	"output upper (expression) derives from sensitive column contact: masked whole" in d.reasons
}

test_a_view_column_of_unknown_origin_counts_as_sensitive if {
	s := selecting([], [{"column": "v1", "use": "range"}])
	with_views(["readonly"], s, {"v1": ["*"]}).verdict == "deny"
}

test_view_columns_carrying_only_plain_columns_stay_plain if {
	s := selecting([keeping("max", "aggregate", ["ident"])], [{"column": "ident", "use": "range"}])
	d := with_views(["readonly"], s, {"ident": ["id"], "contact": ["phone"]})
	d.verdict == "mask"
	not derived in d.mask
}

test_pii_readers_may_search_view_columns if {
	s := selecting([], [{"column": "contact", "use": "pattern"}])
	with_views(["pii-readers"], s, {"contact": ["phone"]}).verdict == "allow"
}

test_a_whole_row_ordered_by_position_over_star_is_denied if {
	d := lineage_decision(["readonly"], selecting([], [{"column": "*", "use": "order"}]))
	d.verdict == "deny"
	some r in d.reasons
	contains(r, "a whole row used in a condition or ordering (order)")
}

test_a_whole_row_grouped_is_allowed_like_any_grouping if {
	lineage_decision(["readonly"], selecting([], [{"column": "*", "use": "group"}])).verdict == "mask"
}

# A view column is looked up by its own name: another view's sensitive column, a view map
# that is not an object, or view columns carrying nothing listed leave a column plain.
test_a_view_column_is_sensitive_only_under_its_own_name if {
	s := selecting([], [{"column": "label", "use": "pattern"}])
	with_views(["readonly"], s, {"contact": ["phone"], "label": ["name"]}).verdict == "mask"
	with_views(["readonly"], s, {"label": ["name", "ssn"]}).verdict == "deny"
}

test_view_columns_that_are_not_an_object_add_no_sensitive_column if {
	s := selecting([], [{"column": "contact", "use": "pattern"}])
	with_views(["readonly"], s, ["contact"]).verdict == "mask"
	with_views(["readonly"], s, "contact").verdict == "mask"
}

test_an_allowed_predicate_use_of_a_sensitive_column_is_not_judged_by_its_column if {
	every use in ["join", "group"] {
		s := selecting([], [{"column": "email", "use": use}])
		lineage_decision(["readonly"], s).verdict == "mask"
	}
}

# The two predicate rules together deny the uses that answer questions about a sensitive
# column's values: equality only when the oracle setting forbids it.
test_equality_on_a_sensitive_column_is_allowed_when_the_oracle_setting_allows_it if {
	s := {"type": "select", "tag": "SelectStmt", "tables": ["customers"], "functions": [], "outputs": [], "predicates": [{"column": "email", "use": "equality"}]}
	d := portcullis.decision with input as pg_input(["readonly"], [s]) with data.portcullis.oracle.equality as true
	d.verdict == "mask"
	d2 := portcullis.decision with input as pg_input(["readonly"], [s]) with data.portcullis.oracle as {}
	d2.verdict == "deny"
}

writing(type, writes) := object.union(stmt(type), {"outputs": [], "predicates": [], "writes": writes})

test_storing_a_sensitive_column_is_denied_for_dba if {
	d := lineage_decision(["dba"], writing("insert", [out("", "plain", ["password"])]))
	d.verdict == "deny"
	"the statement stores values of sensitive column password where they would be read without its mask: denied to everyone not in pii-readers" in d.reasons
}

test_storing_all_columns_of_a_table_is_denied if {
	d := lineage_decision(["dba"], writing("ddl", [{"name": "", "kind": "star", "columns": [], "tables": ["customers"]}]))
	d.verdict == "deny"
	some r in d.reasons
	contains(r, "stores whole rows or all columns of customers")
}

test_storing_changed_text_is_denied if {
	d := lineage_decision(["dba"], writing("update", [out("", "expression", ["note"])]))
	d.verdict == "deny"
	some r in d.reasons
	contains(r, "stores text computed from column(s) note")
}

test_storing_kept_values_of_other_columns_is_not_denied_by_lineage if {
	d := lineage_decision(["dba"], writing("update", [keeping("", "expression", ["total"]), out("", "plain", ["name"])]))
	not "deny" == d.verdict
	every r in d.reasons {
		not contains(r, "the statement stores")
	}
}

test_pii_readers_may_store_sensitive_columns if {
	s := writing("insert", [out("", "plain", ["password"]), out("", "expression", ["note"])])
	d := lineage_decision(["pii-readers"], s)
	every r in d.reasons {
		not contains(r, "the statement stores")
	}
}

test_a_relation_named_like_a_catalog_table_is_denied if {
	s := object.union(stmt("ddl"), {"shadows": ["pg_type"]})
	d := lineage_decision(["dba"], s)
	d.verdict == "deny"
	"relation name pg_type is a system catalog table's: a relation of that name outside pg_catalog would be read in its place; denied to everyone not in pii-readers" in d.reasons
}

test_listen_is_denied_to_everyone_not_in_pii_readers if {
	d := lineage_decision(["dba"], stmt("listen"))
	d.verdict == "deny"
	"LISTEN is denied to everyone not in pii-readers: notification payloads are other sessions' text, which arrives unmasked" in d.reasons
	lineage_decision(["readonly"], stmt("listen")).verdict == "deny"
	lineage_decision(["pii-readers"], stmt("listen")).verdict == "allow"
}

ddl(tag, extra) := object.union({"type": "ddl", "tag": tag, "tables": ["customers"], "functions": []}, extra)

test_code_changing_ddl_needs_approval_for_a_dba_under_the_masks if {
	every s in [
		ddl("CreateFunctionStmt", {}), ddl("CreateTrigStmt", {}), ddl("RuleStmt", {}),
		ddl("RenameStmt", {"object": "table"}), ddl("CommentStmt", {}), ddl("ViewStmt", {}),
		ddl("AlterTableStmt", {"alter_commands": ["AddColumn"], "value_expressions": true}),
		ddl("AlterTableStmt", {"alter_commands": ["AlterColumnType"]}),
		ddl("IndexStmt", {"value_expressions": true}),
		{"type": "other", "tag": "SecLabelStmt", "tables": [], "functions": []},
	] {
		lineage_decision(["dba"], s).verdict == "require_approval"
		lineage_decision(["dba", "pii-readers"], s).verdict == "allow"
		lineage_decision(["dba"], s).verdict != "allow"
	}
}

test_listed_ddl_runs_for_a_dba_under_the_masks if {
	every s in [
		ddl("CreateStmt", {}), ddl("IndexStmt", {}), ddl("CreateSeqStmt", {}),
		ddl("AlterTableStmt", {"alter_commands": ["AddColumn", "SetNotNull"]}),
	] {
		lineage_decision(["dba"], s).verdict == "mask"
	}
}

test_renaming_a_sensitive_column_needs_approval_for_every_dba if {
	s := ddl("RenameStmt", {"object": "column", "renamed_column": "password"})
	lineage_decision(["dba", "pii-readers"], s).verdict == "require_approval"
	lineage_decision(["dba"], s).verdict == "require_approval"
	lineage_decision(["dba", "pii-readers"], ddl("RenameStmt", {"object": "column", "renamed_column": "nickname"})).verdict == "allow"
}

test_column_statistics_are_denied_to_everyone_under_the_masks if {
	every t in ["pg_statistic", "pg_catalog.pg_stats", "PG_STATS_EXT", "pg_catalog.pg_statistic_ext_data", "pg_stats_ext_exprs"] {
		s := object.union(selecting([out("stavalues1", "plain", ["stavalues1"])], []), {"tables": [t]})
		d := portcullis.decision with input as pg_input(["dba"], [s])
		d.verdict == "deny"
		sprintf("%s holds sample values of every column, sensitive ones included: denied to everyone not in pii-readers", [t]) in d.reasons
		portcullis.decision.verdict == "allow" with input as pg_input(["dba", "pii-readers"], [s])
	}
	other := object.union(selecting([out("relname", "plain", ["relname"])], []), {"tables": ["pg_catalog.pg_class"]})
	portcullis.decision.verdict == "mask" with input as pg_input(["dba"], [other])
}

test_the_configuration_files_settings_are_denied_to_everyone_under_the_masks if {
	every t in ["pg_file_settings", "pg_catalog.pg_file_settings", "PG_FILE_SETTINGS"] {
		s := object.union(selecting([out("name", "plain", ["name"])], [{"column": "setting", "use": "pattern"}]), {"tables": [t]})
		d := portcullis.decision with input as pg_input(["dba"], [s])
		d.verdict == "deny"
		sprintf("%s holds the configuration files' settings as written (ALTER SYSTEM's among them: a password in primary_conninfo), which a condition on them spells out: denied to everyone not in pii-readers", [t]) in d.reasons
		portcullis.decision.verdict == "allow" with input as pg_input(["dba", "pii-readers"], [s])
	}
}

test_toast_tables_are_denied_to_everyone_under_the_masks if {
	every t in ["pg_toast.pg_toast_16385", "PG_TOAST_16385", "pg_toast_temp_3.pg_toast_99"] {
		s := object.union(selecting([out("chunk_data", "plain", ["chunk_data"])], []), {"tables": [t]})
		every groups in [["readonly"], ["dba"]] {
			d := portcullis.decision with input as pg_input(groups, [s])
			d.verdict == "deny"
			sprintf("%s is a TOAST table: its chunks are the long values of its table's columns, under no column's name; denied to everyone not in pii-readers", [t]) in d.reasons
		}
		portcullis.decision.verdict == "allow" with input as pg_input(["dba", "pii-readers"], [s])
	}
}

test_a_unique_index_needs_approval_under_the_masks if {
	unique := object.union(stmt_with("ddl", {"tag": "IndexStmt", "unique": true}), {"tables": ["customers"]})
	d := portcullis.decision with input as pg_input(["dba"], [unique])
	d.verdict == "require_approval"
	plain := object.union(stmt_with("ddl", {"tag": "IndexStmt"}), {"tables": ["customers"]})
	portcullis.decision.verdict != "require_approval" with input as pg_input(["dba"], [plain])
}

test_an_index_on_a_sensitive_column_needs_approval_under_the_masks if {
	on_password := object.union(stmt_with("ddl", {"tag": "IndexStmt", "index_columns": ["id", "password"]}), {"tables": ["customers"]})
	d := portcullis.decision with input as pg_input(["dba"], [on_password])
	d.verdict == "require_approval"
	"an index on sensitive column password under the masks needs approval: a read in its order shows the column's order" in d.reasons
	portcullis.decision.verdict == "allow" with input as pg_input(["dba", "pii-readers"], [on_password])
	on_id := object.union(stmt_with("ddl", {"tag": "IndexStmt", "index_columns": ["id"]}), {"tables": ["customers"]})
	portcullis.decision.verdict != "require_approval" with input as pg_input(["dba"], [on_id])
}

test_planner_settings_need_approval_under_the_masks if {
	seqscan := stmt_with("set", {"setting": "enable_seqscan", "value": "off", "reset": false})
	d := portcullis.decision with input as pg_input(["dba"], [seqscan])
	d.verdict == "require_approval"
	"SET ENABLE_SEQSCAN under the masks needs approval: it steers reads to an index, whose order shows a sensitive column's" in d.reasons
	portcullis.decision.verdict == "allow" with input as pg_input(["dba", "pii-readers"], [seqscan])
	by_call := object.union(stmt_with("select", {"settings": ["random_page_cost"]}), {"tables": []})
	portcullis.decision.verdict == "require_approval" with input as pg_input(["dba"], [by_call])
	reset := stmt_with("set", {"setting": "enable_seqscan", "reset": true})
	portcullis.decision.verdict != "require_approval" with input as pg_input(["dba"], [reset])
	timeout := stmt_with("set", {"setting": "statement_timeout", "value": "5s", "reset": false})
	portcullis.decision.verdict != "require_approval" with input as pg_input(["dba"], [timeout])
}

test_cluster_needs_approval_under_the_masks if {
	cluster := stmt_with("maintenance", {"tag": "ClusterStmt"})
	d := portcullis.decision with input as pg_input(["dba"], [cluster])
	d.verdict == "require_approval"
	"CLUSTER under the masks needs approval: it stores a table's rows in an index's order, which any read of them then shows" in d.reasons
	portcullis.decision.verdict == "allow" with input as pg_input(["dba", "pii-readers"], [cluster])
	vacuum := stmt_with("maintenance", {"tag": "VacuumStmt"})
	portcullis.decision.verdict != "require_approval" with input as pg_input(["dba"], [vacuum])
}

test_explain_analyze_needs_approval_under_the_masks if {
	analyzed := object.union(stmt_with("explain", {"tag": "ExplainStmt", "analyze": true, "explains": "select"}), {"tables": ["customers"]})
	d := portcullis.decision with input as pg_input(["dba"], [analyzed])
	d.verdict == "require_approval"
	"EXPLAIN ANALYZE under the masks needs approval: the sizes it prints (memory, disk, buffers a sort or hash took) measure values the statement computed, which the masks would hide" in d.reasons
	portcullis.decision.verdict == "allow" with input as pg_input(["dba", "pii-readers"], [analyzed])
	planned := object.union(stmt_with("explain", {"tag": "ExplainStmt", "analyze": false, "explains": "select"}), {"tables": ["customers"]})
	portcullis.decision.verdict != "require_approval" with input as pg_input(["dba"], [planned])
	no_table := stmt_with("explain", {"tag": "ExplainStmt", "analyze": true, "explains": "select", "tables": []})
	portcullis.decision.verdict != "require_approval" with input as pg_input(["dba"], [no_table])
}

# --- functions the database defines, called without their schema ----------------------

own_function_query(groups, unqualified, qualified) := {
	"identity": {"subject": "alice@example.com", "groups": groups},
	"connection": {"name": "orders-db", "type": "postgres"},
	"command": {"kind": "postgres.query", "raw": "select get_pw()", "postgres": {
		"statements": [stmt_with("select", {
			"functions": ["get_pw"],
			"unqualified_functions": unqualified,
			"qualified_functions": qualified,
		})],
		"has": pg_every_flag, "types": {"select": true},
		"user_functions": ["get_pw"],
	}},
}

test_the_databases_function_called_without_its_schema_is_denied_under_masks if {
	every groups in [["dba"], ["readonly"]] {
		d := portcullis.decision with input as own_function_query(groups, ["get_pw"], [])
		d.verdict == "deny"
		"function get_pw is defined in this database and called without its schema, so what it returns cannot be followed to the columns it reads: call it with its schema (its result is then masked whole)" in d.reasons
	}
	e := portcullis.decision with input as own_function_query(["dba", "pii-readers"], ["get_pw"], [])
	e.verdict == "allow"
}

# ... and called with its schema it runs once approved (what it keeps or sends besides its
# result is read past the masks: postgres_user_code.rego), its result masked whole
test_the_databases_function_called_with_its_schema_runs_for_a_masked_dba_once_approved if {
	d := portcullis.decision with input as own_function_query(["dba"], [], ["public.get_pw"])
	d.verdict == "require_approval"
	portcullis.decision.verdict == "allow" with input as own_function_query(["dba", "pii-readers"], [], ["public.get_pw"])
}

# --- operators the database defines -------------------------------------------------

own_operator_query(groups, operators) := {
	"identity": {"subject": "alice@example.com", "groups": groups},
	"connection": {"name": "orders-db", "type": "postgres"},
	"command": {"kind": "postgres.query", "raw": "select 1 ### 1", "postgres": {
		"statements": [stmt_with("select", {"operators": operators})],
		"has": pg_every_flag, "types": {"select": true},
		"user_operators": ["###"],
	}},
}

test_the_databases_operator_is_denied_under_masks if {
	d := portcullis.decision with input as own_operator_query(["dba"], ["###"])
	d.verdict == "deny"
	"operator ### is also defined in this database outside pg_catalog, so what it returns cannot be followed to the columns its function reads: denied outside pii-readers" in d.reasons
	e := portcullis.decision with input as own_operator_query(["dba"], ["public.###"])
	e.verdict == "deny"
	"operator public.### is not in pg_catalog, so what it returns cannot be followed to the columns its function reads: denied outside pii-readers" in e.reasons
	f := portcullis.decision with input as own_operator_query(["dba"], ["pg_catalog.+", "+"])
	f.verdict == "mask"
	g := portcullis.decision with input as own_operator_query(["dba", "pii-readers"], ["###", "public.###"])
	g.verdict == "allow"
}

# --- casts the database defines ------------------------------------------------------

own_cast_query(groups, casts) := {
	"identity": {"subject": "alice@example.com", "groups": groups},
	"connection": {"name": "orders-db", "type": "postgres"},
	"command": {"kind": "postgres.query", "raw": "select 1::text", "postgres": {
		"statements": [stmt("select")],
		"has": pg_every_flag, "types": {"select": true},
		"user_casts": casts,
	}},
}

test_an_unreviewed_cast_of_the_database_denies_a_masked_dba if {
	cast := "integer -> text by public.int_pw (explicit)"
	d := portcullis.decision with input as own_cast_query(["dba"], [cast])
	d.verdict == "deny"
	"this database defines the cast integer -> text by public.int_pw (explicit) outside pg_catalog; a statement may run it without naming it, and what its function returns cannot be followed to the columns it reads (list it in postgres.reviewed_casts once reviewed)" in d.reasons
	e := portcullis.decision with input as own_cast_query(["dba"], [cast]) with data.portcullis.postgres.reviewed_casts as {cast: true}
	e.verdict == "mask"
	f := portcullis.decision with input as own_cast_query(["dba", "pii-readers"], [cast])
	f.verdict == "allow"
}

calling(arguments) := object.union(stmt("select"), {"outputs": [], "predicates": [], "functions": [a.function | some a in arguments], "arguments": arguments})

test_a_changed_value_given_to_a_function_that_may_keep_it_is_denied if {
	every groups in [["dba"], ["readonly"]] {
		d := lineage_decision(groups, calling([{"function": "setval", "columns": ["note"], "tables": []}]))
		d.verdict == "deny"
		some r in d.reasons
		contains(r, "function setval may keep what it is given where no mask reads it")
	}
	d := lineage_decision(["dba"], calling([{"function": "public.f", "columns": [], "tables": ["customers"]}]))
	some r in d.reasons
	contains(r, "given a value computed from whole rows of customers")
}

test_a_changed_value_given_to_a_function_readers_may_call_is_not_denied_by_lineage if {
	d := lineage_decision(["dba"], calling([{"function": "upper", "columns": ["note"], "tables": []}]))
	not "deny" == d.verdict
}

test_pii_readers_give_functions_what_they_like if {
	d := lineage_decision(["dba", "pii-readers"], calling([{"function": "setval", "columns": ["note"], "tables": []}]))
	not "deny" == d.verdict
}

test_a_do_blocks_fetch_is_denied_outside_pii_readers if {
	do := object.union(stmt("do"), {"opaque": false})
	fetch := object.union(stmt("fetch"), {"tag": "PLpgSQL_stmt_fetch", "tables": [], "nested": true})
	d := portcullis.decision with input as pg_input(["dba"], [do, fetch])
	d.verdict == "deny"
	some r in d.reasons
	contains(r, "a DO block FETCHes (or MOVEs through) a cursor's rows")
	d2 := portcullis.decision with input as pg_input(["dba", "pii-readers"], [do, fetch])
	d2.verdict == "allow"
}

test_a_do_blocks_value_of_a_function_outside_pg_catalog_is_denied_outside_pii_readers if {
	do := object.union(stmt("do"), {"opaque": false})
	assign := object.union(stmt("select"), {"tables": [], "nested": true, "outputs": [{"name": "pw_of", "kind": "expression", "columns": [], "tables": ["*"]}], "predicates": []})
	d := portcullis.decision with input as pg_input(["dba"], [do, assign])
	d.verdict == "deny"
	"a DO block reads rows of any table (a function outside pg_catalog): its code can print, set or store what it makes of them where neither lineage nor the value detectors follow; denied to everyone not in pii-readers" in d.reasons
	d2 := portcullis.decision with input as pg_input(["dba", "pii-readers"], [do, assign])
	d2.verdict == "allow"
}

test_explain_of_a_function_outside_pg_catalog_is_denied_outside_pii_readers if {
	explain := object.union(stmt("explain"), {"analyze": false, "qualified_functions": ["public.pw_imm"], "outputs": [], "predicates": []})
	d := lineage_decision(["dba"], explain)
	d.verdict == "deny"
	some r in d.reasons
	contains(r, "EXPLAIN of a statement calling public.pw_imm")
	not "deny" == lineage_decision(["dba", "pii-readers"], explain).verdict
	builtin := object.union(explain, {"qualified_functions": ["pg_catalog.upper"]})
	not "deny" == lineage_decision(["dba"], builtin).verdict
}

test_explain_of_a_view_running_the_databases_function_is_denied_outside_pii_readers if {
	explain := object.union(stmt("explain"), {"analyze": false, "tables": ["pwv"], "outputs": [], "predicates": []})
	inp := json.patch(pg_input(["dba"], [explain]), [{"op": "add", "path": "/command/postgres/view_functions", "value": {"public.pwv": ["public.pw_imm"]}}])
	d := portcullis.decision with input as inp
	d.verdict == "deny"
	some r in d.reasons
	contains(r, "EXPLAIN of a statement reading view public.pwv, which runs public.pw_imm")
	pii := json.patch(inp, [{"op": "replace", "path": "/identity/groups", "value": ["dba", "pii-readers"]}])
	d2 := portcullis.decision with input as pii
	not "deny" == d2.verdict
}

view_running(groups, functions) := d if {
	sel := selecting([out("s", "expression", [])], [])
	reading := object.union(sel, {"tables": ["vset"]})
	inp := json.patch(pg_input(groups, [reading]), [{"op": "add", "path": "/command/postgres/view_functions", "value": {"public.vset": functions}}])
	d := portcullis.decision with input as inp
}

test_a_view_running_a_volatile_builtin_is_denied_outside_pii_readers if {
	every groups in [["readonly"], ["dba"]] {
		d := view_running(groups, ["pg_catalog.set_config"])
		d.verdict == "deny"
		"view public.vset runs pg_catalog.set_config, which keeps or acts on what it is given outside the rows a mask reads: denied to everyone not in pii-readers" in d.reasons
	}
	not "deny" == view_running(["dba", "pii-readers"], ["pg_catalog.set_config"]).verdict
	# what readers may call (random) is left, as is a function the database defines (its
	# value is masked whole), for a dba
	not "deny" == view_running(["dba"], ["pg_catalog.random"]).verdict
	not "deny" == view_running(["dba"], ["public.pw_of"]).verdict
	view_running(["dba"], ["pg_catalog.f (created after initdb)"]).verdict != "deny"
}

test_explain_of_a_view_running_only_builtins_is_not_denied if {
	explain := object.union(stmt("explain"), {"analyze": false, "tables": ["pwv"], "outputs": [], "predicates": []})
	inp := json.patch(pg_input(["dba"], [explain]), [{"op": "add", "path": "/command/postgres/view_functions", "value": {"public.pwv": ["pg_catalog.random"]}}])
	d := portcullis.decision with input as inp
	not "deny" == d.verdict
}

test_a_do_block_reading_an_errors_text_is_denied_outside_pii_readers if {
	do := object.union(stmt("do"), {"opaque": false})
	text := object.union(stmt("fetch"), {"tag": "PLpgSQL_error_text", "tables": [], "nested": true})
	d := portcullis.decision with input as pg_input(["dba"], [do, text])
	d.verdict == "deny"
	some r in d.reasons
	contains(r, "a DO block reads an error's text")
	not contains(concat(" ", d.reasons), "FETCHes")
	d2 := portcullis.decision with input as pg_input(["dba", "pii-readers"], [do, text])
	d2.verdict == "allow"
}

# --- other sessions' statement text (pg_stat_activity.query) ---------------------------

activity(predicates) := object.union(selecting([out("datname", "plain", ["datname"])], predicates), {"tables": ["pg_catalog.pg_stat_activity"]})

test_a_question_about_other_sessions_statement_text_is_denied_outside_pii_readers if {
	every use in ["pattern", "range", "order", "other", "partial"] {
		d := lineage_decision(["dba"], activity([{"column": "query", "use": use}]))
		d.verdict == "deny"
		some r in d.reasons
		contains(r, sprintf("%s use of column query, other sessions' statement text", [use]))
	}
	not "deny" == lineage_decision(["dba", "pii-readers"], activity([{"column": "query", "use": "pattern"}])).verdict
}

test_statement_text_stays_readable_masked_and_comparable_for_equality if {
	not "deny" == lineage_decision(["dba"], activity([{"column": "query", "use": "equality"}])).verdict
	not "deny" == lineage_decision(["dba"], activity([{"column": "state", "use": "pattern"}])).verdict
	# a table of the database's own with a query column is not the server's statement text
	mine := object.union(activity([{"column": "query", "use": "pattern"}]), {"tables": ["public.searches"]})
	not "deny" == lineage_decision(["dba"], mine).verdict
}

test_a_view_column_carrying_statement_text_is_asked_no_questions if {
	s := selecting([], [{"column": "q", "use": "pattern"}])
	d := with_views(["readonly"], s, {"q": ["query", "usename"]})
	d.verdict == "deny"
	some r in d.reasons
	contains(r, "column q, other sessions' statement text")
	with_views(["pii-readers"], s, {"q": ["query"]}).verdict == "allow"
}

test_the_functions_returning_statement_text_are_denied_outside_pii_readers if {
	every f in ["pg_stat_get_activity", "pg_catalog.pg_stat_get_backend_activity", "public.pg_stat_statements"] {
		s := object.union(stmt("select"), {"functions": [f]})
		d := lineage_decision(["dba"], s)
		d.verdict == "deny"
		some r in d.reasons
		contains(r, "returns other sessions' statement text")
	}
	pii := object.union(stmt("select"), {"functions": ["pg_stat_get_activity"]})
	not "deny" == lineage_decision(["dba", "pii-readers"], pii).verdict
}

test_statement_text_is_not_stored_outside_pii_readers if {
	s := object.union(stmt("insert"), {"tables": ["audit_log", "pg_stat_activity"], "writes": [out("", "plain", ["query"])]})
	d := lineage_decision(["dba"], s)
	d.verdict == "deny"
	some r in d.reasons
	contains(r, "stores other sessions' statement text (column query)")
	not "deny" == lineage_decision(["dba", "pii-readers"], s).verdict
	mine := object.union(s, {"tables": ["audit_log", "searches"]})
	not "deny" == lineage_decision(["dba"], mine).verdict
}

test_large_objects_contents_are_not_read_outside_pii_readers if {
	every s in [
		object.union(stmt("select"), {"functions": ["lo_get"]}),
		object.union(stmt("select"), {"functions": ["lo_open", "pg_catalog.loread"]}),
		object.union(stmt("select"), {"tables": ["pg_catalog.PG_LARGEOBJECT"]}),
	] {
		d := lineage_decision(["dba"], s)
		d.verdict == "deny"
		some r in d.reasons
		contains(r, "large object")
		not "deny" == lineage_decision(["dba", "pii-readers"], s).verdict
	}
	not "deny" == lineage_decision(["dba"], object.union(stmt("select"), {"functions": ["lo_unlink"], "tables": ["pg_largeobject_metadata"]})).verdict
}

test_statement_text_is_not_stored_through_a_view_outside_pii_readers if {
	s := object.union(stmt("insert"), {"tables": ["audit_log", "sessions"], "writes": [out("", "plain", ["q"])]})
	d := with_views(["dba"], s, {"q": ["query"]})
	d.verdict == "deny"
	some r in d.reasons
	contains(r, "stores other sessions' statement text (column q)")
	not "deny" == with_views(["dba"], s, {"q": ["usename"]}).verdict
}

# The derived rule names the outputs it masks (pg_derived_rule) when the command is one
# SELECT whose outputs are each one result column (lineage's exact): every output but the
# computed ones no reason names.
exact_selecting(outputs) := object.union(selecting(outputs, []), {"exact": true})

test_the_derived_rule_names_the_outputs_it_masks if {
	s := exact_selecting([
		out("status", "plain", ["status"]), out("count", "aggregate", []),
		keeping("sum", "aggregate", ["total"]), out("upper", "expression", ["status"]),
		out("lower", "expression", ["email"]), keeping("max", "aggregate", ["email"]),
		{"name": "x", "kind": "expression", "columns": [], "tables": ["orders"]},
	])
	every groups in [["readonly"], ["dba"]] {
		d := lineage_decision(groups, s)
		d.verdict == "mask"
		{"derived": true, "strategy": "redact", "positions": [0, 3, 4, 5, 6], "outputs": 7} in d.mask
		not derived in d.mask
	}
	not derived in lineage_decision(["pii-readers"], s).mask
}

test_the_derived_rule_names_no_outputs_where_they_may_not_be_one_column_each if {
	outputs := [out("count", "aggregate", []), out("upper", "expression", ["note"])]
	# no exact: a `*` the server expands (SELECT * FROM f(), (f(x)).*)
	derived in lineage_decision(["readonly"], selecting(outputs, [])).mask
	# two statements in one text: which result a position is of is not said
	two := pg_input(["readonly"], [exact_selecting(outputs), exact_selecting(outputs)])
	derived in portcullis.decision.mask with input as two
	# not a SELECT: RETURNING, EXPLAIN, DECLARE's query
	every type in ["update", "explain", "declare"] {
		t := object.union(exact_selecting(outputs), {"type": type})
		d := lineage_decision(["dba"], t)
		every m in d.mask {
			not m.positions
		}
	}
}

# --- JSON and XML documents (the proxy's view_columns: a document column carries "{}") ---

test_a_question_about_a_whole_document_is_denied if {
	every use in ["pattern", "range", "order", "other", "partial"] {
		s := selecting([], [{"column": "profile", "use": use}])
		d := with_views(["readonly"], s, {"profile": ["{}"]})
		d.verdict == "deny"
		some r in d.reasons
		contains(r, sprintf("%s use of document column profile as a whole", [use]))
	}
}

test_a_document_met_through_a_key_is_no_question_about_it if {
	s := selecting([], [{"column": "profile", "use": "other", "keyed": true}, {"column": "status", "use": "other"}])
	with_views(["readonly"], s, {"profile": ["{}"]}).verdict == "mask"
}

test_a_text_column_read_as_a_document_is_questioned_as_one if {
	every use in ["pattern", "range", "order", "other", "partial"] {
		s := selecting([], [{"column": "notes", "use": use, "document": true}])
		d := with_views(["readonly"], s, {})
		d.verdict == "deny"
		some r in d.reasons
		contains(r, sprintf("%s use of document column notes as a whole", [use]))
	}
	keyed := selecting([], [{"column": "notes", "use": "other", "document": true, "keyed": true}])
	with_views(["readonly"], keyed, {}).verdict == "mask"
	with_views(["pii-readers"], selecting([], [{"column": "notes", "use": "pattern", "document": true}]), {}).verdict == "allow"
}

test_equality_on_a_whole_document_follows_the_oracle_setting if {
	s := selecting([], [{"column": "profile", "use": "equality"}])
	with_views(["readonly"], s, {"profile": ["{}"]}).verdict == "mask"
	d := with_views(["readonly"], s, {"profile": ["{}"]}) with data.portcullis.oracle.equality as false
	d.verdict == "deny"
}

test_a_column_the_proxy_lists_as_no_document_is_judged_as_before if {
	s := selecting([], [{"column": "profile", "use": "pattern"}])
	with_views(["readonly"], s, {"other": ["{}"]}).verdict == "mask"
	with_views(["readonly"], s, {"profile": ["name"]}).verdict == "mask"
}

test_pii_readers_may_ask_about_whole_documents if {
	s := selecting([], [{"column": "profile", "use": "pattern"}])
	with_views(["pii-readers"], s, {"profile": ["{}"]}).verdict == "allow"
}

test_an_aggregate_over_a_whole_document_is_masked_whole if {
	s := selecting([keeping("count", "aggregate", ["profile"])], [])
	d := with_views(["readonly"], s, {"profile": ["{}"]})
	derived in d.mask
	"output count (aggregate) is computed from the whole of document column profile, whose keys the masks cover: masked whole" in d.reasons
}

test_a_document_as_it_is_or_through_a_key_is_left_to_its_key_masks if {
	outputs := [
		keeping("profile", "expression", ["profile"]),
		object.union(keeping("max", "aggregate", ["profile", "status"]), {"keyed": ["profile"]}),
	]
	d := with_views(["readonly"], selecting(outputs, []), {"profile": ["{}"]})
	not derived in d.mask
}

test_storing_a_whole_document_is_denied if {
	s := object.union(stmt("create_table_as"), {"outputs": [], "predicates": [], "writes": [keeping("", "expression", ["profile"])]})
	i := object.union(pg_input(["dba"], [s]), {"command": {"postgres": {"view_columns": {"profile": ["{}"]}, "has": {"writes": true}}}})
	d := portcullis.decision with input as i
	d.verdict == "deny"
	some r in d.reasons
	contains(r, "stores the whole of document column profile")
}

test_an_index_on_a_document_column_needs_approval if {
	on_profile := object.union(stmt_with("ddl", {"tag": "IndexStmt", "index_columns": ["id", "profile"]}), {"tables": ["people"]})
	views := {"command": {"postgres": {"view_columns": {"profile": ["{}"]}}}}
	d := portcullis.decision with input as object.union(pg_input(["dba"], [on_profile]), views)
	d.verdict == "require_approval"
	"an index on sensitive column profile under the masks needs approval: a read in its order shows the column's order" in d.reasons
	others := {"command": {"postgres": {"view_columns": {"other": ["{}"]}}}}
	portcullis.decision.verdict != "require_approval" with input as object.union(pg_input(["dba"], [on_profile]), others)
	portcullis.decision.verdict == "allow" with input as object.union(pg_input(["dba", "pii-readers"], [on_profile]), views)
}

# A column of free text (the proxy lists a string type's column as carrying "''"): the
# value detectors mask what they find inside it, so its questions are a sensitive column's
# (pattern, range, order, other, partial; equality as the oracle setting says), unless the
# team lists the name in postgres.plain_text_columns. Not its keyed uses.
free_text_input(groups, predicates) := object.union(
	pg_input(groups, [selecting([], predicates)]),
	{"command": {"postgres": {"view_columns": {"note": ["''"], "name": ["''"], "profile": ["{}"]}}}},
)

test_a_question_about_free_text_is_denied if {
	every use in ["pattern", "range", "order", "other"] {
		d := portcullis.decision with input as free_text_input(["readonly"], [{"column": "note", "use": use}])
		d.verdict == "deny"
		some r in d.reasons
		contains(r, sprintf("%s use of free-text column note", [use]))
	}
}

# a computation that can fail for some values (1/(ascii(substr(note, 6, 1)) - 52), a value
# grown past 1 GB): whether it failed answers about the text the detectors mask, a
# character at a time; of a wide number (1/(num - 4111111111111111)), about the card
test_free_text_or_a_wide_number_going_into_a_computation_that_can_fail_is_denied if {
	d := portcullis.decision with input as free_text_input(["readonly"], [{"column": "note", "use": "partial"}])
	d.verdict == "deny"
	some r in d.reasons
	contains(r, "free-text column note goes into a computation that can fail")
	contains(r, "postgres.plain_text_columns")
	e := portcullis.decision with input as number_predicate_input(["readonly"], [{"column": "num", "use": "partial"}])
	e.verdict == "deny"
	some q in e.reasons
	contains(q, "number column num goes into a computation that can fail")
	contains(q, "postgres.plain_number_columns")
	# a document met whole is judged as a document
	f := portcullis.decision with input as free_text_input(["readonly"], [{"column": "profile", "use": "partial"}])
	some t in f.reasons
	contains(t, "document column profile")
}

# a view's column computed from free text (`ascii(substr(note, 6, 1)) AS code`, an int):
# its questions are the text's, unless every free-text column it carries is listed
test_a_view_column_computed_from_free_text_is_asked_as_free_text if {
	views := {"command": {"postgres": {"view_columns": {
		"code": ["''note", "note"], "shout": ["''name", "name"],
		"total": ["''name", "id", "name"],
	}}}}
	every use in ["range", "order", "partial"] {
		d := portcullis.decision with input as object.union(pg_input(["readonly"], [selecting([], [{"column": "code", "use": use}])]), views)
		d.verdict == "deny"
		some r in d.reasons
		contains(r, "free-text column code")
	}
	every column in ["shout", "total"] {
		portcullis.decision.verdict != "deny" with input as object.union(pg_input(["readonly"], [selecting([], [{"column": column, "use": "range"}])]), views)
	}
	portcullis.decision.verdict != "deny" with input as object.union(pg_input(["readonly"], [selecting([], [{"column": "code", "use": "range"}])]), views)
		with data.portcullis.postgres.plain_text_columns.code as true
}

test_free_text_equality_follows_the_oracle_setting if {
	i := free_text_input(["readonly"], [{"column": "note", "use": "equality"}])
	portcullis.decision.verdict == "mask" with input as i
	portcullis.decision.verdict == "deny" with input as i with data.portcullis.oracle.equality as false
}

test_free_text_listed_keyed_or_read_by_a_pii_reader_is_asked if {
	portcullis.decision.verdict == "mask" with input as free_text_input(["readonly"], [{"column": "name", "use": "pattern"}])
	portcullis.decision.verdict == "mask" with input as free_text_input(["readonly"], [{"column": "name", "use": "partial"}])
	portcullis.decision.verdict == "mask" with input as free_text_input(["readonly"], [{"column": "note", "use": "other", "keyed": true}])
	portcullis.decision.verdict != "deny" with input as free_text_input(["pii-readers"], [{"column": "note", "use": "partial"}])
	portcullis.decision.verdict != "deny" with input as free_text_input(["pii-readers"], [{"column": "note", "use": "pattern"}])
}

# a sub-document compared with a value lineage cannot read: the document met whole in an
# equality test (lineage), refused only where the oracle setting refuses equality
test_a_document_met_whole_in_an_equality_test_follows_the_oracle_setting if {
	i := free_text_input(["readonly"], [{"column": "profile", "use": "equality"}])
	portcullis.decision.verdict == "mask" with input as i
	d := portcullis.decision with input as i with data.portcullis.oracle.equality as false
	d.verdict == "deny"
	some r in d.reasons
	contains(r, "document column profile")
}

# min/max of free text answers `>` beside a constant; of a sensitive column it is masked
test_min_or_max_of_free_text_is_asked_of_a_sensitive_column_masked if {
	d := portcullis.decision with input as free_text_input(["readonly"], [{"column": "note", "use": "choice"}])
	d.verdict == "deny"
	some r in d.reasons
	contains(r, "choice use of free-text column note")
	portcullis.decision.verdict == "mask" with input as free_text_input(["readonly"], [{"column": "email", "use": "choice"}])
	portcullis.decision.verdict == "mask" with input as free_text_input(["readonly"], [{"column": "name", "use": "choice"}])
}

# A number column that can hold a card (the proxy lists a wide number type's column as
# carrying "0"): an output reaching it through arithmetic or sum/avg ("arithmetic") is
# masked whole outside pii-readers, unless postgres.plain_number_columns lists the name;
# as it is (plain, min/max: "keeps" without "arithmetic") it is left to the detectors.
number_input(groups, outputs) := object.union(
	pg_input(groups, [object.union(selecting(outputs, []), {"exact": true})]),
	{"command": {"postgres": {"view_columns": {"num": ["0"], "id": ["0"], "note": ["''"]}}}},
)

computed_number(name, column) := {"name": name, "kind": "expression", "columns": [column], "tables": [], "keeps": true, "arithmetic": [column]}

test_arithmetic_over_a_wide_number_column_is_masked_whole if {
	d := portcullis.decision with input as number_input(["readonly"], [computed_number("x", "num"), out("n", "plain", ["num"])])
	d.verdict == "mask"
	{"derived": true, "strategy": "redact", "positions": [0, 1], "outputs": 2} in d.mask
	some r in d.reasons
	contains(r, "computed by arithmetic from number column num")
}

test_arithmetic_over_a_listed_unmarked_or_kept_number_or_by_a_pii_reader_comes_back if {
	# id is listed in postgres.plain_number_columns; total is no wide number column
	d := portcullis.decision with input as number_input(["readonly"], [computed_number("x", "id"), computed_number("y", "total"), {"name": "m", "kind": "aggregate", "columns": ["num"], "tables": [], "keeps": true}])
	every m in d.mask {
		not m.derived
	}
	p := portcullis.decision with input as number_input(["pii-readers"], [computed_number("x", "num")])
	every m in p.mask {
		not m.derived
	}
}

test_a_number_computed_from_a_wide_number_column_is_not_stored if {
	w := object.union(stmt("insert"), {"outputs": [], "predicates": [], "writes": [computed_number("", "num")]})
	i := object.union(pg_input(["readonly"], [w]), {"command": {"postgres": {"view_columns": {"num": ["0"]}}}})
	d := portcullis.decision with input as i
	some r in d.reasons
	contains(r, "stores a number computed by arithmetic from number column num")
	plain := object.union(stmt("insert"), {"outputs": [], "predicates": [], "writes": [computed_number("", "id")]})
	j := object.union(pg_input(["readonly"], [plain]), {"command": {"postgres": {"view_columns": {"id": ["0"]}}}})
	e := portcullis.decision with input as j
	every r in e.reasons {
		not contains(r, "computed by arithmetic")
	}
}

# a question about a wide number column (range, order, choice; equality as the oracle
# setting says) is a sensitive column's, unless postgres.plain_number_columns lists it
number_predicate_input(groups, predicates) := object.union(
	pg_input(groups, [selecting([], predicates)]),
	{"command": {"postgres": {"view_columns": {"num": ["0"], "id": ["0"]}}}},
)

test_a_question_about_a_wide_number_is_denied if {
	every use in ["range", "order", "other", "choice"] {
		d := portcullis.decision with input as number_predicate_input(["readonly"], [{"column": "num", "use": use}])
		d.verdict == "deny"
		some r in d.reasons
		contains(r, sprintf("%s use of number column num", [use]))
	}
	i := number_predicate_input(["readonly"], [{"column": "num", "use": "equality"}])
	portcullis.decision.verdict == "mask" with input as i
	portcullis.decision.verdict == "deny" with input as i with data.portcullis.oracle.equality as false
	portcullis.decision.verdict != "deny" with input as number_predicate_input(["readonly"], [{"column": "id", "use": "range"}])
	portcullis.decision.verdict != "deny" with input as number_predicate_input(["readonly"], [{"column": "id", "use": "partial"}])
	portcullis.decision.verdict != "deny" with input as number_predicate_input(["readonly"], [{"column": "num", "use": "partial", "keyed": true}])
	portcullis.decision.verdict != "deny" with input as number_predicate_input(["pii-readers"], [{"column": "num", "use": "order"}])
}

# --- groups in the order of a value the masks show in part (arranged) -----------------

test_groups_arranged_by_free_text_or_a_document_are_denied if {
	every column in ["note", "profile"] {
		s := selecting([out("note", "plain", ["note"])], [{"column": column, "use": "arranged"}])
		d := with_views(["readonly"], s, {"note": ["''"], "profile": ["{}"]})
		d.verdict == "deny"
		some r in d.reasons
		startswith(r, sprintf("the rows come back in the order of the values of column %s or of their hashes (grouped, made DISTINCT or joined on), which the masks show only in part", [column]))
	}
}

test_groups_arranged_by_other_columns_keyed_documents_or_for_pii_readers_are_allowed if {
	views := {"note": ["''"], "profile": ["{}"], "name": ["''"]}
	every column in ["id", "status", "name", "email"] {
		s := selecting([], [{"column": column, "use": "arranged"}])
		with_views(["readonly"], s, views).verdict != "deny"
	}
	keyed := selecting([], [{"column": "profile", "use": "arranged", "keyed": true}])
	with_views(["readonly"], keyed, views).verdict != "deny"
	with_views(["pii-readers"], selecting([], [{"column": "note", "use": "arranged"}]), views).verdict == "allow"
}

test_groups_arranged_by_a_wide_number_are_denied_but_not_by_keys_or_listed_names if {
	views := {"num": ["0"], "account": ["''"]}
	s := selecting([out("num", "plain", ["num"])], [{"column": "num", "use": "arranged"}])
	d := with_views(["readonly"], s, views)
	d.verdict == "deny"
	some r in d.reasons
	startswith(r, "the rows come back in the order of the values of number column num or of their hashes")
	with_views(["pii-readers"], s, views).verdict == "allow"
	keyed := selecting([], [{"column": "num", "use": "arranged", "keyed": true}])
	with_views(["readonly"], keyed, views).verdict != "deny"
	every column in ["id", "amount", "ref"] {
		with_views(["readonly"], selecting([], [{"column": column, "use": "arranged"}]), {"amount": ["0"], "id": ["0"]}).verdict != "deny"
	}
}

# a document key's value read as a wide number (lineage's `wide`: `(doc->>'card')::numeric`)
# is questioned as a wide number column is, unless plain_number_columns lists the key
test_a_keys_value_read_as_a_wide_number_is_questioned_unless_the_key_is_listed if {
	every use in ["other", "order", "partial", "range"] {
		p := {"column": "card", "use": use, "keyed": true, "wide": true}
		d := portcullis.decision with input as pg_input(["readonly"], [selecting([], [p])])
		d.verdict == "deny"
		some r in d.reasons
		contains(r, sprintf("%s use of the value under key card of a document", [use]))
	}
	arranged := selecting([], [{"column": "card", "use": "arranged", "keyed": true, "wide": true}])
	a := portcullis.decision with input as pg_input(["readonly"], [arranged])
	a.verdict == "deny"
	some ra in a.reasons
	startswith(ra, "the rows come back in the order of the numbers read out of documents under key card")
	listed := selecting([], [{"column": "amount", "use": "other", "keyed": true, "wide": true}])
	portcullis.decision.verdict != "deny" with input as pg_input(["readonly"], [listed])
	narrow := selecting([], [{"column": "ms", "use": "other", "keyed": true}])
	portcullis.decision.verdict != "deny" with input as pg_input(["readonly"], [narrow])
	pii := selecting([], [{"column": "card", "use": "other", "keyed": true, "wide": true}])
	portcullis.decision.verdict == "allow" with input as pg_input(["pii-readers"], [pii])
}

# a key the masks hide by its name (an alias of a sensitive field's) is questioned keyed too
test_a_key_masked_by_its_name_is_questioned_keyed if {
	every key in ["tel", "mobile", "customer_phone", "social_security", "ccn", "cardnumbers", "customerphone", "socialsecuritynumber"] {
		p := {"column": key, "use": "other", "keyed": true}
		d := portcullis.decision with input as pg_input(["readonly"], [selecting([], [p])])
		d.verdict == "deny"
		some r in d.reasons
		contains(r, sprintf("other use of the value under key %s of a document, which the masks hide whole", [key]))
	}
	every key in ["ms", "n", "status", "hotel_id", "telemetry"] {
		p := {"column": key, "use": "other", "keyed": true}
		portcullis.decision.verdict != "deny" with input as pg_input(["readonly"], [selecting([], [p])])
	}
	tel := selecting([], [{"column": "tel", "use": "other", "keyed": true}])
	portcullis.decision.verdict == "allow" with input as pg_input(["pii-readers"], [tel])
}
