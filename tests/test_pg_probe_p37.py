"""Probe P37 (helper pgattack12) against the real stack (tests/adversary.py: a gateway whose
upstream credential is the `postgres` SUPERUSER), as a reader outside pii-readers.

Errors as an oracle on what the value detectors mask. A sensitive column going into a
computation that can fail for some of its values (arithmetic, a cast that parses text, a
function not known never to fail, one growing a value past the 1 GB every value is held
to) was refused (lineage's `partial` use), but a free-text column's and a wide number
column's were let through: their outputs are masked whole, yet whether the statement
failed is no output. So Ada's note, shown as 'card **** **** **** 1111 on file', gave its
card away a digit at a time:

  SELECT 1/(ascii(substr(note, 6, 1)) - 52) FROM customers WHERE id = 1   -- division by zero
  SELECT 1/(ascii(substr(note, 6, 1)) - 53) FROM customers WHERE id = 1   -- one masked row
  SELECT length(repeat(translate(substr(note, 6, 1), '0123', ''), 1073741823)) ...
      -- 'requested length too large' unless the digit is 0-3: the 1 GB length oracle
  SELECT (substr(note, 6, 4) || 'x')::int ...    -- a cast that parses the text

or parsed as JSON or XML once cut (`('[' || substr(note, 6, 1) || ']')::jsonb` fails
unless the character is a digit; lineage had read any cast to a document type as a question
about the whole text, `keyed`: now only a stored column's own text is), and a card kept as a
bigint (sent as NULL) as `1/(num - 4111111111111111)` (an equality
test), or `1/((num / 1000000000000)::int - 4111)` (its leading digits). The policy now
judges a partial use of free text and of a wide number as a sensitive column's, outside
pii-readers, unless the team lists the name (postgres.plain_text_columns,
plain_number_columns): rego/portcullis/postgres_lineage.rego. Their outputs were masked
whole already, so what is refused now answered nothing but the error.

And bytes: a bytea column is read by the value detectors as the text its bytes spell (the
card in `convert_to('card 4111 ...', 'UTF8')` is masked: proxies/postgres/values.py), but
the proxy listed only string types as free text, so `blob LIKE '%4111%'::bytea`,
`position(... IN blob)` and `1/(get_byte(blob, 5) - 52)` answered about it; so did
`words @@ '4111'::tsquery` of a tsvector. The proxy now lists bytea, tsvector and tsquery
(a domain over one, however deep, an array of one) as free text
(proxies/postgres/columns.py).

And views: a view's column computed from a note (`ascii(substr(note, 6, 1)) AS code`, an
int) is masked whole when selected, but `WHERE code > 52` and `ORDER BY code` were
answered (Ada's row dropped out at 52: her card's first digit). A view column carrying a
free-text column now carries FREE_TEXT too, whatever its own type.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import psycopg
import pytest
from adversary import Arena, RawClient, assert_no_secret, bind, execute, parse, ready_client, sync
from pg_probe_stack import arena_fixture, probe_client

pytestmark = pytest.mark.integration

arena = arena_fixture(
    "CREATE TABLE p37_cards (id int PRIMARY KEY, num bigint);"
    " INSERT INTO p37_cards VALUES (1, 4111111111111111), (2, 5500000000000004);"
    " CREATE TABLE p37_docs (id int PRIMARY KEY, body text);"
    " CREATE DOMAIN p37_bytes AS bytea; CREATE DOMAIN p37_deeper AS p37_bytes;"
    " CREATE TABLE p37_blobs (id int PRIMARY KEY, blob bytea, kept p37_bytes,"
    " deep p37_deeper, many bytea[], words tsvector);"
    " INSERT INTO p37_blobs SELECT 1, b, b, b, ARRAY[b], to_tsvector('simple', t)"
    " FROM (SELECT convert_to(t, 'UTF8') AS b, t"
    " FROM (SELECT 'card 4111 1111 1111 1111' AS t) s) c;"
    " CREATE VIEW p37_codes AS SELECT id, ascii(substr(note, 6, 1)) AS code,"
    " length(note) AS size FROM customers;"
    """ INSERT INTO p37_docs VALUES (1, '{"status": "gold", "n": 3}')""",
    "DROP VIEW p37_codes; DROP TABLE p37_cards, p37_docs, p37_blobs;"
    " DROP DOMAIN p37_deeper; DROP DOMAIN p37_bytes",
)
client = probe_client("p37")

DENIED = "denied by policy"

# Each would fail for some values of a masked text or number and not for others
ORACLES = {
    "division_by_a_character": "SELECT 1/(ascii(substr(note, 6, 1)) - 52) FROM customers"
    " WHERE id = 1",
    "one_gigabyte": "SELECT length(repeat(translate(substr(note, 6, 1), '0123', ''), 1073741823))"
    " FROM customers WHERE id = 1",
    "lpad_past_one_gigabyte": "SELECT length(lpad('', 1073741823, translate(substr(note, 6, 1),"
    " '0123', ''))) FROM customers WHERE id = 1",
    "string_agg_over_rows": "SELECT length(string_agg(translate(substr(note, 6, 1), '0123', ''),"
    " '')) FROM customers, generate_series(1, 3) WHERE id = 1",
    "cast_parsing_text": "SELECT (substr(note, 6, 4) || 'x')::int FROM customers WHERE id = 1",
    "through_a_cte": "WITH t AS (SELECT substr(note, 6, 1) AS c FROM customers WHERE id = 1)"
    " SELECT 1/(ascii(c) - 52) FROM t",
    "in_from": "SELECT 1/(ascii(x) - 52) FROM customers, substr(note, 6, 1) AS x WHERE id = 1",
    # a part of the text parsed as JSON or XML: valid only for some characters
    "json_parse_of_a_part": "SELECT (('[' || substr(note, 6, 1) || ']')::jsonb)->>0"
    " FROM customers WHERE id = 1",
    "json_exponent_of_a_part": "SELECT ('[1e' || substr(note, 6, 1) || '00000]')::json"
    " FROM customers WHERE id = 1",
    "xml_parse_of_a_part": "SELECT substr(note, 6, 1)::xml FROM customers WHERE id = 1",
    "json_parse_through_a_cte": "WITH t AS (SELECT substr(note, 6, 1) AS c FROM customers"
    " WHERE id = 1) SELECT (c::jsonb)->>'a' FROM t",
    # bytes the detectors read as the text they spell
    "bytea_byte": "SELECT 1/(get_byte(blob, 5) - 52) FROM p37_blobs",
    "bytea_domain_byte": "SELECT 1/(get_byte(kept, 5) - 52) FROM p37_blobs",
    "bytea_array_byte": "SELECT 1/(get_byte(many[1], 5) - 52) FROM p37_blobs",
    "bytea_decoded": "SELECT convert_from(substr(blob, 6, 1) || '\\xff'::bytea, 'UTF8')"
    " FROM p37_blobs",
    "wide_number_equal": "SELECT 1/(num - 4111111111111111) FROM p37_cards",
    "wide_number_leading_digits": "SELECT 1/((num / 1000000000000)::int - 4111) FROM p37_cards",
    "wide_number_in_a_sum": "SELECT sum(1/(num % 10 - 1)) FROM p37_cards",
}


@pytest.fixture
def reader(arena: Arena) -> Iterator[RawClient]:
    c = client(arena, ("readonly",))
    yield c
    c.close()


@pytest.mark.parametrize("sql", list(ORACLES.values()), ids=list(ORACLES))
def test_a_computation_that_can_fail_over_masked_text_or_numbers_is_refused(
    reader: RawClient, sql: str
) -> None:
    answer = reader.query(sql)
    assert_no_secret(answer)
    assert answer.errors and DENIED in answer.errors[0], answer.messages
    assert "can fail for some of its values" in answer.errors[0], answer.errors
    assert not answer.rows


# bytea, tsvector and a view's column computed from free text were none to the policy:
# their questions were answered as an id's
QUESTIONS = [
    "SELECT count(*) FROM p37_blobs WHERE blob LIKE '%4111 1111%'::bytea",
    "SELECT count(*) FROM p37_blobs WHERE position('\\x34313131'::bytea IN blob) > 0",
    "SELECT count(*) FROM p37_blobs WHERE kept > convert_to('card 4', 'UTF8')",
    "SELECT id FROM p37_blobs ORDER BY many",
    "SELECT count(*) FROM p37_blobs WHERE deep LIKE '%4111 1111%'::bytea",
    "SELECT count(*) FROM p37_blobs WHERE words @@ '4111'::tsquery",
    "SELECT count(*) FROM p37_blobs WHERE length(words) > 2",
    # a view's int computed from the note: its questions are the note's
    "SELECT id FROM p37_codes WHERE code > 52",
    "SELECT id FROM p37_codes ORDER BY code",
    "SELECT id FROM p37_codes WHERE size BETWEEN 30 AND 40",
    "SELECT 1/(code - 52) FROM p37_codes",
]


@pytest.mark.parametrize("sql", QUESTIONS)
def test_a_question_about_bytes_or_a_view_of_free_text_is_refused(
    reader: RawClient, sql: str
) -> None:
    answer = reader.query(sql)
    assert_no_secret(answer)
    assert answer.errors and DENIED in answer.errors[0], answer.messages
    assert "free-text column" in answer.errors[0], answer.errors
    assert not answer.rows


EXTENDED = ["division_by_a_character", "one_gigabyte", "json_parse_of_a_part", "bytea_byte",
            "wide_number_equal"]  # fmt: skip


@pytest.mark.parametrize("sql", [ORACLES[k] for k in EXTENDED], ids=EXTENDED)
def test_refused_in_the_extended_protocol_too(reader: RawClient, sql: str) -> None:
    answer = reader.send(parse("", sql), bind("", ""), execute(""), sync())
    assert_no_secret(answer)
    assert answer.errors and DENIED in answer.errors[0], answer.messages
    assert not answer.rows


def test_refused_to_asyncpg_and_psycopg(arena: Arena) -> None:
    dsn = arena.dsn(arena.token("p37-drivers@example.com"))
    sql = ORACLES["division_by_a_character"]

    async def with_asyncpg() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match=DENIED):
                await conn.fetch(sql)
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match=DENIED):
                await conn.fetch(ORACLES["wide_number_equal"])
        finally:
            await conn.close()

    asyncio.run(with_asyncpg())
    with psycopg.connect(dsn, autocommit=True) as conn:
        for prepare in (False, True):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=DENIED):
                conn.execute(sql, prepare=prepare)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=DENIED):
            psycopg.ClientCursor(conn).execute(ORACLES["one_gigabyte"])


def test_what_cannot_fail_or_is_listed_still_answers(reader: RawClient) -> None:
    # the note as it is (the detectors mask its card), and what never fails (masked whole)
    answer = reader.query("SELECT note, upper(note), substr(note, 6, 4) FROM customers ORDER BY id")
    assert_no_secret(answer)
    assert not answer.errors, answer.errors
    assert answer.rows[0][0] == b"card **** **** **** 1111 on file"
    assert answer.rows[0][1:] == [b"[REDACTED]", b"[REDACTED]"]
    # name is listed in postgres.plain_text_columns: its computations may fail (what they
    # make of its text is masked whole, as a computed value of any text is)
    named = reader.query("SELECT 1/(ascii(name) - 64) FROM customers ORDER BY id")
    assert not named.errors and len(named.rows) == 2, named.messages
    # a stored text read as JSON whole (whether it is JSON: no part of it) and a key's
    # value cast to a number still run (masked, as a computed value of free text is)
    doc = reader.query("SELECT (body::jsonb)->>'status', ((body::jsonb)->>'n')::int FROM p37_docs")
    assert not doc.errors and len(doc.rows) == 1, doc.messages
    # a number column too narrow for a card (int) is no wide number
    narrow = reader.query("SELECT sum(1/(customer_id - 0)) FROM orders")
    assert not narrow.errors and narrow.rows == [[b"1"]], narrow.messages


def test_a_pii_reader_still_computes(arena: Arena) -> None:
    c = ready_client(arena, ("readonly", "pii-readers"), "p37-pii")
    try:
        answer = c.query("SELECT 1/(ascii(substr(note, 6, 1)) - 53) FROM customers WHERE id = 1")
        assert not answer.errors and answer.rows == [[b"-1"]], answer.messages
        number = c.query("SELECT 1/(num - 4111111111111110) FROM p37_cards WHERE id = 1")
        assert not number.errors and number.rows == [[b"1"]], number.messages
    finally:
        c.close()
