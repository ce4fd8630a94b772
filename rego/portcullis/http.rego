# http.request: reads for every member of the connection, writes through approval,
# deletes only for the privileged groups. http.upgrade: a WebSocket opened with GET, freely
# by the privileged groups and on paths the connection declares read-only, through approval
# for anyone else; its frames are relayed and recorded, not decided one by one, and masked
# towards everyone not in pii-readers as any answer is.
package portcullis

# The methods judged are every one the upstream may act on. Web frameworks take another
# method than the request line's from a method-override header (Rack and Rails, Express's
# method-override, Symfony, Laravel, Google's APIs) or a `_method` parameter in the query
# or the body (the proxy hands the policy JSON and form bodies), so a reader's POST or
# GET naming DELETE is judged as the DELETE it may become; and most servers read no
# override at all (aiohttp, FastAPI, Django, Go's net/http), so a reader's DELETE or POST
# naming GET is still the DELETE or POST it is, not a read. A request is allowed only as
# far as each of its methods is (http_methods). Overrides naming more than one method, a
# body the proxy could not read that names `_method` (body_names_method), or a query or
# form pair read as `_method` under another name (query_names_method, body_names_method),
# give a method no rule allows.
http_override_headers := ["x-http-method-override", "x-http-method", "x-method-override"]

http_overrides contains upper(v) if {
	some name in http_override_headers
	v := input.command.http.headers[name]
}

# a field of the query or the body naming the method: one value, or a list when it
# repeats. The names frameworks read so, in any case and with `_` for `-`: `_method`
# (Rails, Laravel, Symfony, Spring, Jersey), `X-HTTP-Method-Override` (ASP.NET MVC reads a
# POST's form and query string as it reads the header; Play 1 the raw query string),
# `X-HTTP-Method` and `X-Method-Override` likewise, `_HttpMethod` (Salesforce's REST API).
http_override_fields := {"_method", "x_http_method_override", "x_http_method", "x_method_override", "_httpmethod"}

http_overrides contains upper(v) if {
	some part in ["query", "body"]
	fields := input.command.http[part]
	is_object(fields)
	some name, value in fields
	is_string(name)
	lower(replace(name, "-", "_")) in http_override_fields
	some v in http_values(value)
	is_string(v)
}

# Restlet's TunnelService reads a POST's `method` query parameter as its method: judged
# so when it names one (`?method=flickr.photos.search` names none)
http_method_names := {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}

http_overrides contains upper(v) if {
	some name, value in input.command.http.query
	lower(name) == "method"
	some v in http_values(value)
	is_string(v)
	upper(v) in http_method_names
}

# Other frameworks and recipes read other names (Flask's MethodRewriteMiddleware recipe
# `__METHOD_OVERRIDE__` in the query, `httpMethod`, `method_override`, a header
# `Method-Override`): no list of names is whole, so any query or body field, and any
# header the proxy shows (messages.policy_headers: each whose name holds `method`), whose
# name holds `method` (past `method` itself) and whose value names an HTTP method (or
# several, comma-separated) is judged an override of that method. (`payment_method=card`
# names none.)
http_overrides contains m if {
	some part in ["query", "body"]
	fields := input.command.http[part]
	is_object(fields)
	some name, value in fields
	is_string(name)
	contains(lower(name), "method")
	lower(name) != "method" # (Restlet's, in the query, above; a body's names an RPC's)
	some v in http_values(value)
	is_string(v)
	some m in http_named_methods(v)
}

http_overrides contains m if {
	some name, v in input.command.http.headers
	contains(lower(name), "method")
	is_string(v)
	some m in http_named_methods(v)
}

http_named_methods(v) := {m |
	some piece in split(upper(v), ",")
	m := trim_space(piece)
	m in http_method_names
}

http_values(x) := [x] if is_string(x)

http_values(x) := x if is_array(x)

http_overrides contains "(a method named in a body the proxy could not read)" if {
	input.command.http.body_names_method
}

# a query pair a framework reads as a method's field that the policy is shown under
# another name (`.method`, `_method[]`, a `;`-separated pair), or a field's name inside
# another pair (Play 1 finds `x-http-method-override=` anywhere in the query string)
http_overrides contains "(a method named in the query under another name)" if {
	input.command.http.query_names_method
}

http_line_method := upper(object.get(input, ["command", "http", "method"], ""))

# the methods of the requests a body carries for the upstream to carry out itself (a
# batch: Microsoft Graph's and Facebook's `{"method", "url"}` objects, Salesforce's
# composite, OData's and Google's multipart batches of request lines), and the writes a
# body or query carries as operations (Elasticsearch's _bulk actions, a `delete` a
# DELETE; JSON:API's atomic `remove` a DELETE, `add` a POST, `update` a PATCH; JSON Patch
# and SCIM operations a PATCH; a GraphQL mutation, in a GET's query too, or a persisted
# query sent by its hash alone, a POST), as the proxy read them
# (proxies/http/messages.embedded_methods, proxies/http/carried.py): each a method of
# this request, so a reader's POST carrying a DELETE is the DELETE; one it could not
# read is none allowed
http_embedded_methods := {upper(m) |
	some m in object.get(input, ["command", "http", "embedded_methods"], [])
	is_string(m)
}

# the request line's method (what a server reading no override acts on), the one an
# override names (what a framework reading it acts on) and those a batch carries; several
# overrides: none allowed
http_methods := ({http_line_method} | http_overrides) | http_embedded_methods

# the methods as one name, for reasons and for what is cached (decision.rego: a read is
# one of http_read_methods; "GET or POST" is none)
http_method := m if {
	count(http_methods) == 1
	some m in http_methods
} else := concat(" or ", sort(http_methods))

http_read_methods := {"GET", "HEAD"}

http_write_methods := {"POST", "PUT", "PATCH"}

# at most one override: several (or a method the proxy could not show) allow nothing
http_methods_judged if count(http_overrides) <= 1

allow contains sprintf("%s %s is a read", [http_method, input.command.http.path]) if {
	input.command.kind == "http.request"
	http_methods_judged
	every m in http_methods {
		m in http_read_methods
	}
}

allow contains sprintf("%s may %s on %s", [subject, http_method, connection_name]) if {
	input.command.kind == "http.request"
	privileged
	http_methods_judged
	some w in http_methods
	w in (http_write_methods | {"DELETE"})
	every m in http_methods {
		m in ((http_read_methods | http_write_methods) | {"DELETE"})
	}
}

needs_approval contains sprintf("%s %s needs approval", [http_method, input.command.http.path]) if {
	input.command.kind == "http.request"
	not privileged
	http_methods_judged
	some w in http_methods
	w in http_write_methods
	every m in http_methods {
		m in (http_read_methods | http_write_methods)
	}
}

deny contains sprintf("DELETE is reserved to %s", [concat(", ", data.portcullis.privileged_groups)]) if {
	input.command.kind == "http.request"
	not privileged
	"DELETE" in http_methods
}

# JSON response fields named like sensitive columns, and the detectors, are masked for
# everyone not in pii-readers: decision.rego's command_masks.

# Those masks find a field by its name in the answer, and a request may choose the names
# itself: a query language carried in the query renames or derives a masked column
# (PostgREST's `select=x:phone`, `?sql=select upper(phone) as x`, GraphQL's `query={c{x:
# phone}}`). And a request that filters, orders, searches or counts by a masked field
# reads its value without its name ever coming back: which rows match `?phone=like.555*`,
# `?phone=gt.5`, `?or=(phone.like.*1)`, `$filter=startswith(phone,'555')`, `q=phone:555*`,
# `where: {phone: {_like: ...}}`, a search body's `{"wildcard": {"phone": "555*"}}` (or a
# JSON Patch `test` of `/phone`), which comes first under `?order=phone` or `$orderby`,
# how many under `Prefer: count=exact` answer the value one guess at a time. For anyone
# masked, a request naming a masked field by its words (as the masks name it: `phone` in
# `phoneNumber`, `customer_phone`, `PHONE`, `filter[phone]`) in a query parameter's name
# or value, or a body's key or string (or its text, a body of another type: body_text),
# needs approval: the approver sees which field it names and where. (A bare value
# answering a path that ends in a field's name, `/customers/7/phone`, the proxy masks as
# that field: proxies/http/bodies.py.)
needs_approval contains sprintf("%s %s names the masked field %s in its %s: a filter, order or search on it, or a name chosen for it, answers what the mask hides", [http_method, input.command.http.path, field, part]) if {
	input.command.kind == "http.request"
	not pii_reader
	some part in ["query", "body", "body_text"]
	some words in http_request_words[part]
	some field in http_words_fields(words)
}

# the masked fields a text's words name: searched for only in a text holding a word one
# of the fields' names begins with (a hundred names with their other names: most texts
# hold none, and are passed over at one look-up a word)
http_words_fields(words) := {field |
	http_may_name(words)
	some field, spelt in http_masked_field_words
	http_words_name(words, spelt)
}

http_may_name(words) if {
	some w in split(trim_space(words), " ")
	http_first_words[w]
}

# (a complete rule: made once per decision)
http_first_words := {split(trim_space(s), " ")[0] |
	some spelt in http_masked_field_words
	some s in spelt
}

# The same in the path: a segment naming a masked field with a value after it, in a later
# segment, in itself or in the query (`/customers/by-phone/555`, `/users/findByEmail/ann@x`,
# `/customers/phone=555*`, `/customers/phone:555`, `/customers/search/findByPhone?p=555`)
# is a lookup by that field, which answers what the mask hides as a filter does (a match
# or none). A last segment that is a field's name alone (`/customers/7/phone`, letters,
# `_` and `-`, then perhaps an extension or escaped white space a framework drops:
# `phoneNumber.txt`, `phone%20`), under no query, reads the value: the mask hides it
# (proxies/http/bodies.py).
needs_approval contains sprintf("%s %s names the masked field %s in its path before a value: a lookup by it answers what the mask hides", [http_method, input.command.http.path, field]) if {
	input.command.kind == "http.request"
	not pii_reader
	queried := count(object.get(input.command.http, "query", {})) > 0
	some field in http_lookup_fields(input.command.http.path, queried)
}

# the masked fields a path looks up by (also an MCP resource URI's: mcp.rego)
http_lookup_fields(path, queried) := {field |
	segments := [s | some s in split(path, "/"); s != ""]
	some at, segment in segments
	some field in http_words_fields(http_spaced_words(segment))
	not http_names_alone(segments, at, queried)
}

http_names_alone(segments, at, false) if {
	at == count(segments) - 1
	regex.match(`^[A-Za-z_-]+(\.[A-Za-z][A-Za-z0-9]{0,7}|%20|%09)*$`, segments[at])
}

# A body the policy is not shown as a value (past 64 KiB, multipart, XML, text) comes as
# its distinct runs of one to three words (body_words: proxies/http/request_words.py,
# escapes undone, `\u0070hone`, `&#112;hone`, `%70hone`): a masked field of up to three
# words is named when it is one of them, a longer one when each of its words is there.
needs_approval contains sprintf("%s %s names the masked field %s in its body: a filter, order or search on it, or a name chosen for it, answers what the mask hides", [http_method, input.command.http.path, field]) if {
	input.command.kind == "http.request"
	not pii_reader
	runs := {r | some r in object.get(input.command.http, "body_words", [])}
	count(runs) > 0
	some field, spelt in http_masked_field_words
	http_runs_name(runs, spelt)
}

# The same in base64: a query's name or value, a path segment or a string of the body
# that is base64 (or base64url) as a whole and decodes to text (`?filter=eyJwaG9uZSI6...`,
# `{"query": "eyJ3aWxkY2FyZCI6..."}`: an API decoding it acts on `{"phone": ...}`) comes
# as the runs of words of what it decodes to (coded_words: request_words.coded_runs).
needs_approval contains sprintf("%s %s names the masked field %s in base64 in its target or body: a filter, order or search on it, or a name chosen for it, answers what the mask hides", [http_method, input.command.http.path, field]) if {
	input.command.kind == "http.request"
	not pii_reader
	runs := {r | some r in object.get(input.command.http, "coded_words", [])}
	count(runs) > 0
	some field, spelt in http_masked_field_words
	http_runs_name(runs, spelt)
}

http_runs_name(runs, spelt) if {
	some s in spelt
	trim_space(s) in runs
}

http_runs_name(runs, spelt) if {
	some s in spelt
	words := split(trim_space(s), " ")
	count(words) > 3
	every w in words {
		w in runs
	}
}

# A body the proxy could not read for words (body_unread: a content coding it cannot undo
# within bounds, too many distinct words, text typed as such that is not UTF-8, a body
# typed as a binary data format, `structured`: CBOR, MessagePack, protobuf, BSON, Avro, a
# document whose names the proxy does not read, or other binary) may name a
# masked field all the same. For anyone masked it needs approval, unless it is binary of
# no data format and sent to a write that is no search (an upload: a PUT of a file, a
# POST of an image; a CBOR or protobuf write may filter as a search does);
# a read (GET, HEAD, QUERY) or a search-like path (`_search`, `graphql`, `FindCustomers`)
# carrying one needs approval whatever it is.
needs_approval contains sprintf("%s %s carries a body the proxy could not read for masked fields (%s): it may filter, order or search on one", [http_method, input.command.http.path, unread.why]) if {
	input.command.kind == "http.request"
	not pii_reader
	unread := input.command.http.body_unread
	http_unread_gated(unread.kind)
}

http_unread_gated(kind) if kind != "binary"

http_unread_gated(_) if not http_method in http_write_methods

http_unread_gated(_) if {
	path := http_spaced_words(input.command.http.path)
	some word in http_search_words
	contains(path, sprintf(" %s ", [word]))
}

http_search_words := {"search", "msearch", "query", "queries", "find", "filter", "lookup", "graphql", "count", "select", "scan", "match", "sql", "aggregate"}

# each name and text of the request's query and body as its words (" a b c "): a query's
# names and values (a list when a name repeats), a body's keys and strings anywhere in it
http_request_words[part] := {http_spaced_words(t) | some t in http_texts(object.get(input.command.http, part, null))} if {
	some part in ["query", "body", "body_text"]
}

http_texts(given) := {t |
	walk(given, [path, value])
	some t in array.concat([value], [path[count(path) - 1] | count(path) > 0])
	is_string(t)
}

# a field's words as the proxy reads a name (bodies.name_words: split where a letter or
# digit is not, and where camelCase changes case), lower-case, space-separated and padded
http_spaced_words(text) := sprintf(" %s ", [concat(" ", [w | some w in regex.split(`[^a-z0-9]+`, lower(http_split_case(text))); w != ""])])

http_split_case(text) := regex.replace(
	regex.replace(
		regex.replace(regex.replace(text, `([a-z])([A-Z])`, "${1} ${2}"), `([A-Z])([A-Z][a-z])`, "${1} ${2}"),
		`([A-Za-z])([0-9])`, "${1} ${2}",
	),
	`([0-9])([A-Za-z])`, "${1} ${2}",
)

# field → its words padded, written as one, and in the plural (`card_number`: " card
# number ", " cardnumber ", " card numbers ", " cardnumbers ", "... numberes "), and so its
# other names, by which the masks name it too (data.portcullis.field_aliases, as
# portcullis.masking.FIELD_ALIASES: an answer's `mobile` is masked as `phone`, so a
# `?mobile=like.555*` filter reads the masked value as `?phone=` would)
http_masked_field_words[field] := {sprintf(" %s%s ", [w, s]) |
	some spelt in http_field_names(field)
	some w in [spelt, concat("", split(spelt, " "))]
	some s in ["", "s", "es"]
} if {
	some field in http_masked_fields
}

http_field_aliases := data.portcullis.field_aliases

http_field_aliases := {} if not data.portcullis.field_aliases

http_field_names(field) := {n |
	own := trim_space(http_spaced_words(field))
	some name in array.concat([own], object.get(http_field_aliases, own, []))
	n := trim_space(http_spaced_words(name))
	n != ""
}

http_words_name(words, spelt) if {
	some s in spelt
	contains(words, s)
}

http_masked_fields contains lower(rule.field) if {
	some rule in pii_masks
	is_string(rule.field)
}

# A WebSocket's client frames are relayed and recorded, not decided one by one, so a socket
# can carry writes (a GraphQL mutation, a JSON-RPC call) that as requests would need
# approval. It opens without approval for the privileged groups, and on the paths the
# connection declares read-only (its label websocket_read_only_paths: paths separated by
# commas, the operator's word that the upstream's sockets there only stream reads);
# anyone else's needs approval, the approver accepting the socket as a whole.
http_websocket if {
	input.command.kind == "http.upgrade"
	http_method == "GET"
	lower(object.get(input.command.http, "upgrade", "")) == "websocket"
}

http_read_only_socket if {
	listed := object.get(input.connection, ["labels", "websocket_read_only_paths"], "")
	some path in split(listed, ",")
	trim_space(path) == input.command.http.path
}

# Each WebSocket rule opens with the kind http_websocket tests too: an equality on the kind
# is what the evaluator's rule index reads, so every other command skips these rules (a
# bare rule reference first was evaluated on every decision's allow and needs_approval).
allow contains sprintf("WebSocket %s may open", [input.command.http.path]) if {
	input.command.kind == "http.upgrade"
	http_websocket
	privileged
}

allow contains sprintf("WebSocket %s is a read-only socket of %s", [input.command.http.path, connection_name]) if {
	input.command.kind == "http.upgrade"
	http_websocket
	http_read_only_socket
}

needs_approval contains sprintf("a WebSocket on %s carries frames that are not decided one by one (writes among them), and needs approval", [input.command.http.path]) if {
	input.command.kind == "http.upgrade"
	http_websocket
	not privileged
	not http_read_only_socket
}

# A WebSocket's frames towards the client carry what any answer carries: for everyone not
# in pii-readers, masked as an http.request's answer is (the proxy masks each message;
# decision.rego's command_masks gives an upgrade only what modules add here).
mask_rules contains rule if {
	input.command.kind == "http.upgrade"
	not pii_reader
	some rule in pii_masks
}
