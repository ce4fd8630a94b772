# data.portcullis.approvers: may this approver decide this approval request?
#
# input: {"approver": {"subject", "groups"},
#         "request": {"requester": {"subject", "groups"}, "approvers": ["group:x", "user:y"],
#                     "connection": ..., "command": ...}}
# An approver must match one of the request's approver specs and must never be the
# requester, whatever groups they hold.
package portcullis

# Defaults, not object.get: they must hold even when there is no input document at all.
default approver_subject := ""

approver_subject := input.approver.subject

default requester_subject := ""

requester_subject := input.request.requester.subject

default approver_specs := []

approver_specs := input.request.approvers

approver_groups := {g | some g in input.approver.groups}

approver_matches contains spec if {
	some spec in approver_specs
	startswith(spec, "group:")
	substring(spec, 6, -1) in approver_groups
}

approver_matches contains spec if {
	some spec in approver_specs
	startswith(spec, "user:")
	approver_subject != ""
	lower(substring(spec, 5, -1)) == lower(approver_subject)
}

approver_refusals contains "an approver must be identified" if {
	approver_subject == ""
}

approver_refusals contains "the request names no requester" if {
	requester_subject == ""
}

# Subjects compare case-insensitively: Alice@example.com is alice@example.com.
approver_refusals contains "nobody may approve their own request" if {
	lower(approver_subject) == lower(requester_subject)
}

approver_refusals contains sprintf("%s is not one of %s", [approver_subject, concat(", ", approver_specs)]) if {
	count(approver_matches) == 0
}

approvers := {"allowed": true, "reasons": sort([sprintf("%s matches %s", [approver_subject, m]) | some m in approver_matches])} if {
	count(approver_matches) > 0
	count(approver_refusals) == 0
} else := {"allowed": false, "reasons": sort([r | some r in approver_refusals])}
