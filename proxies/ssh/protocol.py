"""The SSH protocol as it plugs into Portcullis: name and command kinds.

Owns the declaration portcullis.protocols reads (entry point `ssh`). No proxy serves it
in this build (`serve` is None): a connection of this type is declared, and not served.
"""

from __future__ import annotations

from portcullis.protocols import Protocol

SSH = Protocol(
    name="ssh",
    command_kinds=("ssh.exec", "ssh.shell", "ssh.forward", "ssh.sftp"),
)
