# http.request: reads for every member of the connection, writes through approval,
# deletes only for the privileged groups. http.upgrade: a WebSocket opened with GET, like a
# read; its frames are relayed and recorded, not decided one by one.
package portcullis

http_method := upper(object.get(input, ["command", "http", "method"], ""))

http_read_methods := {"GET", "HEAD"}

http_write_methods := {"POST", "PUT", "PATCH"}

allow contains sprintf("%s %s is a read", [http_method, input.command.http.path]) if {
	input.command.kind == "http.request"
	http_method in http_read_methods
}

allow contains sprintf("%s may %s on %s", [subject, http_method, connection_name]) if {
	input.command.kind == "http.request"
	privileged
	http_method in (http_write_methods | {"DELETE"})
}

needs_approval contains sprintf("%s %s needs approval", [http_method, input.command.http.path]) if {
	input.command.kind == "http.request"
	not privileged
	http_method in http_write_methods
}

deny contains sprintf("DELETE is reserved to %s", [concat(", ", data.portcullis.privileged_groups)]) if {
	input.command.kind == "http.request"
	not privileged
	http_method == "DELETE"
}

# JSON response fields named like sensitive columns, and the detectors, are masked for
# everyone not in pii-readers: decision.rego's command_masks.

allow contains sprintf("WebSocket %s may open", [input.command.http.path]) if {
	input.command.kind == "http.upgrade"
	http_method == "GET"
	lower(object.get(input.command.http, "upgrade", "")) == "websocket"
}
