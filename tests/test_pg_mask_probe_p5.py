"""Probe P5 of the Postgres masks (helper pgwhole) against the real stack
(tests/adversary.py: a gateway whose upstream credential is the `postgres` SUPERUSER), as a
reader outside pii-readers.

Text naming a masked field beside its value. The HTTP proxy masks `password: hunter2`,
`pw=hunter2`, `Phone Number: 555 0100` in a text body by the field its label names
(proxies/http/bodies.py); the Postgres proxy read a text column only with the value
detectors (e-mail, card, SSN, token), so a `notes` column holding a label, a connection
string, a properties line, an hstore-like `"password"=>"..."` or a text[] of such lines
gave a reader the password as it was, in a SELECT and in COPY. proxies/postgres/values.py
labelled_values now
masks the value of a label (up to three words, quoted or not, before `:`, `=` or `=>`)
naming a masked field as the masker names a JSON key (other names and languages too):
rewritten in a text-like value, the whole value NULL in a type the proxy cannot write.
A value with no `:` or `=` is not read for labels (RowMask's gate); a COPY row's fields are
read so too (masked_copy_row).
"""

from __future__ import annotations

import pytest
from adversary import assert_no_secret, bind, copied, describe, execute, parse, sync
from pg_probe_stack import arena_fixture, reader_fixture

pytestmark = pytest.mark.integration

NOTES = """
CREATE TABLE notes (id int, note text, lines text[], v varchar(200));
INSERT INTO notes VALUES
  (1, 'password: hunter2-label', ARRAY['pw=hunter2-array'], 'Passwort: hunter2-v'),
  (2, 'login pw=hunter2-eq; ok', NULL, NULL),
  (3, 'host=db user=bob password=''hunter2 quoted'' port=5432', NULL, NULL),
  (4, E'deploy notes\\n- DB Password: hunter2-line two words\\nstatus: ok', NULL, NULL),
  (5, '"password"=>"hunter2-hstore", "user"=>"bob"', NULL, NULL),
  (6, 'see https://x.org/a?user=bob&token=hunter2-query&b=1', NULL, NULL),
  (7, 'status: ok, time 12:30', NULL, NULL);
"""


arena = arena_fixture(NOTES)
reader = reader_fixture("mask-p5")


@pytest.mark.parametrize("result_format", [0, 1])
def test_a_labelled_value_in_text_is_masked(reader, result_format) -> None:
    sql = "SELECT id, note, lines, v FROM notes ORDER BY id"
    answer = reader.send(
        parse("", sql), bind("", "", result_format), describe("P", ""), execute(), sync()
    )
    assert not answer.errors, answer.errors
    assert b"hunter2" not in answer.raw
    assert_no_secret(answer)


def test_what_a_label_names_goes_and_the_rest_stays(reader) -> None:
    answer = reader.query("SELECT note, v FROM notes ORDER BY id")
    assert not answer.errors, answer.errors
    notes = [row[0] for row in answer.rows]
    assert notes == [
        b"password: [REDACTED]",
        b"login pw=[REDACTED]; ok",
        b"host=db user=bob password='[REDACTED]' port=5432",
        b"deploy notes\n- DB Password: [REDACTED]\nstatus: ok",
        b'"password"=>"[REDACTED]", "user"=>"bob"',
        b"see https://x.org/a?user=bob&token=[REDACTED]&b=1",
        b"status: ok, time 12:30",
    ]
    assert answer.rows[0][1] == b"Passwort: [REDACTED]"
    assert_no_secret(answer)


def test_a_text_array_holding_a_label_is_sent_as_null(reader) -> None:
    answer = reader.query("SELECT lines FROM notes WHERE id = 1")
    assert not answer.errors, answer.errors
    assert answer.rows == [[None]]


@pytest.mark.parametrize(
    "sql",
    [
        "COPY notes (id, note, v) TO STDOUT",
        "COPY notes (id, note, v) TO STDOUT (FORMAT csv)",
        "COPY (SELECT id, note FROM notes) TO STDOUT",
    ],
)
def test_a_labelled_value_in_a_copy_row_is_masked(reader, sql) -> None:
    answer = reader.query(sql)
    assert not answer.errors, answer.errors
    rows = copied(answer)
    assert len(rows) == 7
    assert b"hunter2" not in b"".join(rows), rows
    assert_no_secret(answer)
