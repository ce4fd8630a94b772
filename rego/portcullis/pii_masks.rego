# Generated from rego/data.json by `portcullis policy masks --write`: do not edit.
# The masks everyone outside pii-readers gets (decision.rego's command_masks), written out
# as literals because the evaluator builds a literal once, when it compiles the policy,
# where it would build the same twelve objects from data.portcullis.sensitive_columns and
# data.portcullis.detectors again on every decision. `portcullis policy masks --check`
# (and tests/test_policy_masks.py) fails when this module is not what the data gives, and
# while the two differ decision.rego masks by the data (pii_masks_stale), so an edit of
# the data alone still masks what it names.
package portcullis

# sensitive columns by name, and the detectors (SQL, HTTP and MCP answers)
shipped_pii_masks := {
	{"field": "api_key", "strategy": "redact"},
	{"field": "card_number", "strategy": "redact"},
	{"field": "email", "strategy": "redact"},
	{"field": "iban", "strategy": "redact"},
	{"field": "password", "strategy": "redact"},
	{"field": "phone", "strategy": "redact"},
	{"field": "ssn", "strategy": "redact"},
	{"field": "token", "strategy": "redact"},
	{"detector": "credit_card", "strategy": "partial"},
	{"detector": "email", "strategy": "partial"},
	{"detector": "iban", "strategy": "partial"},
	{"detector": "phone", "strategy": "partial"},
	{"detector": "ssn", "strategy": "partial"},
	{"detector": "token", "strategy": "partial"},
}

# the detectors alone (SSH exec and shell output)
shipped_detector_masks := {
	{"detector": "credit_card", "strategy": "partial"},
	{"detector": "email", "strategy": "partial"},
	{"detector": "iban", "strategy": "partial"},
	{"detector": "phone", "strategy": "partial"},
	{"detector": "ssn", "strategy": "partial"},
	{"detector": "token", "strategy": "partial"},
}
