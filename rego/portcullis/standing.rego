# The standing of an identity on a connection: everything the policy concludes from who
# asks and where, whatever the command. The PDP evaluates this document once per session
# (and again after a policy reload) and passes it back with every later command of the
# session as input.standing, so the per-command decision reads these answers instead of
# working them out again (issue 27: a third of a reader's evaluation was this).
#
# input.standing (a departure from DESIGN.md's input contract, added by the PDP only:
# pdp/domain/decisions.py; never taken from a proxy). Kept small: every byte of input is
# parsed by the evaluator on every command, at about a sixth of the cost of a rule step.
#
#   privileged   true when the identity is in a group of data.portcullis.privileged_groups
#   pii_reader   true when it is in a group of data.portcullis.pii_reader_groups
#   member       true when it is in a group the connection lists
#   denials      the deny reasons that hold for every command of the session (an unknown
#                connection, an identity outside its groups, a row filter whose claim the
#                token lacks)
#   guards       the group whose budget (`budget`) and whose breaker (`breaker`) applies
#                to the identity, and its row filters (`row_filter`); absent keys: none
#   stale_masks  true when pii_masks.rego is not what data.json's sensitive_columns and
#                detectors give (decision.rego then masks by the data); absent otherwise
#
# Without input.standing (`opa test`, `portcullis policy eval`, this document itself) the
# policy works the same answers out from input.identity and input.connection: the rules
# read session_standing, which is input.standing or else this document, and each of the
# three facts (privileged, pii_reader, connection_member: session.rego) has a twin that
# applies only when there is no standing. bench/pdp/policy_equivalence.py and
# standing_test.rego hold the two ways to the same decisions. The standing holds nothing
# that depends on the command, the approval or the time.
package portcullis

# The standing the PDP passed, or, without one, this document worked out from the input.
session_standing := input.standing if input.standing else := standing

standing := object.union(
	{
		"privileged": standing_privileged,
		"pii_reader": standing_pii_reader,
		"member": standing_member,
		"denials": session_denials,
		"guards": standing_guards,
	},
	{"stale_masks": true | pii_masks_stale},
)

standing_privileged := true if privileged else := false

standing_pii_reader := true if pii_reader else := false

standing_member := true if connection_member else := false

# the budget and the breaker of the identity's first group (sorted) that names one, by the
# group's name (decision.rego reads the settings from data): none for privileged groups
standing_guards := object.union_n([
	{"row_filter": guard_row_filter | count(guard_row_filter) > 0},
	{"budget": group |
		group := sort([g | some g in input.identity.groups; data.portcullis.budgets[g]])[0]
		not privileged
	},
	{"breaker": group |
		group := sort([g | some g in input.identity.groups; data.portcullis.breakers[g]])[0]
		not privileged
	},
])
