"""`portcullis discover` against the machine's PostgreSQL: it proposes the columns whose
names, comments or sampled values say they are sensitive, as a diff of the data file with
the evidence for each, never printing a value, and writes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from pdp_harness import REGO, pdp_raw
from pg_harness import scratch_database

from pdp.cli import main

SCHEMA = """
CREATE TABLE people (id int, contact text, card text, notes text, phone text,
  "birthDate" date, nickname text);
COMMENT ON COLUMN people.nickname IS 'PII: what friends call them';
INSERT INTO people SELECT g, 'person' || g || '@example.com',
  CASE WHEN g % 2 = 0 THEN '4111 1111 1111 1111' ELSE 'none' END,
  'note ' || g, '555-0100', DATE '2000-01-01', 'nick' || g FROM generate_series(1, 40) g;
"""


def orders_db_config(tmp_path: Path, name: str, role: str, password: str) -> Path:
    """A portcullis.yaml under `tmp_path` whose orders-db is scratch database `name`,
    reached as its owner `role`."""
    raw = pdp_raw(tmp_path)
    raw["connections"][0].update(
        database=name,
        credentials={"provider": "static", "username": role, "password": password},
    )
    config = tmp_path / "portcullis.yaml"
    config.write_text(yaml.safe_dump(raw))
    return config


def test_discover_proposes_with_evidence_and_never_shows_values(tmp_path: Path, capsys):
    data = tmp_path / "data.json"
    shutil.copy(REGO / "data.json", data)
    before = data.read_text()
    with scratch_database(SCHEMA) as (name, role, password):
        config = orders_db_config(tmp_path, name, role, password)
        code = main(
            ["-c", str(config), "discover", "--connection", "orders-db", "--data", str(data),
             "--sample", "30"]
        )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert data.read_text() == before  # nothing written
    diff = [line for line in out.splitlines() if line.startswith("+") and "sensitive" in line]
    assert len(diff) == 1
    for proposed in ("contact", "card", "birthdate", "nickname"):
        assert f'"{proposed}"' in diff[0], proposed
    assert '"notes"' not in diff[0]
    assert out.count('"phone"') == 2  # listed already: in the old line and the new, once each
    assert "detector email matched 100% of 30 sampled values" in out
    assert "detector credit_card matched 50% of 30 sampled values" in out
    assert "name contains 'birth'" in out
    assert "comment says 'PII'" in out
    for value in ("@example.com", "4111", "nick1", "555-0100"):
        assert value not in out
