"""ReDoS sweep, part 3: what the HTTP proxy reads of an answer's text, read in one pass.

An upstream a reader can reach writes the answers the HTTP proxy masks on the event loop
every session shares. Searches that tried a match from every character of a run and read
on to the run's end (quadratic in the run) now read each run once, finding the same
thing (each checked against the old search here on random texts):

- the tail of a held stream's text a value may go on from (bodies' `_GROWING_TAIL`,
  `_VALUE_TAIL`, `_DIGITS_TAIL`, mcp_pieces' `_DIGITS_TAIL`, all `...*\\Z`): 16 KiB of
  digits then a letter held the loop 1.2-6 s per event (64 KiB: ~20-90 s). Now one
  helper, portcullis.tails.tail_start, the SSH proxy's one-pass search made shared;
- a text's markup read as a browser renders it (bodies._MARKUP): each `<!--` with no
  `-->` after it read on to the text's end (64 KiB: ~5 s); now what follows the last
  `-->` is read for the other marks alone (bodies._unmarked);
- a YAML alias under a name (bodies._YAML_ALIAS_UNDER): the name was tried from every
  character of a line of words (16 KiB: 3-5 s); now from one per colon an alias follows
  (bodies._yaml_aliases_under);
- a name inside a line (bodies._NAMED): a line of escapes (`&#65;&#65;...`, `\\u0041...`)
  tried a name from inside or just after each (16 KiB: 1.6 s); no name starts there now
  (the one difference: a name starting at an escape's `u`/`x` or just after an `&#...;`,
  when the word it is in starts no name: `1\\u0041bc=`);
- a JWT in a log line (portcullis.logs.scrub): tried at every `eyJ` of a run, each read
  on to the run's end; now from the run's start once (what of the run comes before the
  `eyJ` is redacted with it).

The other searches a fuzzer flagged were measured at 64 KiB-1 MiB on their worst inputs
and are linear (`_VALUE_ENDS`, `_LONE_VALUE`, `_ELEMENT_TEXT`, `_CODED_LABEL`,
mcp_columns `_LABEL_REST` (fullmatch), portcullis.mcp `_URI` and `_PATH` (fullmatch,
match)). No timed assertion: the one-pass readings run in a child process under a bound
the quadratic ones exceed by minutes.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator

from portcullis import logs
from proxies.http import bodies, mcp_pieces

# bounded only so that a quadratic search fails the test instead of running for hours:
# each one-pass reading below takes well under a second a MiB
HANG_GUARD = 120.0

# the searches replaced, as they were
OLD_GROWING = re.compile(r"[\w@.+\-]+\Z|[+(0-9][0-9 ().\-]*\Z")
OLD_VALUE = re.compile(r"[+(0-9][0-9 ().\-]*\Z|[\w.+\-]*@[\w.\-]*\Z|[\w.+\-]+\Z")
OLD_DIGIT_LINES = re.compile(r"[+(0-9][0-9 ().\-\n]*\Z")
OLD_SHOWN = re.compile(r"[0-9][0-9 \-\n]{0,40}\Z")
OLD_MCP_DIGITS = re.compile(r"[0-9][0-9 ().\-]*\Z")
OLD_NAMED = re.compile(
    rf"""(?<![\w.\-"'%])(?P<q>["']?)(?P<key>(?:[^\W\d]|{bodies._NAME_ESCAPE})"""
    rf"""(?:[\w.\-]|{bodies._NAME_ESCAPE})*)(?P=q)[ \t]*[:=][ \t]*"""
)
OLD_SECRETS = re.compile(
    r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"
    r"|(?i:(?:password|passwd|secret|token|api_key)\s*[=:]\s*)[^\s,;&\"']+"
)

TAIL_PIECES = ["1", "0", " ", "-", ".", "(", ")", "+", "\n", "@", "a", "Z", "_", "é", "٣"]
TAIL_PIECES += ["!", ",", "ab@", "x.y", "4111 1111", "\t", ":"]


def _start(pattern: re.Pattern[str], text: str) -> int:
    found = pattern.search(text)
    return len(text) if found is None else found.start()


def test_held_tails_are_where_the_old_searches_found_them() -> None:
    pick = random.Random(20)
    for _ in range(60_000):
        text = "".join(pick.choice(TAIL_PIECES) for _ in range(pick.randint(0, 16)))
        assert bodies._growing_tail(text) == _start(OLD_GROWING, text), text
        assert bodies._value_tail(text) == _start(OLD_VALUE, text), text
        assert bodies._digit_lines_tail(text) == _start(OLD_DIGIT_LINES, text), text
        assert bodies._shown_tail(text) == _start(OLD_SHOWN, text), text
        held = mcp_pieces._Held(None, None, {(): text})  # type: ignore[arg-type]
        assert mcp_pieces._goes_on(held) == bool(OLD_MCP_DIGITS.search(text)), text


def test_a_long_shown_tail_is_found_as_the_bounded_search_found_it() -> None:
    for text in ("1" * 100, "x" + "1 " * 30, "4111 1111 1111 1111 " * 5, "1" * 41 + "a1"):
        assert bodies._shown_tail(text) == _start(OLD_SHOWN, text), text


MARKUP_PIECES = ["<!--", "-->", "--", "<", ">", "!", "<a", "</b>", "<b x='1'>", "**", "_"]
MARKUP_PIECES += ["__", "~~", "`", "4111", " ", "\n", "-", "<!-->", "x"]


def test_rendered_markup_is_what_the_old_search_removed() -> None:
    pick = random.Random(21)
    for _ in range(60_000):
        text = "".join(pick.choice(MARKUP_PIECES) for _ in range(pick.randint(0, 14)))
        assert bodies._unmarked(text) == bodies._MARKUP.sub("", text), text


YAML_PIECES = ["a", "b", " ", "  ", ":", ": ", "*", "*a", "&", "&a", '"', "'", "#", "[", "]"]
YAML_PIECES += ["{", "}", ",", "-", "?", "\t", "phone", "x:", "- ", ": [*a", ": *a,"]


def test_yaml_aliases_are_where_the_old_search_found_them() -> None:
    def seen(found: Iterable[re.Match[str]]) -> list[tuple[object, ...]]:
        return [(m.span(), m["name"], m["alias"]) for m in found]

    pick = random.Random(22)
    for _ in range(60_000):
        text = "".join(pick.choice(YAML_PIECES) for _ in range(pick.randint(0, 14)))
        old = seen(bodies._YAML_ALIAS_UNDER.finditer(text))
        assert seen(bodies._yaml_aliases_under(text)) == old, text


NAME_PIECES = ["a", "1", "&#65;", "&#x41;", "\\u0041", "\\x41", "%41", ":", "=", ";", " "]
NAME_PIECES += ['"', "'", "-", ".", "\\", "&", "#", "x", "u", "phone", "\t"]
# where no name starts now: an escape's `u` or `x`, just after an `&#...;`
IN_ESCAPE = re.compile(r"(?<=\\)[uUxX]|(?<=&#)[xX]|(?<=;)")


def test_names_in_a_line_are_the_old_search_s_but_those_inside_escapes() -> None:
    def seen(found: Iterator[re.Match[str]]) -> set[tuple[tuple[int, int], str]]:
        return {(m.span(), m["key"]) for m in found}

    pick = random.Random(23)
    differ = 0
    for _ in range(60_000):
        text = "".join(pick.choice(NAME_PIECES) for _ in range(pick.randint(1, 12)))
        old, new = seen(OLD_NAMED.finditer(text)), seen(bodies._NAMED.finditer(text))
        assert new <= old, text
        for (start, _end), _key in old - new:
            assert IN_ESCAPE.match(text, start), text
        differ += old != new
    assert differ < 3_000  # (rare: a word that starts no name, then an escape)
    for line in ('"phone": 1', "id=7&phone=2", "&#112;hone: 1", "a\\u0041b: 1", "x; phone=1"):
        assert seen(bodies._NAMED.finditer(line)) == seen(OLD_NAMED.finditer(line)), line


def test_log_lines_keep_their_secrets_redacted() -> None:
    pick = random.Random(24)
    pieces = ["eyJ", "abcd", ".", "-", "_", " ", "x", "=", "Bearer ", "token=", "eyJhbGci"]
    for _ in range(40_000):
        text = "".join(pick.choice(pieces) for _ in range(pick.randint(1, 12)))
        scrubbed = logs.scrub(text)
        for old in OLD_SECRETS.finditer(text):
            assert old[0] not in scrubbed, text  # (what the old search redacted is not shown)
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"
    assert logs.scrub(f"token {jwt} ok") == "token [redacted] ok"
    assert logs.scrub(f"id=x{jwt},") == "id=[redacted],"


def test_megabytes_of_adversarial_text_are_read_in_one_pass() -> None:
    # in a child process: the regex engine holds the GIL, so no thread of this one could
    # give up on it
    read = subprocess.run(
        [sys.executable, "-c", READ_ALL], capture_output=True, timeout=HANG_GUARD, check=True
    )
    assert read.stdout.split() == [b"ok"] * 11, read


READ_ALL = r"""
from portcullis import logs
from portcullis.masking import Masker
from portcullis.verdict import MaskRule
from proxies.http import bodies, mcp_pieces
from proxies.http.mcp_codec import SseEvent

n = 1 << 20
rules = (MaskRule("", "credit_card", "partial"), MaskRule("", "email", "partial"))
masker = Masker(rules, b"k" * 32)
# an event stream's data, an LLM's piece, a text body's line: digits (or a word) then what
# ends no value
for event in ("data: " + "1" * n + "!", "data: " + "a" * n + "!"):
    bodies.BodyMask(masker, "sse").released(event)
    print("ok")
piece = '{"choices":[{"delta":{"content":"' + "1" * n + '!"}}]}'
bodies.BodyMask(masker, "sse").released("data: " + piece)
print("ok")
print("ok" if bodies._digit_lines_tail("1\n" * (n // 2) + "x") == n + 1 else "held")
# an MCP log message of digits then a letter
held = mcp_pieces.HeldPieces()
log = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "1" * n + "x"}}
held.released(SseEvent(""), log, masker)
print("ok")
print("ok" if bodies._unmarked("<!--" * (n // 4)) == "<!--" * (n // 4) else "changed")
opened = "<!--" * (n // 4)
print("ok" if bodies._unmarked("<!--a-->" + opened + "<b>") == opened else "x")
print("ok" if bodies._yaml_aliases_under("a " * (n // 2) + ": *a") else "none")
print("ok" if not bodies._yaml_aliases_under("a" * n + ":") else "found")
print("ok" if not list(bodies._NAMED.finditer("&#65;" * (n // 5) + "\\u0041" * (n // 6))) else "x")
print("ok" if logs.scrub("eyJ" * (n // 3)) == "eyJ" * (n // 3) else "changed")
"""
