package portcullis_test

import data.portcullis

# The decision of a session's command is the same whether the PDP passes the session's
# standing (as JSON: its sets arrive as lists) or the policy works it out itself, compared
# as the JSON the PDP receives (a mask read from the standing is a list in the order the
# set would have).
with_standing(i) := object.union(i, {"standing": json.unmarshal(json.marshal(s))}) if {
	s := portcullis.standing with input as object.filter(i, {"identity", "connection", "session"})
}

decides_alike(i) if {
	without := portcullis.decision with input as i
	passed := portcullis.decision with input as with_standing(i)
	json.marshal(without) == json.marshal(passed)
}

test_a_readers_query_decides_alike_with_its_standing if {
	every groups in [["readonly"], ["dba"], ["pii-readers", "readonly"], ["nobody"]] {
		decides_alike(pg_input(groups, [stmt("select")]))
		decides_alike(pg_input(groups, [stmt("select"), stmt("update")]))
		decides_alike(pg_input(groups, [stmt_with("set", {"setting": "role", "reset": false})]))
	}
}

test_a_derived_mask_joins_the_standings_masks if {
	s := stmt_with("select", {"outputs": [{"name": "e", "kind": "expression", "columns": ["email"], "tables": ["customers"]}]})
	i := pg_input(["readonly"], [s])
	decides_alike(i)
	d := portcullis.decision with input as with_standing(i)
	{"derived": true, "strategy": "redact"} in d.mask
	{"field": "email", "strategy": "redact"} in d.mask
}

test_other_kinds_decide_alike_with_their_standing if {
	every groups in [["readonly"], ["dba"], ["pii-readers"]] {
		decides_alike(mcp_input(groups, tool_call("get_invoice")))
		decides_alike(mcp_input(groups, listing("get_invoice")))
		decides_alike(ssh_exec_input(groups, [ssh_part(["uptime"])]))
		decides_alike({
			"identity": {"subject": "alice@example.com", "groups": groups},
			"connection": {"name": "billing-api", "type": "http"},
			"command": {"kind": "http.request", "raw": "GET /v1/users/7", "http": {"method": "GET", "path": "/v1/users/7"}},
		})
	}
}

test_row_filters_and_their_claims_decide_alike_with_the_standing if {
	every claims in [{"tenant": "acme"}, {}] {
		without := portcullis.decision with input as guard_input(["readonly"], claims)
			with data.portcullis.row_filters as filters
		i := with_standing(guard_input(["readonly"], claims)) with data.portcullis.row_filters as filters
		passed := portcullis.decision with input as i with data.portcullis.row_filters as filters
		json.marshal(without) == json.marshal(passed)
	}
}

test_the_standing_of_a_reader if {
	s := portcullis.standing with input as {"identity": {"subject": "a", "groups": ["readonly"]}, "connection": {"name": "orders-db"}}
	s.privileged == false
	s.pii_reader == false
	s.member == true
	count(s.denials) == 0
	s.guards.budget == "readonly"
}

test_the_standing_of_an_outsider_denies_every_command if {
	s := portcullis.standing with input as {"identity": {"subject": "m", "groups": ["nobody"]}, "connection": {"name": "orders-db"}}
	s.member == false
	"m is not in a group allowed on orders-db" in s.denials
	d := portcullis.decision with input as object.union(pg_input(["nobody"], [stmt("select")]), {"standing": s})
	d.verdict == "deny"
}

test_a_statement_type_left_out_of_the_summary_is_denied if {
	i := json.patch(pg_input(["dba"], [stmt("select"), stmt("drop")]), [{"op": "replace", "path": "/command/postgres/types", "value": {"select": true}}])
	d := portcullis.decision with input as i
	d.verdict == "deny"
	"statement 1 (drop) is not in the query's summary of statement types" in d.reasons
}

test_a_query_without_a_summary_is_denied if {
	i := json.patch(pg_input(["dba"], [stmt("select")]), [{"op": "remove", "path": "/command/postgres/types"}])
	d := portcullis.decision with input as i
	d.verdict == "deny"
}

test_a_query_without_its_flags_is_denied if {
	some flags in [null, "settings", ["settings"]]
	for_dba := json.patch(pg_input(["dba"], [stmt("select")]), [{"op": "remove", "path": "/command/postgres/has"}])
	with_flags := json.patch(pg_input(["dba"], [stmt("select")]), [{"op": "replace", "path": "/command/postgres/has", "value": flags}])
	every i in [for_dba, with_flags] {
		d := portcullis.decision with input as i
		d.verdict == "deny"
		"the query's flags (input.command.postgres.has) are missing: the statements cannot be judged" in d.reasons
	}
}

# A flag the PDP leaves out skips the rules it guards (what makes it worth having); the
# PDP sets it from the same fields those rules read (tests/test_policy_flags.py).
test_a_flag_left_out_skips_the_rules_it_guards if {
	locking := stmt_with("select", {"locking": true})
	d := portcullis.decision with input as pg_input(["readonly"], [locking])
	d.verdict == "require_approval"
	i := json.patch(pg_input(["readonly"], [locking]), [{"op": "remove", "path": "/command/postgres/has/locking"}])
	portcullis.decision.verdict == "deny" with input as i
}
