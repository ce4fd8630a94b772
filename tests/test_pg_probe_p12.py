"""Probe P12's findings against the real stack (tests/adversary.py: a gateway whose upstream
credential is the `postgres` SUPERUSER; customers.password is a sensitive column no value
detector recognises, Ada's note holds a card number only the value detectors mask).

- A relation the database defines over a catalog showed that catalog's rows under its own
  name: `CREATE VIEW st AS SELECT attname, histogram_bounds::text AS h FROM pg_stats` let a
  reader and a dba outside pii-readers ask `SELECT attname FROM st WHERE h LIKE
  '%hunter2-a%'` about the sample values ANALYZE keeps of the password column, and views
  over pg_authid, pg_statistic and pg_settings gave a reader what the secret catalogs
  hold (password verifiers, a superuser's settings). The proxy's relation_sources missed
  the pinned catalogs (the server records no dependency on pg_authid or pg_statistic): it
  now reads the relations a rule made after initdb names in its tree, and the policy
  denies a relation showing a secret catalog to readers, one showing the statistics, large
  objects or TOAST tables to everyone outside pii-readers (rego/portcullis/postgres.rego).
- Logical decoding returns every session's changes as text of its own: on a server with
  wal_level=logical a dba outside pii-readers could create a test_decoding slot, run
  `UPDATE customers SET name = name WHERE id = 1` and read `SELECT data FROM
  pg_logical_slot_get_changes(...)`, whose `password[text]:'hunter2-ada'` lineage cannot
  trace to a column and no detector recognises (this server runs wal_level=replica, so the
  test holds the policy's refusal: the call reached the server before). Now the functions
  that decode rows from WAL or pages (postgres.raw_row_functions) are denied outside
  pii-readers.
- bytea was never read by the value detectors (values.NO_TEXT): a card number or an
  e-mail address stored as bytes came back in clear (hex, escape or binary format, and in
  a bytea[], in UTF-16), and `SELECT data::text` (an uncut cast to text, which lineage
  passes as it is) gave its hex form. Now a bytea value is read as the text its bytes
  spell, and sent as NULL when a detector finds anything; a text value that is a bytea's
  hex form is read so too, and sent as the hex of its text masked
  (proxies/postgres/values.py).
"""

from __future__ import annotations

import pytest
from adversary import (
    CARD,
    assert_no_secret,
    bind,
    copied,
    execute,
    parse,
    sync,
)
from pg_probe_stack import arena_fixture, probe_client

pytestmark = pytest.mark.integration

UTF16 = ("card " + CARD.decode() + " on file").encode("utf-16-le").hex()
EXTRA = f"""
ANALYZE customers;
CREATE VIEW public.p12_stats AS
  SELECT attname, histogram_bounds::text AS h, most_common_vals::text AS m FROM pg_stats;
CREATE VIEW public.p12_statistic AS SELECT stavalues1::text AS v FROM pg_statistic;
CREATE MATERIALIZED VIEW public.p12_frozen AS
  SELECT staattnum AS n, stavalues1::text AS v FROM pg_statistic;
CREATE VIEW public.p12_roles AS SELECT rolname, rolpassword FROM pg_authid;
CREATE VIEW public.p12_settings AS SELECT name, setting FROM pg_settings;
CREATE VIEW public.p12_nested AS SELECT * FROM public.p12_stats;
CREATE TABLE p12_blobs (id int, data bytea, many bytea[]);
INSERT INTO p12_blobs VALUES
  (1, convert_to('card 4111 1111 1111 1111 on file', 'UTF8'),
      ARRAY[convert_to('x', 'UTF8'), convert_to('ada@example.com', 'UTF8')]),
  (2, '\\x000102ff'::bytea, ARRAY['\\x00'::bytea]),
  (3, '\\x{UTF16}'::bytea, NULL);
"""

CARD_HEX = CARD.hex().encode()
EMAIL_HEX = b"ada@example.com".hex().encode()


arena = arena_fixture(EXTRA)


client = probe_client("p12")


STATISTICS_THROUGH_A_VIEW = [
    "SELECT attname FROM p12_stats WHERE h LIKE '%hunter2-a%'",
    "SELECT attname FROM public.p12_stats WHERE m LIKE '%hunter2%' OR h LIKE '%hunter2%'",
    "SELECT count(*) FROM p12_nested WHERE h LIKE '%hunter2-a%'",
    "SELECT v FROM p12_statistic WHERE v LIKE '%hunter2-a%'",
    "SELECT n FROM \"p12_frozen\" WHERE v LIKE '%hunter2-a%'",
    "SELECT 1 WHERE EXISTS (SELECT 1 FROM p12_stats WHERE h ~ 'hunter2-a')",
]


@pytest.mark.parametrize("groups", [("readonly",), ("dba",)])
@pytest.mark.parametrize("sql", STATISTICS_THROUGH_A_VIEW)
def test_a_view_over_the_column_statistics_answers_no_question(arena, groups, sql: str) -> None:
    c = client(arena, groups)
    try:
        answer = c.query(sql)
        assert answer.errors and "shows the rows of" in answer.errors[0], answer.messages
        assert not answer.rows, answer.rows
        assert_no_secret(answer, b"hunter2-ada")
    finally:
        c.close()


SECRETS_THROUGH_A_VIEW = [
    ("SELECT rolname, rolpassword FROM p12_roles", b"SCRAM-SHA-256"),
    ("SELECT setting FROM p12_settings WHERE name = 'data_directory'", b"/"),
]


@pytest.mark.parametrize("groups", [("readonly",), ("dba",)])
def test_a_view_named_with_its_database_is_the_same_view(arena, groups) -> None:
    """`<database>.public.p12_stats` is p12_stats (the server takes its own database's
    name): the classifier named it only as written, which matched no relation the
    session's facts name, and the question was answered."""
    c = client(arena, groups)
    try:
        for sql in (
            f"SELECT attname FROM {arena.database}.public.p12_stats WHERE h LIKE '%hunter2-a%'",
            f'SELECT 1 FROM "{arena.database}".public.p12_roles',
        ):
            answer = c.query(sql)
            if groups == ("dba",) and "p12_roles" in sql:
                continue  # a dba may read pg_authid itself
            assert answer.errors and "shows the rows of" in answer.errors[0], answer.messages
            assert not answer.rows, answer.rows
    finally:
        c.close()


@pytest.mark.parametrize(("sql", "secret"), SECRETS_THROUGH_A_VIEW)
def test_a_reader_reads_no_secret_catalog_through_a_view(arena, sql: str, secret: bytes) -> None:
    c = client(arena, ("readonly",))
    try:
        answer = c.query(sql)
        assert answer.errors and "which holds secrets" in answer.errors[0], answer.messages
        assert not answer.rows, answer.rows
    finally:
        c.close()


def test_a_pii_reading_dba_still_reads_its_views(arena) -> None:
    c = client(arena, ("dba", "pii-readers"))
    try:
        for sql in (
            "SELECT count(*) FROM p12_stats WHERE h LIKE '%hunter2%'",
            "SELECT count(*) FROM p12_roles",
            "SELECT count(*) FROM p12_frozen",
        ):
            answer = c.query(sql)
            assert answer.rows and not answer.errors, (sql, answer.messages)
    finally:
        c.close()


DECODING = [
    "SELECT data FROM pg_logical_slot_peek_changes('adv_slot', NULL, NULL)",
    "SELECT * FROM pg_catalog.pg_logical_slot_get_changes('adv_slot', NULL, NULL,"
    " 'include-xids', '0')",
    "SELECT data FROM pg_logical_slot_peek_binary_changes('adv_slot', NULL, NULL)",
]


@pytest.mark.parametrize("sql", DECODING)
def test_a_masked_dba_decodes_no_rows_from_wal(arena, sql: str) -> None:
    c = client(arena, ("dba",))
    try:
        answer = c.query(sql)
        assert answer.errors and "decodes them from WAL" in answer.errors[0], answer.messages
    finally:
        c.close()


def test_a_pii_reading_dba_still_reaches_logical_decoding(arena) -> None:
    c = client(arena, ("dba", "pii-readers"))
    try:
        answer = c.query(DECODING[0])
        # the server's own answer (this server may not run wal_level=logical), not a policy's
        assert all("portcullis" not in e for e in answer.errors), answer.messages
    finally:
        c.close()


BYTES = [
    ("SELECT data FROM p12_blobs WHERE id = 1", []),
    ("SELECT many FROM p12_blobs WHERE id = 1", []),
    ("SELECT data, many FROM p12_blobs WHERE id = 1", ["SET bytea_output = escape"]),
    ("SELECT data FROM p12_blobs WHERE id = 3", []),
]


@pytest.mark.parametrize("groups", [("readonly",), ("dba",)])
@pytest.mark.parametrize(("sql", "before"), BYTES)
@pytest.mark.parametrize("result_format", [None, 0, 1])
def test_bytes_spelling_a_card_or_an_email_are_read_by_the_detectors(
    arena, groups, sql: str, before: list[str], result_format: int | None
) -> None:
    c = client(arena, groups)
    try:
        for setting in before:
            set_answer = c.query(setting)
            # bytea is written in hex only for everyone outside pii-readers, a masked dba
            # too (test_pg_probe_p47): escape read past the detectors
            assert any("denied by policy" in e for e in set_answer.errors), set_answer.messages
        if result_format is None:
            answer = c.query(sql)
        else:
            answer = c.send(parse("", sql), bind("", "", result_format), execute(), sync())
        assert answer.rows and not answer.errors, answer.messages
        assert all(value is None for value in answer.rows[0]), answer.rows
        assert_no_secret(answer, CARD_HEX, EMAIL_HEX, b"ada@example")
    finally:
        c.close()


@pytest.mark.parametrize("groups", [("readonly",), ("dba",)])
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT data::text FROM p12_blobs WHERE id = 1",
        "SELECT CAST(data AS varchar) AS v FROM p12_blobs WHERE id = 1",
        "SELECT data::text FROM p12_blobs WHERE id = 3",
    ],
)
def test_the_hex_text_of_bytes_spelling_a_card_is_read_by_the_detectors(
    arena, groups, sql: str
) -> None:
    c = client(arena, groups)
    try:
        answer = c.query(sql)
        assert answer.rows and answer.rows[0][0] is not None, answer.messages
        assert answer.rows[0][0].startswith(b"\\x"), answer.rows
        assert_no_secret(answer, CARD_HEX, CARD.decode().encode("utf-16-le").hex().encode())
        assert b"1111" in bytes.fromhex(answer.rows[0][0][2:].decode())
    finally:
        c.close()


def test_bytes_that_spell_nothing_come_back_as_they_are(arena) -> None:
    """The over-blocking guard: bytea without a detector's find passes untouched."""
    c = client(arena, ("readonly",))
    try:
        answer = c.query("SELECT data, many FROM p12_blobs WHERE id = 2")
        assert answer.rows == [[b"\\x000102ff", b'{"\\\\x00"}']], answer.messages
        assert c.query("SELECT data::text FROM p12_blobs WHERE id = 2").rows == [[b"\\x000102ff"]]
        binary = c.send(
            parse("", "SELECT data FROM p12_blobs WHERE id = 2"), bind("", "", 1), execute(), sync()
        )
        assert binary.rows == [[b"\x00\x01\x02\xff"]], binary.messages
    finally:
        c.close()


def test_a_pii_reader_reads_the_bytes(arena) -> None:
    c = client(arena, ("dba", "pii-readers"))
    try:
        answer = c.query("SELECT data FROM p12_blobs WHERE id = 1")
        stored = b"card " + CARD + b" on file"
        assert answer.rows == [[b"\\x" + stored.hex().encode()]], answer.rows
    finally:
        c.close()


@pytest.mark.parametrize("groups", [("readonly",), ("dba",)])
@pytest.mark.parametrize(
    "sql",
    [
        "COPY p12_blobs (data) TO STDOUT",
        "COPY p12_blobs (data, many) TO STDOUT (FORMAT csv)",
        "COPY (SELECT data FROM p12_blobs WHERE id IN (1, 3)) TO STDOUT",
        "COPY (SELECT many FROM p12_blobs) TO STDOUT",
        "COPY (SELECT data::text FROM p12_blobs) TO STDOUT (FORMAT csv, HEADER)",
    ],
)
def test_copy_out_of_bytes_spelling_a_card_or_an_email_is_read_by_the_detectors(
    arena, groups, sql: str
) -> None:
    """COPY writes a bytea as its hex (\\\\x... in the text format, \\x... in CSV and in
    an array): the line's text showed the card's and the e-mail's hex in clear, since
    the detectors read the hex digits. Each hex run is read as the text its bytes spell
    (UTF-16 too) and written back as the hex of that text masked."""
    c = client(arena, groups)
    try:
        answer = c.query(sql)
        assert not answer.errors, answer.messages
        lines = b"".join(copied(answer))
        assert lines, answer.messages
        assert_no_secret(answer, CARD_HEX, EMAIL_HEX, UTF16.encode(), b"ada@example")
        if "data" in sql and "id IN" not in sql:  # bytes that spell nothing, as they are
            assert b"000102ff" in lines, lines
    finally:
        c.close()
