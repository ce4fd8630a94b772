"""The proxy keeps the server reading SQL as the policy read it, and keeps its own
knowledge of statements, portals and transactions true.

Against the real server, through the real proxy, over a raw asyncio socket speaking the
codec (so pipelining is exactly what the test writes): start-up parameters that would
change lexing are refused by name; a function that moves client_encoding stops the session
before a statement pipelined behind it runs; a refusal fails the transaction as the
server would; cursors made by DECLARE are portals; SQL-level PREPARE replacing a protocol
statement is noticed. Each case looks from the admin side that nothing happened.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from pg_harness import Gateway, running_gateway

from proxies.postgres import codec

pytestmark = pytest.mark.integration

SMUGGLED = "SELECT E'\u00df\\' ; DELETE FROM customers; -- '"


class RawClient:
    """A Postgres client that writes exactly the messages it is given, in one write."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = codec.BackendParser()
        self.pending: list[codec.Message] = []

    @classmethod
    async def connect(cls, gw: Gateway, token: str, **params: str) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy.port)
        client = cls(reader, writer)
        startup = {"user": "agent", "database": gw.database, **params}
        client.send(codec.StartupMessage(codec.PROTOCOL_VERSION, startup))
        first = await client.next()
        if isinstance(first, codec.ErrorResponse):
            client.pending.insert(0, first)
            return client
        client.send(codec.PasswordMessage.from_password(token))
        seen = [first, *await client.until(codec.ReadyForQuery, codec.ErrorResponse)]
        if isinstance(seen[-1], codec.ErrorResponse):
            client.pending[:0] = seen  # a refusal: rest() reads it
        return client

    def send(self, *messages: codec.Message) -> None:
        self.writer.write(b"".join(m.encode() for m in messages))

    async def next(self) -> codec.Message:
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), 10)
            if not data:
                raise ConnectionError("closed")
            self.pending.extend(self.parser.feed(data))
        return self.pending.pop(0)

    async def until(self, *kinds: type[codec.Message]) -> list[codec.Message]:
        seen: list[codec.Message] = []
        while True:
            message = await self.next()
            seen.append(message)
            if isinstance(message, kinds):
                return seen

    async def rest(self) -> list[codec.Message]:
        """Everything until the proxy closes the connection."""
        seen = list(self.pending)
        self.pending.clear()
        while True:
            try:
                data = await asyncio.wait_for(self.reader.read(65536), 10)
            except ConnectionError:
                return seen
            if not data:
                return seen
            seen.extend(self.parser.feed(data))

    def close(self) -> None:
        self.writer.close()


def errors(messages: list[codec.Message]) -> list[str]:
    return [m.fields.get("M", "") for m in messages if isinstance(m, codec.ErrorResponse)]


def statuses(messages: list[codec.Message]) -> list[str]:
    return [m.status for m in messages if isinstance(m, codec.ReadyForQuery)]


def customers(gw: Gateway) -> int:
    with gw.admin() as admin:
        return int(admin.execute("SELECT count(*) FROM customers").fetchone()[0])


@pytest.mark.parametrize(
    "params, named",
    [
        ({"client_encoding": "SJIS"}, "client_encoding"),
        ({"client_encoding": "BIG5"}, "client_encoding"),
        ({"client_encoding": "GB18030"}, "client_encoding"),
        ({"standard_conforming_strings": "off"}, "standard_conforming_strings"),
        ({"options": "-c client_encoding=GBK"}, "client_encoding"),
        ({"options": "-c standard_conforming_strings=off"}, "standard_conforming_strings"),
        ({"options": "--backslash-quote=on"}, "backslash_quote"),
        ({"options": "-d 5"}, "options"),
        ({"replication": "database"}, "replication"),
        ({"database": "postgres"}, "database"),
    ],
)
async def test_start_up_parameters_that_change_lexing_or_the_target_are_refused_by_name(
    tmp_path, params: dict[str, str], named: str
) -> None:
    async with running_gateway(tmp_path) as gw:
        client = await RawClient.connect(gw, gw.token(), **params)
        try:
            messages = await client.rest()
        finally:
            client.close()
        fatal = [m for m in messages if isinstance(m, codec.ErrorResponse)]
        assert fatal and fatal[0].fields.get("S") == "FATAL"
        assert named in fatal[0].fields.get("M", "")
        assert not any(isinstance(m, codec.AuthenticationOk) for m in messages)


async def test_utf8_spelled_any_way_the_server_accepts_is_answered_as_utf8(tmp_path) -> None:
    async with running_gateway(tmp_path) as gw:
        for spelling in ("UTF8", "utf-8", "'utf-8'", "Unicode"):
            client = await RawClient.connect(gw, gw.token(), client_encoding=spelling)
            try:
                client.send(codec.Query("SHOW client_encoding"))
                rows = [
                    m
                    for m in await client.until(codec.ReadyForQuery)
                    if isinstance(m, codec.DataRow)
                ]
                assert rows and rows[0].values[0] == b"UTF8"
            finally:
                client.close()


ENCODING_SWITCH = """
CREATE FUNCTION switch_encoding() RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  PERFORM set_config('client_encoding', 'SJIS', false);
  RETURN 'switched';
END $$;
CREATE FUNCTION switch_escaping() RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  PERFORM set_config('standard_conforming_strings', 'off', false);
  RETURN 'switched';
END $$;
"""


def _install(gw: Gateway, sql: str) -> None:
    with gw.admin() as admin:
        admin.execute(sql)
        admin.execute(f"ALTER FUNCTION switch_encoding() OWNER TO {gw.role}")


async def _switching_dba(gw: Gateway) -> RawClient:
    """A dba's raw client, switch_encoding() and switch_escaping() installed for it to call."""
    _install(gw, ENCODING_SWITCH)
    # in pii-readers: else the function waits for approval
    dba = gw.token("dba@example.com", ("dba", "pii-readers"))
    return await RawClient.connect(gw, dba)


@pytest.mark.parametrize("switch", ["switch_encoding", "switch_escaping"])
async def test_a_lexing_setting_moved_by_a_function_stops_the_session_before_what_is_pipelined(
    tmp_path, switch: str
) -> None:
    async with running_gateway(tmp_path) as gw:
        client = await _switching_dba(gw)
        try:
            # both in one write: the second reaches the server after the first ran
            client.send(codec.Query(f"SELECT public.{switch}()"), codec.Query(SMUGGLED))
            messages = await client.rest()
        finally:
            client.close()
        assert any("pinned" in e for e in errors(messages)), errors(messages)
        assert customers(gw) == 2


async def test_a_text_other_settings_could_read_differently_cannot_follow_an_execute_before_sync(
    tmp_path,
) -> None:
    async with running_gateway(tmp_path) as gw:
        client = await _switching_dba(gw)
        try:
            client.send(
                codec.Parse("", "SELECT public.switch_encoding()", []),
                codec.Bind("", "", [], [], []),
                codec.Execute("", 0),
                codec.Parse("", SMUGGLED, []),
                codec.Bind("", "", [], [], []),
                codec.Execute("", 0),
                codec.Sync(),
            )
            messages = await client.until(codec.ReadyForQuery)
            assert any("send Sync first" in e for e in errors(messages)), errors(messages)
            # the refusal failed the batch's implicit transaction, and the setting with it
            client.send(codec.Query("SHOW client_encoding"))
            shown = await client.until(codec.ReadyForQuery)
            assert [m.values[0] for m in shown if isinstance(m, codec.DataRow)] == [b"UTF8"]
        finally:
            client.close()
        assert customers(gw) == 2


async def test_plain_ascii_statements_pipeline_as_before(tmp_path) -> None:
    async with running_gateway(tmp_path) as gw:
        client = await RawClient.connect(gw, gw.token())
        try:
            client.send(*(codec.Query(f"SELECT {n}") for n in range(5)))
            seen: list[codec.Message] = []
            for _ in range(5):
                seen += await client.until(codec.ReadyForQuery)
            rows = [m.values[0] for m in seen if isinstance(m, codec.DataRow)]
            assert rows == [b"0", b"1", b"2", b"3", b"4"]
            # non-ASCII text pipelined behind reads waits its turn, then runs
            client.send(codec.Query("SELECT 1"), codec.Query("SELECT 'caf\u00e9'"))
            seen = await client.until(codec.ReadyForQuery)
            seen += await client.until(codec.ReadyForQuery)
            rows = [m.values[0] for m in seen if isinstance(m, codec.DataRow)]
            assert rows == [b"1", "caf\u00e9".encode()]
        finally:
            client.close()


async def test_a_refusal_inside_a_transaction_fails_it_as_the_server_would(tmp_path) -> None:
    async with running_gateway(tmp_path) as gw:
        dba = gw.token("dba@example.com", ("dba",))
        client = await RawClient.connect(gw, dba)
        try:
            client.send(codec.Query("BEGIN"))
            assert statuses(await client.until(codec.ReadyForQuery)) == ["T"]
            client.send(codec.Query("INSERT INTO orders VALUES (99, 1, 1)"))
            assert statuses(await client.until(codec.ReadyForQuery)) == ["T"]
            client.send(codec.Query("SELECT pg_read_file('/etc/passwd')"))
            refused = await client.until(codec.ReadyForQuery)
            assert statuses(refused) == ["E"]
            assert any("denied by policy" in e for e in errors(refused))
            client.send(codec.Query("COMMIT"))
            done = await client.until(codec.ReadyForQuery)
            tags = [m.tag for m in done if isinstance(m, codec.CommandComplete)]
            assert tags == ["ROLLBACK"] and statuses(done) == ["I"]
            # the same in the extended protocol
            client.send(codec.Query("BEGIN"))
            await client.until(codec.ReadyForQuery)
            client.send(codec.Parse("", "SELECT pg_read_file('/etc/passwd')", []), codec.Sync())
            assert statuses(await client.until(codec.ReadyForQuery)) == ["E"]
            client.send(codec.Query("ROLLBACK"))
            await client.until(codec.ReadyForQuery)
        finally:
            client.close()
        with gw.admin() as admin:
            assert admin.execute("SELECT count(*) FROM orders WHERE id = 99").fetchone()[0] == 0


async def test_a_prepared_statement_replaced_in_sql_is_never_run_under_its_old_verdict(
    tmp_path,
) -> None:
    async with running_gateway(tmp_path) as gw:
        client = await RawClient.connect(gw, gw.token())
        try:
            client.send(
                codec.Parse("s", "SELECT id, id, id FROM customers", []),
                codec.Describe("S", "s"),
                codec.Sync(),
            )
            await client.until(codec.ReadyForQuery)
            client.send(
                codec.Query("DEALLOCATE s; PREPARE s AS SELECT id, email, ssn FROM customers")
            )
            await client.until(codec.ReadyForQuery)
            client.send(codec.Bind("", "s", [], [], []), codec.Execute("", 0), codec.Sync())
            answer = await client.until(codec.ReadyForQuery)
        finally:
            client.close()
        values = b"".join(
            v or b"" for m in answer if isinstance(m, codec.DataRow) for v in m.values
        )
        assert b"ada@example.com" not in values and b"123-45-6789" not in values
        assert any("not allowed by policy" in e for e in errors(answer))


def _named_cursor(gw: Gateway, token: str) -> list[Any]:
    with psycopg.connect(gw.dsn(token)) as conn:
        with conn.cursor(name="agent_cursor") as cur:
            cur.execute("SELECT id, email FROM customers ORDER BY id")
            first = cur.fetchmany(1)
            rest = cur.fetchall()
        return first + rest


async def test_psycopg_named_cursors_work_and_stay_masked(tmp_path) -> None:
    async with running_gateway(tmp_path) as gw:
        rows = await asyncio.to_thread(_named_cursor, gw, gw.token())
        assert [r[0] for r in rows] == [1, 2]
        assert all(r[1] != "ada@example.com" and r[1] != "bob@example.org" for r in rows)
        dba_rows = await asyncio.to_thread(_named_cursor, gw, gw.token("dba@example.com", ("dba",)))
        assert [r[0] for r in dba_rows] == [1, 2]


def _copy_out(gw: Gateway, token: str, sql: str) -> str:
    with psycopg.connect(gw.dsn(token)) as conn, conn.cursor() as cur, cur.copy(sql) as copy:
        return b"".join(bytes(chunk) for chunk in copy).decode()


@pytest.mark.parametrize(
    "sql",
    [
        "COPY customers TO STDOUT",
        "COPY public.customers (id, email) TO STDOUT WITH (FORMAT csv)",
        "COPY (SELECT id, email AS contact FROM customers) TO STDOUT",
        "copy (select c.ssn from customers c) to stdout",
    ],
)
async def test_copy_out_of_masked_columns_is_refused_naming_them(tmp_path, sql: str) -> None:
    async with running_gateway(tmp_path) as gw:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
            await asyncio.to_thread(_copy_out, gw, gw.token(), sql)
        assert "masked column" in str(err.value)


async def test_copy_out_of_a_table_without_masked_columns_is_a_read(tmp_path) -> None:
    async with running_gateway(tmp_path) as gw:
        for token in (gw.token(), gw.token("dba@example.com", ("dba",))):
            out = await asyncio.to_thread(_copy_out, gw, token, "COPY orders (id, total) TO STDOUT")
            assert out.splitlines() == ["10\t99.50", "11\t12.00"]
            out = await asyncio.to_thread(
                _copy_out, gw, token, "COPY (SELECT id, note FROM customers ORDER BY id) TO STDOUT"
            )
            assert "4111 1111 1111 1111" not in out  # the value detectors still read rows
