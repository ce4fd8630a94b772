"""Ed25519 key files of the PDP: created on first start with 0600 permissions, else read.

Owns the on-disk form (PKCS#8 PEM) of the PDP signing key and the dev issuer key.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from portcullis.config_keyfiles import check_key_file

log = logging.getLogger("portcullis.keys")


def load_or_create_ed25519(
    path: Path, key: str = "pdp.signing_key", allow_readable: bool = False
) -> Ed25519PrivateKey:
    """Read the PEM key at `path`, or create it (0600, parents 0700) if it does not exist.

    A key others may read stops the caller (ConfigError naming `key` and the chmod to run)
    unless allow_readable (pdp.insecure_readable_key_files): then a warning.

    Creation goes through a temporary file and a hard link so two processes starting at
    once never read a half-written key: the loser of the race reads the winner's file.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
            os.link(tmp, path)
            log.info("created key %s", path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    check_key_file(path, key, allow_readable)  # (a file that is no such key: that first)
    return loaded
