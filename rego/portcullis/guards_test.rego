package portcullis_test

import data.portcullis

guard_input(groups, claims) := {
	"identity": {"subject": "agent@example.com", "groups": groups, "claims": claims},
	"connection": {"name": "orders-db", "type": "postgres"},
	"command": {"kind": "postgres.query", "raw": "SELECT * FROM tickets", "postgres": {"statements": [{"type": "select", "tag": "SelectStmt", "tables": ["tickets"], "functions": [], "qualified_functions": []}], "has": pg_every_flag, "types": {"select": true}, "protocol": "simple"}},
}

filters := {"orders-db": {"tickets": {"column": "tenant_id", "claim": "tenant"}}}

test_a_reader_gets_the_row_filter_of_its_claim if {
	d := portcullis.decision with input as guard_input(["readonly"], {"tenant": "acme"})
		with data.portcullis.row_filters as filters
	d.row_filter == {"tickets": [{"column": "tenant_id", "op": "=", "value": "acme"}]}
}

test_a_reader_without_the_claim_is_denied if {
	d := portcullis.decision with input as guard_input(["readonly"], {})
		with data.portcullis.row_filters as filters
	d.verdict == "deny"
	not d.row_filter
}

test_an_empty_claim_is_no_claim if {
	d := portcullis.decision with input as guard_input(["readonly"], {"tenant": ""})
		with data.portcullis.row_filters as filters
	d.verdict == "deny"
}

test_dba_is_neither_filtered_nor_budgeted if {
	d := portcullis.decision with input as guard_input(["dba"], {})
		with data.portcullis.row_filters as filters
	d.verdict in {"allow", "mask"}
	not d.row_filter
	not d.budget
	not d.breaker
}

test_readers_get_the_shipped_budget_and_breaker if {
	d := portcullis.decision with input as guard_input(["readonly"], {})
	d.budget == data.portcullis.budgets.readonly
	d.breaker == data.portcullis.breakers.readonly
	d.budget.over == "require_approval"
}

test_several_groups_take_the_first_in_sorted_order if {
	d := portcullis.decision with input as guard_input(["readonly", "analyst"], {})
	d.budget == data.portcullis.budgets.analyst
}

test_no_filter_on_another_connection if {
	i := object.union(guard_input(["readonly"], {}), {"connection": {"name": "other-db"}})
	d := portcullis.decision with input as i with data.portcullis.row_filters as filters
	not d.row_filter
}

# The usual standing (a budget and a breaker) is read without the pass over its guards;
# any other standing takes the pass: each reads what the other would
test_command_guards_are_the_same_object_with_and_without_the_pass if {
	budget := data.portcullis.budgets.readonly
	breaker := data.portcullis.breakers.readonly
	guards := {"budget": "readonly", "breaker": "readonly"}
	i := object.union(guard_input(["readonly"], {}), {"standing": {"guards": guards}})
	portcullis.command_guards == {"budget": budget, "breaker": breaker} with input as i
	filtered := object.union(i, {"standing": {"guards": object.union(guards, {"row_filter": {"t": []}})}})
	portcullis.command_guards == {"budget": budget, "breaker": breaker, "row_filter": {"t": []}} with input as filtered
	other := object.union(i, {"standing": {"guards": object.union(guards, {"other": "x"})}})
	portcullis.command_guards == {"budget": budget, "breaker": breaker} with input as other
	unknown := object.union(i, {"standing": {"guards": {"budget": "nobody", "breaker": "readonly"}}})
	portcullis.command_guards == {"breaker": breaker} with input as unknown
}

# A standing naming no guard (a privileged group's) gives none, for every kind, without
# the pass over its guards; without a standing the guards are worked out to the same.
test_a_standing_naming_no_guard_gives_none if {
	i := object.union(guard_input(["dba"], {}), {"standing": {"guards": {}}})
	portcullis.command_guards == {} with input as i
	portcullis.command_guards == {} with input as object.union(i, {"command": {"kind": "ssh.exec"}})
	portcullis.command_guards == {} with input as guard_input(["dba"], {})
}

test_the_guards_are_the_same_with_the_standing_and_without if {
	plain := guard_input(["readonly"], {"tenant": "acme"})
	standing := portcullis.standing with input as plain with data.portcullis.row_filters as filters
	without := portcullis.command_guards with input as plain with data.portcullis.row_filters as filters
	given := object.union(plain, {"standing": standing})
	portcullis.command_guards == without with input as given with data.portcullis.row_filters as filters
	without.row_filter.tickets == [{"column": "tenant_id", "op": "=", "value": "acme"}]
}
