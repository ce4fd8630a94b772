"""What an approver is shown of an approval request, and what the approval binds to.

Owns the approver's view of a command: every statement and every bound parameter value
masked as the policy masks them — a value assigned to or compared with a column a field
rule names (`SET card_number = $1`, `WHERE email = '...'`, `INSERT (.., ssn) VALUES
(.., $3)`) is masked by that rule, and every value, and every constant and comment of a
statement text, is run through the value detectors (never its code: a minus sign between
numbers is no SSN separator, a table name no API key) — and the keyed digest of the
exact values an approval binds to. Which column a value meets is read from the server's
own grammar (pglast): a value whose column cannot be named (an INSERT without a column
list) gets the strictest field rule, and a text the parser rejects has every parameter
masked by it. A command that is not SQL gets the field rules too where it names its
values: an HTTP request's query and JSON or form body, an MCP call's arguments (a body
of other text naming a masked field is withheld); and the policy's reasons, which quote
the command, are masked as text. Masking too much is the safe mistake.

The view is made once, when the request is created, from the verdict that asked for the
approval, and stored with it in place of the raw values: every copy of a request —
`portcullis approvals`, the HTTP API, the webhook, the audit store and whatever forwards
it (syslog, SIEM) — then holds the masked values only, and no renderer can forget to
mask. The exact statement text stays in the request (decision records hold it anyway, and
reuse compares it); views show the masked text. The exact values survive only as an
HMAC-SHA256 under a key of the PDP (`binding_digest`), so an approval still binds to them
while nobody reading the store can test guesses of a card number or an SSN against it. A
value the proxy could not send whole (cut, binary: portcullis.parameters) arrives with its
exact size and SHA-256, which the binding covers and the view leaves out (it shows the
value's start and that it was cut).

Every detector runs in approver views whatever the verdict says: the policy's masks are
computed for the requester, and an approver is someone else. A `hash` field rule shows as
`redact` here (an approver needs no joinable hash, and the PDP holds no masking key).

No IO here.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote

from pglast.parser import parse_sql_json, scan

from pdp.plumbing.rendering import statements
from portcullis.masking import DETECTORS, REDACTED, Masker, MaskingError
from portcullis.parameters import shown_parameter
from portcullis.verdict import MaskRule

UNNAMED = "*"  # a value whose column cannot be named: the strictest field rule masks it
_CONSTANT_TOKENS = {"SCONST", "ICONST", "FCONST", "BCONST", "XCONST", "USCONST"}


@dataclass(frozen=True)
class ApproverView:
    """A command as approvers see it."""

    command: str
    statements: list[dict[str, Any]]  # {"text": masked, "classification": [...]}
    parameters: list[str]
    justification: str
    # the policy's reasons, masked as text: they quote the command (an HTTP path, an SSH
    # line: '"sudo" needs approval ("sudo useradd -c 4111111111111111 bob")')
    reasons: list[str] = field(default_factory=list)


def approver_masker(rules: Sequence[MaskRule]) -> Masker:
    """The verdict's rules (hash shown as redact) plus every detector."""
    shown = [
        MaskRule(r.field, r.detector, "redact" if r.strategy == "hash" else r.strategy, r.derived)
        for r in rules
        if not r.derived
    ]
    floor = [MaskRule(detector=name, strategy="partial") for name in DETECTORS]
    try:
        return Masker([*shown, *floor], b"")
    except MaskingError:
        # rules we cannot apply: every value is withheld (_field_rule), detectors run
        return Masker([*floor, MaskRule(field=UNNAMED, strategy="redact")], b"")


def binding_digest(key: bytes, parameters: Sequence[str]) -> str:
    """HMAC-SHA256 of the exact values, in order: what an approval binds to (for a value
    sent cut or in binary, its entry with the exact value's size and SHA-256)."""
    message = json.dumps([_canonical(p) for p in parameters], ensure_ascii=False).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _canonical(entry: str) -> str:
    """An entry object's JSON in one spelling, whatever order its keys came in (a text
    entry never starts with "{": portcullis.parameters)."""
    if not entry.startswith("{"):
        return entry
    try:
        return json.dumps(json.loads(entry), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return entry


def approver_view(
    kind: str,
    command: str,
    parameters: Sequence[str],
    justification: str,
    masker: Masker,
    reasons: Sequence[str] = (),
) -> ApproverView:
    """The masked view of a command, its statements and values (each value masked, then
    followed by what the proxy said of it: cut, binary), and of the reasons it needs an
    approval."""
    view = _command_view(kind, command, parameters, justification, masker)
    return ApproverView(
        view.command,
        view.statements,
        view.parameters,
        view.justification,
        shown_reasons(reasons, masker),
    )


def shown_reasons(reasons: Sequence[str], masker: Masker) -> list[str]:
    """The policy's reasons as approvers see them: every detector run over each (a
    reason quotes what the command holds; no column is known in a reason's text)."""
    return [masker.mask_text(reason)[0] for reason in reasons]


def _command_view(
    kind: str, command: str, parameters: Sequence[str], justification: str, masker: Masker
) -> ApproverView:
    shown_justification = masker.mask_text(justification)[0]
    texts, notes = zip(*map(shown_parameter, parameters), strict=True) if parameters else ((), ())
    if not kind.startswith("postgres."):
        shown = _shown_text(kind, command, masker)
        values = [masker.mask_text(v)[0] for v in texts]
        return ApproverView(shown, [], _noted(values, notes), shown_justification)
    found = _values(command)
    if found is None:  # not parseable: no column is known, every value is withheld
        everything = masker.strictest_field_rule()
        values = [
            masker.mask_field(everything, v) if everything else masker.mask_text(v)[0]
            for v in texts
        ]
        return ApproverView(
            masker.mask_text(command)[0],
            [{**s, "text": masker.mask_text(s["text"])[0]} for s in statements(command)],
            _noted(values, notes),
            shown_justification,
        )
    return ApproverView(
        _masked_text(command, 0, len(command), found, masker),
        _masked_statements(command, found, masker),
        _noted(_masked_parameters(texts, found, masker), notes),
        shown_justification,
    )


# ---------------------------------------------------------------- HTTP and MCP commands

# how the HTTP proxy writes a body into the command text (proxies.http.messages.command_text)
_HTTP_BODY = re.compile(r"\nbody: \d+ bytes sha256:[0-9a-f]{64}(?:\n\n|$)")
_WORD = re.compile(r"[^\W_]+(?:[_-][^\W_]+)*")
_WORDS_READ = 4096


def _shown_text(kind: str, command: str, masker: Masker) -> str:
    """A command that is not SQL as approvers see it: the values under names a field rule
    masks masked whole (a JSON body's `"password": ...`, a form's or a query's
    `password=...`, an MCP call's arguments), as the requester's answers are, then every
    detector over the rest. Detectors alone showed a password or a salary a reader sent."""
    if kind == "mcp.call":
        doc = _json_document(command)
        if doc is not None:
            return masker.mask_text(_json_text(masker.mask_json(doc)[0]))[0]
    elif kind.startswith("http."):
        found = _HTTP_BODY.search(command)
        head, marker, body = (
            (command[: found.start()], found.group(), command[found.end() :])
            if found
            else (command, "", "")
        )
        lines = head.split("\n")
        lines[0] = _shown_request_line(lines[0], masker)
        shown_body = _shown_body(body, masker) if body else ""
        return masker.mask_text("\n".join(lines) + marker + shown_body)[0]
    return masker.mask_text(command)[0]


def _json_document(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _json_text(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(", ", ": "))


def _shown_request_line(line: str, masker: Masker) -> str:
    """`METHOD target VERSION` with its query's values masked by the field rules."""
    method, _, rest = line.partition(" ")
    target, space, version = rest.rpartition(" ") if rest.count(" ") else (rest, "", "")
    path, question, query = target.partition("?")
    if not question or not query:
        return line
    return f"{method} {path}?{_shown_form(query, masker)}{space}{version}"


def _shown_form(text: str, masker: Masker) -> str:
    """name=value&... with each value under a masked name masked whole (percent-encoded
    names read as the upstream reads them)."""
    shown = []
    for name, value in parse_qsl(text, keep_blank_values=True):
        rule = masker.rule_for_key((name,), name)
        kept = masker.mask_field(rule, value) if rule is not None and value else value
        shown.append(f"{quote(name, safe='')}={quote(kept, safe='[]* ')}")
    return "&".join(shown)


def _shown_body(body: str, masker: Masker) -> str:
    """A body as approvers see it: JSON or a form with masked names' values masked; any
    other text naming a masked field withheld (its value cannot be told from the rest)."""
    doc = _json_document(body)
    if isinstance(doc, dict | list):
        return _json_text(masker.mask_json(doc)[0])
    if "=" in body and not any(c.isspace() for c in body.strip()):
        return _shown_form(body.strip(), masker)
    for word in dict.fromkeys(_WORD.findall(body[: _WORDS_READ * 16])):
        if masker.rule_for_key((word,), word) is not None:
            return (
                f"[body withheld: it names the masked field {word!r} and is neither JSON"
                " nor a form, so its value cannot be told apart]"
            )
    return body


def _noted(values: Sequence[str], notes: Sequence[str]) -> list[str]:
    return [value + note for value, note in zip(values, notes, strict=True)]


# ---------------------------------------------------------------- which column a value meets


@dataclass
class _Values:
    """Parameters by number, and literals by character offset, with the columns they meet."""

    parameters: dict[int, set[str]] = field(default_factory=dict)
    literals: dict[int, tuple[str, set[str]]] = field(default_factory=dict)
    statements: list[tuple[int, int]] = field(default_factory=list)  # character spans


def _values(command: str) -> _Values | None:
    try:
        tree = json.loads(parse_sql_json(command))
    except Exception:
        return None
    encoded = command.encode()

    def chars(byte_offset: int) -> int:
        return len(encoded[:byte_offset].decode("utf-8", "replace"))

    found = _Values()
    for raw in tree.get("stmts", []):
        start = raw.get("stmt_location", 0)
        end = start + raw["stmt_len"] if raw.get("stmt_len") else len(encoded)
        found.statements.append((chars(start), chars(end)))
        _walk(raw.get("stmt"), found, chars)
    return found


def _walk(node: Any, found: _Values, chars: Any) -> None:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        for tag, fields in item.items():
            if isinstance(fields, dict):
                _meets(tag, fields, found, chars)
            stack.append(fields)


def _meets(tag: str, fields: dict[str, Any], found: _Values, chars: Any) -> None:
    """Record the columns the values under one node are assigned to or compared with."""
    if tag == "ResTarget" and fields.get("name") and "val" in fields:
        _assign(fields["val"], {fields["name"]}, found, chars)  # SET col = ..., AS col
    elif tag == "InsertStmt":
        names = [c["ResTarget"].get("name", UNNAMED) for c in fields.get("cols", [])]
        select = fields.get("selectStmt", {}).get("SelectStmt", {})
        _positional(names, select.get("valuesLists"), fields.get("selectStmt"), found, chars)
    elif tag == "MergeWhenClause" and "values" in fields:
        names = [t["ResTarget"].get("name", UNNAMED) for t in fields.get("targetList", [])]
        rows = [{"List": {"items": fields["values"]}}]
        _positional(names, rows, fields["values"], found, chars)
    elif tag == "A_Expr":
        sides = [fields.get("lexpr"), fields.get("rexpr")]
        columns = set(_columns(sides))
        if columns:
            _assign(sides, columns, found, chars)
    elif tag == "SubLink" and "testexpr" in fields:
        columns = set(_columns(fields["testexpr"]))
        if columns:
            _assign(fields.get("subselect"), columns, found, chars)


def _positional(names: list[str], rows: Any, whole: Any, found: _Values, chars: Any) -> None:
    if not names:
        _assign(whole, {UNNAMED}, found, chars)
        return
    if not rows:  # INSERT ... SELECT: every value may reach any named column
        _assign(whole, set(names), found, chars)
        return
    for row in rows:
        for index, item in enumerate(row.get("List", {}).get("items", [])):
            _assign(item, {names[index] if index < len(names) else UNNAMED}, found, chars)


def _assign(node: Any, columns: set[str], found: _Values, chars: Any) -> None:
    for tag, fields in _nodes(node):
        if tag == "ParamRef":
            found.parameters.setdefault(int(fields.get("number", 0)), set()).update(columns)
        elif tag == "A_Const" and not fields.get("isnull"):
            offset = chars(fields.get("location", 0))
            value, seen = found.literals.get(offset, (_constant(fields), set()))
            found.literals[offset] = (value, seen | columns)


def _columns(node: Any) -> Iterator[str]:
    for tag, fields in _nodes(node):
        if tag == "ColumnRef":
            names = [f["String"]["sval"] for f in fields.get("fields", []) if "String" in f]
            if names:
                yield names[-1]


def _nodes(node: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            for tag, fields in item.items():
                if isinstance(fields, dict):
                    yield tag, fields
                stack.append(fields)


def _constant(fields: dict[str, Any]) -> str:
    for key in ("sval", "ival", "fval", "bsval", "boolval"):
        if key in fields:
            inner = fields[key]
            value = inner.get(key, 0 if key == "ival" else "") if isinstance(inner, dict) else inner
            return str(value)
    return ""


# ---------------------------------------------------------------- masking what was found


def _field_rule(masker: Masker, columns: set[str]) -> MaskRule | None:
    withheld = masker.rule_for([UNNAMED])  # rules we could not apply: every value
    if withheld is not None:
        return withheld
    if UNNAMED in columns:
        return masker.strictest_field_rule()
    return masker.rule_for_any(sorted(columns))


def _masked_parameters(parameters: Sequence[str], found: _Values, masker: Masker) -> list[str]:
    out = []
    for number, value in enumerate(parameters, 1):
        rule = _field_rule(masker, found.parameters.get(number, set()))
        out.append(masker.mask_field(rule, value) if rule else masker.mask_text(value)[0])
    return out


def _literal_spans(command: str, found: _Values, masker: Masker) -> list[tuple[int, int, str]]:
    """(start, end, replacement) of each literal a field rule masks, in the command."""
    masked = {}
    for offset, (value, columns) in found.literals.items():
        rule = _field_rule(masker, columns)
        if rule is not None:
            masked[offset] = "'" + masker.mask_field(rule, value).replace("'", "''") + "'"
    if not masked:
        return []
    spans = []
    tokens = scan(command)
    for offset, replacement in masked.items():
        # the literal's token: the first constant at or after the node's location (a
        # negative number starts at its sign)
        for token in tokens:
            if token.start >= offset and token.name in _CONSTANT_TOKENS:
                spans.append((offset, token.end + 1, replacement))
                break
        else:
            spans.append((offset, len(command), "'" + REDACTED + "'"))
    return sorted(spans)


def _masked_text(command: str, start: int, end: int, found: _Values, masker: Masker) -> str:
    out, pos = [], start
    for a, b, replacement in _literal_spans(command, found, masker):
        if a < pos or b > end:
            continue
        out.append(_values_masked(command, pos, a, masker))
        out.append(replacement)
        pos = b
    out.append(_values_masked(command, pos, end, masker))
    return "".join(out)


@functools.lru_cache(maxsize=4)
def _tokens(command: str) -> tuple[Any, ...]:
    """The command's tokens, once per view (each span between masked literals asks)."""
    return tuple(scan(command))


def _values_masked(command: str, start: int, end: int, masker: Masker) -> str:
    """command[start:end] with the detectors run over what holds values — each constant,
    each comment and the space between tokens, one at a time — and never over the code
    around them. Run over the whole text they took code for a value: 'total > 123-45-6789'
    (three numbers and two minus signs) was shown as 'total > ***-**-6789', a table named
    like an API key as '****rstu', so what ran was not what the approver could read."""
    try:
        tokens = [t for t in _tokens(command) if start <= t.start < end]
    except Exception:  # (parsed already, so not expected): the whole text, as values
        return masker.mask_text(command[start:end])[0]
    out, pos = [], start
    for token in tokens:
        stop = min(token.end + 1, end)
        out.append(masker.mask_text(command[pos : token.start])[0])
        text = command[token.start : stop]
        code = token.name not in _CONSTANT_TOKENS and not token.name.endswith("COMMENT")
        out.append(text if code else masker.mask_text(text)[0])
        pos = stop
    out.append(masker.mask_text(command[pos:end])[0])
    return "".join(out)


def _masked_statements(command: str, found: _Values, masker: Masker) -> list[dict[str, Any]]:
    out = []
    for start, end in found.statements:
        exact = command[start:end].strip()
        classified = statements(exact)
        classification = classified[0]["classification"] if len(classified) == 1 else []
        lead = start + len(command[start:end]) - len(command[start:end].lstrip())
        shown = _masked_text(command, lead, lead + len(exact), found, masker)
        out.append({"text": shown, "classification": classification})
    return out


# Letters of these scripts are read as one: Japanese writes kanji, hiragana and katakana
# in one word, Korean hangul with hanja. Every other pair of scripts in one word is shown
# to approvers as mixed (`orders` with a Cyrillic o, U+043E, reads as `orders`).
_SCRIPT_FAMILIES = {"HIRAGANA": "CJK", "KATAKANA": "CJK", "HANGUL": "CJK", "IDEOGRAPHIC": "CJK"}
_WORD_CHAR = re.compile(r"\w", re.UNICODE)


@functools.lru_cache(maxsize=4096)
def script(char: str) -> str | None:
    """The script of a letter as its Unicode name begins (LATIN, CYRILLIC, GREEK, ...;
    FULLWIDTH, MATHEMATICAL and the like count as scripts of their own: each draws
    Latin lookalikes); None for what is no letter (digits, marks, punctuation)."""
    if not unicodedata.category(char).startswith("L"):
        return None
    name = unicodedata.name(char, "")
    first = name.split(" ", 1)[0] if name else "UNNAMED"
    return _SCRIPT_FAMILIES.get(first, first)


def mixed_script_words(text: str) -> list[tuple[int, int, list[str]]]:
    """Each word of `text` (letters, digits, marks, _) whose letters come from more
    than one script: (start, end, the scripts in order of appearance). A word written in
    one script, whichever it is, is none of them."""
    found: list[tuple[int, int, list[str]]] = []
    if text.isascii():
        return found  # Latin letters only
    start = None
    for at, char in enumerate(f"{text} "):
        if _WORD_CHAR.match(char) or unicodedata.category(char).startswith("M"):
            start = at if start is None else start
            continue
        if start is not None:
            scripts = list(dict.fromkeys(s for c in text[start:at] if (s := script(c))))
            if len(scripts) > 1:
                found.append((start, at, scripts))
            start = None
    return found


def mixed_scripts_note(text: str) -> str:
    """`[mixed scripts: WORD (CYRILLIC+LATIN)]` for a text holding words that mix
    scripts (the words as written), '' for one that holds none: what a terminal shows
    after the text."""
    words = mixed_script_words(text)
    if not words:
        return ""
    shown = ", ".join(f"{text[s:e]} ({'+'.join(scripts)})" for s, e, scripts in words[:5])
    more = f", {len(words) - 5} more" if len(words) > 5 else ""
    return f" [mixed scripts: {shown}{more}]"
