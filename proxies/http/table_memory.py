"""What a session remembers of the tables its answers named, and for which requests. No IO.

A later answer may hold rows with no names of their own: a next page, a statement's
result chunks (Databricks, Snowflake's partitions, Trino's `nextUri`), a cursor's fetch,
the rows of a table whose columns a schema call named (`/tables/customers/schema`, then
`/tables/customers/rows`), an MCP tool whose `outputSchema` names its columns. Those rows
are read under the columns an earlier answer of the session named — but only of a
request the later one follows, never of any table as wide (a memory by width alone read
`/orders`' `[7, "gold"]` under `/customers`' `["id", "phone"]`: the wrong columns masked).

A request follows a learnt one (`TableMemory.known`) when it
- went to the same place: the same path (another page by its query), the same MCP tool;
- went below it: `/statements/s1/result/chunks/1` below `/statements/s1`;
- went beside a schema call with the same parameters: `/tables/t/rows` beside
  `/tables/t/schema`, `/rows?table=t` beside `/schema?table=t` (the place's last segment
  is a schema's word, SCHEMA_WORDS);
- names a reference the learnt answer gave (a cursor, a statement's id, a next link: a
  string member of its objects, reached from its top through objects only, not a cell).
Bounded: MAX_TABLES entries, the oldest forgotten first; MAX_TOKENS references each.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

MAX_TABLES = 64  # tables a session's answers named, remembered
MAX_TOKENS = 32  # references an answer gave, remembered with its table
MAX_WORDS = 8 * 1024  # characters of a request read for references
# parameters that choose a page, not a table (dropped when requests are compared)
PAGING = frozenset(
    [
        "page",
        "offset",
        "limit",
        "cursor",
        "start",
        "size",
        "per_page",
        "page_size",
        "pagesize",
        "pagetoken",
        "page_token",
        "next",
        "after",
        "before",
        "skip",
        "top",
        "$skip",
        "$top",
        "$skiptoken",
        "continuation",
        "marker",
        "from",
        "count",
        "chunk",
        "partition",
        "scroll_id",
        "startkey",
        "start_key",
        "_",
        "rows",
        "max",
        "maxresults",
        "max_results",
        "first",
        "last",
    ]
)
# the last segment of a place that describes a table rather than holding its rows
SCHEMA_WORDS = frozenset(
    [
        "schema",
        "schemas",
        "_schema",
        "$metadata",
        "metadata",
        "meta",
        "columns",
        "fields",
        "describe",
        "header",
        "headers",
        "definition",
        "structure",
        "layout",
        "manifest",
    ]
)
# a reference an answer gives: a word of at least 4 characters holding a digit, or of 12
_REFERENCE = re.compile(r"[^\s\"'<>]{4,512}")


@dataclass(frozen=True)
class Asked:
    """A request as the memory tells it: where it went, its parameters apart from paging
    ones, and its words (target and body, or an MCP call's arguments) for references."""

    place: str
    params: tuple[tuple[str, str], ...] = ()
    words: str = ""


def http_asked(path: str, query: str, body: bytes = b"") -> Asked:
    """An HTTP request's Asked: its path, query and the start of its body."""
    params = []
    for pair in query.split("&") if query else []:
        name, _, value = pair.partition("=")
        key = unquote(name.replace("+", " ")).strip().lower()
        if key and key not in PAGING:
            params.append((key, unquote(value.replace("+", " "))))
    text = body[:MAX_WORDS].decode("utf-8", "replace")
    words = unquote(path) + "?" + unquote(query) + "\n" + text
    return Asked(path.rstrip("/") or "/", tuple(sorted(params)), words[: 2 * MAX_WORDS])


def mcp_asked(tool: str, arguments_text: str) -> Asked:
    """An MCP tools/call's Asked: the tool (its place), its arguments' text (references)."""
    return Asked("tool:" + tool, (), arguments_text[:MAX_WORDS])


@dataclass
class _Learnt:
    asked: Asked
    names: list[str]
    tokens: frozenset[str] = field(default_factory=frozenset)


def references(doc: Any) -> frozenset[str]:
    """The references a document gives: its objects' string members reached from its top
    through objects only (a cursor, an id, a link; cells of rows are in lists), those of
    4+ characters holding a digit or 12+, up to MAX_TOKENS."""
    out: set[str] = set()
    stack = [doc]
    while stack and len(out) < MAX_TOKENS:
        item = stack.pop()
        if not isinstance(item, dict):
            continue
        for value in item.values():
            if isinstance(value, dict):
                stack.append(value)
            elif (
                isinstance(value, str)
                and _REFERENCE.fullmatch(value)
                and (len(value) >= 12 or any(c.isdigit() for c in value))
            ):
                out.add(value)
    return frozenset(sorted(out)[:MAX_TOKENS])


def _follows(later: Asked, learnt: _Learnt) -> bool:
    first = learnt.asked
    if later.place == first.place:
        return True
    if first.place.startswith("/") and later.place.startswith("/"):
        if later.place.startswith(first.place.rstrip("/") + "/"):
            return True  # (below it: a statement's chunks)
        parent, _, last = first.place.rpartition("/")
        if (
            unquote(last).strip().lower() in SCHEMA_WORDS
            and later.place.rpartition("/")[0] == parent
            and later.params == first.params
        ):
            return True  # (beside its schema, for the same table)
    for token in learnt.tokens:
        if token in later.words:
            return True
        if "/" in token and later.place.startswith("/"):
            linked = urlsplit(token).path.rstrip("/")
            if linked and linked == later.place:
                return True  # (a next link, absolute: `http://host/v1/statement/...`)
    return False


_Key = tuple[str, tuple[tuple[str, str], ...], int]  # (place, params, width)


class TableMemory:
    """One session's memory of the tables its answers named (those naming a masked field
    are what it is asked about), by the request each answered."""

    def __init__(self, limit: int = MAX_TABLES) -> None:
        self.limit = limit
        self._learnt: OrderedDict[_Key, _Learnt] = OrderedDict()
        # (a long answer is masked in a thread, another of the session on the loop meanwhile)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._learnt)

    def learn(self, asked: Asked, names: list[str], tokens: frozenset[str] = frozenset()) -> None:
        key = (asked.place, asked.params, len(names))
        with self._lock:
            old = self._learnt.pop(key, None)
            if old is not None:
                tokens = frozenset(sorted(tokens | old.tokens)[:MAX_TOKENS])
            self._learnt[key] = _Learnt(asked, list(names), tokens)
            while len(self._learnt) > self.limit:
                self._learnt.popitem(last=False)

    def known(self, asked: Asked) -> dict[int, list[str]]:
        """The columns, by their number, of the tables learnt for requests `asked` follows
        (the latest of each width)."""
        out: dict[int, list[str]] = {}
        with self._lock:
            learnt_now = list(self._learnt.items())
        for (_, _, width), learnt in learnt_now:
            if _follows(asked, learnt):
                out[width] = learnt.names
        return out

    def view(self, asked: Asked | None) -> TableView | None:
        return None if asked is None else TableView(self, asked)


class TableView:
    """The memory as one answer reads it: the columns the request follows (`known`), and
    `learn` of the tables this answer names, for the requests that follow it."""

    def __init__(self, memory: TableMemory, asked: Asked) -> None:
        self.memory = memory
        self.asked = asked
        self._known: dict[int, list[str]] | None = None

    @property
    def known(self) -> dict[int, list[str]]:
        """(read from the memory when first asked: most answers name their columns)"""
        if self._known is None:
            self._known = self.memory.known(self.asked)
        return self._known

    def learn(self, names: list[str], doc: Any) -> None:
        self.memory.learn(self.asked, names, references(doc))


# a response header naming its body's columns (`X-Columns`, `X-Column-Names`, `X-Fields`,
# `X-CSV-Header`, `X-Result-Columns`): its name's words, one of them naming columns
_HEADER_WORDS = frozenset(
    [
        "x",
        "columns",
        "column",
        "names",
        "name",
        "fields",
        "field",
        "csv",
        "header",
        "result",
        "results",
    ]
)
_NAMING = frozenset(["columns", "column", "fields", "header"])
_HEADER_NAME = re.compile(r"\s*([^\s:;|\t]+)")


def header_columns(headers: list[tuple[str, str]]) -> list[str] | None:
    """The column names a response's header fields give its body's rows (a JSON list of
    names or one delimited string, each name maybe followed by its type), or None."""
    for name, value in headers:
        words = re.split(r"[-_]", name.strip().lower())
        if not (set(words) <= _HEADER_WORDS and set(words) & _NAMING):
            continue
        try:
            listed = json.loads(value)
        except ValueError:
            listed = None
        if isinstance(listed, list) and listed:
            names = [
                n if isinstance(n, str) else n.get("name") if isinstance(n, dict) else None
                for n in listed
            ]
        else:
            delimiter = next((d for d in (",", "\t", ";", "|") if d in value), ",")
            names = [
                m[1].strip("\"'`[]") if (m := _HEADER_NAME.match(part)) else ""
                for part in value.split(delimiter)
            ]
        if len(names) >= 2 and all(isinstance(n, str) and n for n in names):
            return [str(n) for n in names]
    return None


MAX_SCHEMA_NODES = 4096  # nodes of an output schema walked for the columns it names


def schema_columns(schema: Any) -> list[list[str]]:
    """The column lists a JSON Schema (an MCP tool's `outputSchema`) names for arrays of
    rows: a tuple's items (`prefixItems`, or `items` as a list in drafts before 2020-12)
    each titled or described by its column's name, and lists of names it gives as a
    value (`const`, `default`, `enum` of one, `examples`)."""
    out: list[list[str]] = []
    stack = [schema]
    seen = 0
    while stack and seen < MAX_SCHEMA_NODES:
        node = stack.pop()
        seen += 1
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        for key in ("prefixItems", "items"):
            items = node.get(key)
            if isinstance(items, list) and len(items) >= 2:
                names = [_titled(item) for item in items]
                if all(names):
                    out.append([n for n in names if n])
        for key in ("const", "default", "enum", "examples"):
            value = node.get(key)
            candidates = [value] if key in ("const", "default") else value
            if key == "enum" and isinstance(value, list) and len(value) != 1:
                candidates = []
            for listed in candidates if isinstance(candidates, list) else []:
                if (
                    isinstance(listed, list)
                    and len(listed) >= 2
                    and all(isinstance(n, str) and n for n in listed)
                ):
                    out.append(list(listed))
        stack.extend(v for v in node.values() if isinstance(v, dict | list))
    return out


def _titled(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    for key in ("title", "name", "description", "$comment"):
        value = item.get(key)
        if isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return None
