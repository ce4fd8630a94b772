"""The parts of the policy input a policy can read, and an input cut down to them.

Owns reading a bundle's Rego sources for every reference to `input` and pruning an input
document to the paths found. The evaluator parses every byte of the input it is given
(the binding's JSON decoding, OPA's round trip and its conversion to AST values: about
450 evaluator instructions a byte, issue 27), while the shipped policy never reads, for
example, the session's id, start time and client address, the token's id and issuer or
`input.now`, which every decision sends.

The reading is deliberately coarse, so that it can only keep too much, never too little:
every `input` token outside strings and comments counts. `input.a.b` (a dotted chain of
names) keeps `a.b` whole, with everything under it; a chain followed by `[` keeps the
part before the bracket whole; `input` alone, indexed (`input[x]`) or spelt any other way
(`import input`, `x := input`, `walk(input)`, `with input as`) keeps the whole input.
A key `input` after a dot (`x.input`) is no reference to the root and is passed over.
Pruning keeps, of an object on a kept path, only the keys some path names, and anything
that is not an object whole; a key no path names is left out, which is what the policy
would read of it anyway: nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

# A node of kept paths: None keeps everything under it; a dict maps each key some path
# goes through to its own node.
Kept = dict[str, "Kept | None"] | None

_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_NAME = _NAME_START | frozenset("0123456789")


def _code(source: str) -> str:
    """The source with its comments and string literals blanked (each replaced by spaces,
    quotes kept), so that only code is searched for `input`."""
    out: list[str] = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if c == "#":
            end = source.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and source[j] != '"':
                j += 2 if source[j] == "\\" else 1
            out.append('"' + " " * (min(j, n) - i - 1) + '"')
            i = j + 1
        elif c == "`":
            end = source.find("`", i + 1)
            end = n if end < 0 else end
            out.append("`" + " " * (end - i - 1) + "`")
            i = end + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def references(source: str) -> list[tuple[str, ...]] | None:
    """The input paths one Rego module reads (each kept whole), or None when it may read
    the whole input."""
    code = _code(source)
    found: list[tuple[str, ...]] = []
    start = 0
    while True:
        i = code.find("input", start)
        if i < 0:
            return found
        start = i + 5
        before = code[i - 1] if i > 0 else " "
        after = code[i + 5] if i + 5 < len(code) else " "
        if before in _NAME or after in _NAME:
            continue  # part of another name (inputs, my_input)
        if before == ".":
            continue  # a key named input under something else (x.input)
        path: list[str] = []
        j = i + 5
        while j < len(code) and code[j] == ".":
            k = j + 1
            if k >= len(code) or code[k] not in _NAME_START:
                break
            while k < len(code) and code[k] in _NAME:
                k += 1
            path.append(code[j + 1 : k])
            j = k
        keys = _got(source, code, i, j)
        if keys is not None:
            path.extend(keys)
        elif not path:
            return None  # input alone or indexed: the whole of it
        found.append(tuple(path))
        start = j


_GET = "object.get("
_KEY = re.compile(r'\s*"([A-Za-z0-9_]+)"\s*')


def _got(source: str, code: str, i: int, j: int) -> list[str] | None:
    """The keys below the reference code[i:j] when it is the object of
    `object.get(REF, ["k", ...], default)` or `object.get(REF, "k", default)` with keys
    written as plain literal names (what object.get reads of it), else None."""
    before = code[:i].rstrip()
    if not before.endswith(_GET):
        return None
    head = before[: -len(_GET)]
    if head and (head[-1] in _NAME or head[-1] == "."):
        return None  # some other function ending in object.get
    rest = code[j:]
    stripped = rest.lstrip()
    if not stripped.startswith(","):
        return None
    at = j + len(rest) - len(stripped) + 1  # just past the comma
    listed = code[at:].lstrip()
    at += len(code[at:]) - len(listed)
    if listed.startswith("["):
        close = code.find("]", at)
        if close < 0:
            return None
        keys = []
        for part in source[at + 1 : close].split(","):
            match = _KEY.fullmatch(part)
            if match is None:
                return None
            keys.append(match.group(1))
        return keys or None
    end = code.find(",", at)
    match = _KEY.fullmatch(source[at:end]) if end >= 0 else None
    return [match.group(1)] if match else None


def kept_paths(modules: Iterable[str]) -> Kept:
    """The paths of the input the modules read, as a tree (see Kept); None: all of it."""
    root: dict[str, Any] = {}
    for source in modules:
        paths = references(source)
        if paths is None:
            return None
        for path in paths:
            node = root
            for key in path[:-1]:
                child = node.get(key, {})
                if child is None:
                    break  # kept whole already
                node = node.setdefault(key, child)
            else:
                node[path[-1]] = None
    return root


def merged(a: Kept, b: Kept) -> Kept:
    """Paths either tree keeps (what two policies in force at once may read)."""
    if a is None or b is None:
        return None
    out: dict[str, Kept] = dict(a)
    for key, node in b.items():
        out[key] = merged(out[key], node) if key in out else node
    return out


def pruned(value: Any, kept: Kept) -> Any:
    """value with only the keys `kept` names, at every level it names keys; the value
    itself (not a copy) where everything is kept or it is not an object."""
    if kept is None or type(value) is not dict:
        return value
    out = {}
    for key, item in value.items():  # spelt out: every evaluation of the PDP runs it
        if key in kept:
            below = kept[key]
            out[key] = item if below is None or type(item) is not dict else pruned(item, below)
    return out


def prune_spec(modules: Mapping[str, str]) -> Kept:
    """kept_paths of a bundle's modules (path -> source)."""
    return kept_paths(modules.values())
