"""SSH probe, part 40: every field of the journal, a crashed process's environment among them.

A reader may run journalctl, its options by allow-list (part 13). The output modes
verbose and export were on it, and --output-fields and -F/--field took any field: they
print every field of an entry, or the fields named, where the short modes print the
message and a few of its metadata. systemd-coredump logs a crashed process's environment
(COREDUMP_ENVIRON: its DB_PASSWORD, its cloud keys), its command line, open files and
maps, and with Storage=journal the core itself; any process's _CMDLINE is its arguments
(a password given as one). `journalctl -F COREDUMP_ENVIRON` listed every environment of
every crash, and no detector reads most of it as anything to mask (a password after a key
naming it is masked since masking p6; `SHOP_LICENSE=...`, a cloud key's id, are not);
`systemctl status x -o verbose` did so for x's crashes. Outside the privileged groups these now need
approval, unless the fields named are all of data.portcullis.ssh.journal_fields (the
message and the metadata the short modes show).

Real components: journalctl (Debian systemd) over a journal file made by
systemd-journal-remote; a PDP on the shipped policy; sshd and the SSH proxy.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from policy_harness import shipped_engine
from ssh_probe_stack import READER, denied_when_asked, stack_fixture
from test_ssh_probe_exec import ALLOWED, verdict
from test_ssh_proxy import Stack

from portcullis.masking import Masker
from portcullis.verdict import MaskRule

engine = pytest.fixture(scope="module")(shipped_engine)

JOURNAL_REMOTE = Path("/lib/systemd/systemd-journal-remote")
JOURNALCTL = shutil.which("journalctl")
# (a secret under a key no detector reads as a secret's: DB_PASSWORD= is masked, masking p6)
SECRET = "SHOP_LICENSE=s3cr3t-p40"
DBA = ("dba", "pii-readers")

EVERY_FIELD = [
    "journalctl -o verbose",
    "journalctl --output=export",
    "journalctl -n 5 -aoverbose",
    "journalctl -fo export",
    "journalctl -F COREDUMP_ENVIRON",
    "journalctl -FCOREDUMP_ENVIRON",
    "journalctl --field=_CMDLINE",
    "journalctl --field COREDUMP",
    "journalctl -o cat --output-fields=MESSAGE,COREDUMP_ENVIRON",
    "journalctl -o cat --output-fields COREDUMP_CMDLINE | head -n 5",
    "systemctl status shop -o verbose",
    "systemctl status --output=export shop",
]
STILL_ALLOWED = [
    "journalctl -n 20",
    "journalctl -o cat",
    "journalctl -o short-iso -u verbose",
    "journalctl -F _SYSTEMD_UNIT",
    "journalctl -o cat --output-fields=MESSAGE,_PID",
    "journalctl --fields",
    "systemctl status shop -o short-iso",
]


@pytest.mark.parametrize("line", EVERY_FIELD)
def test_every_field_needs_approval_outside_the_privileged(engine: Any, line: str) -> None:
    for groups in (READER, ("pii-readers",)):
        assert verdict(engine, line, groups)["verdict"] == "require_approval", (line, groups)
    assert verdict(engine, line, DBA)["verdict"] in ALLOWED, line


@pytest.mark.parametrize("line", STILL_ALLOWED)
def test_the_message_and_its_metadata_stay_allowed(engine: Any, line: str) -> None:
    assert verdict(engine, line, READER)["verdict"] in ALLOWED, line


@pytest.mark.skipif(
    JOURNALCTL is None or not JOURNAL_REMOTE.exists(),
    reason="journalctl and systemd-journal-remote (Debian systemd-journal-remote) needed",
)
def test_why_every_field_is_a_secret(tmp_path: Path) -> None:
    """With the real journalctl over a journal holding one crash: the short modes show its
    message; every other way above shows the environment, which no detector masks."""
    environ = f"PATH=/usr/bin\n{SECRET}\nLANG=C".encode()
    export = (
        (
            f"__CURSOR=s=1;i=1\n__REALTIME_TIMESTAMP={int(time.time() * 1e6)}\n"
            "__MONOTONIC_TIMESTAMP=1\n_BOOT_ID=0123456789abcdef0123456789abcdef\n"
            "_HOSTNAME=web-1\nSYSLOG_IDENTIFIER=systemd-coredump\n_PID=42\nPRIORITY=2\n"
            "MESSAGE=Process 4242 (shop) of user 0 dumped core.\nCOREDUMP_UNIT=shop.service\n"
        ).encode()
        + b"COREDUMP_ENVIRON\n"
        + struct.pack("<Q", len(environ))
        + environ
        + b"\n\n"
    )
    journal = tmp_path / "t.journal"
    subprocess.run([str(JOURNAL_REMOTE), "-o", str(journal), "-"], input=export,
                   capture_output=True, check=True, timeout=30)  # fmt: skip
    detectors = ("credit_card", "email", "phone", "ssn", "token")
    masker = Masker([MaskRule(detector=d, strategy="partial") for d in detectors], b"k" * 32)

    def shown(*options: str) -> str:
        assert JOURNALCTL is not None
        run = subprocess.run([JOURNALCTL, f"--file={journal}", *options], capture_output=True,
                             text=True, check=True, timeout=30)  # fmt: skip
        return masker.mask_text(run.stdout)[0]

    for options in (["-o", "short"], ["-o", "cat"], ["-o", "cat", "--output-fields=MESSAGE"]):
        assert "dumped core" in shown(*options) and SECRET not in shown(*options)
    for options in (["-o", "verbose"], ["-o", "export"], ["-F", "COREDUMP_ENVIRON"],
                    ["-o", "cat", "--output-fields=COREDUMP_ENVIRON"]):  # fmt: skip
        assert SECRET in shown(*options), options


stack = stack_fixture()


@pytest.mark.integration
async def test_a_readers_every_field_waits_for_approval(stack: Stack) -> None:
    """Through the proxy: the line waits for approval, nothing reaches sshd; denied, it
    ends with status 1."""
    async with await stack.connect(READER) as conn:
        process = await conn.create_process("journalctl -F COREDUMP_ENVIRON")
        await denied_when_asked(stack, process)
        result = await process.wait()
    assert result.exit_status == 1
    assert stack.sshd.sessions_started() == 0
