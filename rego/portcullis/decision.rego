# The entry point: data.portcullis.decision.
#
# Every other module adds to four partial sets, and only this module turns them into the
# answer the PDP expects (DESIGN.md "Policy contract"):
#
#   deny           reasons the command must not run
#   needs_approval reasons the command may run once someone approves it
#   allow          reasons the command may run
#   mask_rules     {"field"|"detector", "strategy"} redactions applied to what comes back
#
# deny > require_approval > mask > allow, and a command no rule allows is denied.
package portcullis

# A command that no module allows and none offers for approval is denied, so forgetting
# a rule fails closed.
deny contains sprintf("no rule allows %s", [command_kind]) if {
	count(allow) == 0
	count(needs_approval) == 0
}

# An approval recorded by someone other than the requester turns require_approval into
# a go-ahead; deny still wins, and masks still apply.
approved if {
	input.approval.state == "approved"
	input.approval.approver != input.identity.subject
}

allow contains sprintf("approved by %s (approval %s)", [input.approval.approver, object.get(input.approval, "id", "?")]) if {
	approved
	count(needs_approval) > 0
}

verdict := "deny" if {
	count(deny) > 0
} else := "require_approval" if {
	count(needs_approval) > 0
	not approved
} else := "mask" if {
	count(allow) > 0
	count(mask_rules) > 0
} else := "allow" if {
	count(allow) > 0
} else := "deny"

# Sets leave the engine as sorted JSON arrays, so they are the answer's lists as they are.
reasons := deny if {
	count(deny) > 0
} else := {"no rule allows this command"} if {
	verdict == "deny"
} else := needs_approval if {
	verdict == "require_approval"
} else := allow

mask := set() if {
	verdict == "deny"
} else := mask_rules

approval_part := {"approval": {
	"approvers": [sprintf("group:%s", [g]) | some g in data.portcullis.approval.groups],
	"ttl_seconds": data.portcullis.approval.ttl_seconds,
}} if {
	verdict == "require_approval"
} else := {}

credential_part := {"credential": {"ref": ref}} if {
	verdict != "deny"
	ref := session_credential_ref
} else := {}

decision := object.union_n([
	{
		"verdict": verdict,
		"reasons": reasons,
		"mask": mask,
		"cache_ttl_seconds": cache_ttl_seconds,
		"cache_key": cache_key,
	},
	approval_part,
	credential_part,
])

# Cache hints. Only postgres answers are cacheable by shape: every shipped postgres rule
# looks at statement types, tables, functions and settings names, never at literals.
# An answer that used an approval is never cached: it belongs to that one request.
cacheable_by_shape if {
	input.command.kind == "postgres.query"
	not input.approval
	every s in input.command.postgres.statements {
		s.type != "unparseable"
	}
}

cache_ttl_seconds := data.portcullis.decision_cache_ttl_seconds if cacheable_by_shape else := 0

cache_key := "shape" if cacheable_by_shape else := "exact"
