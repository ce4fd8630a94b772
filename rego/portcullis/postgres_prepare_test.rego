package portcullis_test

import data.portcullis

# SQL PREPARE of a privileged identity's statement that needs approval is denied: EXECUTE,
# decided as a read, would run it again without one (postgres.rego).

pg_prepared(write) := [stmt("prepare"), object.union(write, {"nested": true})]

test_a_dba_prepares_no_statement_needing_approval if {
	d := portcullis.decision with input as pg_input(["dba"], pg_prepared(stmt_with("delete", {"has_where": false})))
	d.verdict == "deny"
	some reason in d.reasons
	contains(reason, "not prepared with PREPARE")
}

test_a_dba_prepares_a_statement_needing_none if {
	d := portcullis.decision with input as pg_input(["dba"], pg_prepared(stmt_with("delete", {"has_where": true})))
	d.verdict != "deny"
}

test_a_readers_prepared_write_still_waits_for_approval if {
	d := portcullis.decision with input as pg_input(["readonly"], pg_prepared(stmt_with("delete", {"has_where": true})))
	d.verdict == "require_approval"
}
