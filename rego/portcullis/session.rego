# Who may use which connection: session.open, and the same membership check again on
# every later command (a session outliving a group change must not keep its access).
package portcullis

command_kind := object.get(input, ["command", "kind"], "unknown command")

identity_groups := {g | some g in object.get(input, ["identity", "groups"], [])}

connection_name := object.get(input, ["connection", "name"], "")

connection := data.portcullis.connections[connection_name]

connection_member if {
	some g in connection.groups
	g in identity_groups
}

privileged if {
	some g in data.portcullis.privileged_groups
	g in identity_groups
}

pii_reader if {
	some g in data.portcullis.pii_reader_groups
	g in identity_groups
}

# The connection type each command kind belongs to.
kind_types := {
	"postgres.query": "postgres",
	"http.request": "http",
	"ssh.exec": "ssh",
	"ssh.shell": "ssh",
	"ssh.forward": "ssh",
	"ssh.sftp": "ssh",
}

deny contains sprintf("unknown connection %q", [connection_name]) if {
	not connection
}

deny contains sprintf("%s is not in a group allowed on %s", [subject, connection_name]) if {
	connection
	not connection_member
}

deny contains sprintf("%s is not a command of a %s connection", [command_kind, connection.type]) if {
	expected := kind_types[command_kind]
	expected != connection.type
}

allow contains sprintf("%s may open a session to %s", [subject, connection_name]) if {
	input.command.kind == "session.open"
	connection_member
}

session_credential_ref := connection.credential_ref if input.command.kind == "session.open"

subject := object.get(input, ["identity", "subject"], "anonymous")
