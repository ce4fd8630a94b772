# Behind a transaction pooler (a Postgres connection with `upstream_pooler: transaction`,
# e.g. pgbouncer with pool_mode = transaction; the proxy says so in
# input.command.postgres.pooler), each transaction of a session may run on another
# server connection of the pool, and a session-level SET stays on the server connection
# it ran on for whichever client's transaction runs there next. The settings the proxy
# pins there hold through the upstream role's configuration (ALTER ROLE ... SET, checked
# by the proxy when each session starts), so nobody, dba included, may SET, RESET or
# set_config them: one SET would move them under another session's feet (a dba's
# `SET default_transaction_read_only = off` would hand a reader sharing the upstream role
# a read-write transaction; a reader's shorter statement_timeout would bound someone
# else's statements), and who a session acts as (SET ROLE, SET SESSION AUTHORIZATION)
# would leak the same way.
#
# The classifier does not tell SET LOCAL from SET, so SET LOCAL of these is refused too:
# the safe mistake. Names match the statement's setting as the classifier gives it.
package portcullis

pg_pooler_pinned_setting(name) if name in {
	# what session.rego pins for readers
	"default_transaction_read_only", "statement_timeout",
	# SET SESSION CHARACTERISTICS AS TRANSACTION ... sets default_transaction_*
	"session characteristics",
	# who the session acts as
	"role", "session_authorization",
}

# the lexing pins (the proxy pins client_encoding and standard_conforming_strings through
# the pooler's own tracking, backslash_quote through the role)
pg_pooler_pinned_setting(name) if data.portcullis.postgres.lexing_settings[name]

deny contains sprintf("%s %s: behind a transaction pooler the setting is pinned by the upstream role's configuration, and a session-level change would reach other sessions' transactions", [verb, upper(s.setting)]) if {
	input.command.postgres.types.set
	input.command.postgres.pooler == "transaction"
	some s in input.command.postgres.statements
	s.type == "set"
	pg_pooler_pinned_setting(s.setting)
	verb := {true: "RESET", false: "SET"}[object.get(s, "reset", false)]
}

deny contains "RESET ALL behind a transaction pooler: the setting is pinned by the upstream role's configuration, and a session-level change would reach other sessions' transactions" if {
	input.command.postgres.types.set
	input.command.postgres.pooler == "transaction"
	some s in input.command.postgres.statements
	s.type == "set"
	s.setting == "all"
}

deny contains sprintf("set_config may not change %s behind a transaction pooler: the setting is pinned by the upstream role's configuration", [name]) if {
	input.command.postgres.pooler == "transaction"
	some s in input.command.postgres.statements
	some name in s.settings
	pg_pooler_pinned_setting(name)
}

# Named things that outlive a transaction live on one server connection too: a statement
# PREPAREd on one may be EXECUTEd, by its name, on another where the name is another
# session's statement (run with this session's verdict), and a cursor DECLAREd WITH HOLD
# may be FETCHed by another session whose transaction lands there (the classifier does
# not tell WITH HOLD apart, so DECLARE is refused: the safe mistake). The proxy refuses
# named protocol-level statements itself.
deny contains sprintf("%s behind a transaction pooler: what it names may be another session's on the server connection the next transaction runs on", [upper(s.type)]) if {
	input.command.postgres.pooler == "transaction"
	some s in input.command.postgres.statements
	s.type in {"prepare", "execute", "declare"}
}

# The settings that choose how values are written (postgres.rego's
# pg_value_checked_settings) are a session's own to change, within what policy allows it,
# only where the change stays in that session. Behind a transaction pooler a pii-reader's
# `SET bytea_output = escape` or `SET extra_float_digits = 0` stayed on the server
# connection for whichever client's transaction ran there next: a reader's `b::text`
# read `4111\0001111\000...`, its double `4.11111111111111e+15`, which no detector reads.
# There nobody may SET or set_config them (the proxy checks at session start that the
# role's configuration holds its WRITING_DEFAULTS, proxies/postgres/startup.py role_pins);
# RESET of one returns the role's own value, and stays allowed as policy allows it.
deny contains sprintf("SET %s behind a transaction pooler: the setting chooses how values are written, and a session-level change would reach other sessions' transactions", [upper(s.setting)]) if {
	input.command.postgres.types.set
	input.command.postgres.pooler == "transaction"
	some s in input.command.postgres.statements
	s.type == "set"
	s.setting in pg_value_checked_settings
	not s.reset
}

deny contains sprintf("set_config may not change %s behind a transaction pooler: the setting chooses how values are written, and a session-level change would reach other sessions' transactions", [name]) if {
	input.command.postgres.pooler == "transaction"
	some s in input.command.postgres.statements
	some name in s.settings
	name in pg_value_checked_settings
}

# A LISTEN too stays registered on the server connection it ran on, and what arrives for
# it arrives in whichever client's transaction runs there next: a pii-reader's LISTEN
# handed a reader another session's NOTIFY payload (`card 4111 ... pw hunter2-ada`),
# unmasked (test_pg_probe_p53). Refused for everyone behind the pooler; the proxy there
# also withholds every notification (proxies/postgres/tracker.py). UNLISTEN stays.
deny contains "LISTEN behind a transaction pooler: it stays on the server connection, and what arrives for it would reach the next session whose transaction runs there" if {
	input.command.postgres.types.listen
	input.command.postgres.pooler == "transaction"
}
