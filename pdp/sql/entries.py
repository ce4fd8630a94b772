"""What one entry of `input.command.postgres.statements` holds, for both walks of a tree.

Owns the vocabulary the two classifier walks (pdp.sql.classify over the parser's JSON,
pdp.sql.reference over pglast.ast) share, so they cannot drift apart on it: the statement
type of each parser tag, the tables and functions a walk finds (Findings), the fields SET
and transaction statements carry, and the entry for text the parser rejects.

No parsing here: the walks hand in what they read from their tree.
"""

from __future__ import annotations

from typing import Any

Entry = dict[str, Any]

_BY_TAG = {
    "SelectStmt": "select",
    "InsertStmt": "insert",
    "UpdateStmt": "update",
    "DeleteStmt": "delete",
    "MergeStmt": "merge",
    "CopyStmt": "copy",
    "TruncateStmt": "truncate",
    "GrantStmt": "grant",
    "GrantRoleStmt": "grant",
    "CreateRoleStmt": "grant",
    "AlterRoleStmt": "grant",
    "AlterRoleSetStmt": "grant",
    "DropRoleStmt": "grant",
    "AlterDefaultPrivilegesStmt": "grant",
    "ReassignOwnedStmt": "grant",
    "DropOwnedStmt": "grant",
    "AlterSystemStmt": "alter_system",
    "CreateExtensionStmt": "create_extension",
    "VariableSetStmt": "set",
    "VariableShowStmt": "show",
    "ExplainStmt": "explain",
    "TransactionStmt": "transaction",
    "DoStmt": "do",
    "CallStmt": "call",
    "PrepareStmt": "prepare",
    "ExecuteStmt": "execute",
    "DeallocateStmt": "deallocate",
    "DeclareCursorStmt": "declare",
    "FetchStmt": "fetch",
    "ClosePortalStmt": "close",
    "ListenStmt": "listen",
    "UnlistenStmt": "unlisten",
    "NotifyStmt": "notify",
    "LockStmt": "lock",
    "DiscardStmt": "discard",
    "CreateTableAsStmt": "ddl",
    "RefreshMatViewStmt": "ddl",
    "IndexStmt": "ddl",
    "ViewStmt": "ddl",
    "RuleStmt": "ddl",
    "CompositeTypeStmt": "ddl",
    "ReplicaIdentityStmt": "ddl",
    "ConstraintsSetStmt": "transaction",
    "LoadStmt": "load",
    "VacuumStmt": "maintenance",
    "ClusterStmt": "maintenance",
    "ReindexStmt": "maintenance",
    "CheckPointStmt": "maintenance",
}

# Schema-changing statements not named above are recognised by their node name.
_DDL_PREFIXES = ("Create", "Alter", "Define", "Rename", "Comment", "SecLabel", "Import")

# Statement nodes that, found inside another statement, add tables but no entry of their
# own: subqueries read only, and the settings inside ALTER SYSTEM / ALTER ROLE ... SET /
# CREATE FUNCTION ... SET are configuration the parent statement already names.
NOT_NESTED_TAGS = {"SelectStmt", "VariableSetStmt"}

# DropStmt object kinds whose names are relations, listed as tables.
RELATION_OBJECTS = {"table", "view", "materialized_view", "foreign_table", "sequence", "index"}

# DDL whose statement may hold expressions over a table's values, stored or checked where a
# value could come back unmasked or answer a question (a generated column, a CHECK
# constraint validated against every row, an index expression or WHERE, ALTER COLUMN TYPE
# ... USING): the entry says value_expressions when one holds a column reference or a
# sub-query, and (ALTER TABLE) alter_commands, the AlterTableType names of its commands.
# CREATE UNIQUE INDEX says unique: over a table's stored values, whether an INSERT ... ON
# CONFLICT DO NOTHING of a guess inserts a row then answers whether the value is stored.
DDL_VALUE_TAGS = frozenset({"AlterTableStmt", "CreateStmt", "IndexStmt"})
VALUE_NODES = frozenset({"ColumnRef", "SubLink"})


def runs_opclass_code(opclass: list[str]) -> bool:
    """Whether an index column's (or exclusion constraint's) operator class, as written, may
    be one the database made: its support functions and operators then run on every row
    written, and on VACUUM, ANALYZE and REINDEX, with nothing else in a later statement
    naming them (the session's facts, read when it started, do not list an index made
    since). Only pg_catalog's, written so, is known to be initdb's: an unqualified name
    resolves over the search path, which may put another schema first."""
    return bool(opclass) and not (len(opclass) == 2 and opclass[0] == "pg_catalog")


def reads_anything(parts: list[str]) -> bool:
    """Whether a function called in such DDL (a column's DEFAULT, a generated column, a
    CHECK) may return what it reads from any table: one written with a schema other than
    pg_catalog is the database's own (`DEFAULT public.pw_of(1)` stores a password that
    is then read unmasked). Unqualified, the policy judges it by the proxy's
    user_functions; pg_catalog's built-ins read no table."""
    return len(parts) > 1 and parts[-2] != "pg_catalog"


def alter_command(entry: Entry, subtype: str) -> None:
    """Adds one ALTER TABLE command's AlterTableType name to entry["alter_commands"]."""
    commands = entry.setdefault("alter_commands", [])
    name = subtype.removeprefix("AT_")
    if name not in commands:
        commands.append(name)
        commands.sort()


def rename_fields(entry: Entry, rename_type: str, subname: str | None) -> None:
    """RENAME's object kind, and for a column (or attribute) the column's old name as the
    parser folded it: the masks name columns, so a renamed sensitive column escapes them."""
    entry["object"] = rename_type.removeprefix("OBJECT_").lower()
    if entry["object"] in ("column", "attribute") and subname is not None:
        entry["renamed_column"] = subname


def function_language(named: list[str]) -> str:
    """CREATE FUNCTION / PROCEDURE's language as the server reads it: the LANGUAGE clause's
    name, lower-cased (an identifier), or sql for a body written in SQL without one (the
    server refuses any other function that names none)."""
    return named[-1].lower() if named else "sql"


TRUE_WORDS = {"true", "on", "1", "yes"}

# A_Expr kinds the server turns into comparisons it looks up by name (x BETWEEN a AND b is
# x >= a AND x <= b; NOT BETWEEN, x < a OR x > b); the node names no operator itself.
BETWEEN_KINDS = frozenset(
    {"AEXPR_BETWEEN", "AEXPR_NOT_BETWEEN", "AEXPR_BETWEEN_SYM", "AEXPR_NOT_BETWEEN_SYM"}
)
BETWEEN_OPERATORS = ("<", "<=", ">=", ">")


def unparseable(exc: BaseException) -> Entry:
    message = str(exc.args[0]) if exc.args else type(exc).__name__
    return {
        "type": "unparseable",
        "tag": "ParseError",
        "tables": [],
        "functions": [],
        "error": message,
    }


class Findings:
    """What the walk of one statement's tree finds, for both trees (pglast.ast and JSON):
    the tables it names and the functions it calls, under every name policy reads."""

    __slots__ = (
        "attributes",
        "cased",
        "dynamic",
        "functions",
        "locking",
        "operators",
        "qualified",
        "read_dynamic",
        "read_parameters",
        "read_settings",
        "session_settings",
        "settings",
        "tables",
        "type_names",
        "unqualified",
    )

    def __init__(self) -> None:
        self.tables: dict[str, None] = {}
        self.functions: dict[str, None] = {}
        self.attributes: dict[str, None] = {}
        self.unqualified: dict[str, None] = {}
        self.qualified: dict[str, None] = {}
        self.cased: dict[str, None] = {}
        self.settings: dict[str, None] = {}
        self.session_settings: dict[str, None] = {}
        self.operators: dict[str, None] = {}
        self.type_names: dict[str, None] = {}
        self.read_settings: dict[str, None] = {}
        self.read_parameters: dict[int, None] = {}
        self.dynamic = False
        self.read_dynamic = False
        self.locking = False

    def call(self, parts: list[str], first: Const | None, third: Const | None = None) -> None:
        """One function call: its name as written (parts, the parser's identifiers: unquoted
        ones already folded to lower case), its first argument if a constant and its
        third if a constant (set_config's is_local)."""
        if not parts:
            return
        written = ".".join(parts)
        lowered = written.lower()
        name = parts[-1].lower()
        self.functions[name] = None
        if len(parts) > 1:
            self.qualified[lowered] = None
        if len(parts) == 1 or (len(parts) == 2 and parts[0] == "pg_catalog"):
            # resolved over the search path, pg_catalog first (or in pg_catalog): a
            # built-in, unless the database defines a function of this name (the policy
            # knows which from the proxy, as the catalog spells it), whose result lineage
            # cannot follow. Kept as the server looks it up: a quoted name with capitals
            # ("PwOf") is the database's PwOf, never pwof
            self.unqualified[parts[-1]] = None
        if written != lowered:
            # A quoted name with capitals is another function than the lower-case one the
            # lists name (pg_catalog has none): policy sees it exactly as the server will.
            self.cased[written] = None
        if name == "set_config":
            # set_config(name, value, is_local) is SET name in a function call: which
            # setting it changes is known only when its first argument is a string literal.
            if first is not None and first[0] == "sval":
                self.settings[first[1].lower()] = None
                if not _literal_true(third):
                    # is_local not a constant true: the change outlives the transaction
                    self.session_settings[first[1].lower()] = None
            else:
                self.dynamic = True
        elif name == "current_setting":
            # current_setting(name[, missing_ok]) is SHOW name in a function call: which
            # setting it reads is known only when its first argument is a string literal,
            # or once the value a parameter ($n, as it is or cast to text or varchar:
            # PARAMETER) is bound to is known (SQLAlchemy's reflection binds it).
            if first is not None and first[0] == "sval":
                self.read_settings[first[1].lower()] = None
            elif first is not None and first[0] == PARAMETER:
                self.read_parameters[int(first[1])] = None
            else:
                self.read_dynamic = True

    def attribute(self, name: str) -> None:
        """A name written after a dot on a row (`c.f`, `schema.table.f`, `(expr).f`): the
        column f of that row, or, when the row has no such column, the call f(row) on the
        whole row (the server's attribute notation: `c.row_to_json` is row_to_json(c),
        `c.concat` the row as text). Which one only the catalog knows, so the name is
        reported as written (quoted names keep their case) for the policy to judge."""
        self.attributes[name] = None

    def operator(self, parts: list[str]) -> None:
        """An operator the statement applies, as written: `OPERATOR(schema.op)` keeps its
        schema. Operators run functions, and the server picks one by name and argument
        types over every schema on the search path, as it does functions. pg_catalog's by
        its qualified name is reported by its bare name: a superuser may make one there
        too (`OPERATOR(pg_catalog.-)` of CREATE OPERATOR pg_catalog.- (int, text) ran its
        function), and the database's operators are known by bare name (user_operators)."""
        if len(parts) == 2 and parts[0] == "pg_catalog":
            self.operators[parts[1]] = None
        elif parts:
            self.operators[".".join(parts)] = None

    def implied(self, *symbols: str) -> None:
        """Operators the server looks up by name for a construct that names none: `=` for
        IN (subquery), simple CASE, JOIN USING and NATURAL JOIN; `<`, `<=`, `>=` and `>`
        for BETWEEN."""
        for symbol in symbols:
            self.operators[symbol] = None

    def type_name(self, parts: list[str]) -> None:
        """A type the statement names (a cast's target, above all): a cast to a type runs
        that type's input function, a domain's checks, or a cast function, which may all
        be defined outside pg_catalog. pg_catalog's by its qualified name is reported by
        its bare name: a superuser may make a domain there too (`5::pg_catalog.d` ran its
        CHECK's function), and the database's types are known by bare name (user_types)."""
        if len(parts) == 2 and parts[0] == "pg_catalog":
            self.type_names[parts[1]] = None
        elif parts:
            self.type_names[".".join(parts)] = None

    def fold(self, inner: Entry) -> None:
        """Add what an entry classified from other text (a DO block's body) holds."""
        self.tables.update(dict.fromkeys(inner["tables"]))
        self.functions.update(dict.fromkeys(inner["functions"]))
        self.qualified.update(dict.fromkeys(inner["qualified_functions"]))
        self.cased.update(dict.fromkeys(inner.get("cased_functions", ())))
        self.attributes.update(dict.fromkeys(inner.get("attribute_names", ())))
        self.unqualified.update(dict.fromkeys(inner.get("unqualified_functions", ())))
        self.settings.update(dict.fromkeys(inner.get("settings", ())))
        self.session_settings.update(dict.fromkeys(inner.get("session_settings", ())))
        self.operators.update(dict.fromkeys(inner.get("operators", ())))
        self.type_names.update(dict.fromkeys(inner.get("type_names", ())))
        self.read_settings.update(dict.fromkeys(inner.get("read_settings", ())))
        # a DO block's code has no parameters: its $1 is a PL/pgSQL function's argument
        if inner.get("read_setting_parameters"):
            self.read_dynamic = True
        self.dynamic = self.dynamic or inner.get("dynamic_settings", False)
        self.read_dynamic = self.read_dynamic or inner.get("dynamic_read_settings", False)
        self.locking = self.locking or inner.get("locking", False)

    def into(self, entry: Entry) -> None:
        entry["tables"] = list(self.tables)
        entry["functions"] = list(self.functions)
        entry["qualified_functions"] = list(self.qualified)
        if self.cased:
            entry["cased_functions"] = list(self.cased)
        if self.attributes:
            entry["attribute_names"] = list(self.attributes)
        if self.unqualified:
            entry["unqualified_functions"] = list(self.unqualified)
        if self.settings:
            entry["settings"] = list(self.settings)
        if self.session_settings:
            entry["session_settings"] = list(self.session_settings)
        if self.operators:
            entry["operators"] = list(self.operators)
        if self.type_names:
            entry["type_names"] = list(self.type_names)
        if self.read_settings:
            entry["read_settings"] = list(self.read_settings)
        if self.dynamic:
            entry["dynamic_settings"] = True
        if self.read_dynamic:
            entry["dynamic_read_settings"] = True
        if self.read_parameters:
            entry["read_setting_parameters"] = list(self.read_parameters)
        if self.locking:
            entry["locking"] = True


# A constant as both trees can say it: (the A_Const field that holds it, its text), the
# field one of sval, ival, fval, boolval, bsval, isnull.
Const = tuple[str, str]

# The kind of Const a function's first argument is when it is a bound parameter `$n` as it
# is, or cast to text or varchar without a length (the value is then the setting's name
# as bound; a length would cut it): (PARAMETER, "n").
PARAMETER = "param"

# the casts of a parameter that keep its text as bound, by the type names the parser gives
PARAMETER_CASTS = frozenset(
    [("text",), ("pg_catalog", "text"), ("varchar",), ("pg_catalog", "varchar")]
)


def _literal_true(value: Const | None) -> bool:
    """A constant the server reads as boolean true (`true`, or a string its parse_bool
    takes as true): set_config's is_local when the change ends with the transaction."""
    if value is None or value[0] not in ("boolval", "sval"):
        return False
    return value[1].strip().lower() in _TRUE_SETTING


def const_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


# The value of a boolean setting the server reads as true (its parse_bool: any prefix of
# true or yes, on, 1); everything else is false or an error.
_TRUE_SETTING = frozenset({"t", "tr", "tru", "true", "y", "ye", "yes", "on", "1"})

# Settings that make transactions read-write unless set to true; SET TRANSACTION and SET
# SESSION CHARACTERISTICS say it as a transaction_read_only option.
_READ_ONLY_SETTINGS = frozenset({"transaction_read_only", "default_transaction_read_only"})


Options = list[tuple[str, "Const | None"]]


def set_fields(
    entry: Entry,
    kind: str,
    name: str,
    args: list[Const | None],
    options: Options,
    local: bool = False,
) -> None:
    """The fields of a VariableSetStmt from either tree: kind the VariableSetKind name,
    args its value list as constants, options the DefElems of SET TRANSACTION, local its
    is_local (SET LOCAL: the change ends with the transaction)."""
    entry["setting"] = name or "all"
    if local:
        entry["local"] = True
    # SET x TO DEFAULT is RESET x: both return to the session's start-up value.
    entry["reset"] = kind.startswith("VAR_RESET") or kind == "VAR_SET_DEFAULT"
    if kind == "VAR_SET_VALUE" and len(args) == 1 and args[0] is not None:
        entry["value"] = args[0][1]
    if name in _READ_ONLY_SETTINGS:
        # RESET transaction_read_only makes the transaction read-write whatever the
        # session's default; both are judged as read-write unless set to true.
        value = entry.get("value", "").lower()
        if entry["reset"] or value not in _TRUE_SETTING:
            entry["read_write"] = True
    elif kind == "VAR_SET_MULTI" and option_read_write(options):
        entry["read_write"] = True
    if name == "search_path":
        # The server searches pg_catalog first unless the path names it later.
        schemas = [a[1] if a is not None else "" for a in args]
        entry["pg_catalog_first"] = "pg_catalog" not in schemas or schemas[0] == "pg_catalog"
        # each element as the server takes it: a quoted or string one exactly (a string
        # holding a comma is one schema of that name), an unquoted one already folded
        entry["schemas"] = schemas


def temporary_object(tree: Any) -> bool:
    """A DDL statement's tree (the parser's JSON, or a pglast node as node() writes it)
    makes or changes a temporary object that outlives its transaction: a relation TEMP
    or in pg_temp (CREATE TEMP TABLE/VIEW/SEQUENCE, SELECT INTO TEMP, CREATE TABLE AS), or
    a name qualified by pg_temp (a function or type there). Such an object stays on the
    server connection, where a transaction pooler hands it to the next session (whose
    unqualified relation and type names search pg_temp first). A temporary table ON
    COMMIT DROP ends with its transaction."""
    fields = _node_fields(tree)
    if fields is not None:
        into = _node_fields(fields.get("intoClause") or fields.get("into") or {}) or {}
        for action in (fields.get("oncommit"), into.get("onCommit")):
            if (action.get("name") if isinstance(action, dict) else action) == "ONCOMMIT_DROP":
                return False
    return _names_pg_temp(tree)


def _node_fields(value: Any) -> dict[str, Any] | None:
    """A node's fields in either shape ({"Tag": {...}} or {"@": "Tag", ...})."""
    if not isinstance(value, dict):
        return None
    if "@" in value:
        return value
    if len(value) == 1:
        (inner,) = value.values()
        if isinstance(inner, dict):
            return inner
    return value


def _sval(value: Any) -> str | None:
    fields = _node_fields(value)
    if fields is None or not isinstance(fields.get("sval"), str):
        return None
    return fields["sval"]


def _names_pg_temp(value: Any) -> bool:
    if isinstance(value, dict):
        if value.get("relpersistence") == "t":
            return True
        schema = value.get("schemaname")
        if isinstance(schema, str) and schema.startswith("pg_temp"):
            return True
        return any(_names_pg_temp(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        first = _sval(value[0]) if len(value) > 1 else None
        if first is not None and first.startswith("pg_temp"):
            return True
        return any(_names_pg_temp(v) for v in value)
    return False


# Statements that store a setting for later sessions (pg_db_role_setting, the server's
# postgresql.auto.conf) under their `setstmt`.
STORING_SETTINGS = frozenset({"AlterRoleSetStmt", "AlterDatabaseSetStmt", "AlterSystemStmt"})


def stored_setting_fields(entry: Entry, kind: str, name: str) -> None:
    """The fields of a statement of STORING_SETTINGS from either tree, kind and name its
    setstmt's: stored_setting, the setting's name ("all" for RESET ALL), and stored_reset
    when it removes the stored value rather than storing one (RESET, SET ... TO DEFAULT).
    Never the value: the policy judges these by name, so its verdict holds for every text
    of one shape."""
    entry["stored_setting"] = name or "all"
    if kind.startswith("VAR_RESET") or kind == "VAR_SET_DEFAULT":
        entry["stored_reset"] = True


def option_read_write(options: Options) -> bool:
    """Whether SET TRANSACTION / BEGIN options say READ WRITE (transaction_read_only 0)
    anywhere: the server applies them in order, so one is enough."""
    return any(
        name == "transaction_read_only" and (value is None or value[1] not in _TRUE_SETTING)
        for name, value in options
    )


def type_of(tag: str) -> str:
    """The statement type policy sees for a parser node tag."""
    kind = _BY_TAG.get(tag)
    if kind is not None:
        return kind
    if tag.startswith("Drop"):
        return "drop"
    return "ddl" if tag.startswith(_DDL_PREFIXES) else "other"
