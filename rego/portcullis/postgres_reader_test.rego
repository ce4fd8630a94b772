package portcullis_test

import data.portcullis

# Readers: the allow-lists of postgres.rego (functions, settings, catalogs), the settings
# pinned for everyone, and the caching of answers that read literals.

select_calling(functions) := stmt_with("select", {"functions": functions, "qualified_functions": []})

set_stmt(setting, extra) := stmt_with("set", object.union({"setting": setting, "reset": false}, extra))

# --- functions -----------------------------------------------------------------

test_reader_functions_allowed if {
	every f in ["lower", "count", "now", "format_type", "pg_get_userbyid", "random", "pg_advisory_unlock_all", "current_database", "row_number", "string_agg"] {
		verdict(["pii-readers"], [select_calling([f])]) == "allow"
	}
}

test_functions_off_the_list_denied_for_readers if {
	every f in ["pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_stat_reset", "setval", "nextval", "pg_notify", "pg_advisory_lock", "pg_sleep", "evil", "txid_current", "pg_stat_get_activity"] {
		s := select_calling(["lower", f])
		verdict(["readonly"], [s]) == "deny"
		sprintf("function %s is not one readers may call", [f]) in reasons(["readonly"], [s])
	}
}

test_functions_off_the_list_allowed_for_dba if {
	verdict(["dba", "pii-readers"], [select_calling(["pg_terminate_backend", "nextval"])]) == "allow"
}

test_qualified_functions_only_from_pg_catalog if {
	ok := stmt_with("select", {"functions": ["lower"], "qualified_functions": ["pg_catalog.lower"]})
	verdict(["pii-readers"], [ok]) == "allow"
	every q in ["public.lower", "pg_temp.lower", "pg_catalog.x.lower", "db.pg_catalog.lower"] {
		s := stmt_with("select", {"functions": ["lower"], "qualified_functions": [q]})
		verdict(["readonly"], [s]) == "deny"
		sprintf("function %s is not in pg_catalog; readers may call only functions there", [q]) in reasons(["readonly"], [s])
	}
}

test_quoted_capitals_are_another_function if {
	s := stmt_with("select", {"functions": ["lower"], "cased_functions": ["LOWER"]})
	verdict(["readonly"], [s]) == "deny"
	"function \"LOWER\" is not one readers may call" in reasons(["readonly"], [s])
	verdict(["dba", "pii-readers"], [s]) == "allow"
}

test_function_off_the_list_in_a_write_goes_to_the_approver if {
	s := stmt_with("insert", {"functions": ["nextval"]})
	d := portcullis.decision with input as pg_input(["readonly"], [s])
	d.verdict == "require_approval"
	"function nextval is not one readers may call" in d.reasons
	"INSERT needs approval" in d.reasons
}

test_function_off_the_list_in_ddl_still_denied if {
	verdict(["readonly"], [stmt_with("ddl", {"functions": ["nextval"]})]) == "deny"
}

test_fast_path_call_judged_by_the_list if {
	i := {
		"identity": {"subject": "alice@example.com", "groups": ["readonly"]},
		"connection": {"name": "orders-db", "type": "postgres"},
		"command": {"kind": "postgres.function_call", "raw": "lo_creat", "postgres": {"statements": [stmt_with("select", {"tag": "FunctionCall", "functions": ["lo_creat"]})], "has": pg_every_flag, "types": {"select": true}}},
	}
	d := portcullis.decision with input as i
	d.verdict == "deny"
}

# --- dangerous for everyone -------------------------------------------------------

test_functions_that_run_sql_or_read_files_denied_for_everyone if {
	every f in ["query_to_xml", "cursor_to_xml", "table_to_xml", "schema_to_xmlschema", "database_to_xml_and_xmlschema", "ts_stat", "ts_rewrite", "pg_stat_file", "pg_ls_waldir", "pg_read_file", "lo_import", "lo_export", "pg_file_write"] {
		every g in [["dba", "pii-readers"], ["readonly"]] {
			s := select_calling([f])
			verdict(g, [s]) == "deny"
			sprintf("function %s reaches outside the database or runs SQL text", [f]) in reasons(g, [s])
		}
	}
}

# Large objects live inside the database: dba may use them (psql's \lo_import calls
# lo_creat, lo_open and lowrite by fast path); readers may not (not on their list).
test_large_objects_inside_the_database_are_dbas_not_readers if {
	every f in ["lo_creat", "lo_from_bytea", "loread", "lowrite", "lo_open"] {
		s := select_calling([f])
		verdict(["dba", "pii-readers"], [s]) == "allow"
		verdict(["readonly"], [s]) == "deny"
	}
}

# --- names the database shadows -------------------------------------------------------

shadowed_query(groups, functions) := {
	"identity": {"subject": "alice@example.com", "groups": groups},
	"connection": {"name": "orders-db", "type": "postgres"},
	"command": {"kind": "postgres.query", "raw": "select upper(x)", "postgres": {
		"statements": [stmt_with("select", {"functions": functions})],
		"has": pg_every_flag, "types": {"select": true},
		"shadowed_functions": ["upper"],
	}},
}

test_a_built_in_name_the_database_shadows_is_denied_to_readers if {
	d := portcullis.decision with input as shadowed_query(["readonly"], ["upper"])
	d.verdict == "deny"
	"function upper is also defined outside pg_catalog in this database, so the call may not run the built-in" in d.reasons
	e := portcullis.decision with input as shadowed_query(["readonly"], ["lower"])
	e.verdict != "deny"
	f := portcullis.decision with input as shadowed_query(["dba", "pii-readers"], ["upper"])
	f.verdict == "allow"
}

# --- attribute notation: c.f is f(c) when c has no column f ----------------------------

attribute_query(groups, names, row_functions) := {
	"identity": {"subject": "alice@example.com", "groups": groups},
	"connection": {"name": "orders-db", "type": "postgres"},
	"command": {"kind": "postgres.query", "raw": "select c.x from customers c", "postgres": {
		"statements": [stmt_with("select", {"attribute_names": names})],
		"has": pg_every_flag, "types": {"select": true},
		"row_functions": row_functions,
	}},
}

test_a_built_in_row_function_after_a_dot_is_denied_outside_pii_readers if {
	every groups in [["readonly"], ["dba"]] {
		d := portcullis.decision with input as attribute_query(groups, ["id", "row_to_json"], [])
		d.verdict == "deny"
		"row_to_json after a dot may be row_to_json() called on a whole row (attribute notation), which reads every column of the row: name the column without its table, or select the columns you need" in d.reasons
	}
	every groups in [["readonly", "pii-readers"], ["dba", "pii-readers"]] {
		e := portcullis.decision with input as attribute_query(groups, ["concat"], [])
		e.verdict != "deny"
	}
}

test_a_column_after_a_dot_is_read if {
	d := portcullis.decision with input as attribute_query(["readonly"], ["id", "email", "rank"], ["leak"])
	d.verdict == "mask"
}

test_the_databases_row_function_after_a_dot_is_denied_but_to_unmasked_dba if {
	every groups in [["readonly"], ["readonly", "pii-readers"], ["dba"]] {
		d := portcullis.decision with input as attribute_query(groups, ["leak"], ["leak"])
		d.verdict == "deny"
		"leak after a dot may be the database's function leak() called on a whole row (attribute notation), which the policy cannot judge: name the column without its table" in d.reasons
	}
	e := portcullis.decision with input as attribute_query(["dba", "pii-readers"], ["leak"], ["leak"])
	e.verdict == "allow"
}

# --- start-up parameters -----------------------------------------------------------

open_with(groups, settings) := {
	"identity": {"subject": "alice@example.com", "groups": groups},
	"connection": {"name": "orders-db", "type": "postgres"},
	"session": {"attributes": {"settings": settings}},
	"command": {"kind": "session.open", "raw": ""},
}

test_start_up_settings_a_reader_could_set_are_accepted if {
	d := portcullis.decision with input as open_with(["readonly"], {
		"application_name": "agent", "datestyle": "ISO, MDY", "statement_timeout": "1500",
		"search_path": "\"$user\", public", "jit": "off",
	})
	d.verdict == "allow"
}

test_start_up_settings_a_reader_could_not_set_are_refused_by_name if {
	every name, value in {
		"session_replication_role": "replica", "statement_timeout": "0",
		"search_path": "public, pg_catalog", "default_transaction_read_only": "off",
		"log_statement": "none", "work_mem": "4GB",
	} {
		d := portcullis.decision with input as open_with(["readonly"], {name: value})
		d.verdict == "deny"
		sprintf("start-up parameter %s is not a setting readers may choose", [name]) in d.reasons
	}
}

test_start_up_search_path_only_listed_schemas if {
	every value in [`"$user", public`, `PUBLIC`, `pg_catalog, "public"`, ``] {
		d := portcullis.decision with input as open_with(["readonly"], {"search_path": value})
		d.verdict == "allow"
	}
	every value in [`archive`, `public, archive`, `"Public"`, `"public, archive"`, `pg_temp`] {
		d := portcullis.decision with input as open_with(["readonly"], {"search_path": value})
		d.verdict == "deny"
	}
}

test_start_up_settings_are_dbas_to_choose if {
	d := portcullis.decision with input as open_with(["dba"], {"session_replication_role": "replica"})
	d.verdict == "allow"
}

test_start_up_planner_settings_are_refused_under_the_masks if {
	d := portcullis.decision with input as open_with(["dba"], {"Enable_SeqScan": "off"})
	d.verdict == "deny"
	portcullis.decision.verdict == "allow" with input as open_with(["dba", "pii-readers"], {"enable_seqscan": "off"})
}

# --- set_config ---------------------------------------------------------------------

test_set_config_of_reader_settings_allowed if {
	s := stmt_with("select", {"functions": ["current_setting", "set_config"], "settings": ["jit"], "read_settings": ["jit"]})
	verdict(["pii-readers"], [s]) == "allow"
}

test_set_config_of_value_checked_settings_denied if {
	every name in ["search_path", "statement_timeout", "default_transaction_read_only", "transaction_read_only", "session_replication_role"] {
		s := stmt_with("select", {"functions": ["set_config"], "settings": ["jit", name]})
		verdict(["readonly"], [s]) == "deny"
		sprintf("set_config may not change %s for readers", [name]) in reasons(["readonly"], [s])
	}
}

test_dynamic_set_config_denied_for_everyone if {
	s := stmt_with("select", {"functions": ["set_config"], "settings": ["jit"], "dynamic_settings": true})
	verdict(["dba", "pii-readers"], [s]) == "deny"
	verdict(["readonly"], [s]) == "deny"
}

test_set_config_of_lexing_settings_denied_for_everyone if {
	every name in ["client_encoding", "standard_conforming_strings", "backslash_quote", "escape_string_warning"] {
		s := stmt_with("select", {"functions": ["set_config"], "settings": [name]})
		verdict(["dba", "pii-readers"], [s]) == "deny"
		sprintf("set_config may not change %s: it is pinned for every session", [name]) in reasons(["dba"], [s])
	}
}

# --- SET / RESET --------------------------------------------------------------------

test_reader_settings_allowed if {
	every name in ["application_name", "datestyle", "timezone", "jit", "lock_timeout", "transaction_isolation"] {
		verdict(["pii-readers"], [set_stmt(name, {})]) == "allow"
	}
}

# below 1 a double precision shows rounded (a card number kept in one, 15 of its digits)
test_extra_float_digits_only_where_every_digit_shows if {
	every value in ["1", "2", "3"] {
		verdict(["readonly"], [set_stmt("extra_float_digits", {"value": value})]) != "deny"
		portcullis.decision.verdict == "allow" with input as open_with(["readonly"], {"extra_float_digits": value})
	}
	verdict(["readonly"], [set_stmt("extra_float_digits", {"reset": true})]) != "deny"
	every value in ["0", "-1", "-15", "1.5", "0x1", " 1", "+1"] {
		verdict(["readonly"], [set_stmt("extra_float_digits", {"value": value})]) == "deny"
		portcullis.decision.verdict == "deny" with input as open_with(["readonly"], {"extra_float_digits": value})
	}
	s := stmt_with("select", {"functions": ["set_config"], "settings": ["extra_float_digits"]})
	"set_config may not change extra_float_digits for readers" in reasons(["readonly"], [s])
	verdict(["dba", "pii-readers"], [set_stmt("extra_float_digits", {"value": "0"})]) != "deny"
}

# a locale writing money with another count of fraction digits than the database stored
# it under (ar_BH: three; C where the database writes yen: two) shows a card kept as money
# in digits no detector reads as one: lc_monetary only RESET; lc_numeric to C's writing
test_money_and_number_locales_only_where_every_digit_shows if {
	every value in ["C", "POSIX", "C.UTF-8", "C.utf8", "en_US.UTF-8", "en_US.utf8"] {
		verdict(["readonly"], [set_stmt("lc_numeric", {"value": value})]) != "deny"
		portcullis.decision.verdict == "allow" with input as open_with(["readonly"], {"lc_numeric": value})
		verdict(["readonly"], [set_stmt("lc_monetary", {"value": value})]) == "deny"
		portcullis.decision.verdict == "deny" with input as open_with(["readonly"], {"lc_monetary": value})
	}
	every setting in ["lc_monetary", "lc_numeric"] {
		verdict(["readonly"], [set_stmt(setting, {"reset": true})]) != "deny"
		every value in ["ar_BH.UTF-8", "ja_JP.UTF-8", "en_IN.UTF-8", "fr_FR.UTF-8", "de_CH.UTF-8", "", "c", " C", "en_US"] {
			verdict(["readonly"], [set_stmt(setting, {"value": value})]) == "deny"
			portcullis.decision.verdict == "deny" with input as open_with(["readonly"], {setting: value})
		}
		s := stmt_with("select", {"functions": ["set_config"], "settings": [setting]})
		sprintf("set_config may not change %s for readers", [setting]) in reasons(["readonly"], [s])
		verdict(["dba", "pii-readers"], [set_stmt(setting, {"value": "ar_BH.UTF-8"})]) != "deny"
	}
	verdict(["readonly"], [set_stmt("lc_time", {"value": "fr_FR.UTF-8"})]) != "deny"
}

# escape writes a byte as three octal digits, glued to a card's in a bytea's text cast
test_bytea_output_only_hex_for_readers if {
	verdict(["readonly"], [set_stmt("bytea_output", {"value": "hex"})]) != "deny"
	portcullis.decision.verdict == "allow" with input as open_with(["readonly"], {"bytea_output": "hex"})
	verdict(["readonly"], [set_stmt("bytea_output", {"reset": true})]) != "deny"
	every value in ["escape", "HEX", "Escape", ""] {
		verdict(["readonly"], [set_stmt("bytea_output", {"value": value})]) == "deny"
		portcullis.decision.verdict == "deny" with input as open_with(["readonly"], {"bytea_output": value})
	}
	s := stmt_with("select", {"functions": ["set_config"], "settings": ["bytea_output"]})
	"set_config may not change bytea_output for readers" in reasons(["readonly"], [s])
	verdict(["dba", "pii-readers"], [set_stmt("bytea_output", {"value": "escape"})]) != "deny"
}

# the masks apply to a dba outside pii-readers: so do the settings that write values
test_value_writing_settings_bind_a_masked_dba if {
	every setting, value in {"extra_float_digits": "0", "lc_monetary": "ar_BH.UTF-8", "lc_numeric": "fr_FR.UTF-8", "bytea_output": "escape"} {
		verdict(["dba"], [set_stmt(setting, {"value": value})]) == "deny"
		portcullis.decision.verdict == "deny" with input as open_with(["dba"], {setting: value})
		s := stmt_with("select", {"functions": ["set_config"], "settings": [setting]})
		verdict(["dba"], [s]) == "deny"
		verdict(["dba", "pii-readers"], [set_stmt(setting, {"value": value})]) != "deny"
		portcullis.decision.verdict == "allow" with input as open_with(["dba", "pii-readers"], {setting: value})
	}
	every setting, value in {"extra_float_digits": "3", "lc_numeric": "C", "bytea_output": "hex"} {
		verdict(["dba"], [set_stmt(setting, {"value": value})]) != "deny"
		portcullis.decision.verdict == "allow" with input as open_with(["dba"], {setting: value})
	}
	verdict(["dba"], [set_stmt("bytea_output", {"reset": true})]) != "deny"
	s := stmt_with("select", {"functions": ["set_config"], "settings": ["work_mem"]})
	verdict(["dba"], [s]) != "deny"
}

test_other_settings_denied_for_readers if {
	every name in ["session_replication_role", "log_statement", "allow_system_table_mods", "work_mem", "search_path", "transaction snapshot"] {
		s := set_stmt(name, {})
		verdict(["readonly"], [s]) == "deny"
		sprintf("SET %s is not a setting readers may change", [upper(name)]) in reasons(["readonly"], [s])
		verdict(["dba", "pii-readers"], [s]) == "allow"
	}
}

test_reset_all_allowed if {
	verdict(["pii-readers"], [set_stmt("all", {"reset": true})]) == "allow"
	verdict(["readonly"], [set_stmt("all", {})]) == "deny"
}

test_search_path_only_with_pg_catalog_first if {
	verdict(["pii-readers"], [set_stmt("search_path", {"pg_catalog_first": true, "schemas": ["$user", "public"]})]) == "allow"
	verdict(["readonly"], [set_stmt("search_path", {"pg_catalog_first": false, "schemas": ["public", "pg_catalog"]})]) == "deny"
}

test_search_path_only_listed_schemas if {
	verdict(["pii-readers"], [set_stmt("search_path", {"pg_catalog_first": true, "schemas": []})]) == "allow"
	verdict(["pii-readers"], [set_stmt("search_path", {"pg_catalog_first": true, "schemas": ["pg_catalog", "public"]})]) == "allow"
	every path in [["archive"], ["public", "archive"], ["Public"], ["public, archive"], ["pg_temp"]] {
		verdict(["readonly"], [set_stmt("search_path", {"pg_catalog_first": true, "schemas": path})]) == "deny"
	}
	# an entry from a classifier that does not say which schemas is refused
	verdict(["readonly"], [set_stmt("search_path", {"pg_catalog_first": true})]) == "deny"
}

test_read_only_settings_never_to_read_write if {
	every name in ["transaction", "session characteristics", "transaction_read_only", "default_transaction_read_only"] {
		verdict(["pii-readers"], [set_stmt(name, {})]) == "allow"
		s := set_stmt(name, {"read_write": true})
		verdict(["readonly"], [s]) == "deny"
		"X would make the transaction read-write; reader sessions stay read-only" in reasons(["readonly"], [s])
		verdict(["dba", "pii-readers"], [s]) == "allow"
	}
}

test_begin_read_write_denied_for_readers if {
	s := stmt_with("transaction", {"action": "begin", "read_write": true})
	verdict(["readonly"], [s]) == "deny"
	verdict(["pii-readers"], [stmt_with("transaction", {"action": "begin"})]) == "allow"
}

test_statement_timeout_within_the_bound if {
	every v in ["1", "5000", "60000", " 5s ", "60 s", "1min", "1 min"] {
		verdict(["pii-readers"], [set_stmt("statement_timeout", {"value": v})]) == "allow"
	}
	verdict(["pii-readers"], [set_stmt("statement_timeout", {"reset": true})]) == "allow"
}

test_statement_timeout_beyond_the_bound_or_unreadable_denied if {
	every v in ["0", "60001", "2min", "1h", "1d", "0.5", "1.5s", "500us", "0x10", "-1", "5 sec", "1000000000000"] {
		verdict(["readonly"], [set_stmt("statement_timeout", {"value": v})]) == "deny"
	}
	verdict(["readonly"], [set_stmt("statement_timeout", {})]) == "deny"
}

test_lexing_settings_pinned_for_everyone if {
	every name in ["client_encoding", "standard_conforming_strings", "backslash_quote", "escape_string_warning"] {
		s := set_stmt(name, {"value": "SJIS"})
		verdict(["dba", "pii-readers"], [s]) == "deny"
		verdict(["readonly"], [s]) == "deny"
		sprintf("SET %s is pinned for every session: the policy must read SQL as the server does", [upper(name)]) in reasons(["dba"], [s])
		# RESET returns to the value the proxy pinned
		verdict(["pii-readers"], [set_stmt(name, {"reset": true})]) == "allow"
		verdict(["dba", "pii-readers"], [set_stmt(name, {"reset": true})]) == "allow"
	}
}

# --- locking ------------------------------------------------------------------------

test_select_for_update_needs_approval if {
	every t in ["select", "declare", "prepare"] {
		s := stmt_with(t, {"locking": true})
		d := portcullis.decision with input as pg_input(["readonly"], [s])
		d.verdict == "require_approval"
		"SELECT ... FOR UPDATE/SHARE locks rows and needs approval" in d.reasons
	}
	verdict(["dba", "pii-readers"], [stmt_with("select", {"locking": true})]) == "allow"
	verdict(["pii-readers"], [stmt_with("explain", {"analyze": false, "locking": true})]) == "allow"
}

# --- secret catalogs ----------------------------------------------------------------

test_secret_catalogs_denied_for_readers if {
	every t in ["pg_authid", "pg_catalog.pg_authid", "pg_shadow", "pg_user_mappings", "pg_largeobject", "pg_statistic", "pg_stats", "pg_catalog.pg_subscription", "pg_stat_activity", "pg_hba_file_rules", "pg_file_settings", "information_schema.user_mapping_options", "information_schema._pg_user_mappings", "pg_config"] {
		s := stmt_with("select", {"tables": [t]})
		verdict(["analyst", "pii-readers"], [s]) == "deny"
		sprintf("%s holds secrets; only privileged groups may read it", [t]) in reasons(["readonly"], [s])
		verdict(["dba", "pii-readers"], [s]) == "allow"
	}
	verdict(["pii-readers"], [stmt_with("select", {"tables": ["pg_catalog.pg_class", "pg_roles"]})]) == "allow"
}

# A relation the database defines over a catalog (relation_sources, from the proxy) is
# read as the catalog it shows.
with_sources(statements, sources) := object.union(pg_input(["readonly"], statements), {"command": {"postgres": {"relation_sources": sources}}})

shown_verdict(groups, statements, sources) := d.verdict if {
	i := with_sources(statements, sources)
	d := portcullis.decision with input as object.union(i, {"identity": {"groups": groups}})
}

test_a_view_over_a_secret_catalog_is_the_catalog_for_readers if {
	sources := {"public.st": ["pg_catalog.pg_stats"], "st": ["pg_catalog.pg_stats"], "public.roles": ["pg_catalog.pg_authid"], "public.sets": ["pg_catalog.pg_settings"], "public.fine": ["public.orders", "pg_catalog.pg_class"], "public.act": ["pg_catalog.pg_stat_activity"]}
	every t in ["st", "public.st", "ST", "roles", "public.sets", "orders.public.st"] {
		s := stmt_with("select", {"tables": [t]})
		shown_verdict(["readonly", "pii-readers"], [s], sources) == "deny"
		shown_verdict(["dba", "pii-readers"], [s], sources) == "allow"
	}
	every t in ["fine", "public.fine", "act", "other.st"] {
		shown_verdict(["readonly", "pii-readers"], [stmt_with("select", {"tables": [t]})], sources) == "allow"
	}
}

test_a_view_over_the_column_statistics_is_denied_outside_pii_readers if {
	sources := {"public.st": ["pg_catalog.pg_stats"], "public.mv": ["pg_catalog.pg_statistic"], "public.lo": ["pg_catalog.pg_largeobject"], "public.t": ["pg_toast.pg_toast_16384"], "public.roles": ["pg_catalog.pg_authid"], "public.fs": ["pg_catalog.pg_file_settings"]}
	every t in ["st", "public.mv", "lo", "t", "fs"] {
		s := stmt_with("select", {"tables": [t]})
		shown_verdict(["dba"], [s], sources) == "deny"
		shown_verdict(["dba", "pii-readers"], [s], sources) == "allow"
	}
	shown_verdict(["dba"], [stmt_with("select", {"tables": ["roles"]})], sources) != "deny"
}

test_functions_decoding_rows_from_wal_or_pages_are_denied_outside_pii_readers if {
	every f in ["pg_logical_slot_get_changes", "pg_catalog.pg_logical_slot_peek_changes", "PG_LOGICAL_SLOT_PEEK_BINARY_CHANGES", "public.get_raw_page", "heap_page_items", "pg_get_wal_block_info"] {
		s := select_calling([f])
		verdict(["dba"], [s]) == "deny"
		verdict(["readonly"], [s]) == "deny"
		verdict(["dba", "pii-readers"], [s]) == "allow"
	}
	verdict(["dba"], [select_calling(["pg_create_physical_replication_slot", "pg_current_wal_lsn"])]) != "deny"
}

# --- reading settings ---------------------------------------------------------------

test_readers_read_only_the_settings_an_ordinary_role_is_shown if {
	show := {"type": "show", "tag": "VariableShowStmt", "tables": [], "functions": [], "qualified_functions": []}
	every name in ["server_version", "transaction_isolation", "timezone", "search_path", "is_superuser"] {
		verdict(["pii-readers"], [object.union(show, {"setting": name})]) == "allow"
		verdict(["pii-readers"], [stmt_with("select", {"functions": ["current_setting"], "read_settings": [name]})]) == "allow"
	}
	every name in ["primary_conninfo", "data_directory", "ssl_passphrase_command", "archive_command", "all", "my.secret"] {
		s := object.union(show, {"setting": name})
		verdict(["pii-readers"], [s]) == "deny"
		sprintf("SHOW %s is not a setting readers may read", [upper(name)]) in reasons(["readonly"], [s])
		verdict(["dba", "pii-readers"], [s]) != "deny"
	}
	every name in ["primary_conninfo", "data_directory", "all"] {
		verdict(["dba"], [object.union(show, {"setting": name})]) != "deny"
	}
	# an application's setting (a dot in its name) is denied to a masked dba too
	# (postgres.rego; test_pg_mask_probe_p27)
	verdict(["dba"], [object.union(show, {"setting": "my.secret"})]) == "deny"
	every name in ["primary_conninfo", "config_file", "restore_command"] {
		s := stmt_with("select", {"functions": ["current_setting"], "read_settings": ["server_version", name]})
		verdict(["pii-readers"], [s]) == "deny"
		sprintf("current_setting may not read %s for readers", [name]) in reasons(["readonly"], [s])
		verdict(["dba"], [s]) != "deny"
	}
}

test_current_setting_of_a_name_not_written_is_denied_to_readers if {
	dynamic := "current_setting with a setting name that is not a literal: what it reads cannot be judged"
	s := stmt_with("select", {"functions": ["current_setting"], "dynamic_read_settings": true})
	verdict(["pii-readers"], [s]) == "deny"
	dynamic in reasons(["readonly"], [s])
	# a classifier that named the call but not what it reads
	dynamic in reasons(["readonly"], [stmt_with("select", {"functions": ["current_setting"]})])
	verdict(["dba", "pii-readers"], [s]) != "deny"
	# a masked dba: it may be an application's setting
	verdict(["dba"], [s]) == "deny"
	verdict(["dba"], [object.union(s, {"settings_rows": true})]) != "deny"
}

# current_setting($n): the name bound at Bind

bound_setting_query(groups, s, postgres) := object.union(pg_input(groups, [s]), {"command": {"postgres": postgres}})

bound_setting_call := stmt_with("select", {"functions": ["current_setting"], "read_setting_parameters": [1]})

bound_setting_verdict(s, postgres) := d.verdict if {
	d := portcullis.decision with input as bound_setting_query(["readonly"], s, postgres)
}

test_a_parse_of_current_setting_of_a_parameter_waits_for_its_value if {
	d := portcullis.decision with input as bound_setting_query(["readonly"], bound_setting_call, {"protocol": "extended", "phase": "parse"})
	d.verdict == "require_approval"
	"current_setting reads the setting bound to $1: judged with its value at Bind" in d.reasons
}

test_current_setting_of_a_readable_name_bound_is_allowed if {
	every value in ["timezone", "TimeZone", "default_table_access_method", {"shown": "TimeZone", "format": "binary", "bytes": "8", "sha256": "-"}] {
		bound_setting_verdict(bound_setting_call, {"protocol": "extended", "parameters": [value]}) in {"allow", "mask"}
	}
}

test_current_setting_of_any_other_name_bound_is_denied if {
	d := portcullis.decision with input as bound_setting_query(["readonly"], bound_setting_call, {"protocol": "extended", "parameters": ["primary_conninfo"]})
	d.verdict == "deny"
	"current_setting may not read primary_conninfo for readers" in d.reasons
	every value in [
		"pgusable2.secret", "NULL", {"shown": "timezone", "format": "binary", "bytes": "9", "sha256": "-"},
		{"shown": "timezone", "cut": true, "bytes": "5000", "sha256": "-"},
		{"shown": "timezone", "bytes": "8", "sha256": "-"}, 5,
	] {
		bound_setting_verdict(bound_setting_call, {"protocol": "extended", "parameters": [value]}) == "deny"
	}
	# $2 with one value bound, no values at all
	two := stmt_with("select", {"functions": ["current_setting"], "read_setting_parameters": [2]})
	bound_setting_verdict(two, {"protocol": "extended", "parameters": ["timezone"]}) == "deny"
	bound_setting_verdict(bound_setting_call, {"protocol": "extended"}) == "deny"
	bound_setting_verdict(bound_setting_call, {"protocol": "simple"}) == "deny"
}

test_current_setting_of_a_parameter_outside_a_plain_select_is_denied_even_at_parse if {
	every s in [
		stmt_with("prepare", {"functions": ["current_setting"], "read_setting_parameters": [1]}),
		stmt_with("declare", {"functions": ["current_setting"], "read_setting_parameters": [1]}),
		stmt_with("select", {"functions": ["current_setting"], "read_setting_parameters": [1], "nested": true}),
	] {
		bound_setting_verdict(s, {"protocol": "extended", "phase": "parse"}) == "deny"
		bound_setting_verdict(s, {"protocol": "extended", "parameters": ["timezone"]}) == "deny"
	}
}

test_current_setting_of_a_parameter_is_the_dbas_own if {
	d := portcullis.decision with input as bound_setting_query(["dba", "pii-readers"], bound_setting_call, {"protocol": "extended", "phase": "parse"})
	d.verdict == "allow"
}

test_settings_functions_that_list_every_setting_are_not_reader_callable if {
	every f in ["pg_show_all_settings", "pg_config"] {
		verdict(["readonly"], [stmt_with("select", {"functions": [f]})]) == "deny"
	}
}

# --- caching ----------------------------------------------------------------------

test_answers_that_read_literals_are_not_cached if {
	cases := [
		set_stmt("datestyle", {}),
		stmt_with("select", {"functions": ["set_config"], "settings": ["jit"]}),
		stmt_with("select", {"functions": ["current_setting"], "read_settings": ["server_version"]}),
	]
	every s in cases {
		d := portcullis.decision with input as pg_input(["pii-readers"], [stmt("select"), s])
		d.verdict == "allow"
		d.cache_key == "exact"
		d.cache_ttl_seconds == 0
	}
	d := portcullis.decision with input as pg_input(["pii-readers"], [stmt_with("transaction", {"action": "begin"})])
	d.cache_key == "shape"
}

# a constant key lineage reads as a column's name (`profile->>'password'`, p27)
test_answers_whose_lineage_read_a_constant_key_are_not_cached if {
	keyed := stmt_with("select", {"literal_keys": true})
	every groups in [["readonly"], ["pii-readers"], ["dba"]] {
		d := portcullis.decision with input as pg_input(groups, [keyed])
		d.cache_key == "exact"
		d.cache_ttl_seconds == 0
	}
	d := portcullis.decision with input as pg_input(["readonly"], [stmt_with("select", {"literal_keys": false})])
	d.cache_key == "shape"
}

# --- asyncpg pool release --------------------------------------------------------------

test_pool_release_housekeeping_allowed if {
	statements := [
		select_calling(["pg_advisory_unlock_all"]),
		stmt_with("close", {"cursor": "*"}),
		stmt("unlisten"),
		set_stmt("all", {"reset": true}),
	]
	verdict(["pii-readers"], statements) == "allow"
	verdict(["pii-readers"], [stmt_with("discard", {"target": "all"})]) == "allow"
}

test_two_phase_commit_denied_for_readers if {
	every action in ["prepare", "commit_prepared", "rollback_prepared"] {
		s := stmt_with("transaction", {"action": action})
		verdict(["pii-readers"], [s]) == "deny"
		verdict(["dba", "pii-readers"], [s]) == "allow"
	}
	verdict(["pii-readers"], [stmt_with("transaction", {"action": "commit"})]) == "allow"
}

# The last component of a name decides, however many components it has; a name that only
# starts like a secret catalog is another table.
test_secret_catalogs_are_matched_on_the_last_of_several_components if {
	every t in ["mydb.pg_catalog.pg_authid", "x.y.z.pg_shadow"] {
		verdict(["readonly"], [stmt_with("select", {"tables": [t]})]) == "deny"
	}
	verdict(["readonly"], [stmt_with("select", {"tables": ["pg_authid_copy"]})]) != "deny"
	verdict(["readonly"], [stmt_with("select", {"tables": ["pg_authid.notes"]})]) != "deny"
}

test_shadowed_functions_are_matched_by_name_only if {
	i := pg_input(["readonly"], [stmt_with("select", {"functions": ["lower"]})])
	shadowed := object.union(i, {"command": {"postgres": {"shadowed_functions": ["upper", "lower"]}}})
	portcullis.decision.verdict == "deny" with input as shadowed
	other := object.union(i, {"command": {"postgres": {"shadowed_functions": ["lowerx"]}}})
	portcullis.decision.verdict != "deny" with input as other
}

stale_execute(groups, stale) := {
	"identity": {"subject": "alice@example.com", "groups": groups},
	"connection": {"name": "orders-db", "type": "postgres"},
	"command": {"kind": "postgres.query", "raw": "EXECUTE p", "postgres": {
		"statements": [stmt_with("execute", {"name": "p"})],
		"has": pg_every_flag, "types": {"execute": true},
		"stale_prepared": stale,
	}},
}

test_execute_of_a_statement_prepared_before_the_code_changed_is_denied if {
	every groups in [["readonly"], ["dba", "pii-readers"]] {
		d := portcullis.decision with input as stale_execute(groups, ["o", "p"])
		d.verdict == "deny"
		"prepared statement p was prepared before the database's code changed: prepare it again under a new name" in d.reasons
		e := portcullis.decision with input as stale_execute(groups, ["q"])
		e.verdict != "deny"
	}
}

# --- information_schema's helpers drivers call qualified ---------------------------------

# pgjdbc's getPrimaryKeys: information_schema._pg_expandarray(con.conkey)
expandarray_call(qualified, unqualified) := stmt_with("select", {
	"tables": ["pg_catalog.pg_constraint"],
	"functions": ["current_database", "_pg_expandarray"],
	"qualified_functions": qualified,
	"unqualified_functions": unqualified,
})

expandarray_query(groups, s, facts) := object.union(pg_input(groups, [s]), {"command": {"postgres": facts}})

test_information_schema_expandarray_called_qualified_is_allowed_to_readers if {
	s := expandarray_call(["information_schema._pg_expandarray"], ["current_database"])
	verdict(["readonly"], [s]) == "mask"
}

test_information_schema_expandarray_unqualified_or_elsewhere_is_denied if {
	every call in [
		[[], ["current_database", "_pg_expandarray"]],
		[["pg_catalog._pg_expandarray"], ["current_database", "_pg_expandarray"]],
		[["information_schema._pg_expandarray"], ["current_database", "_pg_expandarray"]],
		[["public._pg_expandarray"], ["current_database"]],
		[["information_schema.x._pg_expandarray"], ["current_database"]],
	] {
		verdict(["readonly"], [expandarray_call(call[0], call[1])]) == "deny"
	}
}

test_other_information_schema_functions_stay_denied if {
	s := stmt_with("select", {
		"functions": ["_pg_char_max_length"],
		"qualified_functions": ["information_schema._pg_char_max_length"],
	})
	"function information_schema._pg_char_max_length is not in pg_catalog; readers may call only functions there" in reasons(["readonly"], [s])
}

test_information_schema_expandarray_denied_where_the_database_made_or_changed_one if {
	s := expandarray_call(["information_schema._pg_expandarray"], ["current_database"])
	made := portcullis.decision with input as expandarray_query(["readonly"], s, {"user_functions": ["_pg_expandarray"]})
	made.verdict == "deny"
	"function information_schema._pg_expandarray is not in pg_catalog; readers may call only functions there" in made.reasons
	changed := portcullis.decision with input as expandarray_query(["readonly"], s, {"shadowed_functions": ["_pg_expandarray"]})
	changed.verdict == "deny"
	"function _pg_expandarray is also defined outside pg_catalog in this database, so the call may not run the built-in" in changed.reasons
}

# --- pg_settings: the readable rows (a row filter, guards.rego), never the files ----------

test_pg_settings_files_and_whole_rows_are_denied_to_readers if {
	file_reads := [
		{"outputs": [{"name": "sourcefile", "kind": "plain", "columns": ["sourcefile"], "tables": []}]},
		{"outputs": [{"name": "n", "kind": "expression", "columns": ["sourceline"], "tables": [], "keeps": true}]},
		{"outputs": [{"name": "", "kind": "star", "columns": [], "tables": ["pg_catalog.pg_settings"]}]},
		{"outputs": [{"name": "s", "kind": "whole_row", "columns": [], "tables": ["pg_settings"]}]},
		{"outputs": [], "predicates": [{"column": "sourcefile", "use": "pattern"}]},
		{"outputs": [], "predicates": [{"column": "*", "use": "other"}]},
		{"outputs": [], "arguments": [{"function": "f", "columns": ["sourcefile"], "tables": []}]},
		{"outputs": [], "writes": [{"kind": "star", "columns": [], "tables": ["pg_settings"]}]},
	]
	every extra in file_reads {
		every t in ["pg_settings", "pg_catalog.PG_SETTINGS"] {
			s := stmt_with("select", object.union({"tables": [t]}, extra))
			sprintf("%s: its columns sourcefile and sourceline (and so its rows whole) name the configuration files only superusers are shown; select the columns you need, but those", [t]) in reasons(["readonly", "pii-readers"], [s])
		}
	}
	plain := stmt_with("select", {"tables": ["pg_settings"], "outputs": [{"name": "setting", "kind": "plain", "columns": ["setting"], "tables": []}]})
	every r in reasons(["readonly"], [plain]) {
		not contains(r, "sourcefile")
	}
}

test_a_view_over_pg_settings_is_denied_to_readers if {
	s := stmt_with("select", {"tables": ["public.my_settings"]})
	i := with_sources([s], {"public.my_settings": ["pg_catalog.pg_settings"]})
	d := portcullis.decision with input as i
	d.verdict == "deny"
	"public.my_settings shows the rows of pg_catalog.pg_settings, which holds secrets (settings only superusers are shown); read pg_settings itself" in d.reasons
	shown_verdict(["dba", "pii-readers"], [s], {"public.my_settings": ["pg_catalog.pg_settings"]}) == "allow"
}

test_questions_about_role_and_database_settings_are_denied_to_readers if {
	every column in ["setconfig", "rolconfig", "useconfig"] {
		every use in ["other", "equality", "pattern", "order", "partial"] {
			s := stmt_with("select", {"tables": ["pg_db_role_setting"], "predicates": [{"column": column, "use": use}]})
			sprintf("%s use of column %s, the settings the database keeps for roles and databases (which may hold credentials), answers questions about them: denied to readers", [use, column]) in reasons(["readonly", "pii-readers"], [s])
			verdict(["dba"], [s]) != "deny"
		}
	}
	verdict(["readonly"], [stmt_with("select", {"tables": ["pg_roles"], "predicates": [{"column": "rolname", "use": "equality"}]})]) != "deny"
}

test_current_setting_of_the_pg_settings_row_a_reader_reads_is_not_a_dynamic_name if {
	rows := stmt_with("select", {"tables": ["pg_catalog.pg_settings"], "functions": ["current_setting"], "dynamic_read_settings": true, "settings_rows": true})
	every r in reasons(["readonly"], [rows]) {
		not contains(r, "current_setting")
	}
	other := stmt_with("select", {"tables": ["pg_catalog.pg_settings"], "functions": ["current_setting"], "dynamic_read_settings": true})
	"current_setting with a setting name that is not a literal: what it reads cannot be judged" in reasons(["readonly"], [other])
	unread := stmt_with("select", {"tables": ["pg_catalog.pg_settings"], "functions": ["current_setting"]})
	"current_setting with a setting name that is not a literal: what it reads cannot be judged" in reasons(["readonly"], [unread])
}

# Readers read pg_settings through a row filter of the settings they may read, put on
# the statements naming it (guards.rego reader_settings_filter); never for privileged
# groups, never on a statement not naming it.
test_readers_read_pg_settings_through_a_filter_of_the_readable_names if {
	names := [n | some n, _ in data.portcullis.postgres.reader_readable_settings]
	count(names) > 100
	not "data_directory" in names
	every t in ["pg_settings", "pg_catalog.pg_settings", "PG_CATALOG.PG_SETTINGS"] {
		every groups in [["readonly"], ["readonly", "pii-readers"]] {
			s := stmt_with("select", {"tables": [t], "outputs": [{"name": "setting", "kind": "plain", "columns": ["setting"], "tables": []}]})
			d := portcullis.decision with input as object.union(pg_input(groups, [s]), {"command": {"postgres": {"has": {"pg_names": true}}}})
			d.verdict != "deny"
			d.row_filter == {"pg_settings": [{"column": "name", "op": "in", "value": names}]}
		}
	}
	s := stmt_with("select", {"tables": ["pg_settings"]})
	d := portcullis.decision with input as object.union(pg_input(["dba"], [s]), {"command": {"postgres": {"has": {"pg_names": true}}}})
	not d.row_filter
	o := stmt_with("select", {"tables": ["pg_class"]})
	e := portcullis.decision with input as object.union(pg_input(["readonly"], [o]), {"command": {"postgres": {"has": {"pg_names": true}}}})
	not e.row_filter
}

# A masked dba reads the server's settings, but not an application's (a dot in its name)
test_a_masked_dba_does_not_read_an_applications_setting if {
	app := stmt_with("select", {"functions": ["current_setting"], "read_settings": ["app.api_key"]})
	verdict(["dba"], [app]) == "deny"
	"current_setting may not read app.api_key, an application's setting (which the database's configuration may hold a credential in): denied to everyone not in pii-readers" in reasons(["dba"], [app])
	verdict(["dba", "pii-readers"], [app]) != "deny"
	verdict(["dba"], [stmt_with("select", {"functions": ["current_setting"], "read_settings": ["work_mem", "search_path"]})]) != "deny"
	verdict(["dba"], [stmt_with("show", {"setting": "work_mem"})]) != "deny"
	"SHOW APP.API_KEY, an application's setting (which the database's configuration may hold a credential in): denied to everyone not in pii-readers" in reasons(["dba"], [stmt_with("show", {"setting": "app.api_key"})])
}

test_a_masked_dbas_bound_setting_name_is_judged_at_bind if {
	parse := portcullis.decision with input as bound_setting_query(["dba"], bound_setting_call, {"protocol": "extended", "phase": "parse"})
	parse.verdict == "require_approval"
	every value in ["app.api_key", "NULL", {"shown": "timezone", "bytes": "8", "sha256": "-"}] {
		d := portcullis.decision with input as bound_setting_query(["dba"], bound_setting_call, {"protocol": "extended", "parameters": [value]})
		d.verdict == "deny"
	}
	ok := portcullis.decision with input as bound_setting_query(["dba"], bound_setting_call, {"protocol": "extended", "parameters": ["work_mem"]})
	ok.verdict != "deny"
	pii := portcullis.decision with input as bound_setting_query(["dba", "pii-readers"], bound_setting_call, {"protocol": "extended", "phase": "parse"})
	pii.verdict != "require_approval"
}
