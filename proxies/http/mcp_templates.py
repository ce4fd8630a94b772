"""The resource templates an MCP server lists, and which of them a resource URI fills.

Owns the connection's memory of `resources/templates/list` answers (MCP Server →
Resources → Resource Templates: each a `uriTemplate`, RFC 6570) and the question a
`resources/read` or `resources/subscribe` asks of it: the variable names of every
template its URI fills. `customers://{email}` read as `customers://ann@example.com` is
a lookup by email (its answer confirms who has it), though no word of the URI names the
field: the policy is shown `email` (rego/portcullis/mcp.rego).

- Per connection, not per session: a server's templates are its API, not an identity's,
  and a client may read a filled URI it knows without listing the templates first.
  Bounded (MAX_TEMPLATES, the least recently listed forgotten first).
- Matching is at least as broad as a server's (the `mcp` SDK's scan stops a simple
  `{var}` at `/`, `?`, `#`, `&`, `,`): a simple, label or path-parameter expression
  (`{var}`, `{.var}`, `{;var}`) stands for any run of characters but `/`; any other
  (`{+var}`, `{#var}`, `{/var}`, an explode `{var*}`) for any run at all. Anchored at
  both ends, decided by a bit-parallel NFA: one pass over the URI, no backtracking; past
  SCAN_BUDGET characters a read, a template met at both ends is taken as filled.
- Query expressions (`{?a,b}`, `{&c}`) are matched, but their names are not reported: a
  server fills them from the URI's query by name (`?email=...`), which the policy reads
  in the URI itself.
- A read before any listing on the connection: the proxy asks the server for its
  templates once (McpExchange, under the reader's session and the connection's
  credential) before deciding it; when that fails, it is decided as the URI alone says.

No IO here.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import unquote

from portcullis.mcp import MAX_TEMPLATE_VARIABLES, TEMPLATE_VARIABLE

MAX_TEMPLATES = 1024
MAX_TEMPLATE_CHARS = 8192
# the characters one read's URI is scanned for, over all templates (~0.35 us each): past
# them, a template whose literal ends the URI meets is taken as filled, unscanned (many
# templates of one prefix and a long URI cost the event loop no more than ~100 ms)
SCAN_BUDGET = 1 << 18

_EXPRESSION = re.compile(r"\{([^{}]*)\}")
_OPERATORS = "+#./;?&"
_WITHIN_SEGMENT = frozenset({"", ".", ";"})
_QUERY = frozenset({"?", "&"})


@dataclass(frozen=True)
class Template:
    """One listed template as matched: its literal prefix and suffix (a cheap first
    test), the NFA's masks, and the variable names it reports."""

    prefix: str
    suffix: str
    size: int  # tokens: the accepting state is bit `size`
    literals: dict[str, int]  # char -> the states it advances
    anywhere: int  # states of an expression taking any character
    in_segment: int  # states of an expression taking any but `/`
    variables: tuple[str, ...]

    def meets_ends(self, uri: str) -> bool:
        """Whether `uri` opens with the template's literal prefix and ends with its suffix."""
        return (
            uri.startswith(self.prefix)
            and uri.endswith(self.suffix)
            and len(uri) >= len(self.prefix) + len(self.suffix)
        )

    def filled_by(self, uri: str) -> bool:
        """Whether `uri` is this template with each expression replaced by a run of the
        characters it stands for (see the module's docstring)."""
        if not self.meets_ends(uri):
            return False
        wild = self.anywhere | self.in_segment
        states = _closure(1, wild)
        for ch in uri:
            taken = (states & self.literals.get(ch, 0)) << 1
            stays = states & (self.anywhere if ch == "/" else wild)
            states = _closure(taken | stays, wild)
            if not states:
                return False
        return bool(states >> self.size & 1)


def _closure(states: int, wild: int) -> int:
    """The states reached by skipping expressions (each may stand for nothing)."""
    while True:
        more = states | ((states & wild) << 1)
        if more == states:
            return states
        states = more


def compile_template(text: str) -> Template | None:
    """A `uriTemplate` as matched, or None when it is not one (an unbalanced brace, a
    variable name RFC 6570 does not allow, too long)."""
    if len(text) > MAX_TEMPLATE_CHARS:
        return None
    literals: dict[str, int] = {}
    anywhere = in_segment = 0
    names: list[str] = []
    position = 0
    at = 0
    for found in _EXPRESSION.finditer(text):
        if not _add_literal(text[at : found.start()], literals, position):
            return None
        position += found.start() - at
        body = found.group(1)
        operator = body[:1] if body[:1] in _OPERATORS else ""
        specs = body[len(operator) :].split(",")
        exploded = False
        for spec in specs:
            name = unquote(re.sub(r"(:[0-9]{1,4}|\*)$", "", spec))
            exploded = exploded or spec.endswith("*")
            if not TEMPLATE_VARIABLE.fullmatch(name):
                return None
            if operator not in _QUERY and name not in names:
                names.append(name)
        if operator in _WITHIN_SEGMENT and not exploded:
            in_segment |= 1 << position
        else:
            anywhere |= 1 << position
        position += 1
        at = found.end()
    if not _add_literal(text[at:], literals, position):
        return None
    position += len(text) - at
    first = _EXPRESSION.search(text)
    if first is None or len(names) > MAX_TEMPLATE_VARIABLES:
        return None  # (a template without an expression is a resource: nothing to fill)
    last_end = max(m.end() for m in _EXPRESSION.finditer(text))
    return Template(
        prefix=text[: first.start()],
        suffix=text[last_end:],
        size=position,
        literals=literals,
        anywhere=anywhere,
        in_segment=in_segment,
        variables=tuple(names),
    )


def _add_literal(part: str, literals: dict[str, int], position: int) -> bool:
    if "{" in part or "}" in part:
        return False
    for offset, ch in enumerate(part):
        literals[ch] = literals.get(ch, 0) | 1 << (position + offset)
    return True


class ResourceTemplates:
    """A connection's listed templates (MAX_TEMPLATES, least recently listed dropped)."""

    def __init__(self, limit: int = MAX_TEMPLATES) -> None:
        self.limit = limit
        self._known: OrderedDict[str, Template] = OrderedDict()
        # a listing came (a client's, or the proxy's own ask before a first read)
        self.heard = False

    def heard_listing(self, texts: list[str]) -> None:
        """A `resources/templates/list` answer's templates (one page of them)."""
        self.heard = True
        for text in texts:
            self.learn(text)

    def __len__(self) -> int:
        return len(self._known)

    def learn(self, text: str) -> None:
        """Remember a `uriTemplate` a server listed (one it is not read is skipped)."""
        if text in self._known:
            self._known.move_to_end(text)
            return
        template = compile_template(text)
        if template is None:
            return
        self._known[text] = template
        while len(self._known) > self.limit:
            self._known.popitem(last=False)

    def variables(self, uri: str) -> list[str]:
        """The variable names, sorted, of every remembered template `uri` fills."""
        names: set[str] = set()
        budget = SCAN_BUDGET
        for template in self._known.values():
            if names.issuperset(template.variables) or not template.meets_ends(uri):
                continue
            budget -= len(uri)
            if budget < 0 or template.filled_by(uri):
                names.update(template.variables)
        return sorted(names)
