"""SFTP through symlinks that already exist on the server: decided where they point.

A real sshd (its internal-sftp), a real PDP on the shipped policy plus one test rule (SFTP
reads of `secret/` are denied; writes under `protected/` need approval, as the shipped
approval paths say) and the real OpenSSH `sftp` client. Each test plants symlinks on the
server's disk behind the proxy's back, then tries to go through them: a file link, a
directory link in a parent component, a dangling link a write would create through, a
loop. The proxy resolves each path on the server (SSH_FXP_REALPATH) and decides the
resolved one too; what the server cannot resolve is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from ssh_harness import run_client
from test_ssh_proxy import Stack, ssh_stack
from test_ssh_sftp import (
    DBA,
    deny_every_approval,
    openssh_sftp,
    policy_with_approval_paths,
    sftp_decisions,
)

from pdp.domain.recordings import session_events

pytestmark = pytest.mark.integration

UNREADABLE_RULE = """package portcullis

# test only: SFTP reads under data.portcullis.ssh.sftp.test_unreadable are denied
deny contains sprintf("SFTP %s of %s: not readable (test policy)", [op, path]) if {
	input.command.kind == "ssh.sftp"
	op := input.command.ssh.operation
	op in ssh_sftp_reads
	path := input.command.ssh.path
	some under in data.portcullis.ssh.sftp.test_unreadable
	ssh_path_under(path, under)
}
"""


@dataclass
class Tree:
    public: Path  # readable, writable without approval
    secret: Path  # not readable (the test rule)
    protected: Path  # writes need approval (the shipped approval paths)


@contextlib.asynccontextmanager
async def symlink_stack(tmp: Path) -> AsyncIterator[tuple[Stack, Tree]]:
    tree = Tree(tmp / "public", tmp / "secret", tmp / "protected")
    for directory in (tree.public, tree.secret, tree.protected):
        directory.mkdir()
    policies = policy_with_approval_paths(tmp, [str(tree.protected)])
    (policies / "portcullis" / "sftp_unreadable_test_rule.rego").write_text(UNREADABLE_RULE)
    data = json.loads((policies / "data.json").read_text())
    data["portcullis"]["ssh"]["sftp"]["test_unreadable"] = [str(tree.secret)]
    (policies / "data.json").write_text(json.dumps(data))
    async with ssh_stack(tmp, extra={"policies": policies}) as stack:
        yield stack, tree


def seen(decisions: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(d["attributes"]["operation"], d["attributes"]["path"], d["verdict"])
            for d in decisions}  # fmt: skip


async def sftp_batch(stack: Stack, tmp: Path, script: str) -> tuple[int, bytes, bytes]:
    argv, env = openssh_sftp(stack, tmp, DBA)
    return await run_client(argv, env, script.encode())


async def test_a_read_through_a_symlink_is_decided_where_it_points(tmp_path: Path) -> None:
    async with symlink_stack(tmp_path) as (stack, tree):
        (tree.secret / "shadow").write_text("root:$6$not-for-you\n")
        (tree.public / "real.txt").write_text("public bytes\n")
        os.symlink(tree.secret / "shadow", tree.public / "link")
        os.symlink(tree.secret, tree.public / "dirlink")
        os.symlink("../secret/shadow", tree.public / "relative")
        os.symlink(tree.public / "real.txt", tree.public / "fine")
        outcomes = {}
        for name, line in {
            "real": f"get {tree.public / 'real.txt'} {tmp_path / 'got-real'}",
            "fine": f"get {tree.public / 'fine'} {tmp_path / 'got-fine'}",
            "link": f"get {tree.public / 'link'} {tmp_path / 'got-link'}",
            "relative": f"get {tree.public / 'relative'} {tmp_path / 'got-relative'}",
            "parent": f"get {tree.public / 'dirlink' / 'shadow'} {tmp_path / 'got-parent'}",
            "cd": f"cd {tree.public / 'dirlink'}\nls",
        }.items():
            outcomes[name] = await sftp_batch(stack, tmp_path, line + "\n")
        decisions = await sftp_decisions(stack)
    assert outcomes["real"][0] == 0 and (tmp_path / "got-real").read_text() == "public bytes\n"
    # a link to an allowed file is read, decided on both of its paths
    assert outcomes["fine"][0] == 0 and (tmp_path / "got-fine").read_text() == "public bytes\n"
    for name in ("link", "relative", "parent", "cd"):
        code, out, err = outcomes[name]
        # OpenSSH's sftp prints the status code ("Permission denied") or, for a realpath
        # (cd), its message; its glob of a path through a denied directory finds nothing
        said = (b"Permission denied", b"not found", b"portcullis: denied")
        assert code != 0 and any(words in err for words in said), (name, err)
        assert b"root:" not in out + err and b"shadow" not in out.split(b"\n", 1)[-1]
        assert not (tmp_path / f"got-{name}").exists()
    verdicts = seen(decisions)
    shadow = str(tree.secret / "shadow")
    # decided on the name the client gave (allowed), then where it points (denied)
    assert any(path == str(tree.public / "link") and verdict == "allow"
               for _, path, verdict in verdicts)  # fmt: skip
    assert any(path == shadow and verdict == "deny" for _, path, verdict in verdicts)
    assert ("realpath", str(tree.secret), "deny") in verdicts
    assert ("read", str(tree.public / "real.txt"), "allow") in verdicts
    reasons = json.dumps([d for d in decisions if d["verdict"] == "deny"])
    assert "not readable (test policy)" in reasons
    assert not any(d["verdict"] == "allow" and d["attributes"]["path"].startswith(str(tree.secret))
                   for d in decisions)  # fmt: skip


async def test_a_write_through_a_symlink_needs_what_its_target_needs(tmp_path: Path) -> None:
    async with symlink_stack(tmp_path) as (stack, tree):
        (tree.protected / "config").write_text("kept\n")
        os.symlink(tree.protected / "config", tree.public / "link")
        os.symlink(tree.protected, tree.public / "dirlink")
        os.symlink(tree.protected / "created", tree.public / "dangling")
        local = tmp_path / "local.txt"
        local.write_text("must not land\n")
        errors = []
        for target in ("link", "dirlink/new.txt", "dangling"):
            argv, env = openssh_sftp(stack, tmp_path, DBA)
            line = f"put {local} {tree.public / target}\n"
            client = asyncio.ensure_future(run_client(argv, env, line.encode()))
            await deny_every_approval(stack, 1, client)
            code, _, err = await client
            assert code != 0, (target, err)
            errors.append(err)
        # removing a link acts on the link itself: decided on it, its target untouched
        code, _, err = await sftp_batch(stack, tmp_path, f"rm {tree.public / 'link'}\n")
        assert code == 0, err
        decisions = await sftp_decisions(stack)
    assert all(b"approval required" in err for err in errors), errors
    assert (tree.protected / "config").read_text() == "kept\n"
    assert not (tree.protected / "new.txt").exists() and not (tree.protected / "created").exists()
    assert not (tree.public / "link").is_symlink()
    writes = [(d["attributes"]["path"], d["verdict"]) for d in decisions
              if d["attributes"]["operation"] == "write"]  # fmt: skip
    assert writes == [
        (str(tree.public / "link"), "allow"),
        (str(tree.protected / "config"), "require_approval"),
        (str(tree.public / "dirlink" / "new.txt"), "allow"),
        (str(tree.protected / "new.txt"), "require_approval"),
        (str(tree.public / "dangling"), "allow"),
        (str(tree.protected / "created"), "require_approval"),
    ]
    removes = [(d["attributes"]["path"], d["verdict"]) for d in decisions
               if d["attributes"]["operation"] == "remove"]  # fmt: skip
    assert removes == [(str(tree.public / "link"), "allow")]


async def test_a_path_the_server_cannot_resolve_is_refused(tmp_path: Path) -> None:
    async with symlink_stack(tmp_path) as (stack, tree):
        os.symlink(tree.public / "loop", tree.public / "loop")
        code, _, err = await sftp_batch(stack, tmp_path, f"get {tree.public / 'loop'} {tmp_path}\n")
        # a write into a directory that does not exist (the server could not say where)
        async with await stack.connect(DBA) as conn, conn.start_sftp_client() as sftp:
            with pytest.raises(asyncssh.SFTPPermissionDenied, match="cannot be resolved"):
                await sftp.open(str(tree.public / "missing-dir" / "file"), "w")
        await stack.proxy.settled()
        events = json.dumps(await session_events(stack.pdp.store))
    assert code != 0 and b"Permission denied" in err, err
    assert not (tmp_path / "loop").exists() and not (tree.public / "missing-dir").exists()
    assert f"{tree.public / 'loop'} cannot be resolved on the server" in events
    assert f"{tree.public / 'missing-dir' / 'file'} cannot be resolved on the server" in events


async def test_links_to_allowed_places_work_and_the_record_names_both_paths(tmp_path: Path) -> None:
    async with symlink_stack(tmp_path) as (stack, tree):
        (tree.public / "real.txt").write_text("through a link\n")
        os.symlink(tree.public, tree.public / "self")
        os.symlink(tmp_path, tree.public / "up")
        async with await stack.connect(DBA) as conn, conn.start_sftp_client() as sftp:
            async with sftp.open(str(tree.public / "self" / "self" / "real.txt")) as f:
                assert await f.read() == "through a link\n"
            with pytest.raises(asyncssh.SFTPPermissionDenied, match="not readable"):
                await sftp.stat(str(tree.public / "up" / "secret"))
            with pytest.raises(asyncssh.SFTPPermissionDenied, match="not readable"):
                await sftp.listdir(str(tree.public / "up" / "secret"))
        decisions = await sftp_decisions(stack)
    verdicts = seen(decisions)
    assert ("read", str(tree.public / "real.txt"), "allow") in verdicts
    assert ("list", str(tree.secret), "deny") in verdicts
    requested = {d["attributes"].get("requested_path") for d in decisions}
    assert str(tree.public / "up" / "secret") in requested  # the record names both
