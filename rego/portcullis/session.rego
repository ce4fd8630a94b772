# Who may use which connection: session.open, and the same membership check again on
# every later command (a session outliving a group change must not keep its access).
package portcullis

# Defaults, not object.get: they must hold even when there is no input document at all.
default command_kind := "unknown command"

command_kind := input.command.kind

default connection_name := ""

connection_name := input.connection.name

connection := data.portcullis.connections[input.connection.name]

# each of the identity's groups (usually one) looked up in the connection's list, rather
# than each of the connection's groups in the identity's: fewer steps, the same answer
# Each fact twice: read from the session's standing (standing.rego) when the PDP passes
# one, worked out from the identity when it does not; the two never both apply.
connection_member if input.standing.member == true

connection_member if {
	not input.standing
	some g in input.identity.groups
	g in connection.groups
}

privileged if input.standing.privileged == true

privileged if {
	not input.standing
	some g in data.portcullis.privileged_groups
	g in input.identity.groups
}

pii_reader if input.standing.pii_reader == true

pii_reader if {
	not input.standing
	some g in data.portcullis.pii_reader_groups
	g in input.identity.groups
}

# Denials that hold for every command of a session, whatever it is: part of the standing.
session_denials contains sprintf("unknown connection %q", [connection_name]) if {
	not connection
}

session_denials contains sprintf("%s is not in a group allowed on %s", [subject, connection_name]) if {
	connection
	not connection_member
}

# the standing's denials, or without one these alone (not the whole standing: a session.open
# needs nothing else of it)
deny_unindexed contains reason if {
	some reason in input.standing.denials
}

deny_unindexed contains reason if {
	not input.standing
	some reason in session_denials
}

# The connection type each command kind belongs to: a literal in the rule, not a rule of
# its own, which the evaluator would build again on every decision. The connection's type
# is read from data alone (one string), not through `connection`, whose whole document
# (groups, credential) the evaluator would convert from the store on every command.
deny_unindexed contains sprintf("%s is not a command of a %s connection", [command_kind, connection_type]) if {
	expected := {
		"postgres.query": "postgres",
		"postgres.function_call": "postgres",
		"http.request": "http",
		"ssh.exec": "ssh",
		"ssh.shell": "ssh",
		"ssh.forward": "ssh",
		"ssh.subsystem": "ssh",
		"ssh.sftp": "ssh",
	}[input.command.kind]
	connection_type := data.portcullis.connections[input.connection.name].type
	expected != connection_type
}

allow contains sprintf("%s may open a session to %s", [subject, connection_name]) if {
	input.command.kind == "session.open"
	connection_member
}

session_credential_ref := connection.credential_ref if input.command.kind == "session.open"

# A cap per identity and connection: input.session.open_sessions is how many sessions the
# subject holds open on this connection at this PDP when it asks for another.
deny contains sprintf("%s already holds %d sessions on %s (at most %d)", [subject, n, connection_name, limit]) if {
	input.command.kind == "session.open"
	n := input.session.open_sessions
	limit := data.portcullis.max_sessions_per_identity
	n >= limit
}

# Server settings the proxy pins for the session (in its start-up packet, so RESET ALL
# and DISCARD ALL return to them): readers run read-only at the server, a second line
# behind the classifier, and with a bound on every statement; and one on how long a
# transaction stays open (transaction_timeout, PostgreSQL 17's name, which the proxy keeps
# itself on every server: a statement every minute kept one snapshot and its locks open
# for good; postgres.reader_transaction_timeout_ms, ten minutes where data names none).
session_settings := {
	"default_transaction_read_only": "on",
	"statement_timeout": sprintf("%d", [data.portcullis.postgres.reader_statement_timeout_ms]),
	"transaction_timeout": sprintf("%d", [object.get(data.portcullis.postgres, "reader_transaction_timeout_ms", 600000)]),
} if {
	input.command.kind == "session.open"
	connection.type == "postgres"
	not privileged
}

default subject := "anonymous"

subject := input.identity.subject
