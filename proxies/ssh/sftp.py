"""The SFTP relay: an allowed `sftp` subsystem channel, decided one request at a time.

Owns what passes between a client's SFTP channel and the upstream's once the policy let
the subsystem open (proxies/ssh/channel.py hands both byte streams here); the packets are
read and written by sftp_codec (sans-IO), the decisions are the session's.

- Start: the client's INIT is answered by the proxy after it spoke to the upstream itself
  (INIT version 3, then REALPATH "." for the home directory every relative path is
  normalised against, and, when the server offers the `home-directory` extension, the
  upstream account's home as the server names it: both are the account's `homes`, given
  with every request, so that the policy holds a write to the files its sshd and shell
  read at every login, `~/.ssh/rc`, `~/.bashrc`, ...); the VERSION the client sees offers
  only the extensions the relay understands (sftp_codec.EXTENSIONS).
- Requests, in the order the client sent them: each one that names a path is decided as
  its own command (kind `ssh.sftp`: operation, normalised path, a rename's / link's
  second path as `target`, an open's flags, the mode bits and owner its ATTRS set: an
  open's, a setstat's, an fsetstat's, a mkdir's) and recorded in the session's events;
  allowed, it goes upstream with the normalised paths in place of the client's (what was
  decided is what the server acts on); denied (or not approved), the client gets
  SSH_FX_PERMISSION_DENIED with the reason and nothing reaches the upstream. A request on
  a handle is allowed only on a handle the upstream gave this channel for an allowed open
  (a read only on one the server opened for reading, a write only on one opened for
  writing; an fsetstat is decided as a setstat of the handle's path); closing it records
  the bytes read and written through it. An open's access is the server's: without the
  WRITE bit it is O_RDONLY whatever else its bits say (CREAT, APPEND, EXCL), so such an
  open is decided with `read` among its flags (sftp_codec.open_access).
- What is not understood is refused, never relayed: a packet type or extension not in
  sftp_codec's tables gets SSH_FX_OP_UNSUPPORTED, a request whose fields do not read
  SSH_FX_BAD_MESSAGE; a stream that cannot be framed ends the channel.
- A `mask` verdict cannot be kept for file contents (the client reads at offsets): a read
  under one, or an open for reading whatever else its flags say (read through a handle
  opened read-write), is denied. The names the server answers with are masked under one
  (NAMED: a directory's entries through READDIR on a handle of an opendir decided so, a
  REALPATH's and a READLINK's answer): each filename and longname as a terminal shows it
  (stream.mask_shown), so a file named like a card number or an e-mail address goes out
  masked; a NAME the detectors cannot read (a name not UTF-8, or with a NUL) is answered
  SSH_FX_FAILURE instead, and a mask naming fields, which names do not have, is refused.
- Symlinks already on the server: a request's paths are resolved there before it goes
  upstream (the proxy's own SSH_FXP_REALPATH, in order with the channel's other requests):
  in full where the server follows the last component (open, opendir, stat, setstat,
  realpath, statvfs; a symlink's target), in all but the last component where it acts on
  the name itself (lstat, remove, rmdir, mkdir, readlink, rename, link, lsetstat, a
  symlink's own name). When the resolved paths differ from the requested ones the request
  is decided again on them, and both decisions must allow it; what goes upstream is the
  resolved paths (a symlink's target text excepted: it is stored, not followed). What the
  client is told of the second decision (an approval's wait, a denial) names each resolved
  path as where its own leads, never a name the resolution found (_through): where a
  symlink leads is a name the server answers with, masked outside pii-readers. A path
  the server cannot resolve (a missing directory, a loop) is refused. So a reader allowed
  /srv/public does not read /srv/public/link -> /etc/shadow, nor /srv/public/d/shadow
  through d -> /etc.
- TOCTOU: resolving and acting are two requests. The server walks the resolved path
  again when it acts, so a symlink put in place between the two (by another channel, an
  exec, another user of the server) in a directory on the resolved path is followed
  unseen; SFTP version 3 has no O_NOFOLLOW nor openat to close that window. It is kept
  short (resolved right after the first decision; resolved again, and refused if the
  answer changed, when the second decision waited for an approval), and one channel's own
  requests cannot race each other (the server takes them in order). A policy that must
  hold against other writers on the server needs those directories not writable by them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shlex
from collections import Counter
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from portcullis.masking import Masker
from portcullis.verdict import Verdict, VerdictKind
from proxies.runtime.pdp_client import Ruling
from proxies.ssh import sftp_codec as codec
from proxies.ssh.stream import mask_shown

if TYPE_CHECKING:
    from proxies.runtime.session import ProxySession
    from proxies.ssh.channel import Channel

log = logging.getLogger("portcullis.ssh")

KIND = "ssh.sftp"
HOME_REQUEST = 0  # the id of the proxy's own REALPATH, sent before any client request
MAX_QUEUED = 1024 * 1024  # client bytes held while a request is decided
PATH_OPERATIONS = {
    codec.OPENDIR: "list",
    codec.LSTAT: "stat",
    codec.STAT: "stat",
    codec.SETSTAT: "setstat",
    codec.REMOVE: "remove",
    codec.MKDIR: "mkdir",
    codec.RMDIR: "rmdir",
    codec.REALPATH: "realpath",
    codec.RENAME: "rename",
    codec.READLINK: "readlink",
    codec.SYMLINK: "symlink",
}
EXTENSION_OPERATIONS = {
    b"posix-rename@openssh.com": "rename",
    b"hardlink@openssh.com": "link",
    b"statvfs@openssh.com": "statvfs",
    b"lsetstat@openssh.com": "setstat",
}
MASK_REFUSED = "file contents cannot be masked through SFTP (clients read at offsets)"
# what the client is told of a decision on the paths a request resolved to through the
# server's symlinks when the policy's reasons would name what the resolution found (_through)
THROUGH_A_SYMLINK = (
    "{operation} of {path} goes through a symlink on the server to a path the policy"
    " decides on its own (not named here: the names the server answers with may be masked)"
)
WAITING = "; waiting for request "
NAMED = frozenset({"list", "realpath", "readlink"})  # operations answered with names
FIELDS_REFUSED = "the policy masks named fields, which SFTP names do not have: refused"
UNREADABLE_NAME = "portcullis: refused: a name the mask cannot read (not UTF-8, or a NUL)"
# How the server meets symlinks in each of a request's paths (in field order): "full" —
# it follows every component, the last one included; "parent" — it acts on the last
# component itself (a link is removed, renamed, read as a link), following the others;
# "text" — a symlink's target: stored as written, decided on where it points now.
FOLLOWS_LAST = frozenset({codec.OPEN, codec.OPENDIR, codec.STAT, codec.SETSTAT, codec.REALPATH})
FOLLOWS_LAST_EXTENSIONS = frozenset({b"statvfs@openssh.com"})
RESOLVER_IDS = 0xFFFFFFFF  # the proxy's own REALPATH ids count down from here


class SftpFailed(Exception):
    """The SFTP stream cannot go on; the message is safe to show."""


@dataclass
class OpenFile:
    """A handle the upstream gave for an allowed open, and what went through it."""

    path: str
    mode: str  # read | write | dir
    decision_id: str
    # what the server's descriptor allows (sftp_codec.open_access): an open decided as a
    # write whose bits lack WRITE (CREAT alone) is O_RDONLY, and one with WRITE alone
    # O_WRONLY; READ and WRITE requests are relayed only on a handle that allows them
    readable: bool = False
    writable: bool = False
    read_bytes: int = 0
    written_bytes: int = 0
    names: Masker | None = None  # a directory listed under a mask: its entries masked


@dataclass
class Pending:
    """A request relayed upstream, awaiting its reply."""

    opens: OpenFile | None = None
    reads: OpenFile | None = None
    names: Masker | None = None  # its NAME answer masked by these detectors
    decision_id: str = ""


@dataclass(frozen=True)
class Operation:
    """One decided SFTP request as the policy sees it."""

    operation: str
    path: str
    target: str = ""
    flags: tuple[str, ...] = ()
    forwarded_paths: tuple[str, ...] = ()  # the request's path fields, normalised, in order
    requested: str = ""  # decided on resolved paths: the path the client named
    # what its ATTRS set (open, setstat, fsetstat, lsetstat, mkdir): the mode bits (the
    # set-user-ID ones the policy holds) and an owner "uid:gid" (a chown)
    mode: int | None = None
    owner: str = ""

    @property
    def raw(self) -> str:
        """The request as the approver reads it: its operation and paths, and what it sets
        beyond ordinary permissions (set-user-ID, set-group-ID, sticky bits; an owner)."""
        words = [self.operation, self.path, *([self.target] if self.target else [])]
        if self.mode is not None and self.mode & 0o7000:
            words.append(f"mode={self.mode:04o}")
        if self.owner:
            words.append(f"owner={self.owner}")
        return shlex.join(words)

    @property
    def decided(self) -> tuple[str, str]:
        return self.path, self.target

    def attributes(self) -> dict[str, Any]:
        out: dict[str, Any] = {"operation": self.operation, "path": self.path}
        if self.target:
            out["target"] = self.target
        if self.requested:
            out["requested_path"] = self.requested
        if self.operation in ("read", "write"):
            out["flags"] = list(self.flags)
        if self.mode is not None:
            out["mode"] = self.mode
        if self.owner:
            out["owner"] = self.owner
        return out


def attrs_of(request: codec.Request) -> dict[str, Any]:
    """The Operation fields of what a request's ATTRS set (none: no ATTRS, or nothing the
    policy decides on)."""
    out: dict[str, Any] = {}
    for attrs in request.values("attrs"):
        mode, owner = codec.attrs_set(attrs)
        if mode is not None:
            out["mode"] = mode
        if owner is not None:
            out["owner"] = f"{owner[0]}:{owner[1]}"
    return out


def operation_of(request: codec.Request, home: str) -> Operation:
    """What a path request does, its paths normalised (sftp_codec.normalise). Raises
    codec.Malformed."""
    paths = request.paths
    if request.kind == codec.SYMLINK:
        # OpenSSH's order (its sftp-server is the upstream): the target, then the link; a
        # relative target is relative to the link's directory
        link = codec.normalise(paths[1], home)
        return operation_on(request, (codec.normalise(paths[0], codec.parent(link)), link))
    return operation_on(request, tuple(codec.normalise(p, home) for p in paths))


def operation_on(
    request: codec.Request, paths: tuple[str, ...], forwarded: tuple[str, ...] | None = None
) -> Operation:
    """The Operation of a path request over these paths (its path fields, in order);
    `forwarded`: what goes upstream in their place, when not the same."""
    sent = paths if forwarded is None else forwarded
    attrs = attrs_of(request)
    if request.kind == codec.OPEN:
        flags = codec.open_flags(request.number(1))
        if codec.open_access(request.number(1))[0] and "read" not in flags:
            # no WRITE bit: the server opens it O_RDONLY, whatever else the bits say
            # (CREAT, APPEND, EXCL): decided as the read it is, masks and all
            flags.insert(0, "read")
        writes = request.number(1) & codec.WRITING_FLAGS
        return Operation("write" if writes else "read", paths[0], "", tuple(flags), sent, **attrs)
    if request.kind == codec.SYMLINK:
        return Operation("symlink", paths[1], paths[0], (), sent)
    if request.kind == codec.EXTENDED:
        operation = EXTENSION_OPERATIONS[request.extension]
    else:
        operation = PATH_OPERATIONS[request.kind]
    if operation == "link":
        # hardlink@openssh.com: the existing file, then the new name
        return Operation("link", paths[1], paths[0], (), sent)
    target = paths[1] if len(paths) > 1 else ""
    return Operation(operation, paths[0], target, (), sent, **attrs)


def resolution_of(request: codec.Request) -> tuple[str, ...]:
    """How each path field of a request meets symlinks on the server ("full", "parent",
    "text"; see FOLLOWS_LAST). link(2) does not follow a symlink it links to, so both of a
    hard link's paths are "parent"."""
    if request.kind == codec.SYMLINK:
        return ("text", "parent")
    follows = request.kind in FOLLOWS_LAST or (
        request.kind == codec.EXTENDED and request.extension in FOLLOWS_LAST_EXTENSIONS
    )
    return tuple("full" if follows else "parent" for _ in request.paths)


def joined(directory: str, name: str) -> str:
    """A resolved directory and a last component (of a normal absolute path)."""
    return directory if not name else f"{directory.rstrip('/')}/{name}"


async def _resolved_name(waiter: asyncio.Future[codec.Reply]) -> str | None:
    reply = await waiter
    if reply.kind != codec.NAME or len(reply.names) != 1:
        return None
    name = reply.names[0]
    if not name.startswith(b"/"):
        return None
    try:
        return codec.normalise(name, "/")
    except codec.Malformed:
        return None


def _through(text: str, requested: Operation, resolved: Operation) -> str:
    """What the client is told of a decision on the paths its request resolved to through
    the server's symlinks: the decision's words with each resolved path named as where the
    client's leads; when a name the resolution found (a component of a resolved path that
    the client's paths do not have) is still in them, in any spelling the policy's `%q`
    gives, only THROUGH_A_SYMLINK (and, of an approval's wait, its request and how to
    approve it). Where a symlink leads is a name the server answers with, masked outside
    pii-readers (READLINK, REALPATH): the decision's reasons must not carry it out."""
    pairs = [(resolved.path, requested.path), (resolved.target, requested.target)]
    shown = text
    for real, asked in sorted(pairs, key=lambda pair: -len(pair[0])):
        if real and real != asked:
            shown = shown.replace(real, f"(where {asked} leads)")
    asked_names = {n for path in (requested.path, requested.target) for n in path.split("/")}
    found = {n for path in (resolved.path, resolved.target) for n in path.split("/")}
    for name in found - asked_names - {""}:
        if name in shown or json.dumps(name)[1:-1] in shown:
            break
    else:
        return shown
    why = THROUGH_A_SYMLINK.format(operation=requested.operation, path=requested.path)
    waiting = text.find(WAITING)
    if waiting < 0:
        return f"portcullis: {why}"
    return f"portcullis: approval required ({why}){text[waiting:]}"


class SftpRelay:
    """One SFTP channel's relay between the client and the upstream."""

    def __init__(self, channel: Channel, session: ProxySession) -> None:
        self.channel = channel
        self.session = session
        self.home = ""  # the server's start directory: relative paths are relative to it
        # the account's home directories (its start directory and its home as the server
        # names it): given with every request, whose writes there the policy holds
        self.homes: list[str] = []
        self.handles: dict[bytes, OpenFile] = {}
        self.outstanding: dict[int, Pending] = {}
        self.operations = 0
        self._from_client = codec.Framer(codec.MAX_CLIENT_PACKET)
        self._from_upstream = codec.Framer(codec.MAX_UPSTREAM_PACKET)
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._queued = 0
        self._paused = False
        self._phase = "init"  # init → version → home (→ account) → relay
        self._offered: list[tuple[bytes, bytes]] = []
        self._named_home = False  # the upstream offered home-directory
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._resolving: dict[int, asyncio.Future[codec.Reply]] = {}  # the proxy's REALPATHs
        self._resolver_id = RESOLVER_IDS
        self._waited = False  # the last decision waited for a person's approval
        self._task = asyncio.ensure_future(self._run())
        self.failed = ""

    # -- bytes in -------------------------------------------------------------------------

    def from_client(self, data: bytes) -> None:
        try:
            packets = self._from_client.feed(data)
        except codec.Malformed as exc:
            self.fail(f"the client's SFTP stream does not read: {exc}")
            return
        for body in packets:
            self._queued += len(body)
            self._queue.put_nowait(body)
        if self._queued > MAX_QUEUED and not self._paused and self.channel.chan is not None:
            self._paused = True
            self.channel.chan.pause_reading()

    def client_eof(self) -> None:
        self._queue.put_nowait(None)

    def from_upstream(self, data: bytes) -> None:
        try:
            for body in self._from_upstream.feed(data):
                self._upstream_packet(body)
        except (codec.Malformed, SftpFailed) as exc:
            self.fail(f"the upstream's SFTP stream does not read: {exc}")

    def stop(self) -> None:
        self._task.cancel()
        if not self._ready.done():
            self._ready.cancel()

    # -- the client's requests, in order ----------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                body = await self._queue.get()
                if body is None:
                    self._upstream_write_eof()
                    return
                self._queued -= len(body)
                if self._paused and self._queued <= MAX_QUEUED // 2:
                    self._paused = False
                    if self.channel.chan is not None:
                        self.channel.chan.resume_reading()
                if self._phase == "init":
                    await self._start(body)
                else:
                    await self._request(body)
        except asyncio.CancelledError:
            pass
        except (SftpFailed, codec.Malformed) as exc:
            self.fail(str(exc))
        except Exception:
            log.exception("sftp relay failed")
            self.fail("the proxy's SFTP relay failed")

    async def _start(self, body: bytes) -> None:
        """The client's INIT: speak to the upstream first (VERSION, home directory)."""
        if codec.read_init(body) < codec.VERSION_SPOKEN:
            raise SftpFailed("SFTP versions before 3 are not spoken")
        self._phase = "version"
        self._upstream(codec.init())
        await self._ready
        self._to_client(codec.version(self._offered))

    async def _request(self, body: bytes) -> None:
        try:
            request = codec.read_request(body)
        except codec.Unsupported as exc:
            reason = f"{exc.what} is not understood by Portcullis: refused"
            self._refuse(exc.request_id, codec.FX_OP_UNSUPPORTED, "unsupported", reason)
            return
        except codec.Malformed as exc:
            request_id = int.from_bytes(body[1:5], "big") if len(body) >= 5 else 0
            self._refuse(request_id, codec.FX_BAD_MESSAGE, "malformed", str(exc))
            return
        if request.id in self.outstanding:
            self._refuse(request.id, codec.FX_BAD_MESSAGE, "malformed",
                         "a request id already in use")  # fmt: skip
            return
        if request.extension == b"limits@openssh.com":
            self._relay(request, Pending())
            return
        if request.handle is not None:
            await self._on_handle(request, request.handle)
            return
        try:
            operation = operation_of(request, self.home)
        except codec.Malformed as exc:
            self._refuse(request.id, codec.FX_BAD_MESSAGE, "malformed", str(exc))
            return
        ruling = await self._decide(operation)
        if not ruling.verdict.allowed:
            self._deny(request.id, ruling)
            return
        rulings = [ruling]
        resolved = await self._resolve(request, operation)
        if isinstance(resolved, str):
            self._refuse(request.id, codec.FX_PERMISSION_DENIED, operation.operation,
                         resolved, operation.path)  # fmt: skip
            return
        if resolved.decided != operation.decided:
            # through a symlink on the server: what it points to is decided too, and the
            # client is told of that decision without the names it resolved to (_through)
            ruling = await self._decide(resolved, through=operation)
            if not ruling.verdict.allowed:
                self._deny(request.id, ruling, through=(operation, resolved))
                return
            rulings.append(ruling)
            if self._waited and await self._resolve(request, operation) != resolved:
                self._refuse(request.id, codec.FX_PERMISSION_DENIED, operation.operation,
                             "its symlinks changed on the server while the request waited for "
                             "approval", operation.path)  # fmt: skip
                return
        names = self._names_masker(rulings)
        if isinstance(names, str):
            self._refuse(request.id, codec.FX_PERMISSION_DENIED, operation.operation, names,
                         operation.path)  # fmt: skip
            return
        pending = Pending(decision_id=ruling.decision_id)
        if request.kind in (codec.OPEN, codec.OPENDIR):
            mode = "dir" if request.kind == codec.OPENDIR else operation.operation
            readable, writable = (
                codec.open_access(request.number(1)) if request.kind == codec.OPEN
                else (False, False)
            )  # fmt: skip
            pending.opens = OpenFile(resolved.path, mode, ruling.decision_id, readable,
                                     writable, names=names)  # fmt: skip
        else:
            pending.names = names
        self._relay(request, pending, list(resolved.forwarded_paths))

    def _names_masker(self, rulings: list[Ruling]) -> Masker | str | None:
        """The detectors the names answered are masked by (the mask of a decision of the
        request: either of its paths'), None when none is masked, or why the mask cannot
        be kept (it names fields)."""
        rules = [rule for r in rulings if r.kind is VerdictKind.MASK for rule in r.verdict.mask]
        if not rules:
            return None
        if any(rule.field or rule.derived for rule in rules):
            return FIELDS_REFUSED
        return Masker(rules, self.channel.client.proxy.hash_key)

    async def _resolve(self, request: codec.Request, operation: Operation) -> Operation | str:
        """The request over its paths with the server's symlinks resolved (resolution_of
        says which components), or why they cannot be (the request is then refused)."""
        modes = resolution_of(request)
        asked = []
        for path, mode in zip(operation.forwarded_paths, modes, strict=True):
            if mode == "parent" and path != "/":
                head, name = path.rsplit("/", 1)
                asked.append((self._realpath(head or "/"), name))
            else:
                asked.append((self._realpath(path), ""))
        answers = await asyncio.gather(*(waiter for waiter, _ in asked))
        resolved: list[str] = []
        for path, answer, (_, name) in zip(operation.forwarded_paths, answers, asked, strict=True):
            if answer is None:
                return f"{path} cannot be resolved on the server (a missing directory or a loop)"
            resolved.append(joined(answer, name))
        sent = tuple(
            path if mode == "text" else real
            for path, real, mode in zip(operation.forwarded_paths, resolved, modes, strict=True)
        )
        out = operation_on(request, tuple(resolved), sent)
        if out.decided != operation.decided:
            out = replace(out, requested=operation.path)
        return out

    def _realpath(self, path: str) -> asyncio.Future[str | None]:
        """The server's SSH_FXP_REALPATH of a normal absolute path (every symlink in it
        followed, the last component allowed not to exist), normal; None: it has none."""
        while self._resolver_id in self.outstanding or self._resolver_id in self._resolving:
            self._resolver_id -= 1
        request_id, self._resolver_id = self._resolver_id, self._resolver_id - 1
        if self._resolver_id <= HOME_REQUEST:
            self._resolver_id = RESOLVER_IDS
        waiter: asyncio.Future[codec.Reply] = asyncio.get_running_loop().create_future()
        self._resolving[request_id] = waiter
        self._upstream(codec.realpath(request_id, path.encode("utf-8")))
        return asyncio.ensure_future(_resolved_name(waiter))

    async def _on_handle(self, request: codec.Request, handle: bytes) -> None:
        opened = self.handles.get(handle)
        if opened is None:
            self._refuse(request.id, codec.FX_PERMISSION_DENIED, "handle",
                         "not a handle opened through this channel")  # fmt: skip
            return
        if request.kind == codec.READ and not opened.readable:
            self._refuse(request.id, codec.FX_PERMISSION_DENIED, "read",
                         f"{opened.path} was not opened for reading", opened.path)  # fmt: skip
            return
        if request.kind == codec.WRITE:
            if not opened.writable:
                self._refuse(request.id, codec.FX_PERMISSION_DENIED, "write",
                             f"{opened.path} was not opened for writing", opened.path)  # fmt: skip
                return
            data = request.values("string")[0]
            opened.written_bytes += len(data)
        elif request.kind == codec.FSETSTAT:
            ruling = await self._decide(Operation("setstat", opened.path, **attrs_of(request)))
            if not ruling.verdict.allowed:
                self._deny(request.id, ruling)
                return
        elif request.kind == codec.CLOSE:
            del self.handles[handle]
            self._closed(opened)
        pending = Pending(reads=opened if request.kind == codec.READ else None)
        if request.kind == codec.READDIR:
            pending.names, pending.decision_id = opened.names, opened.decision_id
        self._relay(request, pending)

    async def _decide(self, operation: Operation, through: Operation | None = None) -> Ruling:
        """The request decided (`through`: the client's request, when `operation` is its
        paths resolved on the server: what the client is told names only the client's)."""
        self.operations += 1
        session = self.session
        self._waited = False

        def tell(text: str) -> None:
            self._waited = True
            self.channel.say(text if through is None else _through(text, through, operation))

        # the channel's own wait: the client leaving withdraws this request (not another
        # channel's of the session)
        attributes = {**operation.attributes(), "homes": self.homes}
        ruling: Ruling = await self.channel.decide_or_wait(
            session, KIND, operation.raw, attributes, tell, shape_of=None
        )
        if ruling.kind is VerdictKind.MASK and "read" in (operation.operation, *operation.flags):
            ruling = Ruling(Verdict.deny(MASK_REFUSED), ruling.decision_id,
                            ruling.policy_revision)  # fmt: skip
        session.record_command(operation.raw, ruling, kind=KIND, **attributes)
        return ruling

    def _deny(
        self, request_id: int, ruling: Ruling, through: tuple[Operation, Operation] | None = None
    ) -> None:
        """The client told its request was denied (`through`: the client's request and the
        paths it resolved to, which the decision was on: _through)."""
        reason = "; ".join(ruling.verdict.reasons) or "denied"
        if through is not None:
            told = _through(f"portcullis: {reason}", *through)
            reason = told.removeprefix("portcullis: ")
            if ruling.approval_id and ruling.approval_id not in reason:
                reason += f" (approval request {ruling.approval_id})"
        self._to_client(
            codec.status(request_id, codec.FX_PERMISSION_DENIED, f"portcullis: denied: {reason}")
        )

    def _refuse(
        self, request_id: int, code: int, operation: str, reason: str, path: str = ""
    ) -> None:
        """Answered by the proxy without a decision (not understood, not this channel's
        handle): recorded as a denied command of its own."""
        self.operations += 1
        ruling = Ruling(Verdict.deny(reason))
        raw = shlex.join([operation, *([path] if path else [])])
        details: dict[str, Any] = {"operation": operation, "refused": reason}
        if path:
            details["path"] = path
        self.session.record_command(raw, ruling, kind=KIND, **details)
        self._to_client(codec.status(request_id, code, f"portcullis: refused: {reason}"))

    def _relay(
        self, request: codec.Request, pending: Pending, paths: list[str] | None = None
    ) -> None:
        self.outstanding[request.id] = pending
        self._upstream(request.encode(paths))

    def _closed(self, opened: OpenFile) -> None:
        self.session.record_response(
            kind="ssh.sftp.close",
            decision_id=opened.decision_id,
            path=opened.path,
            mode=opened.mode,
            read_bytes=opened.read_bytes,
            written_bytes=opened.written_bytes,
        )

    # -- the upstream's replies ------------------------------------------------------------

    def _upstream_packet(self, body: bytes) -> None:
        reply = codec.read_reply(body)
        if self._phase == "version":
            if reply.kind != codec.VERSION or reply.version != codec.VERSION_SPOKEN:
                raise SftpFailed("the upstream does not speak SFTP version 3")
            self._offered = [(n, d) for n, d in reply.extensions if n in codec.EXTENSIONS]
            self._named_home = any(n == codec.HOME_DIRECTORY for n, _ in reply.extensions)
            self._phase = "home"
            self._upstream(codec.realpath(HOME_REQUEST, b"."))
            return
        if self._phase == "home":
            if reply.kind != codec.NAME or reply.id != HOME_REQUEST or not reply.names:
                raise SftpFailed("the upstream did not name the home directory")
            self.home = codec.normalise(reply.names[0], "/")
            self.homes = [self.home]
            if self._named_home:
                self._phase = "account"
                account = self.channel.client.upstream_account().encode("utf-8")
                self._upstream(codec.home_directory(HOME_REQUEST, account))
                return
            self._relaying()
            return
        if self._phase == "account":
            # a server that cannot name it (no such entry: a failure) leaves the start
            # directory alone; one that answers otherwise does not speak SFTP
            if reply.id != HOME_REQUEST or reply.kind not in (codec.NAME, codec.STATUS):
                raise SftpFailed("the upstream did not answer home-directory")
            if reply.kind == codec.NAME and reply.names:
                named = codec.normalise(reply.names[0], "/")
                self.homes = sorted({self.home, named})
            self._relaying()
            return
        if reply.id is not None and reply.id in self._resolving:
            waiter = self._resolving.pop(reply.id)
            if not waiter.done():
                waiter.set_result(reply)
            return
        if reply.id is None or reply.id not in self.outstanding:
            raise SftpFailed("a reply to no request")
        pending = self.outstanding.pop(reply.id)
        if pending.opens is not None and reply.kind == codec.HANDLE:
            if reply.handle in self.handles:
                raise SftpFailed("the upstream gave a handle already open")
            self.handles[reply.handle] = pending.opens
        elif pending.reads is not None and reply.kind == codec.DATA:
            pending.reads.read_bytes += reply.data_length
        if pending.names is not None and reply.kind == codec.NAME:
            self._to_client(self._masked_names(body, pending.names, pending.decision_id))
            return
        self._to_client(codec.frame(body))

    def _relaying(self) -> None:
        self._phase = "relay"
        if not self._ready.done():
            self._ready.set_result(None)

    def _masked_names(self, body: bytes, masker: Masker, decision_id: str) -> bytes:
        """A NAME answer with each filename and longname masked as a screen shows it, or
        SSH_FX_FAILURE when one is not text the detectors read."""
        request_id, entries = codec.read_names(body)
        counts: Counter[str] = Counter()
        out = []
        for name, long, attrs in entries:
            texts = []
            for raw in (name, long):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    return codec.status(request_id, codec.FX_FAILURE, UNREADABLE_NAME)
                if "\x00" in text:
                    return codec.status(request_id, codec.FX_FAILURE, UNREADABLE_NAME)
                masked, found = mask_shown(masker, text)
                counts.update(found)
                texts.append(masked.encode("utf-8"))
            out.append((texts[0], texts[1], attrs))
        if counts:
            self.session.record_masking(
                {f"detector:{d}": n for d, n in counts.items()}, decision_id
            )
        return codec.names(request_id, out)

    # -- out -------------------------------------------------------------------------------

    def _upstream(self, data: bytes) -> None:
        up = self.channel.up
        if up is None:
            raise SftpFailed("no upstream channel")
        up.write(data)

    def _upstream_write_eof(self) -> None:
        up = self.channel.up
        if up is not None:
            with contextlib.suppress(Exception):
                up.write_eof()

    def _to_client(self, data: bytes) -> None:
        self.channel.relay_to_client(data)

    def fail(self, reason: str) -> None:
        """End the channel: the stream cannot be relayed any further."""
        if self.failed:
            return
        self.failed = reason
        log.warning("sftp relay ended: %s", reason)
        self.channel.say(f"portcullis: {reason}")
        self.stop()
        for opened in self.handles.values():
            self._closed(opened)
        self.handles.clear()
        up = self.channel.up
        if up is not None:
            up.close()

    def finish(self) -> None:
        """The channel ended: what is still open is recorded, the relay stops."""
        self.stop()
        for opened in self.handles.values():
            self._closed(opened)
        self.handles.clear()
