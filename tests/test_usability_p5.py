"""Usability probe 5 (helper pgmask11): catalogue names a client computes over answer a
READER as the database does, through the real PDP on the shipped policy, the real Postgres
proxy and PostgreSQL.

Lineage masked a computed output whole unless its columns were those of the few catalog
tables drivers read (pg_type, pg_class, ...), so the names and flags a tool lists came
back [REDACTED] (or NULL) wherever the tool computed over them:
- Grafana's variable and table pickers, `quote_ident(table_name)` FROM information_schema
  .tables / .columns / .schemata;
- psql's \\dp (its Policies column: pg_policy's names and quals, pg_roles' rolname),
  \\du (Member of: ARRAY(SELECT b.rolname FROM pg_auth_members JOIN pg_roles)), \\dC
  (format_type over pg_cast beside pg_proc), \\dL (pg_language's owner), \\df+ (pg_proc's
  flags and ACL), \\dF and friends (text search configurations);
- pgjdbc's getSQLKeywords (string_agg(word, ',') FROM pg_get_keywords()), getFunctions
  and getProcedures (`p.proname || '_' || p.oid`), with the real driver.
pdp/sql/lineage.py now trusts the names and flags of the server's own views and of pg_proc
(SYSTEM_VIEW_COLUMNS; never a function's body, a comment or a setting), information_schema
only qualified and only while initdb's view is there (proxies/postgres/columns.py
UNTRUSTED_SQL; tests/test_pg_mask_probe_p19.py attacks it). Each case fails before.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from test_usability_p1 import psql
from test_usability_p2 import TIMEOUT, pg  # noqa: F401  (fixture)
from usability_stacks import owner
from usability_stacks import reader_dsn as dsn

from pdp.sql.lineage import SYSTEM_VIEW_COLUMNS
from proxies.postgres import columns

pytestmark = pytest.mark.integration

# roles are the cluster's: listed by this module's prefix, so other sessions' roles (made
# and dropped meanwhile) are not
GROUP, MEMBER = "pgmask11_p5_group", "pgmask11_p5_member"


@pytest.fixture(scope="module")
def catalogue(pg: dict[str, Any]) -> Iterator[dict[str, Any]]:  # noqa: F811
    """A table with a row security policy and a column grant, and a role in another."""
    with owner(pg["role"], pg["database"]) as direct:
        direct.execute(
            "CREATE TABLE pgmask11_notes (id int, body text);"
            "CREATE POLICY pgmask11_mine ON pgmask11_notes FOR SELECT USING (id > 0);"
            "GRANT SELECT (id) ON pgmask11_notes TO PUBLIC"
        )
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as su:
        su.execute(f"DROP ROLE IF EXISTS {MEMBER}; DROP ROLE IF EXISTS {GROUP}")
        su.execute(f"CREATE ROLE {GROUP} NOLOGIN; CREATE ROLE {MEMBER} NOLOGIN IN ROLE {GROUP}")
    try:
        yield pg
    finally:
        with psycopg.connect(
            "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True
        ) as su:
            su.execute(f"DROP ROLE IF EXISTS {MEMBER}; DROP ROLE IF EXISTS {GROUP}")


PSQL = [
    r"\dp pgmask11*",
    r"\du pgmask11_p5_*",
    r"\dg pgmask11_p5_*",
    r"\dC",
    r"\dL",
    r"\df+ lower",
    r"\dF",
    r"\dFd",
    r"\dFp",
    r"\dFt",
]


@pytest.mark.parametrize("command", PSQL)
def test_psql_lists_catalogue_names_as_the_database_does(
    catalogue: dict[str, Any], command: str
) -> None:
    through, direct = psql(catalogue, True, "-c", command), psql(catalogue, False, "-c", command)
    assert through.returncode == 0 and "ERROR" not in through.stderr, through.stderr
    assert "[REDACTED]" not in through.stdout
    assert through.stdout == direct.stdout


GRAFANA = [
    # the table picker of Grafana's PostgreSQL data source
    'select quote_ident(table_name) as "table" from information_schema.tables'
    " where quote_ident(table_schema) not in ('information_schema', 'pg_catalog',"
    " '_timescaledb_cache', '_timescaledb_catalog', '_timescaledb_internal',"
    " '_timescaledb_config', 'timescaledb_information', 'timescaledb_experimental')"
    " and table_type = 'BASE TABLE' order by 1",
    # its column picker
    'select quote_ident(column_name) as "column", data_type as "type"'
    " from information_schema.columns where quote_ident(table_name) = 'orders'"
    " order by ordinal_position",
    # a schema variable
    "SELECT quote_ident(schema_name) FROM information_schema.schemata ORDER BY 1",
    "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name)"
    " FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    "SELECT quote_ident(rolname) FROM pg_catalog.pg_roles WHERE rolname = current_user",
]


@pytest.mark.parametrize("sql", GRAFANA)
def test_grafana_pickers_quote_catalogue_names_as_the_database_does(
    pg: dict[str, Any],  # noqa: F811
    sql: str,
) -> None:
    with (
        psycopg.connect(dsn(pg), autocommit=True) as reader,
        owner(pg["role"], pg["database"]) as direct,
    ):
        got = reader.execute(sql).fetchall()
        assert got and got == direct.execute(sql).fetchall()


JDBC_JAR = Path.home() / ".m2/repository/org/postgresql/postgresql/42.7.13/postgresql-42.7.13.jar"
JDBC_PROGRAM = """
import java.sql.*;
public class Meta {
  public static void main(String[] a) throws Exception {
    java.util.Properties p = new java.util.Properties();
    p.setProperty("user", a[1]);
    if (a.length > 2) p.setProperty("password", a[2]);
    p.setProperty("sslmode", "disable");
    try (Connection c = DriverManager.getConnection(a[0], p)) {
      DatabaseMetaData m = c.getMetaData();
      System.out.println("keywords " + m.getSQLKeywords());
      print("functions", m.getFunctions(null, "pg_catalog", "lower"));
      print("procedures", m.getProcedures(null, "public", "%"));
    }
  }
  static void print(String what, ResultSet r) throws SQLException {
    int n = r.getMetaData().getColumnCount();
    while (r.next()) {
      StringBuilder b = new StringBuilder(what);
      for (int i = 1; i <= n; i++) b.append(" | ").append(r.getString(i));
      System.out.println(b);
    }
  }
}
"""


def pgjdbc(tmp: Path, url: str, *login: str) -> str:
    """The real pgjdbc driver's DatabaseMetaData answers, one line each."""
    source = tmp / "Meta.java"
    source.write_text(JDBC_PROGRAM)
    run = subprocess.run(
        ["java", "-cp", str(JDBC_JAR), str(source), url, *login],
        capture_output=True, text=True, timeout=TIMEOUT * 2,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_pgjdbc_keywords_functions_and_procedures_as_the_database_does(
    pg: dict[str, Any],  # noqa: F811
    tmp_path: Path,
) -> None:
    database = pg["database"]
    through = pgjdbc(
        tmp_path,
        f"jdbc:postgresql://127.0.0.1:{pg['port']}/{database}",
        "agent",
        pg["tokens"]["reader"],
    )
    direct = pgjdbc(tmp_path, f"jdbc:postgresql://127.0.0.1:5432/{database}", pg["role"])
    assert "[REDACTED]" not in through and "null_" not in through
    assert through == direct and "functions | " in through


def test_the_views_lineage_trusts_are_those_the_proxy_reads_as_stored() -> None:
    """Lineage's trusted view columns (pg_proc's aside: a catalog table) are among those
    the proxy checks are initdb's (SYSTEM_VIEW_COLUMNS, UNTRUSTED_SQL)."""
    for relation, names in SYSTEM_VIEW_COLUMNS.items():
        if relation.removeprefix("pg_catalog.") == "pg_proc":
            continue
        qualified = relation if "." in relation else f"pg_catalog.{relation}"
        assert {f"{qualified}.{n}" for n in names} <= columns.SYSTEM_VIEW_COLUMNS, relation
