"""What a server's error or notice may say under masks: its own message texts, every
argument redacted (the allow-list masked_fields in proxies/postgres/values.py reads).

A message under masks was the server's text with its double-quoted strings redacted and any
field still holding a digit withheld: a deny-list of the ways a value is quoted. A value
holding a double quote split the quoting (`('"' || translate(note, '0123456789',
'abcdefghij') || '"')::int` gave `invalid input syntax for type integer: "[REDACTED]"card
ebbb bbbb bbbb bbbb on file"[REDACTED]"`), and some messages print a value unquoted
(`translate(replace(note, ' ', '.'), ...)::regclass` gave `improper relation name (too many
dotted names): card.ebbb.bbbb.bbbb.bbbb.on.file`). Now a field is kept only as one of the
server's message templates (server_message_texts.py: the msgids of PostgreSQL 15's and
PL/pgSQL's translation catalogues, the English texts every errmsg, errdetail, errhint and
errcontext is made from), its arguments replaced by [REDACTED], but for an argument that
is a built-in type's name (`invalid input syntax for type integer: "[REDACTED]"`). Nothing
of the server's text is kept but the template's own words: a field no template makes (a
server of another version or language, an extension's untranslated text, elog's internal
errors) is withheld whole.

Templates are matched without backtracking: the literal before the first argument opens
the field, the one after the last ends it, and the ones between are found leftmost in
order (an argument matches any text, empty too). When several templates make a field, the
one with the most literal text is taken.

Regenerate the texts from a server's catalogues (reviewed as a diff):

    python -m proxies.postgres.server_messages /usr/share/locale > \\
        proxies/postgres/server_message_texts.py
"""

from __future__ import annotations

import glob
import heapq
import re
import struct
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

REDACTED = "[REDACTED]"
# A longer field is withheld unread: it quotes a value (the server's own texts are short),
# and reading it against every template would cost the proxy's loop a scan per template.
MAX_FIELD = 8192

# a C format conversion of the server's message texts (%s, %d, %u, %lld, %.*s, %m, ...);
# %% is a literal percent sign
_CONVERSION = re.compile(
    r"%(?:%|[-+ #0']*(?:\*|\d+)?(?:\.(?:\*|\d+))?(?:hh|h|ll|l|z|j|t|L|q)?[diouxXeEfgGcspmn])"
)

# Built-in type names as format_type prints them (pg_catalog's base, pseudo, range and
# multirange types, PostgreSQL 15), an argument kept as it is: `invalid input syntax for
# type integer`. A type the statement names is the reader's own word; an argument equal
# to one of these says nothing of a value.
_TYPE_NAMES = frozenset(
    """
    "any"|"char"|aclitem|anyarray|anycompatible|anycompatiblearray|anycompatiblemultirange|
    anycompatiblenonarray|anycompatiblerange|anyelement|anyenum|anymultirange|anynonarray|
    anyrange|bigint|bit|bit varying|boolean|box|bytea|character|character varying|cid|cidr|
    circle|cstring|date|datemultirange|daterange|double precision|event_trigger|fdw_handler|
    gtsvector|index_am_handler|inet|int2vector|int4multirange|int4range|int8multirange|
    int8range|integer|internal|interval|json|jsonb|jsonpath|language_handler|line|lseg|
    macaddr|macaddr8|money|name|numeric|nummultirange|numrange|oid|oidvector|path|pg_lsn|
    pg_snapshot|point|polygon|real|record|refcursor|regclass|regcollation|regconfig|
    regdictionary|regnamespace|regoper|regoperator|regproc|regprocedure|regrole|regtype|
    smallint|text|tid|time with time zone|time without time zone|timestamp with time zone|
    timestamp without time zone|trigger|tsm_handler|tsmultirange|tsquery|tsrange|
    tstzmultirange|tstzrange|tsvector|txid_snapshot|unknown|uuid|void|xid|xid8|xml
    """.replace("\n", "")
    .replace(" ", "\0")
    .replace("\0\0", "")
    .replace("\0", " ")
    .strip()
    .split("|")
)
# a type name with a type modifier and array brackets: character varying(3)[]
# The names of a statement's parts the parser gives its messages untranslated
# (ParseExprKindName in PostgreSQL 15's parse_expr.c: `aggregate functions are not allowed
# in GROUP BY`, `set-returning functions are not allowed in WHERE`): the server's words, no
# value's, so an argument equal to one is kept.
_CLAUSE_NAMES = frozenset(
    (
        "JOIN/ON",
        "JOIN/USING",
        "sub-SELECT in FROM",
        "function in FROM",
        "WHERE",
        "POLICY",
        "HAVING",
        "FILTER",
        "window PARTITION BY",
        "window ORDER BY",
        "window RANGE",
        "window ROWS",
        "window GROUPS",
        "SELECT",
        "INSERT",
        "UPDATE",
        "MERGE WHEN",
        "GROUP BY",
        "ORDER BY",
        "DISTINCT ON",
        "LIMIT",
        "OFFSET",
        "RETURNING",
        "VALUES",
        "CHECK",
        "DEFAULT",
        "index expression",
        "index predicate",
        "statistics expression",
        "USING",
        "EXECUTE",
        "WHEN",
        "partition bound",
        "PARTITION BY",
        "CALL",
        "GENERATED AS",
        "CYCLE",
    )
)
_TYPE = re.compile(r"(?P<name>[a-z0-9_ \"]+?)(?:\(\d{1,4}(?:,\d{1,4})?\))?(?:\[\])*")


@dataclass(frozen=True, slots=True)
class Template:
    """A message text cut at its arguments: parts[0] ARG parts[1] ... ARG parts[-1]."""

    parts: tuple[str, ...]
    weight: int  # how much literal text it has

    def arguments(self, text: str) -> list[str] | None:
        """The arguments that make `text` of this template, or None when it cannot."""
        parts = self.parts
        first, last = parts[0], parts[-1]
        if len(parts) == 1:
            return [] if text == first else None
        if not text.startswith(first) or not text.endswith(last):
            return None
        end = len(text) - len(last)
        if end < len(first):
            return None
        pos = len(first)
        arguments = []
        for literal in parts[1:-1]:
            at = text.find(literal, pos, end)
            if at < 0:
                return None
            arguments.append(text[pos:at])
            pos = at + len(literal)
        arguments.append(text[pos:end])
        return arguments

    def made(self, arguments: list[str], kept: Callable[[str], bool]) -> str:
        out = [self.parts[0]]
        for argument, literal in zip(arguments, self.parts[1:], strict=True):
            out.append(argument if kept(argument) else REDACTED)
            out.append(literal)
        return "".join(out)


def template(text: str) -> Template:
    """A message text cut at its conversions (%% is a literal percent sign)."""
    literal: list[str] = []
    current = ""
    pos = 0
    for conversion in _CONVERSION.finditer(text):
        current += text[pos : conversion.start()]
        pos = conversion.end()
        if conversion.group() == "%%":
            current += "%"
        else:
            literal.append(current)
            current = ""
    literal.append(current + text[pos:])
    return Template(tuple(literal), sum(len(p) for p in literal))


class Catalogue:
    """The server's message templates, by the first characters of their text, each list
    by weight, heaviest first."""

    _KEY = 3

    def __init__(self, texts: tuple[str, ...]) -> None:
        by_start: dict[str, list[Template]] = defaultdict(list)
        self._open: list[Template] = []  # opening with an argument or a short literal
        for text in texts:
            t = template(text)
            if len(t.parts[0]) >= self._KEY:
                by_start[t.parts[0][: self._KEY]].append(t)
            else:
                self._open.append(t)
        self._open.sort(key=_heaviest)
        self._merged: dict[str, tuple[Template, ...]] = {}
        # texts long enough to be no value's fragment
        self._constants = frozenset(
            t for t in texts if len(t) >= 8 and " " in t and not _CONVERSION.search(t)
        )
        self._by_start = {k: sorted(v, key=_heaviest) for k, v in by_start.items()}

    def rewrite(self, text: str) -> str | None:
        """`text` as the template with the most literal text that makes it, its
        arguments redacted (a built-in type's name kept); None when none makes it."""
        if len(text) > MAX_FIELD:
            return None
        key = text[: self._KEY]
        candidates = self._merged.get(key)
        if candidates is None:
            started = self._by_start.get(key, [])
            candidates = tuple(heapq.merge(started, self._open, key=_heaviest))
            if started:
                self._merged[key] = candidates
        for t in candidates:
            arguments = t.arguments(text)
            if arguments is not None:
                return t.made(arguments, self._kept)
        return None

    def _kept(self, argument: str) -> bool:
        """An argument shown as it is: a built-in type's name, a statement part's name
        (`GROUP BY`), or one of the server's own texts that takes no argument (`syntax
        error` in `%s at or near "%s"`)."""
        if argument in self._constants or argument in _CLAUSE_NAMES:
            return True
        found = _TYPE.fullmatch(argument)
        return found is not None and found["name"] in _TYPE_NAMES


def _heaviest(t: Template) -> int:
    return -t.weight


@cache
def catalogue() -> Catalogue:
    from proxies.postgres.server_message_texts import TEXTS

    return Catalogue(TEXTS)


def rewrite(text: str) -> str | None:
    """`text` made of a server message template, arguments redacted; None: no template
    makes it (withhold it)."""
    lines = catalogue().rewrite(text)
    if lines is not None or "\n" not in text:
        return lines
    # a context field is one line per frame (errcontext), each its own template
    out = []
    for line in text.split("\n"):
        made = catalogue().rewrite(line)
        if made is None:
            return None
        out.append(made)
    return "\n".join(out)


# --- generating server_message_texts.py --------------------------------------------------

_DOMAINS = ("postgres-15", "plpgsql-15")


def mo_texts(data: bytes) -> list[str]:
    """The message ids of a GNU .mo file (singular and plural, context dropped)."""
    order = "<" if struct.unpack("<I", data[:4])[0] == 0x950412DE else ">"
    _revision, count, originals = struct.unpack(order + "3I", data[4:16])
    out = []
    for i in range(count):
        length, offset = struct.unpack_from(order + "2I", data, originals + 8 * i)
        for text in data[offset : offset + length].decode("utf-8").split("\0"):
            text = text.split("\x04", 1)[-1]
            if text:
                out.append(text)
    return out


def generate(locale_dir: str) -> str:
    texts: set[str] = set()
    for domain in _DOMAINS:
        for path in glob.glob(f"{locale_dir}/*/LC_MESSAGES/{domain}.mo"):
            with open(path, "rb") as f:
                texts.update(mo_texts(f.read()))
    # a template with no word of its own (`%s: %s`, `"%s"`) would make any field
    texts = {t for t in texts if any(c.isalpha() for c in "".join(template(t).parts))}
    body = "".join(f"    {t!r},\n" for t in sorted(texts))
    return (
        '"""PostgreSQL 15\'s and PL/pgSQL\'s message texts (the msgids of their translation\n'
        'catalogues), generated by proxies/postgres/server_messages.py: do not edit."""\n\n'
        "# ruff: noqa: E501\n"
        "# fmt: off\n"
        f"TEXTS: tuple[str, ...] = (\n{body})\n"
    )


if __name__ == "__main__":
    sys.stdout.write(generate(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/locale"))
