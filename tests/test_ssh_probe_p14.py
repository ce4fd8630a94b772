"""SSH probe, part 14: a variable of the upstream's environment, printed by an allowed line.

A reader may not run `env` or `printenv`, but a computed word reads any variable:
`printf '%s\\n' "$DB_PASSWORD"` (printf's %s prints a computed argument whole) and `df
"$API_KEY"` (df names the operand it refuses) printed what the upstream account's
environment holds — its startup files (Debian's bash reads ~/.bashrc for an exec sshd
runs), sshd's SetEnv, PAM's — masked by the value detectors only, which read no password.
A variable that neither sshd nor the shell sets, nor a `for` loop of the line, now needs
approval (ssh.rego ssh_default_parameters; data.portcullis.ssh.parameters replaces the
list): `$HOME`, `$USER`, `$PWD`, `$SSH_CONNECTION`, `$?`, `$1`, a loop's `$x` read as before.
The same word elsewhere than a command's arguments: a here-string (`cat <<< "$X"`, its
text not given to the policy) needs approval when computed; a `for` loop's list reading a
variable neither the line nor sshd set (`for x in "$X"; do printf '%s\\n' "$x"; done`: the policy
takes `$x` for the line's own) is unreadable (pdp/domain/ssh_input.py).
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest
from policy_harness import shipped_engine
from ssh_probe_stack import denied_when_asked, stack_fixture
from test_ssh_probe_exec import ALLOWED, verdict
from test_ssh_probe_p7 import BASH
from test_ssh_proxy import Stack

engine = pytest.fixture(scope="module")(shipped_engine)

READER = ("readonly",)
PII = ("pii-readers",)

ENVIRONMENT = [
    "printf '%s\\n' \"$DB_PASSWORD\"",
    "printf '%s\\n' \"${API_KEY}\"",
    'df "$API_KEY"',
    'uptime "x=$http_proxy"',
    'printf \'%s %s\\n\' "$HOME" "$AWS_SECRET_ACCESS_KEY"',
    'sh -c \'printf "%s\\n" "$VAULT_TOKEN"\'',
    "df -h && printf '%s\\n' \"$PGPASSWORD\"",
    # a here-string's word and a loop's list are no part's argv
    'cat <<< "$DB_PASSWORD"',
    "head -n 1 <<<$API_KEY",
    'for x in "$DB_PASSWORD"; do printf \'%s\\n\' "$x"; done',
    'for x in a; do for y in "$SECRET"; do df "$y"; done; done',
]

STILL_ALLOWED = [
    "printf '%s\\n' \"$HOME\"",
    "printf '%s\\n' \"${USER}@$SSH_CONNECTION\"",
    'printf \'%s:%s\\n\' "$PWD" "$LOGNAME"',
    'for x in a b; do df "$x"; done',
    "sh -c 'df \"$1\"' sh /",
    'df -h; echo "rc=$?"',
]


@pytest.mark.parametrize("line", ENVIRONMENT)
def test_a_variable_of_the_upstreams_environment_needs_approval(engine: Any, line: str) -> None:
    for groups in (READER, PII, ("dba", "pii-readers")):
        assert verdict(engine, line, groups)["verdict"] in ("require_approval", "deny"), line


@pytest.mark.parametrize("line", STILL_ALLOWED)
def test_what_sshd_the_shell_or_the_line_sets_stays_allowed(engine: Any, line: str) -> None:
    assert verdict(engine, line, READER)["verdict"] in ALLOWED, line


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_why_the_word_prints_the_environment() -> None:
    """The reason, with the real bash: the word is whatever the environment holds."""
    assert BASH is not None
    env = {**os.environ, "DB_PASSWORD": "hunter2"}
    line = "printf '%s\\n' \"$DB_PASSWORD\""
    run = subprocess.run([BASH, "-c", line], capture_output=True, text=True, check=True, env=env)
    assert run.stdout == "hunter2\n"


stack = stack_fixture()


@pytest.mark.integration
async def test_the_environment_is_read_only_once_approved(stack: Stack) -> None:
    """Through the proxy: the line waits for approval, nothing reaches sshd; denied, it
    ends with status 1; $HOME is printed as before."""
    async with await stack.connect(READER) as conn:
        process = await conn.create_process("printf '%s\\n' \"$DB_PASSWORD\"")
        await denied_when_asked(stack, process)
        refused = await process.wait()
        home = await conn.run("printf '%s\\n' \"$HOME\"")
    assert refused.exit_status == 1
    assert home.exit_status == 0, home.stderr
    assert home.stdout.strip().startswith("/")
    assert stack.sshd.sessions_started() == 1
