"""The SSH protocol as it plugs into Portcullis: name, command kinds, options.

Owns the declaration portcullis.protocols reads (entry point `ssh`): the command kinds an
SSH proxy asks about (an exec's command line, a shell, a forwarding, a subsystem, an SFTP
operation), the options of an SSH connection besides the runtime's, the proxy that serves
it and the PDP's builder of input.command.ssh (the PDP parses an exec's command line
itself, with a shell parser, never from a proxy's argv). Light on purpose: the
configuration loader imports it; the proxy itself loads when served.
"""

from __future__ import annotations

from portcullis.protocols import Option, Protocol

OPTIONS = {
    "host_key_file": Option("path", None, "the proxy's SSH host key (OpenSSH private key)"),
    "host_key_dir": Option(
        "dir", None, "where a generated host key and the upstream's pinned key are kept (var/ssh)"
    ),
    "authorized_keys_file": Option(
        "path",
        None,
        "public-key login: client keys mapped to a subject and groups (read by the PDP, "
        'which decides; lines: subject="...",groups="a,b" ssh-ed25519 AAAA...)',
    ),
    "upstream_host_key_file": Option(
        "path", None, "the upstream's public host key (else pinned at first connection)"
    ),
    "shell_reaped": Option(
        "bool",
        True,
        "a shell runs as the account's login shell after the proxy's line reporting its "
        "session, reaped when it ends (its jobs too); false for an upstream whose login "
        "shell is no POSIX shell (an appliance's CLI): a shell is then asked as a shell, "
        "what it leaves running not ended (a root account's always is)",
    ),
}

SSH = Protocol(
    name="ssh",
    command_kinds=("ssh.exec", "ssh.shell", "ssh.forward", "ssh.subsystem", "ssh.sftp"),
    options=OPTIONS,
    serve="proxies.ssh.proxy:SshProxy",
    policy_input="pdp.domain.ssh_input:ssh_command",
    # a command line is decided whole; its decision record keeps its first 8 KiB, its size
    # and SHA-256 (a 200 KB line repeated must not swell the evidence)
    recorded_raw=8 * 1024,
)
