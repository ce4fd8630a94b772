"""pdp.sql.reader_functions: the readers' function allow-list is what the generator makes of
the real server's pg_proc, and nothing that runs SQL text, reads files, touches large
objects or the server's state gets onto it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from pdp.sql import reader_functions
from tests.conftest import PG_ADMIN_DSN

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "rego" / "data.json"


def committed() -> dict[str, bool]:
    return json.loads(DATA.read_text())["portcullis"]["postgres"]["reader_functions"]


@pytest.fixture(scope="module")
def catalog() -> list[tuple[str, str, str, bool, str]]:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        return conn.execute(reader_functions.CATALOG_QUERY).fetchall()


def test_committed_list_is_the_generators_output_on_this_server():
    assert committed() == reader_functions.from_server(PG_ADMIN_DSN), (
        "rego/data.json is stale: run `portcullis policy reader-functions --dsn "
        f"{PG_ADMIN_DSN} --write rego/data.json` and review the diff"
    )


def test_command_writes_only_the_list_and_keeps_the_file_byte_for_byte(tmp_path):
    copy = tmp_path / "data.json"
    copy.write_text(DATA.read_text())
    command = [sys.executable, "-m", "pdp.cli", "policy", "reader-functions"]
    subprocess.run([*command, "--dsn", PG_ADMIN_DSN, "--write", str(copy)], check=True)
    assert copy.read_text() == DATA.read_text()
    printed = subprocess.run(
        [*command, "--dsn", PG_ADMIN_DSN], check=True, capture_output=True, text=True
    ).stdout
    assert json.loads(printed) == committed()


def test_bad_dsn_is_one_clear_error():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pdp.cli",
            "policy",
            "reader-functions",
            "--dsn",
            "postgresql://nobody@127.0.0.1:1/x",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("portcullis policy reader-functions:")


@pytest.mark.parametrize(
    "name",
    [
        # run SQL text or read whole tables by name
        "query_to_xml",
        "query_to_xmlschema",
        "query_to_xml_and_xmlschema",
        "cursor_to_xml",
        "table_to_xml",
        "table_to_xml_and_xmlschema",
        "schema_to_xml",
        "database_to_xml",
        "ts_stat",
        "ts_rewrite",
        # server files and directories
        "pg_read_file",
        "pg_read_binary_file",
        "pg_ls_dir",
        "pg_ls_waldir",
        "pg_ls_tmpdir",
        "pg_ls_logdir",
        "pg_stat_file",
        "pg_current_logfile",
        "pg_hba_file_rules",
        # large objects
        "lo_import",
        "lo_export",
        "lo_creat",
        "lo_create",
        "lo_from_bytea",
        "lo_get",
        "lo_put",
        "loread",
        "lowrite",
        "lo_unlink",
        # the server's and other sessions' state
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_stat_reset",
        "pg_create_physical_replication_slot",
        "setval",
        "nextval",
        "pg_notify",
        "pg_advisory_lock",
        "pg_try_advisory_lock",
        "pg_advisory_xact_lock",
        "set_config",
        "pg_sleep",
        "txid_current",
        "pg_current_xact_id",
        "pg_stat_get_activity",
        "pg_stat_get_backend_activity",
        "fmgr_c_validator",
        "pg_switch_wal",
        "pg_promote",
        # trigger functions (capitals) and handlers
        "RI_FKey_check_ins",
        "tsvector_update_trigger",
        "heap_tableam_handler",
    ],
)
def test_never_listed(name):
    assert name not in committed()


@pytest.mark.parametrize(
    "name",
    [
        "lower",
        "count",
        "string_agg",
        "row_number",
        "now",
        "format_type",
        "pg_get_userbyid",
        "pg_table_is_visible",
        "current_setting",
        "version",
        "array_to_string",
        "to_char",
        "random",
        "clock_timestamp",
        "gen_random_uuid",
        "pg_advisory_unlock_all",
        "pg_advisory_unlock",
        "pg_advisory_unlock_shared",
        "pg_is_in_recovery",
        "pg_size_pretty",
        "pg_total_relation_size",
        "current_schema",
        "jsonb_build_object",
    ],
)
def test_listed(name):
    assert committed().get(name) is True


def test_every_name_listed_is_immutable_or_stable_unless_reviewed(catalog):
    """The selection read back from pg_proc: each listed name's callable overloads are
    immutable or stable, or the name is one of the reviewed harmless volatile ones."""
    listed = committed()
    volatility: dict[str, set[str]] = {}
    for name, provolatile, _, takes_internal, _ in catalog:
        if not takes_internal:
            volatility.setdefault(name, set()).add(provolatile)
    for name in listed:
        if name in reader_functions.HARMLESS_VOLATILE:
            continue
        assert volatility[name] <= {"i", "s"}, name
        assert reader_functions.excluded_by(name) is None, name


def test_one_bad_overload_keeps_a_name_off():
    rows = [
        ("ts_rewrite", "i", "f", False, "tsquery"),
        ("ts_rewrite", "v", "f", False, "tsquery"),
        ("upper", "i", "f", False, "text"),
        ("eqsel", "s", "f", True, "double precision"),
        ("tsvector_update_trigger", "v", "f", False, "trigger"),
        ("abs", "i", "f", False, "integer"),
        ("abs", "s", "f", True, "integer"),  # an internal overload SQL cannot call
        ("random", "v", "f", False, "double precision"),
        ("Upper", "i", "f", False, "text"),
        ("some_procedure", "i", "p", False, "void"),
    ]
    assert reader_functions.select(rows) == {"abs": True, "random": True, "upper": True}


def test_dump_is_one_key_a_line():
    text = reader_functions.dump({"a": {"b": [1, "x"], "c": {"d": True}}, "e": []})
    assert text.splitlines() == [
        "{",
        '  "a": {',
        '    "b": [1, "x"],',
        '    "c": {',
        '      "d": true',
        "    }",
        "  },",
        '  "e": []',
        "}",
    ]
    assert text.endswith("}\n")
    assert json.loads(text) == {"a": {"b": [1, "x"], "c": {"d": True}}, "e": []}
