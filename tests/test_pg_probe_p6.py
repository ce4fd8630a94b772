"""Probe P6's findings against the real stack (tests/adversary.py: a gateway whose upstream
credential is the `postgres` SUPERUSER; customers.password is a sensitive column, Ada's note
holds a card number only the value detectors find).

A reader, and a dba outside pii-readers (masked like a reader), read values past the masks
through what the server says besides rows:

- an error's detail or context describes the value outside double quotes, which the error
  masking (7b04fa1) redacted only inside them: `Failing row contains (..., hunter2-ada)`
  of a dba's UPDATE that breaks NOT NULL; `JSON data, line 1: ["card ebbb bbbb ...` and
  libxml's echo of the document's line, where translate() moved the card past the
  detectors. Now, under masks, an error or notice outside the classes that describe
  statements (proxies/postgres/values.py _DESCRIBING_CLASSES) has its detail, hint and
  context withheld, a RAISE's message too, and the internal query always;
- set_config('application_name', note, false): the server reports the new value in a
  ParameterStatus, which no mask reads (the card in clear, or translated). set_config's
  arguments are now writes (pdp/sql/lineage.py), denied when they carry any column;
- a dba's DO block stores translate(note, ...) in a variable and RAISEs it, or set_configs
  it: lineage cannot follow a variable. A DO block outside pii-readers may now read no
  table column (rego/portcullis/postgres_lineage.rego).
"""

from __future__ import annotations

import pytest
from adversary import (
    CARD,
    Answer,
    assert_no_secret,
    assert_none_of,
    bind,
    execute,
    parse,
    sync,
)
from pg_probe_stack import arena_fixture, probe_client

from portcullis.masking import Masker
from portcullis.verdict import MaskRule
from proxies.postgres import codec
from proxies.postgres.values import masked_fields

pytestmark = pytest.mark.integration

# what translate(note, '0123456789', 'abcdefghij') makes of Ada's card number
TRANSLATED = b"ebbb bbbb bbbb bbbb"
MASKED = (("readonly",), ("dba",))


# Ada's note under a name postgres.plain_text_columns lists (`title`): a partial use of a
# note (a computation that can fail) is refused before the server since
# tests/test_pg_probe_p37.py; a listed column's still reaches it, and its errors are
# rewritten as any are
arena = arena_fixture(
    "CREATE TABLE p6_titles AS SELECT id, note AS title FROM customers", "DROP TABLE p6_titles"
)
client = probe_client("p6")


def error_fields(answer: Answer) -> list[dict[str, str]]:
    return [m.fields for m in answer.messages if isinstance(m, codec.ErrorResponse)]


# --- errors that describe a value outside quotes --------------------------------------

TRANSLATE = "translate(title, '0123456789', 'abcdefghij')"
DESCRIBING_ERRORS = [
    # JSON's context: `JSON data, line 1: ["card ebbb bbbb bbbb bbbb on file`
    (f"""SELECT ('["' || {TRANSLATE})::json FROM p6_titles""", "22P02"),
    (f"""SELECT ('[' || {TRANSLATE})::jsonb FROM p6_titles""", "22P02"),
    # libxml's detail echoes the document's line
    (f"""SELECT ('<a>' || {TRANSLATE})::xml FROM p6_titles""", "2200N"),
    (f"SELECT xmlparse(document {TRANSLATE}) FROM p6_titles", "2200M"),
    # the message itself, outside quotes: `...encoding "UTF8": 0xf0 0x34 0x31 0x31`
    (
        "SELECT convert_from('\\xf0'::bytea || substr(title::bytea, 6, 3), 'UTF8')"
        " FROM p6_titles WHERE id = 1",
        "22021",
    ),
    # `character with byte sequence 0xc4 0x84 in encoding ...`: the digit 4, translated
    (
        "SELECT convert_to(translate(title, '0123456789', 'ĀāĂăĄąĆćĈĉ'), 'LATIN1')"
        " FROM p6_titles WHERE id = 1",
        "22P05",
    ),
    # `date field value out of range: 52-13-01`: the character's code
    ("SELECT make_date(ascii(substr(title, 6, 1)), 13, 1) FROM p6_titles WHERE id = 1", "22008"),
]
# what those messages said of Ada's card, in the forms they said it
LEAKED_FORMS = (b"0x34 0x31 0x31", b"0xc4 0x84", b"52-13-01")


@pytest.mark.parametrize("groups", MASKED)
@pytest.mark.parametrize(("sql", "sqlstate"), DESCRIBING_ERRORS)
def test_an_error_under_masks_does_not_describe_the_value(
    arena, groups: tuple[str, ...], sql: str, sqlstate: str
) -> None:
    c = client(arena, groups)
    try:
        answer = c.query(sql)
        assert_no_secret(answer, TRANSLATED)
        assert_none_of(answer, LEAKED_FORMS)
        # the server's error still arrives, with its code and a message
        (fields,) = error_fields(answer)
        assert fields["C"] == sqlstate and fields["M"], fields
    finally:
        c.close()


def test_a_masked_dbas_failing_row_does_not_show_the_password(arena) -> None:
    c = client(arena, ("dba",))
    try:
        answer = c.query("UPDATE customers SET id = NULL WHERE id = 1")
        assert_no_secret(answer, TRANSLATED)
        (fields,) = error_fields(answer)
        assert fields["C"] == "23502" and "withheld" in fields.get("D", ""), fields
    finally:
        c.close()


@pytest.mark.parametrize("sync_apart", [False, True])
def test_an_error_answering_a_sync_is_masked(arena, sync_apart: bool) -> None:
    """The implicit COMMIT of an extended-protocol batch runs at Sync: a deferred unique
    key then fails there, and its error answered the Sync, which has no masker of its own
    (Key (a)=(card 4111 1111 1111 1111 on file) in clear)."""
    c = client(arena, ("dba",))
    try:
        made = c.query("CREATE TEMP TABLE p6d (a text UNIQUE DEFERRABLE INITIALLY DEFERRED)")
        assert not made.errors, made.errors
        insert = "INSERT INTO p6d SELECT note FROM customers"
        batch = [parse("", insert), bind("", ""), execute(""), parse("", insert)]
        batch += [bind("", ""), execute("")]
        if sync_apart:
            c.sock.sendall(b"".join(batch))
            answer = c.send(sync())
        else:
            answer = c.send(*batch, sync())
        assert_no_secret(answer, TRANSLATED)
        assert [f["C"] for f in error_fields(answer)] == ["23505"], answer.messages
    finally:
        c.close()


def test_errors_that_describe_statements_keep_their_detail(arena) -> None:
    c = client(arena, ("dba",))
    try:
        # (a function readers may call, given no overload's arguments: a name on no
        # allow-list needs approval under the masks since P14)
        (fields,) = error_fields(c.query("SELECT lower(1, 2) FROM customers"))
        assert fields["C"] == "42883" and "No function matches" in fields["H"], fields
        (fields,) = error_fields(c.query("SELECT 1/0 FROM customers"))
        assert fields["C"] == "22012" and fields["M"] == "division by zero", fields
    finally:
        c.close()


# --- the sans-IO rule ------------------------------------------------------------------

DETECTORS = Masker(
    [MaskRule(detector=d, strategy="redact") for d in ("email", "credit_card")], b"k" * 32
)


WITHHELD = "[withheld by portcullis"


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        (
            {
                "C": "23502",
                "M": 'null value in column "password" of relation "t" violates not-null constraint',
                "D": "Failing row contains (null, x, hunter2).",
            },
            {
                "M": 'null value in column "[REDACTED]" of relation "[REDACTED]" violates'
                " not-null constraint",
                "D": WITHHELD,
            },
        ),
        (
            {"C": "22P02", "M": "invalid input syntax for type json", "W": "JSON data: [card"},
            {"C": "22P02", "M": "invalid input syntax for type json", "W": WITHHELD},
        ),
        (
            {"C": "22021", "M": 'invalid byte sequence for encoding "UTF8": 0xf0 0x34 0x31'},
            {"M": 'invalid byte sequence for encoding "[REDACTED]": [REDACTED]'},
        ),
        ({"C": "22012", "M": "division by zero"}, {"C": "22012", "M": "division by zero"}),
        (
            {"C": "54000", "M": "requested character too large for encoding: 5200000"},
            {"M": "requested character too large for encoding: [REDACTED]"},
        ),
        (
            {"C": "42704", "M": "large object 52 does not exist"},
            {"M": "large object [REDACTED] does not exist"},
        ),
        (
            {"C": "42P01", "M": "relation with OID 52 does not exist"},
            {"M": "relation with OID [REDACTED] does not exist"},
        ),
        (
            {"C": "22012", "M": "card ebbb", "R": "exec_stmt_raise", "H": "x", "D": "y"},
            {"C": "22012", "R": "exec_stmt_raise", "M": WITHHELD, "D": WITHHELD, "H": WITHHELD},
        ),
        (
            {"C": "00000", "M": 'table "t" does not exist, skipping', "W": "PL/pgSQL", "D": "d"},
            {"M": 'table "[REDACTED]" does not exist, skipping', "W": WITHHELD, "D": WITHHELD},
        ),
        (
            {"C": "42601", "M": "syntax error", "q": "SELECT card ebbb"},
            {"M": "syntax error", "q": WITHHELD},
        ),
        (
            {
                "C": "42883",
                "M": "function f() does not exist",
                "H": "No function matches the given name and argument types."
                " You might need to add explicit type casts.",
            },
            {
                "M": "function [REDACTED] does not exist",
                "H": "No function matches the given name and argument types."
                " You might need to add explicit type casts.",
            },
        ),
        # no text of the server's: a value's (proxies/postgres/server_messages.py)
        ({"C": "22P02", "M": "card ebbb bbbb"}, {"M": WITHHELD}),
    ],
)
def test_masked_fields_withholds_what_may_describe_a_value(
    fields: dict[str, str], said: dict[str, str]
) -> None:
    out = masked_fields(DETECTORS, fields) or fields
    for code, text in said.items():
        if text == WITHHELD:
            assert out[code].startswith(WITHHELD), (code, out)
        else:
            assert out[code] == text, (code, out)


# --- settings the server reports --------------------------------------------------------

SET_CONFIGS = [
    "SELECT set_config('application_name', note, false) FROM customers WHERE id = 1",
    "SELECT set_config('application_name', translate(note, '0123456789', 'abcdefghij'), false)"
    " FROM customers WHERE id = 1",
    "SELECT set_config('application_name', (SELECT note FROM customers WHERE id = 1), false)",
    "SELECT set_config(setting_name => 'application_name', new_value => note, is_local => false)"
    " FROM customers WHERE id = 1",
]


@pytest.mark.parametrize("groups", MASKED)
@pytest.mark.parametrize("sql", SET_CONFIGS)
def test_a_setting_is_not_set_from_a_column_under_masks(
    arena, groups: tuple[str, ...], sql: str
) -> None:
    c = client(arena, groups)
    try:
        answer = c.query(sql)
        assert answer.refused, answer.messages
        assert_no_secret(answer, TRANSLATED)
        assert_no_secret(c.query("SHOW application_name"), TRANSLATED)
    finally:
        c.close()


def test_a_reader_still_sets_application_name_to_a_literal(arena) -> None:
    c = client(arena, ("readonly",))
    try:
        answer = c.query("SELECT set_config('application_name', 'p6-report', false)")
        assert not answer.errors, answer.errors
        assert c.params.get("application_name") != "p6-report"  # start-up's, not updated
        assert any(
            isinstance(m, codec.ParameterStatus) and m.value == "p6-report" for m in answer.messages
        )
    finally:
        c.close()


# --- a masked dba's DO block ------------------------------------------------------------

DO_BLOCKS = [
    "DO $$ BEGIN RAISE NOTICE '%', (SELECT translate(note, '0123456789', 'abcdefghij')"
    " FROM customers WHERE id = 1); END $$",
    "DO $$ BEGIN RAISE EXCEPTION '%', (SELECT translate(note, '0123456789', 'abcdefghij')"
    " FROM customers WHERE id = 1); END $$",
    "DO $$ DECLARE x text; BEGIN SELECT translate(note, '0123456789', 'abcdefghij') INTO x"
    " FROM customers WHERE id = 1; PERFORM set_config('application_name', x, false); END $$",
    "DO $$ DECLARE r record; BEGIN FOR r IN SELECT * FROM customers LOOP"
    " RAISE NOTICE '%', translate(r.note, '0123456789', 'abcdefghij'); END LOOP; END $$",
    # an assignment's sub-query read a sensitive column unjudged (only what it called)
    "DO $$ DECLARE x text; BEGIN x := (SELECT password FROM customers WHERE id = 1);"
    " PERFORM set_config('application_name', x, false); END $$",
    "DO $$ BEGIN IF (SELECT password FROM customers WHERE id = 1) IS NOT NULL THEN"
    " PERFORM set_config('application_name', (SELECT password FROM customers WHERE id = 1),"
    " false); END IF; END $$",
]


@pytest.mark.parametrize("sql", DO_BLOCKS)
def test_a_masked_dbas_do_block_reads_no_column(arena, sql: str) -> None:
    c = client(arena, ("dba",))
    try:
        answer = c.query(sql)
        assert answer.refused, answer.messages
        assert any(e.startswith("portcullis: denied") for e in answer.errors), answer.errors
        assert_no_secret(answer, TRANSLATED)
        assert_no_secret(c.query("SHOW application_name"), TRANSLATED)
    finally:
        c.close()


def test_a_masked_dbas_do_block_without_columns_runs(arena) -> None:
    c = client(arena, ("dba",))
    try:
        answer = c.query("DO $$ BEGIN RAISE NOTICE 'p6 %', 1 + 1; END $$")
        assert not answer.errors, answer.errors
        assert answer.tags == ["DO"]
    finally:
        c.close()


# --- column statistics ------------------------------------------------------------------

STATISTICS = [
    "SELECT stavalues1, stavalues2, stavalues3 FROM pg_statistic",
    "SELECT histogram_bounds, most_common_vals FROM pg_catalog.pg_stats"
    " WHERE tablename = 'customers'",
    # an oracle on a column no mask names spells a password out
    "SELECT attname FROM pg_stats WHERE tablename = 'customers'"
    " AND histogram_bounds::text LIKE '%hunter2-a%'",
    "SELECT * FROM pg_stats_ext",
]


@pytest.mark.parametrize("sql", STATISTICS)
def test_a_masked_dba_reads_no_column_statistics(arena, sql: str) -> None:
    with arena.admin() as admin:
        admin.execute("ANALYZE customers")
    c = client(arena, ("dba",))
    try:
        answer = c.query(sql)
        assert answer.refused, answer.messages
        assert any(e.startswith("portcullis: denied") for e in answer.errors), answer.errors
        assert_no_secret(answer, TRANSLATED)
    finally:
        c.close()


def test_a_pii_reading_dba_still_reads_column_statistics(arena) -> None:
    with arena.admin() as admin:
        admin.execute("ANALYZE customers")
    c = client(arena, ("dba", "pii-readers"))
    try:
        answer = c.query(STATISTICS[1])
        assert not answer.errors and answer.rows, answer.messages
    finally:
        c.close()


# --- TOAST tables -------------------------------------------------------------------------

CARD_HEX = CARD.hex().encode()  # how chunk_data (bytea) shows the card


@pytest.fixture
def toasted(arena):
    """Ada's note made long enough to be stored out of line, uncompressed; its TOAST table."""
    with arena.admin() as admin:
        admin.execute("ALTER TABLE customers ALTER COLUMN note SET STORAGE EXTERNAL")
        admin.execute("UPDATE customers SET note = note || repeat(' x', 2000) WHERE id = 1")
        (toast,) = admin.execute(
            "SELECT reltoastrelid::regclass::text FROM pg_class WHERE relname = 'customers'"
        ).fetchone()
        assert CARD_HEX in b"".join(
            bytes(chunk).hex().encode()
            for (chunk,) in admin.execute(f"SELECT chunk_data FROM {toast}").fetchall()
        )
    try:
        yield toast
    finally:
        arena.reset_data()


@pytest.mark.parametrize("groups", MASKED)
def test_a_toast_table_is_not_read_under_masks(arena, toasted: str, groups) -> None:
    c = client(arena, groups)
    try:
        for sql in (
            f"SELECT chunk_data FROM {toasted}",
            f"TABLE {toasted}",
            f"SELECT chunk_id FROM {toasted.upper()} WHERE chunk_seq = 0",
        ):
            answer = c.query(sql)
            assert answer.refused, (sql, answer.messages)
            assert CARD_HEX not in answer.raw
            assert_no_secret(answer, TRANSLATED)
        if groups == ("dba",):
            # by its own name, with pg_toast on the search path
            name = toasted.split(".")[-1]
            answer = c.query(
                f"SET search_path = pg_catalog, pg_toast; SELECT chunk_data FROM {name}"
            )
            assert answer.refused and CARD_HEX not in answer.raw, answer.messages
    finally:
        c.close()


# --- a unique index as an equality oracle -------------------------------------------------


def test_a_masked_dba_makes_no_unique_index_unreviewed(arena) -> None:
    """CREATE UNIQUE INDEX ON customers (password) ran without approval; then INSERT ...
    ON CONFLICT DO NOTHING of a guess said INSERT 0 0 for a stored password and INSERT 0 1
    otherwise: an equality test, which a WHERE may make only while
    data.portcullis.oracle.equality is true (the shipped data's choice), and this one
    whatever it says."""
    c = client(arena, ("dba",))
    try:
        answer = c.query("CREATE UNIQUE INDEX p6u ON customers (password)")
        assert answer.refused, answer.messages
        assert any("approval" in e for e in answer.errors), answer.errors
        guess = c.query(
            "INSERT INTO customers (id, password) VALUES (3, 'hunter2-ada') ON CONFLICT DO NOTHING"
        )
        assert guess.tags != ["INSERT 0 0"], guess.messages
        # an index on columns no mask names still runs (one on password needs approval
        # too: its order is an oracle, test_pg_probe_p10)
        plain = c.query("CREATE INDEX p6i ON customers (name); DROP INDEX p6i")
        assert not plain.errors, plain.errors
    finally:
        c.close()
        arena.reset_data()
        with arena.admin() as admin:
            admin.execute("DROP INDEX IF EXISTS p6u")


def test_a_masked_dba_does_not_cluster_by_a_password_unreviewed(arena) -> None:
    """CLUSTER customers USING an index on password (an administrator's: a masked dba's
    own needs approval since test_pg_probe_p10) ran, and SELECT id FROM customers then
    listed the rows in password order (3, 1, 2 here)."""
    with arena.admin() as admin:
        admin.execute("INSERT INTO customers (id, name, password) VALUES (3, 'Cy', 'aaa-first')")
        admin.execute("CREATE INDEX p6c ON customers (password)")
    c = client(arena, ("dba",))
    try:
        answer = c.query("CLUSTER customers USING p6c")
        assert answer.refused, answer.messages
        assert any("approval" in e for e in answer.errors), answer.errors
        rows = c.query("SELECT id FROM customers").rows
        assert [r[0] for r in rows] == [b"1", b"2", b"3"], rows
    finally:
        c.close()
        with arena.admin() as admin:
            admin.execute("DROP INDEX IF EXISTS p6c")
        arena.reset_data()


def test_a_masked_dbas_class_42_message_keeps_no_number_of_the_value(arena) -> None:
    """`relation with OID 52 does not exist` (42P01): 52 is the code of the note's sixth
    character; a number outside quotes is withheld in every class under the masks.
    (lo_get, this probe's first function, is now refused before the server: a function
    outside the readers' list is given no text a query changed, test_pg_probe_p10.)"""
    c = client(arena, ("dba",))
    try:
        answer = c.query(
            "SELECT pg_sequence_parameters(ascii(substr(title, 6, 1))::oid)"
            " FROM p6_titles WHERE id = 1"
        )
        assert b"OID 52" not in answer.raw, answer.messages
        assert [f["C"] for f in error_fields(answer)] == ["42P01"], answer.messages
    finally:
        c.close()


# --- the server's configuration ------------------------------------------------------------


@pytest.mark.parametrize("groups", [("dba",), ("dba", "pii-readers")])
def test_alter_system_needs_approval_for_every_dba(arena, groups) -> None:
    """ALTER SYSTEM ran unreviewed for any dba: with log_directory, log_filename,
    log_statement = 'all' and pg_reload_conf() the server writes the statements' text as
    files wherever its OS user may (an authorized_keys line in a literal), and
    archive_command runs programs: what COPY to a file and pg_read_file are denied for.
    (Only a harmless setting is tried here, and never reloaded: the server is shared.)"""
    c = client(arena, groups)
    try:
        answer = c.query("ALTER SYSTEM SET log_filename = 'p6-%a.log'")
        assert answer.refused, answer.messages
        assert any("approval" in e for e in answer.errors), answer.errors
    finally:
        c.close()
        with arena.admin() as admin:
            admin.execute("ALTER SYSTEM RESET log_filename")
