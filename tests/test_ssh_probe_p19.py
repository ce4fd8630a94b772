"""SSH probe, part 19: a `for` loop's variable read outside its loop.

The policy takes a variable a `for` loop of the line assigns for the line's own (its
`loop_variables`: a read of it is not one of the upstream's environment, which needs
approval, test_ssh_probe_p14). But the name was the loop's only inside the loop's body:
read before the loop (`printf '%s\\n' "$token"; for token in a; do :; done`), in the
loop's own list (`for token in "$token"`), or after a loop that did not run (`for token;
do` with no `$@`, a loop in a branch not taken), it is whatever the upstream's
environment holds under that name — an account's startup files may export lower-case
names — and a reader's allowed (masked) printf printed it. The parser now reads such a
line as unreadable (denied): a loop's variable may be read only in that loop's body, a
script run there (`sh -c` inherits the loop's value) included.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest
from ssh_probe_stack import BASH, READER, decided_as, stack_fixture
from test_ssh_probe_exec import ALLOWED, engine, reading, verdict  # noqa: F401

OUTSIDE = [
    "printf '%s\\n' \"$token\"; for token in a; do :; done",
    "printf '%s\\n' \"${token}\" && for token in a; do :; done",
    'for token in "$token"; do printf \'%s\\n\' "$token"; done',
    "for token; do :; done; printf '%s\\n' \"$token\"",
    "false && for token in a; do :; done; printf '%s\\n' \"$token\"",
    "if false; then for token in a; do :; done; fi; printf '%s\\n' \"$token\"",
    'sh -c \'printf "%s\\n" "$token"\'; for token in a; do :; done',
    "printf '%s\\n' \"$token\"; sh -c 'for token in a; do :; done'",
    'for x in a; do :; done; for token in "$x$token"; do printf \'%s\\n\' "$token"; done',
    'df "$token"; for token in /; do df "$token"; done',
]


@pytest.mark.parametrize("line", OUTSIDE)
def test_a_loop_variable_read_outside_its_loop_is_not_read(
    engine: Any,  # noqa: F811 (test_ssh_probe_exec's fixture)
    line: str,
) -> None:
    why = reading(line).get("malformed", "")
    assert "read outside the `for` loop that sets it" in why, reading(line)
    for groups in (READER, ("pii-readers",)):
        assert verdict(engine, line, groups)["verdict"] == "deny", (line, groups)


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
@pytest.mark.parametrize("line", OUTSIDE[:6])
def test_bash_prints_the_environments_value_there(line: str) -> None:
    # what the reader's line printed: the value the upstream's environment gave the name
    env = {"PATH": os.defpath, "token": "s3cret-from-the-environment"}
    ran = subprocess.run([BASH, "-c", line], env=env, capture_output=True, text=True,
                         timeout=10, check=False)  # fmt: skip
    assert "s3cret-from-the-environment" in ran.stdout + ran.stderr, ran


@pytest.mark.parametrize(
    "line",
    [
        "for token in a b; do printf '%s\\n' \"$token\"; done",
        'for x in a; do for y in "$x"; do df "$y"; done; done',
        'for x in a; do for x in "$x"; do df "$x"; done; done',
        'for x in a; do sh -c \'printf "%s\\n" "$x"\'; done',
        'for x in a b; do df "$x"; done; uptime',
        'printf \'%s\\n\' "$HOME"; for x in a; do df "$x"; done',
    ],
)
def test_a_loop_variable_read_in_its_loop_stays_allowed(
    engine: Any,  # noqa: F811
    line: str,
) -> None:
    assert verdict(engine, line)["verdict"] in ALLOWED, (line, reading(line))


def test_a_name_no_loop_sets_still_asks() -> None:
    # read where no loop sets it: the environment's variable, which needs approval (p14)
    assert "malformed" not in reading("printf '%s\\n' \"$token\"; echo for token")


stack = stack_fixture()


async def test_the_line_never_reaches_the_upstream(stack: Any) -> None:
    async with await stack.connect(READER) as conn:
        result = await conn.run(OUTSIDE[0])
    assert result.exit_status == 1
    assert "read outside the `for` loop" in result.stderr, result.stderr
    assert stack.sshd.sessions_started() == 0


def test_the_shipped_policy_denies_it(engine: Any) -> None:  # noqa: F811
    decided_as(engine, OUTSIDE[0], "deny")
