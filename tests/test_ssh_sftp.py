"""SFTP through the SSH proxy, decided one request at a time — against a real sshd (its
internal-sftp), a real PDP on the shipped policy (its approval paths pointed at a test
directory) and real clients: OpenSSH `sftp` and `scp` (which speaks SFTP), asyncssh's
SFTP client, and raw SFTP packets for what no client sends.

Each test tries to break one property: a read returns the upstream's real file; a write
the policy does not let through never reaches the upstream (the file does not appear);
`..` and doubled slashes are decided on the normalised path, which is also the path the
upstream receives; a rename, a symlink and a hard link are decided on both paths; a
handle opened for reading does not take writes; what the relay does not understand is
refused, never relayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pdp_harness import REGO
from ssh_harness import askpass, client_options, run_client
from test_ssh_proxy import Stack, ssh_stack

from pdp.domain.recordings import session_events
from proxies.ssh import sftp_codec as codec

pytestmark = pytest.mark.integration
DBA = ("dba", "pii-readers")
APPROVER = {"subject": "sam@example.com", "groups": ["security"]}


def policy_with_approval_paths(tmp: Path, paths: list[str]) -> Path:
    """The shipped policy library, its SFTP approval paths set to `paths`."""
    copy = tmp / "rego"
    shutil.copytree(REGO, copy)
    data_file = copy / "data.json"
    data = json.loads(data_file.read_text())
    data["portcullis"]["ssh"]["sftp"]["approval_paths"] = paths
    data_file.write_text(json.dumps(data))
    return copy


@contextlib.asynccontextmanager
async def sftp_stack(tmp: Path) -> AsyncIterator[tuple[Stack, Path, Path]]:
    """sshd, PDP and proxy; `open` is a directory the policy lets dba write to, `protected`
    one under the approval paths."""
    open_dir, protected = tmp / "open", tmp / "protected"
    open_dir.mkdir()
    protected.mkdir()
    policies = policy_with_approval_paths(tmp, [str(protected)])
    async with ssh_stack(tmp, extra={"policies": policies}) as stack:
        yield stack, open_dir, protected


async def sftp_decisions(stack: Stack) -> list[dict[str, Any]]:
    await stack.proxy.settled()
    decisions = await stack.pdp.store.query(kind="decision")
    return [d.body for d in decisions if d.body.get("kind") == "ssh.sftp"]


async def deny_every_approval(stack: Stack, count: int, client: asyncio.Future[Any]) -> list[str]:
    """Deny `count` approval requests as a security approver, as each is asked (while the
    client runs: one that ended without asking fails the test instead of hanging it)."""
    denied: list[str] = []
    while len(denied) < count:
        for request in list(stack.pdp.approvals.requests.values()):
            if request.state == "pending" and request.id not in denied:
                await stack.pdp.approvals.decide(request.id, APPROVER, False, "not today")
                denied.append(request.id)
        if client.done() and len(denied) < count:
            raise AssertionError(f"the client ended without asking: {client.result()!r}")
        await asyncio.sleep(0.05)
    return denied


def openssh_sftp(
    stack: Stack, tmp: Path, groups: tuple[str, ...] = DBA
) -> tuple[list[str], dict[str, str]]:
    env = askpass(tmp, stack.token(groups))
    # sftp -b turns on BatchMode (no password prompt); ssh keeps an option's first value,
    # so BatchMode=no given before -b keeps the token's askpass prompt
    argv = ["sftp", *client_options(stack.port), "-o", "BatchMode=no", "-P", str(stack.port),
            "-b", "-", "ann@127.0.0.1"]  # fmt: skip
    return argv, env


# -- the codec, without sockets --------------------------------------------------------------


def test_paths_are_normalised_lexically() -> None:
    home = "/home/ann"
    assert codec.normalise(b"x", home) == "/home/ann/x"
    assert codec.normalise(b"", home) == "/home/ann"
    assert codec.normalise(b".", home) == "/home/ann"
    assert codec.normalise(b"../../../etc/passwd", home) == "/etc/passwd"
    assert codec.normalise(b"/srv//data/./a/../b/", home) == "/srv/data/b"
    assert codec.normalise(b"//etc", home) == "/etc"
    assert codec.normalise(b"/..", home) == "/"
    for bad in (b"a\x00b", b"\xff\xfe"):
        with pytest.raises(codec.Malformed):
            codec.normalise(bad, home)


def test_requests_read_field_by_field_and_written_back_with_normal_paths() -> None:
    attrs = struct.pack(">II", codec.ATTR_PERMISSIONS, 0o644)
    body = (
        bytes([codec.OPEN])
        + struct.pack(">I", 7)
        + codec._string(b"a/../b")
        + struct.pack(">I", 0x1A)
        + attrs
    )
    request = codec.read_request(body)
    assert (request.kind, request.id, request.paths) == (codec.OPEN, 7, [b"a/../b"])
    assert codec.open_flags(request.number(1)) == ["write", "create", "truncate"]
    again = codec.Framer(codec.MAX_CLIENT_PACKET).feed(request.encode(["/home/ann/b"]))
    assert again == [body.replace(codec._string(b"a/../b"), codec._string(b"/home/ann/b"))]
    with pytest.raises(codec.Malformed, match="trailing"):
        codec.read_request(body + b"\x00")
    with pytest.raises(codec.Malformed, match="truncated"):
        codec.read_request(body[:-2])
    with pytest.raises(codec.Malformed, match="ATTRS flags"):
        codec.read_request(body[:-8] + struct.pack(">II", 0x10, 0))
    with pytest.raises(codec.Unsupported) as unknown:
        codec.read_request(bytes([21]) + struct.pack(">I", 9) + codec._string(b"x"))
    assert unknown.value.request_id == 9
    with pytest.raises(codec.Unsupported, match="copy-data"):
        codec.read_request(
            bytes([codec.EXTENDED]) + struct.pack(">I", 3) + codec._string(b"copy-data@openssh.com")
        )
    with pytest.raises(codec.Malformed, match="open flags"):
        codec.open_flags(0x40)


def test_framing_refuses_an_oversized_packet_before_buffering_it() -> None:
    framer = codec.Framer(codec.MAX_CLIENT_PACKET)
    assert framer.feed(struct.pack(">I", 5)) == []
    assert framer.feed(b"\x10\x00\x00\x00\x01") == [b"\x10\x00\x00\x00\x01"]
    with pytest.raises(codec.Malformed):
        framer.feed(struct.pack(">I", codec.MAX_CLIENT_PACKET + 1))
    with pytest.raises(codec.Malformed):
        codec.Framer(10).feed(struct.pack(">I", 0))


@given(st.binary(min_size=1, max_size=300))
@settings(max_examples=400, deadline=None)
def test_any_request_bytes_are_read_refused_or_malformed(body: bytes) -> None:
    """Whatever a client sends as a packet body, the codec reads it whole, refuses it as
    unsupported, or calls it malformed — nothing else (no crash, no partial read)."""
    try:
        request = codec.read_request(body)
    except (codec.Malformed, codec.Unsupported):
        return
    # what it read is what it writes back (the packet the upstream would receive)
    assert codec.Framer(codec.MAX_CLIENT_PACKET).feed(request.encode()) == [body]


@given(st.lists(st.binary(max_size=40), max_size=20))
@settings(max_examples=200, deadline=None)
def test_framing_does_not_depend_on_chunking(chunks: list[bytes]) -> None:
    stream = b"".join(codec.packet(codec.STAT, c) for c in chunks if c)
    framer = codec.Framer(codec.MAX_CLIENT_PACKET)
    got: list[bytes] = []
    for i in range(0, len(stream), 7):
        got += framer.feed(stream[i : i + 7])
    assert got == [bytes([codec.STAT]) + c for c in chunks if c] and framer.pending == 0


# -- real clients ---------------------------------------------------------------------------


async def test_openssh_sftp_reads_the_real_file_and_writes_where_allowed(tmp_path: Path) -> None:
    async with sftp_stack(tmp_path) as (stack, open_dir, _):
        remote = open_dir / "report.txt"
        remote.write_text("the upstream's own bytes\n" * 1000)
        local = tmp_path / "local.txt"
        local.write_text("uploaded\n")
        argv, env = openssh_sftp(stack, tmp_path)
        script = (
            f"get {remote} {tmp_path / 'got.txt'}\n"
            f"put {local} {open_dir / 'up.txt'}\n"
            f"ls {open_dir}\n"
            f"mkdir {open_dir / 'sub'}\n"
        )
        code, out, err = await run_client(argv, env, script.encode())
        decisions = await sftp_decisions(stack)
    assert code == 0, err
    assert (tmp_path / "got.txt").read_text() == remote.read_text()
    assert (open_dir / "up.txt").read_text() == "uploaded\n"
    assert (open_dir / "sub").is_dir()
    assert b"report.txt" in out
    seen = {(d["attributes"]["operation"], d["attributes"]["path"]) for d in decisions}
    assert ("read", str(remote)) in seen
    assert ("write", str(open_dir / "up.txt")) in seen
    assert ("list", str(open_dir)) in seen
    assert ("mkdir", str(open_dir / "sub")) in seen
    assert {d["verdict"] for d in decisions} == {"allow"}


async def test_a_write_not_approved_never_reaches_the_upstream(tmp_path: Path) -> None:
    async with sftp_stack(tmp_path) as (stack, _open_dir, protected):
        local = tmp_path / "local.txt"
        local.write_text("must not land\n")
        (protected / "keep.txt").write_text("kept\n")
        argv, env = openssh_sftp(stack, tmp_path)
        script = f"put {local} {protected / 'new.txt'}\nrm {protected / 'keep.txt'}\n"
        client = asyncio.ensure_future(run_client(argv, env, script.encode()))
        denied = await deny_every_approval(stack, 1, client)
        code, _, err = await client
        decisions = await sftp_decisions(stack)
    # OpenSSH's sftp prints the proxy's stderr line and "Permission denied" (the status
    # code; not its message), then -b stops at the first failure
    assert code != 0 and b"approval required" in err and b"Permission denied" in err, err
    assert len(denied) == 1
    assert not (protected / "new.txt").exists()
    assert (protected / "keep.txt").read_text() == "kept\n"
    (write,) = [d for d in decisions if d["attributes"]["operation"] == "write"]
    assert write["attributes"]["path"] == str(protected / "new.txt")
    assert write["verdict"] == "require_approval"


async def test_traversal_is_decided_on_the_normalised_path(tmp_path: Path) -> None:
    async with sftp_stack(tmp_path) as (stack, open_dir, protected):
        local = tmp_path / "local.txt"
        local.write_text("x\n")
        argv, env = openssh_sftp(stack, tmp_path)
        sneaky = f"{open_dir}/../protected//./sneaky.txt"
        client = asyncio.ensure_future(run_client(argv, env, f"put {local} {sneaky}\n".encode()))
        await deny_every_approval(stack, 1, client)
        code, _, _err = await client
        # the same traversal out of the protected directory is a write in the open one
        code2, _, err2 = await run_client(
            argv, env, f"put {local} {protected}/../open/fine.txt\n".encode()
        )
        decisions = await sftp_decisions(stack)
    assert code != 0 and not (protected / "sneaky.txt").exists()
    assert code2 == 0, err2
    assert (open_dir / "fine.txt").exists()
    writes = [d for d in decisions if d["attributes"]["operation"] == "write"]
    assert [(w["attributes"]["path"], w["verdict"]) for w in writes] == [
        (str(protected / "sneaky.txt"), "require_approval"),
        (str(open_dir / "fine.txt"), "allow"),
    ]


async def test_rename_symlink_and_link_are_decided_on_both_paths(tmp_path: Path) -> None:
    async with sftp_stack(tmp_path) as (stack, open_dir, protected):
        (open_dir / "a.txt").write_text("a\n")
        (open_dir / "b.txt").write_text("b\n")
        (protected / "secret.txt").write_text("s\n")
        argv, env = openssh_sftp(stack, tmp_path)
        attempts = [
            f"rename {open_dir / 'a.txt'} {protected / 'a.txt'}\n",  # into protected
            f"rename {protected / 'secret.txt'} {open_dir / 'secret.txt'}\n",  # out of it
            f"ln -s {protected / 'secret.txt'} {open_dir / 'link'}\n",  # pointing into it
            f"ln {protected / 'secret.txt'} {open_dir / 'hard'}\n",  # a hard link to it
        ]
        for line in attempts:
            client = asyncio.ensure_future(run_client(argv, env, line.encode()))
            await deny_every_approval(stack, 1, client)
            code, _, err = await client
            assert code != 0, (line, err)
        # both paths in the open directory: a rename is allowed and done
        code, _, err = await run_client(
            argv, env, f"rename {open_dir / 'b.txt'} {open_dir / 'c.txt'}\n".encode()
        )
        assert code == 0, err
        decisions = await sftp_decisions(stack)
    assert (open_dir / "a.txt").exists() and not (protected / "a.txt").exists()
    assert (protected / "secret.txt").exists() and not (open_dir / "secret.txt").exists()
    assert not (open_dir / "link").is_symlink() and not (open_dir / "hard").exists()
    assert (open_dir / "c.txt").read_text() == "b\n"
    two = [
        (
            d["attributes"]["operation"],
            d["attributes"]["path"],
            d["attributes"].get("target"),
            d["verdict"],
        )
        for d in decisions
        if d["attributes"]["operation"] in ("rename", "symlink", "link")
    ]
    assert two == [
        ("rename", str(open_dir / "a.txt"), str(protected / "a.txt"), "require_approval"),
        ("rename", str(protected / "secret.txt"), str(open_dir / "secret.txt"), "require_approval"),
        ("symlink", str(open_dir / "link"), str(protected / "secret.txt"), "require_approval"),
        ("link", str(open_dir / "hard"), str(protected / "secret.txt"), "require_approval"),
        ("rename", str(open_dir / "b.txt"), str(open_dir / "c.txt"), "allow"),
    ]


async def test_scp_follows_the_same_decisions(tmp_path: Path) -> None:
    async with sftp_stack(tmp_path) as (stack, open_dir, protected):
        remote = open_dir / "data.bin"
        remote.write_bytes(bytes(range(256)) * 4096)
        env = askpass(tmp_path, stack.token(DBA))
        base = ["scp", *client_options(stack.port), "-P", str(stack.port)]
        code, _, err = await run_client(
            [*base, f"ann@127.0.0.1:{remote}", str(tmp_path / "copy.bin")], env
        )
        assert code == 0, err
        assert (tmp_path / "copy.bin").read_bytes() == remote.read_bytes()
        client = asyncio.ensure_future(
            run_client([*base, str(tmp_path / "copy.bin"), f"ann@127.0.0.1:{protected}/x.bin"], env)
        )
        await deny_every_approval(stack, 1, client)
        code, _, err = await client
        # readers are refused the subsystem itself
        env_reader = askpass(tmp_path, stack.token(("readonly",)))
        code3, _, _ = await run_client(
            [*base, f"ann@127.0.0.1:{remote}", str(tmp_path / "r.bin")], env_reader
        )
        decisions = await sftp_decisions(stack)
    assert code != 0 and not (protected / "x.bin").exists(), err
    assert code3 != 0 and not (tmp_path / "r.bin").exists()
    assert ("read", str(remote), "allow") in {
        (d["attributes"]["operation"], d["attributes"]["path"], d["verdict"]) for d in decisions
    }


async def test_asyncssh_sftp_client_read_and_refused_symlink(tmp_path: Path) -> None:
    async with sftp_stack(tmp_path) as (stack, open_dir, protected):
        (open_dir / "hello.txt").write_text("hello from sshd\n")
        async with await stack.connect(DBA) as conn, conn.start_sftp_client() as sftp:
            async with sftp.open(str(open_dir / "hello.txt")) as f:
                assert await f.read() == "hello from sshd\n"
            # relative paths resolve against the upstream's home directory
            home = await sftp.realpath(".")
            assert home.startswith("/")
            names = await sftp.listdir(str(open_dir))
            assert "hello.txt" in names
            refused = asyncio.ensure_future(sftp.remove(str(protected / "none")))
            await deny_every_approval(stack, 1, refused)
            with pytest.raises(asyncssh.SFTPPermissionDenied, match="not today"):
                await refused
        decisions = await sftp_decisions(stack)
    assert ("remove", str(protected / "none"), "require_approval") in {
        (d["attributes"]["operation"], d["attributes"]["path"], d["verdict"]) for d in decisions
    }


async def test_an_approved_write_lands(tmp_path: Path) -> None:
    async with (
        sftp_stack(tmp_path) as (stack, _, protected),
        await stack.connect(DBA) as conn,
        conn.start_sftp_client() as sftp,
    ):
        writing = asyncio.ensure_future(sftp.mkdir(str(protected / "approved")))
        while not any(r.state == "pending" for r in stack.pdp.approvals.requests.values()):
            assert not writing.done(), writing
            await asyncio.sleep(0.05)
        assert not (protected / "approved").exists()  # held while it waits
        (request,) = stack.pdp.approvals.requests.values()
        await stack.pdp.approvals.decide(request.id, APPROVER, True, "go ahead")
        await writing
    assert (protected / "approved").is_dir()


# -- raw packets: what no client sends -------------------------------------------------------


class RawSftp:
    """An SFTP subsystem channel driven packet by packet (asyncssh carries the bytes)."""

    def __init__(self, process: Any) -> None:
        self.process = process
        self.framer = codec.Framer(codec.MAX_UPSTREAM_PACKET)
        self.pending: list[bytes] = []

    async def send(self, kind: int, payload: bytes) -> None:
        self.process.stdin.write(codec.packet(kind, payload))

    async def receive(self) -> bytes:
        while not self.pending:
            chunk = await self.process.stdout.read(65536)
            assert chunk, "the channel ended"
            self.pending.extend(self.framer.feed(chunk))
        return self.pending.pop(0)

    async def status(self) -> tuple[int, int, str]:
        body = await self.receive()
        assert body[0] == codec.STATUS, body
        request_id, code, length = struct.unpack_from(">III", body, 1)
        return request_id, code, body[13 : 13 + length].decode()


async def raw_sftp(conn: Any) -> RawSftp:
    process = await conn.create_process(subsystem="sftp", encoding=None)
    raw = RawSftp(process)
    await raw.send(codec.INIT, struct.pack(">I", 3))
    version = await raw.receive()
    assert version[0] == codec.VERSION
    return raw


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


async def test_unknown_and_malformed_packets_are_refused_never_relayed(tmp_path: Path) -> None:
    async with sftp_stack(tmp_path) as (stack, open_dir, _):
        target = open_dir / "victim.txt"
        target.write_text("unchanged\n")
        async with await stack.connect(DBA) as conn:
            raw = await raw_sftp(conn)
            # a packet type of a later SFTP version (LINK, 21) and one that exists in none
            await raw.send(
                21,
                u32(1)
                + codec._string(str(open_dir / "l").encode())
                + codec._string(str(target).encode())
                + b"\x01",
            )
            assert (await raw.status())[:2] == (1, codec.FX_OP_UNSUPPORTED)
            await raw.send(250, u32(2) + b"anything")
            assert (await raw.status())[:2] == (2, codec.FX_OP_UNSUPPORTED)
            # an extension the upstream has but the relay does not understand
            await raw.send(
                codec.EXTENDED, u32(3) + codec._string(b"copy-data@openssh.com") + b"\x00" * 40
            )
            assert (await raw.status())[:2] == (3, codec.FX_OP_UNSUPPORTED)
            # a REMOVE with bytes after its path: not relayed with them, not relayed at all
            await raw.send(codec.REMOVE, u32(4) + codec._string(str(target).encode()) + b"junk")
            assert (await raw.status())[:2] == (4, codec.FX_BAD_MESSAGE)
            # a path that is not UTF-8
            await raw.send(codec.REMOVE, u32(5) + codec._string(b"\xff/x"))
            assert (await raw.status())[:2] == (5, codec.FX_BAD_MESSAGE)
            # a handle the upstream never gave
            await raw.send(
                codec.WRITE,
                u32(6)
                + codec._string(b"\x00\x00\x00\x00")
                + struct.pack(">Q", 0)
                + codec._string(b"x"),
            )
            assert (await raw.status())[:2] == (6, codec.FX_PERMISSION_DENIED)
            # a handle opened for reading does not take a write
            await raw.send(
                codec.OPEN, u32(7) + codec._string(str(target).encode()) + u32(0x01) + u32(0)
            )
            handle_reply = await raw.receive()
            assert handle_reply[0] == codec.HANDLE
            handle = codec.read_reply(handle_reply).handle
            await raw.send(
                codec.WRITE,
                u32(8)
                + codec._string(handle)
                + struct.pack(">Q", 0)
                + codec._string(b"OVERWRITTEN"),
            )
            request_id, code, message = await raw.status()
            assert (request_id, code) == (
                8,
                codec.FX_PERMISSION_DENIED,
            ) and "not opened for writing" in message
            await raw.send(codec.CLOSE, u32(9) + codec._string(handle))
            assert (await raw.status())[:2] == (9, codec.FX_OK)
            # the stream still works after all of that
            await raw.send(codec.STAT, u32(10) + codec._string(str(target).encode()))
            assert (await raw.receive())[0] == codec.ATTRS
            raw.process.stdin.write_eof()
            await raw.process.wait()
        await stack.proxy.settled()
        decisions = await sftp_decisions(stack)
        events = await session_events(stack.pdp.store)
    assert target.read_text() == "unchanged\n"
    assert not (open_dir / "l").exists()
    assert [(d["attributes"]["operation"], d["verdict"]) for d in decisions] == [
        ("read", "allow"),
        ("stat", "allow"),
    ]
    bodies = json.dumps(events)
    for refused in ("the SFTP packet type 21", "the SFTP packet type 250", "copy-data@openssh.com",
                    "trailing bytes", "not UTF-8", "not a handle opened through this channel",
                    "was not opened for writing", "ssh.sftp.close"):  # fmt: skip
        assert refused in bodies, refused


async def test_a_stream_that_does_not_frame_ends_the_channel(tmp_path: Path) -> None:
    async with sftp_stack(tmp_path) as (stack, _, _), await stack.connect(DBA) as conn:
        raw = await raw_sftp(conn)
        raw.process.stdin.write(u32(codec.MAX_CLIENT_PACKET + 1) + b"\x03")
        result = await raw.process.wait()
    assert result.exit_status != 0
    assert b"does not read" in result.stderr
