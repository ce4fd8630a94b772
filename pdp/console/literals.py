"""What a reader outside `pii-readers` is shown of a recorded SQL statement: its literals.

Owns `shown_sql`. DESIGN.md: sensitive values are for `pii-readers` only, and a masked
result's statement often names the very value it masked (`WHERE ssn = '123-45-6789'`,
`WHERE email = 'ann@example.com'`): an auditor outside that group reading the statement
read the value the result kept from them. So, for such a reader:

- a statement values of whose result were masked (a masking count recorded) shows
  every literal (string, escape, Unicode, bit and numeric constants, as PostgreSQL's
  own lexer reads them: pglast.parser.scan) as MASKED, keeping the statement's shape;
- any other statement shows each literal a value detector (email, card, SSN, token,
  phone: portcullis.masking) finds a value in as MASKED;
- a statement that does not lex (an unterminated quote) is not shown at all when it
  would have been masked whole, else with the detectors' spans masked;
- an error the server answered a SQL statement with (`invalid input syntax for type
  integer: "123-45-6789"` quotes the value) shows the detectors' spans masked.

Members of `pii-readers` see statements as recorded. Nothing here decides; no IO.
"""

from __future__ import annotations

from collections.abc import Iterable

from pglast import parser

from portcullis.masking import DETECTORS

PII_GROUP = "pii-readers"
MASKED = "[masked]"
UNLEXED = "[statement not shown: it does not read as SQL, and its result was masked]"
# pglast's token names of constants: '...', E'...', $$...$$ (SCONST), U&'...' (USCONST),
# B'...' (BCONST), X'...' (XCONST), numbers (ICONST, FCONST)
_CONSTANTS = frozenset({"SCONST", "USCONST", "BCONST", "XCONST", "ICONST", "FCONST"})
SQL_KINDS = ("postgres.query", "postgres.function_call")


def sees_values(groups: Iterable[str]) -> bool:
    """Whether a reader in `groups` is shown recorded values as they were."""
    return PII_GROUP in groups


def _detected(text: str) -> bool:
    return any(d.precheck(text) and next(iter(d.find(text)), None) for d in DETECTORS.values())


def detected_masked(text: str) -> str:
    """`text` with every span a value detector finds in it as MASKED."""
    spans = sorted(
        (s[0], s[1])
        for d in DETECTORS.values()
        if d.precheck(text)
        for s in d.find(text)  # type: ignore[misc]
    )
    out, at = [], 0
    for start, end in spans:
        if start < at:
            start = at
        if start >= end:
            continue
        out += [text[at:start], MASKED]
        at = end
    return "".join(out) + text[at:]


def shown_sql(sql: str, masked_result: bool) -> str:
    """`sql` as a reader outside pii-readers sees it (module docstring)."""
    try:
        tokens = parser.scan(sql)
    except Exception:  # pglast's lexer error: an unterminated quote or comment, a NUL
        return UNLEXED if masked_result else detected_masked(sql)
    out: list[str] = []
    at = 0
    for token in tokens:
        if token.name not in _CONSTANTS:
            continue
        start, end = token.start, token.end + 1  # (pglast: character offsets, end inclusive)
        if start < at or end > len(sql):
            return UNLEXED if masked_result else detected_masked(sql)
        if masked_result or _detected(sql[start:end]):
            out += [sql[at:start], MASKED]
            at = end
    out.append(sql[at:])
    return "".join(out)
