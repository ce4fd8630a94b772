"""SSH probe, part 8: commands run through another (env inside xargs), here-documents with
a quoted delimiter, and the wrappers an operator types before a command (timeout, nice,
nohup, ...), each line compared with what the upstream's bash runs.

xargs appends the words of its input to the command it runs, and the parts say so
(more_args), so that `cat /var/log/*` takes no appended word and journalctl's appended
words need approval. Through env the flag was dropped: `xargs env cat /var/log/x` was the
allowed `cat /var/log/x`, and the words the client wrote on the channel (its stdin, here
`/etc/shadow`) were read by cat as the upstream's account.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from policy_harness import shipped_engine
from test_ssh_probe_exec import ALLOWED, reading, verdict
from test_ssh_proxy import Stack, ssh_stack

engine = pytest.fixture(scope="module")(shipped_engine)

READER = ("readonly",)

# xargs's appended words pass through env to the command env runs
THROUGH_ENV = [
    "xargs env cat /var/log/syslog",
    "xargs -n1 env journalctl",
    "xargs env -i cat /var/log/syslog",
    "xargs env A=1 env cat /var/log/syslog",
]


@pytest.mark.parametrize("line", THROUGH_ENV)
def test_words_xargs_appends_reach_the_command_env_runs(engine: Any, line: str) -> None:
    (part,) = reading(line)["parts"]
    assert part["more_args"] is True, part
    assert verdict(engine, line)["verdict"] not in ALLOWED, (line, reading(line))


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with ssh_stack(tmp_path) as s:
        yield s


@pytest.mark.integration
async def test_a_file_named_on_stdin_is_not_read_through_xargs_env(stack: Stack) -> None:
    """Before: allowed (masked, the part `cat /var/log/syslog` via xargs, env), and the
    upstream's cat printed the file whose name the client wrote on stdin."""
    secret = stack.tmp / "secret"
    secret.write_text("portcullis-p8-not-for-readers\n")
    async with await stack.connect(READER) as conn:
        result = await conn.run("xargs env cat /var/log/portcullis-none", input=f"{secret}\n")
    assert "portcullis-p8-not-for-readers" not in result.stdout
    assert result.exit_status == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith("portcullis: denied: "), result.stderr
    assert stack.sshd.sessions_started() == 0
