"""SSH probe, part 22: a brace expansion the upstream's bash makes gigabytes of.

A line is read as at most MAX_WORDS (1,024) words: a policy walks every word, and a longer
line is malformed. Brace expansion went around that bound on the upstream's side: `df
{1..100000000}` is 17 bytes, one word to the parser (computed), allowed (masked) to a
reader, and 10^8 words to bash, which makes them all in memory before df runs (a million
take ~280 MB and 1.5 s; `printf '%s\\n' {1..9}{1..9}...` multiplies) — any reader could
push the production host into its OOM killer. The parser now bounds what brace
expansions may make (each sequence's length and each list's items, multiplied; quoted
braces count too) and reads a line whose words could pass MAX_WORDS as malformed.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest
from ssh_probe_stack import BASH, READER, stack_fixture
from test_ssh_probe_exec import ALLOWED, engine, reading, verdict  # noqa: F401

AMPLIFIED = [
    "df {1..100000000}",
    "uptime {1..1024}",
    "printf '%s\\n' {1..9}{1..9}{1..9}{1..9}",
    "free {a..z}{a..z}{a..z}",
    "df {0..100000000..2}",
    "df {-50000000..50000000}",
    "df x{1..40}y{1..40}",
    "for x in {1..100000000}; do df; done",
    "df {1..600} {1..600}",
    "df {a,b,c,d}{a,b,c,d}{a,b,c,d}{a,b,c,d}{a,b,c,d}",
    "df '{1..5000}'",  # quoted: bash leaves it, but more is refused, never less
]


@pytest.mark.parametrize("line", AMPLIFIED)
def test_a_brace_expansion_past_the_words_a_line_holds_is_not_read(
    engine: Any,  # noqa: F811 (test_ssh_probe_exec's fixture)
    line: str,
) -> None:
    assert "brace expansions of up to" in reading(line).get("malformed", ""), reading(line)
    for groups in (READER, ("dba", "pii-readers")):
        assert verdict(engine, line, groups)["verdict"] == "deny", (line, groups)


@pytest.mark.parametrize(
    "line",
    ["df {a,b}", "uptime {1..1000}", 'for x in {1..3}; do df "$x"; done', "df {1..10..2}"],
)
def test_small_expansions_stay_allowed(engine: Any, line: str) -> None:  # noqa: F811
    assert verdict(engine, line)["verdict"] in ALLOWED, (line, reading(line))


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_bash_makes_the_words_in_memory_first() -> None:
    # under a 200 MB address-space limit bash cannot even make 10^7 words of 14 bytes
    ran = subprocess.run([BASH, "-c", "ulimit -v 200000; true {1..10000000}; echo done"],
                         capture_output=True, text=True, timeout=60, check=False,
                         env={"PATH": os.defpath})  # fmt: skip
    assert "done" not in ran.stdout and ran.returncode != 0, ran


stack = stack_fixture()


async def test_the_line_never_reaches_the_upstream(stack: Any) -> None:
    # a small one: on a tree without the bound it runs, and must not load the machine
    async with await stack.connect(READER) as conn:
        result = await conn.run("uptime {1..2000}")
    assert result.exit_status == 1
    assert "brace expansions of up to 2001 words" in result.stderr, result.stderr
    assert stack.sshd.sessions_started() == 0
