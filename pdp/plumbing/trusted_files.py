"""Whether a file that says who someone is may be changed by users other than the PDP's.

Owns `others_may_write`: the check, as sshd's StrictModes makes for authorized_keys, that
a file deciding identities (an SSH connection's key mapping, identity.jwks_file) is the
PDP's user's or root's, not writable by every user, and not in a directory every user may
write without the sticky bit (where it can be replaced). No IO beyond stat.
"""

from __future__ import annotations

import os


def others_may_write(path: str, stat: os.stat_result | None = None) -> str:
    """Why users other than the PDP's (and root) may change what the file at `path` says,
    "" when they may not. `stat`: the file's, when the caller has it. Raises OSError."""
    stat = os.stat(path) if stat is None else stat
    if stat.st_uid not in (os.geteuid(), 0):
        return f"{path} belongs to another user (uid {stat.st_uid})"
    if stat.st_mode & 0o002:
        return f"{path} is writable by every user; chmod o-w it"
    directory = os.path.dirname(os.path.realpath(path)) or "."
    held = os.stat(directory)
    if held.st_mode & 0o002 and not held.st_mode & 0o1000:
        return f"{directory} (holding {path}) is writable by every user"
    return ""
