"""Probe P52 (helper pgattack22): behind pgbouncer in transaction mode, one session's
setting that chooses how values are written reached another's.

The proxy starts every session with bytea_output hex and extra_float_digits 1 (P49), in
the start-up packet, which pgbouncer does not carry; and a pii-reader may SET
bytea_output = escape or extra_float_digits = 0 for itself. Behind a transaction pooler a
session-level SET stays on the server connection for whichever client's transaction runs
there next:

    pii-reader:  SET bytea_output = escape; SET extra_float_digits = 0
    reader:      SELECT b::text, f FROM p52_kept   -- 4111\\0001111\\000..., 4.11111111111111e+15

unmasked, no detector reading either. Behind the pooler nobody may now SET or set_config
them (rego/portcullis/postgres_pooler.rego), and a session starts only where the role's
configuration holds the proxy's values (proxies/postgres/startup.py role_pins), so one
left by a client straight at pgbouncer, or a database configured with escape, refuses the
session, naming the ALTER ROLE that fixes it.

Against a real pgbouncer (tests/test_pgbouncer_pooler.py's pooled_gateway) in front of
the real server, through the real proxy, with psql.
"""

from __future__ import annotations

import psycopg
import pytest
from pooler_stack import made_for_the_role, straight_at_pgbouncer
from test_pgbouncer_pooler import READER_PINS, Pooled, pooled_gateway, psql

pytestmark = pytest.mark.integration

SHOWN = ("4111\\0001111", "4.11111111111111e+15", "4111111111111111")
READ = "SELECT b::text, f FROM p52_kept"


def _kept(gw: Pooled) -> None:
    made_for_the_role(
        gw,
        "CREATE TABLE p52_kept (id int, f float8, b bytea)",
        "INSERT INTO p52_kept VALUES"
        " (1, 4111111111111111, '\\x34313131003131313100313131310031313131')",
        "ALTER TABLE p52_kept OWNER TO {role}",
    )


async def test_a_pii_readers_writing_setting_stays_in_its_session(tmp_path) -> None:
    # one server connection: every transaction runs where the last one did
    async with pooled_gateway(tmp_path, pool_size=1) as gw:
        _kept(gw)
        pii = gw.dsn(gw.token(("dba", "pii-readers")))
        for sql in (
            "SET bytea_output = escape",
            "SET extra_float_digits = 0",
            "SELECT set_config('bytea_output', 'escape', false)",
            "SET lc_monetary = 'C'",
        ):
            code, _, err = await psql(pii, sql)
            assert code != 0 and "behind a transaction pooler" in err, (sql, err)
        code, out, err = await psql(gw.dsn(gw.token()), READ)
        assert code == 0, err
        assert not any(shown in out for shown in SHOWN), out
        assert out.strip().endswith("|"), out  # the double masked whole
        # RESET returns the role's own
        code, _, err = await psql(pii, "RESET bytea_output")
        assert code == 0, err


async def test_a_setting_left_on_the_server_connection_refuses_the_session(tmp_path) -> None:
    async with pooled_gateway(tmp_path, pool_size=1) as gw:
        _kept(gw)
        # someone straight at pgbouncer leaves a session SET behind
        with psycopg.connect(straight_at_pgbouncer(gw), autocommit=True) as direct:
            direct.execute("SET bytea_output = escape")
        code, out, err = await psql(gw.dsn(gw.token()), READ)
        assert code != 0 and not any(shown in out for shown in SHOWN), out
        assert "bytea_output (wants hex, is escape from session)" in err, err


async def test_a_database_writing_otherwise_refuses_pooled_sessions_by_name(tmp_path) -> None:
    pins = {**READER_PINS, "extra_float_digits": "0"}
    async with pooled_gateway(tmp_path, pins=pins, pool_size=1) as gw:
        _kept(gw)
        code, out, err = await psql(gw.dsn(gw.token()), READ)
        assert code != 0 and not any(shown in out for shown in SHOWN), out
        assert "extra_float_digits (wants 1, is 0 from database user)" in err, err
        fix = f'ALTER ROLE "{gw.role}" IN DATABASE "{gw.database}"'
        assert f"{fix} SET extra_float_digits = '1'" in err, err
