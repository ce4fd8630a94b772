"""Who is asking, for an SSH client that logged in with a public key: the PDP's own mapping.

Owns the rule that a public-key login becomes an identity only through the mapping the PDP
itself reads: the `authorized_keys_file` of the connection in the PDP's configuration, an
authorized_keys-like file whose lines are

    subject="alice@example.com",groups="dba,pii-readers" ssh-ed25519 AAAAC3Nz... comment

The proxy proves the client holds the key (the SSH signature) and presents the public key
(OpenSessionRequest attributes `ssh_public_key`, with no token); the PDP finds the key's
line for that connection and takes subject and groups from it — never from anything the
proxy says of the subject. A key not in the file, a connection without the option or not
of type ssh, a line that does not read: `TokenRejected`, as a bad token is. So is a file
others may change (another user's, writable by all, or in a directory all may write
without the sticky bit). The file is read again when it changes (a removed line stops
working at the next login).

No network IO; the file is read from disk.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass

from pdp.domain.identity import Identity, TokenRejected, unprintable
from pdp.plumbing.trusted_files import others_may_write

KEY_ATTRIBUTE = "ssh_public_key"
OPTION = re.compile(r'\s*([A-Za-z-]+)="([^"]*)"\s*(,|(?=\s)|$)')
KEY_TYPES = frozenset({
    "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
})  # fmt: skip
MAX_KEY_TEXT = 16 * 1024


@dataclass(frozen=True)
class MappedKey:
    subject: str
    groups: tuple[str, ...]
    fingerprint: str


def fingerprint(blob: bytes) -> str:
    """SHA256:... of a public key blob, as `ssh-keygen -lf` prints it."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def key_blob(text: str) -> tuple[str, bytes]:
    """(type, blob) of `type base64 [comment]`. Raises ValueError."""
    fields = text.split()
    if len(fields) < 2 or fields[0] not in KEY_TYPES:
        raise ValueError("not an SSH public key")
    try:
        blob = base64.b64decode(fields[1], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the key's base64 does not read") from None
    # the blob names its own type first (RFC 4253 section 6.6): it must be the line's
    if len(blob) < 4 or blob[4 : 4 + int.from_bytes(blob[:4], "big")] != fields[0].encode():
        raise ValueError("the key's type and its blob disagree")
    return fields[0], blob


def parse_line(line: str) -> MappedKey:
    """One line of the mapping file. Raises ValueError."""
    options: dict[str, str] = {}
    rest = line.strip()
    while rest and rest.split(None, 1)[0] not in KEY_TYPES:
        match = OPTION.match(rest)
        if match is None:
            raise ValueError('options must be name="value" pairs before the key')
        if match[1] in options:
            # which of the two the line means is not for the PDP to guess (the last one
            # was taken: `subject="kim",groups="readonly",groups="dba"` gave dba)
            raise ValueError(f"the option {match[1]} is given twice")
        options[match[1]] = match[2]
        rest = rest[match.end() :].strip()
    _, blob = key_blob(rest)
    subject = options.get("subject", "").strip()
    if not subject:
        raise ValueError('no subject="..." for the key')
    unknown = set(options) - {"subject", "groups"}
    if unknown:
        raise ValueError(f"options not understood: {', '.join(sorted(unknown))}")
    groups = tuple(g.strip() for g in options.get("groups", "").split(",") if g.strip())
    # held to what a token's subject and groups are (identity.py): one that prints as
    # another's (a right-to-left override, a zero-width space) or breaks the store (NUL)
    if unprintable(subject) or any(unprintable(g) for g in groups):
        raise ValueError("the subject or a group holds a control or format character")
    return MappedKey(subject, groups, fingerprint(blob))


def read_mapping(path: str) -> dict[str, MappedKey]:
    """fingerprint → MappedKey from the file (blank lines and # comments skipped). Raises
    ValueError naming the line that does not read (fail closed: no half-read mapping)."""
    mapping: dict[str, MappedKey] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                mapped = parse_line(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None
            if mapped.fingerprint in mapping:
                raise ValueError(f"{path}:{number}: the key is mapped twice")
            mapping[mapped.fingerprint] = mapped
    return mapping


class KeyIdentities:
    """The mapping files of the PDP's SSH connections, read when they change."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple[int, ...], dict[str, MappedKey]]] = {}

    def mapping(self, path: str) -> dict[str, MappedKey]:
        try:
            stat = os.stat(path)
            problem = others_may_write(path, stat)
        except OSError:
            raise TokenRejected("public-key login is not available") from None
        if problem:
            # whoever may write the file (or swap it) maps a key of their own to any
            # subject in any group: what sshd's StrictModes refuses for authorized_keys
            raise TokenRejected("public-key login is not available", problem)
        # the change time too: an edit that keeps size and mtime (`cp -p`, `rsync -t`, a
        # touch -r after it) must not keep a revoked key's line in force; ctime cannot be set
        stamp = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            mapping = read_mapping(path)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise TokenRejected("public-key login is not available", str(exc)) from None
        self._cache[path] = (stamp, mapping)
        return mapping

    def identify(self, connection_type: str, mapping_file: str, presented: str) -> Identity:
        """The identity a presented public key maps to on this connection."""
        if connection_type != "ssh" or not mapping_file:
            raise TokenRejected("public-key login is not configured for this connection")
        if len(presented) > MAX_KEY_TEXT:
            raise TokenRejected("malformed public key")
        try:
            _, blob = key_blob(presented)
        except ValueError as exc:
            raise TokenRejected(f"malformed public key ({exc})") from None
        print_ = fingerprint(blob)
        mapped = self.mapping(mapping_file).get(print_)
        if mapped is None:
            raise TokenRejected(f"the key {print_} is not mapped to an identity")
        return Identity(
            subject=mapped.subject,
            groups=mapped.groups,
            issuer="ssh-publickey",
            claims={"sub": mapped.subject, "groups": list(mapped.groups), "ssh_key": print_},
        )
