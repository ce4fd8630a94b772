package portcullis_test

import data.portcullis

approval_request(approver, groups) := {
	"approver": {"subject": approver, "groups": groups},
	"request": {
		"requester": {"subject": "alice@example.com", "groups": ["readonly", "security"]},
		"approvers": ["group:security", "group:dba", "user:carol@example.com"],
		"connection": {"name": "orders-db"},
		"command": {"kind": "postgres.query", "raw": "delete from orders where id = 1"},
	},
}

test_security_member_may_approve if {
	a := portcullis.approvers with input as approval_request("bob@example.com", ["security"])
	a.allowed
	a.reasons == ["bob@example.com matches group:security"]
}

test_dba_member_may_approve if {
	a := portcullis.approvers with input as approval_request("dave@example.com", ["dba"])
	a.allowed
}

test_named_user_may_approve if {
	a := portcullis.approvers with input as approval_request("Carol@example.com", [])
	a.allowed
}

test_outsider_may_not_approve if {
	a := portcullis.approvers with input as approval_request("eve@example.com", ["readonly"])
	not a.allowed
	"eve@example.com is not one of group:security, group:dba, user:carol@example.com" in a.reasons
}

test_no_self_approval_even_for_security if {
	a := portcullis.approvers with input as approval_request("alice@example.com", ["security", "dba"])
	not a.allowed
	"nobody may approve their own request" in a.reasons
	b := portcullis.approvers with input as approval_request("ALICE@example.com", ["security"])
	not b.allowed
}

test_anonymous_approver_refused if {
	a := portcullis.approvers with input as approval_request("", ["security"])
	not a.allowed
	"an approver must be identified" in a.reasons
}

test_request_without_requester_refused if {
	a := portcullis.approvers with input as {"approver": {"subject": "bob@example.com", "groups": ["security"]}, "request": {"approvers": ["group:security"]}}
	not a.allowed
	"the request names no requester" in a.reasons
}

test_request_without_approver_specs_refused if {
	a := portcullis.approvers with input as {"approver": {"subject": "bob@example.com", "groups": ["security"]}, "request": {"requester": {"subject": "alice@example.com"}}}
	not a.allowed
}
