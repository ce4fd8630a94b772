"""Column lineage of one statement: which table columns each output derives from, and how
the statement's predicates use columns (DESIGN.md "default semantics", issue 21).

Owns reading the parser's JSON tree (pglast's parse_sql_json, libpg_query's own output)
of a SELECT-bearing statement into two entry fields:

  outputs     [{"name", "kind", "columns", "tables"}] one per result column where it can
              be told; kind is plain (a bare column reference: the server reports its table
              column, and the proxy masks it by that column's name), expression, aggregate,
              whole_row (a row or a JSON/XML value built from a whole row), or star (`*`
              over a table: plain columns the proxy resolves itself). columns are the base
              column names reached (lower case, last component); tables the relations whose
              every column it may carry (whole_row, star, set operations over `*`).
              A SELECT whose outputs are each one column of its result, in order (no
              `*` the server expands), says so: "exact": true.
              A computed output gets "keeps": true when its columns reach it only as
              they are (COALESCE, min/max, count, arithmetic, an uncut cast to text:
              the _KEEPING allow-lists), or are columns of the catalog tables drivers
              read (_CATALOG): no text of the database's own tables was changed on the
              way, so the value detectors that read the stored text can read it too.
  predicates  [{"column", "use"}] for columns read by WHERE, JOIN, HAVING, ORDER BY,
              GROUP BY, DISTINCT ON, window clauses and aggregate FILTER/ORDER BY; use is
              equality, pattern, range, order, group, join, other or choice (the
              argument of min/max, whose result is one of its values chosen by
              comparing them: a question only where no field mask hides which, as for
              free text the value detectors read; partial as below). Column "*" is a whole
              row. "keyed": true when every such use met the column only through a
              constant key or path taken out of it (`profile->>'status'`), never whole;
              an output lists such columns as "keyed" (a JSON or XML document met whole
              answers about every masked key inside it: postgres_lineage.rego).
              "wide": true on the predicate of a key's name when a use met the value
              under it cast to a type that holds a card or phone number's digits
              (`(doc->>'card')::numeric > ...`: Flow.wide, _NARROW_CASTS).

A column's or a document key's name that the masks read as a sensitive field's other than
itself (portcullis.masking: by its words and the field's other names, `"userPw"`, `tel`,
`mobile_no`, a key `customerSsn`; what masks such a column when it is selected, or such a
key in a document) also names that field among the columns it reaches (`_named`), so a
value computed from it, taken out under it or questioned by a predicate is judged as the
field's column is.

Where a name could mean a table column or a whole row (`select c from customers c`), or
cannot be resolved, it is read as the one that reveals more: the PDP does not know the
tables' columns, so it fails closed. Names only, never literal values (ORDER BY / GROUP BY
positions are not literals the shape ignores), so verdicts stay reusable by shape.

No IO and no policy here: this module says where values come from, never what may run.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from portcullis.masking import FIELD_ALIASES, name_words, worded_field

Fields = dict[str, Any]

PLAIN, EXPRESSION, AGGREGATE, WHOLE_ROW, STAR = (
    "plain",
    "expression",
    "aggregate",
    "whole_row",
    "star",
)
_RANK = {PLAIN: 0, STAR: 0, EXPRESSION: 1, AGGREGATE: 2, WHOLE_ROW: 3}
_COMPUTED = (EXPRESSION, AGGREGATE)  # a value computed from columns, not a column or row

# the fields the masks read in a name, under the names the policy gives them (its default
# sensitive_columns): each field's words and its other names (FIELD_ALIASES), in the
# masks' order
_MASKED_FIELDS = (*("_".join(words) for words in FIELD_ALIASES), "iban")
_WORDED = tuple(
    (field, words)
    for field in _MASKED_FIELDS
    for words in (tuple(field.split("_")), *FIELD_ALIASES.get(tuple(field.split("_")), ()))
)
_NAME_CHARS_READ = 128  # of a name's text, as the masks read a key's (masking._KEY_CHARS_READ)


@functools.lru_cache(maxsize=4096)
def _masked_as(name: str, key: bool) -> str:
    """The field the masks read `name` as when it is not that field's own name ("" for
    none): a result column's name as Masker.rule_for_any reads it (no plurals), a
    document's key as rule_for_key does (`phones` too)."""
    field = worded_field(_WORDED, name_words(name[:_NAME_CHARS_READ]), plural=key)
    return field if field and field != name.lower() else ""


def _named(name: str, key: bool = False) -> dict[str, None]:
    """A column's (or `key`, a document key's) name as lineage names it, lower case, and
    the sensitive field the masks read it as, when another (`"userPw"`: userpw, password;
    a key `customerSsn`: customerssn, ssn)."""
    field = _masked_as(name, key)
    return {name.lower(): None, field: None} if field else {name.lower(): None}


def _named_keys(keys: Any) -> dict[str, None]:
    """_named of each of these document keys."""
    named: dict[str, None] = {}
    for k in keys:
        named.update(_named(str(k), key=True))
    return named


# aggregates that give one of their rows' values, chosen by comparing them
_CHOOSING = frozenset({"min", "max"})

# Aggregates of pg_catalog that need none of the markers (FILTER, OVER, DISTINCT, *) to be
# recognised; the kind is informative only (expression and aggregate are judged alike).
_AGGREGATES = frozenset(
    [
        "count",
        "sum",
        "avg",
        "min",
        "max",
        "array_agg",
        "string_agg",
        "json_agg",
        "jsonb_agg",
        "json_object_agg",
        "jsonb_object_agg",
        "json_agg_strict",
        "jsonb_agg_strict",
        "json_objectagg",
        "json_arrayagg",
        "xmlagg",
        "bool_and",
        "bool_or",
        "every",
        "bit_and",
        "bit_or",
        "bit_xor",
        "stddev",
        "stddev_pop",
        "stddev_samp",
        "variance",
        "var_pop",
        "var_samp",
        "mode",
        "percentile_cont",
        "percentile_disc",
        "corr",
        "covar_pop",
        "covar_samp",
        "range_agg",
        "range_intersect_agg",
    ]
)

# information_schema's functions read as built-ins, whose result derives from their
# arguments alone (pdp/sql/reader_functions.py INFORMATION_SCHEMA_HELPERS reviews them)
_INFORMATION_SCHEMA_BUILTINS = frozenset(["_pg_expandarray"])

# Functions whose result answers a question about their input beyond its value: the
# set-returning functions of pg_catalog that take values (how many rows), and pattern,
# position and JSON path tests (NULL or not, true or false).
_QUESTIONS = frozenset(
    [
        "generate_series",
        "generate_subscripts",
        "unnest",
        "_pg_expandarray",  # information_schema's unnest with positions (pgjdbc)
        "regexp_matches",
        "regexp_split_to_table",
        "string_to_table",
        "json_array_elements",
        "json_array_elements_text",
        "jsonb_array_elements",
        "jsonb_array_elements_text",
        "json_each",
        "json_each_text",
        "jsonb_each",
        "jsonb_each_text",
        "json_object_keys",
        "jsonb_object_keys",
        "json_populate_recordset",
        "jsonb_populate_recordset",
        "json_to_recordset",
        "jsonb_to_recordset",
        "jsonb_path_query",
        "jsonb_path_query_tz",
        "jsonb_path_query_first",
        "jsonb_path_query_first_tz",
        "jsonb_path_query_array",
        "jsonb_path_query_array_tz",
        "jsonb_path_exists",
        "jsonb_path_exists_tz",
        "jsonb_path_match",
        "jsonb_path_match_tz",
        "ts_stat",
        "ts_parse",
        "ts_debug",
        "regexp_match",
        "regexp_like",
        "regexp_count",
        "regexp_instr",
        "regexp_substr",
        "regexp_split_to_array",
        "substring",
        "similar_substring",
        "textregexeq",
        "texticregexeq",
        "textlike",
        "texticlike",
        "textnlike",
        "texticnlike",
        "like",
        "ilike",
        "notlike",
        "notilike",
        "starts_with",
        "strpos",
        "position",
        "text_lt",
        "text_le",
        "text_gt",
        "text_ge",
        "texteq",
        "textne",
        "bttextcmp",
        "text_larger",
        "text_smaller",
        "nullif",
    ]
)

# Computations a value may flow into without a question being asked of it: each never
# fails, whatever the value (or at the argument positions listed). A column's value that
# flows anywhere else — arithmetic, a cast to a type that parses its text, a function not
# listed, a length or position argument — is used `partial`: the computation can fail for
# some values, and whether it failed answers a question about the value
# (1/(ascii(email) - 97) errors only for emails that start with "a"). Not listed is the
# safe mistake: such an output is refused to a reader rather than masked.
_ANY = None  # every argument position
_TOTAL_FUNCTIONS: dict[str, tuple[int, ...] | None] = {
    **dict.fromkeys(
        (
            "upper", "lower", "initcap", "ascii", "length", "char_length", "character_length",
            "octet_length", "bit_length", "md5", "reverse", "concat", "concat_ws", "btrim",
            "ltrim", "rtrim", "replace", "translate", "quote_literal", "quote_nullable",
            "to_json", "to_jsonb", "text", "varchar", "bpchar", "name", "left", "right",
            "count", "min", "max", "array_agg", "string_agg", "every", "bool_and",
            "bool_or", "first_value", "last_value", "greatest", "least", "coalesce",
            "xmlagg", "json_agg", "jsonb_agg", "json_build_array", "jsonb_build_array",
            "array_to_string",
        ),
        _ANY,
    ),
    # a NULL key fails; the values (every second argument) never do
    **dict.fromkeys(("json_build_object", "jsonb_build_object"), tuple(range(1, 100, 2))),
    "split_part": (0, 1),
    "substr": (0, 1),
    "regexp_replace": (0, 2),
    "lpad": (0, 2),
    "rpad": (0, 2),
    "nth_value": (0,),
    "lag": (0, 2),
    "lead": (0, 2),
}  # fmt: skip
# operators that compute from any operands without failing; every other (+, -, *, /, %,
# ^, bit and date arithmetic) can overflow or divide by zero for some values
_TOTAL_OPERATORS = frozenset({"||", "->", "->>", "#>", "#>>"})

# ...but no value may be larger than 1 GB (MaxAllocSize), and a computation whose result
# grows with its input fails past that size. Of the total computations, those making one
# value of several (concatenation, constructors) fail where the sum of their inputs is too
# large: beside a second value of the reader's making (`repeat('x', 1073741819)`), whether
# `translate(substr(password, 1, 1), 'abcdefghijklm', '') || repeat(...)` fails answers
# whether the first character is in a-m, a character at a time. So a column's value goes
# into them as a total use only beside constants written in the statement (a frame holds
# 64 MB of them: never enough); beside any other value (another column, a function's
# result, a parameter) it is used `partial`, but beside stored columns as they are (below).
# (A value the reader makes large holds no column; one grown from a column is partial where
# it grew.)
_COMBINING_FUNCTIONS = frozenset(
    {
        "concat", "concat_ws", "array_to_string", "json_build_array", "jsonb_build_array",
        "json_build_object", "jsonb_build_object",
    }
)  # fmt: skip
_COMBINING_OPERATORS = frozenset({"||"})
# ...and beside stored columns as they are: `first_name || ' ' || last_name`, `concat(city,
# ', ', country)`, `coalesce(a, '') || ' ' || coalesce(b, '')` join values no reader sizes
# (Lineage.joined). What they make is at most the stored values' sizes, each operand
# counted, and short constants: a reader chooses only how many operands to write, at most
# _JOINED_COLUMNS column operands and _JOINED_OPERANDS in all, constants of at most
# _JOINED_CONSTANT characters together (beside one column too: _constants_length says
# why), so it can pass 1 GB only for stored values of more than
# 1 GB / _JOINED_COLUMNS together, and then answers that size, never a part, position or
# character class of a value (no function, cast that cuts or pads, sub-query, parameter or
# value made in FROM is an operand: `note || x` beside `repeat('x', ...) AS x` stays
# partial, as does the 1 GB oracle of p37, and string_agg, repeat, lpad and recursion).
_JOINED_COLUMNS = 16
_JOINED_OPERANDS = 32
_JOINED_CONSTANT = 256
# ...and a joined operand may be such a column (or joined value) changed by a function of
# it alone that never fails and makes no more than a few bytes of each character, with no
# other argument a reader could size, cut or pick a character class with: `lower(first_name)
# || ' ' || lower(last_name)`, `initcap(city) || ', ' || upper(country)`, `trim(a) || b`
# (trim of spaces only: it shortens). The value stays within three times the stored
# values' sizes (a case mapping turns one character into at most three bytes more than
# it had: 'ⱥ' of 'Ⱥ'; digits, '@' and '.' are never changed), so it passes 1 GB only for
# stored values of more than 1 GB / (3 * _JOINED_COLUMNS) together.
_JOINING_FUNCTIONS = frozenset({"lower", "upper", "initcap", "btrim", "ltrim", "rtrim"})
_COMBINING_NODES = frozenset({"RowExpr", "A_ArrayExpr", "XmlExpr"})
# Those multiplying one input by another (the replacement at each match, the fill repeated,
# a character mapped to a longer one) or by the rows (an aggregate joining every row's
# value, ARRAY(SELECT ...)): a value grows as far as the reader likes from a constant
# alone (`regexp_replace(substr(password, 1, 2), '^[h-m]', repeat('x', 1073741819))`
# failed exactly when the first character is in h-m; 100,000,000 rows of generate_series
# under string_agg(password) fail by its length): a column's value going into one is
# always used `partial`.
_MULTIPLYING_FUNCTIONS = frozenset(
    {
        "replace", "regexp_replace", "translate", "lpad", "rpad",
        "array_agg", "string_agg", "json_agg", "jsonb_agg", "xmlagg",
    }
)  # fmt: skip
# cast targets that take any text as it is (varchar(n) and char(n) cut silently)
_TEXT_TYPES = frozenset(
    {"text", "varchar", "bpchar", "char", "character", "name", "citext", "unknown"}
)

# What gives a column's value on as it is, or computes from it nothing the value detectors
# would have to read (a count, a sum a text value cannot have): a value only these make is
# `keeps` (lineage_fields), so the stored column's own masking (by name, or the detectors
# reading its text) covers it. Everything else may change the text the detectors read
# (`translate(note, '0123456789', 'abcdefghij')`, `note::bytea`, `reverse(note)`, a
# delimiter appended): the policy masks such a value whole. Not listed is the safe mistake.
_KEEPING_FUNCTIONS = frozenset(
    {
        "min", "max", "count", "sum", "avg", "any_value", "first_value", "last_value",
        "nth_value", "lag", "lead", "text", "varchar",
        # the values as they are, in an array the proxy reads as a document (text[]: its
        # elements are quoted, never escaped but for quotes and backslashes)
        "array_agg",
    }
)  # fmt: skip
_CASTS = frozenset({"text", "varchar"})
# Functions of pg_catalog computing a number, time or truth value from numbers and times
# (no variant takes text, which the server never casts to their types unasked: round(note)
# does not exist), the analysts' date_trunc, extract and round: what they make of a column
# is no text the value detectors would have read, so they keep (changed only where their
# arguments were: round(length(note)) is masked as length(note) is). Those with a text
# argument naming a unit or zone keep only when it is a constant (date_part(note, ts)
# answers about note). They compute (`arithmetic`): round(num, -4) of a card kept as a
# number hides it from the detectors as num - 1 does.
_NUMBER_FUNCTIONS = frozenset(
    {
        "round", "trunc", "floor", "ceil", "ceiling", "abs", "sign", "date_trunc",
        "date_part", "extract", "date_bin", "timezone", "stddev", "stddev_pop",
        "stddev_samp", "variance", "var_pop", "var_samp", "percentile_cont", "corr",
        "covar_pop", "covar_samp", "bool_and", "bool_or", "every", "isfinite",
    }
)  # fmt: skip
# ... the argument positions naming a unit or zone (text), each a constant where they keep
_UNIT_ARGUMENTS = {"date_trunc": (0, 2), "date_part": (0,), "extract": (0,), "timezone": (0,)}
# what lineage reads as giving a number (count, sum, avg and _NUMBER_FUNCTIONS): a cast of
# one to a number or time type changes no text
_NUMBER_RESULTS = _NUMBER_FUNCTIONS | {"count", "sum", "avg"}
# cast targets a number or time is made into without text: numbers, and times
_NUMBER_CASTS = frozenset(
    {
        "int2", "int4", "int8", "smallint", "integer", "bigint", "numeric", "decimal",
        "float4", "float8", "real", "date", "timestamp", "timestamptz",
    }
)  # fmt: skip
# ... and those a stored column's whole value may be read as without hiding what the value
# detectors read in it: a date or time shows the digits its text had (a number cast from
# text drops an SSN's leading zero and is read by no detector; an interval or a time
# renders digits otherwise)
_TIME_CASTS = frozenset({"date", "timestamp", "timestamptz"})
# arithmetic: no operator of pg_catalog computes text from text with these; JSON
# extraction gives a part of a document as it is
_KEEPING_OPERATORS = frozenset({"+", "-", "*", "/", "%", "->", "->>", "#>", "#>>"})
_KEEPING_NODES = frozenset({"CoalesceExpr", "MinMaxExpr", "CollateClause"})
# Of those, the ones computing a number from their columns' (not giving one of their values
# as it is): the value detectors read a card kept as a number only as it is stored, not as
# `num - 1`, `num % 100000000` or a sum beside a constant. The columns reaching a value
# through these are its `arithmetic` (the policy masks it whole where one of them is a wide
# number column: postgres_lineage.rego)
_COMPUTING_OPERATORS = frozenset({"+", "-", "*", "/", "%"})
_COMPUTING_FUNCTIONS = frozenset({"sum", "avg"})
# Catalog tables drivers read to learn types and columns (asyncpg's type introspection,
# psycopg's, SQLAlchemy's reflection): names, OIDs and flags the server keeps, no data of
# the database's own tables. An expression over their columns changes no stored free text.
# Not the statistics views, pg_proc or comments, which hold text others wrote, nor pg_roles
# or pg_authid (a role's settings, a password's hash: text the value detectors may know).
# pg_database (psql's \l): names, owners, encodings, locales and ACLs; pg_policy and
# pg_auth_members (psql's \dp and \du): row security policies as DDL declared them (a
# constraint's or default's expression is pg_constraint's and pg_attrdef's), role grants;
# pg_language (\dL): names, owners, flags, handlers.
_CATALOG_TABLES = frozenset((
    "pg_type", "pg_namespace", "pg_class", "pg_attribute", "pg_range", "pg_enum",
    "pg_index", "pg_constraint", "pg_attrdef", "pg_am", "pg_collation", "pg_inherits",
    "pg_opclass", "pg_operator", "pg_cast", "pg_depend", "pg_tablespace", "pg_extension",
    "pg_database", "pg_policy", "pg_auth_members", "pg_language", "pg_ts_config",
    "pg_ts_dict", "pg_ts_parser", "pg_ts_template",
))  # fmt: skip
_CATALOG = _CATALOG_TABLES | {f"pg_catalog.{t}" for t in _CATALOG_TABLES}
# Columns of the server's own views (and pg_proc's) that hold names, types, flags and
# owners, never text others wrote (a comment, a function's body, a setting: rolconfig,
# column_default and view_definition are left out): what a query makes of them (Grafana's
# quote_ident(table_name), psql's \du member list) changes no data of the database's own
# tables. The views' are among the columns proxies/postgres/columns.py SYSTEM_VIEW_COLUMNS
# reads as stored (tests/test_usability_p5.py checks it). pg_catalog's by either
# name (nothing can be made there: only shadows elsewhere, denied as _CATALOG's);
# information_schema's only qualified, and only while initdb's view is there (a view
# replaced, dropped or made again there: the proxy lists its columns to the policy as
# carrying any column, columns.py UNTRUSTED_SQL).
_SYSTEM_VIEWS = {
    "pg_roles": "rolname rolsuper rolinherit rolcreaterole rolcreatedb rolcanlogin "
    "rolreplication rolconnlimit rolvaliduntil rolbypassrls oid",
    "pg_user": "usename usesysid usecreatedb usesuper userepl usebypassrls valuntil",
    "pg_tables": "schemaname tablename tableowner tablespace hasindexes hasrules "
    "hastriggers rowsecurity",
    "pg_views": "schemaname viewname viewowner",
    "pg_matviews": "schemaname matviewname matviewowner tablespace hasindexes ispopulated",
    # the server's settings as SHOW prints them (readers: the rows of the settings they may
    # read, a row filter), not sourcefile and sourceline (the configuration files' paths)
    "pg_settings": "name setting unit category short_desc extra_desc context vartype source "
    "min_val max_val enumvals boot_val reset_val pending_restart",
    # a catalog table, but for the names and flags (not prosrc, probin, proconfig: a
    # function's body and settings are text others wrote): pgjdbc's getFunctions and
    # getProcedures (`p.proname || '_' || p.oid`)
    "pg_proc": "oid proname pronamespace proowner prolang procost prorows provariadic "
    "prosupport prokind prosecdef proleakproof proisstrict proretset provolatile "
    "proparallel pronargs pronargdefaults prorettype proargtypes proallargtypes "
    "proargmodes proargnames protrftypes proacl",
}
# The columns of the catalog relations lineage trusts (PostgreSQL 15's; a table's system
# columns too): a bare name none of a FROM list's catalogs has is an outer query's column
# (`SELECT (SELECT reverse(note) FROM pg_class LIMIT 1) FROM customers` reads the note),
# looked up there (_bare_name); one a catalog has is that catalog's. A column a later
# version adds is looked up outside (masked: the safe mistake); one it renames or drops
# (daticulocale, colliculocale in 17) is still claimed: an outer query's column of that
# very name would be read as the catalog's (regenerate the lists for another version).
_SYSTEM_COLUMNS = frozenset(("ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"))
_CATALOG_VIEWS = frozenset(("pg_roles", "pg_user", "pg_tables", "pg_views", "pg_matviews"))
_CATALOG_COLUMN_NAMES = {
    "pg_am": "oid amname amhandler amtype",
    "pg_attrdef": "oid adrelid adnum adbin",
    "pg_attribute": (
        "attrelid attname atttypid attstattarget attlen attnum attndims attcacheoff atttypmod "
        "attbyval attalign attstorage attcompression attnotnull atthasdef atthasmissing "
        "attidentity attgenerated attisdropped attislocal attinhcount attcollation attacl "
        "attoptions attfdwoptions attmissingval"
    ),
    "pg_auth_members": "roleid member grantor admin_option",
    "pg_cast": "oid castsource casttarget castfunc castcontext castmethod",
    "pg_class": (
        "oid relname relnamespace reltype reloftype relowner relam relfilenode reltablespace "
        "relpages reltuples relallvisible reltoastrelid relhasindex relisshared relpersistence "
        "relkind relnatts relchecks relhasrules relhastriggers relhassubclass relrowsecurity "
        "relforcerowsecurity relispopulated relreplident relispartition relrewrite relfrozenxid "
        "relminmxid relacl reloptions relpartbound"
    ),
    "pg_collation": (
        "oid collname collnamespace collowner collprovider collisdeterministic collencoding "
        "collcollate collctype colliculocale collversion"
    ),
    "pg_constraint": (
        "oid conname connamespace contype condeferrable condeferred convalidated conrelid "
        "contypid conindid conparentid confrelid confupdtype confdeltype confmatchtype conislocal "
        "coninhcount connoinherit conkey confkey conpfeqop conppeqop conffeqop confdelsetcols "
        "conexclop conbin"
    ),
    "pg_database": (
        "oid datname datdba encoding datlocprovider datistemplate datallowconn datconnlimit "
        "datfrozenxid datminmxid dattablespace datcollate datctype daticulocale datcollversion "
        "datacl"
    ),
    "pg_depend": "classid objid objsubid refclassid refobjid refobjsubid deptype",
    "pg_enum": "oid enumtypid enumsortorder enumlabel",
    "pg_extension": (
        "oid extname extowner extnamespace extrelocatable extversion extconfig extcondition"
    ),
    "pg_index": (
        "indexrelid indrelid indnatts indnkeyatts indisunique indnullsnotdistinct indisprimary "
        "indisexclusion indimmediate indisclustered indisvalid indcheckxmin indisready indislive "
        "indisreplident indkey indcollation indclass indoption indexprs indpred"
    ),
    "pg_inherits": "inhrelid inhparent inhseqno inhdetachpending",
    "pg_language": (
        "oid lanname lanowner lanispl lanpltrusted lanplcallfoid laninline lanvalidator lanacl"
    ),
    "pg_matviews": (
        "schemaname matviewname matviewowner tablespace hasindexes ispopulated definition"
    ),
    "pg_namespace": "oid nspname nspowner nspacl",
    "pg_opclass": (
        "oid opcmethod opcname opcnamespace opcowner opcfamily opcintype opcdefault opckeytype"
    ),
    "pg_operator": (
        "oid oprname oprnamespace oprowner oprkind oprcanmerge oprcanhash oprleft oprright "
        "oprresult oprcom oprnegate oprcode oprrest oprjoin"
    ),
    "pg_policy": "oid polname polrelid polcmd polpermissive polroles polqual polwithcheck",
    "pg_proc": (
        "oid proname pronamespace proowner prolang procost prorows provariadic prosupport prokind "
        "prosecdef proleakproof proisstrict proretset provolatile proparallel pronargs "
        "pronargdefaults prorettype proargtypes proallargtypes proargmodes proargnames "
        "proargdefaults protrftypes prosrc probin prosqlbody proconfig proacl"
    ),
    "pg_range": "rngtypid rngsubtype rngmultitypid rngcollation rngsubopc rngcanonical rngsubdiff",
    "pg_roles": (
        "rolname rolsuper rolinherit rolcreaterole rolcreatedb rolcanlogin rolreplication "
        "rolconnlimit rolpassword rolvaliduntil rolbypassrls rolconfig oid"
    ),
    "pg_tables": (
        "schemaname tablename tableowner tablespace hasindexes hasrules hastriggers rowsecurity"
    ),
    "pg_tablespace": "oid spcname spcowner spcacl spcoptions",
    "pg_ts_config": "oid cfgname cfgnamespace cfgowner cfgparser",
    "pg_ts_dict": "oid dictname dictnamespace dictowner dicttemplate dictinitoption",
    "pg_ts_parser": "oid prsname prsnamespace prsstart prstoken prsend prsheadline prslextype",
    "pg_ts_template": "oid tmplname tmplnamespace tmplinit tmpllexize",
    "pg_type": (
        "oid typname typnamespace typowner typlen typbyval typtype typcategory typispreferred "
        "typisdefined typdelim typrelid typsubscript typelem typarray typinput typoutput "
        "typreceive typsend typmodin typmodout typanalyze typalign typstorage typnotnull "
        "typbasetype typtypmod typndims typcollation typdefaultbin typdefault typacl"
    ),
    "pg_user": (
        "usename usesysid usecreatedb usesuper userepl usebypassrls passwd valuntil useconfig"
    ),
    "pg_views": "schemaname viewname viewowner definition",
}
_CATALOG_COLUMNS = {
    name: frozenset(columns.split()) | (frozenset() if name in _CATALOG_VIEWS else _SYSTEM_COLUMNS)
    for name, columns in _CATALOG_COLUMN_NAMES.items()
}
_INFORMATION_SCHEMA_VIEWS = {
    "schemata": "catalog_name schema_name schema_owner",
    "tables": "table_catalog table_schema table_name table_type is_insertable_into "
    "is_typed commit_action",
    "columns": "table_catalog table_schema table_name column_name ordinal_position "
    "is_nullable data_type character_maximum_length character_octet_length "
    "numeric_precision numeric_precision_radix numeric_scale datetime_precision "
    "udt_catalog udt_schema udt_name dtd_identifier is_identity is_generated "
    "is_updatable collation_name",
    "views": "table_catalog table_schema table_name check_option is_updatable is_insertable_into",
    "table_constraints": "constraint_catalog constraint_schema constraint_name "
    "table_catalog table_schema table_name constraint_type is_deferrable "
    "initially_deferred",
    "key_column_usage": "constraint_catalog constraint_schema constraint_name "
    "table_catalog table_schema table_name column_name ordinal_position "
    "position_in_unique_constraint",
    "referential_constraints": "constraint_catalog constraint_schema constraint_name "
    "unique_constraint_catalog unique_constraint_schema unique_constraint_name "
    "match_option update_rule delete_rule",
    "constraint_column_usage": "table_catalog table_schema table_name column_name "
    "constraint_catalog constraint_schema constraint_name",
}
SYSTEM_VIEW_COLUMNS: dict[str, frozenset[str]] = {
    **{v: frozenset(c.split()) for v, c in _SYSTEM_VIEWS.items()},
    **{f"pg_catalog.{v}": frozenset(c.split()) for v, c in _SYSTEM_VIEWS.items()},
    **{
        f"information_schema.{v}": frozenset(c.split())
        for v, c in _INFORMATION_SCHEMA_VIEWS.items()
    },
}
# names a relation made outside pg_catalog may not take: it would be read in the place of
# a catalog table or view lineage trusts (pg_temp is searched first)
_SHADOWED_NAMES = _CATALOG_TABLES | frozenset(_SYSTEM_VIEWS)


def _trusted(table: str, column: str) -> bool:
    """Column `column` of relation `table` (as written) holds catalogue names and flags,
    no data of the database's own tables (_CATALOG, SYSTEM_VIEW_COLUMNS)."""
    return table in _CATALOG or column.lower() in SYSTEM_VIEW_COLUMNS.get(table, ())


# casts that take text as it is, uncut (varchar(n), char, char(n), name cut it)
_KEEPING_TYPES = frozenset({"text", "varchar", "citext", "unknown"})

# uses a computed value keeps (comparing or grouping by one is `other`)
_ORDERING_USES = frozenset({"order", "partial", "choice", "sequence", "arranged"})
_EQUALITY_OPS = frozenset({"=", "<>", "!="})
_RANGE_OPS = frozenset({"<", ">", "<=", ">="})
_PATTERN_OPS = frozenset({"~~", "~~*", "!~~", "!~~*", "~", "~*", "!~", "!~*", "^@"})
_USE_BY_KIND = {
    "AEXPR_DISTINCT": "equality",
    "AEXPR_NOT_DISTINCT": "equality",
    "AEXPR_IN": "equality",
    "AEXPR_LIKE": "pattern",
    "AEXPR_ILIKE": "pattern",
    "AEXPR_SIMILAR": "pattern",
    "AEXPR_BETWEEN": "range",
    "AEXPR_NOT_BETWEEN": "range",
    "AEXPR_BETWEEN_SYM": "range",
    "AEXPR_NOT_BETWEEN_SYM": "range",
}

# Statement tags whose lineage is read, and where their query sits.
_QUERY_FIELD = {
    "DeclareCursorStmt": "query",
    "PrepareStmt": "query",
    "ExplainStmt": "query",
    "CopyStmt": "query",
    "CreateTableAsStmt": "query",
}
_DML = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"})
# Statements that name a relation they make or rename (their name field): only `shadows`
_NAMING = {"CreateStmt": "relation", "ViewStmt": "view", "RenameStmt": "newname"}
LINEAGE_TAGS = frozenset({"SelectStmt", *_DML, *_QUERY_FIELD, *_NAMING})


class Flow:
    """Where one value comes from: how (kind), which columns, which whole tables; whether
    they may be columns of the database's own tables (user: anything but the catalog
    tables drivers read, _CATALOG), and whether such a column's text may have been changed
    on the way (changed: anything but its value itself, KEEPING nodes and functions only)."""

    __slots__ = (
        "arithmetic", "changed", "columns", "documents", "keyed", "kind", "tables", "user",
        "wide",
    )  # fmt: skip

    def __init__(
        self,
        kind: str,
        columns: dict[str, None] | None = None,
        tables: dict[str, None] | None = None,
        changed: bool = False,
        user: bool = True,
        keyed: dict[str, None] | None = None,
        documents: dict[str, None] | None = None,
        arithmetic: dict[str, None] | None = None,
        wide: dict[str, None] | None = None,
    ) -> None:
        self.kind = kind
        self.columns = columns if columns is not None else {}
        self.tables = tables if tables is not None else {}
        self.changed = changed
        self.user = user
        # those of columns that reach this value only through a question about a key the
        # statement names (`profile ? 'status'`, `profile @> '{"status": "ok"}'`), how many
        # keys it has, or a value under a key cast to a number, date or boolean: never as a
        # whole JSON or XML document, nor as a value under a key, which may be a document
        # of its own holding masked keys (`profile->>'contact'` of {"contact": {"email":
        # ...}}), whose masked keys it would answer about
        self.keyed = keyed if keyed is not None else {}
        # those of columns the statement made a document of (`notes::jsonb`): a text
        # column read as JSON or XML holds the keys the masks cover as a document does
        self.documents = documents if documents is not None else {}
        # those of columns that reached this value through arithmetic or a sum/avg
        # (_COMPUTING): a number computed from theirs, which the value detectors reading a
        # stored number (a card kept as a bigint) cannot tell from any other
        self.arithmetic = arithmetic if arithmetic is not None else {}
        # the names of keys whose value, taken out of a document, reached this one cast to
        # a number type that holds a card or phone number's digits (`(doc->>'card')::
        # numeric`: not _NARROW_CASTS): keyed, but a number the value detectors mask when the
        # document is selected, questioned as a wide number column's is
        self.wide = wide if wide is not None else {}

    def _with(self, kind: str, changed: bool, keyed: dict[str, None]) -> Flow:
        return Flow(
            kind,
            self.columns,
            self.tables,
            changed,
            self.user,
            keyed,
            self.documents,
            self.arithmetic,
            self.wide,
        )

    def derived(self) -> Flow:
        """This flow computed upon: no longer a stored column, and `*` becomes a whole row."""
        if self.kind == PLAIN:
            return self._with(EXPRESSION, self.changed, self.keyed)
        if self.kind == STAR:
            return self._with(WHOLE_ROW, self.changed, self.keyed)
        return self

    def transformed(self) -> Flow:
        """This flow computed upon by something that may change its text."""
        flow = self.derived()
        return flow._with(flow.kind, flow.user, flow.keyed)

    def taken_part(self) -> Flow:
        """This flow's value with a constant key named in a question about it, or its shape
        taken: each of its columns reaches the result only keyed (its whole value never
        does). Not for a value taken out under a key: that value may be a document holding
        masked keys (see `keyed`)."""
        return self._with(self.kind, self.changed, self.columns)

    def as_document(self) -> Flow:
        """This flow cast to a document type (json, jsonb, xml, hstore)."""
        documents = {**self.documents, **self.columns}
        flow = self.derived()
        return Flow(
            flow.kind, flow.columns, flow.tables, flow.changed, flow.user, {}, documents,
            flow.arithmetic, flow.wide,
        )  # fmt: skip


def _merge(kind: str, flows: list[Flow], keeps: bool = False, computes: bool = False) -> Flow:
    """One value computed from flows: the strongest of kind and the flows' derived kinds.
    keeps: the computation gives one of the flows' values as it is (COALESCE, a set
    operation, min()), so the result is changed only when one of them is; otherwise it is
    changed (the value detectors cannot be trusted to recognise what it made of them).
    computes: it is arithmetic or a sum/avg over them (every column reached is then
    `arithmetic`); either way the flows' own arithmetic columns are carried on."""
    columns: dict[str, None] = {}
    arithmetic: dict[str, None] = {}
    tables: dict[str, None] = {}
    keyed: dict[str, None] = {}
    documents: dict[str, None] = {}
    wide: dict[str, None] = {}
    whole: set[str] = set()
    changed = user = False
    for flow in flows:
        flow = flow.derived()
        if _RANK[flow.kind] > _RANK[kind]:
            kind = flow.kind
        columns.update(flow.columns)
        tables.update(flow.tables)
        documents.update(flow.documents)
        wide.update(flow.wide)
        arithmetic.update(flow.columns if computes else flow.arithmetic)
        if computes:
            arithmetic.update(flow.arithmetic)
        if flow.keyed:
            keyed.update(flow.keyed)
            whole.update(c for c in flow.columns if c not in flow.keyed)
        else:
            whole.update(flow.columns)
        if flow.user and (flow.columns or flow.tables):
            user = True
            if flow.changed or not keeps:
                changed = True
    if keyed and whole:
        keyed = {c: None for c in keyed if c not in whole}
    return Flow(kind, columns, tables, changed, user, keyed, documents, arithmetic, wide)


Output = tuple[str, Flow]


class Item:
    """One FROM item as a query's scope sees it: a table (columns unknown), or a derived
    relation (subquery, CTE, VALUES, function) whose outputs are known, or known only as
    one opaque flow every name reaches."""

    __slots__ = (
        "exact", "hidden", "members", "names", "opaque", "outputs", "positions", "table",
    )  # fmt: skip

    def __init__(
        self,
        names: tuple[str, ...],
        table: str | None = None,
        outputs: list[Output] | None = None,
        opaque: Flow | None = None,
        members: list[Item] | None = None,
        exact: bool = True,
    ) -> None:
        self.names = names
        self.table = table
        # the table's name was written in lower case, as the catalog's are: a quoted
        # "INFORMATION_SCHEMA".tables is another schema's (one renamed to that), never
        # the catalog's, though `table` (lower case) reads alike
        self.exact = exact
        self.outputs = outputs or []
        self.opaque = opaque
        self.members = members  # the items a JOIN ... AS alias stands for
        # a FROM function of whole numbers only (generate_series, generate_subscripts):
        # its outputs are an array's positions, never a document's key
        self.positions = False
        # names a JOIN ... USING / NATURAL JOIN merged: `*` over the join shows the merged
        # column once, in front (its own `item.*` still shows them)
        self.hidden: set[str] = set()

    def expand(self) -> list[Output]:
        """What `item.*` stands for."""
        if self.table is not None:
            return [("", Flow(STAR, tables={self.table: None}))]
        if self.members is not None:
            return [o for m in self.members for o in m.visible()]
        if self.opaque is not None and not self.outputs:
            return [("", self.opaque)]
        return self.outputs

    def trusted(self, name: str) -> bool:
        """Column name of this table holds catalogue names and flags only (_trusted)."""
        return self.table is not None and self.exact and _trusted(self.table, name)

    def lacks(self, name: str) -> bool:
        """This is a catalog relation known to have no column name (_CATALOG_COLUMNS)."""
        if self.table is None or not self.exact:
            return False
        known = _CATALOG_COLUMNS.get(self.table.removeprefix("pg_catalog."))
        return known is not None and name not in known

    def visible(self) -> list[Output]:
        """What an unqualified `*` over this item stands for: merged join columns once."""
        if not self.hidden:
            return self.expand()
        return [(n, f) for n, f in self.expand() if n not in self.hidden]

    def column(self, name: str) -> Flow | None:
        """The flow of column name of this item; None when it has none by that name."""
        if self.table is not None:
            for output, renamed in self.outputs:  # names an alias column list gave
                if output == name:
                    return renamed
            return Flow(PLAIN, _named(name), user=not self.trusted(name))
        if self.members is not None:
            for output, renamed in self.outputs:  # names a join's alias column list gave
                if output == name:
                    return renamed
        for member in self.members or ():
            flow = member.column(name)
            if flow is not None:
                return flow
        for output, flow in self.outputs:
            if output == name:
                return flow
        for output, flow in self.outputs:
            if output == "" and flow.tables:  # `*` inside: the name may be one of its columns
                return Flow(
                    PLAIN if flow.kind == STAR else flow.kind,
                    {name: None},
                    None,
                    flow.changed,
                    flow.user,
                )
        return self.opaque

    def whole(self) -> Flow:
        return _merge(WHOLE_ROW if self.table else EXPRESSION, [f for _, f in self.expand()])


Scope = list[list[Item]]


class Lineage:
    """The walk of one statement: collects predicates while computing outputs."""

    __slots__ = (
        "arguments", "branches", "documents", "joins", "matching", "predicates", "shadows",
        "sorting", "wide", "written",
    )  # fmt: skip

    def __init__(self, joins: bool = True) -> None:
        # whether `joined` may find stored columns by name: not in a statement with a FROM
        # function, XMLTABLE or JSON_TABLE, whose columns (`json_to_record(...) AS x(a
        # text)`, jsonb_each_text's value) a bare name falls back to a table's column for,
        # though the reader sized them (repeat('x', 1073741800) inside)
        self.joins = joins
        # (column, use) → whether every such use reached the column only keyed (Flow.keyed)
        self.predicates: dict[tuple[str, str], bool] = {}
        # the (column, use) of predicates that met a column made a document (Flow.documents)
        # whole (not keyed)
        self.documents: set[tuple[str, str]] = set()
        # the (column, use) of predicates that met a key's value cast to a wide number
        # (Flow.wide)
        self.wide: set[tuple[str, str]] = set()
        # a set operation's branches that are no set operation themselves, by the id of
        # its fields: an enclosing UNION compares the rows of each (leaf) branch
        self.branches: dict[int, list[list[Output]]] = {}
        # relations it makes or renames under the name of a catalog table (_CATALOG)
        self.shadows: list[str] = []
        # the values the statement stores: INSERT's rows, UPDATE's and MERGE's SET values,
        # CREATE TABLE AS and SELECT INTO's outputs
        self.written: list[Flow] = []
        # values given to functions that whole rows reach or that the way there may have
        # changed (a column as it is, or as COALESCE or min() give it, is left out), by
        # the function's name as the server looks it up (schema.name for one written with
        # a schema other than pg_catalog): a function may keep what it is given where no
        # mask reads it (setval, an advisory lock, pg_replication_origin_create's name, a
        # function of the database's that INSERTs), and the value detectors cannot
        # recognise what a query made of a column's text
        self.arguments: list[tuple[str, Flow]] = []
        # inside a FULL JOIN's condition: its comparisons are orderings (Lineage.record)
        self.sorting = False
        # per SELECT being walked (outermost first), the values compared column to column
        # in it or in a sub-query of it (a join's, IN (SELECT ...)'s, a correlated
        # EXISTS's): a hash or merge join returns rows in the order of those values or of
        # their hashes (Lineage.grouped_outputs)
        self.matching: list[list[Flow]] = []

    # --- entry points -------------------------------------------------------

    def statement(self, tag: str, fields: Fields) -> list[Output]:
        if tag in _NAMING:
            name = fields.get(_NAMING[tag])
            if isinstance(name, str):
                self.shadowing({"relname": name})
            elif isinstance(name, dict):
                self.shadowing(name)
            return []
        if tag == "SelectStmt":
            outputs = self.select(fields, [], {})
            if fields.get("intoClause"):
                self.shadowing(fields["intoClause"].get("rel") or {})
                self.written.extend(flow for _, flow in outputs)  # SELECT ... INTO t
            return outputs
        if tag == "CreateTableAsStmt":
            self.shadowing((fields.get("into") or {}).get("rel") or {})
            query = fields.get("query") or {}
            ((inner_tag, inner),) = query.items() if len(query) == 1 else (("", {}),)
            if inner_tag in LINEAGE_TAGS and inner_tag not in _QUERY_FIELD:
                self.written.extend(flow for _, flow in self.statement(inner_tag, inner))
            else:
                # CREATE TABLE AS EXECUTE p: rows of a statement prepared before
                self.written.append(Flow(WHOLE_ROW, tables={"*": None}))
            return []  # nothing reaches the client
        if tag in _DML:
            return self.dml(tag, fields, [], {})
        if tag == "CopyStmt" and fields.get("is_from", False):
            return []
        if tag == "CopyStmt" and "query" not in fields:
            relation = fields.get("relation")
            if relation is None:
                return []
            table = _relation(relation)
            names = [_sval(n) for n in fields.get("attlist", ())]
            if names:
                return [(n, Flow(PLAIN, _named(n))) for n in names]
            return [("", Flow(STAR, tables={table: None}))]
        query = fields.get(_QUERY_FIELD[tag])
        if not query:
            return []
        ((inner_tag, inner),) = query.items()
        if inner_tag in LINEAGE_TAGS and inner_tag not in _QUERY_FIELD:
            return self.statement(inner_tag, inner)
        return []

    def shadowing(self, relation: Fields) -> None:
        """A relation made or renamed: a catalog table's name outside pg_catalog would be
        read in the catalog table's place (pg_temp is searched first, and search_path
        may put any schema before pg_catalog), and lineage trusts those tables' columns."""
        name = str(relation.get("relname", "")).lower()
        schema = relation.get("schemaname")
        if name in _SHADOWED_NAMES and schema != "pg_catalog":
            self.shadows.append(name)
        elif isinstance(schema, str) and schema.lower() == "information_schema":
            self.shadows.append(f"information_schema.{name}")

    def record(self, flow: Flow, use: str) -> None:
        """Columns of flow used as use; a computed value is compared or grouped as `other`
        (md5(email) = '...'; GROUP BY ascii(email) > 100 splits rows by a question about
        the value, which array_agg(id) then answers), while ordering by one stays ordering.
        A comparison of a FULL JOIN's condition (self.sorting) is an ordering: a merge join
        returns the rows of both sides in the order of the columns it compares, those of
        either side that match nothing among the other's (a reader's VALUES list of
        guesses beside the stored values: where each guess lands answers `<`). The server
        has no other plan when a compared type cannot be hashed (money, bit, tsvector),
        and chooses it over hashing when it costs less."""
        if self.sorting and use in ("equality", "join"):
            use = "order"
        if use == "group":
            if flow.kind in _COMPUTED:
                use = "other"
        elif use not in _ORDERING_USES and flow.kind != PLAIN:
            use = "other"
        for column in flow.columns:
            key = (column, use)
            self.predicates[key] = self.predicates.get(key, True) and column in flow.keyed
            if column in flow.wide:
                self.wide.add(key)
            if column in flow.documents and column not in flow.keyed:
                self.documents.add(key)
        if flow.kind in (WHOLE_ROW, STAR) or (flow.tables and flow.kind != PLAIN):
            self.predicates[("*", use)] = False

    # --- queries ------------------------------------------------------------

    def partial(self, flow: Flow) -> None:
        """flow's columns go into a computation that may fail for some of their values."""
        if flow.columns or flow.tables:
            self.record(flow, "partial")

    def select(self, fields: Fields, outer: Scope, ctes: dict[str, Item]) -> list[Output]:
        """The outputs of a SelectStmt (its fields), recording its predicates."""
        with_clause = fields.get("withClause")
        if with_clause:
            ctes = self.with_clause(with_clause, outer, ctes)
        op = fields.get("op", "SETOP_NONE")
        if op != "SETOP_NONE":
            left = self.select(fields["larg"], outer, ctes)
            right = self.select(fields["rarg"], outer, ctes)
            branches = self.branches.pop(id(fields["larg"]), [left])
            branches += self.branches.pop(id(fields["rarg"]), [right])
            if op != "SETOP_UNION" or not fields.get("all", False):
                # UNION, INTERSECT, EXCEPT (and their ALL but UNION ALL) compare rows:
                # `SELECT left(password, 1) ... UNION SELECT 'h'` answers in how many rows
                # come back, as GROUP BY of each output would. And they order them: the
                # server carries a set operation out by sorting the rows on every column in
                # turn (always when one of them cannot be hashed: a tsvector beside them),
                # and returns them in that order, so `SELECT password, id, ''::tsvector
                # ... UNION SELECT 'hunter2-b', 0, ''` shows where the constant sorts among
                # the passwords (id 0 before or after Ada's: a binary search of the value).
                # An ordering of each output, as ORDER BY of it would be.
                for outputs in branches:
                    for _, flow in outputs:
                        self.record(flow, "order")
            self.branches[id(fields)] = branches
            combined = _set_operation(left, right)
            self.clauses(fields, [[Item(("",), outputs=combined)], *outer], ctes, combined)
            return combined
        if "valuesLists" in fields:
            return self.values(fields["valuesLists"], outer, ctes)
        items: list[Item] = []
        scope = [items, *outer]
        self.matching.append([])
        try:
            for node in fields.get("fromClause", ()):
                self.from_item(node, scope, ctes, items)
            outputs = self.targets(fields.get("targetList", ()), scope, ctes)
            where = fields.get("whereClause")
            if where:
                self.predicate(where, scope, ctes, False)
            grouped = [g for g in self.clauses(fields, scope, ctes, outputs) if g.user]
        finally:
            matched = self.matching.pop()
        if not grouped and matched and not _one_row(fields, outputs):
            # no grouping reorders the joined rows: they come back as the join left them
            grouped = matched
        if grouped and not _ordered_by_every_output(fields, outputs):
            # The groups come back in the order of what they were grouped or joined by (a
            # sorted plan: `GROUP BY note, B'1'::varbit`, which cannot be hashed, a large
            # input, an index) or of its hashes. A value the masks show in part (free text
            # whose card the value detectors masked, a document whose masked keys are
            # hidden) lands among the others in that order: 'card **** **** **** 1111 on
            # file' between 'card 41 x' and 'card 42 x' told its card's first digits, as
            # ORDER BY note would. Whether that matters is the policy's (`arranged`);
            # an ORDER BY naming every output leaves no order of theirs to show.
            for flow in grouped:
                self.record(flow, "arranged")
        if grouped and not _ordered_by_outputs(fields, outputs, grouped):
            outputs = self.grouped_outputs(outputs, grouped)
        return outputs

    def matched(self, flows: list[Flow]) -> None:
        """Values compared with each other, column to column (two or more of flows reach
        columns): every SELECT being walked returns its rows in their order."""
        reaching = [f for f in flows if f.columns or f.tables]
        if len(reaching) > 1:
            for matching in self.matching:
                # (the catalog tables drivers read hold no masked value: _CATALOG)
                matching.extend(f for f in reaching if f.user)

    def grouped_outputs(self, outputs: list[Output], grouped: list[Flow]) -> list[Output]:
        """The outputs of a SELECT that groups its rows (GROUP BY, DISTINCT), each carrying
        what they were grouped by: the groups come back in the order of those values (a
        sorted plan: `GROUP BY password, B'1'::varbit`, which cannot be hashed) or of their
        hashes, so any output telling the groups apart (min(id), a name, a count) answers
        how the grouped values compare. Only which columns a computed output carries
        changes: its own text was not changed by what it was grouped by (count(*) stays a
        count), so the policy masks it where those columns are masked. A stored column as
        it is (plain) is masked by its own name only, so it cannot carry them: the grouped
        values it does not carry are a `sequence` (`SELECT DISTINCT id, ssn`): the rows
        come back in their order. The same for the values a join compares (self.matching)
        where no grouping reorders its rows."""
        carried = _merge(EXPRESSION, grouped, keeps=True)
        if not carried.columns and not carried.tables:
            return outputs
        result: list[Output] = []
        for name, flow in outputs:
            if _carries(flow, carried):
                result.append((name, flow))  # nothing it does not carry already
            elif flow.kind in (PLAIN, STAR):
                for other in grouped:
                    if any(c not in flow.columns for c in other.columns) or any(
                        t not in flow.tables for t in other.tables
                    ):
                        self.record(other, "sequence")
                result.append((name, flow))
            else:
                merged = _merge(EXPRESSION, [flow, carried], keeps=True)
                merged.changed = flow.changed
                merged.arithmetic = flow.arithmetic
                merged.user = flow.user  # whether its own text is the database's
                result.append((name, merged))
        return result

    def clauses(
        self, fields: Fields, scope: Scope, ctes: dict[str, Item], outputs: list[Output]
    ) -> list[Flow]:
        """GROUP BY, HAVING, ORDER BY, DISTINCT ON and WINDOW of one SELECT; the flows of
        what it groups its rows by (GROUP BY's items, every output under DISTINCT)."""
        grouped: list[Flow] = []
        for node in fields.get("groupClause", ()):
            self.ordering(node, scope, ctes, outputs, "group", grouped)
        having = fields.get("havingClause")
        if having:
            self.predicate(having, scope, ctes, False)
        for node in fields.get("sortClause", ()):
            self.ordering(node["SortBy"]["node"], scope, ctes, outputs, "order")
        for node in fields.get("distinctClause", ()):
            if node:  # DISTINCT alone is a list holding one empty node
                # DISTINCT ON is carried out by sorting on its expressions (the server has
                # no other plan for it): the rows come back in their order, an ordering
                self.ordering(node, scope, ctes, outputs, "order")
            else:
                # DISTINCT groups by every output: how many rows come back answers
                # whether `left(password, 1)` of two rows (or of a row and a constant
                # of a UNION ALL under it) is the same, as GROUP BY of it would
                for _, flow in outputs:
                    self.record(flow, "group")
                    grouped.append(flow)
        for node in fields.get("windowClause", ()):
            self.window(node["WindowDef"], scope, ctes)
        for clause in ("limitCount", "limitOffset"):
            if fields.get(clause):
                # how many rows come back is an answer too
                self.record(self.expr(fields[clause], scope, ctes).derived(), "other")
        return grouped

    def ordering(
        self,
        node: Fields,
        scope: Scope,
        ctes: dict[str, Item],
        outputs: list[Output],
        use: str,
        found: list[Flow] | None = None,
    ) -> None:
        """One ORDER BY / GROUP BY item: an output position, an output name, or an
        expression; the flows it reads are added to found (when given)."""
        found = found if found is not None else []
        ((tag, fields),) = node.items()
        if tag == "A_Const" and "ival" in fields:
            position = fields["ival"].get("ival", 0)
            for i, (name, flow) in enumerate(outputs):
                if not name:
                    # `*` or an unnamed output of unknown width: from here on a position
                    # may be any of the remaining outputs' columns
                    for _, rest in outputs[i:]:
                        self.record(rest, use)
                        found.append(rest)
                    return
                if i + 1 == position:
                    self.record(flow, use)
                    found.append(flow)
                    return
            return
        if tag == "ColumnRef" and len(fields["fields"]) == 1:
            name = _sval(fields["fields"][0])
            for output, flow in outputs:
                if name and output == name:
                    self.record(flow, use)
                    found.append(flow)
                    return
        if tag in ("GroupingSet", "RowExpr", "List"):
            for item in fields.get("content", fields.get("args", fields.get("items", ()))):
                self.ordering(item, scope, ctes, outputs, use, found)
            return
        flow = self.expr(node, scope, ctes)
        flow = flow if tag == "ColumnRef" else flow.derived()
        self.record(flow, use)
        found.append(flow)

    def window(self, fields: Fields, scope: Scope, ctes: dict[str, Item]) -> None:
        # a window's partitions are made by sorting on them (WindowAgg reads sorted input),
        # and the rows come back in that order: PARTITION BY orders as ORDER BY does
        for node in fields.get("partitionClause", ()):
            self.record(_bare(self.expr(node, scope, ctes), node), "order")
        for node in fields.get("orderClause", ()):
            inner = node["SortBy"]["node"]
            self.record(_bare(self.expr(inner, scope, ctes), inner), "order")

    def with_clause(self, fields: Fields, outer: Scope, ctes: dict[str, Item]) -> dict[str, Item]:
        ctes = dict(ctes)
        recursive = fields.get("recursive", False)
        for node in fields.get("ctes", ()):
            cte = node["CommonTableExpr"]
            name = cte.get("ctename", "")
            colnames = [_sval(c) for c in cte.get("aliascolnames", ())]
            ((tag, query),) = cte["ctequery"].items()
            item = Item((name,))
            if recursive:
                # A recursive CTE reads its own outputs: grow them until they stop changing.
                ctes[name] = item
                for _ in range(8):
                    before = _signature(item.outputs)
                    item.outputs = _renamed(self.query(tag, query, outer, ctes), colnames)
                    if _signature(item.outputs) == before:
                        break
                else:
                    item.opaque = _merge(EXPRESSION, [f for _, f in item.outputs])
            else:
                item.outputs = _renamed(self.query(tag, query, outer, ctes), colnames)
                ctes[name] = item
            item.outputs = self.search_and_cycle(cte, item.outputs)
        return ctes

    def search_and_cycle(self, cte: Fields, outputs: list[Output]) -> list[Output]:
        """A recursive CTE's SEARCH and CYCLE columns, which the server adds to its outputs:
        SEARCH ... BY note SET ord makes ord of the named columns (an array of their rows),
        to ORDER BY ord in their order; CYCLE note SET c USING path makes path the same and
        c whether a row's are among them (an equality). Unread, `ORDER BY ord` gave a
        reader the ids in the order of their e-mail addresses (a sensitive column) and of
        the notes whose cards the value detectors masked, and `path` came back as a column
        of no table, the addresses in it masked only by the value detectors (a***@...)
        and a password by nothing. Each is a value computed from the columns it names
        (masked whole; ordering by it orders by them); a name no output has stands for
        every output (the safe mistake)."""
        named = {name.lower(): flow for name, flow in outputs}

        def made_of(columns: Any) -> Flow:
            flows = [named.get(_sval(c).lower()) for c in columns or ()]
            if not flows or any(f is None for f in flows):
                flows = [f for _, f in outputs]
            return _merge(EXPRESSION, [f for f in flows if f is not None]).transformed()

        added: list[Output] = []
        search = cte.get("search_clause")
        if isinstance(search, dict):
            added.append(
                (str(search.get("search_seq_column", "")), made_of(search.get("search_col_list")))
            )
        cycle = cte.get("cycle_clause")
        if isinstance(cycle, dict):
            flow = made_of(cycle.get("cycle_col_list"))
            self.record(flow, "equality")  # the cycle's check: a row's values among those before
            added.append((str(cycle.get("cycle_mark_column", "")), flow))
            added.append((str(cycle.get("cycle_path_column", "")), flow))
        return [*outputs, *added] if added else outputs

    def query(self, tag: str, fields: Fields, outer: Scope, ctes: dict[str, Item]) -> list[Output]:
        if tag == "SelectStmt":
            return self.select(fields, outer, ctes)
        if tag in _DML:
            return self.dml(tag, fields, outer, ctes)
        return []

    def dml(self, tag: str, fields: Fields, outer: Scope, ctes: dict[str, Item]) -> list[Output]:
        """RETURNING of INSERT/UPDATE/DELETE/MERGE, recording WHERE, the INSERT's query,
        and MERGE's source, join condition and WHEN clauses."""
        with_clause = fields.get("withClause")
        if with_clause:
            ctes = self.with_clause(with_clause, outer, ctes)
        relation = fields.get("relation") or {}
        target = _table_item(relation)
        target.names = (*target.names, "old", "new")  # RETURNING old.x / new.x
        items: list[Item] = [target]
        scope = [items, *outer]
        for node in fields.get("fromClause") or fields.get("usingClause") or ():
            self.from_item(node, scope, ctes, items)
        if tag == "MergeStmt":
            self.merge_clauses(fields, scope, ctes, items)
        source = fields.get("selectStmt")
        if source and "SelectStmt" in source:
            self.written.extend(flow for _, flow in self.select(source["SelectStmt"], outer, ctes))
        conflict = fields.get("onConflictClause") or {}
        if conflict.get("whereClause"):
            self.predicate(conflict["whereClause"], scope, ctes, False)
        if tag == "UpdateStmt" or conflict.get("targetList"):
            # UPDATE's SET, and INSERT ... ON CONFLICT DO UPDATE SET (the row there)
            for target in fields.get("targetList") or conflict.get("targetList", ()):
                value = target["ResTarget"].get("val")
                if value:
                    self.written.append(self.expr(value, scope, ctes))
        where = fields.get("whereClause")
        if where:
            self.predicate(where, scope, ctes, False)
        returning = fields.get("returningClause") or {}
        targets = returning.get("exprs") or fields.get("returningList") or ()
        return self.targets(targets, scope, ctes)

    def merge_clauses(
        self, fields: Fields, scope: Scope, ctes: dict[str, Item], items: list[Item]
    ) -> None:
        """MERGE: its source joins the target on a condition; each WHEN clause has its own
        condition and the values it writes (read for the sub-queries they may hold)."""
        source = fields.get("sourceRelation")
        if source:
            self.from_item(source, scope, ctes, items)
        condition = fields.get("joinCondition")
        if condition:
            self.predicate(condition, scope, ctes, True)
        for node in fields.get("mergeWhenClauses", ()):
            clause = node["MergeWhenClause"]
            if clause.get("condition"):
                self.predicate(clause["condition"], scope, ctes, False)
            for target in clause.get("targetList", ()):
                if target["ResTarget"].get("val"):
                    self.written.append(self.expr(target["ResTarget"]["val"], scope, ctes))
            for value in clause.get("values", ()):
                self.written.append(self.expr(value, scope, ctes))

    def values(self, rows: list[Fields], outer: Scope, ctes: dict[str, Item]) -> list[Output]:
        columns: list[list[Flow]] = []
        for row in rows:
            for i, node in enumerate(row["List"].get("items", ())):
                if i == len(columns):
                    columns.append([])
                columns[i].append(self.expr(node, outer, ctes))
        return [
            (f"column{i + 1}", _merge(EXPRESSION, flows, keeps=True))
            for i, flows in enumerate(columns)
        ]

    # --- FROM ----------------------------------------------------------------

    def from_item(
        self, node: Fields, scope: Scope, ctes: dict[str, Item], items: list[Item]
    ) -> None:
        ((tag, fields),) = node.items()
        if tag == "RangeVar":
            name = fields.get("relname", "")
            cte = ctes.get(name) if "schemaname" not in fields else None
            if cte is not None:
                alias = fields.get("alias")
                seen_as = (alias["aliasname"],) if alias else cte.names
                colnames = [_sval(c) for c in alias.get("colnames", ())] if alias else []
                items.append(
                    Item(seen_as, outputs=_renamed(cte.outputs, colnames), opaque=cte.opaque)
                )
            else:
                items.append(_table_item(fields))
        elif tag == "JoinExpr":
            start = len(items)
            self.from_item(fields["larg"], scope, ctes, items)
            middle = len(items)
            self.from_item(fields["rarg"], scope, ctes, items)
            using = [_sval(n) for n in fields.get("usingClause", ())]
            # a FULL JOIN may be merged: its comparisons are orderings (record)
            sorting, self.sorting = self.sorting, fields.get("jointype") == "JOIN_FULL"
            try:
                if using or fields.get("isNatural", False):
                    self.merge_columns(items, start, middle, using, fields.get("join_using_alias"))
                quals = fields.get("quals")
                if quals:
                    self.predicate(quals, scope, ctes, True)
            finally:
                self.sorting = sorting
            alias = fields.get("alias")
            if alias:
                # `(a JOIN b) AS j`: j.x is a column of a or b; `AS j(x, y)` renames the
                # join's columns by position, and over a table which one a name lands on
                # is unknown: each may be any of them
                members = items[start:]
                colnames = [_sval(c) for c in alias.get("colnames", ())]
                outputs = _renamed([o for m in members for o in m.expand()], colnames)
                renamed = outputs[: len(colnames)]
                items.append(Item((alias["aliasname"],), outputs=renamed, members=members))
        elif tag == "RangeSubselect":
            outputs = self.select(fields["subquery"]["SelectStmt"], scope, ctes)
            items.append(_aliased(fields.get("alias"), outputs))
        elif tag == "RangeFunction":
            flows: list[Flow] = []
            names: list[str] = []
            counted: list[Flow] = []
            for function in fields.get("functions", ()):
                call = function["List"]["items"][0]
                flows.append(self.expr(call, scope, ctes))
                names.append(_column_name(call))
                counted.append(self.rows_of(call, flows[-1], scope, ctes))
            flow = _merge(EXPRESSION, flows)
            # a function in FROM decides how many rows there are, from what it reads
            self.record(_merge(EXPRESSION, counted), "other")
            alias = fields.get("alias")
            colnames = [_sval(c) for c in alias.get("colnames", ())] if alias else []
            label = alias["aliasname"] if alias else (names[0] if names else "")
            outputs = [(c, flow) for c in colnames] or [(label, flow)]
            constant = _constant_rows(fields.get("functions", ()), flow)
            if constant:  # the server's own words: no column reaches them
                outputs = [(c, Flow(EXPRESSION)) for c in colnames or constant]
            item = Item((label,), outputs=outputs, opaque=flow)
            item.positions = bool(names) and all(n in _POSITION_FUNCTIONS for n in names)
            items.append(item)
        elif tag == "RangeTableSample":
            self.from_item(fields["relation"], scope, ctes, items)
            # a sampling rate or seed computed from a value decides how many rows come back
            for node in [*fields.get("args", ()), fields.get("repeatable")]:
                if node:
                    self.record(self.expr(node, scope, ctes).derived(), "other")
        else:
            # XMLTABLE, JSON_TABLE, ...: any column may carry any column they read, and
            # their paths any key or element of a document they read
            flow = self.generic(fields, scope, ctes)
            flow = _merge(EXPRESSION, [flow, *_any_key([flow])])
            self.record(flow.derived(), "other")  # their rows depend on what they read
            alias = fields.get("alias")
            label = alias["aliasname"] if alias else ""
            items.append(Item((label,), opaque=flow.derived()))

    def merge_columns(
        self, items: list[Item], start: int, middle: int, using: list[str], alias: Fields | None
    ) -> None:
        """JOIN ... USING / NATURAL JOIN: each merged column compares the two sides (a join
        of two columns; equality when one side is a constant, as in a VALUES list; else a
        computed comparison) and is one output computed from both (a FULL JOIN's is
        COALESCE, and either side may be coerced: never a stored column). A NATURAL JOIN
        over a table, whose columns the PDP does not know, may merge any name the other
        side has."""
        left, right = items[start:middle], items[middle:]
        names = using or _natural_names(left, right)
        merged: list[Output] = []
        for name in names:
            sides = [_side_column(side, name) for side in (left, right)]
            flows = [f for f in sides if f is not None]
            if len(flows) == 2:
                plain = [f.kind == PLAIN for f in flows]
                constant = [not (f.columns or f.tables) for f in flows]
                if all(plain):
                    use = "join"
                elif any(plain) and any(constant):
                    use = "equality"
                else:
                    use = "other"
                for flow in flows:
                    self.record(flow, use)
                self.matched(flows)
            merged.append((name, _merge(EXPRESSION, flows, keeps=True)))
            for item in left + right:
                item.hidden.add(name)
        label = (alias["aliasname"],) if alias else ("",)
        items.insert(start, Item(label, outputs=merged))

    def targets(self, targets: Any, scope: Scope, ctes: dict[str, Item]) -> list[Output]:
        """The outputs of a target list (a SELECT's, a RETURNING's), `*` expanded."""
        outputs: list[Output] = []
        for target in targets:
            res = target["ResTarget"]
            val = res.get("val")
            star = _star_ref(val)
            if star is not None:
                outputs.extend(self.expand(star, scope))
            else:
                outputs.append((res.get("name") or _column_name(val), self.expr(val, scope, ctes)))
        return outputs

    def expand(self, ref: list[Fields], scope: Scope) -> list[Output]:
        """The outputs `*` or `rel.*` stands for in a target list."""
        if len(ref) == 1:
            return [o for item in scope[0] if not _hidden(item, scope[0]) for o in item.visible()]
        item = _find(scope, _sval(ref[-2]))
        if item is None:
            return [("", Flow(WHOLE_ROW, tables={_sval(ref[-2]).lower(): None}))]
        return item.expand()

    # --- expressions ---------------------------------------------------------

    def column(self, refs: list[Fields], scope: Scope) -> Flow:
        """The flow of one ColumnRef's fields."""
        last = refs[-1]
        if "A_Star" in last:
            if len(refs) == 1:
                return _merge(EXPRESSION, [i.whole() for level in scope[:1] for i in level])
            item = _find(scope, _sval(refs[-2]))
            return (
                item.whole()
                if item is not None
                else Flow(WHOLE_ROW, tables={_sval(refs[-2]).lower(): None})
            )
        name = _sval(last)
        if len(refs) == 1:
            return _bare_name(name, scope)
        item = _find(scope, _sval(refs[-2]))
        if item is not None:
            flow = item.column(name)
            if flow is not None:
                return flow
        return Flow(PLAIN, _named(name))

    def expr(self, node: Any, scope: Scope, ctes: dict[str, Item]) -> Flow:
        """The flow of one expression node ({tag: fields}); sub-queries' predicates are
        recorded on the way."""
        if not isinstance(node, dict) or len(node) != 1:
            return self.generic(node, scope, ctes)
        ((tag, fields),) = node.items()
        if tag == "ColumnRef":
            return self.column(fields["fields"], scope)
        if tag in ("A_Const", "ParamRef", "SQLValueFunction"):
            return Flow(EXPRESSION)
        if tag == "FuncCall":
            return self.function(fields, scope, ctes)
        if tag == "SubLink":
            if "testexpr" in fields:
                return self.sublink_test(fields, scope, ctes)
            return self.sublink(fields, scope, ctes)
        if tag == "A_Expr" and _comparing(fields):
            return self.comparison(fields, scope, ctes, False)
        if tag == "A_Expr" and fields.get("kind", "AEXPR_OP") == "AEXPR_OP":
            operator = _sval(fields["name"][-1]) if fields.get("name") else ""
            operands = [
                self.expr(fields[side], scope, ctes)
                for side in ("lexpr", "rexpr")
                if side in fields
            ]
            builtin = len(fields.get("name", ())) == 1
            if (
                operator not in _TOTAL_OPERATORS
                or not builtin
                or (
                    operator in _COMBINING_OPERATORS
                    and (
                        _constants_length([node]) > _JOINED_CONSTANT
                        or (
                            _beside_values([fields.get(side) for side in ("lexpr", "rexpr")])
                            and not self.joined([node], scope)
                        )
                    )
                )
            ):
                for flow in operands:
                    self.partial(flow)
            if operator in _JSON_EXTRACTIONS and "rexpr" in fields:
                # the value under a key is no part the document is known to be safe
                # without: it may be a document holding masked keys itself
                # (`profile->>'contact'` of {"contact": {"email": ...}}): met whole
                path = operator.startswith("#")
                key = _constant_path(fields["rexpr"]) if path else fields["rexpr"]
                operands.append(_keys_flow([key], path=path))
            if operator in _JSON_PATH_OPERATORS:
                if "lexpr" in fields and _jsonpath_keys(fields.get("rexpr")):
                    operands[0] = operands[0].taken_part()
                any_key = _path_flow(operands, fields.get("rexpr"))
                for flow in any_key:
                    self.record(flow, "other")  # a test of the document's values
                operands += any_key
            return _merge(
                EXPRESSION,
                operands,
                keeps=builtin and operator in _KEEPING_OPERATORS,
                computes=operator in _COMPUTING_OPERATORS,
            )
        if tag == "TypeCast" and "arg" in fields:
            flow = self.expr(fields["arg"], scope, ctes)
            type_name = fields.get("typeName", {}).get("TypeName", fields.get("typeName", {}))
            names = [_sval(n).lower() for n in type_name.get("names", ())]
            if _number_cast(fields["arg"], names, type_name):
                # `avg(total)::int`, `date_trunc('day', ts)::date`, `created_at::date`: a
                # number or time made a number or time (it may fail: partial), no text
                # changed on the way (a text column's whole value read as a date, the
                # digits it shows)
                self.partial(flow)
                return flow.derived()
            if names[-1:] and names[-1] in _DOCUMENT_TYPES:
                # (a stored column's text that is no JSON fails: whether it is a document,
                # no question about the text a value detector reads inside it, so keyed.
                # Not text computed first: `('[' || substr(note, 6, 1) || ']')::jsonb`
                # fails unless the sixth character is a digit, `'[0' || ...` unless it is
                # none, and '[1e' prefixes place it against the exponent's limit: the parse
                # answers about the part taken, a character at a time)
                bare = flow.kind == PLAIN and _unwrap(fields["arg"])[0] == "ColumnRef"
                self.partial(flow.taken_part() if bare else flow)
                return flow.transformed().as_document()  # `notes::jsonb`: read as JSON
            if (
                names[-1:]
                and names[-1] in _SCALAR_TYPES
                and names[:-1] in ([], ["pg_catalog"])
                and not type_name.get("arrayBounds")
                and _taken_out(fields["arg"])
            ):
                # `(doc->>'n')::int`: a document (a JSON object, an array, XML) never reads
                # as a number, date or boolean, so what comes of the cast, and whether it
                # failed, answers nothing about the masked keys one may hold. Only a value
                # a key was taken out for: a column's whole value (`note::numeric`,
                # `note::text::bigint`, `(note::jsonb #>> '{}')::numeric`, `doc->0`) is
                # the text the value detectors mask, and `note::numeric > 4111111111111110`
                # binary-searched a card number kept alone in a free-text column
                scalar = flow.taken_part()
                self.partial(scalar)
                if names[-1] not in _NARROW_CASTS:
                    # ...but a number type wide enough for a card or phone number's digits
                    # is the number the value detectors mask when the document is selected:
                    # `(doc->>'card')::numeric > 4111111111111110` binary-searched the card
                    # of {"card": "4111111111111111"} in some fifty statements. What is
                    # made of it (compared, ordered, grouped, computed upon) is questioned
                    # as a wide number column's use is, under the key's name (Flow.wide);
                    # the cast alone only asks whether the text reads as a number
                    key = _value_key(fields["arg"])
                    scalar.wide = {**scalar.wide, **({key: None} if key else scalar.columns)}
                return scalar.transformed()
            if names[-1:] and names[-1] in _TEXT_TYPES and not type_name.get("arrayBounds"):
                if (
                    names[-1] in _KEEPING_TYPES
                    and names[:-1] in ([], ["pg_catalog"])  # public.text is anyone's type
                    and not type_name.get("typmods")
                ):
                    return flow.derived()
                return flow.transformed()  # varchar(n), char, name: cut
            self.partial(flow)
            return flow.transformed()
        if tag == "NullTest":
            self.predicate(node, scope, ctes, False)
            return self.expr(fields["arg"], scope, ctes).derived()
        if tag == "CaseExpr":
            return self.case(fields, scope, ctes)
        if tag == "MinMaxExpr":
            # GREATEST / LEAST give one of their values as it is, chosen by comparing them:
            # which one came back answers `>` (a document's masked keys are masked in either,
            # its other keys tell which)
            flows = [self.expr(arg, scope, ctes) for arg in fields.get("args", ())]
            for arg, flow in zip(fields.get("args", ()), flows, strict=True):
                self.record(_bare(flow, arg), "range")
            return _merge(EXPRESSION, flows, keeps=True)
        if tag == "JsonFuncExpr":
            # JSON_VALUE / JSON_QUERY / JSON_EXISTS: a path's filters are tests of the value
            flow = self.generic(fields, scope, ctes)
            flow = _merge(EXPRESSION, [flow, *_any_key([flow])])
            self.record(flow, "other")
            return flow
        if tag == "A_Indirection":
            flow = self.expr(fields["arg"], scope, ctes)
            steps = fields.get("indirection", ())
            if any("A_Star" in s for s in steps):
                return (
                    flow.derived()
                    if flow.kind != STAR
                    else Flow(WHOLE_ROW, flow.columns, flow.tables)
                )
            names = [_sval(s).lower() for s in steps if "String" in s]
            if flow.kind == WHOLE_ROW and names and len(names) == len(steps):
                # (c).email: one field of a row; of a row of the catalogs' (pgjdbc's
                # (information_schema._pg_expandarray(i.indkey)).n), the catalogs' value
                return Flow(EXPRESSION, {names[-1]: None}, user=flow.user)
            indices = [self.expr(s, scope, ctes) for s in steps if "A_Indices" in s]
            for index in indices:
                # an element chosen by a value (NULL past the end, which a mask keeps)
                self.record(index.derived(), "other")
            # (p.info).password, a field of a composite column, and profile['password'], a
            # key of a JSON document (whose key the proxy masks in the document itself),
            # are that sensitive name's value once out of their record or document
            # (a computed subscript is most often an array's position, indkey[i] of
            # psql's \d: a computed JSON key is not followed here; the operators are)
            bounds = [
                s["A_Indices"]["uidx"]
                for s in steps
                if "A_Indices" in s
                and "A_Const" in (s["A_Indices"].get("uidx") or {})
                and "lidx" not in s["A_Indices"]
            ]
            # profile['contact'], (info).doc: the value under a key or field may be a
            # document holding masked keys itself (the document is met whole)
            fields_named = Flow(EXPRESSION, dict.fromkeys(names), user=flow.user)
            keyed = [fields_named, _keys_flow(bounds, path=False)] if bounds else [fields_named]
            computed = [
                bound
                for step in steps
                if "A_Indices" in step
                for bound in (step["A_Indices"].get("lidx"), step["A_Indices"].get("uidx"))
                if bound is not None and "A_Const" not in bound
            ]
            reads = flow.user and bool(flow.columns or flow.tables)  # not a constant's
            if reads and any(not _position(bound, scope) for bound in computed):
                # profile[k], profile[('pass' || 'word')]: a key computed at run time may
                # name any of the document's keys (an array's position, indkey[i] of
                # psql's \d over generate_series, is whole numbers and stays an element)
                keyed.append(Flow(EXPRESSION, tables={"*": None}, changed=True))
            # an element as it is
            return _merge(EXPRESSION, [flow, *indices, *keyed], keeps=True)
        flow = self.generic(fields, scope, ctes, tag in _KEEPING_NODES)
        if tag in _COMBINING_NODES and _beside_values(
            [*fields.get("args", ()), *fields.get("elements", ()), *fields.get("named_args", ())]
        ):
            self.partial(flow)  # ROW(...), ARRAY[...], XMLELEMENT: one value of several
        if tag not in _TOTAL_NODES and not (
            tag == "XmlExpr" and fields.get("op") in _TOTAL_XML_OPS
        ):
            # a node not known never to fail for some values (XMLPARSE, XMLPI, a JSON
            # constructor WITH UNIQUE KEYS, one a newer parser knows): its error could
            # answer a question about the value, or quote it (XMLPARSE's DETAIL does)
            self.partial(flow)
        if tag == "XmlExpr" and fields.get("op") == "IS_XMLPARSE":
            return flow.as_document()  # XMLPARSE(DOCUMENT notes): text read as XML
        return flow

    def joined(self, nodes: list[Any], scope: Scope) -> bool:
        """Whether nodes join stored columns as they are and short constants written in
        the statement only, by `||`, concat, concat_ws (a constant separator) and COALESCE,
        within the counts above (_JOINED_COLUMNS): a value whose size no reader chooses."""
        if not self.joins:
            return False
        counts = [0, 0]  # column operands, operands
        stack = list(nodes)
        while stack:
            node = stack.pop()
            if not isinstance(node, dict) or len(node) != 1:
                return False
            ((tag, fields),) = node.items()
            if tag == "A_Const":
                counts[1] += 1  # (their length: _constants_length)
            elif tag == "TypeCast" and "arg" in fields:
                # `id::text`: its whole text (not varchar(n), char(n): cut or padded to n)
                type_name = fields.get("typeName", {}).get("TypeName", fields.get("typeName", {}))
                names = [_sval(n).lower() for n in type_name.get("names", ())]
                if (
                    names[-1:] not in (["text"], ["varchar"])
                    or names[:-1] not in ([], ["pg_catalog"])
                    or type_name.get("typmods")
                    or type_name.get("arrayBounds")
                ):
                    return False
                stack.append(fields["arg"])
            elif tag == "ColumnRef":
                flow = self.column(fields["fields"], scope)
                if flow.kind != PLAIN or not flow.columns or flow.tables or flow.changed:
                    return False  # a value made in FROM, a whole row
                counts[0] += 1
                counts[1] += 1
            elif tag == "A_Expr":
                names = [_sval(n) for n in fields.get("name", ())]
                if fields.get("kind", "AEXPR_OP") != "AEXPR_OP" or names != ["||"]:
                    return False
                stack.extend(fields.get(side) for side in ("lexpr", "rexpr"))
            elif tag == "CoalesceExpr":
                stack.extend(fields.get("args", ()))
            elif tag == "FuncCall":
                qualified = [_sval(part).lower() for part in fields.get("funcname", ())]
                args = list(fields.get("args", ()))
                if (
                    qualified[:-1] in ([], ["pg_catalog"])
                    and qualified[-1:]
                    and qualified[-1] in _JOINING_FUNCTIONS
                    and len(args) == 1
                    and not any(k in fields for k in _CALL_MODIFIERS)
                    and not (isinstance(args[0], dict) and "NamedArgExpr" in args[0])
                ):
                    stack.append(args[0])  # lower(first_name): the column, changed alone
                    continue
                if (
                    qualified[:-1] not in ([], ["pg_catalog"])
                    or qualified[-1:] not in (["concat"], ["concat_ws"])
                    or any(k in fields for k in _CALL_MODIFIERS)
                    or not args
                ):
                    return False
                if qualified[-1] == "concat_ws" and not _written_constant(args[0]):
                    return False  # the separator is repeated between every value
                stack.extend(args)
            else:
                return False
            if counts[0] > _JOINED_COLUMNS or counts[1] > _JOINED_OPERANDS:
                return False
        return _constants_length(nodes) <= _JOINED_CONSTANT

    def generic(self, value: Any, scope: Scope, ctes: dict[str, Item], keeps: bool = False) -> Flow:
        """Any other node: computed from every expression found inside it, each node
        judged by `expr` (so one that can fail marks what flows into it `partial`);
        keeps: the node gives one of them as it is (COALESCE, GREATEST, COLLATE)."""
        flows: list[Flow] = []
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                if len(item) == 1:
                    ((tag, fields),) = item.items()
                    if isinstance(fields, dict) and tag[:1].isupper():
                        flows.append(self.expr(item, scope, ctes))
                        continue
                stack.extend(v for v in item.values() if isinstance(v, dict | list))
            elif isinstance(item, list):
                stack.extend(item)
        return _merge(EXPRESSION, flows, keeps)

    def function(self, fields: Fields, scope: Scope, ctes: dict[str, Item]) -> Flow:
        args = fields.get("args", ())
        flows = [self.expr(arg, scope, ctes) for arg in args]
        name = _sval(fields["funcname"][-1]).lower() if fields.get("funcname") else ""
        qualified = [_sval(part).lower() for part in fields.get("funcname", ())[:-1]]
        # public.upper is anyone's function; information_schema's helpers that readers may
        # call (postgres.reader_information_schema_functions: SQL initdb made over its
        # arguments alone; the policy denies one the database changed or made again)
        builtin = qualified in ([], ["pg_catalog"]) or (
            qualified == ["information_schema"] and name in _INFORMATION_SCHEMA_BUILTINS
        )
        if builtin and len(flows) > 1 and name in _PATH_TESTS and _jsonpath_keys(args[1]):
            # `$.tags[*] ? (@ == "ci")`: whether tags holds ci. A path query's value (and
            # jsonb_extract_path_text(profile, 'contact')) may be a document holding masked
            # keys: met whole
            flows[0] = flows[0].taken_part()
        total = _TOTAL_FUNCTIONS.get(name, ()) if builtin else ()
        for position, (arg, flow) in enumerate(zip(args, flows, strict=True)):
            named = isinstance(arg, dict) and "NamedArgExpr" in arg
            if name in _QUESTIONS or (not named and (total is _ANY or position in total)):
                continue  # a question already (recorded below), or a total computation
            self.partial(flow)
        if builtin and (
            name in _MULTIPLYING_FUNCTIONS
            or (
                name in _COMBINING_FUNCTIONS
                and (
                    _constants_length([{"FuncCall": fields}]) > _JOINED_CONSTANT
                    or (_beside_values(args) and not self.joined([{"FuncCall": fields}], scope))
                )
            )
        ):
            self.partial(_merge(EXPRESSION, flows))  # it fails past 1 GB: the tables'
        aggregate = name in _AGGREGATES or any(
            k in fields for k in ("agg_star", "agg_distinct", "agg_order", "agg_filter", "over")
        )
        for sort in fields.get("agg_order", ()):
            inner = sort["SortBy"]["node"]
            self.record(_bare(self.expr(inner, scope, ctes), inner), "order")
        if builtin and aggregate and name in _CHOOSING:
            # min(x) / max(x) give one of the rows' values as it is, chosen by comparing
            # them: which came back (a constant of a UNION beside a note, or the note with
            # what the value detectors masked in it) answers `>`, as GREATEST does ("choice":
            # a sensitive column's value comes back masked whole whichever it is)
            for arg, flow in zip(args, flows, strict=True):
                self.record(_bare(flow, arg), "choice")
        agg_filter = fields.get("agg_filter")
        if agg_filter:
            self.predicate(agg_filter, scope, ctes, False)
        over = fields.get("over")
        if over:
            self.window(over, scope, ctes)
        if fields.get("agg_within_group"):
            # mode() / percentile_disc() WITHIN GROUP (ORDER BY x) give x's values
            flows += [self.expr(s["SortBy"]["node"], scope, ctes) for s in fields["agg_order"]]
        # text(x) and varchar(x) as casts; varchar(x, 9, false) is the cut of varchar(9)
        # "MAX"(note) is another function than max(note): only a name as the server folds it
        written = _sval(fields["funcname"][-1]) if fields.get("funcname") else ""
        keeps = (
            builtin and written in _KEEPING_FUNCTIONS and (written not in _CASTS or len(args) == 1)
        ) or (builtin and _number_call(fields))
        called = written if builtin else ".".join(_sval(p) for p in fields["funcname"])
        self.arguments.extend(
            (called, flow) for flow in flows[: len(args)] if flow.tables or flow.changed
        )
        if builtin and name == "set_config":
            # a setting's value is read where no mask reads it: the ParameterStatus the
            # server reports a changed application_name, DateStyle or TimeZone with, SHOW
            # and current_setting (no table column): stored as if changed, whatever it is
            self.written.extend(flow.transformed() for flow in flows)
        if builtin and name in _JSON_PATH_FUNCTIONS:
            flows.append(_keys_flow(list(args[1:]), path=False))  # profile's 'password''
        any_key = []
        if builtin and name in _ANY_KEY_FUNCTIONS:
            path = args[1] if "_path_" in name and len(args) > 1 else None
            any_key = _path_flow(flows, path) if path is not None else _any_key(flows)
        if not builtin:
            # a function of another schema (pg_temp.f(), made in this session: no catalogue
            # fact knows it) may read any table: its value may carry any of their columns
            flows.append(Flow(EXPRESSION, tables={"*": None}, changed=True))
        kind = AGGREGATE if aggregate else EXPRESSION
        computes = written in _COMPUTING_FUNCTIONS or (keeps and written in _NUMBER_FUNCTIONS)
        flow = _merge(kind, flows + any_key, keeps, computes=computes)
        if builtin and name in _DOCUMENT_FUNCTIONS:
            flow = flow.as_document()  # jsonb_in(notes::cstring): text read as JSON
        if name in _QUESTIONS:
            # how many rows a set-returning function gives, and whether a pattern function
            # matches (NULL or not, which a mask keeps), answer questions about its input;
            # how many keys or elements a document has is no question about a key's value,
            # how many a path's filter keeps is
            if builtin and "_path_" in name and len(args) > 1 and _jsonpath_keys(args[1]):
                # how many rows, or whether a path with constant keys is there: a question
                # about those keys (their names as columns), never the whole document (the
                # value it gives may be a document: met whole where it is used)
                asked = _merge(kind, [flows[0].taken_part(), *flows[1:], *any_key], keeps)
            elif "_path_" in name or "xpath" in name:
                asked = flow
            elif builtin and name in _SHAPE_FUNCTIONS:
                # how many keys or elements: the document's shape, never all of it
                asked = _merge(kind, [f.taken_part() for f in flows], keeps)
            else:
                asked = _merge(kind, flows, keeps)
            self.record(asked, "other")
        return flow

    def rows_of(self, call: Any, flow: Flow, scope: Scope, ctes: dict[str, Item]) -> Flow:
        """What how many rows a function in FROM gives says something about: its flow, but
        for a document's keys or elements (jsonb_each's: how many there are), whose values
        are given as any column's (masked whole, questions in a condition)."""
        fields = call.get("FuncCall") if isinstance(call, dict) else None
        if not fields or not fields.get("funcname") or len(fields["funcname"]) > 2:
            return flow
        name = _sval(fields["funcname"][-1]).lower()
        qualified = [_sval(part).lower() for part in fields["funcname"][:-1]]
        if (
            (name not in _ANY_KEY_FUNCTIONS and name not in _SHAPE_FUNCTIONS)
            or "_path_" in name
            or qualified not in ([], ["pg_catalog"])
        ):
            return flow
        # (how many keys or elements: the document's shape, never all of it)
        flows = [self.expr(a, scope, ctes).taken_part() for a in fields.get("args", ())]
        return _merge(EXPRESSION, flows)

    def sublink(self, fields: Fields, scope: Scope, ctes: dict[str, Item]) -> Flow:
        outputs = self.select(fields["subselect"]["SelectStmt"], scope, ctes)
        kind = fields.get("subLinkType", "EXISTS_SUBLINK")
        if kind == "EXISTS_SUBLINK":
            return Flow(EXPRESSION)
        flows = (
            [f for _, f in outputs[:1]]
            if kind in ("EXPR_SUBLINK", "ARRAY_SUBLINK")
            else [f for _, f in outputs]
        )
        if kind == "ARRAY_SUBLINK":
            for flow in flows:
                self.partial(flow)  # every row's value in one: past 1 GB it fails
        test = fields.get("testexpr")
        if test:
            flows.append(self.expr(test, scope, ctes))
        return _merge(EXPRESSION, flows, keeps=kind == "EXPR_SUBLINK")

    # --- predicates -----------------------------------------------------------

    def predicate(self, node: Fields, scope: Scope, ctes: dict[str, Item], join: bool) -> None:
        """Record how one boolean condition uses columns."""
        ((tag, fields),) = node.items()
        if tag == "BoolExpr":
            for arg in fields.get("args", ()):
                self.predicate(arg, scope, ctes, join)
            return
        if tag == "A_Expr":
            self.comparison(fields, scope, ctes, join)
            return
        if tag == "NullTest":
            arg = fields["arg"]
            flow = self.expr(arg, scope, ctes)
            if _taken_out(arg):
                # whether a value is under constant keys (`payload->>'page' IS NOT NULL`):
                # what `payload ? 'page'` asks, of the document's keys, never of the text
                # of the value (a value under a sensitive key's name is still asked about)
                flow = flow.taken_part()
            self.record(_bare(flow, arg), "equality")
            return
        if tag == "SubLink" and "testexpr" in fields:
            self.sublink_test(fields, scope, ctes)
            return
        self.record(self.expr(node, scope, ctes).derived(), "other")

    def sublink_test(self, fields: Fields, scope: Scope, ctes: dict[str, Item]) -> Flow:
        """`x IN (SELECT ...)`, `x < ANY (SELECT ...)`: records the comparison, returns the
        flow of its result."""
        test = fields["testexpr"]
        left = self.expr(test, scope, ctes)
        outputs = self.select(fields["subselect"]["SelectStmt"], scope, ctes)
        operator = _sval(fields["operName"][-1]) if fields.get("operName") else "="
        use = _operator_use(operator)
        atoms = _atom(test, left) and all(
            o.kind == PLAIN or not (o.columns or o.tables) for _, o in outputs
        )
        use = use if use != "equality" or atoms else "other"
        self.record(_bare(left, test), use)
        for _, flow in outputs:
            self.record(flow, use)
        if use in ("equality", "join"):
            self.matched([left, *(f for _, f in outputs)])
        return _merge(EXPRESSION, [left, *(f for _, f in outputs)])

    def case(self, fields: Fields, scope: Scope, ctes: dict[str, Item]) -> Flow:
        """CASE: its conditions choose what the output is (and whether it is NULL, which a
        mask keeps), so they are conditions like a WHERE's; `CASE x WHEN v` compares x = v."""
        arg = fields.get("arg")
        flows = [self.expr(arg, scope, ctes)] if arg else []
        for node in fields.get("args", ()):
            when = node["CaseWhen"]
            condition = when["expr"]
            if arg:
                self.comparison(
                    {"kind": "AEXPR_OP", "name": [{"String": {"sval": "="}}], "lexpr": arg,
                     "rexpr": condition},
                    scope, ctes, False,
                )  # fmt: skip
            else:
                self.predicate(condition, scope, ctes, False)
            flows.append(self.expr(condition, scope, ctes))
            flows.append(self.expr(when.get("result"), scope, ctes))
        if fields.get("defresult"):
            flows.append(self.expr(fields["defresult"], scope, ctes))
        return _merge(EXPRESSION, flows)

    def subdocument_equality(self, operands: list[tuple[Any, Flow]]) -> None:
        """`profile->'contact' = '{"email": "ada@example.com"}'`: a value taken out under a
        key, compared whole with = to a value. The value under a key may be a document
        holding masked keys itself, so the comparison is an equality test of each value
        under them: a constant's keys (at any depth, as `@>`'s) are named as columns
        compared with = (`email`: judged as `email = '...'` is); a value this cannot read
        (a parameter, an expression, a column) may be any document, so the document column
        is met whole in an equality test (both refused when data.portcullis.oracle.equality
        is false)."""
        taken = [f for n, f in operands if not _atom(n, f)]
        for node, flow in operands:
            if not _atom(node, flow) or flow.columns or flow.tables:
                continue
            value = _unwrap(node)
            if value[0] != "A_Const":
                # a parameter, an expression: any document at all
                for document in taken:
                    whole = Flow(PLAIN, document.columns, documents=document.documents)
                    self.record(whole, "equality")
                continue
            keys = _contained_keys(node, "@>")  # (None: text no document reads as)
            if keys:
                self.record(Flow(PLAIN, keys), "equality")

    def comparison(self, fields: Fields, scope: Scope, ctes: dict[str, Item], join: bool) -> Flow:
        """Record how one operator expression compares columns; returns its flow."""
        kind = fields.get("kind", "AEXPR_OP")
        operator = _sval(fields["name"][-1]) if fields.get("name") else ""
        use = _USE_BY_KIND.get(kind) or _operator_use(operator)
        if kind == "AEXPR_NULLIF":
            use = "other"
        sides = [s for s in (fields.get("lexpr"), fields.get("rexpr")) if s is not None]
        if operator in _ARRAY_MEMBERSHIP and len(sides) == 2 and any(map(_constant_array, sides)):
            # `tags @> ARRAY['tools']`, `tags && '{a,b}'::text[]`: whether elements equal
            # the constants, an equality test of each (as `x = ANY(tags)` is)
            use = "equality"
        operands: list[tuple[Any, Flow]] = []
        for side in sides:
            if "List" in side:  # IN (a, b), BETWEEN a AND b
                operands.extend(
                    (n, self.expr(n, scope, ctes)) for n in side["List"].get("items", ())
                )
            else:
                operands.append((side, self.expr(side, scope, ctes)))
        if use == "equality":
            if not all(_atom(n, f) for n, f in operands):
                use = "other"
                if all(_atom(n, f) or _taken_out(n) for n, f in operands):
                    # `profile->>'status' = 'ok'`: the value under a key compared whole,
                    # as a column is (the key's name is the column the policy judges)
                    self.subdocument_equality(operands)
                    operands = [(n, f if _atom(n, f) else f.taken_part()) for n, f in operands]
            elif (
                join
                and sum(1 for n, f in operands if f.kind == PLAIN and _unwrap(n)[0] == "ColumnRef")
                > 1
            ):
                use = "join"
        if use in ("equality", "join"):
            self.matched([f for _, f in operands])
        if operator in _JSON_PATH_OPERATORS and operands and _jsonpath_keys(fields.get("rexpr")):
            operands[0] = (operands[0][0], operands[0][1].taken_part())
        named: dict[str, None] | None = None
        if operator in _CONTAINMENT and len(operands) == 2 and len(sides) == 2:
            # `payload @> '{"user": 1}'`, `payload ? 'ip'`: the document's values under the
            # keys the constant names (their names as columns), never the whole of it
            document = 1 if operator == "<@" else 0
            named = _contained_keys(sides[1 - document], operator)
            if named is not None:
                node, flow = operands[document]
                operands[document] = (node, flow.taken_part())
        for n, flow in operands:
            self.record(_bare(flow, n), use)
        flows = [f for _, f in operands]
        if named:
            flows.append(Flow(EXPRESSION, named))
            self.record(flows[-1], "other")
        if operator in _JSON_PATH_OPERATORS:
            for flow in _path_flow(flows, fields.get("rexpr")):
                self.record(flow, "other")
                flows.append(flow)
        return _merge(EXPRESSION, flows)


# Nodes whose flow expr() computes itself rather than the generic walk.
# Nodes that compute from what is inside them without failing for any value (or only
# wrap it: a name, a list); `expr` marks what flows into any other node `partial`.
_TOTAL_NODES = frozenset(
    {
        "RowExpr",
        "A_ArrayExpr",
        "CoalesceExpr",
        "MinMaxExpr",
        "CollateClause",
        "BoolExpr",
        "BooleanTest",
        "GroupingFunc",
        "SetToDefault",
        "NamedArgExpr",
        "ResTarget",
        "List",
        "String",
        "Integer",
        "Float",
        "Boolean",
        "BitString",
        "A_Star",
        "TypeName",
    }
)
# XMLELEMENT / XMLFOREST escape any text; XMLCONCAT joins values already XML. Not here:
# XMLPARSE (its error quotes the text), XMLPI (fails on "?>"), XMLROOT, IS DOCUMENT.
_TOTAL_XML_OPS = frozenset({"IS_XMLELEMENT", "IS_XMLFOREST", "IS_XMLCONCAT"})


def _number_call(fields: Fields) -> bool:
    """Whether a FuncCall (its fields, a function of pg_catalog) is one of
    _NUMBER_FUNCTIONS with a constant at each of its unit or zone positions."""
    funcname = fields.get("funcname") or ()
    name = _sval(funcname[-1]) if funcname else ""
    if name not in _NUMBER_FUNCTIONS:
        return False
    args = fields.get("args", ())
    return all(i >= len(args) or "A_Const" in args[i] for i in _UNIT_ARGUMENTS.get(name, ()))


def _number_cast(arg: Any, names: list[str], type_name: Fields) -> bool:
    """Whether a cast of arg to the type `names` makes a number or time of a number or
    time (a count, sum, avg or _NUMBER_FUNCTIONS call of pg_catalog), or a date or
    timestamp of a stored column's whole value: no text changed on the way."""
    if (
        not names
        or names[-1] not in _NUMBER_CASTS
        or names[:-1] not in ([], ["pg_catalog"])
        or type_name.get("arrayBounds")
        or not isinstance(arg, dict)
    ):
        return False
    if "ColumnRef" in arg:
        fields = arg["ColumnRef"].get("fields", ())
        return names[-1] in _TIME_CASTS and not any("A_Star" in f for f in fields)
    call = arg.get("FuncCall")
    if not call or "over" in call:
        return False
    funcname = call.get("funcname") or ()
    qualified = [_sval(part).lower() for part in funcname[:-1]]
    name = _sval(funcname[-1]) if funcname else ""
    if qualified not in ([], ["pg_catalog"]):
        return False
    if name in _CHOOSING:
        # max(created_at)::date: one of the column's stored values, as it is
        args = call.get("args", ())
        return len(args) == 1 and _number_cast(args[0], names, type_name)
    if name not in _NUMBER_RESULTS:
        return False
    return name in ("count", "sum", "avg") or _number_call(call)


# set-returning functions of pg_catalog taking nothing, whose rows are the server's own
# constants, by their output columns: pgjdbc's getSQLKeywords reads string_agg(word, ',')
# FROM pg_catalog.pg_get_keywords() (a function of that name made elsewhere is one readers
# may not call: postgres.rego)
_CONSTANT_ROWS = {"pg_get_keywords": ("word", "catcode", "barelabel", "catdesc", "baredesc")}


def _constant_rows(functions: Any, flow: Flow) -> tuple[str, ...]:
    """The output names of a FROM item that is one call of a _CONSTANT_ROWS function with
    no arguments (flow: what the call reads, nothing); empty for any other."""
    if flow.columns or flow.tables or len(functions) != 1:
        return ()
    items = functions[0].get("List", {}).get("items", [])  # the call, its column list
    fields = items[0].get("FuncCall") if items and isinstance(items[0], dict) else None
    if len(items) > 1 and items[1]:  # AS (word text, ...): names the server checks
        return ()
    if not fields or fields.get("args") or fields.get("agg_star") or fields.get("over"):
        return ()
    names = [_sval(part) for part in fields.get("funcname", ())]
    if not names or names[:-1] not in ([], ["pg_catalog"]):
        return ()
    return _CONSTANT_ROWS.get(names[-1], ())


def _one_row(fields: Fields, outputs: list[Output]) -> bool:
    """Whether a SELECT without GROUP BY aggregates its rows into one (every output an
    aggregate or a constant, no window function): no order to show."""
    if fields.get("groupClause") or "'over'" in repr(fields.get("targetList")):
        return False
    return bool(outputs) and all(
        flow.kind == AGGREGATE or not (flow.columns or flow.tables) for _, flow in outputs
    )


def _ordered_by_every_output(fields: Fields, outputs: list[Output]) -> bool:
    """Whether the SELECT's ORDER BY names every one of its outputs (by position or name)
    and no window function reads its rows in the order they were grouped in: rows tied on
    all of them look alike, whatever order they came in."""
    if not outputs or "'over'" in repr(fields.get("targetList")):
        return False
    named = _named_in_order(fields, outputs)
    return all(name and i in named for i, (name, _) in enumerate(outputs))


def _named_in_order(fields: Fields, outputs: list[Output]) -> set[int]:
    """The positions of the outputs the SELECT's ORDER BY names (by position or name)."""
    named: set[int] = set()
    for node in fields.get("sortClause", ()):
        ((tag, sort),) = node["SortBy"]["node"].items()
        if tag == "A_Const" and "ival" in sort:
            named.add(sort["ival"].get("ival", 0) - 1)
        elif tag == "ColumnRef" and len(sort["fields"]) == 1:
            name = _sval(sort["fields"][0])
            named.update(i for i, (output, _) in enumerate(outputs) if name and output == name)
    return named


def _ordered_by_outputs(fields: Fields, outputs: list[Output], grouped: list[Flow]) -> bool:
    """Whether the SELECT's ORDER BY names every one of its outputs (by position or name)
    but those carrying all it grouped or joined by (masked where any of that is), and no
    window function reads its rows in the order they were grouped in: its rows then come
    back in the order of what they show (rows tied on all of it look alike), never in the
    order of what they were grouped by."""
    if not outputs or "'over'" in repr(fields.get("targetList")):
        return False
    carried = _merge(EXPRESSION, grouped)
    named = _named_in_order(fields, outputs)
    return all(
        (name and i in named) or _carries(flow, carried) for i, (name, flow) in enumerate(outputs)
    )


def _carries(flow: Flow, carried: Flow) -> bool:
    """Whether flow reaches every column and table carried does."""
    return all(c in flow.columns for c in carried.columns) and all(
        t in flow.tables for t in carried.tables
    )


def _beside_values(nodes: list[Any]) -> bool:
    """Whether a value made of these operands holds two that are not constants written in
    the statement (a column's value beside another value the statement computes: its size
    may be the reader's choice)."""
    return sum(1 for node in nodes if node is not None and not _written_constant(node)) > 1


def _constants_length(nodes: list[Any]) -> int:
    """The characters of the constants written in a value joined by `||`, concat,
    concat_ws and COALESCE (a whole tree of them, however nested), what else it joins
    left out: a long constant beside a column is sized by the reader as a value beside
    it is. A tsvector's lexemes are at most 1 MB together, and `words || '<1 MB of
    lexemes> 4111'` reports the size it would have made, 4 bytes less when 4111 is among
    the masked card's words (merged): whether it is, whatever the tsvector's size."""
    total = 0
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if not isinstance(node, dict) or len(node) != 1:
            continue
        ((tag, fields),) = node.items()
        if tag == "A_Const":
            for key, value in fields.items():
                if key != "location" and isinstance(value, dict):
                    total += sum(len(str(v)) for v in value.values())
        elif tag in ("TypeCast", "NamedArgExpr", "CollateClause"):
            stack.append(fields.get("arg"))
        elif tag == "A_Expr" and [_sval(n) for n in fields.get("name", ())][-1:] == ["||"]:
            stack.extend(fields.get(side) for side in ("lexpr", "rexpr"))
        elif tag == "CoalesceExpr" or (
            tag == "FuncCall"
            and _sval(fields["funcname"][-1]).lower() in (_COMBINING_FUNCTIONS | _JOINING_FUNCTIONS)
        ):
            stack.extend(fields.get("args", ()))
    return total


# FROM items whose columns the PDP cannot name (a table's, a sub-query's and a CTE's it can)
_MADE_RELATIONS = ("RangeFunction", "RangeTableFunc", "JsonTable")


def _makes_relations(fields: Fields) -> bool:
    """Whether a statement's tree holds a FROM function, XMLTABLE or JSON_TABLE anywhere."""
    stack: list[Any] = [fields]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if any(tag in item for tag in _MADE_RELATIONS):
                return True
            stack.extend(v for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend(item)
    return False


# what makes a call more than its function over its arguments (VARIADIC spreads an array,
# an aggregate or window joins rows)
_CALL_MODIFIERS = (
    "func_variadic", "agg_star", "agg_distinct", "agg_order", "agg_filter", "over",
    "agg_within_group",
)  # fmt: skip


def _written_constant(node: Any) -> bool:
    """A constant written in the statement (a literal, cast or named as an argument)."""
    if not isinstance(node, dict) or len(node) != 1:
        return False
    ((tag, fields),) = node.items()
    if tag == "A_Const":
        return True
    if tag == "TypeCast":
        return _written_constant(fields.get("arg"))
    if tag == "NamedArgExpr":
        return _written_constant(fields.get("arg"))
    return False


def _comparing(fields: Fields) -> bool:
    """Whether an operator expression asks a question of its operands (equality, order,
    a pattern, NULLIF), as against computing a value from them (`+`, `||`)."""
    kind = fields.get("kind", "AEXPR_OP")
    if kind in _USE_BY_KIND or kind == "AEXPR_NULLIF":
        return True
    if kind not in ("AEXPR_OP", "AEXPR_OP_ANY", "AEXPR_OP_ALL"):
        return False
    operator = _sval(fields["name"][-1]) if fields.get("name") else ""
    return _operator_use(operator) != "other"


def _operator_use(operator: str) -> str:
    if operator in _EQUALITY_OPS:
        return "equality"
    if operator in _RANGE_OPS:
        return "range"
    if operator in _PATTERN_OPS:
        return "pattern"
    return "other"


def _unwrap(node: Fields) -> tuple[str, Fields]:
    """A node with its casts and COLLATE taken off: `email::text` compares email itself."""
    ((tag, fields),) = node.items()
    while tag in ("TypeCast", "CollateClause") and "arg" in fields:
        ((tag, fields),) = fields["arg"].items()
    return tag, fields


def _atom(node: Fields, flow: Flow) -> bool:
    """Whether an operand is a column itself or a value reading no column (a constant, a
    parameter, an expression of them), which equality compares as is."""
    if not flow.columns and not flow.tables:
        return True  # constants, parameters, and expressions of them only
    return flow.kind == PLAIN and _unwrap(node)[0] == "ColumnRef"


def _bare(flow: Flow, node: Any) -> Flow:
    """flow as a predicate sees it: plain only when node is a column reference itself."""
    if isinstance(node, dict) and _unwrap(node)[0] == "ColumnRef":
        return flow
    return flow.derived()


def _bare_name(name: str, scope: Scope) -> Flow:
    """A one-part name: an output of a derived item, else (fail closed) a whole row when a
    FROM item goes by that name, else a table column; looked up innermost scope first."""
    for level in scope:
        found: list[Flow] = []
        for item in level:
            # a derived item's outputs, or the names a table's alias column list gave
            for output, flow in item.outputs:
                if output == name:
                    found.append(flow)
        if found:
            return found[0] if len(found) == 1 else _merge(EXPRESSION, found, keeps=True)
        for item in level:
            if name in item.names:
                return item.whole()
        if level and all(item.lacks(name) for item in level):
            continue  # a column of an outer query's (the catalogs here have none so named)
        if level:
            tables = [item for item in level if item.table is not None]
            user = not tables or any(
                not item.trusted(name) for item in tables if not item.lacks(name)
            )
            flows = [Flow(PLAIN, _named(name), user=user)]
            for item in level:
                if item.table is None:
                    other = item.column(name)
                    if other is None or not (other.columns or other.tables):
                        continue
                    if other.kind != PLAIN or name.lower() not in other.columns:
                        flows.append(other)  # maybe a function's or set operation's column
            return flows[0] if len(flows) == 1 else _merge(EXPRESSION, flows, keeps=True)
    return Flow(PLAIN, _named(name))


def _side_column(side: list[Item], name: str) -> Flow | None:
    """The flow of column name on one side of a join: its derived items' outputs by that
    name, else a table's column (a table may have any name), else None."""
    flows = [
        f
        for item in side
        for n, f in (item.visible() if item.table is None else item.outputs)
        if n == name
    ]
    if flows:
        return flows[0] if len(flows) == 1 else _merge(EXPRESSION, flows, keeps=True)
    opaque = [item.opaque for item in side if item.opaque is not None and not item.outputs]
    if opaque:
        return _merge(EXPRESSION, opaque, keeps=True)
    if any(item.table is not None for item in side):
        return Flow(PLAIN, _named(name))
    return None


def _natural_names(left: list[Item], right: list[Item]) -> list[str]:
    """The names a NATURAL JOIN may merge: those both sides have, where a side holding a
    table (columns unknown) or an opaque item may have any name."""

    def known(side: list[Item]) -> tuple[list[str], bool]:
        names = [n for item in side if item.table is None for n, _ in item.visible() if n]
        unknown = any(
            item.table is not None or (item.opaque is not None and not item.outputs)
            for item in side
        )
        return names, unknown

    (left_names, left_any), (right_names, right_any) = known(left), known(right)
    found = [n for n in left_names if right_any or n in right_names]
    found += [n for n in right_names if left_any and n not in found]
    return list(dict.fromkeys(found))


_POSITION_FUNCTIONS = frozenset({"generate_series", "generate_subscripts"})
_POSITION_OPERATORS = frozenset({"+", "-", "*", "/", "%"})


def _position(node: Any, scope: Scope) -> bool:
    """A subscript computed of whole numbers only: integer constants, the outputs of a FROM
    generate_series/generate_subscripts, and arithmetic of them (no text can come of it)."""
    if not isinstance(node, dict) or len(node) != 1:
        return False
    ((tag, fields),) = node.items()
    if tag == "A_Const":
        return "ival" in fields
    if tag == "A_Expr":
        operator = [_sval(n) for n in fields.get("name", ())]
        return (
            fields.get("kind") == "AEXPR_OP"
            and len(operator) == 1
            and operator[0] in _POSITION_OPERATORS
            and all(_position(fields[side], scope) for side in ("lexpr", "rexpr") if side in fields)
        )
    if tag != "ColumnRef":
        return False
    refs = fields.get("fields", ())
    if not refs or "A_Star" in refs[-1]:
        return False
    name = _sval(refs[-1])
    if len(refs) == 2:
        item = _find(scope, _sval(refs[0]))
        return item is not None and item.positions
    if len(refs) != 1:
        return False
    for level in scope:  # as _bare_name finds it: the innermost level naming it decides
        named = [i for i in level if any(o == name for o, _ in i.outputs) or name in i.names]
        if named:
            return all(i.positions for i in named)
        if any(i.table is not None or i.opaque is None for i in level):
            return False  # a table's (or a subquery's) column, maybe: not known to be a number
    return False


def _find(scope: Scope, name: str) -> Item | None:
    for level in scope:
        for item in reversed(level):
            if name in item.names:
                return item
    return None


def _hidden(item: Item, level: list[Item]) -> bool:
    """A JOIN alias: its members expand through their own entries, not twice."""
    return item.members is not None


def _table_item(fields: Fields) -> Item:
    table = _relation(fields)
    alias = fields.get("alias")
    names = (alias["aliasname"],) if alias else (fields.get("relname", ""),)
    # `customers AS t(i, n, e)` renames the table's first columns by position, which only
    # the catalog knows: each new name may be any column of the table (`t.e` is email),
    # read as `*` is (the proxy resolves an output itself; a condition or a computation
    # over it is one over the whole row)
    renamed = [_sval(c) for c in alias.get("colnames", ())] if alias else []
    outputs = [(c, Flow(STAR, tables={table: None})) for c in renamed]
    written = ".".join(
        p for p in (fields.get(k) for k in ("catalogname", "schemaname", "relname")) if p
    )
    return Item(names, table=table, outputs=outputs, exact=written == table)


def _relation(fields: Fields) -> str:
    parts = [fields.get(p) for p in ("catalogname", "schemaname", "relname")]
    return ".".join(p for p in parts if p).lower()


def _aliased(alias: Fields | None, outputs: list[Output]) -> Item:
    if not alias:
        return Item(("",), outputs=outputs)
    colnames = [_sval(c) for c in alias.get("colnames", ())]
    return Item((alias["aliasname"],), outputs=_renamed(outputs, colnames))


def _renamed(outputs: list[Output], colnames: list[str]) -> list[Output]:
    if not colnames:
        return outputs
    if any(name == "" and flow.tables for name, flow in outputs):
        # `*` inside: which column a new name lands on is unknown, so each new name may
        # be any of them
        flow = _merge(EXPRESSION, [f for _, f in outputs], keeps=True)
        return [(c, flow) for c in colnames]
    renamed = [(c, f) for c, (_, f) in zip(colnames, outputs, strict=False)]
    return renamed + outputs[len(colnames) :]


def _set_operation(left: list[Output], right: list[Output]) -> list[Output]:
    """UNION / INTERSECT / EXCEPT: each output from both branches at its position, never
    a stored column; with `*` in a branch positions are unknown, so every output may be
    any column of either branch."""
    if len(left) != len(right) or any(n == "" and f.tables for n, f in left + right):
        # one column each, of a table's unknown columns: no whole row
        flows = [
            Flow(EXPRESSION, f.columns, f.tables, f.changed, f.user) if f.kind == STAR else f
            for _, f in left + right
        ]
        return [("", _merge(EXPRESSION, flows, keeps=True))]
    return [
        (name, _merge(EXPRESSION, [a, b], keeps=True))
        for (name, a), (_, b) in zip(left, right, strict=True)
    ]


def _signature(outputs: list[Output]) -> list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
    return [(n, f.kind, tuple(f.columns), tuple(f.tables)) for n, f in outputs]


def _star_ref(val: Any) -> list[Fields] | None:
    if val and "ColumnRef" in val:
        refs = val["ColumnRef"]["fields"]
        if "A_Star" in refs[-1]:
            return refs  # type: ignore[no-any-return]
    return None


# JSON (and hstore) operators that take a value out of a document by key or path
_JSON_EXTRACTIONS = frozenset({"->", "->>", "#>", "#>>"})
# What reads the value under every key of a JSON document (or any key its path names,
# wildcards and filters included): jsonpath tests (`profile @? '$ ? (@.password starts
# with "h")'` counted rows by the password inside a document), expansions into rows of
# keys and values (`jsonb_each_text(profile) e WHERE e.value LIKE 'h%'`) or records, and
# the document written out again. A document's keys are not columns lineage can name, so
# what these give of a column's document may be any column's value (tables "*": masked
# whole, and a question about any column in a condition), as a computed key is.
_JSON_PATH_OPERATORS = frozenset({"@?", "@@"})
_ANY_KEY_FUNCTIONS = frozenset(
    f"{kind}_{name}"
    for kind in ("json", "jsonb")
    for name in (
        "each", "each_text", "array_elements", "array_elements_text", "to_record",
        "to_recordset", "populate_record", "populate_recordset", "strip_nulls", "pretty",
        "to_tsvector", "path_query", "path_query_tz", "path_query_first",
        "path_query_first_tz", "path_query_array", "path_query_array_tz", "path_exists",
        "path_exists_tz", "path_match", "path_match_tz",
    )
) | {"xpath", "xpath_exists", "xmlexists"}  # fmt: skip

# expansions of a document into its keys or elements, whose number is its shape
_SHAPE_FUNCTIONS = frozenset(
    f"{kind}_{name}"
    for kind in ("json", "jsonb")
    for name in (
        "each", "each_text", "array_elements", "array_elements_text", "object_keys",
        "to_recordset", "populate_recordset",
    )
)  # fmt: skip


# a jsonpath accessor: `.key`, `."key"`, `.*`, `.**`, or a method `.size()`
_JSONPATH_STEP = re.compile(r'\.\s*(?:"((?:[^"\\]|\\.)*)"|(\*\*?)|([A-Za-z_][\w$]*))(\s*\()?')


_JSONPATH_STRING = re.compile(r'(?<!\.)"(?:[^"\\]|\\.)*"')


def _jsonpath_keys(node: Any) -> dict[str, None] | None:
    """The keys a constant jsonpath names (`$.tags[*] ? (@ == "ci")`: tags; filters
    included), as lineage names a constant key; None when it may reach any key: a path
    computed at run time, a wildcard key (`.*`, `.**`), `.keyvalue()`."""
    const = node.get("A_Const") if isinstance(node, dict) else None
    if const is None or "sval" not in const:
        return None
    # a string literal compared (`@ like_regex "a.*"`) names no key
    text = _JSONPATH_STRING.sub('""', str(const["sval"].get("sval", "")))
    keys: dict[str, None] = {}
    for quoted, star, word, call in _JSONPATH_STEP.findall(text):
        if star or (call and word.lower() == "keyvalue"):
            return None
        if call:
            continue  # .size(), .type(), .double(): a method, no key
        if quoted:
            try:
                quoted = json.loads(f'"{quoted}"')
            except ValueError:
                return None
        keys.update(_named(quoted or word, key=True))
    return keys


# what a jsonpath may hold for its values to be tested only for equality with constants
# (`$.tags[*] ? (@ == "ci")`, strings already taken out as ""): accessors, ==, !=, &&, ||,
# !, exists, parentheses, numbers, true, false, null. An allow-list: like_regex, starts
# with, <, >, arithmetic and item methods (.size(), .double()) ask about the text or the
# value under the keys otherwise
_JSONPATH_EQUALITY_ONLY = re.compile(
    r'(?:\s+|==|!=|&&|\|\||!|[()@$?]|\.\s*(?:""|[A-Za-z_][\w$]*)(?!\s*\()'
    r"|\[\s*(?:\*|[0-9]+)\s*\]|(?:strict|lax|exists|true|false|null)\b"
    r'|-?[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?|"")*',
    re.IGNORECASE,
)


def _path_flow(flows: list[Flow], path: Any) -> list[Flow]:
    """What a jsonpath test or query over a table's document carries: the keys its path
    names (keyed: their values are tested only for equality with constants, the value
    under a key taken as a column of its name), else any column. A path that asks about
    the values under its keys otherwise (`$.msg ? (@ like_regex "078")`, `@ starts with`,
    `@ > "SSN"`) meets the document whole too: the text it asks about is the document's,
    which the value detectors mask inside it."""
    if not any(f.user and (f.columns or f.tables) for f in flows):
        return []
    keys = _jsonpath_keys(path)
    if keys is None:
        return _any_key(flows)
    text = _JSONPATH_STRING.sub('""', str(path["A_Const"]["sval"].get("sval", "")))
    if _JSONPATH_EQUALITY_ONLY.fullmatch(text):
        return [Flow(EXPRESSION, keys, keyed=dict(keys))]
    whole = [
        Flow(EXPRESSION, dict(f.columns), documents=dict(f.documents))
        for f in flows
        if f.user and f.columns
    ]
    return [Flow(EXPRESSION, keys), *whole]


def _any_key(flows: list[Flow]) -> list[Flow]:
    """A flow of any column when one of these reads a database table's value."""
    if any(f.user and (f.columns or f.tables) for f in flows):
        return [Flow(EXPRESSION, tables={"*": None}, changed=True)]
    return []


_JSON_PATH_FUNCTIONS = frozenset(
    {"jsonb_extract_path", "jsonb_extract_path_text", "json_extract_path", "json_extract_path_text"}
)

# jsonpath functions that answer whether a path holds, never the value it reaches
_PATH_TESTS = frozenset(
    f"jsonb_path_{name}" for name in ("exists", "exists_tz", "match", "match_tz")
)

# what a cast reads as a document: a text column cast so holds masked keys as one does
_DOCUMENT_TYPES = frozenset({"json", "jsonb", "xml", "hstore"})
# ...and the functions that read text as one (the types' input functions, xml(text))
_DOCUMENT_FUNCTIONS = frozenset(
    {
        "json", "jsonb", "xml", "hstore", "json_in", "jsonb_in", "xml_in", "hstore_in",
        "json_recv", "jsonb_recv", "xml_recv", "hstore_recv",
    }
)  # fmt: skip

# types of pg_catalog whose input no JSON object or array, nor XML element, parses as (an
# allow-list: text, arrays and ranges, geometry, bytea and the like are left out)
_SCALAR_TYPES = frozenset(
    {
        "int2", "int4", "int8", "smallint", "integer", "bigint", "numeric", "decimal",
        "float4", "float8", "real", "bool", "boolean", "date", "timestamp", "timestamptz",
        "time", "timetz", "interval", "uuid",
    }
)  # fmt: skip


# the scalar casts whose type holds no card or phone number's digits the value detectors
# mask under a key of any name, nor reads them as another value in order (an allow-list:
# int8, numeric, the floats and interval do: '+14155550123'::interval is 3932097:15:23).
# A date or timestamp reads only bare digits ('4155550123'::date is 415555-01-23), which
# the detectors mask only under a key named as a sensitive field (tel, ssn), questioned by
# its name whatever the cast (postgres_lineage.rego pg_masked_key); an int4 holds a
# social security number or some phone numbers, the same
_NARROW_CASTS = frozenset(
    {
        "int2", "int4", "smallint", "integer", "bool", "boolean", "uuid", "time", "timetz",
        "date", "timestamp", "timestamptz",
    }
)  # fmt: skip


def _value_key(node: Any) -> str | None:
    """The name of the key whose value node takes out of a document (`_taken_out`): the
    last key named on the way (`doc->'pay'->>'card'`, `doc #>> '{pay,card}'`, `doc['pay']
    ['card']`: card; `doc->'cards'->>0`: cards), lower case as `_keys_flow` names it."""
    while isinstance(node, dict) and len(node) == 1:
        ((tag, fields),) = node.items()
        keys: list[Any]
        if tag == "TypeCast":
            node = fields.get("arg")
            continue
        if tag == "A_Expr":
            operator = _sval((fields.get("name") or [{}])[-1])
            keys = [fields.get("rexpr")]
            if operator.startswith("#"):
                path = _constant_path(fields.get("rexpr"))
                path = path if isinstance(path, dict) else {}
                text = str((path.get("A_Const") or {}).get("sval", {}).get("sval", ""))
                inner = text.strip().removeprefix("{").removesuffix("}")
                parts = [k.strip().strip('"') for k in inner.split(",")]
                keys = [{"A_Const": {"sval": {"sval": k}}} for k in parts if not k.isdigit()]
            node = fields.get("lexpr")
        elif tag == "A_Indirection":
            keys = [
                {"A_Const": {"sval": {"sval": _sval(s)}}}
                if "String" in s
                else (s.get("A_Indices") or {}).get("uidx")
                for s in fields.get("indirection", ())
            ]
            node = fields.get("arg")
        elif tag == "FuncCall":
            args = list(fields.get("args") or ())
            keys, node = args[1:], args[0] if args else None
        else:
            return None
        for key in reversed(keys):
            const = key.get("A_Const", {}) if isinstance(key, dict) else {}
            text = str(const.get("sval", {}).get("sval", "")) if "sval" in const else ""
            if text:
                return text.lower()
    return None


def _taken_out(node: Any) -> bool:
    """Whether node is a value taken out of a column by constant keys or paths naming a
    key (`doc->>'n'`, `profile #>> '{a,b}'`, `profile['n']`, jsonb_extract_path_text(profile,
    'n'), through casts to text or a document type): not the column itself, nor only a cast
    of it, nor a position (nothing that computes from its text: substr(...)::int would say
    whether one character of a document is a digit)."""
    return bool(_extraction(node))


def _extraction(node: Any) -> bool | None:
    """_taken_out's walk: None when node is no such value, else whether a key, path or
    position was taken on the way to the column."""
    taken = False
    while True:
        if not isinstance(node, dict) or len(node) != 1:
            return None
        ((tag, fields),) = node.items()
        if tag == "ColumnRef":
            return taken
        if tag == "TypeCast" and "arg" in fields:
            type_name = fields.get("typeName", {}).get("TypeName", fields.get("typeName", {}))
            names = [_sval(n).lower() for n in type_name.get("names", ())]
            if (
                not names
                or names[-1] not in _KEEPING_TYPES | _DOCUMENT_TYPES
                or names[:-1] not in ([], ["pg_catalog"])
                or type_name.get("typmods")
                or type_name.get("arrayBounds")
            ):
                return None
            node = fields["arg"]
        elif tag == "A_Expr" and fields.get("kind", "AEXPR_OP") == "AEXPR_OP":
            operator: list[Any] = list(fields.get("name") or ())
            if len(operator) != 1 or _sval(operator[0]) not in _JSON_EXTRACTIONS:
                return None
            path = _sval(operator[0]).startswith("#")
            key = fields.get("rexpr")
            if path:
                key = _constant_path(key)
            if not isinstance(key, dict) or "A_Const" not in key or "lexpr" not in fields:
                return None
            node, taken = fields["lexpr"], taken or _names_key([key], path)
        elif tag == "A_Indirection":
            for step in fields.get("indirection", ()):
                bounds = step.get("A_Indices") if isinstance(step, dict) else None
                if bounds is None and "String" not in step:
                    return None
                if bounds is not None and (
                    "lidx" in bounds or "A_Const" not in (bounds.get("uidx") or {})
                ):
                    return None
            steps = fields.get("indirection", ())
            keys = [s["A_Indices"]["uidx"] for s in steps if "A_Indices" in s]
            named = any("String" in s for s in steps) or _names_key(keys, False)
            node, taken = fields.get("arg"), taken or named
        elif tag == "FuncCall":
            name = [_sval(p).lower() for p in fields.get("funcname", ())]
            args = fields.get("args") or ()
            if (
                not name
                or name[-1] not in _JSON_PATH_FUNCTIONS
                or name[:-1] not in ([], ["pg_catalog"])
                or not args
                or any(not isinstance(a, dict) or "A_Const" not in a for a in args[1:])
            ):
                return None
            node, taken = args[0], taken or _names_key(list(args[1:]), False)
        else:
            return None


# the element types a path written as an array may be cast to (`#>> '{a}'::text[]`)
_PATH_ELEMENT_TYPES = frozenset({"text", "varchar"})


def _constant_path(node: Any) -> Any:
    """A path of `#>`/`#>>` written as a typed array of constants, as the one string
    constant the same path is written as (`'{color}'`): `ARRAY['color']`, `ARRAY['a',
    'b']::text[]` (Metabase's JSON columns), `'{color}'::text[]`. Anything else (a key
    holding a comma, brace, quote, backslash, blank or NULL, which the array literal
    would spell otherwise, an element that is no string constant, another type) is
    returned as it is: a computed path, which may be any key."""
    if not isinstance(node, dict) or len(node) != 1:
        return node
    ((tag, fields),) = node.items()
    if tag == "TypeCast" and isinstance(fields.get("arg"), dict):
        type_name = fields.get("typeName", {}).get("TypeName", fields.get("typeName", {}))
        names = [_sval(n).lower() for n in type_name.get("names", ())]
        if (
            not names
            or names[-1] not in _PATH_ELEMENT_TYPES
            or names[:-1] not in ([], ["pg_catalog"])
            or type_name.get("typmods")
            or len(type_name.get("arrayBounds") or ()) != 1
        ):
            return node
        inner = fields["arg"]
        if "A_Const" in inner:
            const = inner["A_Const"]
            return inner if "sval" in const else node
        ((tag, fields),) = inner.items()
    if tag != "A_ArrayExpr":
        return node
    keys = []
    for element in fields.get("elements") or ():
        const = element.get("A_Const") if isinstance(element, dict) else None
        if const is None or "sval" not in const:
            return node
        key = str(const["sval"].get("sval", ""))
        if (
            not key
            or key != key.strip()
            or any(c in key for c in ',{}"\\')
            or key.lower() == "null"
        ):
            return node
        keys.append(key)
    if not keys:
        return node
    return {"A_Const": {"sval": {"sval": "{" + ",".join(keys) + "}"}}}


def _names_key(nodes: list[Any], path: bool) -> bool:
    """Whether these constant keys (or paths, '{a,0}') name a key, not only positions (an
    array's element is a document of its own: `docs[1]`, `profile->0`; `#>> '{}'` is the
    whole document as text)."""
    for node in nodes:
        const = node.get("A_Const", {}) if isinstance(node, dict) else {}
        text = str(const.get("sval", {}).get("sval", "")) if "sval" in const else ""
        if path:
            parts = text.strip().removeprefix("{").removesuffix("}").split(",")
            if any(p.strip() and not p.strip().isdigit() for p in parts):
                return True
        elif text:
            return True
    return False


def _keys_flow(nodes: list[Any], path: bool) -> Flow:
    """What a document's value taken by these keys (or paths, '{a,password}') carries: each
    constant key's name as a column, so `profile->>'password'` is masked and questioned as
    password is; a key or position the statement computes may be any key (tables "*")."""
    columns: dict[str, None] = {}
    for node in nodes:
        const = node.get("A_Const") if isinstance(node, dict) else None
        if const is None or "isnull" in const:
            return Flow(EXPRESSION, tables={"*": None}, changed=True)
        if "sval" not in const:
            continue  # a number: an array element's position
        text = str(const["sval"].get("sval", ""))
        if path:
            inner = text.strip().removeprefix("{").removesuffix("}")
            keys = [k.strip().strip('"') for k in inner.split(",")]
            if '"' in inner or "\\" in inner:
                return Flow(EXPRESSION, tables={"*": None}, changed=True)
        else:
            keys = [text]
        columns.update(_named_keys(k for k in keys if k))
    return Flow(EXPRESSION, columns)


# operators asking whether a document holds keys or values a constant names
_CONTAINMENT = frozenset({"@>", "<@", "?", "?|", "?&"})
# an array's containment and overlap, which compare its elements with = to another's
_ARRAY_MEMBERSHIP = frozenset({"@>", "<@", "&&"})


def _constant_array(node: Any) -> bool:
    """Whether node is an array of constants: ARRAY['a', 'b'] or '{a,b}'::text[]."""
    if not isinstance(node, dict) or len(node) != 1:
        return False
    ((tag, fields),) = node.items()
    if tag == "A_ArrayExpr":
        return all(_unwrap(e)[0] == "A_Const" for e in fields.get("elements", ()))
    if tag == "TypeCast" and "arg" in fields:
        type_name = fields.get("typeName", {}).get("TypeName", fields.get("typeName", {}))
        return bool(type_name.get("arrayBounds")) and _unwrap(fields["arg"])[0] == "A_Const"
    return False


def _contained_keys(node: Any, operator: str) -> dict[str, None] | None:
    """The keys a constant on the other side of a containment or key test names (every
    object key of `@>`'s document at any depth; `?`'s key; `?|`'s and `?&`'s array of
    them), lower case; None when it is no constant this reads (then the test may ask
    about the whole document)."""
    while isinstance(node, dict) and "TypeCast" in node and "arg" in node["TypeCast"]:
        node = node["TypeCast"]["arg"]
    const = node.get("A_Const") if isinstance(node, dict) else None
    if const is None or "sval" not in const:
        return None
    text = str(const["sval"].get("sval", ""))
    if operator == "?":
        return _named(text, key=True)
    if operator in ("?|", "?&"):
        inner = text.strip()
        if not (inner.startswith("{") and inner.endswith("}")) or "\\" in inner:
            return None
        listed = [k.strip() for k in inner[1:-1].split(",")]
        if any('"' in k[1:-1] for k in listed):
            return None
        return _named_keys(k.strip('"') for k in listed if k)
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return None
    keys: dict[str, None] = {}
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            keys.update(_named_keys(value))
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return keys


def _sval(node: Fields) -> str:
    value = node.get("String")
    return value.get("sval", "") if value is not None else ""


# FigureColname's names for nodes that are not column references or calls.
_NODE_NAMES = {
    "CaseExpr": "case",
    "A_ArrayExpr": "array",
    "RowExpr": "row",
    "CoalesceExpr": "coalesce",
    "GroupingFunc": "grouping",
}


def _column_name(node: Any) -> str:
    """The name the server gives an unnamed output (its FigureColname), "" if unsure."""
    if not node:
        return ""
    ((tag, fields),) = node.items()
    if tag == "ColumnRef":
        last = fields["fields"][-1]
        return _sval(last) if "String" in last else ""
    if tag == "FuncCall":
        return _sval(fields["funcname"][-1])
    if tag == "TypeCast":
        inner = _column_name(fields.get("arg"))
        if inner and inner != "?column?":
            return inner
        names = fields.get("typeName", {}).get("names", ())
        return _sval(names[-1]) if names else ""
    if tag == "A_Indirection":
        steps = fields.get("indirection", ())
        return (
            _sval(steps[-1]) if steps and "String" in steps[-1] else _column_name(fields.get("arg"))
        )
    if tag == "SubLink":
        kind = fields.get("subLinkType", "EXISTS_SUBLINK")
        if kind == "EXISTS_SUBLINK":
            return "exists"
        if kind == "ARRAY_SUBLINK":
            return "array"
        if kind == "EXPR_SUBLINK":
            targets = fields["subselect"]["SelectStmt"].get("targetList", ())
            if targets:
                res = targets[0]["ResTarget"]
                return str(res.get("name") or _column_name(res.get("val")))
        return "?column?"
    if tag == "MinMaxExpr":
        return "greatest" if fields.get("op") == "IS_GREATEST" else "least"
    if tag in _NODE_NAMES:
        return _NODE_NAMES[tag]
    if tag in ("A_Const", "A_Expr", "BoolExpr", "NullTest", "BooleanTest", "ParamRef"):
        return "?column?"
    return ""


_KEYED = {"keyed": True}


def lineage_fields(tag: str, fields: Fields) -> dict[str, Any]:
    """The outputs and predicates entry fields of one statement node of the JSON tree, and
    writes (only when there are any): the values it stores that read columns (INSERT's
    rows, UPDATE's and MERGE's SET values, CREATE TABLE AS and SELECT INTO's outputs,
    set_config's arguments), as outputs are given (kind, columns, tables, keeps); and
    arguments (only when there are any): each value given to a function that whole rows
    reach or that columns reach changed on the way (not as they are), as {function,
    columns, tables}, the function named as the server looks it up (`setval`,
    `public.f`)."""
    walk = Lineage(joins=not _makes_relations(fields))
    try:
        outputs = walk.statement(tag, fields)
    except RecursionError:
        return unknown_lineage()
    entry: dict[str, Any] = {
        "outputs": [_output(name, flow) for name, flow in outputs],
        "predicates": [
            _predicate(column, use, keyed, (column, use) in walk.documents)
            | ({"wide": True} if (column, use) in walk.wide else {})
            for (column, use), keyed in walk.predicates.items()
        ],
    }
    written = [_output("", flow) for flow in walk.written if flow.columns or flow.tables]
    if written:
        entry["writes"] = written
    arguments = [
        {"function": function, "columns": list(flow.columns), "tables": list(flow.tables)}
        for function, flow in walk.arguments
        if flow.columns or flow.tables
    ]
    if arguments:
        entry["arguments"] = arguments
    if walk.shadows:
        entry["shadows"] = walk.shadows
    if tag == "SelectStmt" and not fields.get("intoClause") and _one_column_each(fields):
        entry["exact"] = True
    if tag == "SelectStmt" and _settings_rows(fields):
        entry["settings_rows"] = True
    if tag in _NAMING:
        del entry["outputs"], entry["predicates"]  # none: only what it names
    return entry


def _settings_rows(fields: Fields) -> bool:
    """Whether every current_setting of a SELECT reads the setting of a pg_settings row
    (psql's \\dconfig: `SELECT s.name, pg_catalog.current_setting(s.name) FROM
    pg_catalog.pg_settings s WHERE ...`, \\dconfig+ joining pg_parameter_acl): each call
    an output of the SELECT itself, its one argument `<alias>.name` of the one
    pg_catalog.pg_settings its FROM reads (schema-qualified: no CTE or relation of
    another schema takes the name), alone or LEFT JOINed to pg_catalog.pg_parameter_acl.
    A reader reads pg_settings through a row filter of the settings readers may read
    (rego/portcullis/guards.rego), so such a call reads only those; any other name
    (`current_setting(x.name)` of a VALUES list or a LATERAL constant, a call in a
    condition or sub-query) is a name the policy cannot read."""
    if fields.get("op", "SETOP_NONE") != "SETOP_NONE" or fields.get("withClause"):
        return False
    alias = _settings_alias(fields.get("fromClause") or [])
    if alias is None:
        return False
    direct = 0
    for target in fields.get("targetList") or ():
        value = target.get("ResTarget", {}).get("val", {})
        call = value.get("FuncCall") if isinstance(value, dict) else None
        if call is None or not _current_setting(call):
            continue
        args = call.get("args") or []
        refs = [_sval(f) for f in args[0].get("ColumnRef", {}).get("fields", ())] if args else []
        if len(args) != 1 or refs != [alias, "name"] or any(k in call for k in _CALL_MODIFIERS):
            return False
        direct += 1
    return direct > 0 and direct == _count_current_setting(fields)


def _settings_alias(items: list[Any]) -> str | None:
    """The name pg_catalog.pg_settings goes by in a FROM of it alone, or LEFT JOINed to
    pg_catalog.pg_parameter_acl (None for any other FROM)."""
    if len(items) != 1 or not isinstance(items[0], dict):
        return None
    item = items[0]
    if "JoinExpr" in item:
        join = item["JoinExpr"]
        acl = join.get("rarg", {}).get("RangeVar", {})
        if (
            join.get("jointype") != "JOIN_LEFT"
            or (acl.get("schemaname"), acl.get("relname")) != ("pg_catalog", "pg_parameter_acl")
            or acl.get("alias", {}).get("colnames")
            or join.get("usingClause")
            or join.get("isNatural")
        ):
            return None
        item = join.get("larg", {})
    relation = item.get("RangeVar") if isinstance(item, dict) else None
    if not relation or (relation.get("schemaname"), relation.get("relname")) != (
        "pg_catalog",
        "pg_settings",
    ):
        return None
    alias = relation.get("alias") or {}
    if alias.get("colnames") or not relation.get("inh", True):
        return None
    return str(alias.get("aliasname") or "pg_settings")


def _current_setting(call: Fields) -> bool:
    names = [_sval(n).lower() for n in call.get("funcname", ())]
    return names in (["current_setting"], ["pg_catalog", "current_setting"])


def _count_current_setting(node: Any) -> int:
    """How many calls of current_setting (in any schema, any case) the tree holds."""
    count = 0
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            call = item.get("FuncCall")
            if isinstance(call, dict) and call.get("funcname"):
                last = _sval(call["funcname"][-1]).lower()
                count += last == "current_setting"
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def _predicate(column: str, use: str, keyed: bool, document: bool) -> dict[str, Any]:
    predicate: dict[str, Any] = {"column": column, "use": use}
    if keyed:
        predicate.update(_KEYED)
    if document:
        predicate["document"] = True  # met as a document the statement made of it
    return predicate


def _one_column_each(fields: Fields) -> bool:
    """Whether each output of a SELECT is one column of its result, in order (the policy
    names outputs by position, which the proxy finds in the RowDescription): no target of
    any of its SELECTs is `*`, `t.*` or `(x).*`, which the server expands into as many
    columns as the relation, function result or composite has (none, or several), while
    lineage may give one output for them (`SELECT * FROM f()`, `(f(x)).*`). Every other
    target is one column: the server expands only these (transformTargetList)."""
    if fields.get("op", "SETOP_NONE") != "SETOP_NONE":
        return _one_column_each(fields.get("larg") or {}) and _one_column_each(
            fields.get("rarg") or {}
        )
    if "valuesLists" in fields:
        return True
    for target in fields.get("targetList", ()):
        val = (target.get("ResTarget") or {}).get("val")
        if not val or _star_ref(val) is not None:
            return False
        indirection = (val.get("A_Indirection") or {}).get("indirection") or ()
        if any("A_Star" in node for node in indirection):
            return False
    return True


def _output(name: str, flow: Flow) -> dict[str, Any]:
    """One output's entry; a computed one whose columns reach it only as they are (no
    _KEEPING function, operator, node or cast changed their text) says so: keeps."""
    output: dict[str, Any] = {
        "name": name,
        "kind": flow.kind,
        "columns": list(flow.columns),
        "tables": list(flow.tables),
    }
    if flow.kind in _COMPUTED and not flow.changed and (flow.columns or flow.tables):
        output["keeps"] = True
    if flow.keyed:
        output["keyed"] = list(flow.keyed)
    if flow.arithmetic and flow.kind in _COMPUTED:
        output["arithmetic"] = list(flow.arithmetic)
    return output


def unknown_lineage() -> dict[str, Any]:
    """What a statement too deep to follow gets: one output that may be any whole row and
    a predicate that may read any column, so the policy judges the worst case."""
    return {
        "outputs": [{"name": "", "kind": WHOLE_ROW, "columns": [], "tables": ["*"]}],
        "predicates": [{"column": "*", "use": "other"}],
    }
