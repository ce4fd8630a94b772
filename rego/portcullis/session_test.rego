package portcullis_test

import data.portcullis

session_input(name, groups) := {
	"identity": {"subject": "alice@example.com", "groups": groups},
	"connection": {"name": name},
	"command": {"kind": "session.open"},
}

test_session_opens_for_connection_groups if {
	every name in ["orders-db", "billing-api", "web-1"] {
		d := portcullis.decision with input as session_input(name, ["readonly"])
		d.verdict == "allow"
		not d.credential
		d.cache_key == "exact"
	}
}

test_session_denied_outside_groups if {
	d := portcullis.decision with input as session_input("orders-db", ["marketing"])
	d.verdict == "deny"
	"alice@example.com is not in a group allowed on orders-db" in d.reasons
}

test_session_denied_without_groups if {
	d := portcullis.decision with input as {"identity": {"subject": "x"}, "connection": {"name": "orders-db"}, "command": {"kind": "session.open"}}
	d.verdict == "deny"
}

test_session_denied_for_unknown_connection if {
	d := portcullis.decision with input as session_input("prod-secrets", ["dba"])
	d.verdict == "deny"
	"unknown connection \"prod-secrets\"" in d.reasons
}

test_session_carries_credential_ref if {
	connections := {"orders-db": {"type": "postgres", "groups": ["readonly"], "credential_ref": "database/creds/orders-readonly"}}
	d := portcullis.decision with input as session_input("orders-db", ["readonly"])
		with data.portcullis.connections as connections
	d.verdict == "allow"
	d.credential == {"ref": "database/creds/orders-readonly"}
}

test_commands_need_membership_too if {
	d := portcullis.decision with input as pg_input(["marketing"], [stmt("select")])
	d.verdict == "deny"
}

test_command_kind_must_fit_connection if {
	i := object.union(pg_input(["dba"], [stmt("select")]), {"connection": {"name": "web-1"}})
	d := portcullis.decision with input as i
	d.verdict == "deny"
	"postgres.query is not a command of a ssh connection" in d.reasons
}

test_reader_sessions_pin_read_only_and_a_timeout if {
	d := portcullis.decision with input as session_input("orders-db", ["readonly"])
	d.verdict == "allow"
	d.session_settings == {
		"default_transaction_read_only": "on",
		"statement_timeout": "60000",
		"transaction_timeout": "600000",
	}
	timeout := portcullis.decision with input as session_input("orders-db", ["readonly"])
		with data.portcullis.postgres.reader_statement_timeout_ms as 5000
		with data.portcullis.postgres.reader_transaction_timeout_ms as 30000
	timeout.session_settings.statement_timeout == "5000"
	timeout.session_settings.transaction_timeout == "30000"
}

test_a_reader_transaction_is_bounded_where_data_names_no_bound if {
	d := portcullis.decision with input as session_input("orders-db", ["readonly"])
		with data.portcullis.postgres as object.remove(data.portcullis.postgres, ["reader_transaction_timeout_ms"])
	d.session_settings.transaction_timeout == "600000"
}

test_privileged_and_other_protocol_sessions_pin_nothing if {
	dba := portcullis.decision with input as session_input("orders-db", ["dba"])
	dba.verdict == "allow"
	not dba.session_settings
	http := portcullis.decision with input as session_input("billing-api", ["readonly"])
	not http.session_settings
	outsider := portcullis.decision with input as session_input("orders-db", ["marketing"])
	not outsider.session_settings
}

test_sessions_per_identity_capped if {
	under := json.patch(session_input("orders-db", ["dba"]), [{"op": "add", "path": "/session", "value": {"open_sessions": 15}}])
	d := portcullis.decision with input as under
	d.verdict == "allow"
	at := json.patch(under, [{"op": "replace", "path": "/session/open_sessions", "value": 16}])
	d2 := portcullis.decision with input as at
	d2.verdict == "deny"
	"alice@example.com already holds 16 sessions on orders-db (at most 16)" in d2.reasons
}
