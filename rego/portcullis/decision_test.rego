package portcullis_test

import data.portcullis

test_unknown_kind_denied if {
	d := portcullis.decision with input as {
		"identity": {"subject": "alice@example.com", "groups": ["dba"]},
		"connection": {"name": "orders-db"},
		"command": {"kind": "teleport"},
	}
	d.verdict == "deny"
	"no rule allows teleport" in d.reasons
	d.cache_key == "exact"
	d.cache_ttl_seconds == 0
	not d.approval
	count(d.mask) == 0
}

test_empty_input_denied if {
	d := portcullis.decision with input as {}
	d.verdict == "deny"
	"unknown connection \"\"" in d.reasons
}

approved_insert(approver) := object.union(
	pg_input(["readonly"], [stmt_with("insert", {})]),
	{"approval": {"id": "ap-1", "state": "approved", "approver": approver}},
)

test_approved_request_runs_masked if {
	d := portcullis.decision with input as approved_insert("bob@example.com")
	d.verdict == "mask"
	"approved by bob@example.com (approval ap-1)" in d.reasons
	d.cache_key == "exact"
	d.cache_ttl_seconds == 0
}

test_self_approval_does_not_count if {
	d := portcullis.decision with input as approved_insert("alice@example.com")
	d.verdict == "require_approval"
}

test_approval_does_not_override_deny if {
	i := object.union(
		pg_input(["readonly"], [stmt_with("select", {"functions": ["pg_read_file"]})]),
		{"approval": {"id": "ap-1", "state": "approved", "approver": "bob@example.com"}},
	)
	d := portcullis.decision with input as i
	d.verdict == "deny"
}

test_pending_approval_state_still_requires_approval if {
	i := object.union(
		pg_input(["readonly"], [stmt_with("insert", {})]),
		{"approval": {"id": "ap-1", "state": "pending", "approver": ""}},
	)
	d := portcullis.decision with input as i
	d.verdict == "require_approval"
}

# No input document at all (not even {}) must still deny.
test_no_input_denied if {
	portcullis.decision.verdict == "deny"
	count(portcullis.decision.reasons) > 0
	not portcullis.approvers.allowed
}

# A statement without a type cannot be told apart from the ones the cache excludes.
test_a_statement_without_a_type_is_not_cached_by_shape if {
	d := portcullis.decision with input as pg_input(["dba"], [{"tag": "x"}])
	d.cache_key == "exact"
	d.cache_ttl_seconds == 0
}

test_a_denied_session_open_carries_neither_credential_nor_settings if {
	d := portcullis.decision with input as {
		"identity": {"subject": "mallory", "groups": ["nobody"]},
		"connection": {"name": "orders-db", "type": "postgres"},
		"command": {"kind": "session.open"},
	}
	d.verdict == "deny"
	not d.credential
	not d.session_settings
}

# HTTP reads and MCP listing questions are reused for the exact same request; writes,
# tool calls and anything answered under an approval are not.
test_http_reads_and_mcp_listings_are_cached_exactly if {
	every method in ["GET", "HEAD"] {
		d := portcullis.decision with input as http_input(["readonly"], method)
		d.cache_key == "exact"
		d.cache_ttl_seconds > 0
	}
	l := portcullis.decision with input as mcp_input(["readonly"], listing("get_invoice"))
	l.cache_key == "exact"
	l.cache_ttl_seconds > 0
}

test_http_writes_tool_calls_and_approved_requests_are_not_cached if {
	every method in ["POST", "PUT", "PATCH", "DELETE"] {
		d := portcullis.decision with input as http_input(["dba"], method)
		d.cache_ttl_seconds == 0
	}
	c := portcullis.decision with input as mcp_input(["readonly"], tool_call("get_invoice"))
	c.cache_ttl_seconds == 0
	approved := object.union(http_input(["readonly"], "GET"), {"approval": {"id": "ap-1", "state": "approved", "approver": "bob"}})
	a := portcullis.decision with input as approved
	a.cache_ttl_seconds == 0
}

# DISCARD (which resets the search_path) is decided every time, never from a proxy's cache.
test_discard_is_not_cached if {
	d := portcullis.decision with input as pg_input(["dba"], [stmt("discard")])
	d.verdict != "deny"
	d.cache_ttl_seconds == 0
}

# pii_masks.rego writes the masks out from data.json; data that says otherwise wins, with
# the standing (which says the module is stale) and without it.
test_masks_follow_the_data_when_the_written_out_ones_are_stale if {
	some standing_given in [false, true]
	d := masked_select(standing_given) with data.portcullis.sensitive_columns as ["note"]
		with data.portcullis.detectors as ["ssn"]
	d.mask == {{"field": "note", "strategy": "redact"}, {"detector": "ssn", "strategy": "partial"}}
}

test_the_written_out_masks_are_those_of_the_data if {
	not portcullis.pii_masks_stale
	s := portcullis.standing with input as pg_input(["readonly"], [stmt_with("select", {})])
	not s.stale_masks
	d := masked_select(true)
	d.mask == portcullis.shipped_pii_masks
}

masked_select(standing_given) := d if {
	plain := pg_input(["readonly"], [stmt_with("select", {})])
	standing := portcullis.standing with input as plain
	given := object.union(plain, {"standing": standing | standing_given})
	d := portcullis.decision with input as given
	d.verdict == "mask"
}

# decision.rego and guards.rego read the standing itself where they can (command_masks, the
# guards), and each else-branch names a rule once: every identity's decision of a read, a
# write and a denied statement is the one it gets without a standing.
test_every_verdict_is_the_same_with_the_standing_and_without if {
	every groups in [["readonly"], ["dba"], ["pii-readers", "readonly"], ["pii-readers", "dba"]] {
		every statements in [[stmt_with("select", {})], [stmt("update")], [stmt("unparseable")]] {
			decides_alike_with_the_standing(pg_input(groups, statements))
		}
	}
}

decides_alike_with_the_standing(plain) if {
	standing := portcullis.standing with input as plain
	without := portcullis.decision with input as plain
	portcullis.decision == without with input as object.union(plain, {"standing": standing})
}

test_a_pii_readers_standing_takes_no_shipped_masks if {
	plain := pg_input(["pii-readers", "readonly"], [stmt_with("select", {})])
	standing := portcullis.standing with input as plain
	standing.pii_reader == true
	d := portcullis.decision with input as object.union(plain, {"standing": standing})
	d.verdict == "allow"
	d.mask == set()
}

# `answer`, what the PDP's evaluation workers ask for (pdp/engine/worker.py), writes the
# shipped mask set as shipped_masks_mark where it is the whole mask (the worker writes the
# set's JSON in its place); `decision` is the same document with the set in place
# (with_standing: standing_test.rego's).
test_the_answer_marks_the_shipped_masks_and_the_decision_holds_them if {
	given := with_standing(pg_input(["readonly"], [stmt_with("select", {})]))
	a := portcullis.answer with input as given
	a.verdict == "mask"
	a.mask == portcullis.shipped_masks_mark
	d := portcullis.decision with input as given
	d.mask == portcullis.shipped_pii_masks
	object.remove(d, ["mask"]) == object.remove(a, ["mask"])
}

test_a_require_approval_answer_marks_them_too if {
	given := with_standing(pg_input(["readonly"], [stmt("update")]))
	a := portcullis.answer with input as given
	a.verdict == "require_approval"
	a.mask == portcullis.shipped_masks_mark
	d := portcullis.decision with input as given
	d.mask == portcullis.shipped_pii_masks
}

test_no_mark_without_the_standing_for_a_pii_reader_or_beside_a_derived_mask if {
	plain := portcullis.answer with input as pg_input(["readonly"], [stmt_with("select", {})])
	plain.mask == portcullis.shipped_pii_masks
	reader := with_standing(pg_input(["pii-readers", "readonly"], [stmt_with("select", {})]))
	b := portcullis.answer with input as reader
	b.mask == set()
	derived := with_standing(pg_input(["readonly"], [stmt_with("select", {})]))
	c := portcullis.answer with input as derived with data.portcullis.mask_rules as {{"derived": "x", "strategy": "redact"}}
	c.mask == {{"derived": "x", "strategy": "redact"}} | portcullis.shipped_pii_masks
}

# with no shipped mask at all, the decision is what an empty command_masks gave before the
# mark: an allow, and a require_approval without masks
test_an_empty_shipped_set_decides_as_before_the_mark if {
	read := with_standing(pg_input(["readonly"], [stmt_with("select", {})]))
	d := portcullis.decision with input as read with data.portcullis.shipped_pii_masks as set()
	d.verdict == "allow"
	d.reasons == {"every statement is allowed"}
	d.mask == set()
	write := with_standing(pg_input(["readonly"], [stmt("update")]))
	r := portcullis.decision with input as write with data.portcullis.shipped_pii_masks as set()
	r.verdict == "require_approval"
	r.mask == set()
}

test_shipped_mask_parts_are_the_mark_and_the_shipped_set if {
	portcullis.shipped_mask_parts == [portcullis.shipped_masks_mark, portcullis.shipped_pii_masks]
}
