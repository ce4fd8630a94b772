package portcullis_test

import data.portcullis

mcp_input(groups, mcp) := {
	"identity": {"subject": "alice@example.com", "groups": groups},
	"connection": {"name": "billing-api", "type": "http"},
	"command": {"kind": "mcp.call", "raw": "-", "mcp": mcp},
}

mcp_decision(groups, mcp) := d if {
	d := portcullis.decision with input as mcp_input(groups, mcp)
}

tool_call(tool) := {"endpoint": "/mcp", "message": "request", "method": "tools/call", "tool": tool, "arguments": {}}

listing(tool) := object.union(tool_call(tool), {"listing": true})

test_mcp_read_tool_allowed_and_masked if {
	d := mcp_decision(["readonly"], tool_call("get_invoice"))
	d.verdict == "mask"
	{"field": "email", "strategy": "redact"} in d.mask
	{"detector": "credit_card", "strategy": "partial"} in d.mask
	mcp_decision(["pii-readers"], tool_call("get_invoice")).verdict == "allow"
}

test_mcp_write_tool_needs_approval_for_non_dba if {
	d := mcp_decision(["analyst"], tool_call("refund_order"))
	d.verdict == "require_approval"
	"tool \"refund_order\" writes: it needs approval" in d.reasons
	"group:security" in d.approval.approvers
}

test_mcp_write_tool_approved_by_another_person if {
	i := object.union(mcp_input(["analyst"], tool_call("refund_order")), {"approval": {"id": "a-1", "state": "approved", "approver": "sam@example.com"}})
	d := portcullis.decision with input as i
	d.verdict == "mask"
	"approved by sam@example.com (approval a-1)" in d.reasons
}

test_mcp_write_tool_self_approval_does_not_count if {
	i := object.union(mcp_input(["analyst"], tool_call("refund_order")), {"approval": {"id": "a-1", "state": "approved", "approver": "alice@example.com"}})
	d := portcullis.decision with input as i
	d.verdict == "require_approval"
}

test_mcp_dangerous_tool_denied_for_non_dba if {
	d := mcp_decision(["readonly", "pii-readers"], tool_call("delete_customer"))
	d.verdict == "deny"
	"tool \"delete_customer\" is dangerous: reserved to dba" in d.reasons
}

test_mcp_dba_may_call_write_and_dangerous if {
	mcp_decision(["dba", "pii-readers"], tool_call("refund_order")).verdict == "allow"
	mcp_decision(["dba", "pii-readers"], tool_call("run_sql")).verdict == "allow"
	mcp_decision(["dba"], tool_call("run_sql")).verdict == "mask"
}

test_mcp_unknown_tool_denied_for_everyone if {
	every groups in [["readonly"], ["dba", "pii-readers"]] {
		d := mcp_decision(groups, tool_call("drop_everything"))
		d.verdict == "deny"
		"tool \"drop_everything\" is not listed for billing-api" in d.reasons
	}
	mcp_decision(["dba"], listing("drop_everything")).verdict == "deny"
}

test_mcp_tool_in_two_classes_is_the_stricter if {
	tools := {"billing-api": {"read": ["both"], "dangerous": ["both"]}}
	d := portcullis.decision with input as mcp_input(["readonly"], tool_call("both"))
		with data.portcullis.mcp.tools as tools
	d.verdict == "deny"
}

test_mcp_listing_shows_what_may_be_called if {
	mcp_decision(["readonly"], listing("get_invoice")).verdict == "allow"
	mcp_decision(["readonly"], listing("refund_order")).verdict == "allow"
	mcp_decision(["readonly"], listing("delete_customer")).verdict == "deny"
	mcp_decision(["dba"], listing("delete_customer")).verdict == "allow"
}

test_mcp_protocol_methods_allowed_for_members if {
	every m in ["initialize", "ping", "tools/list", "prompts/list"] {
		mcp_decision(["readonly"], {"endpoint": "/mcp", "message": "request", "method": m}).verdict == "allow"
	}
	mcp_decision(["readonly"], {"endpoint": "/mcp", "message": "notification", "method": "notifications/initialized"}).verdict == "allow"
	mcp_decision(["readonly"], {"endpoint": "/mcp", "message": "response", "method": "", "answers": "elicitation/create"}).verdict == "allow"
}

test_mcp_an_answer_while_a_write_tool_runs_needs_approval if {
	answer := {"endpoint": "/mcp", "message": "response", "method": "", "answers": "elicitation/create"}
	d := mcp_decision(["readonly"], object.union(answer, {"during": ["get_invoice", "refund_order"]}))
	d.verdict == "require_approval"
	"an answer to the MCP server's elicitation/create while tool \"refund_order\" runs: it needs approval" in d.reasons
	mcp_decision(["readonly"], object.union(answer, {"during": ["get_invoice"]})).verdict == "allow"
	mcp_decision(["dba"], object.union(answer, {"during": ["refund_order"]})).verdict == "allow"
	mcp_decision(["readonly"], object.union(answer, {"during": ["refund_order"], "declined": true})).verdict == "allow"
	pong := {"endpoint": "/mcp", "message": "response", "method": "", "answers": "ping", "during": ["refund_order"]}
	mcp_decision(["readonly"], pong).verdict == "allow"
	sampled := object.union(pong, {"answers": "sampling/createMessage"})
	mcp_decision(["readonly"], sampled).verdict == "require_approval"
}

test_mcp_answers_only_to_the_requests_a_client_answers if {
	every m in ["sampling/createMessage", "elicitation/create", "roots/list", "ping"] {
		mcp_decision(["readonly"], {"endpoint": "/mcp", "message": "response", "method": "", "answers": m}).verdict == "allow"
	}
	d := mcp_decision(["dba"], {"endpoint": "/mcp", "message": "response", "method": "", "answers": "tools/call"})
	d.verdict == "deny"
	"an answer to the MCP server's \"tools/call\": not a request clients answer here" in d.reasons
	mcp_decision(["dba"], {"endpoint": "/mcp", "message": "response", "method": ""}).verdict == "deny"
	i := object.union(mcp_input(["readonly"], {"endpoint": "/mcp", "message": "response", "method": "", "answers": "tools/call"}), {})
	portcullis.decision.verdict == "allow" with input as i with data.portcullis.mcp.server_requests as ["tools/call"]
}

test_mcp_roots_only_under_the_listed_prefixes if {
	answer := {"endpoint": "/mcp", "message": "response", "method": "", "answers": "roots/list"}
	mcp_decision(["dba"], object.union(answer, {"roots": []})).verdict == "allow"
	mcp_decision(["readonly"], answer).verdict == "allow"
	d := mcp_decision(["dba"], object.union(answer, {"roots": ["file:///"]}))
	d.verdict == "deny"
	"MCP root \"file:///\" is not listed for billing-api" in d.reasons
	call := object.union(tool_call("get_invoice"), {"roots": ["file:///srv/public/a", "file:///etc/"]})
	mcp_decision(["dba"], call).verdict == "deny"
	listed := {"billing-api": ["file:///srv/public/"]}
	i := mcp_input(["readonly"], object.union(answer, {"roots": ["file:///srv/public/a"]}))
	portcullis.decision.verdict == "allow" with input as i with data.portcullis.mcp.roots as listed
	j := mcp_input(["dba"], call)
	portcullis.decision.verdict == "deny" with input as j with data.portcullis.mcp.roots as listed
}

test_mcp_other_methods_denied if {
	d := mcp_decision(["dba"], {"endpoint": "/mcp", "message": "request", "method": "admin/shutdown"})
	d.verdict == "deny"
	"MCP method \"admin/shutdown\" is not allowed" in d.reasons
	mcp_decision(["dba"], {"endpoint": "/mcp", "message": "notification", "method": "notifications/whatever"}).verdict == "deny"
}

test_mcp_named_methods_never_allowed_by_the_method_list if {
	methods := array.concat(data.portcullis.mcp.methods, ["tools/call"])
	d := portcullis.decision with input as mcp_input(["readonly"], tool_call("nope"))
		with data.portcullis.mcp.methods as methods
	d.verdict == "deny"
}

test_mcp_malformed_denied if {
	d := mcp_decision(["dba"], {"message": "malformed", "method": "", "malformed": true})
	d.verdict == "deny"
	"malformed MCP message" in d.reasons
	mcp_decision(["dba"], {"endpoint": "/mcp", "message": "request", "method": "tools/call", "malformed": true}).verdict == "deny"
}

test_mcp_non_member_denied if {
	mcp_decision(["marketing"], tool_call("get_invoice")).verdict == "deny"
}

test_mcp_connection_without_tools_denied if {
	i := {
		"identity": {"subject": "alice@example.com", "groups": ["dba"]},
		"connection": {"name": "orders-db", "type": "postgres"},
		"command": {"kind": "mcp.call", "raw": "-", "mcp": tool_call("get_invoice")},
	}
	d := portcullis.decision with input as i
	d.verdict == "deny"
	"orders-db is not an MCP connection (data.portcullis.mcp.tools lists nothing for it)" in d.reasons
	"mcp.call on a postgres connection" in d.reasons
}

test_mcp_resources_and_prompts_listed if {
	read := {"endpoint": "/mcp", "message": "request", "method": "resources/read", "uri": "invoice://7"}
	mcp_decision(["readonly"], read).verdict == "mask"
	other := {"endpoint": "/mcp", "message": "request", "method": "resources/read", "uri": "file:///etc/passwd"}
	mcp_decision(["dba"], other).verdict == "deny"
	prompt := {"endpoint": "/mcp", "message": "request", "method": "prompts/get", "prompt": "summarize_invoice", "arguments": {}}
	mcp_decision(["pii-readers"], prompt).verdict == "allow"
	mcp_decision(["pii-readers"], object.union(prompt, {"prompt": "jailbreak"})).verdict == "deny"
}

test_mcp_protocol_methods_not_masked if {
	d := mcp_decision(["readonly"], {"endpoint": "/mcp", "message": "request", "method": "tools/list"})
	d.mask == set()
}

test_mcp_only_listed_endpoints if {
	other := object.union(tool_call("get_invoice"), {"endpoint": "/admin/delete"})
	d := mcp_decision(["dba"], other)
	d.verdict == "deny"
	"\"/admin/delete\" is not an MCP endpoint of billing-api" in d.reasons
	ping := {"endpoint": "/mcp?debug=1", "message": "request", "method": "ping"}
	mcp_decision(["dba"], ping).verdict == "deny"
	d2 := portcullis.decision with input as mcp_input(["readonly"], object.union(ping, {"endpoint": "/v2/mcp"}))
		with data.portcullis.mcp.endpoints as {"billing-api": ["/v2/mcp"]}
	d2.verdict == "allow"
}

test_mcp_stream_and_session_end if {
	mcp_decision(["readonly"], {"endpoint": "/mcp", "message": "stream", "method": ""}).verdict == "mask"
	mcp_decision(["readonly", "pii-readers"], {"endpoint": "/mcp", "message": "stream", "method": ""}).verdict == "allow"
	mcp_decision(["readonly"], {"endpoint": "/mcp", "message": "end", "method": ""}).verdict == "allow"
	mcp_decision(["readonly"], {"endpoint": "/", "message": "stream", "method": ""}).verdict == "deny"
	mcp_decision(["marketing"], {"endpoint": "/mcp", "message": "stream", "method": ""}).verdict == "deny"
}

# the server's own messages carry what a tool result does: its stream's mask is theirs
test_mcp_server_stream_masked_for_readers if {
	d := mcp_decision(["readonly"], {"endpoint": "/mcp", "message": "stream", "method": ""})
	{"field": "email", "strategy": "redact"} in d.mask
	{"detector": "email", "strategy": "partial"} in d.mask
}

completion(ref) := object.union({"endpoint": "/mcp", "message": "request", "method": "completion/complete"}, ref)

test_mcp_completions_masked_like_results if {
	d := mcp_decision(["readonly"], completion({"prompt": "summarize_invoice"}))
	d.verdict == "mask"
	{"detector": "email", "strategy": "partial"} in d.mask
	mcp_decision(["pii-readers"], completion({"prompt": "summarize_invoice"})).verdict == "allow"
	mcp_decision(["readonly"], completion({"uri": "invoice://{id}"})).verdict == "mask"
	mcp_decision(["readonly"], {"endpoint": "/mcp", "message": "request", "method": "resources/list"}).verdict == "mask"
}

meta_call(meta) := i if {
	raw := json.marshal({"endpoint": "/mcp", "method": "tools/call", "params": {"name": "get_invoice", "arguments": {}, "_meta": meta}})
	i := object.union(mcp_input(["readonly"], tool_call("get_invoice")), {"command": {"raw": raw}})
}

test_mcp_meta_is_decided if {
	d := portcullis.decision with input as meta_call({"user": "admin"})
	d.verdict == "deny"
	"MCP _meta key \"user\" is not allowed on billing-api" in d.reasons
	portcullis.decision.verdict == "mask" with input as meta_call({"io.modelcontextprotocol/clientInfo": {"name": "x"}})
	portcullis.decision.verdict == "mask" with input as meta_call({})
	portcullis.decision.verdict == "deny" with input as meta_call("text")
}

test_mcp_meta_listed_for_the_connection if {
	portcullis.decision.verdict == "mask" with input as meta_call({"user": "admin"})
		with data.portcullis.mcp.meta as {"billing-api": ["user"]}
}

test_mcp_completions_only_of_what_is_listed if {
	every groups in [["readonly"], ["dba", "pii-readers"]] {
		d := mcp_decision(groups, completion({"prompt": "export_customers"}))
		d.verdict == "deny"
		"completion for prompt \"export_customers\": the prompt is not listed for billing-api" in d.reasons
		mcp_decision(groups, completion({"uri": "secrets://{name}"})).verdict == "deny"
		mcp_decision(groups, completion({})).verdict == "deny"
	}
}

test_mcp_prompt_and_resource_lists_show_what_is_listed if {
	prompt := {"endpoint": "/mcp", "message": "request", "method": "prompts/get", "listing": true}
	resource := {"endpoint": "/mcp", "message": "request", "method": "resources/read", "listing": true}
	mcp_decision(["readonly"], object.union(prompt, {"prompt": "summarize_invoice"})).verdict == "allow"
	mcp_decision(["readonly"], object.union(prompt, {"prompt": "export_customers"})).verdict == "deny"
	mcp_decision(["readonly"], object.union(resource, {"uri": "invoice://7"})).verdict == "allow"
	mcp_decision(["readonly"], object.union(resource, {"uri": "secrets://db"})).verdict == "deny"
}

test_mcp_arguments_naming_a_masked_field_need_approval_for_anyone_masked if {
	cases := [
		{"phone": "555"},
		{"customer_email": "ann@example.com"},
		{"filter": "phone like '555%'"},
		{"where": {"cardNumber": {"startsWith": "4111"}}},
		{"q": ["x", "ssn:123*"]},
		{"sql": "select 1 where email = 'a'"},
	]
	every args in cases {
		call := object.union(tool_call("find_customer"), {"arguments": args})
		d := mcp_decision(["readonly"], call)
		d.verdict == "require_approval"
		mcp_decision(["dba"], call).verdict == "require_approval"
		mcp_decision(["readonly", "pii-readers"], call).verdict == "allow"
	}
	d := mcp_decision(["readonly"], object.union(tool_call("find_customer"), {"arguments": {"phone": "555"}}))
	"tool \"find_customer\" is called with arguments naming the masked field phone: a filter, order or search on it answers what the mask hides" in d.reasons
	prompt := {"endpoint": "/mcp", "message": "request", "method": "prompts/get", "prompt": "summarize_invoice", "arguments": {"email": "ann@example.com"}}
	mcp_decision(["readonly"], prompt).verdict == "require_approval"

	# arguments naming no masked field, or a word holding a field's letters
	every args in [{"name": "Ann"}, {"invoice_id": 7}, {"note": "telephoned"}, {"name": "phone-label"}, {}, {"field": "name", "value": "Ann"}, {"by": "id", "value": "7"}, {"note": "[1, 2]"}, {"name": "{phone-label}"}, {"input": "{\"name\": \"phone\"}"}] {
		mcp_decision(["readonly"], object.union(tool_call("find_customer"), {"arguments": args})).verdict == "mask"
	}
}

# an argument whose name says its value names a field (`field`, `column`, `by`, `key`,
# `attribute`, `property`: a generic lookup's `find_customer({"field": "phone", "value":
# "555"})`) names that field as a filter's name does: the query `?field=phone&value=555`
# of an HTTP API needs approval, and so does the call
test_mcp_an_argument_naming_the_field_a_lookup_is_by_needs_approval if {
	cases := [
		{"field": "phone", "value": "5550100"},
		{"column": "email", "equals": "ann@example.com"},
		{"by": "card_number", "prefix": "4111"},
		{"search_field": "phone"},
		{"fields": ["name", "phone"], "value": "555"},
		{"key": "ssn", "value": "078"},
		{"attribute": "e-mail", "value": "ann"},
		{"lookupProperty": "phoneNumber", "value": "555"},
		{"input": "{\"phone\": \"555\"}"},
		{"options": [" [{\"where\": {\"email\": \"ann\"}}]"]},
	]
	every args in cases {
		call := object.union(tool_call("find_customer"), {"arguments": args})
		mcp_decision(["readonly"], call).verdict == "require_approval"
		mcp_decision(["readonly", "pii-readers"], call).verdict == "allow"
	}
}

resource_read(uri) := {"endpoint": "/mcp", "message": "request", "method": "resources/read", "uri": uri}

test_mcp_a_resource_looked_up_by_a_masked_field_needs_approval if {
	every uri in ["invoice://customers/by-phone/555", "invoice://customers/phone=555", "invoice://findByEmail/ann@example.com", "invoice://7/phone?like=5", "invoice://7?phone=555", "invoice://7?q=e%6Dail%3Aann"] {
		d := mcp_decision(["readonly"], resource_read(uri))
		d.verdict == "require_approval"
		mcp_decision(["readonly", "pii-readers"], resource_read(uri)).verdict == "allow"
	}
	d := mcp_decision(["readonly"], resource_read("invoice://customers/by-phone/555"))
	"resource \"invoice://customers/by-phone/555\" names the masked field phone before a value: a lookup by it answers what the mask hides" in d.reasons
	every uri in ["invoice://7", "invoice://7/phone", "invoice://customers/7", "invoice://7?page=2"] {
		mcp_decision(["readonly"], resource_read(uri)).verdict == "mask"
	}
}

filled(uri, variables) := object.union(resource_read(uri), {"template_variables": variables})

test_mcp_a_resource_filling_a_template_variable_of_a_masked_field_needs_approval if {
	every variables in [["email"], ["customer_email"], ["phoneNumber"], ["id", "email"]] {
		read := filled("invoice://ann@example.com", variables)
		mcp_decision(["readonly"], read).verdict == "require_approval"
		mcp_decision(["readonly", "pii-readers"], read).verdict == "allow"
		subscribe := object.union(read, {"method": "resources/subscribe"})
		mcp_decision(["readonly"], subscribe).verdict == "require_approval"
	}
	d := mcp_decision(["readonly"], filled("invoice://ann@example.com", ["email"]))
	"resource \"invoice://ann@example.com\" fills template variable email (the masked field email): a lookup by it answers what the mask hides" in d.reasons
	every variables in [["id"], ["number", "year"], []] {
		mcp_decision(["readonly"], filled("invoice://7", variables)).verdict == "mask"
	}
	mcp_decision(["readonly"], resource_read("invoice://ann@example.com")).verdict == "mask"
}
