"""SSH probe, part 24: a command run above the default priority is denied.

`nice -n -20 free -s 0.001 >/dev/null` (free's interval is a float: a busy loop) and
`ionice -c1 journalctl --no-pager >/dev/null` were allowed to a reader: nice and ionice are
wrappers the parser sees through, and their options were read only to find the command.
On a root upstream account (which may lower a nice value) the loop ran at the top of the
scheduler's queue, the journal's read in the disk's real-time class, ahead of what the
server is for. The parser now names a negative nice adjustment and ionice's real-time
class in a part's via ("raised priority"), and ssh.rego denies such a part unless
data.portcullis.ssh.raised_priority is true.
"""

from __future__ import annotations

from typing import Any

import pytest
from ssh_probe_stack import READER, decided_as, stack_fixture
from test_ssh_probe_exec import ALLOWED, engine, reading, verdict  # noqa: F401

pytestmark = pytest.mark.integration

RAISED = [
    "nice -n -20 free -s 0.001 >/dev/null",
    "nice --20 df",
    "nice -n-5 df",
    "nice --adjustment=-1 df",
    "nice --adj -1 df",
    "uptime; nohup nice -n -1 df",
    "ionice -c1 journalctl --no-pager >/dev/null",
    "ionice -c 1 -n0 df",
    "ionice --class realtime df",
    "ionice --class=RealTime df",
    "ionice -tc1 df",
    "timeout 5 ionice -c1 df",
]


@pytest.mark.parametrize("line", RAISED)
def test_a_command_at_a_raised_priority_is_denied(
    engine: Any,  # noqa: F811
    line: str,
) -> None:
    assert any("raised priority" in p["via"] for p in reading(line)["parts"]), reading(line)
    for groups in (READER, ("dba", "pii-readers")):
        decided = decided_as(engine, line, "deny") if groups == READER else None
        decided = decided or verdict(engine, line, groups)
        assert decided["verdict"] == "deny", (line, groups)
        assert any("runs at a raised priority" in r for r in decided["reasons"]), decided


@pytest.mark.parametrize(
    "line",
    ["nice df", "nice -n 5 df", "nice -5 df", "nice -n +5 df", "ionice -c2 -n0 df",
     "ionice -c3 df", "ionice df", "ionice -n 7 df", "nice -n -0 df"],
)  # fmt: skip
def test_a_lowered_or_default_priority_stays_allowed(
    engine: Any,  # noqa: F811
    line: str,
) -> None:
    assert verdict(engine, line)["verdict"] in ALLOWED, (line, reading(line))


stack = stack_fixture()


async def test_a_raised_priority_never_reaches_the_upstream(stack: Any) -> None:
    async with await stack.connect(READER) as conn:
        result = await conn.run("nice -n -20 free -s 0.001 -c 3 >/dev/null")
        assert result.exit_status == 1
        assert "runs at a raised priority" in result.stderr, result.stderr
    assert stack.sshd.sessions_started() == 0
