package portcullis_test

import data.portcullis

http_input(groups, method) := {
	"identity": {"subject": "alice@example.com", "groups": groups},
	"connection": {"name": "billing-api", "type": "http"},
	"command": {"kind": "http.request", "raw": "-", "http": {"method": method, "path": "/v1/invoices/7", "query": {}, "headers": {}}},
}

http_verdict(groups, method) := d.verdict if {
	d := portcullis.decision with input as http_input(groups, method)
}

test_http_reads_allowed_and_masked if {
	d := portcullis.decision with input as http_input(["readonly"], "GET")
	d.verdict == "mask"
	{"field": "card_number", "strategy": "redact"} in d.mask
	{"detector": "token", "strategy": "partial"} in d.mask
	d.cache_key == "exact"
	http_verdict(["pii-readers"], "head") == "allow"
}

test_http_writes_need_approval_for_non_dba if {
	every m in ["POST", "PUT", "PATCH"] {
		d := portcullis.decision with input as http_input(["readonly"], m)
		d.verdict == "require_approval"
		sprintf("%s /v1/invoices/7 needs approval", [m]) in d.reasons
	}
}

test_http_delete_denied_for_non_dba if {
	d := portcullis.decision with input as http_input(["analyst"], "DELETE")
	d.verdict == "deny"
	"DELETE is reserved to dba" in d.reasons
}

test_http_dba_may_write_and_delete if {
	every m in ["POST", "PUT", "PATCH", "DELETE"] {
		http_verdict(["dba", "pii-readers"], m) == "allow"
	}
}

test_http_other_methods_denied if {
	http_verdict(["dba"], "TRACE") == "deny"
	http_verdict(["readonly"], "CONNECT") == "deny"
}

test_http_non_member_denied if {
	http_verdict(["marketing"], "GET") == "deny"
}

test_http_websocket_upgrade_needs_approval_unless_privileged_or_read_only if {
	up := {"kind": "http.upgrade", "raw": "-", "http": {"method": "GET", "path": "/ws", "upgrade": "websocket"}}
	reader := object.union(http_input(["readonly"], "GET"), {"command": up})
	asked := portcullis.decision with input as reader
	asked.verdict == "require_approval"
	"a WebSocket on /ws carries frames that are not decided one by one (writes among them), and needs approval" in asked.reasons
	listed := object.union(reader, {"connection": {"labels": {"websocket_read_only_paths": "/feed, /ws"}}})
	d := portcullis.decision with input as listed
	d.verdict == "mask"
	"WebSocket /ws is a read-only socket of billing-api" in d.reasons
	other_path := object.union(listed, {"command": {"http": {"path": "/ws2"}}})
	portcullis.decision.verdict == "require_approval" with input as other_path
	dba := portcullis.decision with input as object.union(http_input(["dba", "pii-readers"], "GET"), {"command": up})
	dba.verdict == "allow"
	"WebSocket /ws may open" in dba.reasons
	other := object.union(up, {"http": {"method": "GET", "path": "/ws", "upgrade": "h2c"}})
	portcullis.decision.verdict == "deny" with input as object.union(http_input(["readonly"], "GET"), {"command": other})
	portcullis.decision.verdict == "deny" with input as object.union(http_input(["marketing"], "GET"), {"command": up})
}

test_http_path_decided_is_the_normalised_one if {
	d := portcullis.decision with input as object.union(http_input(["readonly"], "GET"), {"command": {"http": {"path": "/admin"}}})
	"GET /admin is a read" in d.reasons
}

http_with(groups, method, extra) := object.union(http_input(groups, method), {"command": {"http": extra}})

test_http_method_overrides_are_judged_as_the_method_they_name if {
	cases := [
		{"headers": {"x-http-method-override": "DELETE"}},
		{"headers": {"x-http-method": "delete"}},
		{"headers": {"x-method-override": "Delete"}},
		{"query": {"_method": "DELETE"}},
		{"query": {"_method": ["DELETE"]}},
		{"body": {"_method": "delete"}},
		{"query": {"X-HTTP-Method-Override": "DELETE"}},
		{"query": {"x_http_method_override": "delete"}},
		{"query": {"X-HTTP-Method": "DELETE"}},
		{"query": {"x-method-override": ["DELETE"]}},
		{"query": {"_HttpMethod": "DELETE"}},
		{"query": {"_METHOD": "DELETE"}},
		{"query": {"method": "delete"}},
		{"body": {"X-HTTP-Method-Override": "DELETE"}},
	]
	every extra in cases {
		every m in ["GET", "POST"] {
			d := portcullis.decision with input as http_with(["readonly"], m, extra)
			d.verdict == "deny"
			"DELETE is reserved to dba" in d.reasons
		}
		portcullis.decision.verdict == "allow" with input as http_with(["dba", "pii-readers"], "POST", extra)
	}
	# a GET that names POST needs the approval a POST needs, and is not cached as a read
	d := portcullis.decision with input as http_with(["readonly"], "GET", {"headers": {"x-http-method-override": "POST"}})
	d.verdict == "require_approval"
	d.cache_ttl_seconds == 0
}

test_http_a_write_naming_a_read_is_still_the_write if {
	# most servers read no override: a DELETE or POST naming GET is the DELETE or POST
	# they carry out
	reads := [
		{"headers": {"x-http-method-override": "GET"}},
		{"headers": {"x-http-method": "head"}},
		{"headers": {"x-method-override": "Get"}},
		{"query": {"_method": "GET"}},
		{"body": {"_method": "get"}},
	]
	every extra in reads {
		d := portcullis.decision with input as http_with(["readonly"], "DELETE", extra)
		d.verdict == "deny"
		"DELETE is reserved to dba" in d.reasons
		every m in ["POST", "PUT", "PATCH"] {
			w := portcullis.decision with input as http_with(["readonly"], m, extra)
			w.verdict == "require_approval"
			w.cache_ttl_seconds == 0
		}
		portcullis.decision.verdict == "allow" with input as http_with(["dba", "pii-readers"], "DELETE", extra)
	}
	# a read naming the other read stays a read
	d := portcullis.decision with input as http_with(["readonly"], "HEAD", {"headers": {"x-http-method-override": "GET"}})
	d.verdict == "mask"
	"GET or HEAD /v1/invoices/7 is a read" in d.reasons
}

test_http_overrides_naming_several_methods_or_hidden_in_a_body_are_denied if {
	cases := [
		{"headers": {"x-http-method-override": "GET", "x-http-method": "DELETE"}},
		{"headers": {"x-http-method-override": "GET, DELETE"}},
		{"query": {"_method": ["GET", "DELETE"]}},
		{"body_names_method": true},
		{"query_names_method": true},
	]
	every extra in cases {
		portcullis.decision.verdict == "deny" with input as http_with(["readonly"], "GET", extra)
		portcullis.decision.verdict == "deny" with input as http_with(["dba"], "GET", extra)
	}
	# a `method` naming no HTTP method is no override; a body that is no object names none
	rpc := portcullis.decision with input as http_with(["readonly"], "GET", {"query": {"method": "flickr.photos.search"}})
	rpc.verdict == "mask"
	listed := portcullis.decision with input as http_with(["readonly"], "GET", {"body": ["_method", "DELETE"]})
	listed.verdict == "mask"
	# an override naming the request line's own method changes nothing
	d := portcullis.decision with input as http_with(["pii-readers"], "GET", {"headers": {"x-http-method-override": "get"}})
	d.verdict == "allow"
}

test_http_a_field_or_header_naming_method_with_a_method_is_an_override if {
	cases := [
		{"query": {"__METHOD_OVERRIDE__": "DELETE"}},
		{"query": {"httpMethod": ["delete"]}},
		{"body": {"method_override": "DELETE"}},
		{"headers": {"method-override": "DELETE"}},
	]
	every extra in cases {
		d := portcullis.decision with input as http_with(["readonly"], "GET", extra)
		d.verdict == "deny"
		"DELETE is reserved to dba" in d.reasons
	}
	# a field naming no method is none
	d := portcullis.decision with input as http_with(["readonly"], "GET", {"query": {"payment_method": "card"}})
	d.verdict == "mask"
}

test_http_websocket_frames_are_masked_for_all_but_pii_readers if {
	up := {"kind": "http.upgrade", "raw": "-", "http": {"method": "GET", "path": "/ws", "upgrade": "websocket"}}
	read_only := {"command": up, "connection": {"labels": {"websocket_read_only_paths": "/ws"}}}
	d := portcullis.decision with input as object.union(http_input(["readonly"], "GET"), read_only)
	d.verdict == "mask"
	{"field": "email", "strategy": "redact"} in d.mask
	{"detector": "email", "strategy": "partial"} in d.mask
	pii := portcullis.decision with input as object.union(http_input(["readonly", "pii-readers"], "GET"), read_only)
	pii.verdict == "allow"
	count(pii.mask) == 0
}

test_http_a_read_naming_a_masked_field_in_a_query_language_needs_approval if {
	cases := [
		{"query": {"select": "id,x:phone"}},
		{"query": {"sql": "select upper(phone) as x from customers"}},
		{"query": {"query": "{customer(id: 7) {x: card_number}}"}},
		{"query": {"SQL": ["select 1", "select Email as e from c"]}},
		{"query": {"$compute": "phone as x"}},
		{"body": {"query": "SELECT phone AS x FROM customers"}},
	]
	every extra in cases {
		d := portcullis.decision with input as http_with(["readonly"], "GET", extra)
		d.verdict == "require_approval"
		masked_dba := portcullis.decision with input as http_with(["dba"], "GET", extra)
		masked_dba.verdict == "require_approval"
		portcullis.decision.verdict == "allow" with input as http_with(["readonly", "pii-readers"], "GET", extra)
	}
}

test_http_a_filter_order_or_search_on_a_masked_field_needs_approval if {
	# each answers the field's value a bit at a time: which rows match, which comes
	# first, how many there are
	cases := [
		{"query": {"phone": "like.555*"}},
		{"query": {"phone": "gt.5"}},
		{"query": {"or": "(phone.like.*1)"}},
		{"query": {"order": "phone.desc"}},
		{"query": {"$filter": "startswith(phone,'555')"}},
		{"query": {"$orderby": "Phone desc"}},
		{"query": {"q": "phone:555*"}},
		{"query": {"query": "{customers(where: {phone: {_like: \"555%\"}}) {id}}"}},
		{"query": {"customerPhoneNumber": "555"}},
		{"query": {"filter[PHONE]": "555"}},
		{"query": {"PHONENumber": "555"}},
		{"query": {"phone2": "555"}},
		{"query": {"cardnumber": "4111"}},
		{"query": {"sort": ["id", "-cardNumber"]}},
		{"query": {"x": "email_address:a*"}},
		{"query": {"phones": "like.555*"}},
		{"query": {"sort": "cardNumbers"}},
		{"body": {"query": {"wildcard": {"phone": "555*"}}}},
		{"body": [{"op": "test", "path": "/password", "value": "hunter2"}]},
		{"body": "ssn"},
		{"body_text": "--b\r\nContent-Disposition: form-data; name=\"phone\"\r\n\r\n555*\r\n--b--"},
		{"body_text": "<query><match field=\"Phone\">555</match></query>"},
	]
	every extra in cases {
		d := portcullis.decision with input as http_with(["readonly"], "GET", extra)
		d.verdict == "require_approval"
		masked_dba := portcullis.decision with input as http_with(["dba"], "POST", extra)
		masked_dba.verdict == "require_approval"
		portcullis.decision.verdict == "allow" with input as http_with(["readonly", "pii-readers"], "GET", extra)
	}
	d := portcullis.decision with input as http_with(["readonly"], "GET", {"query": {"order": "phone"}})
	"GET /v1/invoices/7 names the masked field phone in its query: a filter, order or search on it, or a name chosen for it, answers what the mask hides" in d.reasons

	# naming no masked field, a word holding one's letters, a path ending in one: reads
	reads := [
		{"query": {"select": "id,amount"}},
		{"query": {"q": "telephoned", "order": "id.desc", "limit": "10"}},
		{"query": {"sql": "select telephoned from t"}},
		{"query": {"classname": "x", "tokenize": "5"}},
		{"body": {"amount": 12, "note": ["a", 1, null]}},
		{"body_text": "id,amount\n7,12\n"},
		{"path": "/v1/customers/7/phone"},
	]
	every extra in reads {
		portcullis.decision.verdict == "mask" with input as http_with(["readonly"], "GET", extra)
	}
}

test_body_words_naming_a_masked_field_need_approval_for_anyone_masked if {
	cases := [
		{"body_words": ["pad", "phone", "wildcard", "wildcard phone"]},
		{"body_words": ["card number", "customer card number", "x"]},
		{"body_words": ["passwords"]},
	]
	every extra in cases {
		d := portcullis.decision with input as http_with(["readonly"], "GET", extra)
		d.verdict == "require_approval"
		masked_dba := portcullis.decision with input as http_with(["dba"], "POST", extra)
		masked_dba.verdict == "require_approval"
		portcullis.decision.verdict == "allow" with input as http_with(["readonly", "pii-readers"], "GET", extra)
	}
	d := portcullis.decision with input as http_with(["dba"], "POST", {"body_words": ["phone"]})
	"POST /v1/invoices/7 names the masked field phone in its body: a filter, order or search on it, or a name chosen for it, answers what the mask hides" in d.reasons

	# a word holding a field's letters, the words of a field not in a row
	every extra in [{"body_words": ["telephoned", "card", "number", "card x"]}, {"body_words": []}] {
		portcullis.decision.verdict == "mask" with input as http_with(["readonly"], "GET", extra)
	}
}

test_coded_words_naming_a_masked_field_need_approval_for_anyone_masked if {
	coded := {"coded_words": ["phone", "wildcard", "wildcard phone"]}
	d := portcullis.decision with input as http_with(["readonly"], "GET", coded)
	d.verdict == "require_approval"
	"GET /v1/invoices/7 names the masked field phone in base64 in its target or body: a filter, order or search on it, or a name chosen for it, answers what the mask hides" in d.reasons
	portcullis.decision.verdict == "require_approval" with input as http_with(["dba"], "POST", coded)
	portcullis.decision.verdict == "allow" with input as http_with(["readonly", "pii-readers"], "GET", coded)
	portcullis.decision.verdict == "mask" with input as http_with(["readonly"], "GET", {"coded_words": ["telephoned", "x"]})
}

test_an_unread_body_needs_approval_unless_a_binary_upload if {
	binary := {"body_unread": {"kind": "binary", "why": "a body that is not UTF-8 text"}}
	unread_cases := [
		{"body_unread": {"kind": "size", "why": "a body with too many distinct words to read"}},
		{"body_unread": {"kind": "coding", "why": "a content coding the proxy cannot undo within its bounds"}},
		{"body_unread": {"kind": "undecoded", "why": "a body that is not UTF-8 text"}},
		{"body_unread": {"kind": "structured", "why": "a body in a binary data format (application/cbor)"}},
	]
	every extra in unread_cases {
		portcullis.decision.verdict == "require_approval" with input as http_with(["dba"], "POST", extra)
		portcullis.decision.verdict == "require_approval" with input as http_with(["dba"], "PUT", extra)
	}

	# binary: a read or a search-like path needs approval, an upload goes
	portcullis.decision.verdict == "require_approval" with input as http_with(["readonly"], "GET", binary)
	search := object.union(binary, {"path": "/customers/_search"})
	portcullis.decision.verdict == "require_approval" with input as http_with(["dba"], "POST", search)
	rpc := object.union(binary, {"path": "/customers.v1.Customers/FindCustomers"})
	portcullis.decision.verdict == "require_approval" with input as http_with(["dba"], "POST", rpc)
	portcullis.decision.verdict != "require_approval" with input as http_with(["dba"], "PUT", binary)
	portcullis.decision.verdict != "require_approval" with input as http_with(["dba"], "POST", binary)

	# pii-readers read every body
	portcullis.decision.verdict == "allow" with input as http_with(["dba", "pii-readers"], "POST", unread_cases[0])
}

test_http_methods_a_batch_carries_are_judged if {
	batch := {"embedded_methods": ["DELETE", "GET"]}
	d := portcullis.decision with input as http_with(["readonly"], "POST", batch)
	d.verdict == "deny"
	"DELETE is reserved to dba" in d.reasons
	portcullis.decision.verdict == "allow" with input as http_with(["dba", "pii-readers"], "POST", batch)
	reads := portcullis.decision with input as http_with(["readonly"], "POST", {"embedded_methods": ["GET"]})
	reads.verdict == "require_approval"
	# a GET carrying a write is no read; a batch the proxy could not read allows nothing
	portcullis.decision.verdict == "require_approval" with input as http_with(["readonly"], "GET", {"embedded_methods": ["PATCH"]})
	portcullis.decision.verdict == "deny" with input as http_with(["dba"], "POST", {"embedded_methods": ["(a batch too large to read)"]})
}

test_http_a_path_looking_up_by_a_masked_field_needs_approval if {
	cases := [
		{"path": "/customers/by-phone/555"},
		{"path": "/customers/findByEmail/ann@example.com"},
		{"path": "/customers/phone=555"},
		{"path": "/customers/phone:555"},
		{"path": "/customers/search/findByPhone", "query": {"p": "555"}},
		{"path": "/customers/7/phone", "query": {"like": "555*"}},
		{"path": "/customers/phone.555"},
		{"path": "/customers/7/phone%2C555"},
	]
	every extra in cases {
		d := portcullis.decision with input as http_with(["readonly"], "GET", extra)
		d.verdict == "require_approval"
		portcullis.decision.verdict == "allow" with input as http_with(["readonly", "pii-readers"], "GET", extra)
	}
	d := portcullis.decision with input as http_with(["readonly"], "GET", {"path": "/customers/by-phone/555"})
	"GET /customers/by-phone/555 names the masked field phone in its path before a value: a lookup by it answers what the mask hides" in d.reasons

	# a field's name alone at the path's end reads the (masked) value; no field named
	every extra in [{"path": "/customers/7/phone"}, {"path": "/customers/7/phoneNumbers"}, {"path": "/customers/7/phoneNumber.txt"}, {"path": "/customers/7/phone%20"}, {"path": "/v1/invoices/7"}, {"path": "/telephoned/7"}] {
		portcullis.decision.verdict == "mask" with input as http_with(["readonly"], "GET", extra)
	}
}
