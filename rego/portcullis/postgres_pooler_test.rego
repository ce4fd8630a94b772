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
