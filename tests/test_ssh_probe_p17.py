"""SSH probe, part 17: a symlink's target named to the client in a decision's words.

Outside pii-readers the names an SFTP server answers with (a directory's entries, a
REALPATH's, a READLINK's answer) are masked as `ls`'s output is: a file named like an
e-mail address or a card number goes out masked. The proxy also resolves a request's
paths through the server's symlinks and decides the resolved ones; when that decision
asked for approval or denied, the client was told its reasons, which name the resolved
path: `mkdir link/x`, link -> .../alice.smith@example.com, answered `approval required
(SFTP mkdir of .../alice.smith@example.com/x: ...)`, the name `ls -l` masks. The client is
now told each resolved path as where its own leads, or, when the words still name what the
resolution found (`writes under .../protected`), only that its request goes through a
symlink (sftp.py _through); the decisions, and the evidence, keep the resolved paths.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from ssh_harness import run_client
from test_ssh_sftp import deny_every_approval, openssh_sftp, sftp_decisions
from test_ssh_sftp_symlinks import symlink_stack

from proxies.ssh.sftp import Operation, _through

DBA_MASKED = ("dba",)  # privileged, outside pii-readers: the names it is sent are masked
NAME = "alice.smith@example.com"


@pytest.mark.integration
async def test_a_resolved_name_is_not_told_in_a_decisions_words(tmp_path: Path) -> None:
    async with symlink_stack(tmp_path) as (stack, tree):
        (tree.protected / NAME).mkdir()
        (tree.secret / NAME).mkdir()
        os.symlink(tree.protected / NAME, tree.public / "link")
        os.symlink(tree.secret / NAME, tree.public / "hidden")
        argv, env = openssh_sftp(stack, tmp_path, DBA_MASKED)
        readlink = await run_client(argv, env, f"ls -l {tree.public}\n".encode())
        argv, env = openssh_sftp(stack, tmp_path, DBA_MASKED)
        line = f"mkdir {tree.public / 'link' / 'x'}\n"
        client = asyncio.ensure_future(run_client(argv, env, line.encode()))
        await deny_every_approval(stack, 1, client)
        code, out, err = await client
        argv, env = openssh_sftp(stack, tmp_path, DBA_MASKED)
        denied = await run_client(argv, env, f"cd {tree.public / 'hidden'}\n".encode())
        decisions = await sftp_decisions(stack)
    # the listing masks the name (the detectors' e-mail address)
    assert NAME.encode() not in readlink[1] + readlink[2], readlink
    assert code != 0
    assert b"approval required" in err and b"goes through a symlink" in err, err
    assert NAME.encode() not in out + err, err
    # a denial (the test rule: no reads under secret/) keeps its words, the resolved path
    # named as where the client's leads
    assert denied[0] != 0 and b"hidden leads): not readable" in denied[2], denied
    assert NAME.encode() not in denied[1] + denied[2], denied
    # the evidence keeps the resolved path, for auditors
    assert any(NAME in d["attributes"]["path"] for d in decisions)
    assert not (tree.protected / NAME / "x").exists()


def test_a_found_name_in_any_spelling_leaves_only_the_fixed_words() -> None:
    """A reason quoting the resolved path as the policy's `%q` does (a tab written `\\t`)
    still names what the resolution found: only the fixed words are told."""
    asked = Operation("stat", "/srv/public/link")
    real = Operation("stat", "/srv/secret/4111\t1111")
    told = _through('portcullis: "/srv/secret/4111\\t1111" is not readable', asked, real)
    assert "4111" not in told and "goes through a symlink" in told
    kept = _through("portcullis: SFTP stat of /srv/public: fine", asked,
                    Operation("stat", "/srv/public"))  # fmt: skip
    assert kept == "portcullis: SFTP stat of (where /srv/public/link leads): fine"
