"""Usability 10 (helper auditsec9): approvals.timeout_seconds takes fractional seconds.

`approvals.timeout_seconds` accepted only an integer (`0.5` stopped start-up with "must
be an integer"), so the shortest wait for an approval nobody decides was a whole second,
in every test that lets one expire. It now takes any finite number of seconds above
zero; a boolean, a string, zero, a negative number, NaN or infinity still stop start-up
naming the key. A real PDP and Postgres proxy holding a reader's INSERT for half a second
answer with the request's expiry and the wait as configured.
"""

from __future__ import annotations

import math

import psycopg
import pytest
import yaml
from adversary import running_arena
from pdp_harness import pdp_raw

from portcullis.config import ConfigError, load_config


def _loaded(tmp_path, value):
    raw = pdp_raw(tmp_path, approvals={"timeout_seconds": value})
    path = tmp_path / "portcullis.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


@pytest.mark.parametrize("value", [0.5, 2, 0.05, 90.25])
def test_fractional_and_whole_seconds_load(tmp_path, value):
    assert _loaded(tmp_path, value).approvals.timeout_seconds == value


@pytest.mark.parametrize("value", [0, -1, -0.5, math.nan, math.inf, True, "soon", "0.5"])
def test_no_number_of_seconds_is_refused_naming_the_key(tmp_path, value):
    with pytest.raises(ConfigError) as raised:
        _loaded(tmp_path, value)
    assert "approvals.timeout_seconds" in str(raised.value)


def test_a_reader_write_waits_half_a_second_then_expires(tmp_path):
    with running_arena(tmp_path, approval_timeout=0.5) as arena:  # type: ignore[arg-type]
        tok = arena.token("rita@example.com")
        with psycopg.connect(arena.dsn(tok), autocommit=True) as conn:
            with pytest.raises(psycopg.errors.Error) as raised:
                conn.execute("INSERT INTO audit_log(what) VALUES ('x')")
            said = str(raised.value)
            assert "expired" in said and "0.5 s" in said, said
            assert conn.execute("SELECT 1").fetchone() == (1,)
