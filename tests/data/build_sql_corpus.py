"""Regenerates tests/data/sql_corpus.txt.gz, the real-world SQL the classifier differential
test (tests/test_classifier_differential.py) runs through both classifiers.

Source, read from a git mirror (the library's `fetch`, or any clone): PostgreSQL's
regression suites (src/test/regress/sql and src/pl/plpgsql/src/sql) as libpg_query vendors
them in test/sql/postgres_regress/ and test/sql/plpgsql_regress/ of pganalyze/libpg_query
(the postgres repository itself is too large to fetch here).
pglast's own test SQL is left out: it is GPL-3.0, this project Apache-2.0.

psql is not SQL: meta-command lines (`\\set`, `\\d`, ...), COPY ... FROM stdin data blocks
and statements holding psql variables (`:foo`, which the parser rejects) are dropped, as is
every statement pglast cannot parse (the regression suite tests many errors on purpose).
What is kept is de-duplicated and written one statement per record, records separated by
a line holding only RECORD_SEPARATOR, after a header naming the sources and licences.

Usage: python tests/data/build_sql_corpus.py LIBPG_QUERY_GIT_DIR
(e.g. /work/.mirror/pganalyze+libpg_query/repo)
"""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from pathlib import Path

import pglast
from pglast.parser import split as scan_split

RECORD_SEPARATOR = "\x1e"
OUT = Path(__file__).with_name("sql_corpus.txt.gz")

_META = re.compile(r"^\s*\\")
_FROM_STDIN = re.compile(r"\bfrom\s+stdin\b[^;]*;\s*$", re.IGNORECASE)

HEADER = """\
-- SQL corpus for tests/test_classifier_differential.py, built by tests/data/build_sql_corpus.py
-- from PostgreSQL's regression suites (src/test/regress/sql and src/pl/plpgsql/src/sql) as
-- pganalyze/libpg_query {libpg_query} vendors them.
-- One statement per record; records are separated by lines holding only U+001E.
--
-- The statements are PostgreSQL's, under the PostgreSQL Licence:
--
-- PostgreSQL Database Management System
-- (also known as Postgres, formerly known as Postgres95)
--
-- Portions Copyright (c) 1996-2024, PostgreSQL Global Development Group
--
-- Portions Copyright (c) 1994, The Regents of the University of California
--
-- Permission to use, copy, modify, and distribute this software and its
-- documentation for any purpose, without fee, and without a written agreement
-- is hereby granted, provided that the above copyright notice and this
-- paragraph and the following two paragraphs appear in all copies.
--
-- IN NO EVENT SHALL THE UNIVERSITY OF CALIFORNIA BE LIABLE TO ANY PARTY FOR
-- DIRECT, INDIRECT, SPECIAL, INCIDENTAL, OR CONSEQUENTIAL DAMAGES, INCLUDING
-- LOST PROFITS, ARISING OUT OF THE USE OF THIS SOFTWARE AND ITS
-- DOCUMENTATION, EVEN IF THE UNIVERSITY OF CALIFORNIA HAS BEEN ADVISED OF THE
-- POSSIBILITY OF SUCH DAMAGE.
--
-- THE UNIVERSITY OF CALIFORNIA SPECIFICALLY DISCLAIMS ANY WARRANTIES,
-- INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY
-- AND FITNESS FOR A PARTICULAR PURPOSE.  THE SOFTWARE PROVIDED HEREUNDER IS
-- ON AN "AS IS" BASIS, AND THE UNIVERSITY OF CALIFORNIA HAS NO OBLIGATIONS TO
-- PROVIDE MAINTENANCE, SUPPORT, UPDATES, ENHANCEMENTS, OR MODIFICATIONS.
"""


def _git(repo: str, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", repo, *args], check=True, capture_output=True
    ).stdout.decode(errors="replace")  # a few regression files are in Latin-1


def _files(repo: str, prefixes: tuple[str, ...]) -> list[str]:
    names = _git(repo, "ls-tree", "-r", "--name-only", "HEAD").splitlines()
    return sorted(n for n in names if n.endswith(".sql") and n.startswith(prefixes))


def _psql_script_statements(text: str) -> list[str]:
    """The SQL statements of a psql script: meta-commands and COPY data left out."""
    lines = text.splitlines()
    kept: list[str] = []
    skip_to = -1
    for i, line in enumerate(lines):
        if i <= skip_to or _META.match(line):
            continue
        kept.append(line)
        if _FROM_STDIN.search(line):
            # A COPY the server refused has no data after it: a block is one only when
            # its `\.` comes before the next COPY FROM stdin.
            skip_to = _copy_data_end(lines, i + 1)
    try:
        return [s.strip() for s in scan_split("\n".join(kept), with_parser=False)]
    except Exception:
        return []


def _copy_data_end(lines: list[str], start: int) -> int:
    for j in range(start, len(lines)):
        if lines[j].strip() == "\\.":
            return j
        if _FROM_STDIN.search(lines[j]):
            break
    return -1


def _parses(statement: str) -> bool:
    try:
        return len(pglast.parse_sql(statement)) == 1
    except Exception:
        return False


def build(libpg_query: str) -> list[str]:
    candidates: list[str] = []
    for name in _files(libpg_query, ("test/sql/postgres_regress/", "test/sql/plpgsql_regress/")):
        candidates.extend(_psql_script_statements(_git(libpg_query, "show", f"HEAD:{name}")))
    seen: dict[str, None] = {}
    for statement in candidates:
        statement = statement.strip().rstrip(";").strip()
        fresh = statement and statement not in seen and RECORD_SEPARATOR not in statement
        if fresh and _parses(statement):
            seen[statement] = None
    return list(seen)


def main() -> None:
    (libpg_query,) = sys.argv[1:2]
    statements = build(libpg_query)
    header = HEADER.format(libpg_query=_git(libpg_query, "rev-parse", "HEAD").strip())
    body = f"\n{RECORD_SEPARATOR}\n".join([header.rstrip("\n"), *statements]) + "\n"
    with gzip.GzipFile(OUT, "wb", mtime=0) as out:
        out.write(body.encode())
    print(f"{len(statements)} statements, {OUT.stat().st_size} bytes: {OUT}")


if __name__ == "__main__":
    main()
