"""Whether a statement's text may run code the database made, which may write the catalogue.

Owns CodeNames: from the catalogue facts (proxies.postgres.catalog_watch.Facts), the names
of what runs code the database made when a statement names it: its functions and the
built-ins it changed in place (called by name), its views and the relations whose writes
run code (triggers, rules, defaults: read or written by name), its operators, types and
row functions. A read of a privileged session calling `public.mk()`, whose body runs
CREATE OR REPLACE FUNCTION pg_catalog.lower(...) or UPDATE pg_proc, has a SELECT's command
tag: the tracker (proxies/postgres/tracker.py) counts such a statement as one that may
have written the catalogue, as it counts DDL, so every session's next statement waits for
the catalogue read again rather than reusing a verdict until the watch's next poll.

Over-approximate by design: a name found anywhere in the text counts (a column or a
string of that name too), and so do a Unicode-escaped identifier (U&"..."), which may spell
any name, an SQL EXECUTE, whose statement is not in its text, and a built-in running a
query given as text (query_to_xml, ts_stat), which may be spelt any way. A cast the database made
runs with nothing naming it: while there is one, every statement counts. No IO here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# a name as it may stand unquoted (or quoted, without a quote in it) in a statement's
# lower-cased text: ASCII only (a third of the cost of \w's Unicode classes per statement);
# a name with any other character is looked for anywhere (CodeNames.others)
_WORD = re.compile(r"[a-z_][a-z0-9_$]*")
# what may hide any name: a Unicode-escaped identifier, a prepared statement run by name,
# the built-ins that run a query given as text (query_to_xml(convert_from('\x...', ...)),
# cursor_to_xml, table_to_xml..., ts_stat, ts_rewrite)
_HIDES = ("u&", "execute", "_to_xml", "ts_stat", "ts_rewrite")


@dataclass(frozen=True, slots=True)
class CodeNames:
    """The names whose mention in a statement may run code the database made."""

    words: frozenset[str]  # lower case, each a whole word of the text
    others: tuple[str, ...]  # lower case, looked for anywhere (operators, odd names)
    everything: bool = False  # a cast the database made: any statement may run it

    def named(self, text: str) -> bool:
        """Whether text may name (or hide) any of them."""
        if self.everything:
            return True
        low = text.lower()
        if any(hider in low for hider in _HIDES):
            return True
        if any(other in low for other in self.others):
            return True
        return not self.words.isdisjoint(_WORD.findall(low))


def _bare(name: str) -> str:
    """A fact's name without its schema or note: `public.f` f, `pg_catalog."age (changed
    after initdb)"` age."""
    name = name.strip()
    if name.endswith(")") and " (" in name:
        name = name[: name.index(" (")]
    return name.rpartition(".")[2].strip('"').lower()


def code_names(shadowed: Iterable[str], user_code: dict[str, Any]) -> CodeNames | None:
    """The names of the database's code in these facts; None when there is none."""
    if user_code.get("user_casts"):
        return CodeNames(frozenset(), (), everything=True)
    names: set[str] = {_bare(n) for n in shadowed}
    for key in ("user_functions", "row_functions", "user_types"):
        names.update(_bare(str(n)) for n in user_code.get(key) or ())
    for key in ("view_functions", "write_code"):
        names.update(_bare(str(n)) for n in user_code.get(key) or {})
    operators = {str(o) for o in user_code.get("user_operators") or ()}
    names.discard("")
    if not names and not operators:
        return None
    words = frozenset(n for n in names if _WORD.fullmatch(n))
    others = tuple(sorted({*(n.replace('"', '""') for n in names - words), *operators}))
    return CodeNames(words, others)
