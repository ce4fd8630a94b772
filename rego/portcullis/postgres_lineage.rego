# Sensitive columns by lineage (DESIGN.md "default semantics", issue 21), for everyone not
# in a pii_reader group, dba included.
#
# The classifier (pdp/sql/lineage.py) gives each SELECT-bearing statement (SELECT, INSERT/
# UPDATE/DELETE ... RETURNING, and the query of DECLARE, PREPARE, EXPLAIN and COPY ... TO):
#
#   outputs     [{"name", "kind", "columns", "tables"}], kind one of
#                 plain       a column itself: the proxy masks it by its real table column
#                             ({"field": ...} rules below, through aliases, views and CTEs)
#                 expression  computed from columns (a function, operator, cast, CASE,
#                             a set operation's output, a scalar sub-query)
#                 aggregate   an aggregate or window function over columns
#                 whole_row   a whole row as a value (`select c from customers c`,
#                             row_to_json(c), to_jsonb(t.*), json_agg(c), ROW(c.*))
#                 star        `*` over a table: plain columns, left to the proxy
#               columns: the table columns (last name component, lower case) it derives
#               from; tables: relations any of whose columns it may carry; keeps (computed
#               outputs only): true when no text of those columns was changed on the way.
#   exact       (a SELECT) true when each output is one column of its result, in order:
#               no `*`, `t.*` or `(x).*` that the server expands.
#   predicates  [{"column", "use"}] for columns in WHERE, JOIN ... ON/USING, HAVING,
#               ORDER BY, GROUP BY, DISTINCT ON, window and aggregate FILTER/ORDER BY
#               clauses; use: equality (the column itself compared with =, <>, IN, IS
#               [NOT] DISTINCT FROM, IS [NOT] NULL to a value or another column), pattern
#               (LIKE, ILIKE, SIMILAR TO, ~ and friends), range (<, >, <=, >=, BETWEEN),
#               order, group, join (column = column in a join), other (anything else:
#               md5(email) = '...'), partial (the value goes into a computation that can
#               fail for some values — arithmetic, a cast that parses text, a function not
#               known to be total, or one growing with it past the 1 GB every value
#               is held to — so whether it failed answers a question:
#               1/(ascii(email) - 97)). A set operation (but UNION ALL) and a FULL
#               JOIN's condition compare by sorting: order. Column "*" is a whole row.
#               keyed: true when the
#               column was met only through a constant key or path taken out of it
#               (profile->>'status'); an output's keyed lists such columns.
#
# The shipped choices: an expression or aggregate over a sensitive column, or one that may
# change the text of any column (the value detectors read stored text only), is masked as a
# whole value ({"derived": true}: the proxy redacts every result column that is not a
# stored table column, or only those at the positions the rule names: pg_derived_rule); a
# whole row (and so any JSON or XML built from one) is denied, since the policy cannot
# know which columns a row holds; sensitive columns in predicates
# may be compared for equality only when data.portcullis.oracle.equality is true, grouped
# and joined on, and nothing else. Statements a DO block runs return nothing to the
# client except through notices, errors and settings, which its code writes as it likes:
# any column they read is denied.
#
# Lineage holds names only, never literal values, so these rules keep cache_key "shape".
package portcullis

# A column is sensitive when data.portcullis.sensitive_columns names it, or when it is a
# view column that carries a sensitive column under another name (`phone AS contact`,
# `upper(email) AS shout`; "*" when the proxy could not tell what it carries): the proxy
# reads the database's views when a session starts (input.command.postgres.view_columns:
# name → the columns it carries). Names only, like sensitive_columns: a `contact` of
# another table is judged alike (the safe mistake). A function, not a set of every
# sensitive name: each column lineage meets is one lookup, and nothing is built for a
# query that meets none.
pg_sensitive_column(column) if column in data.portcullis.sensitive_columns

pg_sensitive_column(column) if {
	some carried in input.command.postgres.view_columns[column]
	pg_sensitive_carried(carried)
}

pg_sensitive_carried(column) if column in data.portcullis.sensitive_columns

pg_sensitive_carried("*")

# Outputs that reach the client: not a plan (EXPLAIN), not a DO block's inner statements.
# A test of the statement, not a set of its outputs: a set would copy (and hash) every
# output object on every decision before any rule looked at one.
pg_reaches_client(s) if {
	not s.nested
	s.type != "explain"
}

pg_output_label(o) := sprintf("output %s", [o.name]) if {
	not o.name in {"", "?column?"}
} else := "an unnamed output"

# Each opens with the flag or type every pg_derived_reasons rule opens with (has.computed,
# types.fetch, types.execute), input references the evaluator's rule index reads: a query
# with none of them (most: a plain SELECT, a write) and every other kind of command skip
# them without looking up pg_derived_reasons (a postgres command without `has` or `types`
# is denied, postgres.rego). A pg_derived_reasons rule opening with anything else needs
# its own rule here and below.
mask_rules contains pg_derived_rule if {
	input.command.postgres.has.computed
	count(pg_derived_reasons) > 0
}

mask_rules contains pg_derived_rule if {
	input.command.postgres.types.fetch
	count(pg_derived_reasons) > 0
}

mask_rules contains pg_derived_rule if {
	input.command.postgres.types.execute
	count(pg_derived_reasons) > 0
}

# The derived rule names the outputs it masks when the command is one SELECT whose outputs
# are each one result column, in order (lineage's `exact`: no `*` the server expands): the
# proxy then masks only the computed columns at those positions of a result of that many
# columns, so `count(*)` or `sum(total)` beside `upper(status)` comes back as it is. Every
# output is named but a computed one no reason below names (a plain output the server
# computes, json_to_record's x, stays masked as before). Any other command (several
# statements, FETCH, EXECUTE, a `*`), a proxy that reads no positions, or a result of
# another width: every computed column is masked.
pg_derived_rule := {"derived": true, "strategy": "redact", "positions": positions, "outputs": count(s.outputs)} if {
	[s] := input.command.postgres.statements
	s.type == "select"
	s.exact
	count(s.outputs) > 0
	positions := [i | some i, o in s.outputs; not pg_output_cleared(o)]
} else := {"derived": true, "strategy": "redact"}

# A computed output that none of the three output reasons below names (keep them alike).
pg_output_cleared(o) if {
	o.kind in {"expression", "aggregate"}
	not pg_output_masked(o)
}

pg_output_masked(o) if {
	some column in o.columns
	pg_sensitive_column(column)
}

pg_output_masked(o) if count(o.tables) > 0

pg_output_masked(o) if {
	some column in o.columns
	pg_output_document(o, column)
}

pg_output_masked(o) if {
	count(o.columns) > 0
	not o.keeps
}

pg_output_masked(o) if {
	some column in o.arithmetic
	pg_wide_number(column)
}

mask_reasons contains reason if {
	input.command.postgres.has.computed
	some reason in pg_derived_reasons
}

mask_reasons contains reason if {
	input.command.postgres.types.fetch
	some reason in pg_derived_reasons
}

mask_reasons contains reason if {
	input.command.postgres.types.execute
	some reason in pg_derived_reasons
}

# The computed outputs (expression or aggregate) that reach the client, collected in one
# pass over the statements for the two rules below (most queries have none).
pg_computed_outputs := [o |
	some s in input.command.postgres.statements
	not s.nested # pg_reaches_client(s), written out: a function call costs more
	s.type != "explain"
	some o in s.outputs
	o.kind in {"expression", "aggregate"}
]

pg_derived_reasons contains sprintf("%s (%s) derives from sensitive column %s: masked whole", [pg_output_label(o), o.kind, column]) if {
	input.command.postgres.has.computed
	some o in pg_computed_outputs
	some column in o.columns
	pg_sensitive_column(column)
	not pii_reader
}

pg_derived_reasons contains sprintf("%s is computed from columns of %s, which may be sensitive: masked whole", [pg_output_label(o), concat(", ", o.tables)]) if {
	input.command.postgres.has.computed
	some o in pg_computed_outputs
	count(o.tables) > 0
	not pii_reader
}

# A JSON or XML document holds values under names the masks cover (a key `password`), which
# the proxy masks in the document it sends, also as text or as a set operation's output
# (`keeps`: the document as it is). An aggregate over the whole document answers about them
# as one over a sensitive column does (count(DISTINCT profile): whether the passwords of
# two otherwise equal documents differ); one that changes its text (md5(profile::text)) is
# masked whole by the rule after this one. The proxy lists such columns (json, jsonb, xml,
# arrays and domains of them) in view_columns as carrying "{}" (proxies/postgres/columns.py
# DOCUMENT); a column lineage met only through a constant key or path (profile->>'status':
# the output's `keyed`) is not used whole.
pg_derived_reasons contains sprintf("%s (aggregate) is computed from the whole of document column %s, whose keys the masks cover: masked whole", [pg_output_label(o), column]) if {
	input.command.postgres.has.computed
	some o in pg_computed_outputs
	some column in o.columns
	pg_output_document(o, column)
	not pii_reader
}

pg_output_document(o, column) if {
	o.kind == "aggregate"
	pg_whole_document(o, column)
}

pg_whole_document(o, column) if {
	"{}" in input.command.postgres.view_columns[column]
	not column in object.get(o, "keyed", [])
}

# Any other column may hold free text the value detectors mask inside it (a note with a
# card number in it): they read a stored column's text as it is, and cannot be trusted to
# recognise what an expression made of it (translate(note, '0123456789', 'abcdefghij'),
# note::bytea, reverse(note), encode(convert_to(note, 'UTF8'), 'base64'), a delimiter
# appended by string_agg). So a computed output over any column is masked whole unless the
# classifier says it keeps its columns' values as they are ("keeps": only COALESCE,
# GREATEST/LEAST, min/max, count, sum/avg, lag/lead and friends, arithmetic, uncut casts
# to text and COLLATE between the columns and the output; an allow-list, pdp/sql/lineage.py).
pg_derived_reasons contains sprintf("%s (%s) is computed from column(s) %s in a way that may change their text, which the value detectors then cannot read: masked whole", [pg_output_label(o), o.kind, concat(", ", o.columns)]) if {
	input.command.postgres.has.computed
	some o in pg_computed_outputs
	count(o.columns) > 0
	not o.keeps
	not pii_reader
}

# A card number kept in a number column (bigint, unconstrained numeric, double precision,
# money: one the policy does not list as sensitive) is masked by the value detectors when
# selected as it is, which read such numbers as cards; arithmetic carries it past them
# (`num - 1`, `num / 100000000` and `num % 100000000`, sum() over it and a constant). So an
# output that reaches such a column through arithmetic or sum/avg (lineage's
# "arithmetic") is masked whole, as one that changes free text is. The proxy lists the
# columns of a type that can hold 13 or more digits (but identity and nextval() columns,
# whose values the database makes) in view_columns as carrying "0" (proxies/postgres/
# columns.py NUMBER); the team lists the names holding no such number (counts, prices in
# cents: postgres.plain_number_columns). count(*), sum(total) over a numeric(10,2), int4
# arithmetic and max(id) + 1 over a bigserial come back as they are.
pg_derived_reasons contains sprintf("%s (%s) is computed by arithmetic from number column %s, which may hold a card number the value detectors read only as it is stored: masked whole (list the column in postgres.plain_number_columns if it holds none)", [pg_output_label(o), o.kind, column]) if {
	input.command.postgres.has.computed
	some o in pg_computed_outputs
	some column in o.arithmetic
	pg_wide_number(column)
	not pii_reader
}

pg_wide_number(column) if {
	"0" in input.command.postgres.view_columns[column]
	not data.portcullis.postgres.plain_number_columns[column]
}

# FETCH from a cursor and EXECUTE of a prepared statement return rows whose lineage was
# judged when the cursor was declared or the statement prepared, and is not in this text:
# every computed column of their rows is masked (plain table columns still by name). One
# rule per type, each opening with its type: a query without one skips it (a statement
# whose type the summary leaves out is denied, postgres.rego, and a denial carries no mask).
# But an EXECUTE the classifier says runs a PREPARE of this same text (`prepared_here`:
# `PREPARE p AS SELECT ...; EXECUTE p`, constant parameters, only PREPAREs between them)
# returns that query's rows, judged here with the rest of the text: its outputs' reasons
# are this command's (an EXECUTE of a body prepared before, in psql's one -c string too,
# gave NULL for count(*) and 1 + 1). So does a FETCH the classifier says reads the cursor
# a DECLARE of this text made (`declared_here`: `BEGIN; DECLARE c CURSOR FOR ...; FETCH c`).
pg_derived_reasons contains "FETCH returns rows of a cursor or prepared statement: their computed columns are masked whole" if {
	input.command.postgres.types.fetch
	some s in input.command.postgres.statements
	s.type == "fetch"
	not s.nested
	not s.declared_here
	not pii_reader
}

pg_derived_reasons contains "EXECUTE returns rows of a cursor or prepared statement: their computed columns are masked whole" if {
	input.command.postgres.types.execute
	some s in input.command.postgres.statements
	s.type == "execute"
	not s.nested
	not s.prepared_here
	not pii_reader
}

# These three open the set, as the rules every query calling a function meets (decision.rego
# says why). The functions under pg_stat_activity and pg_stat_statements (below: their query
# column is other sessions' statement text) return that text with nothing to mask it by: a
# function's output column is no table's (SELECT query FROM pg_stat_get_activity(NULL),
# pg_stat_get_backend_activity(b) gave a masked dba a pii-reader's statement with its
# password literal, the value detectors catching only the card number), and a condition on
# a function's result names no column (WHERE pg_stat_get_backend_activity(b) LIKE ...).
# Outside pii-readers they are not called: pg_stat_activity gives the same rows, its query
# masked. (Readers may call neither: postgres.reader_functions leaves them out.)
pg_lineage_denials contains sprintf("function %s returns other sessions' statement text, which holds the values their statements name, with no column to mask it by: read pg_stat_activity (its query column is masked); denied to everyone not in pii-readers", [f]) if {
	input.command.postgres.has.functions
	some s in input.command.postgres.statements
	some f in s.functions
	parts := split(lower(f), ".")
	parts[count(parts) - 1] in {"pg_stat_get_activity", "pg_stat_get_backend_activity", "pg_stat_statements"}
	not pii_reader
}

pg_lineage_denials contains sprintf("function %s reads a large object's contents, bytes no mask or value detector reads: denied to everyone not in pii-readers", [f]) if {
	input.command.postgres.has.functions
	some s in input.command.postgres.statements
	some f in s.functions
	parts := split(lower(f), ".")
	parts[count(parts) - 1] in {"lo_get", "loread"}
	not pii_reader
}

# Third of the set, after the two above: a query calling functions meets these three, which
# come first among the set's rules for the rule index (decision.rego). A function may keep
# what it is given where no mask reads it: setval's value is the sequence's last_value,
# an advisory lock's key is in pg_locks, the name given to pg_replication_origin_create is
# a row of pg_replication_origin, a function of the database's may INSERT it. A value a
# query changed on the way (translate(note, '0123456789', 'abcdefghij'), ascii(substr(note,
# 6, 1))) then comes back past the value
# detectors, which read stored text only. The classifier gives such values as arguments
# (pdp/sql/lineage.py: {function, columns, tables}, for a value whole rows reach or
# columns reach changed); only the functions readers may call (postgres.reader_functions:
# no side effects, generated from pg_proc) are given them outside pii-readers, dba
# included. A column as it is (pg_terminate_backend(pid)) is not an argument here:
# wherever it is kept it reads as the stored text the detectors know, and a sensitive
# column going into any function not known never to fail is denied already (partial).
pg_lineage_denials contains sprintf("function %s may keep what it is given where no mask reads it, and is given a value computed from %s that the value detectors could not recognise: denied to everyone not in pii-readers", [a.function, pg_argument_origin(a)]) if {
	input.command.postgres.has.functions
	not pii_reader
	some s in input.command.postgres.statements
	some a in s.arguments
	not data.portcullis.postgres.reader_functions[a.function]
}

# A cast the database made with a function (input.command.postgres.user_casts, the proxy's
# start-up facts) runs wherever its types meet, named nowhere in the statement: with CREATE
# CAST (integer AS text) WITH FUNCTION public.f(integer), `SELECT 1::text` returns what f
# reads. Until the team lists it in postgres.reviewed_casts, every statement of a privileged
# identity outside pii-readers is denied, as a reader's is (postgres_user_code.rego).
pg_lineage_denials contains sprintf("this database defines the cast %s outside pg_catalog; a statement may run it without naming it, and what its function returns cannot be followed to the columns it reads (list it in postgres.reviewed_casts once reviewed)", [c]) if {
	input.command.postgres.has.user_code
	some c in input.command.postgres.user_casts
	not data.portcullis.postgres.reviewed_casts[c]
	privileged
	not pii_reader
}

pg_lineage_denials contains sprintf("%s is a whole row of %s: whole-row values and the JSON/XML built from them are denied to everyone not in pii-readers, since a row may hold sensitive columns (the shipped policy's choice); select the columns you need", [pg_output_label(o), concat(", ", o.tables)]) if {
	input.command.postgres.has.whole_row
	some s in input.command.postgres.statements
	some o in s.outputs
	o.kind == "whole_row"
	pg_reaches_client(s)
	not pii_reader
}

# What a statement stores is read later as the table column it lands in, by that column's
# name and the value detectors only: a value that carries a sensitive column under another
# name (INSERT INTO audit_log(what) SELECT password ..., CREATE TABLE t AS SELECT email AS
# x ..., UPDATE ... SET name = password), a whole row or `*` of a table (columns unknown),
# or text an expression changed (SET name = translate(note, ...)) would be read unmasked
# by anyone the masks cover, dba included. The classifier gives such values as writes
# (pdp/sql/lineage.py), like outputs; pii-readers may store them. Each rule opens with the
# query flag has.writes (pdp/domain/policy_input.py: some statement has writes), so a query
# storing nothing skips the three.
pg_lineage_denials contains sprintf("the statement stores values of sensitive column %s where they would be read without its mask: denied to everyone not in pii-readers", [column]) if {
	input.command.postgres.has.writes
	some s in input.command.postgres.statements
	some w in s.writes
	some column in w.columns
	pg_sensitive_column(column)
	not pii_reader
}

# ...and a whole document (json, jsonb, xml: "{}" in view_columns) stored elsewhere is no
# longer known as one where it lands (`CREATE TEMP TABLE t AS SELECT profile::text AS x`,
# then `WHERE x LIKE '%"password": "h%'`); its key masks still apply, its questions not.
pg_lineage_denials contains sprintf("the statement stores the whole of document column %s, whose keys the masks cover, where questions about it would not be known as questions about them: denied to everyone not in pii-readers", [column]) if {
	input.command.postgres.has.writes
	some s in input.command.postgres.statements
	some w in s.writes
	some column in w.columns
	pg_whole_document(w, column)
	not pii_reader
}

pg_lineage_denials contains sprintf("the statement stores whole rows or all columns of %s, which may hold sensitive columns, where they would be read without their masks: denied to everyone not in pii-readers; name the columns", [concat(", ", w.tables)]) if {
	input.command.postgres.has.writes
	some s in input.command.postgres.statements
	some w in s.writes
	count(w.tables) > 0
	not pii_reader
}

pg_lineage_denials contains sprintf("the statement stores text computed from column(s) %s in a way that may change it, which the value detectors would then not recognise when it is read: denied to everyone not in pii-readers", [concat(", ", w.columns)]) if {
	input.command.postgres.has.writes
	some s in input.command.postgres.statements
	some w in s.writes
	w.kind in {"expression", "aggregate"}
	count(w.columns) > 0
	not w.keeps
	not pii_reader
}

# A number computed from a wide number column, stored, is denied as changed text is (the
# stores rules above): read back from where it lands, it is a number like any other
# (INSERT INTO t(x) SELECT num - 1). After the function rule, so that a query calling
# functions meets that one within the first places of the set (test_pdp_perf_rule_positions).
pg_lineage_denials contains sprintf("the statement stores a number computed by arithmetic from number column %s, which may hold a card number the value detectors would then not recognise when it is read: denied to everyone not in pii-readers (list the column in postgres.plain_number_columns if it holds none)", [column]) if {
	input.command.postgres.has.writes
	some s in input.command.postgres.statements
	some w in s.writes
	some column in w.arithmetic
	pg_wide_number(column)
	not pii_reader
}

pg_argument_origin(a) := sprintf("column(s) %s", [concat(", ", a.columns)]) if {
	count(a.columns) > 0
} else := sprintf("whole rows of %s", [concat(", ", a.tables)])

# A function the database defines (input.command.postgres.user_functions, read by the
# proxy at start-up: every function made after initdb, an extension's non-volatile ones
# left out) may return what it reads from any table: `SELECT customer_password(1)`. Called
# with its schema (public.f()) lineage knows it is not a built-in and its result is masked
# whole (derived from every table, "*"), its use in a condition denied; called without
# one (or as pg_catalog's), lineage reads it as pg_catalog's function of that name, whose
# result derives from its arguments alone, and it came back unmasked. Denied to everyone
# not in pii-readers: the schema-qualified call is the way.
pg_lineage_denials contains sprintf("function %s is defined in this database and called without its schema, so what it returns cannot be followed to the columns it reads: call it with its schema (its result is then masked whole)", [f]) if {
	input.command.postgres.has.user_code
	defined := input.command.postgres.user_functions
	some s in input.command.postgres.statements
	some f in s.unqualified_functions
	f in defined
	not pii_reader
}

# An operator is a function under another name: one the database defines (the proxy's
# input.command.postgres.user_operators; an extension's whose function is not volatile left
# out) or one named in another schema (OPERATOR(public.###)) may return what its function
# reads from any table (`SELECT 1 ### 1`), while lineage reads an operator's result as
# derived from its operands alone. Denied to a privileged identity outside pii-readers;
# readers are judged by postgres_user_code.rego (denied in a read, the approver's in a write).
pg_lineage_denials contains sprintf("operator %s is also defined in this database outside pg_catalog, so what it returns cannot be followed to the columns its function reads: denied outside pii-readers", [o]) if {
	input.command.postgres.has.user_code
	defined := input.command.postgres.user_operators
	some s in input.command.postgres.statements
	some o in s.operators
	o in defined
	privileged
	not pii_reader
}

pg_lineage_denials contains sprintf("operator %s is not in pg_catalog, so what it returns cannot be followed to the columns its function reads: denied outside pii-readers", [o]) if {
	input.command.postgres.has.qualified_names
	some s in input.command.postgres.statements
	some o in s.operators
	contains(o, ".")
	not pg_catalog_function(o)
	privileged
	not pii_reader
}

# LISTEN: what arrives for it is the payload another session's NOTIFY (or pg_notify, a
# trigger) sent, at any time, answering no statement the masks were decided for; the proxy
# passes it as it came (a card number, an e-mail address an application notified).
pg_lineage_denials contains "LISTEN is denied to everyone not in pii-readers: notification payloads are other sessions' text, which arrives unmasked" if {
	input.command.postgres.types.listen
	some s in input.command.postgres.statements
	s.type == "listen"
	not pii_reader
}

# Column statistics hold sample values of every analysed column, sensitive ones included,
# under names no mask names: after ANALYZE customers, SELECT stavalues1 FROM pg_statistic
# showed a dba outside pii-readers every password as it is (an anyarray the detectors read
# as text, finding no pattern in a password), and a LIKE on pg_stats.histogram_bounds
# spelled one out. Readers may read no such catalog (postgres.secret_catalogs); nor may
# anyone else the masks cover. Matched on the name's last component, any case, as there.
# This rule and the TOAST tables' open with has.pg_names (the PDP sets it for a relation
# name holding pg_ in any case): lower-casing and splitting every name cost an agent's
# query ~140,000 evaluator instructions.
#
# pg_file_settings likewise: it shows the configuration files' lines as written, those
# ALTER SYSTEM stored among them (a replication password in primary_conninfo), which the
# upstream superuser is shown. A masked dba's rows came back masked whole, but
# `SELECT count(*) FROM pg_file_settings WHERE setting LIKE '%password=hunter2-s%'`
# answered 1 (0 for any other guess), spelling the password out a letter at a time.
pg_lineage_denials contains sprintf("%s %s: denied to everyone not in pii-readers", [t, why]) if {
	input.command.postgres.has.pg_names
	some s in input.command.postgres.statements
	some t in s.tables
	parts := split(lower(t), ".")
	why := pg_unmasked_catalogs[parts[count(parts) - 1]]
	not pii_reader
}

pg_column_statistics := "holds sample values of every column, sensitive ones included"

pg_unmasked_catalogs := {
	"pg_statistic": pg_column_statistics,
	"pg_stats": pg_column_statistics,
	"pg_statistic_ext_data": pg_column_statistics,
	"pg_stats_ext": pg_column_statistics,
	"pg_stats_ext_exprs": pg_column_statistics,
	"pg_file_settings": "holds the configuration files' settings as written (ALTER SYSTEM's among them: a password in primary_conninfo), which a condition on them spells out",
}

# Other sessions' statement text holds their literals, values of other identities (a
# pii-reader's WHERE password = 'hunter2-ada', a card number typed in a condition), so it is
# a sensitive column of the server's: pg_stat_activity.query (and pg_stat_statements.query,
# whose utility statements keep their literals) is a computed column of a view, which the
# proxy masks whole; a condition on it asks the same questions a condition on a sensitive
# column does (SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%hunter2-a%' answered
# 2 when another session held it, 1 otherwise: the asking one always does), and a statement
# storing it (CREATE TABLE t AS SELECT query ..., INSERT INTO log SELECT query ...) puts it
# in a table column read without a mask. Outside pii-readers, dba included, its conditions
# are judged as a sensitive column's (pattern, range, order, other, partial always; equality
# unless oracle.equality allows it) and it is not stored. Readers may read neither relation
# at all (postgres.secret_catalogs), but may read a view the database defines over one.
pg_lineage_denials contains pg_statement_text_question(p) if {
	input.command.postgres.has.pg_names
	some s in input.command.postgres.statements
	some t in s.tables
	pg_statement_text_relation(t)
	some p in s.predicates
	p.column == "query"
	pg_questioning_use(p.use)
	not pii_reader
}

# The view columns carrying `query` first: most catalogues name none, and an empty object
# ends the rule at once (where `views := ...` made the rule index walk a branch of its own
# for every query whose proxy sends view_columns, and each predicate was looked up).
pg_lineage_unindexed contains pg_statement_text_question(p) if {
	some column, carried in input.command.postgres.view_columns
	"query" in carried
	some s in input.command.postgres.statements
	some p in s.predicates
	p.column == column
	pg_questioning_use(p.use)
	not pii_reader
}

pg_statement_text_question(p) := sprintf("%s use of column %s, other sessions' statement text (pg_stat_activity.query), in a condition or ordering answers questions about the values their statements hold: denied to everyone not in pii-readers", [p.use, p.column])

pg_lineage_denials contains pg_statement_text_stored(column) if {
	input.command.postgres.has.pg_names
	some s in input.command.postgres.statements
	some t in s.tables
	pg_statement_text_relation(t)
	some w in s.writes
	some column in w.columns
	column == "query"
	not pii_reader
}

pg_lineage_unindexed contains pg_statement_text_stored(column) if {
	some column, carried in input.command.postgres.view_columns
	"query" in carried
	some s in input.command.postgres.statements
	some w in s.writes
	column in w.columns
	not pii_reader
}

pg_statement_text_stored(column) := sprintf("the statement stores other sessions' statement text (column %s) where it would be read without its mask: denied to everyone not in pii-readers", [column])

# The relations whose column `query` is other sessions' statement text, by the name's last
# component, any case. A view column the proxy says carries a `query` column (view_columns)
# counts too (the second rule of each pair: by name, like sensitive columns, whichever
# relation's it carries).
pg_statement_text_relation(t) if {
	parts := split(lower(t), ".")
	parts[count(parts) - 1] in {"pg_stat_activity", "pg_stat_statements"}
}

pg_questioning_use(use) if use in {"pattern", "range", "order", "other", "partial"}

pg_questioning_use("equality") if not data.portcullis.oracle.equality

# A large object is bytes stored under no column (pg_largeobject's data, lo_get's and
# loread's bytea): no field mask names it, and the value detectors read no bytes, so lo_get
# gave a dba outside pii-readers a card number and a password stored in one as hex (the
# detectors found the card once convert_from made it text). Readers may read no large
# object (postgres.secret_catalogs, and reader_functions leaves lo_* out); nor may anyone
# else the masks cover. Creating, listing and unlinking them still go.
pg_lineage_denials contains sprintf("%s holds large objects' contents, bytes no mask or value detector reads: denied to everyone not in pii-readers", [t]) if {
	input.command.postgres.has.pg_names
	some s in input.command.postgres.statements
	some t in s.tables
	parts := split(lower(t), ".")
	parts[count(parts) - 1] == "pg_largeobject"
	not pii_reader
}

# A TOAST table holds every long value of its table's columns, sensitive ones included, as
# chunks of bytes under the name chunk_data (bytea: the value detectors read no bytes):
# SELECT chunk_data FROM pg_toast.pg_toast_<oid> gave a reader a note's card number in hex,
# and any long value of a masked column alike (pglz-compressed at worst). Named by schema
# (pg_toast, pg_toast_temp_N) or, with that schema on the search_path, by its own name
# pg_toast_<oid>: any name component starting pg_toast, any case.
pg_lineage_denials contains sprintf("%s is a TOAST table: its chunks are the long values of its table's columns, under no column's name; denied to everyone not in pii-readers", [t]) if {
	input.command.postgres.has.pg_names
	some s in input.command.postgres.statements
	some t in s.tables
	some part in split(lower(t), ".")
	startswith(part, "pg_toast")
	not pii_reader
}

# Lineage takes the columns of the catalog tables drivers read for types (pg_type,
# pg_class, pg_attribute, ...: pdp/sql/lineage.py _CATALOG) for the server's own, whose
# expressions change no stored text. A relation made or renamed under such a name outside
# pg_catalog would be read in its place (pg_temp is searched first; search_path may put
# any schema before pg_catalog): CREATE TEMP TABLE x AS SELECT note AS typname ..., ALTER
# TABLE x RENAME TO pg_type, then SELECT reverse(typname) FROM pg_type. Opens with the query
# flag has.shadows (some statement makes or renames a relation under such a name).
pg_lineage_denials contains sprintf("relation name %s is a system catalog table's: a relation of that name outside pg_catalog would be read in its place; denied to everyone not in pii-readers", [name]) if {
	input.command.postgres.has.shadows
	some s in input.command.postgres.statements
	some name in s.shadows
	not pii_reader
}

pg_lineage_denials contains sprintf("a DO block reads sensitive column %s: notices and errors that could carry it are not masked", [column]) if {
	input.command.postgres.has.nested
	some s in input.command.postgres.statements
	s.nested
	some o in s.outputs
	some column in o.columns
	pg_sensitive_column(column)
	not pii_reader
}

pg_lineage_denials contains sprintf("a DO block reads whole rows of %s: notices and errors that could carry them are not masked", [concat(", ", o.tables)]) if {
	input.command.postgres.has.nested
	some s in input.command.postgres.statements
	s.nested
	some o in s.outputs
	o.kind in {"whole_row", "star"}
	not pii_reader
}

# Any column, not only sensitive ones: a DO block's code holds what it reads in variables,
# which lineage cannot follow, and can show what it makes of them where no mask reads it
# (RAISE's text, set_config's reported setting, an INSERT of a variable into a table read
# later): `translate(note, '0123456789', 'abcdefghij')` carries a card number past the
# value detectors. Outside pii-readers a DO block's statements and expressions that read a
# relation may give no column (a variable's name looks like a column to lineage, so only
# those reading a relation: `PERFORM set_config('application_name', x, false)` alone
# reads none; `SELECT count(*) INTO n FROM orders` gives no column).
pg_lineage_denials contains sprintf("a DO block reads column(s) %s: its code can print, set or store what it makes of them where neither lineage nor the value detectors follow; denied to everyone not in pii-readers", [concat(", ", o.columns)]) if {
	input.command.postgres.has.nested
	some s in input.command.postgres.statements
	s.nested
	count(s.tables) > 0
	some o in s.outputs
	count(o.columns) > 0
	not pii_reader
}

# Rows reach a statement's outputs without its naming a relation when it calls a function
# of another schema (lineage reads `public.pw_of(1)` as reading every table, "*"): `x :=
# public.pw_of(1)` then INSERTs x, `IF public.pw_of(1) LIKE 'a%' THEN RAISE ...` answers
# by the notice coming or not. So no test of the statement's own tables here.
pg_lineage_denials contains sprintf("a DO block reads rows of %s: its code can print, set or store what it makes of them where neither lineage nor the value detectors follow; denied to everyone not in pii-readers", [pg_rows_label(o.tables)]) if {
	input.command.postgres.has.nested
	some s in input.command.postgres.statements
	s.nested
	some o in s.outputs
	count(o.tables) > 0
	not pii_reader
}

pg_rows_label(tables) := "any table (a function outside pg_catalog)" if {
	tables == ["*"]
} else := concat(", ", tables)

# EXPLAIN prints what the planner computed ahead: an IMMUTABLE function called with
# constants is run while planning and its value printed in the plan as a constant
# (`EXPLAIN VERBOSE SELECT public.pw_imm(1)`: `Output: 'hunter2-ada'::text`), and a plan is
# text no mask reads as the statement's outputs (the SELECT itself is masked whole). The
# database's functions may be marked IMMUTABLE whatever they read, so EXPLAIN of a
# statement calling a function outside pg_catalog is denied outside pii-readers (pg_catalog's
# own are pure: they read no table). Its functions called without their schema are
# denied already (user_functions).
pg_lineage_denials contains sprintf("EXPLAIN of a statement calling %s: the planner runs an IMMUTABLE function of the database ahead and prints its value in the plan, where no mask reads it; run the statement itself (its value is masked whole): denied to everyone not in pii-readers", [f]) if {
	input.command.postgres.types.explain
	input.command.postgres.has.qualified_names
	some s in input.command.postgres.statements
	s.type == "explain"
	some f in s.qualified_functions
	not pg_catalog_function(f)
	not pii_reader
}

# ...and so does EXPLAIN of a statement reading a view that runs such a function (the
# proxy's view_functions: the functions outside pg_catalog reading each view runs, its own
# and those of the views it reads, and the volatile built-ins its own query calls):
# `EXPLAIN VERBOSE SELECT s FROM pwv`, a view column `public.pw_imm(1) AS s`, prints the
# value the view's SELECT would mask whole.
pg_lineage_denials contains sprintf("EXPLAIN of a statement reading view %s, which runs %s: the planner runs an IMMUTABLE function of the database ahead and prints its value in the plan, where no mask reads it; run the statement itself (its value is masked whole): denied to everyone not in pii-readers", [v, f]) if {
	input.command.postgres.types.explain
	input.command.postgres.has.user_code
	views := input.command.postgres.view_functions
	some s in input.command.postgres.statements
	s.type == "explain"
	some t in s.tables
	some v, functions in views
	view_named(v, t)
	some f in functions
	not pg_builtin(f)
	not pii_reader
}

# Reading a view runs the functions of its query, which the statement does not name: a
# volatile built-in of pg_catalog there keeps what it is given where a later read finds
# it, past every mask (`CREATE VIEW v AS SELECT set_config('application_name', password,
# false) ...`: the server reports the setting's new value to the client and SHOW reads
# it; setval, pg_advisory_lock), or acts on the server (pg_terminate_backend). The proxy
# lists a view's volatile built-ins in view_functions (its rule's tree names them; pg_depend
# does not); those readers may call (random, clock_timestamp) are left.
pg_lineage_denials contains sprintf("view %s runs %s, which keeps or acts on what it is given outside the rows a mask reads: denied to everyone not in pii-readers", [v, f]) if {
	input.command.postgres.has.user_code
	views := input.command.postgres.view_functions
	some s in input.command.postgres.statements
	some t in s.tables
	some v, functions in views
	view_named(v, t)
	some f in functions
	pg_builtin(f)
	not reader_callable(f)
	not pii_reader
}

# A function of pg_catalog as initdb made it, as view_functions names it (one a superuser
# made there since is named "pg_catalog.f (created after initdb)")
pg_builtin(f) if {
	pg_catalog_function(f)
	not endswith(f, " (created after initdb)")
}

# A DO block's FETCH reads a cursor by the name its refcursor variable holds: any portal of
# the session, a SQL cursor or a protocol portal declared before (`k refcursor := 'c';
# FETCH k INTO r`), whose computed columns SQL FETCH masks whole, into variables the block
# then prints, sets or stores where no mask reads them; MOVE runs the cursor's query too,
# and an error it meets (SQLERRM in an EXCEPTION handler) quotes the value. The classifier
# gives each FETCH and MOVE as a nested fetch statement (pdp/sql/plpgsql.py).
pg_lineage_denials contains "a DO block FETCHes (or MOVEs through) a cursor's rows (a cursor or portal of the session, whose computed columns FETCH would mask): its code can print, set or store them where neither lineage nor the value detectors follow; denied to everyone not in pii-readers" if {
	input.command.postgres.types.fetch
	some s in input.command.postgres.statements
	s.type == "fetch"
	s.nested
	s.tag != "PLpgSQL_error_text"
	not pii_reader
}

# An EXCEPTION handler's SQLERRM and GET STACKED DIAGNOSTICS (PG_EXCEPTION_DETAIL: `Failing
# row contains (1, null, ..., hunter2-ada)` of an UPDATE breaking NOT NULL) hold the text of
# an error the block's statements met, which the proxy withholds from the client under the
# masks; the block can store it. The classifier gives such a read as a nested fetch
# statement of tag PLpgSQL_error_text.
pg_lineage_denials contains "a DO block reads an error's text (SQLERRM, GET STACKED DIAGNOSTICS), which may quote values of the rows its statements touched: denied to everyone not in pii-readers" if {
	input.command.postgres.types.fetch
	some s in input.command.postgres.statements
	s.type == "fetch"
	s.nested
	s.tag == "PLpgSQL_error_text"
	not pii_reader
}

pg_lineage_unindexed contains pg_predicate_reason(p) if {
	some s in input.command.postgres.statements
	some p in s.predicates
	p.use in {"pattern", "range", "order", "other", "partial"}
	pg_questionable(p)
	pg_questioned_predicate(p)
	not pii_reader
}

# equality, unless data.portcullis.oracle.equality allows it (tested first: when it does,
# no predicate is looked at)
pg_lineage_unindexed contains pg_predicate_reason(p) if {
	not data.portcullis.oracle.equality
	some s in input.command.postgres.statements
	some p in s.predicates
	p.use == "equality"
	pg_questionable(p)
	pg_questioned_predicate(p)
	not pii_reader
}

# A predicate pg_questioned_predicate may hold for: a column sensitive_columns names, one
# the proxy sent facts for (view_columns: a view column, a document, free text, a wide
# number), a whole row, a column read as a document, a key's value read as a wide number.
# Five one-line bodies, asked first by the two rules above: most predicates name a plain
# column (an id, a status, a date), for which this fails at once where
# pg_questioned_predicate's seven bodies (and pg_sensitive_column's two) were each tried.
# It must hold wherever any body of pg_questioned_predicate does.
pg_questionable(p) if p.column in data.portcullis.sensitive_columns

pg_questionable(p) if input.command.postgres.view_columns[p.column]

pg_questionable(p) if p.column == "*"

pg_questionable(p) if p.document

pg_questionable(p) if p.wide

pg_questionable(p) if {
	p.keyed
	pg_masked_key(p.column)
}

# Each body opens with the test that fails for most columns (a lookup in the column's
# facts): a negation such as `not p.keyed` costs the evaluator more, and every predicate of
# every statement meets these bodies. A sensitive column, or a whole row ("*"):
pg_questioned_predicate(p) if pg_sensitive_column(p.column)

pg_questioned_predicate(p) if p.column == "*"

# A JSON or XML document met whole (not only through a constant key, path or position:
# lineage's `keyed`) is every value its masked keys hold: `profile::text LIKE '%"ssn":
# "123%'`, `ORDER BY profile`, `profile @> '{"ssn": "1"}'`, `md5(profile::text) = ...`
# ask about them as a condition on a sensitive column does. The proxy lists such columns
# in view_columns as carrying "{}" (proxies/postgres/columns.py DOCUMENT).
pg_questioned_predicate(p) if {
	"{}" in input.command.postgres.view_columns[p.column]
	not p.keyed
}

# ...and so is a column the statement reads as a document (`(notes::jsonb)->>'contact'
# LIKE ...`, lineage's `document`): text holding JSON or XML holds the keys the masks cover
# in it (the proxy masks them in the text it sends) as a document column does. A value taken
# out under a key is met whole (it may be a document of its own: `profile->>'contact'` of
# {"contact": {"email": ...}}); compared with = to a value, or cast to a number, date or
# boolean (which no document reads as), it is keyed.
pg_questioned_predicate(p) if {
	p.document
	not p.keyed
}

# ...and so is a column of free text (a string type or bytea: the proxy lists it in
# view_columns as carrying "''", proxies/postgres/columns.py FREE_TEXT): the value
# detectors mask what they find inside its text in every answer (a note holding 'SSN:
# 078-05-1120' reads 'SSN: [REDACTED]'), so `note LIKE '%078-05%'`, `note ~ '078'`, `note >
# 'SSN: 07'`, `ORDER BY note` or `length(note) = 30` answer about what they masked, a row
# count at a time; and so do its partial uses (a computation that may fail, outputs
# included: whether `1/(ascii(substr(note, 6, 1)) - 52)` divided by zero, or `repeat(...,
# 1073741823)` of a character translated away or not passed 1 GB, answers which digit the
# detectors masked, a character at a time; such an output was masked whole anyway). Not
# when met only keyed: a document's key named like a text column is none of its text (the
# document rules judge it), a stored text parsed whole as JSON asks only whether it is
# JSON, and a text column read as a document is met whole where its text is asked about
# (p.document). An allow-list of the names the team says hold no such
# text (postgres.plain_text_columns: names, titles, statuses) keeps their questions;
# pii-readers are never asked.
pg_questioned_predicate(p) if {
	pg_free_text(p.column)
	not p.keyed
}

# A column of free text, or a view's column computed from one (`ascii(substr(note, 6, 1))
# AS code`, an int the proxy lists as carrying "''note": `code > 52` asks about the text
# as `note > ...` does), unless postgres.plain_text_columns lists it (or every free-text
# column it carries).
pg_free_text(column) if {
	"''" in input.command.postgres.view_columns[column]
	not data.portcullis.postgres.plain_text_columns[column]
}

pg_free_text(column) if {
	some carried in input.command.postgres.view_columns[column]
	startswith(carried, "''")
	not data.portcullis.postgres.plain_text_columns[substring(carried, 2, -1)]
	not data.portcullis.postgres.plain_text_columns[column]
	carried != "''"
}

# ...and so is a wide number column (the proxy lists it as carrying "0": a card kept as a
# bigint is sent as NULL, the value detectors reading it as one): `num > 4111111111111110`,
# `ORDER BY num` beside a constant, `num % 1000 = 111` ask about the number they masked,
# a row count at a time; so does arithmetic that may fail (`1/(num - 4111111111111111)`,
# `num + (9223372036854775807 - 4111111111111111)` overflowing exactly when num is larger:
# lineage's partial; what it makes is masked whole anyway: pg_derived_reasons). Unless
# postgres.plain_number_columns lists the name (ids, counts, amounts), or the database
# fills the column (identity, nextval(): never listed).
pg_questioned_predicate(p) if {
	"0" in input.command.postgres.view_columns[p.column] # pg_wide_number(p.column), written out
	not p.keyed
	not data.portcullis.postgres.plain_number_columns[p.column]
}

# ...and so is a value taken out of a document under a key and cast to a number type that
# holds a card or phone number's digits (int8, numeric, the floats, interval: lineage's
# `wide`, given on the predicate of the key's name): `(doc->>'card')::numeric >
# 4111111111111110` of {"card": "4111111111111111"}, which the value detectors mask when
# the document is selected, binary-searched the card in some fifty statements, as `num >
# ...` would of a wide number column. Unless postgres.plain_number_columns lists the key's
# name (`(payload->>'amount')::numeric > 100`); a cast to int4, smallint, boolean, a date or
# a time (`(payload->>'ms')::int > 100`) holds no number the detectors mask under a key of
# any name, and stays keyed (a key named as a sensitive field is questioned by its name
# below: pg_masked_key).
pg_questioned_predicate(p) if {
	p.wide
	not data.portcullis.postgres.plain_number_columns[p.column]
}

# ...and so is a key's value the masks hide by the key's name, though the policy lists no
# column so named: a document's `tel`, `mobile`, `customer_phone`, `social_security` or
# `ccn` is masked whole as phone, ssn or card_number (data.portcullis.field_aliases, as
# portcullis.masking.FIELD_ALIASES and rule_for_key read a key's words), but met keyed,
# `(doc->>'tel')::int > 2125550190` binary-searched a phone number that fits an int4, as
# `::date` ('078051120' is 7805-11-20) did a social security number written without dashes.
pg_questioned_predicate(p) if {
	p.keyed
	pg_masked_key(p.column)
}

# whether a document's key (lower case, as lineage names it) reads as a sensitive field's
# name: its words hold the field's or one of its other names' words, or those written as
# one, singular or plural (http_field_names, http_spaced_words: http.rego)
pg_masked_key(key) if {
	words := http_spaced_words(key)
	some field in data.portcullis.sensitive_columns
	some name in http_field_names(field)
	some spelt in [name, concat("", split(name, " "))]
	some plural in ["", "s", "es"]
	contains(words, sprintf(" %s%s ", [spelt, plural]))
}

# ...or, lineage naming keys in lower case (`customerPhone` is customerphone), holds one of
# those names of five letters or more written as one anywhere in it
pg_masked_key(key) if {
	joined := regex.replace(lower(key), `[^a-z0-9]+`, "")
	some field in data.portcullis.sensitive_columns
	some name in http_field_names(field)
	spelt := concat("", split(name, " "))
	count(spelt) >= 5
	contains(joined, spelt)
}

# min(note) / max(note) (lineage's "choice") return one of the values as it is, chosen by
# comparing them: beside a constant (`max(x) FROM (SELECT note x ... UNION ALL SELECT
# 'SSN: 07')`) whether the constant or the note (its number masked) comes back answers `>`.
# A sensitive column's comes back masked whole either way, so only free text is asked.
# One pass over the predicates for both kinds of column (a pass per kind walked every
# predicate of every query twice).
pg_lineage_unindexed contains pg_predicate_reason(p) if {
	some s in input.command.postgres.statements
	some p in s.predicates
	p.use == "choice"
	not p.keyed
	pg_chosen_questioned(p.column)
	not pg_sensitive_column(p.column)
	not pii_reader
}

pg_chosen_questioned(column) if {
	"''" in input.command.postgres.view_columns[column]
	not data.portcullis.postgres.plain_text_columns[column]
}

pg_chosen_questioned(column) if pg_wide_number(column)

# A SELECT grouping or joining its rows on a column returns them in the order of its values
# (a sort or merge) or of their hashes: another output telling the rows apart (an id beside
# `GROUP BY password, B'1'::varbit`, which cannot be hashed; `c.id ... WHERE EXISTS (SELECT
# 1 ... WHERE d.ssn = c.ssn)`) answers how the hidden values compare. Lineage gives the
# grouped or compared columns a stored column output beside them does not carry as
# `sequence` (a computed output carries them, and is masked where they are), unless the
# statement's ORDER BY names every output. Denied for a sensitive column, a whole row and
# a whole document.
#
# ...and the grouped or compared value itself where the masks show it in part (`arranged`,
# one body below, in this rule: the set's rules are all entered, test_pdp_perf_rule_
# positions): a free-text column (the value detectors mask a card inside its text, the
# rest shows) or a whole document (its masked keys hidden, the others shown). Where the
# groups come back in their order (a sort: `GROUP BY note, B'1'::varbit`, which cannot be
# hashed, a large input, an index), 'card **** **** **** 1111 on file' landing between
# the notes 'card 41 x' and 'card 42 x' told the card's first digits, as the refused ORDER
# BY note would. Lineage gives what a SELECT grouped (GROUP BY, DISTINCT) or joined by as
# `arranged` unless its ORDER BY names every output or it aggregates into one row.
# Sensitive columns are masked whole (their order shows nothing beside themselves); the
# team's plain_text_columns keep their groupings.
pg_lineage_unindexed contains pg_sequence_reason(p) if {
	some s in input.command.postgres.statements
	some p in s.predicates
	p.use in {"sequence", "arranged"}
	pg_sequenced(p)
	not pii_reader
}

pg_sequenced(p) if {
	p.use == "sequence"
	pg_sensitive_column(p.column)
}

pg_sequenced(p) if {
	p.use == "sequence"
	p.column == "*"
}

pg_sequenced(p) if {
	"{}" in input.command.postgres.view_columns[p.column]
	not p.keyed
}

pg_sequenced(p) if {
	p.use == "arranged"
	pg_free_text(p.column)
	not p.keyed
	not pg_sensitive_column(p.column)
}

# ...and a wide number column (a card kept in a bigint is sent as NULL, the value detectors
# reading it as one): `SELECT num FROM t GROUP BY num, B'1'::varbit` put the NULL between
# 4100000000000000 and 4200000000000001, the card's first digits, as ORDER BY num would.
# Not a column the database fills (identity, bigserial, a validated foreign key to one: no
# "0" in view_columns) nor a name the team lists (plain_number_columns): keys join as before.
pg_sequenced(p) if {
	p.use == "arranged"
	pg_wide_number(p.column)
	not p.keyed
	not pg_sensitive_column(p.column)
}

# ...and such a number read out of a document under a key (lineage's `wide`): `SELECT
# count(*), min(id) ... GROUP BY (doc->>'card')::numeric, B'1'::varbit` orders the groups
# by the card.
pg_sequenced(p) if {
	p.use == "arranged"
	p.wide
	not data.portcullis.postgres.plain_number_columns[p.column]
}

pg_sequence_reason(p) := sprintf("the rows come back in the order of the numbers read out of documents under key %s (grouped, made DISTINCT or joined on), which may be a card number the value detectors mask, so where a masked value lands among the others answers how it compares: denied to everyone not in pii-readers; name every output in ORDER BY, aggregate into one row, or list the key in postgres.plain_number_columns if it holds none", [p.column]) if {
	p.use == "arranged"
	p.wide
	not pg_sensitive_column(p.column)
} else := sprintf("the rows come back in the order of the values of number column %s or of their hashes (grouped, made DISTINCT or joined on), which may hold a card number the value detectors mask, so where a masked value lands among the others answers how it compares: denied to everyone not in pii-readers; name every output in ORDER BY, aggregate into one row, or list the column in postgres.plain_number_columns if it holds none", [p.column]) if {
	p.use == "arranged"
	pg_wide_number(p.column)
} else := sprintf("the rows come back in the order of the values of column %s or of their hashes (grouped, made DISTINCT or joined on), which the masks show only in part, so where a masked value lands among the others answers how it compares: denied to everyone not in pii-readers; name every output in ORDER BY, aggregate into one row, or list the column in postgres.plain_text_columns if it holds no such text", [p.column]) if {
	p.use == "arranged"
} else := sprintf("the rows come back in the order of %s or of their hashes (grouped or joined on beside another output), which answers how those values compare: denied to everyone not in pii-readers; name every output in ORDER BY, or leave the other outputs out", [pg_sequence_label(p.column)])

pg_sequence_label(column) := "whole rows" if {
	column == "*"
} else := sprintf("the values of column %s", [column])

# The uses of a column in a condition that answer questions about its values are the two
# deny rules above: pattern, range, order, other and partial always, equality unless
# data.portcullis.oracle.equality allows it (a literal set and the data flag, tested in
# each rule: a rule reference would cost the evaluator more than either).

pg_predicate_reason(p) := sprintf("a whole row used in a condition or ordering (%s) may reveal sensitive columns: denied to everyone not in pii-readers", [p.use]) if {
	p.column == "*"
} else := sprintf("%s use of the value under key %s of a document, read as a type that holds a card or phone number's digits (a wide number or an interval), in a condition, ordering or computation answers questions about a number the value detectors mask when the document is selected: denied to everyone not in pii-readers (cast to int, or list the key in postgres.plain_number_columns if it holds no such number)", [p.use, p.column]) if {
	p.wide
	not pg_sensitive_column(p.column)
} else := sprintf("%s use of the value under key %s of a document, which the masks hide whole as a sensitive field's (its name or another name of it), in a condition, ordering or computation answers questions about that value: denied to everyone not in pii-readers", [p.use, p.column]) if {
	p.keyed
	not pg_sensitive_column(p.column)
	pg_masked_key(p.column)
} else := sprintf("%s column %s goes into a computation that can fail for some of its values (arithmetic, a cast that parses text, a function not known never to fail, a value grown past 1 GB), so its error would answer questions about what the value detectors mask in it: denied to everyone not in pii-readers (list the column in postgres.%s if it holds no such value)", [pg_partial_kind(p.column), p.column, pg_partial_list(p.column)]) if {
	p.use == "partial"
	not pg_sensitive_column(p.column)
	pg_partial_kind(p.column)
} else := sprintf("%s use of number column %s in a condition or ordering answers questions about a card number the value detectors mask when it is selected: denied to everyone not in pii-readers (list the column in postgres.plain_number_columns if it holds none)", [p.use, p.column]) if {
	not pg_sensitive_column(p.column)
	pg_wide_number(p.column)
} else := sprintf("%s use of free-text column %s in a condition or ordering answers questions about what the value detectors mask inside its text: denied to everyone not in pii-readers (list the column in postgres.plain_text_columns if it holds no such text)", [p.use, p.column]) if {
	not pg_sensitive_column(p.column)
	not "{}" in object.get(input.command.postgres.view_columns, p.column, [])
	not p.document
} else := sprintf("%s use of document column %s as a whole in a condition or ordering answers questions about the values its masked keys hold (a value under a key may be a document too): denied to everyone not in pii-readers; compare a key's value with = (%s->>'key' = 'value') or cast it to a number, date or boolean", [p.use, p.column, p.column]) if {
	not pg_sensitive_column(p.column)
} else := sprintf("equality on sensitive column %s is denied: the oracle setting allows no equality tests", [p.column]) if {
	p.use == "equality"
} else := sprintf("sensitive column %s goes into a computation that can fail for some of its values (arithmetic, a cast that parses text, a function not known never to fail), so its error would answer questions about the value: denied to everyone not in pii-readers", [p.column]) if {
	p.use == "partial"
} else := sprintf("%s use of sensitive column %s in a condition or ordering answers questions about its values: denied to everyone not in pii-readers", [p.use, p.column])

# what a partial use of a column neither sensitive nor a document questions (free text's
# or a wide number's: pg_questioned_predicate), and where the team lists such a column
pg_partial_kind(column) := "number" if {
	pg_wide_number(column)
} else := "free-text" if {
	pg_free_text(column)
	not "{}" in input.command.postgres.view_columns[column]
}

pg_partial_list(column) := "plain_number_columns" if {
	pg_wide_number(column)
} else := "plain_text_columns"

# DDL under the masks (privileged, not in pii-readers: a dba masked like a reader). Code-
# and lineage-changing DDL stores or computes a masked column's values where they are read
# unmasked, or changes which name a mask finds them by: a generated column (`pw2 text
# GENERATED ALWAYS AS (password) STORED`), a trigger or rule copying one elsewhere, a
# function, procedure, cast or operator a later statement calls without naming it, a view,
# a renamed column or table, a foreign table, a policy or publication. An allow-list: the
# DDL below runs without approval, every other DDL statement needs it. value_expressions
# (a column reference or sub-query: a generated column, a CHECK validated against every
# row, an index expression or WHERE, ALTER COLUMN TYPE ... USING) needs it too, and ALTER
# TABLE only with the commands listed: not ADD CONSTRAINT, whose CHECK or FOREIGN KEY is
# validated against every stored value (whether it fails answers a question about them).
pg_approval contains [i, sprintf("%s under the masks needs approval (only listed DDL without expressions over columns runs without it for everyone not in pii-readers)", [s.tag])] if {
	some i, s in input.command.postgres.statements
	s.type in {"ddl", "other", "load", "create_extension"}
	privileged # after the statement's type: a rule reference costs more than that test
	not pii_reader
	not pg_masked_ddl_allowed(s)
}

# A unique index is not listed: made over a table's stored values (CREATE UNIQUE INDEX ON
# customers (password)), an INSERT ... ON CONFLICT DO NOTHING of a guess then inserts a row
# or not, an equality test on the column (INSERT 0 0: the guess is a stored password)
# that data.portcullis.oracle.equality false would not stop.
pg_masked_ddl_allowed(s) if {
	s.tag in {
		"CreateStmt", "CreateSeqStmt", "AlterSeqStmt", "CreateSchemaStmt",
		"CreateTableAsStmt", "SelectStmt", "RefreshMatViewStmt", "IndexStmt",
	}
	not s.value_expressions
	not s.unique
}

pg_masked_ddl_allowed(s) if {
	s.tag == "AlterTableStmt"
	not s.value_expressions
	every c in s.alter_commands {
		c in {
			"AddColumn", "DropColumn", "ColumnDefault", "SetNotNull", "DropNotNull",
			"DropConstraint", "SetStatistics", "SetStorage",
		}
	}
}

# CLUSTER rewrites a table in an index's order: over an index on a sensitive column (CREATE
# INDEX on a bare column runs without approval), a plain SELECT then returns the rows in
# that column's order, the ordering the predicate rules deny in ORDER BY.
pg_approval contains [i, "CLUSTER under the masks needs approval: it stores a table's rows in an index's order, which any read of them then shows"] if {
	privileged
	not pii_reader
	input.command.postgres.types.maintenance
	some i, s in input.command.postgres.statements
	s.tag == "ClusterStmt"
}

# EXPLAIN ANALYZE runs the statement and prints what running it measured: how much memory
# or disk a sort or hash took (Sort Method: external merge Disk: 2552kB), its buckets and
# batches, the buffers read. Those sizes are the sizes of the values the statement computed
# and never sent: `EXPLAIN (ANALYZE) SELECT translate(password, 'abcdefghijklm', '') FROM
# customers, generate_series(1, 100000) ... ORDER BY g` printed Disk: 2168kB where the
# password as it is gave 2552kB, how many of its characters are in a-m, and over
# substr(password, k, 1) each character in turn. Readers may not EXPLAIN ANALYZE at all
# (postgres.rego); under the masks a privileged identity's needs approval when its statement
# reads a table. (Kept in pg_privileged_approval, which postgres.rego's pg_approval reads for
# privileged identities, so that the rules of pg_approval a query calling functions meets
# stay within its first places: decision.rego says why.)
pg_privileged_approval contains [i, "EXPLAIN ANALYZE under the masks needs approval: the sizes it prints (memory, disk, buffers a sort or hash took) measure values the statement computed, which the masks would hide"] if {
	input.command.postgres.types.explain
	not pii_reader
	some i, s in input.command.postgres.statements
	s.type == "explain"
	s.analyze == true
	count(s.tables) > 0
}

# An index on a sensitive column orders the table by it: an index scan (the planner's
# choice, or forced with SET enable_seqscan = off) returns rows in the column's order to a
# plain SELECT id ... WHERE password IS NOT NULL, a range oracle a guessed marker row turns
# into a binary search of the masked values.
pg_approval contains [i, sprintf("an index on sensitive column %s under the masks needs approval: a read in its order shows the column's order", [c])] if {
	privileged
	not pii_reader
	input.command.postgres.types.ddl
	some i, s in input.command.postgres.statements
	s.tag == "IndexStmt"
	some c in s.index_columns
	pg_indexed_sensitive(c)
}

pg_indexed_sensitive(c) if pg_sensitive_column(c)

# a document column (json, jsonb, xml, hstore: "{}" in the proxy's view_columns): its order
# is the order of the values its masked keys hold
pg_indexed_sensitive(c) if "{}" in input.command.postgres.view_columns[c]

# An index on a sensitive column may already be there (a unique e-mail): the planner's
# method and cost settings steer a plain read to it, and its order shows the column's
# (above). Under the masks, changing them (SET, set_config) needs approval; RESET goes.
pg_approval contains [i, sprintf("SET %s under the masks needs approval: it steers reads to an index, whose order shows a sensitive column's", [upper(s.setting)])] if {
	privileged
	not pii_reader
	input.command.postgres.types.set
	some i, s in input.command.postgres.statements
	s.type == "set"
	not s.reset
	pg_planner_setting(s.setting)
}

pg_approval contains [i, sprintf("set_config of %s under the masks needs approval: it steers reads to an index, whose order shows a sensitive column's", [name])] if {
	privileged
	not pii_reader
	input.command.postgres.has.settings
	some i, s in input.command.postgres.statements
	some name in s.settings
	pg_planner_setting(name)
}

# ... and chosen at start-up (`options=-c enable_seqscan=off`) they are refused
pg_lineage_denials contains sprintf("start-up parameter %s steers reads to an index, whose order shows a sensitive column's: not chosen at start-up under the masks", [name]) if {
	input.command.kind == "session.open"
	privileged
	not pii_reader
	some name, _ in object.get(input.session, ["attributes", "settings"], {})
	pg_planner_setting(lower(name))
}

pg_planner_setting(name) if startswith(name, "enable_")

pg_planner_setting(name) if name in {
	"random_page_cost", "seq_page_cost", "cpu_tuple_cost", "cpu_index_tuple_cost",
	"cpu_operator_cost", "effective_cache_size", "parallel_setup_cost", "parallel_tuple_cost",
	"min_parallel_table_scan_size", "min_parallel_index_scan_size", "geqo", "plan_cache_mode",
	"default_statistics_target", "constraint_exclusion", "cursor_tuple_fraction",
	"from_collapse_limit", "join_collapse_limit", "jit_above_cost",
}

# A sensitive column renamed escapes the masks that name it, for everyone they mask (a
# pii-reader's rename too): approval for every privileged identity (others may run no DDL).
pg_approval contains [i, sprintf("renaming sensitive column %s escapes the masks that name it: needs approval", [s.renamed_column])] if {
	privileged
	input.command.postgres.types.ddl
	some i, s in input.command.postgres.statements
	s.type == "ddl"
	pg_sensitive_column(s.renamed_column)
}
