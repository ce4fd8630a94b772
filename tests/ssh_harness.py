"""A real OpenSSH server (Debian openssh-server, /usr/sbin/sshd) for tests and benchmarks.

Started on a free 127.0.0.1 port with its own configuration and host key under a temp
dir, `UsePAM no`, public-key login only for the current user through an authorized_keys
file the harness writes (the key Portcullis holds), optionally a trusted user CA (Vault's
SSH CA); its log at VERBOSE says which sessions started. Also: the OpenSSH client as a
test drives it (password from SSH_ASKPASS with SSH_ASKPASS_REQUIRE=force).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

from pdp_harness import free_port

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")  # compiled into Debian's sshd; its init script makes it


def keygen(path: Path, comment: str = "portcullis-test") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )
    return path


class Sshd:
    """One sshd process; `start()` returns once it accepts connections."""

    def __init__(self, root: Path, trusted_ca: str = "") -> None:
        self.dir = root
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.user = getpass.getuser()
        self.host_key = keygen(self.dir / "host_ed25519", "sshd-host")
        self.user_key = keygen(self.dir / "user_ed25519", "portcullis-upstream")
        (self.dir / "authorized_keys").write_text((self.dir / "user_ed25519.pub").read_text())
        self.log = self.dir / "sshd.log"
        self.trusted_ca = trusted_ca
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host_public_key(self) -> Path:
        return self.dir / "host_ed25519.pub"

    def config(self) -> str:
        lines = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}",
            f"PidFile {self.dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
            "UsePAM no",
            "StrictModes no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            "LogLevel VERBOSE",
            "AllowTcpForwarding yes",
            "X11Forwarding no",
            "PrintMotd no",
            "PrintLastLog no",
            "Subsystem sftp internal-sftp",
            # honoured here so a proxy that passed a client's environment on would show it
            "AcceptEnv BASH_ENV LD_PRELOAD",
            "MaxSessions 64",
            "MaxStartups 64:30:128",
        ]
        if self.trusted_ca:
            (self.dir / "ca.pub").write_text(self.trusted_ca.strip() + "\n")
            lines.append(f"TrustedUserCAKeys {self.dir / 'ca.pub'}")
        return "\n".join(lines) + "\n"

    def start(self) -> Sshd:
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        config = self.dir / "sshd_config"
        config.write_text(self.config())
        subprocess.run([SSHD, "-t", "-f", str(config)], check=True)
        self.process = subprocess.Popen(
            [SSHD, "-D", "-f", str(config), "-E", str(self.log)],
            stdin=subprocess.DEVNULL,
        )
        for _ in range(500):
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.01)
        raise RuntimeError("sshd did not start listening")

    def sessions_started(self) -> int:
        """How many session requests (exec, shell, subsystem) sshd began."""
        return self.log_text().count("Starting session:")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


def askpass(dir: Path, secret: str) -> dict[str, str]:
    """The environment that makes OpenSSH's ssh/scp/sftp answer a password prompt with
    `secret` (through SSH_ASKPASS, forced, no terminal needed)."""
    holder = dir / "askpass.secret"
    holder.write_text(secret)
    holder.chmod(0o600)
    script = dir / "askpass.sh"
    script.write_text(f"#!/bin/sh\ncat '{holder}'\n")
    script.chmod(0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSH_")}
    env.update(SSH_ASKPASS=str(script), SSH_ASKPASS_REQUIRE="force", DISPLAY=":0")
    return env


def client_options(port: int, known_hosts: Path | None = None) -> list[str]:
    """Options for OpenSSH clients towards a proxy on 127.0.0.1:port, password only."""
    checking = (
        ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}"]
        if known_hosts
        else ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    )
    return [
        "-F", "/dev/null",
        *checking,
        "-o", "PreferredAuthentications=password,keyboard-interactive",
        "-o", "PubkeyAuthentication=no",
        "-o", "IdentityAgent=none",
        "-o", "NumberOfPasswordPrompts=1",
        "-o", "LogLevel=ERROR",
    ]  # fmt: skip


async def run_client(
    argv: list[str], env: dict[str, str], stdin: bytes = b""
) -> tuple[int, bytes, bytes]:
    """Run an OpenSSH client to completion beside the event loop (the proxy and the PDP
    run in this loop): (exit status, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # no controlling terminal: askpass it is
    )
    out, err = await process.communicate(stdin)
    assert process.returncode is not None
    return process.returncode, out, err


@contextlib.asynccontextmanager
async def line_echo() -> AsyncIterator[int]:
    """A local TCP server that answers each connection's first line with that line and
    closes it: the far end of a forward. Yields its port."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
