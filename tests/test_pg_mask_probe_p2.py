"""Probe P2 of the Postgres masks (helper pgmask3) against the real stack
(tests/adversary.py: a gateway whose upstream credential is the `postgres` SUPERUSER), as a
reader outside pii-readers.

COPY rows, arrays and XML: a document's names. A SELECT masks a JSON document's keys
named like a masked field (`{"password": "[REDACTED]", "status": "ok"}`), in json, jsonb
and text holding JSON alike.
A COPY row carries no column types and was read by the value detectors only: `COPY
people(id, profile) TO STDOUT` gave `{"status": "ok", "password": "hunter2-json"}`, in
the text format and in CSV, from a jsonb column, a json one, text holding JSON, an array
of documents and COPY (SELECT ...). Each field of a COPY row that is a JSON object or
array is now masked by its keys as a SELECT masks it (proxies/postgres/values.py
masked_copy_row, called by the tracker's COPY masking); the policy lets COPY out under
masks only in the text format or CSV with the default delimiter and quote, so those are
the spellings read.

Inside arrays (jsonb[], json[], text[] of JSON) a document was not read by its keys at all,
in SELECT either: `SELECT many FROM docs` gave `{"{\\"password\\": \\"hunter2-arr\\"}"}`. An
XML document's element and attribute names are its keys: `<password>hunter2-xml</password>`
and `password="..."` went out in clear from an xml column and from text holding XML. Such
arrays and XML values are now sent as NULL (a field of a COPY row too).
"""

from __future__ import annotations

import pytest
from adversary import (
    assert_no_secret,
    bind,
    copied,
    describe,
    execute,
    parse,
    sync,
)
from pg_probe_stack import arena_fixture, reader_fixture

pytestmark = pytest.mark.integration

DOCUMENTS = """
CREATE TABLE docs (id int, profile jsonb, raw json, note text, many jsonb[], texts text[],
  raws json[], page xml, markup text);
INSERT INTO docs VALUES (1, '{"password": "hunter2-jsonb", "status": "ok"}',
  '{"status": "ok",  "password": "hunter2-json"}',
  '{"password": "hunter2-text", "tab": "a\\tb"}',
  ARRAY['{"password": "hunter2-arr"}'::jsonb], ARRAY['{"password": "hunter2-tarr"}'],
  ARRAY['{"password": "hunter2-jarr"}'::json],
  '<user><name>ada</name><password>hunter2-xml</password></user>',
  '<user name="ada" password="hunter2-attr"/>');
"""


arena = arena_fixture(DOCUMENTS)
reader = reader_fixture("mask-p2")


COPIES = [
    "COPY docs(id, profile) TO STDOUT",
    "COPY docs(id, raw) TO STDOUT",
    "COPY docs(id, note) TO STDOUT",
    "COPY docs(id, profile, raw, note) TO STDOUT (FORMAT csv)",
    "COPY docs(id, profile) TO STDOUT (FORMAT csv, HEADER, FORCE_QUOTE *)",
    "COPY (SELECT profile FROM docs) TO STDOUT",
    "COPY (SELECT raw, id FROM docs) TO STDOUT (FORMAT csv)",
    "COPY (SELECT profile->'status', profile FROM docs) TO STDOUT",
]


@pytest.mark.parametrize("sql", COPIES)
def test_a_copied_document_has_its_keys_masked(reader, sql) -> None:
    answer = reader.query(sql)
    assert not answer.errors, answer.errors
    rows = copied(answer)
    assert rows, answer.messages
    assert b"hunter2" not in answer.raw, rows
    assert b"[REDACTED]" in b"".join(rows), rows
    assert_no_secret(answer)


ARRAYS = [
    "COPY docs(id, many) TO STDOUT",
    "COPY docs(id, texts, raws) TO STDOUT (FORMAT csv)",
    "COPY (SELECT many, texts FROM docs) TO STDOUT",
    "COPY docs(id, page, markup) TO STDOUT",
    "COPY docs(id, page, markup) TO STDOUT (FORMAT csv)",
]


@pytest.mark.parametrize("sql", ARRAYS)
def test_a_copied_array_of_documents_is_masked(reader, sql) -> None:
    answer = reader.query(sql)
    assert not answer.errors, answer.errors
    assert copied(answer), answer.messages
    assert b"hunter2" not in answer.raw, answer.messages
    assert_no_secret(answer)


# an array whose elements are JSON documents: a SELECT masked a document by its keys, not
# one inside an array (`{"{\"password\": \"hunter2-arr\"}"}`)
SELECTED_ARRAYS = [
    "SELECT page FROM docs",
    "SELECT markup FROM docs",
    "SELECT many FROM docs",
    "SELECT texts FROM docs",
    "SELECT raws FROM docs",
    "SELECT * FROM docs",
]


@pytest.mark.parametrize("sql", SELECTED_ARRAYS)
@pytest.mark.parametrize("result_format", [0, 1])
def test_an_array_of_documents_is_masked(reader, sql, result_format) -> None:
    answer = reader.send(
        parse("", sql), bind("", "", result_format), describe("P", ""), execute(), sync()
    )
    assert not answer.errors, answer.errors
    assert answer.rows, answer.messages
    assert b"hunter2" not in answer.raw, answer.rows
    assert_no_secret(answer)


# every row's whole document joined in one value fails past 1 GB by how long the masked
# values are (test_pg_mask_probe_p12): refused, no longer answered masked
@pytest.mark.parametrize(
    "sql", ["SELECT xmlagg(page) FROM docs", "SELECT array_agg(profile) FROM docs"]
)
def test_an_aggregate_joining_whole_documents_is_refused(reader, sql) -> None:
    answer = reader.query(sql)
    assert answer.errors and "partial use of document column" in answer.errors[0], answer.messages
    assert b"hunter2" not in answer.raw, answer.rows
    assert_no_secret(answer)


def test_a_copied_document_keeps_its_other_values(reader) -> None:
    """The masked row is still the row: its other fields and keys as they were."""
    text = reader.query("COPY docs(id, profile) TO STDOUT")
    assert copied(text) == [b'1\t{"status": "ok", "password": "[REDACTED]"}\n']
    csv = reader.query("COPY docs(id, profile) TO STDOUT (FORMAT csv)")
    assert copied(csv) == [b'1,"{""status"": ""ok"", ""password"": ""[REDACTED]""}"\n']
