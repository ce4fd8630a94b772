# postgres.query: one judgement per classified statement (pdp/sql/), nested
# ones included, so a write inside a CTE, EXPLAIN ANALYZE, PREPARE or DO block is judged
# as the write it is. A query is allowed only when every statement is allowed; one
# statement needing approval makes the whole query need it; one denied denies it all.
#
# Sensitive columns by lineage (each statement's outputs and predicates: which table
# columns values derive from and how conditions use them) are judged in
# postgres_lineage.rego, which documents those fields.
#
# Every rule here reads statement types, tags, tables, functions and setting names only,
# never literal values: decision.rego relies on that to offer cache_key "shape". The
# statements classified from a DO block's code (a literal) are the exception, and
# decision.rego offers no cache for a query holding one.
#
# Settings are the exception to "never literal values": the classifier reads the setting
# set_config names and the values of SET (search_path, read-write, statement_timeout), so
# decision.rego offers no cache for a query holding a SET or a set_config call either.
#
# Readers (everyone not in a privileged group) are judged by allow-lists, never by lists
# of what is bad (DESIGN.md "default semantics"), all in rego/data.json:
#
#   postgres.reader_functions  the functions readers may call, {name: true}, generated from
#                              a real server's pg_proc by `portcullis policy reader-functions`
#                              (pdp/sql/reader_functions.py says what it selects and why). A name
#                              counts only as the server resolves it: unqualified or
#                              pg_catalog-qualified (pg_catalog is searched first unless the
#                              search_path names it later, which readers cannot set), and
#                              not a quoted name with capitals (a different function).
#   postgres.reader_settings   settings readers may SET, RESET or set_config to any value
#                              (but pg_value_checked_settings: extra_float_digits by SET,
#                              to 1-3, lc_numeric by SET, to the locales of
#                              pg_reader_locales, bytea_output to hex, lc_monetary by
#                              RESET, only): how
#                              values are shown (DateStyle, TimeZone,
#                              IntervalStyle, extra_float_digits, bytea_output, xmloption, lc_monetary,
#                              lc_numeric, lc_time), labels and notices (application_name,
#                              client_min_messages), waits of the session's own (lock_timeout,
#                              idle_session_timeout),
#                              jit (asyncpg turns it off), and transaction isolation and
#                              deferrability. Not memory (work_mem and the like are shared by
#                              the whole server), not logging, triggers or catalogs. Checked
#                              by value, with SET only (set_config's value is not read):
#                              search_path (pg_catalog first, and only the schemas of
#                              postgres.reader_search_path), statement_timeout
#                              and idle_in_transaction_session_timeout (1 ms up to
#                              postgres.reader_statement_timeout_ms, the bounds the
#                              session opens with), transaction_read_only and
#                              default_transaction_read_only, SET TRANSACTION and SET
#                              SESSION CHARACTERISTICS (never to read-write). RESET ALL
#                              and DISCARD ALL return to the session's start-up values,
#                              which the proxy pins in the start-up packet.
#   postgres.reader_readable_settings  settings readers may read (SHOW, current_setting):
#                              those PostgreSQL 15 shows a role without pg_read_all_settings
#                              (the upstream role may be a superuser, shown more), less the
#                              archive and recovery commands, where credentials are kept.
#   postgres.raw_row_functions functions returning the rows of the database's tables as
#                              they decode them from WAL or pages (logical decoding,
#                              pageinspect, pg_walinspect), under no column a mask names:
#                              denied to everyone not in pii-readers, dba included.
#   postgres.secret_catalogs   catalogs readers may not read at all (password verifiers,
#                              user-mapping options, large objects, column statistics that
#                              hold sample values, other sessions' SQL text, server
#                              files). pg_settings is read through a row filter of
#                              reader_readable_settings (guards.rego), not listed here.
#
# For everyone, dba included: postgres.lexing_settings (client_encoding, and the settings
# that change how the server reads a string literal) may not be SET or set_config'd, since
# the policy's parser must read each statement as the server does; RESET returns them to
# the values the proxy pinned, so RESET stays allowed. set_config with a setting name that
# is not a literal is denied to everyone: nobody can tell what it changes.
#
# Bodies test input fields before they test other rules: each rule reference costs the
# evaluator more than an input lookup, and this module runs on every SQL statement. Deny
# rules iterate the statements without checking the command kind: only postgres commands
# carry statements, and a stray one could only add a denial. Lists read on every statement
# are objects ({name: true}), so a membership test is one lookup, not a scan.
# Deny reasons go into pg_denials (postgres_lineage.rego's: pg_lineage_denials), or, for a
# rule that opens with no input test the rule index reads (a kind, a type, a flag of
# input.command.postgres.has), deny_unindexed: decision.rego joins them into deny, and says why
# (and why the rules a postgres command meets come first among their set's: the denials of a
# statement's functions and attribute names open pg_denials below).
package portcullis


# A fast-path FunctionCall message arrives as postgres.function_call with one "select"
# statement naming the function, and is judged like the query it stands for: rules guard
# on {"postgres.query", "postgres.function_call"}. Constant sets are written inline where
# they are used: a literal costs the evaluator nothing, a rule reference a lookup.

# --- denied for everyone ---------------------------------------------------

# A postgres command whose statements were not classified is denied: decision.rego's deny
# rule (written there for the rule index).

# input.command.postgres.types (a departure from DESIGN.md's input contract, added by the
# PDP: pdp/domain/policy_input.py, from the statements it classified; never a proxy's):
# {type: true} for the type of every statement, nested ones included. A rule about one
# type of statement opens with `input.command.postgres.types.<type>`, an input reference
# the evaluator's rule index reads, so it is skipped for a query holding no statement of
# that type instead of walking its statements. A statement whose type the summary does not
# name is denied here: a summary that leaves a type out can only deny, never let a
# statement past the rules for its type.
deny_unindexed contains sprintf("statement %d (%v) is not in the query's summary of statement types", [i, object.get(s, "type", "unknown")]) if {
	some i, s in input.command.postgres.statements
	not input.command.postgres.types[object.get(s, "type", "")]
}

# input.command.postgres.has (added by the PDP like `types`: pdp/domain/policy_input.py,
# statement_flags and query_flags; never a proxy's): {flag: true} for each of a few facts
# some statement holds, set from the very fields the rules read (and whenever one is not
# of the classifier's shape), e.g. `settings` when a statement calls set_config, `locking`
# for FOR UPDATE/SHARE, `user_code` when the session's catalogue facts name any of the
# statements' names. A rule that looks for one of these facts in every statement opens
# with `input.command.postgres.has.<flag>`, so a query without it skips the rule. A
# postgres command without the flags is denied: without them those rules would not run.
deny_unindexed contains "the query's flags (input.command.postgres.has) are missing: the statements cannot be judged" if {
	# `!= false`, not the bare reference: the rule index makes a bare input reference a level
	# of its tree, which every postgres query (all carry statements) walked twice, at more
	# cost than this rule's one test
	input.command.postgres.statements != false # else denied as not classified (above)
	# object.get: the evaluator takes a reference out of the negation, so an undefined
	# input.command.postgres.has would fail this line instead of passing it
	not is_object(object.get(input.command.postgres, "has", false))
}

# Logical decoding (pg_logical_slot_get_changes on a test_decoding slot), pageinspect and
# pg_walinspect return the rows of every table, written by any session, as text or bytes
# of their own: an UPDATE's new tuple decodes as `password[text]:'hunter2-ada'` in a
# function's output column that lineage cannot trace to customers.password, and that no
# value detector recognises. A dba may call them (a slot is a dba's tool), but not outside
# pii-readers: nothing masks what they return. (Readers may call none: reader_functions.)
pg_denials contains sprintf("function %s returns the rows of the database's tables as it decodes them from WAL or pages, under no column a mask names: denied to everyone not in pii-readers", [f]) if {
	input.command.postgres.has.functions
	some s in input.command.postgres.statements
	some f in s.functions
	parts := split(lower(f), ".")
	data.portcullis.postgres.raw_row_functions[parts[count(parts) - 1]]
	not pii_reader
}

# The other rule of the set a query calling functions meets, next to the first for the rule
# index (decision.rego).
pg_denials contains sprintf("function %s reaches outside the database or runs SQL text", [f]) if {
	input.command.postgres.has.functions
	some s in input.command.postgres.statements
	some f in s.functions
	pg_dangerous_function(f)
}

# Listed by name or by prefix: one deny rule asks both, so every query enters one rule
# where it entered two (a rule entered costs the evaluator more than this call per function).
pg_dangerous_function(f) if data.portcullis.dangerous_functions[f]

pg_dangerous_function(f) if strings.any_prefix_match(f, data.portcullis.dangerous_function_prefixes)

# Attribute notation: `c.f` (and `(expr).f`, `schema.table.f`) is the column f of the row
# c, or, when c has no column f, the call f(c) on the whole row. Which one only the catalog
# knows; the classifier reports every such name (attribute_names) and lineage reads it as a
# column. `c.concat`, `c.row_to_json`, `c.json_agg` or `(c).to_jsonb` would give every
# column of the row, masked ones among them, under a name no mask knows (and answer
# conditions on them), and a function the database defines would run unseen by the
# readers' allow-list. Denied where the name is one such a function could have:
# postgres.row_functions (pg_catalog's, generated from pg_proc by
# pdp/sql/reader_functions.py) outside pii-readers, and the database's own (the proxy reads
# them at start-up: input.command.postgres.row_functions) for everyone but a privileged
# pii-reader, who may call any function. A column of that name is read unqualified.
pg_denials contains sprintf("%s after a dot may be %s() called on a whole row (attribute notation), which reads every column of the row: name the column without its table, or select the columns you need", [name, name]) if {
	input.command.postgres.has.attributes
	not pii_reader
	some s in input.command.postgres.statements
	some name in s.attribute_names
	data.portcullis.postgres.row_functions[name]
}

pg_denials contains sprintf("%s after a dot may be the database's function %s() called on a whole row (attribute notation), which the policy cannot judge: name the column without its table", [name, name]) if {
	input.command.postgres.has.attributes
	input.command.postgres.has.user_code
	not pg_unmasked_privileged
	some s in input.command.postgres.statements
	some name in s.attribute_names
	name in input.command.postgres.row_functions
}

pg_denials contains sprintf("SQL that cannot be parsed is denied: %s", [s.error]) if {
	input.command.postgres.types.unparseable
	some s in input.command.postgres.statements
	s.type == "unparseable"
}

# A statement prepared before the database's code changed (the proxy's catalogue facts were
# read again since: input.command.postgres.stale_prepared) was judged with the old facts,
# while EXECUTE runs its body as the server plans it now, a view it reads running a
# function made since: refused by name, for everyone (prepare it under a new name).
pg_denials contains sprintf("prepared statement %s was prepared before the database's code changed: prepare it again under a new name", [s.name]) if {
	input.command.postgres.types.execute
	some s in input.command.postgres.statements
	s.type == "execute"
	s.name in object.get(input.command.postgres, "stale_prepared", [])
}

pg_denials contains sprintf("SET %s is pinned for every session: the policy must read SQL as the server does", [upper(s.setting)]) if {
	input.command.postgres.types.set
	some s in input.command.postgres.statements
	s.type == "set"
	data.portcullis.postgres.lexing_settings[s.setting]
	not s.reset
}

pg_denials contains sprintf("set_config may not change %s: it is pinned for every session", [name]) if {
	input.command.postgres.has.settings
	some s in input.command.postgres.statements
	some name in s.settings
	data.portcullis.postgres.lexing_settings[name]
}

pg_denials contains "set_config with a setting name that is not a literal: what it changes cannot be judged" if {
	input.command.postgres.has.settings
	some s in input.command.postgres.statements
	s.dynamic_settings
}

# The classifier always says what a set_config call sets; an entry that does not is judged
# as the call whose name cannot be read.
pg_denials contains "set_config with a setting name that is not a literal: what it changes cannot be judged" if {
	input.command.postgres.has.settings
	some s in input.command.postgres.statements
	some "set_config" in s.functions
	not s.settings
}

pg_denials contains "COPY ... PROGRAM runs a program on the database server" if {
	input.command.postgres.types.copy
	some s in input.command.postgres.statements
	s.type == "copy"
	s.program
}

pg_denials contains "COPY to or from a server file reaches outside the database" if {
	input.command.postgres.types.copy
	some s in input.command.postgres.statements
	s.type == "copy"
	s.program == false
	s.stdio == false
}

# COPY ... TO under the masks (everyone not in pii-readers): the proxy's value detectors
# read each COPY row as the server wrote it, so the row must spell values as they are.
# DELIMITER, QUOTE and ESCAPE make the server escape or double those characters inside a
# value (a text-format DELIMITER ' ' writes `4111\ 1111`, a CSV QUOTE '1' `411111`) and
# ENCODING converts it: a card number or e-mail address would pass unrecognised. Allowed
# are the options that leave values as they are: FORMAT (binary is refused by the proxy
# under any mask), HEADER, NULL and FORCE_QUOTE. Option names only, never their values
# (which share a cached shape).
pg_denials contains sprintf("COPY option %s rewrites values, so the value detectors could not read the rows; use FORMAT, HEADER, NULL or FORCE_QUOTE only", [upper(o)]) if {
	input.command.postgres.types.copy
	some s in input.command.postgres.statements
	s.type == "copy"
	s.direction == "to"
	some o in object.get(s, "copy_options", [])
	not o in {"format", "header", "null", "force_quote"}
	not pii_reader
}

# Any statement no rule permits denies the whole query (e.g. `select 1; drop table x`).
deny_unindexed contains sprintf("no rule allows %v statement (%v) for %s", [type, tag, subject]) if {
	# a command without statements (every other kind) has none to deny: it ends here
	# without asking pg_allowed (with its privileged and pg_reads: three rule lookups)
	input.command.postgres.statements != false
	allowed := pg_allowed # once, not once per statement: each reference is a lookup
	# pg_allowed holds statements' indexes only: as many as the statements, none is left
	# (most queries end here, without a negation per statement)
	count(allowed) != count(input.command.postgres.statements)
	some i, s in input.command.postgres.statements
	not i in allowed
	not i in pg_approvable
	type := object.get(s, "type", "unknown")
	tag := object.get(s, "tag", "unknown")
}

# --- privileged groups (dba) -----------------------------------------------

# The statements allowed: the privileged's or the reader's, chosen by the session's standing
# (an equality the rule index reads, where asking `privileged` and `not privileged` were
# two lookups and a negation on every postgres command), or without one by `privileged`.
pg_allowed := pg_privileged_allowed if {
	input.standing.privileged == true
} else := pg_reader_allowed if {
	input.standing.privileged == false
} else := pg_privileged_allowed if {
	privileged
} else := pg_reader_allowed

pg_privileged_allowed contains i if {
	input.command.kind in {"postgres.query", "postgres.function_call"}
	some i, s in input.command.postgres.statements
	s.type != "unparseable"
}

# What even the privileged groups run only once approved. One rule asks `privileged` for
# all of them: everyone else's decisions do not look at their statements for these.
pg_approval contains entry if {
	privileged
	some entry in pg_privileged_approval
}

# What reaches past the database, or makes a way in that bypasses the gateway, needs
# approval for every privileged identity, pii-readers or not. The upstream credential is
# the server's superuser: a function in C (`AS '/lib/.../libc.so.6', 'system'`) or an
# untrusted language runs programs as the server's OS user; an extension or LOAD loads a
# library; a foreign server, foreign table (file_fdw's `program`), subscription or user
# mapping reaches files, programs and other hosts; a tablespace writes a directory; a
# login role with a password, a role's attributes or membership make a standing credential
# that never meets Portcullis; ALTER ROLE / DATABASE ... SET (session_preload_libraries)
# and event triggers run on everyone's sessions. Functions in SQL and PL/pgSQL, the
# server's trusted languages, need none (pg_trusted_languages). The tags are a literal in
# the rule (as postgres.rego's constant sets are: a rule reference is a lookup the evaluator
# makes again for every statement).
pg_trusted_languages := {"sql", "plpgsql"}

pg_privileged_approval contains [i, sprintf("%s reaches past the database or makes a way in that bypasses the gateway, and needs approval", [s.tag])] if {
	some i, s in input.command.postgres.statements
	s.tag in {
		"CreateExtensionStmt", "AlterExtensionStmt", "AlterExtensionContentsStmt", "LoadStmt",
		"CreateFdwStmt", "AlterFdwStmt", "CreateForeignServerStmt", "AlterForeignServerStmt",
		"CreateForeignTableStmt", "ImportForeignSchemaStmt", "CreateUserMappingStmt",
		"AlterUserMappingStmt", "CreateSubscriptionStmt", "AlterSubscriptionStmt",
		"CreateTableSpaceStmt", "AlterTableSpaceOptionsStmt", "CreateRoleStmt", "AlterRoleStmt",
		"AlterRoleSetStmt", "GrantRoleStmt", "AlterDatabaseSetStmt", "AlterDatabaseStmt",
		"CreateEventTrigStmt", "AlterEventTrigStmt", "CreateTransformStmt",
	}
}

# The system catalogs are the database's description of itself, and the upstream role (a
# superuser) may write them as tables: a masked dba's `INSERT INTO pg_db_role_setting
# VALUES (<the database's oid>, 0, '{lc_monetary=C}')` stored for every later session what
# ALTER DATABASE ... SET of it is denied, and UPDATEs of pg_authid, pg_attribute or pg_proc
# ran with no approval at all (test_pg_probe_p54): a role's password or superuser flag (a
# way in that never meets Portcullis), a sensitive column renamed out of its masks, a
# built-in function's body. DDL by other means, which no rule written for the DDL judges:
# a statement writing rows (INSERT, UPDATE, DELETE, MERGE, TRUNCATE, COPY FROM) with a
# relation of pg_catalog among its tables (an unqualified pg_ name counts: pg_catalog is
# searched first unless the search_path names it later), or one showing such a relation
# (relation_sources: a view over a catalog), is denied to everyone not in pii-readers and
# needs approval for pii-readers, as the statements above do. Every table of the
# statement, not only the one written: the safe mistake.
pg_catalog_writes contains [i, t] if {
	input.command.postgres.has.pg_names # a relation name holding pg_: most statements have none
	some i, s in input.command.postgres.statements
	pg_writes_table_rows(s)
	some t in s.tables
	pg_catalog_relation(t)
}

pg_catalog_writes contains [i, src] if {
	input.command.postgres.relation_sources
	some i, s in input.command.postgres.statements
	pg_writes_table_rows(s)
	some t in s.tables
	some v, shown in input.command.postgres.relation_sources
	view_named(v, lower(t))
	some src in shown
	pg_catalog_relation(src)
}

pg_writes_table_rows(s) if s.type in {"insert", "update", "delete", "merge", "truncate"}

pg_writes_table_rows(s) if {
	s.type == "copy"
	s.direction == "from"
}

pg_catalog_relation(t) if {
	parts := split(lower(t), ".")
	count(parts) == 1
	startswith(parts[0], "pg_")
}

pg_catalog_relation(t) if {
	parts := split(lower(t), ".")
	count(parts) > 1
	parts[count(parts) - 2] == "pg_catalog"
}

# (one rule per way pg_catalog_writes finds a catalog, each opening with its input flag, so
# the rule index passes over both for the statements that name none)
pg_denials contains pg_catalog_write_denial(t) if {
	input.command.postgres.has.pg_names
	some [_, t] in pg_catalog_writes
	not pii_reader
}

pg_denials contains pg_catalog_write_denial(t) if {
	input.command.postgres.relation_sources
	some [_, t] in pg_catalog_writes
	not pii_reader
}

pg_catalog_write_denial(t) := sprintf("the statement writes rows of the system catalog %s: DDL by other means (a stored setting, a role's password, a column's name, a function's body) that no rule for the DDL judges; denied to everyone not in pii-readers", [t])

pg_privileged_approval contains [i, sprintf("writing the system catalog %s reaches past the database or makes a way in that bypasses the gateway, and needs approval", [t])] if {
	some [i, t] in pg_catalog_writes
}

pg_privileged_approval contains [i, sprintf("a function in %s runs code on the database server outside its trusted languages, and needs approval", [s.language])] if {
	some i, s in input.command.postgres.statements
	s.tag == "CreateFunctionStmt"
	not s.language in pg_trusted_languages
}

# A function or procedure whose body is written as a string (AS '...' / AS $$...$$) is code
# the policy does not read: `LANGUAGE sql AS $$ COPY (SELECT 1) TO PROGRAM 'id' $$`, or a
# PL/pgSQL body calling pg_read_file or EXECUTE, would run what is denied to everyone once
# called. It needs approval, as an opaque DO block does; a body in SQL-standard form
# (RETURN ..., BEGIN ATOMIC ... END) is parsed with the statement and judged as any SQL.
pg_privileged_approval contains [i, "a function whose body is a string is code the policy cannot read, and needs approval (write it as RETURN ... or BEGIN ATOMIC ... END to have it judged)"] if {
	some i, s in input.command.postgres.statements
	s.tag == "CreateFunctionStmt"
	s.body_text
}

# postgres_user_code.rego's: a privileged identity outside pii-readers calling a function
# not known to have no side effects (its calls of the database's functions). Written here,
# after the rules of the set every privileged identity's query meets, for the rule index
# (decision.rego); a rule of the set, it is asked for privileged identities alone.
pg_privileged_approval contains [i, sprintf("function %s is not known to have no side effects (not in postgres.reader_functions or postgres.masked_admin_functions): what it keeps or sends is read past the masks, so calling it needs approval for everyone not in pii-readers", [f])] if {
	input.command.postgres.has.functions
	not pii_reader
	some i, s in input.command.postgres.statements
	some f in s.functions
	not data.portcullis.postgres.reader_functions[f]
	not data.portcullis.postgres.masked_admin_functions[f]
}

# SQL PREPARE keeps a statement for EXECUTE, which is decided as a read: a privileged
# identity's statement that needs approval, prepared once approved, ran again at every
# EXECUTE, past its approval's time and after the session changed what its names resolve
# to (PREPARE p AS DELETE FROM orders approved for scratch.orders, then SET search_path =
# public; EXECUTE p emptied public.orders). Run such a statement directly. (A reader's
# EXECUTE runs read-only at the server: its approved PREPARE writes nothing.)
pg_denials contains sprintf("a statement that needs approval is not prepared with PREPARE, since EXECUTE would run it again without one (%s): run it directly", [reason]) if {
	input.command.postgres.types.prepare
	privileged
	some s in input.command.postgres.statements
	s.type == "prepare"
	some [_, reason] in pg_approval
}

# One rule per type, each opening with its type: a query without one skips it.
pg_privileged_approval contains [i, "UPDATE without WHERE needs approval"] if {
	input.command.postgres.types.update
	some i, s in input.command.postgres.statements
	s.type == "update"
	s.has_where == false
}

pg_privileged_approval contains [i, "DELETE without WHERE needs approval"] if {
	input.command.postgres.types.delete
	some i, s in input.command.postgres.statements
	s.type == "delete"
	s.has_where == false
}

pg_privileged_approval contains [i, sprintf("DROP %s needs approval", [upper(s.object)])] if {
	input.command.postgres.types.drop
	some i, s in input.command.postgres.statements
	s.type == "drop"
	s.object in {"database", "schema"}
}

pg_privileged_approval contains [i, "TRUNCATE needs approval"] if {
	input.command.postgres.types.truncate
	some i, s in input.command.postgres.statements
	s.type == "truncate"
}

# ALTER SYSTEM writes the server's configuration, which reaches outside the database as
# nothing else here may (COPY to a file, pg_read_file and lo_export are denied to all):
# log_directory and log_filename with log_statement = 'all' and pg_reload_conf() write
# files of the statements' text wherever the server's OS user may (~/.ssh/authorized_keys),
# archive_command and restore_command run programs. Approval for every privileged identity.
pg_privileged_approval contains [i, "ALTER SYSTEM changes the server's configuration files (file writes, programs) and needs approval"] if {
	input.command.postgres.types.alter_system
	some i, s in input.command.postgres.statements
	s.type == "alter_system"
}

# A DO block whose SQL cannot all be seen (dynamic EXECUTE, another language) could run
# any of the statements above, so it is not taken on trust.
pg_privileged_approval contains [i, "DO block with dynamic or non-SQL code needs approval"] if {
	input.command.postgres.types.do
	some i, s in input.command.postgres.statements
	s.type == "do"
	s.opaque
}

# --- everyone else ---------------------------------------------------------

# The sets below (pg_reads, pg_writes, pg_reader_calls, and from them pg_reader_approval
# and pg_reader_denials) say what a statement is or does, for anyone; the rules that turn
# them into answers (pg_allowed, pg_approval, deny) apply them to everyone not privileged,
# each asking `privileged` once, so a privileged identity's decision does not evaluate
# them at all.

# Statements that only read, allowed once their functions, settings and tables pass the
# deny rules below.
pg_reads contains i if {
	some i, s in input.command.postgres.statements
	s.type in {
		"select", "show", "prepare", "execute", "deallocate",
		"declare", "fetch", "close", "discard", "listen", "unlisten",
	}
	not s.locking
}

# PREPARE TRANSACTION leaves a transaction (and its locks) behind the session, and
# COMMIT/ROLLBACK PREPARED settle anyone's: not reads. object.get, not `not s.action in
# {...}`: the evaluator takes s.action out of the negation, so a statement without an
# action would fail that line instead of passing it.
pg_reads contains i if {
	input.command.postgres.types.transaction
	some i, s in input.command.postgres.statements
	s.type == "transaction"
	not object.get(s, "action", "") in {"prepare", "commit_prepared", "rollback_prepared"}
	not s.locking
}

pg_reads contains i if {
	input.command.postgres.types.explain
	some i, s in input.command.postgres.statements
	s.type == "explain"
	s.analyze == false
}

pg_reads contains i if {
	input.command.postgres.types.copy
	some i, s in input.command.postgres.statements
	s.type == "copy"
	s.direction == "to"
	s.program == false
}

# Statements that change data or lock rows: approval for everyone but the privileged.
# One rule per type, each opening with its type: a query without one skips it.
pg_writes contains [i, "INSERT needs approval"] if {
	input.command.postgres.types.insert
	some i, s in input.command.postgres.statements
	s.type == "insert"
}

pg_writes contains [i, "UPDATE needs approval"] if {
	input.command.postgres.types.update
	some i, s in input.command.postgres.statements
	s.type == "update"
}

pg_writes contains [i, "DELETE needs approval"] if {
	input.command.postgres.types.delete
	some i, s in input.command.postgres.statements
	s.type == "delete"
}

pg_writes contains [i, "MERGE needs approval"] if {
	input.command.postgres.types.merge
	some i, s in input.command.postgres.statements
	s.type == "merge"
}

pg_writes contains [i, "COPY FROM needs approval"] if {
	input.command.postgres.types.copy
	some i, s in input.command.postgres.statements
	s.type == "copy"
	s.direction == "from"
	s.program == false
}

# FOR UPDATE/SHARE takes row locks, which block writers: a write for policy purposes.
# A plain EXPLAIN runs nothing, so it locks nothing.
pg_writes contains [i, "SELECT ... FOR UPDATE/SHARE locks rows and needs approval"] if {
	input.command.postgres.has.locking
	some i, s in input.command.postgres.statements
	s.locking
	s.type != "explain"
}

pg_reader_allowed contains i if {
	some i in pg_reads
}

pg_reader_allowed contains i if {
	input.command.postgres.types.set
	some i, s in input.command.postgres.statements
	s.type == "set"
	pg_reader_may_set(s)
}


pg_approval contains entry if {
	not privileged
	some entry in pg_reader_approval
}

pg_reader_approval contains entry if {
	some entry in pg_writes
}

pg_write_statements := {i | some [i, _] in pg_writes}

# A function a reader may not call denies a read; in a write it goes to the approver.
pg_reader_approval contains [i, reason] if {
	some [i, reason] in pg_reader_calls
	i in pg_write_statements
}

# Matched on the last component, so pg_catalog.pg_authid and "PG_AUTHID" count too; a
# name without a dot is its own last component, and is looked up without splitting it.
# Two rules, not a function of the name: a function call costs the evaluator more.
pg_reader_denials contains sprintf("%s holds secrets; only privileged groups may read it", [t]) if {
	some s in input.command.postgres.statements
	some t in s.tables
	data.portcullis.postgres.secret_catalogs[t]
}

pg_reader_denials contains sprintf("%s holds secrets; only privileged groups may read it", [t]) if {
	some s in input.command.postgres.statements
	some t in s.tables
	contains(t, ".")
	parts := split(t, ".")
	data.portcullis.postgres.secret_catalogs[parts[count(parts) - 1]]
}

pg_reader_denials contains reason if {
	some [i, reason] in pg_reader_calls
	not i in pg_write_statements
}

pg_reader_calls contains [i, sprintf("function %s is not one readers may call", [f])] if {
	input.command.postgres.has.functions
	some i, s in input.command.postgres.statements
	some f in s.functions
	not data.portcullis.postgres.reader_functions[f]
	f != "set_config"
	not pg_information_schema_helper(s, f)
}

pg_reader_calls contains [i, sprintf("function %s is not in pg_catalog; readers may call only functions there", [f])] if {
	input.command.postgres.has.qualified_names
	some i, s in input.command.postgres.statements
	some f in s.qualified_functions
	not pg_catalog_function(f)
	not pg_information_schema_call(f)
}

# information_schema's helpers that drivers call qualified (pgjdbc's getPrimaryKeys and
# getIndexInfo: information_schema._pg_expandarray(i.indkey)), in
# postgres.reader_information_schema_functions (pdp/sql/reader_functions.py says why each is
# harmless): only called with that schema (unqualified, the server looks the name up over
# the search path, where the database may have its own), and not in a database that
# defines a function of that name (input.command.postgres.user_functions: an overload of
# its own in information_schema may be the one the server picks). One the database changed
# since initdb is among its shadowed_functions, denied above.
pg_information_schema_helper(s, f) if {
	data.portcullis.postgres.reader_information_schema_functions[f]
	not f in object.get(s, "unqualified_functions", [])
	not f in object.get(input.command.postgres, "user_functions", [])
}

pg_information_schema_call(f) if {
	startswith(f, "information_schema.")
	name := substring(f, 19, -1)
	data.portcullis.postgres.reader_information_schema_functions[name]
	not name in object.get(input.command.postgres, "user_functions", [])
}

# A built-in name the database also defines outside pg_catalog (the proxy reads which at
# start-up: input.command.postgres.shadowed_functions) may not run the built-in: the
# server picks the best match by argument types over every schema on the search path, so
# public.upper(varchar) beats pg_catalog.upper(text) for a varchar argument.
pg_reader_calls contains [i, sprintf("function %s is also defined outside pg_catalog in this database, so the call may not run the built-in", [f])] if {
	input.command.postgres.has.user_code
	some i, s in input.command.postgres.statements
	some f in s.functions
	f in input.command.postgres.shadowed_functions
}

# A quoted name with capitals names another function than the lower-case one listed.
pg_reader_calls contains [i, sprintf("function %q is not one readers may call", [f])] if {
	input.command.postgres.has.qualified_names
	some i, s in input.command.postgres.statements
	some f in s.cased_functions
}

pg_unmasked_privileged if {
	privileged
	pii_reader
}

# "pg_catalog.name", not "pg_catalog.x.name" (a quoted schema name holding a dot).
pg_catalog_function(f) if {
	startswith(f, "pg_catalog.")
	not contains(substring(f, 11, -1), ".")
}

# A reader's denials (pg_reader_denials) are denials: decision.rego's deny says so (a rule
# every command meets, written there for the rule index).

# set_config is SET in a function call, and judged as SET is, in any statement: an
# approved write must not change the session's settings for what follows.
pg_reader_denials contains sprintf("set_config may not change %s for readers", [name]) if {
	input.command.postgres.has.settings
	some s in input.command.postgres.statements
	some name in s.settings
	not pg_reader_may_configure(name)
}

# set_config's value is not read: only a setting readers may give any value
pg_reader_may_configure(name) if {
	data.portcullis.postgres.reader_settings[name]
	not pg_value_checked_settings[name]
}

pg_reader_denials contains sprintf("SET %s is not a setting readers may change", [upper(s.setting)]) if {
	input.command.postgres.types.set
	some s in input.command.postgres.statements
	s.type == "set"
	not pg_reader_may_set(s)
}

pg_reader_denials contains sprintf("SET %s changes who the session acts as", [upper(s.setting)]) if {
	input.command.postgres.types.set
	some s in input.command.postgres.statements
	s.type == "set"
	s.setting in data.portcullis.postgres.protected_settings
}

# Reader sessions run read-only at the server (session.rego); this keeps them there.
pg_reader_denials contains sprintf("%s would make the transaction read-write; reader sessions stay read-only", [s.tag]) if {
	input.command.postgres.has.read_write
	some s in input.command.postgres.statements
	s.read_write
}

# A relation the database defines over a catalog shows that catalog's rows under its own
# name: CREATE VIEW st AS SELECT attname, histogram_bounds::text AS h FROM pg_stats let
# `SELECT attname FROM st WHERE h LIKE '%hunter2-a%'` ask about the sample values of a
# password column, and a view over pg_authid or pg_settings shows what the secret catalog
# holds. The proxy sends which relations each relation shows (relation_sources: a view's
# or materialized view's query, followed through the views it reads, as pg_depend and the
# rule's own tree name them; inheritance and partitions). Readers read a relation showing
# a secret catalog no more than the catalog itself (an allow-list of what they may read
# does not end at a name; pg_stat_activity aside: a view's column carrying its statement
# text is masked and questions about it refused, postgres_lineage.rego); everyone outside
# pii-readers, dba included, none showing the column statistics, large objects, TOAST tables or
# pg_file_settings, which they may not read by name either.
pg_shown_relations contains [t, src] if {
	sources := input.command.postgres.relation_sources
	some s in input.command.postgres.statements
	some t in s.tables
	some v, shown in sources
	view_named(v, lower(t))
	some src in shown
}

pg_reader_denials contains sprintf("%s shows the rows of %s, which holds secrets; only privileged groups may read it", [t, src]) if {
	input.command.postgres.relation_sources # read by the rule index: no lookup of the set without it
	some [t, src] in pg_shown_relations
	parts := split(lower(src), ".")
	name := parts[count(parts) - 1]
	data.portcullis.postgres.secret_catalogs[name]
	name != "pg_stat_activity"
}

# pg_settings: readers read the rows of the settings they may read (postgres.
# reader_readable_settings, what PostgreSQL shows a role without pg_read_all_settings),
# through a row filter of those names the PDP puts on every statement naming it
# (guards.rego), never the rows of the settings only superusers are shown (data_directory,
# primary_conninfo). A relation the database defines over it is read with no filter: denied
# to readers, as over a secret catalog (named here, whether or not secret_catalogs lists it).
pg_reader_denials contains sprintf("%s shows the rows of %s, which holds secrets (settings only superusers are shown); read pg_settings itself", [t, src]) if {
	input.command.postgres.relation_sources
	some [t, src] in pg_shown_relations
	pg_settings_relation(src)
}

# ...and of the readable rows, not where the file setting each was read from: sourcefile
# and sourceline, shown to superusers only (the upstream role may be one), name the
# configuration file's path (config_file, data_directory: settings readers may not read).
# Denied where the statement names pg_settings and reads either column (any relation's
# column of that name: the safe mistake), or pg_settings' rows whole (`*`, row_to_json(s)).
pg_reader_denials contains sprintf("%s: its columns sourcefile and sourceline (and so its rows whole) name the configuration files only superusers are shown; select the columns you need, but those", [t]) if {
	input.command.postgres.has.pg_names
	some s in input.command.postgres.statements
	some t in s.tables
	pg_settings_relation(t)
	pg_settings_file_read(s)
}

# The settings the database keeps for roles and databases (ALTER ROLE ... SET, ALTER
# DATABASE ... SET: pg_db_role_setting.setconfig, pg_roles.rolconfig, pg_user.useconfig)
# hold any setting a superuser stored, credentials of an application's own settings
# among them (app.api_key), which readers may not read as settings (current_setting reads
# only postgres.reader_readable_settings). Selected they come back masked whole (text
# others wrote, not a catalogue name: pdp/sql/lineage.py), but `SELECT count(*) FROM
# pg_db_role_setting WHERE array_to_string(setconfig, ',') LIKE '%hunter2%'` answered 1:
# any use of them in a condition, grouping or computation is denied to readers (by the
# columns' names, any relation's: the safe mistake).
pg_reader_denials contains sprintf("%s use of column %s, the settings the database keeps for roles and databases (which may hold credentials), answers questions about them: denied to readers", [p.use, p.column]) if {
	input.command.postgres.has.pg_names
	some s in input.command.postgres.statements
	some p in s.predicates
	p.column in {"setconfig", "rolconfig", "useconfig"}
}

pg_settings_relation(t) if {
	parts := split(lower(t), ".")
	parts[count(parts) - 1] == "pg_settings"
}

pg_settings_file_read(s) if {
	some o in s.outputs
	some c in o.columns
	c in {"sourcefile", "sourceline"}
}

pg_settings_file_read(s) if {
	some o in s.outputs
	o.kind in {"star", "whole_row"}
	some t in o.tables
	pg_settings_relation(t)
}

pg_settings_file_read(s) if {
	some p in s.predicates
	p.column in {"sourcefile", "sourceline", "*"}
}

pg_settings_file_read(s) if {
	some w in s.writes
	some c in w.columns
	c in {"sourcefile", "sourceline"}
}

pg_settings_file_read(s) if {
	some w in s.writes
	count(w.tables) > 0
}

pg_settings_file_read(s) if {
	some a in s.arguments
	some c in a.columns
	c in {"sourcefile", "sourceline"}
}

pg_denials contains sprintf("%s shows the rows of %s, which holds values of every column (sample values, large objects, TOAST chunks) or of every stored setting (pg_file_settings) under no column's name: denied to everyone not in pii-readers", [t, src]) if {
	input.command.postgres.relation_sources
	some [t, src] in pg_shown_relations
	pg_unmasked_store(src)
	not pii_reader
}

pg_unmasked_store(src) if {
	parts := split(lower(src), ".")
	parts[count(parts) - 1] in {"pg_statistic", "pg_stats", "pg_statistic_ext_data", "pg_stats_ext", "pg_stats_ext_exprs", "pg_largeobject", "pg_file_settings"}
}

pg_unmasked_store(src) if {
	some part in split(lower(src), ".")
	startswith(part, "pg_toast")
}

# Reading a setting: SHOW names it, current_setting reads its first argument. The upstream
# role may be a superuser, who is shown settings PostgreSQL hides from ordinary roles
# (primary_conninfo with its password, data_directory, ssl_passphrase_command, ...);
# readers read only those in postgres.reader_readable_settings. SHOW ALL lists them all.
pg_reader_denials contains sprintf("SHOW %s is not a setting readers may read", [upper(s.setting)]) if {
	input.command.postgres.types.show
	some s in input.command.postgres.statements
	s.type == "show"
	not data.portcullis.postgres.reader_readable_settings[s.setting]
}

pg_reader_denials contains sprintf("current_setting may not read %s for readers", [name]) if {
	input.command.postgres.has.settings
	some s in input.command.postgres.statements
	some name in s.read_settings
	not data.portcullis.postgres.reader_readable_settings[name]
}

pg_reader_denials contains "current_setting with a setting name that is not a literal: what it reads cannot be judged" if {
	input.command.postgres.has.settings
	some s in input.command.postgres.statements
	s.dynamic_read_settings
	not s.settings_rows
}

# ...but a SELECT whose every current_setting reads the setting of the pg_settings row it
# returns (psql's \dconfig: `pg_catalog.current_setting(s.name) FROM pg_catalog.pg_settings
# s`, lineage's settings_rows) reads only the settings a reader may read: its rows are
# those of reader_readable_settings (a row filter, guards.rego).

# The classifier always says what a current_setting call reads; an entry that does not is
# judged as the call whose name cannot be read.
pg_reader_denials contains "current_setting with a setting name that is not a literal: what it reads cannot be judged" if {
	input.command.postgres.has.settings
	some s in input.command.postgres.statements
	some "current_setting" in s.functions
	not s.read_settings
	not s.read_setting_parameters
	not s.settings_rows
}

# current_setting($n), the name bound as a value (SQLAlchemy's reflection sends
# `current_setting($1::VARCHAR)`; the classifier's read_setting_parameters: $n as it is or
# cast to text or varchar without a length). Which setting it reads is the value bound to
# parameter n, known only at Bind. A Parse of it (phase "parse") needs approval: the proxy
# then asks again at each Bind, with the values (input.command.postgres.parameters; the
# PDP makes no approval request at the parse phase), where the value is judged as a
# literal name is, and no person is asked: a readable name is allowed, any other denied.
# A value counts only as bound exactly: text as it is, or binary (asyncpg's) whose bytes
# are the text shown. Only a top-level SELECT: in PREPARE, DECLARE, EXPLAIN or a DO block
# `$n` is not the Bind's value, and nowhere else are values known: denied.
pg_reader_approval contains [i, sprintf("current_setting reads the setting bound to $%d: judged with its value at Bind", [n])] if {
	input.command.postgres.phase == "parse"
	input.command.postgres.has.settings
	some i, s in input.command.postgres.statements
	some n in s.read_setting_parameters
	pg_bound_statement(s)
}

pg_reader_denials contains sprintf("current_setting may not read %s for readers", [name]) if {
	input.command.postgres.has.settings
	some s in input.command.postgres.statements
	some n in s.read_setting_parameters
	name := pg_bound_setting(n)
	not data.portcullis.postgres.reader_readable_settings[name]
}

pg_reader_denials contains sprintf("current_setting reads the setting bound to $%d, whose value is not known here: what it reads cannot be judged", [n]) if {
	input.command.postgres.has.settings
	some s in input.command.postgres.statements
	some n in s.read_setting_parameters
	not pg_bound_setting(n)
	not input.command.postgres.phase == "parse"
}

pg_reader_denials contains sprintf("current_setting reads the setting bound to $%d in a %s statement, where $%d is not the value bound: what it reads cannot be judged", [n, s.type, n]) if {
	input.command.postgres.has.settings
	some s in input.command.postgres.statements
	some n in s.read_setting_parameters
	not pg_bound_statement(s)
}

pg_bound_statement(s) if {
	s.type == "select"
	not s.nested
	count(input.command.postgres.statements) == 1
}

# A masked dba reads the server's settings, but not an application's own (a name with a
# dot: app.api_key), which ALTER DATABASE or ALTER ROLE ... SET keeps for every session
# and pg_db_role_setting holds masked whole for it: `SELECT current_setting('app.api_key')`
# answered `hunter2-ada` unmasked, as no column's name said what it was (`SHOW
# app.api_key` and `... AS api_key` were masked by the name alone; test_pg_mask_probe_p27).
# Denied to everyone not in pii-readers, by a literal name, a name that is not one (the
# rows of pg_settings list no such setting: psql's \dconfig stays), or a bound one (judged
# at Bind, as readers' are). Readers are refused these by pg_reader_denials already.
pg_denials contains sprintf("current_setting may not read %s, an application's setting (which the database's configuration may hold a credential in): denied to everyone not in pii-readers", [name]) if {
	input.command.postgres.has.settings
	privileged
	some s in input.command.postgres.statements
	some name in s.read_settings
	contains(name, ".")
	not pii_reader
}

pg_denials contains sprintf("SHOW %s, an application's setting (which the database's configuration may hold a credential in): denied to everyone not in pii-readers", [upper(s.setting)]) if {
	input.command.postgres.types.show
	privileged
	some s in input.command.postgres.statements
	s.type == "show"
	contains(s.setting, ".")
	not pii_reader
}

pg_denials contains "current_setting with a setting name that is not a literal may read an application's setting (which the database's configuration may hold a credential in): denied to everyone not in pii-readers" if {
	input.command.postgres.has.settings
	privileged
	some s in input.command.postgres.statements
	pg_unnamed_setting_read(s)
	not s.settings_rows
	not pii_reader
}

pg_unnamed_setting_read(s) if s.dynamic_read_settings

pg_unnamed_setting_read(s) if {
	some "current_setting" in s.functions
	not s.read_settings
	not s.read_setting_parameters
}

pg_approval contains [i, sprintf("current_setting reads the setting bound to $%d: judged with its value at Bind", [n])] if {
	input.command.postgres.phase == "parse"
	input.command.postgres.has.settings
	privileged
	some i, s in input.command.postgres.statements
	some n in s.read_setting_parameters
	pg_bound_statement(s)
	not pii_reader
}

pg_denials contains sprintf("current_setting may not read %s, an application's setting (which the database's configuration may hold a credential in): denied to everyone not in pii-readers", [name]) if {
	input.command.postgres.has.settings
	privileged
	some s in input.command.postgres.statements
	some n in s.read_setting_parameters
	name := pg_bound_setting(n)
	contains(name, ".")
	not pii_reader
}

pg_denials contains sprintf("current_setting reads the setting bound to $%d, whose value is not known here: denied to everyone not in pii-readers", [n]) if {
	input.command.postgres.has.settings
	privileged
	some s in input.command.postgres.statements
	some n in s.read_setting_parameters
	not pg_bound_setting(n)
	not input.command.postgres.phase == "parse"
	not pii_reader
}

pg_denials contains sprintf("current_setting reads the setting bound to $%d in a %s statement, where $%d is not the value bound: denied to everyone not in pii-readers", [n, s.type, n]) if {
	input.command.postgres.has.settings
	privileged
	some s in input.command.postgres.statements
	some n in s.read_setting_parameters
	not pg_bound_statement(s)
	not pii_reader
}

# the setting name bound to $n: a text value as bound, or a binary one spelling the text
# shown byte for byte (portcullis/parameters.py: "NULL" is SQL NULL, which reads nothing)
pg_bound_setting(n) := lower(v) if {
	v := input.command.postgres.parameters[n - 1]
	is_string(v)
	v != "NULL"
} else := lower(v.shown) if {
	v := input.command.postgres.parameters[n - 1]
	v.format == "binary"
	not v.cut
	is_string(v.shown)
	v.bytes == sprintf("%d", [count(v.shown)])
	regex.match(`^[A-Za-z0-9_.]+$`, v.shown)
}

pg_reader_may_set(s) if {
	data.portcullis.postgres.reader_settings[s.setting]
	not pg_value_checked_settings[s.setting]
}

# Settings of postgres.reader_settings a reader may give only some values, by SET (or
# the start-up packet) where the value is read; RESET returns to the start-up value.
pg_value_checked_settings := {"bytea_output", "extra_float_digits", "lc_monetary", "lc_numeric"}

# extra_float_digits below 1 shows a double precision rounded to fewer digits than it
# holds (0: 15 significant), so a card number kept in one (4111111111111111, which the
# value detectors mask at 1, the default, where every digit shows) read
# `4.11111111111111e+15`, which no detector reads as a card, while those 15 digits and the
# card's check digit tell it whole. 1, 2 and 3 show every digit (as the server writes
# them: a sign, hexadecimal or a fraction is refused, the safe mistake).
pg_reader_may_set(s) if {
	s.setting == "extra_float_digits"
	s.value in {"1", "2", "3"}
}

# The settings that choose how a value is written bind everyone the masks apply to, a
# masked dba too (whose other SETs pg_reader_denials leaves alone): a dba outside
# pii-readers set extra_float_digits 0, lc_monetary ar_BH.UTF-8 or bytea_output escape and
# read `4.11111111111111e+15`, `411,111,111,111,111.100`, `4111\0001111\000...` unmasked.
# Readers are refused these by pg_reader_denials already (said once).
pg_denials contains sprintf("SET %s to this value writes values the value detectors cannot read: denied to everyone not in pii-readers", [upper(s.setting)]) if {
	input.command.postgres.types.set
	privileged
	some s in input.command.postgres.statements
	s.type == "set"
	s.setting in pg_value_checked_settings
	not pg_reader_may_set(s)
	not pii_reader
}

pg_denials contains sprintf("set_config may not change %s, which chooses how values are written: denied to everyone not in pii-readers", [name]) if {
	input.command.postgres.has.settings
	privileged
	some s in input.command.postgres.statements
	some name in s.settings
	name in pg_value_checked_settings
	not pii_reader
}

# A setting stored for the sessions that start later (ALTER ROLE / ALTER DATABASE ... SET,
# ALTER SYSTEM) reaches every one of them, masked sessions included: an approved
# `ALTER DATABASE db SET lc_monetary = 'ar_BH.UTF-8'` wrote a card kept as money
# `411,111,111,111,111.100` in every reader's session, and behind a transaction pooler the
# proxy starts no session with bytea_output and extra_float_digits of its own. Storing
# a setting that chooses how values are written is what SET of it is to everyone not in
# pii-readers: denied, not an approver's to allow (who reads "ALTER ROLE ... SET" as an
# administrator's chore, not as the masks lifted). Removing the stored value (RESET, SET
# ... TO DEFAULT) returns the server's own. By name only (the classifier's
# stored_setting): the verdict holds for every text of one shape. One rule per statement
# type the classifier gives these (grant, ddl, alter_system), each opening with it.
pg_denials contains pg_stored_writing_denial(s) if {
	input.command.postgres.types.grant
	some s in input.command.postgres.statements
	pg_stores_writing_setting(s)
}

pg_denials contains pg_stored_writing_denial(s) if {
	input.command.postgres.types.ddl
	some s in input.command.postgres.statements
	pg_stores_writing_setting(s)
}

pg_denials contains pg_stored_writing_denial(s) if {
	input.command.postgres.types.alter_system
	some s in input.command.postgres.statements
	pg_stores_writing_setting(s)
}

pg_stores_writing_setting(s) if {
	s.stored_setting in pg_value_checked_settings
	not s.stored_reset
	not pii_reader
}

pg_stored_writing_denial(s) := sprintf("%s stores %s for the sessions that start later, a setting that chooses how values are written where the value detectors read them: denied to everyone not in pii-readers", [s.tag, upper(s.stored_setting)])

# lc_monetary chooses how money is written: its separator, its symbol, and how many of
# the stored units are fraction digits (the server reads the count from the locale at
# output, not at storage). Under a locale of three (ar_BH.UTF-8) a card number kept as
# money (4111111111111111, stored as 411111111111111100 cents) read `411,111,111,111,111.100`
# as m::text, which no detector reads as a card, while the card is its first 16 digits;
# and where the database writes money with none (ja_JP.UTF-8: stored in yen), C read it
# `$41,111,111,111,111.11`. No locale is safe to choose without knowing the one the
# values were stored under: readers only RESET it, to the database's own.
# lc_numeric is to_char's separator and decimal point (never a count of digits): only the
# locales writing groups of three joined by "," and a "." (as the server does at C) are a
# reader's to choose, the names as the server knows them (a name it does not know is an
# error, the safe mistake). The empty name, the server's own environment, is not one.
pg_reader_locales := {"C", "POSIX", "C.UTF-8", "C.utf8", "en_US.UTF-8", "en_US.utf8"}

pg_reader_may_set(s) if {
	s.setting == "lc_numeric"
	s.value in pg_reader_locales
}

# bytea_output 'escape' writes a byte that is no printable ASCII as a backslash and three
# octal digits, which a bytea's text cast keeps as text: b::text of the bytes
# `4111<NUL>1111<NUL>...` read `4111\0001111\000...`, digits glued to the card's, which
# no detector reads as a card (the proxy reads a bytea column's escape form, but text is
# text), and a bytea[] column's literal doubles the backslash. 'hex', the default, is read
# as the bytes it spells wherever it shows.
pg_reader_may_set(s) if {
	s.setting == "bytea_output"
	s.value == "hex"
}

pg_reader_may_set(s) if {
	s.setting in pg_value_checked_settings
	s.reset
}

pg_reader_may_set(s) if {
	s.setting == "all"
	s.reset
}

# RESET of a pinned setting returns it to the value the proxy pinned at start-up.
pg_reader_may_set(s) if {
	s.reset
	data.portcullis.postgres.lexing_settings[s.setting]
}

# search_path: pg_catalog first, and only schemas of postgres.reader_search_path. Another
# schema in the path resolves an unqualified name the policy (and an approver) read as
# the usual table to another schema's table of that name.
pg_reader_may_set(s) if {
	s.setting == "search_path"
	s.pg_catalog_first
	every schema in s.schemas {
		data.portcullis.postgres.reader_search_path[schema]
	}
}

pg_reader_may_set(s) if {
	s.setting in {"transaction", "session characteristics", "transaction_read_only", "default_transaction_read_only"}
	not s.read_write
}

# The session's bounds: a statement's run and a transaction's idle wait (an open
# transaction holds its snapshot and locks on the database while the client says
# nothing). The proxy pins both (session.rego's statement_timeout; the idle wait alike,
# startup.session_pins); a reader may only shorten them, by SET (set_config's value is not
# read: refused).
pg_bounded_settings := {"statement_timeout", "idle_in_transaction_session_timeout"}

pg_reader_may_set(s) if {
	s.setting in pg_bounded_settings
	s.reset
}

pg_reader_may_set(s) if {
	s.setting in pg_bounded_settings
	ms := pg_timeout_ms(s.value)
	ms >= 1
	ms <= data.portcullis.postgres.reader_statement_timeout_ms
}

# A statement_timeout as the server reads it: whole digits and an optional unit (no unit
# is milliseconds). Fractions (which the server may round to 0, no timeout), microseconds
# and hexadecimal are left undefined, so not allowed.
pg_timeout_ms(value) := ms if {
	[[_, digits, unit]] := regex.find_all_string_submatch_n(`^([0-9]{1,9})\s*(ms|s|min|h|d)?$`, trim_space(value), 1)
	ms := to_number(digits) * {"": 1, "ms": 1, "s": 1000, "min": 60000, "h": 3600000, "d": 86400000}[unit]
}

# Settings a client asks for in its start-up packet (the proxy unpacks `options` into
# them, and refuses the lexing ones itself) are judged as SET is: a reader starts with
# only what it could SET. The read-only settings are the proxy's to pin, never a reader's.
# A rule of deny itself, not of pg_denials: it opens with the command kind, which deny's
# rule index reads for every rule of its own (in pg_denials it was a test more for every
# postgres command's lookup of the set).
deny contains sprintf("start-up parameter %s is not a setting readers may choose", [name]) if {
	input.command.kind == "session.open"
	some name, value in object.get(input.session, ["attributes", "settings"], {})
	not privileged
	not pg_reader_may_set(pg_startup_setting(name, value))
}

# and the settings choosing how values are written, for a masked dba as for a reader
deny contains sprintf("start-up parameter %s writes values the value detectors cannot read: denied to everyone not in pii-readers", [name]) if {
	input.command.kind == "session.open"
	some name, value in object.get(input.session, ["attributes", "settings"], {})
	privileged
	not pii_reader
	lower(name) in pg_value_checked_settings
	not pg_reader_may_set(pg_startup_setting(name, value))
}

pg_startup_setting(name, value) := {
	"type": "set",
	"setting": lower(name),
	"value": value,
	"reset": false,
	"read_write": true,
	"pg_catalog_first": pg_catalog_listed_first(value),
	"schemas": pg_listed_schemas(value),
}

# The schemas of a search_path value as the server splits it: a quoted name exactly (""
# for "), an unquoted one folded to lower case. A quoted name holding a comma is cut in
# two here, and neither piece is a listed schema: refused, the safe mistake.
pg_listed_schemas(value) := [pg_listed_schema(trim_space(part)) | some part in split(value, ",")]

pg_listed_schema(part) := replace(substring(part, 1, count(part) - 2), `""`, `"`) if {
	count(part) >= 2
	startswith(part, `"`)
	endswith(part, `"`)
} else := lower(part)

# search_path as the server reads it: pg_catalog searched first unless listed later.
pg_catalog_listed_first(value) := true if {
	names := [lower(trim(trim_space(part), `"`)) | some part in split(value, ",")]
	not "pg_catalog" in names
} else := first if {
	names := [lower(trim(trim_space(part), `"`)) | some part in split(value, ",")]
	first := names[0] == "pg_catalog"
}

# --- into the common sets --------------------------------------------------

pg_approvable := {i | some [i, _] in pg_approval}

# The common sets guard on the kind first. The evaluator's rule index (OPA ast/index.go)
# takes only `input.x == <scalar>` (and glob.match, and a bare input reference): a rule
# opening with an equality is skipped for other kinds without being evaluated; one opening
# with membership in a literal set (`in {...}`) is evaluated and fails at that line, one
# cheap test.
# A query whose every statement is allowed (count(pg_allowed)) is allowed by decision.rego's
# allow rule, and one whose statement needs approval needs it by decision.rego's
# needs_approval rule (some reason of pg_approval), both written there to come first among
# their sets' rules for the rule index.

# Sensitive columns by name and the detectors (over text answers of every kind that returns
# any) are masked for everyone not in pii-readers: decision.rego's command_masks.

# --- reuse by shape --------------------------------------------------------

# Lineage reads a constant key, path or jsonpath as a column's name (postgres_lineage.rego:
# `profile->>'password'` is masked and questioned as password is, `profile->>'status'` as
# status), so the answer depends on a literal's value, which a statement's shape ignores: a
# reader's `SELECT profile->'status' FROM c`, allowed unmasked and reused for its shape,
# answered `SELECT profile->'password' FROM c` with the password in clear. The classifier
# flags every statement of such a text (`literal_keys`, found by where the constant stands,
# so every text of one shape alike); decision.rego offers no reuse by shape for it (its first
# pg_uncached rule, there for the rule index: it is the rule of the set every query meets).
