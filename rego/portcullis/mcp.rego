# mcp.call: every JSON-RPC message an agent sends an MCP server through an HTTP connection
# with `mcp: true` (or of type mcp). input.command.mcp = {message, method, endpoint, tool |
# prompt | uri, arguments, listing, answers, during, roots, template_variables}, read by the PDP from the message itself; `message` is
# request, notification, response (the client answering the server), stream (a GET: the
# server's own event stream), end (a DELETE: the end of a session) or malformed.
#
# An MCP connection serves the endpoints data.portcullis.mcp.endpoints lists for it (path
# and query exactly as forwarded; /mcp when it lists none): nothing else on that server is
# reachable through it, whatever the message.
#
# Tools are an allow-list per connection, data.portcullis.mcp.tools[<connection>], in three
# classes: read (allowed for members), write (approval for everyone not privileged) and
# dangerous (privileged only). A tool in no class is denied, whoever asks. `listing: true`
# asks whether a tools/list answer may show a tool: it shows what the caller may call, with
# or without an approval (a prompts/list or resources/list answer likewise, asked as the
# prompts/get or resources/read of each item). The protocol's own methods (initialize, ping, notifications, the
# lists) are allowed from data.portcullis.mcp.methods; any other method is denied.
#
# Every rule here opens with `input.command.kind == "mcp.call"`, an equality on the input
# that the evaluator indexes: for any other kind (every SQL statement, say) these bodies
# are skipped without being evaluated. A helper rule in its place (`mcp_call`) would be
# evaluated by every rule, on every decision.
package portcullis

mcp_command := object.get(input, ["command", "mcp"], {})

mcp_method := object.get(mcp_command, "method", "")

mcp_tools := data.portcullis.mcp.tools[connection_name]

mcp_listing if mcp_command.listing == true

# the methods that act on something named: judged below, never by the method list
mcp_named_methods := {"tools/call", "prompts/get", "resources/read", "resources/subscribe", "resources/unsubscribe"}

mcp_tool_classes contains class if {
	mcp_method == "tools/call"
	some class in ["read", "write", "dangerous"]
	mcp_command.tool in object.get(mcp_tools, class, [])
}

# a tool listed in several classes is judged by the strictest
mcp_tool_class := "dangerous" if {
	"dangerous" in mcp_tool_classes
} else := "write" if {
	"write" in mcp_tool_classes
} else := "read" if {
	"read" in mcp_tool_classes
}

deny contains sprintf("%s is not an MCP connection (data.portcullis.mcp.tools lists nothing for it)", [connection_name]) if {
	input.command.kind == "mcp.call"
	not mcp_tools
}

deny contains sprintf("mcp.call on a %s connection", [connection.type]) if {
	input.command.kind == "mcp.call"
	not connection.type in {"http", "mcp"}
}

mcp_endpoint := object.get(mcp_command, "endpoint", "")

mcp_endpoint_served if mcp_endpoint in object.get(data.portcullis.mcp.endpoints, connection_name, ["/mcp"])

deny contains sprintf("%q is not an MCP endpoint of %s", [mcp_endpoint, connection_name]) if {
	input.command.kind == "mcp.call"
	not mcp_command.malformed
	not mcp_endpoint_served
}

# opening the server's event stream, ending the session
allow contains sprintf("MCP %s on %s", [mcp_command.message, mcp_endpoint]) if {
	input.command.kind == "mcp.call"
	mcp_command.message in {"stream", "end"}
}

deny contains "malformed MCP message" if {
	input.command.kind == "mcp.call"
	mcp_command.malformed
}

deny contains sprintf("MCP method %q is not allowed", [mcp_method]) if {
	input.command.kind == "mcp.call"
	mcp_command.message in {"request", "notification"}
	not mcp_method in mcp_named_methods
	not mcp_method in data.portcullis.mcp.methods
}

allow contains sprintf("MCP %s", [mcp_method]) if {
	input.command.kind == "mcp.call"
	mcp_command.message in {"request", "notification"}
	mcp_method in data.portcullis.mcp.methods
}

# the client's answer to the server's own request: `answers` is the method of that request,
# which the proxy handed this client (it forwards no answer to a request it did not hand
# it); the requests a client answers are MCP's client features (sampling, elicitation,
# roots) and ping, or what data.portcullis.mcp.server_requests lists instead
mcp_server_requests := object.get(data.portcullis.mcp, "server_requests", ["sampling/createMessage", "elicitation/create", "roots/list", "ping"])

allow contains sprintf("an answer to the MCP server's %s", [mcp_command.answers]) if {
	input.command.kind == "mcp.call"
	mcp_command.message == "response"
	mcp_command.answers in mcp_server_requests
}

deny contains sprintf("an answer to the MCP server's %q: not a request clients answer here", [object.get(mcp_command, "answers", "")]) if {
	input.command.kind == "mcp.call"
	mcp_command.message == "response"
	not object.get(mcp_command, "answers", "") in mcp_server_requests
}

# a server's question to the user while a tool runs (an elicitation: the amount of a
# refund, the account to act on) is answered with what the tool then acts on, as its
# arguments are: `during` names the tools the session's calls in flight ran when the
# question reached the client. While a write or dangerous tool runs, the answer needs
# the approval the call did (the approver sees the call and the answer), but from the
# privileged; a read tool's is answered as any other, and so is a user's no (an
# elicitation declined or cancelled, with nothing in it: `declined`), a ping's answer (a
# keep-alive, nothing a tool acts on) and a roots/list's (its roots judged above).
needs_approval contains sprintf("an answer to the MCP server's %s while tool %q runs: it needs approval", [mcp_command.answers, tool]) if {
	input.command.kind == "mcp.call"
	mcp_command.message == "response"
	not mcp_command.declined
	not mcp_command.answers in {"ping", "roots/list"}
	some tool in object.get(mcp_command, "during", [])
	some class in ["write", "dangerous"]
	tool in object.get(mcp_tools, class, [])
	not privileged
}

# -- roots: the directories and files a client declares a server may operate on (MCP
# Client → Roots), in its answer to roots/list or among a request's inputResponses
# (2026-07-28); input.command.mcp.roots holds their URIs. A server may take them as its
# own bounds (the reference filesystem server reads within the client's roots), so a root
# widens what its tools reach, past what the connection was set up to serve: an
# allow-list of URI prefixes per connection, data.portcullis.mcp.roots[<connection>];
# with none listed, a client declares no root (an empty list, or an error, passes).
mcp_root_listed(uri) if {
	some prefix in object.get(data.portcullis.mcp, ["roots", connection_name], [])
	startswith(uri, prefix)
}

deny contains sprintf("MCP root %q is not listed for %s", [uri, connection_name]) if {
	input.command.kind == "mcp.call"
	some uri in object.get(mcp_command, "roots", [])
	not mcp_root_listed(uri)
}

# -- _meta: what a message carries beside its params (MCP Base Protocol → _meta), which a
# server may act on (the keys a tool handler reads, a related task). The proxy decides the
# message with its _meta (all of it but progressToken, a string or integer it checks), so
# nothing goes upstream that was not decided; the keys the protocol reserves
# (io.modelcontextprotocol/...) pass, others only when data.portcullis.mcp.meta lists them
# for the connection: an allow-list, like the tools.
mcp_meta := m if {
	input.command.kind == "mcp.call"
	json.is_valid(input.command.raw) # (text that is not JSON is `malformed`: denied)
	doc := json.unmarshal(input.command.raw)
	is_object(doc)
	m := object.get(object.get(doc, "params", {}), "_meta", {})
}

mcp_meta_allowed(key) if startswith(key, "io.modelcontextprotocol/")

mcp_meta_allowed(key) if key in object.get(data.portcullis.mcp, ["meta", connection_name], [])

deny contains "MCP _meta is not an object" if {
	input.command.kind == "mcp.call"
	not is_object(mcp_meta)
}

deny contains sprintf("MCP _meta key %q is not allowed on %s", [key, connection_name]) if {
	input.command.kind == "mcp.call"
	some key, _ in mcp_meta
	not mcp_meta_allowed(key)
}

# -- tools

deny contains sprintf("tool %q is not listed for %s", [mcp_command.tool, connection_name]) if {
	input.command.kind == "mcp.call"
	mcp_method == "tools/call"
	count(mcp_tool_classes) == 0
}

allow contains sprintf("tool %q reads", [mcp_command.tool]) if {
	input.command.kind == "mcp.call"
	mcp_tool_class == "read"
}

allow contains sprintf("%s may call %s tool %q", [subject, mcp_tool_class, mcp_command.tool]) if {
	input.command.kind == "mcp.call"
	mcp_tool_class in {"write", "dangerous"}
	privileged
}

needs_approval contains sprintf("tool %q writes: it needs approval", [mcp_command.tool]) if {
	input.command.kind == "mcp.call"
	mcp_tool_class == "write"
	not privileged
	not mcp_listing
}

allow contains sprintf("tool %q may be called with an approval", [mcp_command.tool]) if {
	input.command.kind == "mcp.call"
	mcp_tool_class == "write"
	not privileged
	mcp_listing
}

deny contains sprintf("tool %q is dangerous: reserved to %s", [mcp_command.tool, concat(", ", data.portcullis.privileged_groups)]) if {
	input.command.kind == "mcp.call"
	mcp_tool_class == "dangerous"
	not privileged
}

# A tool's or prompt's arguments choose what comes back as a query's do over HTTP: for
# anyone masked, `find_customer({"phone": "555"})`, `{"email": "ann@example.com"}` or
# `{"filter": "phone like '555%'"}` answers which rows hold the masked value (a match or
# none, a count, an order) one guess at a time, though every value that comes back is
# masked. An argument's name (at any depth) naming a masked field by its words (as
# http.rego reads a query's, http_words_fields), or the text of an argument named as a
# query (`filter`, `query`, `q`, `where`, `sql`, ...: mcp_query_words) or as the field a
# lookup is by (`field`, `column`, `by`, `key`: mcp_field_naming_words), needs approval:
# the approver sees which field. (Other argument values are data, not names: a customer
# called `phone-label` is looked up by name.)
needs_approval contains sprintf("%s %q is called with arguments naming the masked field %s: a filter, order or search on it answers what the mask hides", [mcp_named_kind, mcp_named, field]) if {
	input.command.kind == "mcp.call"
	mcp_method in {"tools/call", "prompts/get"}
	not pii_reader
	not mcp_listing
	some text in mcp_argument_names
	some field in http_words_fields(http_spaced_words(text))
}

mcp_argument_names contains key if {
	walk(object.get(mcp_command, "arguments", {}), [path, _])
	count(path) > 0
	key := path[count(path) - 1]
	is_string(key)
}

mcp_argument_names contains value if {
	walk(object.get(mcp_command, "arguments", {}), [path, value])
	is_string(value)
	some key in path
	is_string(key)
	some word in split(trim_space(http_spaced_words(key)), " ")
	word in mcp_query_words
}

# and the names of a JSON document an argument's string holds (`{"input": "{\"phone\":
# \"555\"}"}`): a tool decoding its argument reads them as names, as the call's own keys
mcp_argument_names contains key if {
	walk(object.get(mcp_command, "arguments", {}), [_, value])
	is_string(value)
	regex.match(`^\s*[\[{]`, value)
	json.is_valid(value)
	walk(json.unmarshal(value), [path, _])
	count(path) > 0
	key := path[count(path) - 1]
	is_string(key)
}

mcp_query_words := (http_search_words | {"q", "where", "order", "sort", "orderby", "sortby", "expression", "expr", "condition", "criteria", "predicate", "dsl", "jql", "kql", "cql"}) | mcp_field_naming_words

# an argument named so says its value names a field: a generic lookup's `find_customer({"field":
# "phone", "value": "555"})` is `?field=phone&value=555` over HTTP, where every query value is read
# (portcullis/mcp.py's FIELD_NAMING_WORDS: the same words, for a completion's context)
mcp_field_naming_words := {"field", "fields", "column", "columns", "col", "by", "key", "keys", "attribute", "attributes", "attr", "property", "properties", "prop"}

# The same in a resource's URI (`invoice://customers/by-phone/555`, a template's
# `{phone}` filled in): its path read as an HTTP path is (http_lookup_fields), its query
# as an HTTP query is (`invoice://7?phone=555`).
needs_approval contains sprintf("resource %q names the masked field %s before a value: a lookup by it answers what the mask hides", [mcp_command.uri, field]) if {
	input.command.kind == "mcp.call"
	mcp_method in {"resources/read", "resources/subscribe"}
	not pii_reader
	some field in mcp_uri_lookup_fields
}

mcp_uri_lookup_fields contains field if {
	parts := split(mcp_command.uri, "?")
	after := split(parts[0], "://")
	some field in http_lookup_fields(after[count(after) - 1], count(parts) > 1)
}

mcp_uri_lookup_fields contains field if {
	some query in array.slice(split(mcp_command.uri, "?"), 1, 100)
	some field in http_words_fields(http_spaced_words(urlquery.decode(query)))
}

# And a template's variable (`customers://{email}` read as `customers://ann@example.com`):
# the URI names no field, but the server looks it up by the variable it fills, so its
# answer (found or not) confirms who has that email. `template_variables` names the
# variables of the templates the server listed on this connection (resources/templates/list)
# that the URI fills: the proxy matches them (proxies/http/mcp_templates.py); a read before
# any listing carries none.
needs_approval contains sprintf("resource %q fills template variable %s (the masked field %s): a lookup by it answers what the mask hides", [mcp_command.uri, variable, field]) if {
	input.command.kind == "mcp.call"
	mcp_method in {"resources/read", "resources/subscribe"}
	not pii_reader
	some variable in object.get(mcp_command, "template_variables", [])
	some field in http_words_fields(http_spaced_words(variable))
}

mcp_named_kind := "tool" if mcp_method == "tools/call" else := "prompt"

mcp_named := object.get(mcp_command, "tool", "") if mcp_method == "tools/call" else := object.get(mcp_command, "prompt", "")

# -- resources and prompts: prefixes and names listed per connection

mcp_resource_listed if {
	some prefix in object.get(data.portcullis.mcp.resources, connection_name, [])
	startswith(mcp_command.uri, prefix)
}

allow contains sprintf("resource %q is listed", [mcp_command.uri]) if {
	input.command.kind == "mcp.call"
	mcp_method in {"resources/read", "resources/subscribe", "resources/unsubscribe"}
	mcp_resource_listed
}

deny contains sprintf("resource %q is not listed for %s", [mcp_command.uri, connection_name]) if {
	input.command.kind == "mcp.call"
	mcp_method in {"resources/read", "resources/subscribe", "resources/unsubscribe"}
	not mcp_resource_listed
}

allow contains sprintf("prompt %q is listed", [mcp_command.prompt]) if {
	input.command.kind == "mcp.call"
	mcp_method == "prompts/get"
	mcp_command.prompt in object.get(data.portcullis.mcp.prompts, connection_name, [])
}

deny contains sprintf("prompt %q is not listed for %s", [mcp_command.prompt, connection_name]) if {
	input.command.kind == "mcp.call"
	mcp_method == "prompts/get"
	not mcp_command.prompt in object.get(data.portcullis.mcp.prompts, connection_name, [])
}

# -- completions: what they complete is judged like what it completes an argument of (a
# prompt by name, a resource template by its URI template's prefix), so no completion
# suggests values of a prompt or resource the connection does not list

deny contains sprintf("completion for prompt %q: the prompt is not listed for %s", [mcp_command.prompt, connection_name]) if {
	input.command.kind == "mcp.call"
	mcp_method == "completion/complete"
	not mcp_command.prompt in object.get(data.portcullis.mcp.prompts, connection_name, [])
	mcp_command.prompt
}

deny contains sprintf("completion for resource %q: the resource is not listed for %s", [mcp_command.uri, connection_name]) if {
	input.command.kind == "mcp.call"
	mcp_method == "completion/complete"
	mcp_command.uri
	not mcp_resource_listed
}

deny contains "a completion names no prompt or resource" if {
	input.command.kind == "mcp.call"
	mcp_method == "completion/complete"
	not mcp_command.prompt
	not mcp_command.uri
}

# -- what comes back: fields named like sensitive columns and the detectors, over tool
# results, resource contents and prompts, for everyone not in pii-readers (the masks are
# decision.rego's command_masks; this says where they apply)

mcp_returns_data if {
	input.command.kind == "mcp.call"
	mcp_command.message == "request"
	mcp_method in mcp_named_methods
	not mcp_listing
}

# the server's own messages (notifications/message, sampling and elicitation requests) may
# carry anything a tool result does: the server's event stream (a GET) is masked as data,
# and its mask is what the proxy puts on every message the server sends of its own accord,
# on any stream of the session, from the first
mcp_returns_data if {
	input.command.kind == "mcp.call"
	mcp_command.message == "stream"
}

# completions suggest argument values (a customer's email, say), and resource lists name
# resources after what they hold: data as well
mcp_returns_data if {
	input.command.kind == "mcp.call"
	mcp_command.message == "request"
	mcp_method in {"completion/complete", "resources/list", "resources/templates/list"}
}
