"""`portcullis discover --connection NAME`: propose sensitive columns as a diff of
rego/data.json, with the evidence for each (issue 30 §4).

Owns reading a Postgres connection's schema (every column of every ordinary, partitioned
and foreign table, view and materialized view outside the system schemas: its name,
type and comment) and a bounded sample of each text-like column's values, judging each
column by its name, its comment and the share of sampled values that the masking
detectors (portcullis.masking) recognise, and printing what it proposes to add to
`sensitive_columns`: a unified diff of the data file and one line of evidence per
proposal (which signal, which detector matched what share of how many values). Values
never leave this process: not printed, not logged, not kept. Nothing is written; the
team reviews the diff and commits it.

The upstream is reached with the connection's static credentials (or --dsn, e.g. for a
Vault-provided connection: a reader's DSN of the same database).
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pdp.plumbing.rendering import inert
from portcullis.masking import DETECTORS, detect

DEFAULT_SAMPLE = 200
MAX_SAMPLE = 5000
DETECTOR_SHARE = 0.3  # of sampled values: a detector matching this share flags the column
# names that say what a column holds, as whole words of its name (snake_case or camelCase)
NAME_SIGNALS = re.compile(
    r"(^|_)(e?mail|phone|mobile|ssn|social_security|passport|iban|card|pan|cvv|password|"
    r"passwd|secret|token|api_?key|birth|dob|address|postcode|zip|salary|tax_id|national_id|"
    r"license|ip_address)($|_)"
)
COMMENT_SIGNALS = re.compile(r"\b(pii|personal|sensitive|confidential|secret|gdpr)\b", re.I)
TEXT_TYPES = ("text", "character varying", "character", "json", "jsonb", "citext", "name")

COLUMNS_SQL = """
SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
       col_description(c.oid, a.attnum), c.relkind
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'f', 'v', 'm')
AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
ORDER BY 1, 2, a.attnum
"""


@dataclass
class Column:
    schema: str
    table: str
    name: str
    type: str
    comment: str = ""
    sampled: int = 0
    matches: dict[str, int] = field(default_factory=dict)  # detector → values matched

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.table}.{self.name} ({self.type})"

    @property
    def text_like(self) -> bool:
        return self.type.startswith(TEXT_TYPES)

    def take(self, value: str) -> None:
        """One sampled value: counted, run through the detectors, and forgotten."""
        self.sampled += 1
        for detector in DETECTORS:
            if detect(detector, value):
                self.matches[detector] = self.matches.get(detector, 0) + 1


def evidence(column: Column) -> list[str]:
    """Why a column looks sensitive ([] when nothing says so); never a value."""
    found = []
    name = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", column.name).lower()
    match = NAME_SIGNALS.search(name)
    if match:
        found.append(f"name contains {match.group(2)!r}")
    if column.comment and COMMENT_SIGNALS.search(column.comment):
        found.append(f"comment says {COMMENT_SIGNALS.search(column.comment).group(1)!r}")  # type: ignore[union-attr]
    for detector, hits in sorted(column.matches.items()):
        share = hits / column.sampled
        if share >= DETECTOR_SHARE:
            found.append(
                f"detector {detector} matched {share:.0%} of {column.sampled} sampled values"
            )
    return found


def proposals(columns: list[Column], listed: list[str]) -> dict[str, list[str]]:
    """Column name → evidence lines, for columns whose name `sensitive_columns` lacks."""
    known = {n.lower() for n in listed}
    out: dict[str, list[str]] = {}
    for column in columns:
        if column.name.lower() in known:
            continue
        why = evidence(column)
        if why:
            out.setdefault(column.name.lower(), []).extend(f"{column.label}: {w}" for w in why)
    return out


def data_diff(path: Path, additions: list[str]) -> tuple[str, list[str]]:
    """The unified diff that adds `additions` to sensitive_columns in the data file (its
    other lines untouched), and the list as it would be."""
    text = path.read_text()
    data = json.loads(text)
    listed = list(data["portcullis"]["sensitive_columns"])
    proposed = listed + [a for a in additions if a not in listed]
    old_line = re.search(r'^(\s*)"sensitive_columns":\s*\[[^\]]*\](,?)\s*$', text, re.M)
    if old_line is None:
        raise SystemExit(f"{path}: sensitive_columns is not on one line; edit it by hand")
    new_line = f'{old_line.group(1)}"sensitive_columns": {json.dumps(proposed)}{old_line.group(2)}'
    new_text = text[: old_line.start()] + new_line + text[old_line.end() :]
    diff = difflib.unified_diff(
        text.splitlines(keepends=True),
        new_text.splitlines(keepends=True),
        fromfile=str(path),
        tofile=f"{path} (proposed)",
        n=1,
    )
    return "".join(diff), proposed


async def read_columns(dsn: dict[str, Any], sample: int) -> list[Column]:
    import asyncpg

    conn = await asyncpg.connect(**dsn)
    try:
        # a sample reads, never writes: the whole look is one read-only transaction
        async with conn.transaction(readonly=True):
            rows = await conn.fetch(COLUMNS_SQL)
            columns = [Column(r[0], r[1], r[2], r[3], r[4] or "") for r in rows]
            for column in columns:
                if not column.text_like:
                    continue
                ident = ".".join(_quoted(p) for p in (column.schema, column.table))
                query = (
                    f"SELECT {_quoted(column.name)}::text FROM {ident} "
                    f"WHERE {_quoted(column.name)} IS NOT NULL LIMIT {int(sample)}"
                )
                async with conn.transaction():  # a table we may not read: skip it alone
                    try:
                        for record in await conn.fetch(query):
                            column.take(record[0])
                    except asyncpg.PostgresError:
                        column.comment += " (values not readable)"
        return columns
    finally:
        await conn.close()


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _dsn(args: argparse.Namespace, config: Any) -> dict[str, Any]:
    if args.dsn:
        if _holds_password(args.dsn):
            # argv is /proc/PID/cmdline: readable by every user of the host while it runs
            raise SystemExit(
                "--dsn holds a password, which every user of this host can read in the "
                "process list: leave it out and set PGPASSWORD (or use ~/.pgpass)"
            )
        return {"dsn": args.dsn}
    known = config.connection(args.connection)
    if known is None or known.type != "postgres":
        raise SystemExit(f"connection {args.connection!r} is not a postgres connection")
    known = known.resolved()
    creds = known.credentials
    if creds.get("provider", "static") != "static":
        raise SystemExit(
            f"connection {known.name} takes its credentials from {creds.get('provider')}: "
            "give --dsn (a reader's DSN of the same database; its password in PGPASSWORD)"
        )
    host, _, port = known.upstream.rpartition(":")
    return {
        "host": host or "127.0.0.1",
        "port": int(port or 5432),
        "user": creds.get("username"),
        "password": creds.get("password"),
        "database": known.database or None,
        "ssl": False,
    }


def _holds_password(dsn: str) -> bool:
    """Whether a libpq DSN (URL or key=value form) carries a password."""
    if "://" in dsn:
        url = urlsplit(dsn)
        return bool(url.password) or "password=" in url.query.lower()
    return re.search(r"(^|\s)password\s*=", dsn, re.IGNORECASE) is not None


def cmd_discover(args: argparse.Namespace) -> int:
    from pdp.cli import _config

    config = _config(args)
    sample = max(1, min(int(args.sample), MAX_SAMPLE))
    columns = asyncio.run(read_columns(_dsn(args, config), sample))
    path = Path(args.data)
    listed = json.loads(path.read_text())["portcullis"]["sensitive_columns"]
    found = proposals(columns, listed)
    if not found:
        print(f"no new sensitive columns proposed ({len(columns)} columns read, "
              f"up to {sample} values sampled from each text column)")  # fmt: skip
        return 0
    diff, _ = data_diff(path, sorted(found))
    sys.stdout.write(diff)
    print(f"\n# evidence ({len(columns)} columns read, up to {sample} values sampled from each "
          "text column; values are never shown)")  # fmt: skip
    for name in sorted(found):
        # names come from the database: whoever may create a column chooses them
        print(f"# {inert(name)}")
        for line in found[name]:
            print(f"#   {inert(line)}")
    print(
        "# nothing was written: apply the diff, run `portcullis policy masks --write`"
        " (rego/portcullis/pii_masks.rego) and commit both to adopt it"
    )
    return 0


def register(sub: Any) -> None:
    discover = sub.add_parser(
        "discover",
        help="propose sensitive columns as a data.json diff",
        description="Read a Postgres connection's schema and a bounded sample of its text "
        "values, and print the sensitive_columns additions it proposes as a diff of the data "
        "file, with the evidence for each (names, comments, detector shares; never values).",
    )
    discover.add_argument("--connection", required=True, help="a postgres connection's name")
    discover.add_argument("--dsn", default=None, help="libpq DSN to read instead")
    discover.add_argument(
        "--sample", type=int, default=DEFAULT_SAMPLE, help="values per column (max 5000)"
    )
    discover.add_argument("--data", default="rego/data.json", help="the data file to diff")
    discover.set_defaults(func=cmd_discover)
