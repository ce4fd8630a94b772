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
