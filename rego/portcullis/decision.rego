# The entry point: data.portcullis.decision.
#
# Every other module adds to four partial sets, and only this module turns them into the
# answer the PDP expects (DESIGN.md "Policy contract"):
#
#   deny           reasons the command must not run
#   needs_approval reasons the command may run once someone approves it
#   allow          reasons the command may run
#   mask_rules     {"field"|"detector"|"derived", "strategy"} redactions applied to what
#                  comes back; a derived rule may name "positions" of "outputs" (the
#                  computed outputs it masks, postgres_lineage.rego)
#   mask_reasons   why a mask applies, where it is worth saying (a derived output)
#
# deny > require_approval > mask > allow, and a command no rule allows is denied: the last
# branch, so forgetting a rule fails closed, and its generic reason is given only when no
# module said why (a specific deny reason is not repeated as "no rule allows <kind>").
package portcullis

# Four more sets hold deny reasons, all of them reasons of `deny` below: pg_denials
# (postgres.rego) and pg_lineage_denials (postgres_lineage.rego), and deny_unindexed and
# pg_lineage_unindexed (postgres_lineage.rego's), the reasons of deny rules that open with
# no input test the evaluator's rule index can read (a command kind, a statement type, a
# query flag), against which every postgres command is checked (each looks at every
# statement, or at the session's standing). They are kept apart for the evaluator's sake
# alone. OPA 1.20.2 keeps, for its rule lookups, one slot per rule position any lookup has
# returned (a rule's position: its place among the rules of its set, in file order), and
# walks every slot again on each lookup, ~330 instructions a slot, ~30 lookups a decision:
# so no set returns more than 6 rules for a postgres command, and the rules a postgres
# command meets come within the first 6 of their set (deny_unindexed's 12 rules, allow's
# rule at place 14, the function rules of pg_denials and pg_lineage_denials at 12-16:
# 15 -> 9 slots for an agent's query; then needs_approval's postgres rule at place 8,
# pg_uncached's rule of constant keys at 7, the privileged's function approval at 8:
# 9 -> 6). Each rule the index cannot skip is returned on every lookup: deny_unindexed
# holds 6, deny 6 (the next two rules, postgres.rego's, were deny_unindexed's), and
# pg_lineage_unindexed 6. A deny rule written into any of these sets, or into deny itself,
# denies alike.
deny contains reason if {
	some reason in deny_unindexed
}

deny contains reason if {
	some reason in pg_denials
}

deny contains reason if {
	some reason in pg_lineage_denials
}

deny contains reason if {
	some reason in pg_lineage_unindexed
}

# Two rules of postgres.rego, which every command meets, written here (they were
# deny_unindexed's) so that no set returns more than 6 rules for a postgres command
# (above): a postgres command whose statements were not classified, and the denials of
# everyone not privileged (pg_reader_denials).
deny contains "the statements of this query were not classified" if {
	input.command.kind in {"postgres.query", "postgres.function_call"}
	not input.command.postgres.statements
}

deny contains reason if {
	not privileged
	some reason in pg_reader_denials
}

# ssh.rego's rules of an exec (its command line's parts) keep their reasons in sets of
# their own too, ssh_denials and ssh_approvals: among every module's deny and
# needs_approval rules in file order they came at places 29-35 and 9-25 (above).
deny contains reason if {
	input.command.kind == "ssh.exec"
	some reason in ssh_denials
}

needs_approval contains reason if {
	input.command.kind == "ssh.exec"
	some reason in ssh_approvals
}

# postgres.rego's: a query with a statement that needs approval (pg_approval) needs it.
# Written here for the rule index alone, as allow's rule below is (it came 9th among the
# needs_approval rules of every module, and is asked on every postgres command).
needs_approval contains reason if {
	input.command.kind in {"postgres.query", "postgres.function_call"}
	some [_, reason] in pg_approval
}

# postgres.rego's allow: a query whose every statement is allowed (pg_allowed). Written here
# for the rule index alone (above): among every module's allow rules in file order, after
# http.rego's and mcp.rego's, it came 14th, and it is asked on every postgres command.
allow contains "every statement is allowed" if {
	input.command.kind in {"postgres.query", "postgres.function_call"}
	count(input.command.postgres.statements) == count(pg_allowed)
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

# The answer is built in one else-chain, one object per verdict: every rule the decision
# refers to is a lookup the evaluator pays for on each request (its rule index is consulted
# again even when the value is cached), so each branch names a rule once and keeps its value
# in a local, the verdict, its reasons and its mask are settled together, and the approval
# spec is built only for the verdict that returns it. A denied command gets no credential,
# no session settings and no guards, and only session.open asks for the first two at all
# (no other kind gets either; command_guards is empty for it).
answer := object.union_n([core, cache_part, command_guards]) if {
	core := decision_core
	core.verdict != "deny"
	input.command.kind != "session.open"
} else := object.union(core, cache_part) if {
	core := decision_core
	core.verdict == "deny"
} else := object.union_n([decision_core, cache_part, credential_part, session_part])

# `answer` is the decision the PDP's evaluation workers ask for (pdp/engine/worker.py).
# Where a command's masks are the shipped literal set and nothing more (shipped_pii_masks:
# a reader's SQL or HTTP command without a derived mask, most decisions), its "mask" is
# the string shipped_masks_mark instead, and the worker writes the set's JSON, made once
# per policy, in its place: the evaluator no longer copies, converts and serialises the
# same fourteen objects on each of them (~120,000 of a reader's ~2.2M instructions per
# evaluation, bench/pdp/policy_ir.py). `decision`, the contract's document (tests, the
# CLI, a remote OPA), is `answer` with the set in place of the mark: the same document as
# when the set was built here (with no shipped mask at all, the allow it was then).
decision := object.union(a, {"mask": shipped_pii_masks}) if {
	a := answer
	a.mask == shipped_masks_mark
	count(shipped_pii_masks) > 0
} else := object.union(a, {"verdict": "allow", "reasons": allow, "mask": set()}) if {
	a := answer
	a.mask == shipped_masks_mark
	a.verdict == "mask"
} else := object.union(a, {"mask": set()}) if {
	a := answer
	a.mask == shipped_masks_mark
} else := answer

shipped_masks_mark := "portcullis:shipped_pii_masks"

# Both, for the worker's one look at them when it loads a policy (pdp/engine/opa.py)
shipped_mask_parts := [shipped_masks_mark, shipped_pii_masks]

# The mask of `answer`: the mark where command_masks is the shipped set alone (its first
# branch, and no derived mask), else command_masks.
answer_masks := shipped_masks_mark if {
	input.standing.pii_reader == false
	input.command.kind in {"postgres.query", "postgres.function_call", "http.request"}
	not input.standing.stale_masks
	count(mask_rules) == 0
} else := command_masks

decision_core := {"verdict": "deny", "reasons": reasons, "mask": set()} if {
	reasons := deny
	count(reasons) > 0
} else := {
	"verdict": "require_approval",
	"reasons": reasons,
	"mask": answer_masks,
	"approval": {
		"approvers": [sprintf("group:%s", [g]) | some g in data.portcullis.approval.groups],
		"ttl_seconds": data.portcullis.approval.ttl_seconds,
	},
} if {
	reasons := needs_approval
	count(reasons) > 0
	not approved
} else := {"verdict": "mask", "reasons": reasons | mask_reasons, "mask": masks} if {
	reasons := allow
	count(reasons) > 0
	masks := answer_masks
	count(masks) > 0 # (the mark, a string, is not empty: `decision` checks the set)
} else := {"verdict": "allow", "reasons": reasons, "mask": set()} if {
	reasons := allow
	count(reasons) > 0
} else := {"verdict": "deny", "reasons": {sprintf("no rule allows %s", [command_kind])}, "mask": set()}

# The masks of this command: what the modules add to mask_rules (derived outputs), and the
# masks everyone outside pii-readers gets for this kind: sensitive columns by name for
# SQL, HTTP and MCP calls that return data, and the detectors over text answers of every
# kind that returns any (ssh.exec and ssh.shell too). The latter are literal sets
# (pii_masks.rego, generated from data.portcullis.sensitive_columns and detectors): one
# answer rather than rules adding each mask, which built and hashed twelve objects again
# on every decision.
command_masks := mask_rules | shipped_pii_masks if {
	# SQL and HTTP, the commands of nearly every decision, without the rule pii_masks, and
	# reading the session's standing itself (session.rego's pii_reader and standing.rego's
	# session_standing say the same of it): a rule reference costs the evaluator more than
	# the test it would stand for. Without a standing the branches below decide.
	input.command.kind in {"postgres.query", "postgres.function_call", "http.request"}
	input.standing.pii_reader == false
	not input.standing.stale_masks
} else := mask_rules | pii_masks if {
	input.command.kind in {"postgres.query", "postgres.function_call", "http.request"}
	not pii_reader
} else := mask_rules | pii_masks if {
	input.command.kind == "mcp.call"
	mcp_returns_data
	not pii_reader
} else := mask_rules | pii_detector_masks if {
	input.command.kind in {"ssh.exec", "ssh.shell"}
	not pii_reader
} else := mask_rules

# The data is what names the sensitive columns and the detectors: the literal sets stand
# for it unless the session's standing says they are not what it gives (standing.rego's
# stale_masks, present only then: data.json edited, pii_masks.rego not regenerated;
# worked out once per session), and then the masks are built from the data.
pii_masks := pii_masks_from_data if session_standing.stale_masks else := shipped_pii_masks

pii_detector_masks := pii_detector_masks_from_data if session_standing.stale_masks else := shipped_detector_masks

pii_masks_stale if shipped_pii_masks != pii_masks_from_data

pii_masks_stale if shipped_detector_masks != pii_detector_masks_from_data

pii_masks_from_data := {{"field": c, "strategy": "redact"} | some c in data.portcullis.sensitive_columns} | pii_detector_masks_from_data

pii_detector_masks_from_data := {{"detector": d, "strategy": "partial"} | some d in data.portcullis.detectors}

default credential_part := {}

credential_part := {"credential": {"ref": session_credential_ref}}

default session_part := {}

session_part := {"session_settings": session_settings}

# Cache hints. Postgres answers are cacheable by shape: the shipped postgres rules
# look at statement types, tables and function names, never at literals. The exceptions
# are not cached, since texts with other literals share their shape:
#   - a DO block: its code is a literal, and the statements classified from it are judged;
#   - SET: its values are judged (search_path, read-write, statement_timeout);
#   - set_config: the setting it changes is its first argument, a literal;
#   - current_setting: the setting it reads is its first argument, a literal.
# An answer that used an approval is never cached: it belongs to that one request.
# pg_uncached says which; nor is a query holding a statement without a type, nor one whose
# answer depends on a constant key (postgres.rego's "reuse by shape").
cache_part := {"cache_ttl_seconds": data.portcullis.decision_cache_ttl_seconds, "cache_key": "shape"} if {
	input.command.kind == "postgres.query"
	input.command.postgres.statements # a query not classified is not cached
	not pg_uncached
} else := {"cache_ttl_seconds": data.portcullis.decision_cache_ttl_seconds, "cache_key": "exact"} if {
	# An HTTP read: the exact key is the request line and everything the policy saw of
	# it (method, normalised path, query, the selected headers, the body), so only the
	# same request of the same session reuses it; writes are never cached.
	input.command.kind == "http.request"
	not input.approval
	http_method in http_read_methods
} else := {"cache_ttl_seconds": data.portcullis.decision_cache_ttl_seconds, "cache_key": "exact"} if {
	# Whether a tools/list (or prompts or resources list) answer may show one item: asked
	# for every item of every listing, and the same question each time.
	input.command.kind == "mcp.call"
	not input.approval
	mcp_listing
} else := {"cache_ttl_seconds": data.portcullis.decision_cache_ttl_seconds, "cache_key": "exact"} if {
	# An SSH exec: the policy reads its command line (as the PDP's shell parser splits it),
	# the identity and the connection, nothing of the time or the host's state; the exact
	# key is the command line and the request's own attributes (a terminal and its size),
	# so only the same exec of the same session reuses the answer. The proxy keeps only
	# allowed (or masked) answers; one that needed an approval is never cached.
	input.command.kind == "ssh.exec"
	not input.approval
} else := {"cache_ttl_seconds": 0, "cache_key": "exact"}

# A postgres query whose answer is not cached (above). Each rule opens with an input
# reference, which the evaluator's rule index reads: for a query with none of these only
# the index is consulted, where six negations in the cache hint were each evaluated.
# The rule the index cannot skip, postgres.rego's "reuse by shape" (a statement reading a
# constant key), comes first: it is the one every query meets (at place 8 it left the
# index a slot more to walk on every lookup, above).
pg_uncached if {
	some s in input.command.postgres.statements
	s.literal_keys
}

pg_uncached if input.approval

pg_uncached if input.command.postgres.types.unparseable

pg_uncached if input.command.postgres.types.do

pg_uncached if input.command.postgres.types.set

# DISCARD resets the search_path (and role): an approval of the session's statements is
# bound to what their names resolved to (pdp/domain/search_paths.py), which reads the
# decision log, so the PDP must see every one, not a proxy's cached answer
pg_uncached if input.command.postgres.types.discard

pg_uncached if input.command.postgres.has.settings

pg_uncached if input.command.postgres.has.untyped
