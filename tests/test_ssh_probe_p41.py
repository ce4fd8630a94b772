"""SSH probe, part 41: `systemctl status` of every process, each with its command line.

A reader may run `systemctl status` (options by allow-list, part 13). What it shows of a
unit is its processes too, each with its whole command line (the CGroup tree): a password
given as an argument (`mysqldump -uroot -pS3cret...`, a cron job's under cron.service),
which no detector reads as anything to mask; the journal's _CMDLINE went to the
privileged groups in part 40. Without a unit, `systemctl status` shows the whole
system's tree (every login session's processes, as `ps -eww` would); a slice or a scope
(user.slice, session-3.scope), a PID (the unit of that process: a login's scope), a path
and --with-dependencies (the slices a unit is in: system.slice, every service) did so
as well. Outside the privileged groups these now need approval; `systemctl status ssh`,
of units whose processes are a service's own, stays allowed.

Real components: a PDP on the shipped policy; sshd and the SSH proxy. (No systemd runs
here as PID 1: what systemctl shows is systemd's documented status, not run.)
"""

from __future__ import annotations

from typing import Any

import pytest
from policy_harness import shipped_engine
from ssh_probe_stack import READER, denied_when_asked, stack_fixture
from test_ssh_probe_exec import ALLOWED, verdict
from test_ssh_proxy import Stack

from portcullis.masking import Masker
from portcullis.verdict import MaskRule

engine = pytest.fixture(scope="module")(shipped_engine)

DBA = ("dba", "pii-readers")

EVERY_PROCESS = [
    "systemctl status",
    "systemctl status --no-pager --full",
    "systemctl -l --no-pager status",
    "systemctl status -n 5",
    "systemctl status --lines 5",
    "systemctl status -o short-iso",
    "systemctl status 1234",
    "systemctl status 0x4d2",
    "systemctl status ' 1234'",
    "systemctl status +1234",
    "systemctl status user.slice",
    "systemctl status user-1000.slice",
    "systemctl status session-3.scope",
    "systemctl status ssh init.scope",
    "systemctl status ssh -- -.slice",
    "systemctl status /home",
    "systemctl status ssh --with-dependencies",
    "systemctl status --all",
]
A_SERVICES_OWN = [
    "systemctl status ssh",
    "systemctl status ssh -n 5 --no-pager",
    "systemctl status ssh nginx --no-pager",
    "systemctl --no-pager status ssh",
    "systemctl -l --no-pager status ssh -n 5",
    "systemctl -n 5 --full status ssh",
    "systemctl status nginx.service --lines=5 -o short-iso",
    "systemctl status getty@tty1.service",
    "systemctl status cron.timer ssh.socket multi-user.target",
    "systemctl status -p MainPID ssh",
    "systemctl status 'nginx; id'",
]


@pytest.mark.parametrize("line", EVERY_PROCESS)
def test_every_process_needs_approval_outside_the_privileged(engine: Any, line: str) -> None:
    for groups in (READER, ("pii-readers",)):
        assert verdict(engine, line, groups)["verdict"] == "require_approval", (line, groups)
    if not any(w in line for w in ("--with-dependencies", " -- ")):  # options not allowed
        assert verdict(engine, line, DBA)["verdict"] in ALLOWED, line


@pytest.mark.parametrize("line", A_SERVICES_OWN)
def test_a_services_own_status_stays_allowed(engine: Any, line: str) -> None:
    assert verdict(engine, line, READER)["verdict"] in ALLOWED, line


def test_why_a_command_line_is_a_secret() -> None:
    """The detectors read the password flags of clients they know (masking probe p9:
    mysqldump's -p), not a password any other program takes as an argument."""
    detectors = ("credit_card", "email", "phone", "ssn", "token")
    masker = Masker([MaskRule(detector=d, strategy="partial") for d in detectors], b"k" * 32)
    tree = (
        "CGroup: /system.slice/cron.service\n  ├─4242 mysqldump -uroot -pS3cretPass41 shop\n"
        "  └─4243 backup-agent -k S3cretPass42 --target s3://bk\n"
    )
    shown = masker.mask_text(tree)[0]
    assert "S3cretPass41" not in shown and "-k S3cretPass42" in shown, shown


stack = stack_fixture()


@pytest.mark.integration
async def test_a_readers_status_of_everything_waits_for_approval(stack: Stack) -> None:
    """Through the proxy: the line waits for approval, nothing reaches sshd; denied, it
    ends with status 1."""
    async with await stack.connect(READER) as conn:
        process = await conn.create_process("systemctl --no-pager status")
        await denied_when_asked(stack, process)
        result = await process.wait()
    assert result.exit_status == 1
    assert stack.sshd.sessions_started() == 0
