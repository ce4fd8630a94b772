"""Private files the configuration names, and inline secrets in it: who else may read them.

Owns the one permission check of a private key file (the PDP's signing key, proxy key and
dev issuer key, the TLS keys of the PDP and of its proxies, a proxy's credential file): a
permission for every user of the host stops start-up with a ConfigError naming the key, the
file and the `chmod` to run, as OpenSSH refuses such a key, unless
`pdp.insecure_readable_key_files: true` says so knowingly (then a warning each time one is
read); one its group may read is warned of (a Kubernetes Secret mounted 0440 for the pod's
group). And the notice for a configuration file that holds a secret written inline (not as
`${NAME}`) while every user may read the file: a warning naming the file, the keys and the
chmod (the file is also the deployment's documentation, so a refusal would stop every copy
of the example; `status` and `config check` show it for as long as it holds). Reads file
modes only; no other IO.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("portcullis.config")

KEY_FILES_OPT_OUT = "insecure_readable_key_files"
OTHERS_BITS = 0o007  # every user of the host: refused
GROUP_BITS = 0o070  # its group (a Kubernetes Secret mounted 0440 for the pod's fsGroup): warned
# the names under which the configuration holds a secret (lowercase): a credential's
# password / header value / token, Vault's auth, the shared HMAC secret, the masking
# key, a forwarder's Authorization header
SECRET_NAMES = frozenset(
    {
        "password",
        "value",
        "token",
        "secret",
        "secret_id",
        "shared_secret",
        "hash_key",
        "private_key",
        "api_key",
        "authorization",
        "proxy-authorization",
        "x-api-key",
    }
)
# `${NAME}`, as written or as the loader protects it before parsing the YAML
_ENV_REF = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}|__portcullis_env_[0-9a-f]+__")


def check_key_file(path: Path, key: str, allow_readable: bool = False) -> None:
    """ConfigError naming `key` if every user may read (or write) the key file at path,
    unless allow_readable: then a warning, as for a file its group may read. A missing
    file is the caller's to report."""
    from portcullis.config import ConfigError  # (config imports this module)

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if mode & OTHERS_BITS:
        said = (
            f"{path} is readable by other users (mode {mode & 0o777:03o}): whoever can"
            f" read it holds the key; run `chmod 600 {path}`"
        )
        if not allow_readable:
            raise ConfigError(key, f"{said} (or, knowing that, set pdp.{KEY_FILES_OPT_OUT}: true)")
        log.warning("INSECURE %s: %s (pdp.%s: true)", key, said, KEY_FILES_OPT_OUT)
    elif mode & GROUP_BITS:
        log.warning(
            "%s: %s is readable by its group (mode %03o); chmod 600 it unless the group is"
            " this service's alone",
            key,
            path,
            mode & 0o777,
        )


def inline_secrets(raw: Any, where: str = "") -> Iterator[str]:
    """The keys of a configuration tree (as read, before `${NAME}` expansion) holding a
    secret written inline: a non-empty string with no `${NAME}` reference in it."""
    if isinstance(raw, dict):
        for name, value in raw.items():
            key = f"{where}.{name}" if where else str(name)
            if (
                isinstance(name, str)
                and name.lower() in SECRET_NAMES
                and isinstance(value, str)
                and value.strip()
                and not _ENV_REF.search(value)
            ):
                yield key
            else:
                yield from inline_secrets(value, key)
    elif isinstance(raw, list):
        for i, value in enumerate(raw):
            yield from inline_secrets(value, f"{where}[{i}]")


def exposed_inline_secrets(path: Path, raw: Any) -> str:
    """The warning for a configuration file others may read that holds inline secrets,
    or "" (none, or the file is private)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return ""
    if not mode & OTHERS_BITS:
        return ""
    keys = list(inline_secrets(raw))
    if not keys:
        return ""
    shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
    return (
        f"INSECURE configuration {path} is readable by other users (mode {mode & 0o777:03o})"
        f" and holds secrets inline ({shown}): run `chmod 600 {path}`, or give each as"
        " ${NAME} from the environment"
    )
