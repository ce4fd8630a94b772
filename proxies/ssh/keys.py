"""The SSH proxy's keys: its own host key, the upstream's host key, the session's key.

Owns which keys the proxy presents and trusts:

- the proxy's host key: `host_key_file` when configured, else an ed25519 key generated
  once into `host_key_dir` (default var/ssh) as `<connection>.host_key` (mode 0600) and
  kept, so clients see the same host key across restarts; its fingerprint is logged at
  start (`fingerprint()`).
- the upstream's host key: `upstream_host_key_file` when configured; else the key the
  upstream showed at the first connection is pinned into `host_key_dir` as
  `<connection>.upstream.pub` (trust on first use, as OpenSSH asks a person to), and a
  later connection to a server with another key fails.
- the session's upstream key, from its credential lease: an OpenSSH/PEM private key (and
  a certificate, when Vault's SSH CA signed it), or a `private_key_file` path from the
  static provider. It lives in this process's memory only; `key_secrets()` lists the
  forms of it the client output is scanned for; `certificate_end()` says when its
  certificate stops letting the session in (sshd reads a certificate at login only).
- the clients' keys of a public-key login: those `authorized_keys_file` maps (a filter
  before the PDP's own reading), and the line mapping each, which a session logged in with
  a key must keep finding as it was (`mapped_line()`).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import asyncssh
from cryptography.hazmat.primitives.serialization import SSHCertificate, load_ssh_public_identity

from portcullis.config import ConnectionSettings
from proxies.runtime.credentials import CredentialLease, CredentialUnavailable

DEFAULT_KEY_DIR = "var/ssh"


def key_dir(connection: ConnectionSettings) -> Path:
    return Path(connection.options.get("host_key_dir") or DEFAULT_KEY_DIR)


def host_key(connection: ConnectionSettings) -> asyncssh.SSHKey:
    """The proxy's host key for this connection (generated and kept when not configured)."""
    configured = connection.options.get("host_key_file")
    if configured:
        return asyncssh.read_private_key(configured)
    path = key_dir(connection) / f"{connection.name}.host_key"
    if path.exists():
        return asyncssh.read_private_key(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519", comment=f"portcullis {connection.name}")
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key())
    os.replace(temporary, path)
    return key


def kept_fingerprint(connection: ConnectionSettings) -> str | None:
    """The fingerprint of the host key this connection's proxy presents, if it has one
    yet (`portcullis status`); never generates one."""
    configured = connection.options.get("host_key_file")
    path = Path(configured) if configured else key_dir(connection) / f"{connection.name}.host_key"
    try:
        return fingerprint(asyncssh.read_private_key(str(path)))
    except (OSError, ValueError, asyncssh.KeyImportError):
        return None


def fingerprint(key: asyncssh.SSHKey) -> str:
    """SHA256:... as `ssh-keygen -lf` prints it."""
    return str(key.get_fingerprint("sha256"))


class UpstreamTrust:
    """The upstream host key the proxy accepts, configured or pinned at first use."""

    def __init__(self, connection: ConnectionSettings) -> None:
        configured = connection.options.get("upstream_host_key_file")
        self.configured = bool(configured)
        self.path = (
            Path(configured)
            if configured
            else key_dir(connection) / f"{connection.name}.upstream.pub"
        )

    def known_hosts(self) -> Any:
        """asyncssh's known_hosts argument: the trusted key, or None before the first pin."""
        if not self.path.exists():
            if self.configured:
                raise CredentialUnavailable(f"upstream host key file {self.path} is missing")
            return None
        return ([asyncssh.import_public_key(self.path.read_bytes())], [], [])

    def pin(self, key: asyncssh.SSHKey | None) -> None:
        """Keep the key the upstream showed (only when nothing was configured or pinned)."""
        if key is None or self.configured or self.path.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(key.export_public_key())


def client_keys(lease: CredentialLease) -> list[Any]:
    """asyncssh's client_keys for the lease: [(key, certificate)] or [key]; [] without one.
    Raises CredentialUnavailable (no secret in the reason) when the key does not load."""
    text = lease.private_key
    if not text:
        return []
    try:
        if "-----BEGIN" in text:
            key = asyncssh.import_private_key(text)
        else:
            key = asyncssh.read_private_key(text)
    except (OSError, ValueError, asyncssh.KeyImportError):
        raise CredentialUnavailable("the upstream private key could not be loaded") from None
    certificate = lease.extra.get("certificate") if lease.extra else None
    if certificate:
        try:
            return [(key, asyncssh.import_certificate(str(certificate)))]
        except (ValueError, asyncssh.KeyImportError):
            raise CredentialUnavailable("the upstream certificate could not be loaded") from None
    return [key]


def certificate_end(lease: CredentialLease) -> float | None:
    """When the lease's certificate expires (its valid_before, in time.time()'s clock);
    None without one. sshd checks a certificate's validity when it authenticates the
    connection and never again, so a connection made with it would run commands past that
    time: the session must end then. A certificate that does not read (client_keys has
    refused it already) ends now."""
    text = lease.extra.get("certificate") if lease.extra else None
    if not text:
        return None
    try:
        cert = load_ssh_public_identity(str(text).encode())
    except ValueError:
        return 0.0
    if not isinstance(cert, SSHCertificate):
        return 0.0
    return float(cert.valid_before)


@functools.lru_cache(maxsize=16)
def _format_lines(algorithm: str) -> frozenset[str]:
    """The lines a fresh key of this type shows in OpenSSH format (made once per type)."""
    other = asyncssh.generate_private_key(algorithm)
    return frozenset(other.export_private_key().decode().splitlines())


def key_secrets(lease: CredentialLease, keys: list[Any]) -> list[str]:
    """What the client output must never carry: the lease's password or value, and each
    line of the private key's text that is this key's own (lines every key of its type
    and format shares — the format's header — would only raise false alarms, and every
    extra pattern costs the scan of each byte a client is sent)."""
    out = [s for s in (lease.password, lease.value) if s]
    text = lease.private_key
    if text and "-----BEGIN" not in text:
        try:
            text = Path(text).read_text()
        except (OSError, UnicodeDecodeError):
            text = ""
    shared: set[str] = set()
    for entry in keys:
        key = entry[0] if isinstance(entry, tuple) else entry
        shared |= _format_lines(str(key.get_algorithm()))
    out.extend(
        line.strip()
        for line in text.splitlines()
        if len(line.strip()) >= 16 and "-----" not in line and line.strip() not in shared
    )
    return out


def mapped_fingerprints(connection: ConnectionSettings) -> frozenset[str]:
    """The fingerprints of the keys in the connection's `authorized_keys_file` (public-key
    login; the proxy's filter before the PDP maps the key). Read again whenever it changed,
    so an edit takes effect at the next login; a file that does not read maps nothing."""
    return frozenset(_mapped_lines(connection))


def mapped_line(connection: ConnectionSettings, key_fingerprint: str) -> str | None:
    """The `authorized_keys_file` line that maps the key (its words, as the file has them);
    None when no line does, or the file does not read. A session logged in with the key
    compares it with the line of its login (proxy.py): a key removed, or given another
    subject or groups, ends the sessions it opened."""
    return _mapped_lines(connection).get(key_fingerprint)


# the file's lines by fingerprint, kept while the file's stat is the same (the change time
# too: an edit that keeps size and mtime, `cp -p`, must not keep a removed line in force)
_read: dict[str, tuple[tuple[int, ...], dict[str, str]]] = {}


def _mapped_lines(connection: ConnectionSettings) -> dict[str, str]:
    path = connection.options.get("authorized_keys_file")
    if not path:
        return {}
    try:
        stat = os.stat(path)
    except OSError:
        return {}
    stamp = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    kept = _read.get(path)
    if kept is not None and kept[0] == stamp:
        return kept[1]
    found: dict[str, str] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    for line in lines:
        if line.lstrip().startswith("#"):  # as the PDP reads the file: a comment maps nothing
            continue
        words = line.split()
        for start, word in enumerate(words):
            if word.startswith(("ssh-", "ecdsa-", "sk-")) and start + 1 < len(words):
                text = " ".join(words[start : start + 2])
                try:
                    print_ = fingerprint(asyncssh.import_public_key(text))
                except (asyncssh.KeyImportError, ValueError):
                    break
                # a key mapped twice maps to nothing the PDP reads (it refuses every key
                # login then): "" is no login's line
                found[print_] = "" if print_ in found else " ".join(words)
                break
    _read[path] = (stamp, found)
    return found
