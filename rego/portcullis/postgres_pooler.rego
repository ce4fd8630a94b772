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
# SET LOCAL of these is refused too (the classifier now tells it apart, `local`, but a
# pinned setting has no reason to change even for one transaction). Names match the
# statement's setting as the classifier gives it.
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
deny contains sprintf("SET %s behind a transaction pooler: %s, and a session-level change would reach other sessions' transactions", [upper(s.setting), pg_pooler_unsettable[s.setting]]) if {
	input.command.postgres.types.set
	input.command.postgres.pooler == "transaction"
	some s in input.command.postgres.statements
	s.type == "set"
	pg_pooler_unsettable[s.setting]
	not s.reset
}

deny contains sprintf("set_config may not change %s behind a transaction pooler: %s, and a session-level change would reach other sessions' transactions", [name, pg_pooler_unsettable[name]]) if {
	input.command.postgres.pooler == "transaction"
	some s in input.command.postgres.statements
	some name in s.settings
	pg_pooler_unsettable[name]
}

# The settings every session behind the pooler needs from the upstream role's
# configuration whatever policy chose for it (the proxy checks them as each session starts,
# with policy's own pins): proxies/postgres/startup.py POOLER_ROLE_PINS, which
# tests/test_pg_probe_p58.py holds equal to this set, so the two cannot drift. One SET of
# them would move them under other sessions' feet: nobody SETs or set_configs them here.
pg_pooler_role_pins := {"backslash_quote", "bytea_output", "extra_float_digits"}

# what may not be SET behind the pooler, by name, and why
pg_pooler_unsettable[name] := "the setting chooses how values are written" if {
	some name in pg_value_checked_settings
}

pg_pooler_unsettable[name] := "the upstream role's configuration holds the setting for every session" if {
	some name in pg_pooler_role_pins
	not name in pg_value_checked_settings
}

# A LISTEN too stays registered on the server connection it ran on, and what arrives for
# it arrives in whichever client's transaction runs there next: a pii-reader's LISTEN
# handed a reader another session's NOTIFY payload (`card 4111 ... pw hunter2-ada`),
# unmasked (test_pg_probe_p53). Refused for everyone behind the pooler; the proxy there
# also withholds every notification (proxies/postgres/tracker.py). (UNLISTEN, which can
# then end only another session's LISTEN, is refused below.)
deny contains "LISTEN behind a transaction pooler: it stays on the server connection, and what arrives for it would reach the next session whose transaction runs there" if {
	input.command.postgres.types.listen
	input.command.postgres.pooler == "transaction"
}

# Every other setting a session SETs stays on the server connection too, for whichever
# client's transaction runs there next, and the pins are checked only as a session starts.
# A dba's `SET search_path = p55, public` (p55 holding a `customers`) had a reader's next
# `SELECT name FROM customers` answered from the dba's table (and would have an INSERT
# INTO customers land there), a reader's `SET
# default_transaction_isolation = serializable`, `client_min_messages = error`, `seed` or
# `lock_timeout` ran the next session's transactions under it (test_pg_probe_p55). So
# there, a session-level change is allowed only of a setting that cannot reach another
# session: those pgbouncer tracks (it gives each client its own value back on every
# server connection: proxies/postgres/startup.py POOLER_TRACKED), those that last one
# transaction whatever the SET says, and jit, which chooses how a plan is run, never what
# it returns (asyncpg turns it off and back with set_config around its type
# introspection). SET LOCAL ends with its transaction, which runs on one server
# connection: allowed as policy allows it elsewhere; RESET returns the role's value, which
# is the next session's as well. set_config likewise by its is_local: the classifier's
# session_settings are the settings of calls whose is_local is not a constant true.
pg_pooler_session_setting(name) if name in {
	# tracked by pgbouncer (client_encoding and standard_conforming_strings are pinned)
	"application_name", "datestyle", "timezone",
	# transaction-scoped: SET TRANSACTION ... and its settings
	"transaction", "transaction_isolation", "transaction_deferrable", "transaction_read_only",
	"jit",
}

deny contains sprintf("SET %s behind a transaction pooler: a session-level change stays on the server connection for other sessions' transactions (SET LOCAL ends with the transaction)", [upper(s.setting)]) if {
	input.command.postgres.types.set
	input.command.postgres.pooler == "transaction"
	some s in input.command.postgres.statements
	s.type == "set"
	not s.reset
	not s.local
	not pg_pooler_session_setting(s.setting)
}

deny contains sprintf("set_config may not change %s for the session behind a transaction pooler: the change stays on the server connection for other sessions' transactions (is_local true ends it with the transaction)", [name]) if {
	input.command.postgres.pooler == "transaction"
	some s in input.command.postgres.statements
	some name in s.session_settings
	not pg_pooler_session_setting(name)
}

# A temporary object stays on the server connection too (its pg_temp schema is the
# server connection's), and the next session's unqualified relation and type names search
# pg_temp before anything else: a masked dba's `CREATE TABLE pg_temp.customers (id int,
# name text)` (DDL needing no approval) answered a reader's next `SELECT name FROM
# customers` from the dba's table, which would take the rows a session INSERTs INTO
# customers too (test_pg_probe_p56). Refused for everyone behind
# the pooler; a temporary table ON COMMIT DROP ends with its transaction and stays.
deny contains "a temporary object behind a transaction pooler: it stays on the server connection, where the next session's names would find it first" if {
	input.command.postgres.pooler == "transaction"
	some s in input.command.postgres.statements
	s.temporary
}

# A DO block whose code cannot all be read (dynamic EXECUTE, another language) may SET a
# setting for the session or make a temporary object where the rules above cannot see it:
# `EXECUTE 'CREATE TEMP TABLE customers ...'` is the refused statement in a string.
# Elsewhere it needs approval; behind the pooler what it leaves behind would reach other
# sessions' transactions, which no approver of this one decides for. Refused for everyone.
deny contains "a DO block with dynamic or non-SQL code behind a transaction pooler: what it leaves on the server connection (a setting, a temporary object) cannot be judged" if {
	input.command.postgres.types.do
	input.command.postgres.pooler == "transaction"
	some s in input.command.postgres.statements
	s.type == "do"
	s.opaque
}

# Reading a view runs its query's functions, which the statement does not name: a view
# calling set_config (postgres_lineage.rego lets a pii-reading dba read one) SETs for the
# session where the rules above never see the setting's name. Refused for everyone.
deny contains sprintf("view %s runs set_config behind a transaction pooler: the setting it changes would stay on the server connection for other sessions' transactions", [v]) if {
	input.command.postgres.pooler == "transaction"
	input.command.postgres.has.user_code
	views := input.command.postgres.view_functions
	some s in input.command.postgres.statements
	some t in s.tables
	some v, functions in views
	view_named(v, t)
	"pg_catalog.set_config" in functions
}

# The database's code runs what its statement does not name: a function's body (`SELECT
# f()` whose PL/pgSQL runs `PERFORM set_config('search_path', 'p57, public', false)`,
# `SET search_path = ...`, `CREATE TEMP TABLE customers ...`, LISTEN), a procedure's by
# CALL, a view's or a rule's functions, a write's triggers and column defaults, an
# operator's or cast's function, an event trigger's. Behind the pooler what it leaves
# stayed on the server connection: a pii-reading dba's `SELECT p57_path()` had a reader's
# next `SELECT name FROM customers` answered from the dba's p57.customers
# (test_pg_probe_p57). The proxy reads the bodies of the database's functions and names
# those it cannot show free of session-level changes (proxies/postgres/session_code.py, an
# allow-list: SQL or PL/pgSQL reading and writing rows, SET LOCAL, no dynamic SQL, no other
# such function called), and what runs one (input.command.postgres.pooler_session_code,
# sent only behind a pooler). Refused for everyone there: no approver of this session
# decides for the next one's.
pg_pooler_code_message := "may leave session state (a setting, a temporary object, a LISTEN) on the server connection for the next session whose transaction runs there: refused behind a transaction pooler"

deny contains sprintf("function %s %s", [f, pg_pooler_code_message]) if {
	input.command.postgres.pooler == "transaction"
	code := input.command.postgres.pooler_session_code
	some s in input.command.postgres.statements
	some key in ["functions", "qualified_functions", "cased_functions"]
	some f in object.get(s, key, [])
	f in code.functions
}

deny contains sprintf("operator %s runs a function that %s", [o, pg_pooler_code_message]) if {
	input.command.postgres.pooler == "transaction"
	code := input.command.postgres.pooler_session_code
	some s in input.command.postgres.statements
	some o in object.get(s, "operators", [])
	o in code.operators
}

deny contains sprintf("reading %s runs %s, which %s", [v, concat(", ", functions), pg_pooler_code_message]) if {
	input.command.postgres.pooler == "transaction"
	code := input.command.postgres.pooler_session_code
	some s in input.command.postgres.statements
	some t in s.tables
	some v, functions in code.reads
	view_named(v, t)
}

deny contains sprintf("writing to %s runs %s, which %s", [t, concat(", ", code.writes[t]), pg_pooler_code_message]) if {
	input.command.postgres.pooler == "transaction"
	code := input.command.postgres.pooler_session_code
	some s in input.command.postgres.statements
	pg_pooler_writes(s)
	some t in s.tables
	code.writes[t]
}

deny contains sprintf("writing to %s runs %s, which %s", [t, concat(", ", ran), pg_pooler_code_message]) if {
	input.command.postgres.pooler == "transaction"
	code := input.command.postgres.pooler_session_code
	some s in input.command.postgres.statements
	pg_pooler_writes(s)
	some t in s.tables
	parts := split(t, ".")
	count(parts) == 3
	ran := code.writes[concat(".", [parts[1], parts[2]])]
}

pg_pooler_writes(s) if pg_writes_rows(s)

pg_pooler_writes(s) if s.type == "truncate"

pg_pooler_writes(s) if s.tag in {"VacuumStmt", "ReindexStmt"}

deny contains sprintf("event trigger %s runs on DDL a function that %s", [e, pg_pooler_code_message]) if {
	input.command.postgres.pooler == "transaction"
	code := input.command.postgres.pooler_session_code
	some e in code.event_triggers
	some s in input.command.postgres.statements
	pg_fires_event_triggers(s)
}

deny contains sprintf("the database's cast %s runs wherever its types meet a function that %s", [c, pg_pooler_code_message]) if {
	input.command.postgres.pooler == "transaction"
	code := input.command.postgres.pooler_session_code
	some c in code.casts
}

# What a server connection keeps for its session is another session's there, and the
# built-ins that read or change it reach that session. A reader behind the pooler, whose
# server connection an application straight at pgbouncer had left a prepared statement and
# a WITH HOLD cursor on (`... WHERE ssn = '123-45-6789'`), counted
# `SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%123-45%'` (1: the
# application's literal; pg_cursors alike) and FETCHed the application's cursor, using it
# up; a masked dba's count of pg_backend_memory_contexts `WHERE ident LIKE '%ssn =
# ''123-4%'` (the cached plans' statement text) was 2, and 0 for '999-4'; a reader's
# `SELECT pg_advisory_unlock_all()` released the application's session-level advisory
# lock, and a masked dba's `pg_advisory_lock(7)` or `setseed(0.5)` stayed held for the
# next session (test_pg_probe_p59). Elsewhere each lists or changes only the session's
# own. Behind the pooler: the statement text of prepared statements, cursors and cached
# plans is other sessions' (denied outside pii-readers, as pg_stat_activity's statement
# text is judged there), and a FETCH, MOVE or CLOSE of a cursor (the pooler refuses
# DECLARE, so the cursor is not the session's) and the session-level advisory locks and
# the seed are refused for everyone (the _xact advisory locks end with the transaction and
# stay). The proxy refuses the same built-ins in a function's body
# (proxies/postgres/session_code.py SESSION_STATE_BUILTINS; tests/test_pg_probe_p58.py
# holds the two alike).
pg_pooler_session_builtins := {
	"setseed", "pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock",
	"pg_try_advisory_lock_shared", "pg_advisory_unlock", "pg_advisory_unlock_shared",
	"pg_advisory_unlock_all", "pg_replication_origin_session_setup",
	"pg_replication_origin_session_reset",
}

deny contains sprintf("function %s keeps or changes what the server connection holds for its session, which behind a transaction pooler is other sessions' too: refused there", [f]) if {
	input.command.postgres.pooler == "transaction"
	some s in input.command.postgres.statements
	some f in s.functions
	f in pg_pooler_session_builtins
}

# A sequence's last value is kept for the session too: lastval() and currval() answer the
# last nextval() run on the server connection, which behind the pooler may be another
# session's. An application straight at pgbouncer took `nextval('p60_orders')` (4111), and
# a masked dba's next `SELECT lastval()` and `SELECT currval('p60_orders')` answered 4111
# (test_pg_probe_p60). Refused for everyone there (a session's own value is nextval's
# answer, or an INSERT's RETURNING); the classifier does not give call arguments, so a
# currval of the sequence the same transaction took nextval of is refused too: the safe
# mistake.
pg_pooler_session_values := {"lastval", "currval"}

deny contains sprintf("function %s reads the server connection's last sequence value, which behind a transaction pooler may be another session's: refused there (use nextval's own answer or RETURNING)", [f]) if {
	input.command.postgres.pooler == "transaction"
	some s in input.command.postgres.statements
	some f in s.functions
	f in pg_pooler_session_values
}

# LOAD keeps a library loaded in the server connection (its hooks and its settings, e.g.
# auto_explain logging each plan) for whichever session's transaction runs there next;
# elsewhere it asks for approval, which no approver of this session gives for the next
# one's. Refused for everyone behind the pooler (test_pg_probe_p60).
deny contains "LOAD behind a transaction pooler: the library stays loaded in the server connection for other sessions' transactions" if {
	input.command.postgres.pooler == "transaction"
	some s in input.command.postgres.statements
	s.type == "load"
}

# The statements that drop what the server connection keeps remove another session's
# there: the pooler refuses PREPARE, named protocol statements, LISTEN and temporary
# objects, so a DEALLOCATE (ALL), an UNLISTEN or a DISCARD ALL / TEMP can only end an
# application's prepared statements, notifications, temporary tables and locks (a reader's
# `DEALLOCATE ALL` broke the application's next EXECUTE, test_pg_probe_p59). Refused for
# everyone there; DISCARD PLANS and SEQUENCES drop only caches and stay.
deny contains sprintf("%s behind a transaction pooler: what it drops on the server connection is another session's (this one may keep none there)", [s.tag]) if {
	input.command.postgres.pooler == "transaction"
	some s in input.command.postgres.statements
	pg_pooler_drops_session_state(s)
}

pg_pooler_drops_session_state(s) if s.type in {"deallocate", "unlisten"}

pg_pooler_drops_session_state(s) if {
	s.type == "discard"
	not s.target in {"plans", "sequences"}
}

deny contains sprintf("%s of a cursor behind a transaction pooler: DECLARE is refused there, so the cursor is another session's, left on the server connection", [verb]) if {
	input.command.postgres.pooler == "transaction"
	some s in input.command.postgres.statements
	s.tag in {"FetchStmt", "ClosePortalStmt", "PLpgSQL_stmt_fetch"}
	verb := {"FetchStmt": "FETCH or MOVE", "ClosePortalStmt": "CLOSE", "PLpgSQL_stmt_fetch": "FETCH or MOVE"}[s.tag]
}

deny contains sprintf("%s behind a transaction pooler lists other sessions' prepared statements and cursors, whose statement text holds their values: denied to everyone not in pii-readers", [what]) if {
	input.command.postgres.pooler == "transaction"
	not pii_reader
	some s in input.command.postgres.statements
	some what in pg_pooler_session_lists(s)
}

pg_pooler_session_lists(s) := {t |
	some t in s.tables
	parts := split(lower(t), ".")
	parts[count(parts) - 1] in {"pg_prepared_statements", "pg_cursors", "pg_backend_memory_contexts"}
} | {f |
	some f in s.functions
	f in {"pg_prepared_statement", "pg_cursor", "pg_get_backend_memory_contexts"}
}

# A view the database defines over them reads the same (the proxy lists the session lists'
# functions a view runs in view_functions, proxies/postgres/user_code.py): a masked dba's
# `SELECT count(*) FROM p61_statements` (`CREATE VIEW p61_statements AS SELECT statement
# FROM pg_prepared_statements`) counted the application's prepared statement, and a
# pii-reading dba's `SELECT v FROM p61_last` (`SELECT lastval() AS v`) read the
# application's 4111 (test_pg_probe_p61). Judged as naming them.
deny contains sprintf("view %s runs %s, which behind a transaction pooler lists other sessions' prepared statements and cursors, whose statement text holds their values: denied to everyone not in pii-readers", [v, f]) if {
	input.command.postgres.pooler == "transaction"
	not pii_reader
	some s in input.command.postgres.statements
	some t in s.tables
	some v, functions in object.get(input.command.postgres, "view_functions", {})
	view_named(v, t)
	some f in functions
	f in {"pg_catalog.pg_prepared_statement", "pg_catalog.pg_cursor", "pg_catalog.pg_get_backend_memory_contexts"}
}

deny contains sprintf("view %s runs %s, which reads the server connection's last sequence value, which behind a transaction pooler may be another session's: refused there", [v, f]) if {
	input.command.postgres.pooler == "transaction"
	some s in input.command.postgres.statements
	some t in s.tables
	some v, functions in object.get(input.command.postgres, "view_functions", {})
	view_named(v, t)
	some f in functions
	f in {"pg_catalog.lastval", "pg_catalog.currval"}
}

deny contains sprintf("type %s runs a function that %s", [t, pg_pooler_code_message]) if {
	input.command.postgres.pooler == "transaction"
	code := input.command.postgres.pooler_session_code
	some s in input.command.postgres.statements
	some t in object.get(s, "type_names", [])
	t in code.types
}
