"""Attacks on the proxies' credential handling and operational surfaces (probe p1).

- A Vault SSH role whose default_extensions grant agent / X11 forwarding and ~/.ssh/rc, or
  whose ttl is the mount's (32 days): the proxy must refuse such a certificate, which
  cannot be revoked when the session ends and would grant, leaked with its key, what the
  proxy never lets a session do.
- The spool: a restarted proxy with the pid of the crashed one truncated the evidence the
  crashed one left; a spool directory others may write let a local user's forged entries
  (another session's close, invented events) be delivered to the PDP as the proxy's.
- A database role without default_ttl: a proxy SIGKILLed with a session open left its
  dynamic login alive for the mount's 32 days; a token role without token_ttl did the same
  with each session's Vault token.
- `recording: false` turned session evidence off silently.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import hvac
import hvac.exceptions
import pytest
import yaml
from cryptography.hazmat.primitives.serialization import SSHCertificate, load_ssh_public_identity
from openbao import (
    OpenBao,
    configure_database,
    drop_dynamic_roles,
    ssh_ca_role,
)
from pg_harness import running_gateway
from test_cli import write_config

from portcullis.config import ConnectionSettings, VaultSettings, load_config
from proxies.launcher import announce_unrecorded
from proxies.runtime.credentials import CredentialUnavailable
from proxies.runtime.spool import Entry, Spool, SpoolFull, SpoolUnsafe
from proxies.runtime.vault import VaultProvider


def _provider(bao: OpenBao, **credentials: object) -> VaultProvider:
    connection = ConnectionSettings(
        name="t",
        type="ssh",
        listen="127.0.0.1:1",
        upstream="127.0.0.1:2",
        credentials={"provider": "vault", "ref": "ssh/sign/web", **credentials},
    )
    return VaultProvider(connection, VaultSettings(bao.addr, {"method": "token",
                                                             "token": bao.root_token}))  # fmt: skip


@pytest.mark.integration
async def test_ssh_certificate_with_forwarding_extensions_is_refused(bao: OpenBao) -> None:
    ssh_ca_role(
        bao,
        ttl="5m",
        default_extensions={
            "permit-pty": "",
            "permit-agent-forwarding": "",
            "permit-X11-forwarding": "",
            "permit-user-rc": "",
        },
    )
    provider = _provider(bao, username="deploy")
    try:
        with pytest.raises(CredentialUnavailable) as refused:
            await provider.acquire("ssh/sign/web", "s1")
    finally:
        await provider.close()
    text = str(refused.value)
    assert "permit-agent-forwarding" in text and "permit-X11-forwarding" in text
    assert "permit-user-rc" in text and "BEGIN" not in text


@pytest.mark.integration
async def test_ssh_certificate_for_the_mounts_32_days_is_refused(bao: OpenBao) -> None:
    ssh_ca_role(bao, default_extensions={"permit-pty": ""})  # no ttl: the mount's default
    provider = _provider(bao, username="deploy")
    try:
        with pytest.raises(CredentialUnavailable, match="valid for longer than 3600s"):
            await provider.acquire("ssh/sign/web", "s1")
    finally:
        await provider.close()


@pytest.mark.integration
async def test_ssh_certificate_ttl_is_asked_for_and_the_principal_kept(bao: OpenBao) -> None:
    ssh_ca_role(bao, default_extensions={"permit-pty": "", "permit-port-forwarding": ""})
    provider = _provider(bao, certificate_ttl=120)  # no username: the role's default_user
    try:
        before = time.time()
        lease = await provider.acquire("ssh/sign/web", "s1")
    finally:
        await provider.close()
    cert = load_ssh_public_identity(lease.extra["certificate"].encode())
    assert isinstance(cert, SSHCertificate)
    assert cert.valid_principals == [b"deploy"] and lease.username == "deploy"
    assert cert.valid_before <= before + 120 + 60
    assert set(cert.extensions) == {b"permit-pty", b"permit-port-forwarding"}


# -- the spool: evidence the PDP has not taken yet -------------------------------------------


def _spooled(line_session: str) -> bytes:
    return Entry(line_session, events='[{"kind":"command","raw":"SELECT 1"}]').line()


def test_spool_left_by_a_process_with_our_pid_is_delivered_not_truncated(tmp_path: Path) -> None:
    """A container restarts its proxy with the same pid: the spool file the crashed one
    left has this process's name; its undelivered evidence must be adopted, not emptied."""
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o700)
    spool = Spool(directory, "c")
    fd = os.open(spool.path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, _spooled("crashed-session"))
    os.close(fd)
    spool.open()
    try:
        assert [e.session_id for e in spool.entries] == ["crashed-session"]
        assert spool.path.read_bytes() == _spooled("crashed-session")
    finally:
        spool.close()


def test_spool_in_a_directory_others_may_write_refuses_to_start(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir()
    directory.chmod(0o777)  # e.g. spool_dir: /tmp/portcullis
    forged = directory / "c-1-1.spool"  # a local user's: a session closed, events invented
    forged.write_bytes(Entry("victim-session", close={"reason": "client_disconnect"}).line())
    spool = Spool(directory, "c")
    with pytest.raises(SpoolUnsafe):
        spool.open()
    spool.close()
    assert not spool.entries and forged.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs another uid to own the planted file")
def test_spool_files_of_another_user_or_links_are_not_adopted(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o700)
    other = directory / "c-1-1.spool"
    other.write_bytes(_spooled("forged-by-nobody"))
    os.chown(other, 65534, 65534)
    open_to_all = directory / "c-2-1.spool"
    open_to_all.write_bytes(_spooled("forged-0666"))
    open_to_all.chmod(0o666)
    target = tmp_path / "elsewhere"
    target.write_bytes(_spooled("through-a-link"))
    (directory / "c-3-1.spool").symlink_to(target)
    spool = Spool(directory, "c")
    spool.open()
    try:
        assert not spool.entries
    finally:
        spool.close()
    assert target.exists()


def test_spool_directory_others_may_only_read_is_used(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir()
    directory.chmod(0o755)  # made by hand under umask 022: nobody else can plant files
    spool = Spool(directory, "c")
    spool.open()
    try:
        assert os.stat(spool.path).st_mode & 0o777 == 0o600
    finally:
        spool.close()


# -- a dynamic database login left behind by a proxy killed before it revoked ----------------


@pytest.mark.integration
async def test_lease_left_by_a_killed_proxy_runs_out_within_lease_ttl(
    bao: OpenBao, vault_admin: tuple[str, str]
) -> None:
    """A role without default_ttl leases for the mount's 32 days; a proxy SIGKILLed with a
    session open revokes nothing, and the login would live for a month."""
    role = "ro" + secrets.token_hex(3)
    try:
        configure_database(bao.client(), "postgres", vault_admin, role, default_ttl="", max_ttl="")
        provider = _provider(bao, ref=f"database/creds/{role}")
        lease = await provider.acquire(f"database/creds/{role}", "s1")
        # the kill: the renewer dies with the process, and nothing is revoked
        for task in provider._renewers.values():
            task.cancel()
        ttl = bao.client().sys.read_lease(lease.lease_id)["data"]["ttl"]
        assert 0 < ttl <= 900
    finally:
        drop_dynamic_roles(role)


@pytest.mark.integration
async def test_lease_ttl_is_configurable_per_connection(
    bao: OpenBao, vault_admin: tuple[str, str]
) -> None:
    role = "ro" + secrets.token_hex(3)
    try:
        configure_database(bao.client(), "postgres", vault_admin, role, default_ttl="1h")
        provider = _provider(bao, ref=f"database/creds/{role}", lease_ttl=60)
        try:
            lease = await provider.acquire(f"database/creds/{role}", "s1")
            assert lease.extra["lease_duration"] == 60
            assert 0 < bao.client().sys.read_lease(lease.lease_id)["data"]["ttl"] <= 60
        finally:
            await provider.close()
    finally:
        drop_dynamic_roles(role)


@pytest.mark.integration
async def test_token_left_by_a_killed_proxy_runs_out_within_lease_ttl(bao: OpenBao) -> None:
    """auth/token/create/<role> from a role without token_ttl: the session's token lived
    768h; a proxy killed before revoking it left it usable for a month."""
    bao.client().auth.token.create_or_update_role("billing-agent", allowed_policies=["default"])
    provider = _provider(bao, ref="auth/token/create/billing-agent", header="Authorization")
    lease = await provider.acquire("auth/token/create/billing-agent", "s1")
    for task in provider._renewers.values():  # the kill: nothing revoked
        task.cancel()
    info = bao.client().auth.token.lookup(lease.value)["data"]
    assert 0 < info["ttl"] <= 900


@pytest.mark.integration
async def test_token_of_a_long_session_is_renewed_and_revoked_at_its_end(bao: OpenBao) -> None:
    bao.client().auth.token.create_or_update_role("billing-agent", allowed_policies=["default"])
    provider = _provider(
        bao, ref="auth/token/create/billing-agent", header="Authorization", lease_ttl=3
    )
    try:
        lease = await provider.acquire("auth/token/create/billing-agent", "s1")
        await asyncio.sleep(5)  # past its 3 s: only renewal keeps it
        assert bao.client().auth.token.lookup(lease.value)["data"]["ttl"] > 0
        await provider.release(lease)
        with pytest.raises(hvac.exceptions.VaultError):
            bao.client().auth.token.lookup(lease.value)
    finally:
        await provider.close()


# -- `recording: false`: evidence off, which must not be silent ------------------------------


def test_recording_off_is_announced_at_start_and_in_config_check(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`recording: false` (for benchmarks) on a connection: no session event is recorded,
    and a command answered from the decision cache is then in no audit record at all. It
    was silent — no log line, nothing in `config check` — where `enforce: false` is loud."""
    path, raw = write_config(tmp_path)
    raw["connections"][0]["recording"] = False
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    connection = config.connections[0]
    with caplog.at_level(logging.WARNING, logger="portcullis.up"):
        assert announce_unrecorded(connection)
        assert not announce_unrecorded(config.connections[1])
    assert f"connection {connection.name}: RECORDING OFF" in caplog.text
    env = {**os.environ, "ORDERS_DB_PASSWORD": "x", "BILLING_TOKEN": "y"}
    checked = subprocess.run(
        [sys.executable, "-m", "pdp.cli", "config", "check", "-c", str(path)],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    line = next(x for x in checked.stdout.splitlines() if f"proxy {connection.name} " in x)
    assert "RECORDING OFF" in line


# -- the proxy's own Vault identity ----------------------------------------------------------


@pytest.mark.integration
async def test_vault_token_file_readable_by_others_is_refused(bao: OpenBao, tmp_path: Path) -> None:
    """vault.auth.token_file at 0644: any local user reads the proxy's Vault token (every
    dynamic credential it may mint); the proxy used it without a word."""
    bao.client().secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "value-1"})
    token_file = tmp_path / "vault-token"
    token_file.write_text(bao.root_token + "\n")
    token_file.chmod(0o644)
    connection = ConnectionSettings(
        name="t", type="http", listen="127.0.0.1:1", upstream="http://127.0.0.1:2",
        credentials={"provider": "vault", "ref": "secret/data/app#v", "header": "X-Key"},
    )  # fmt: skip
    auth = {"method": "token", "token_file": str(token_file)}
    provider = VaultProvider(connection, VaultSettings(bao.addr, auth))
    try:
        with pytest.raises(CredentialUnavailable, match="readable by other users") as refused:
            await provider.acquire("secret/data/app#v", "s1")
        assert bao.root_token not in str(refused.value)
        token_file.chmod(0o600)
        lease = await provider.acquire("secret/data/app#v", "s2")
        assert lease.value == "value-1"
    finally:
        await provider.close()


async def test_spool_on_a_filling_disk_leaves_no_half_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills while a batch is spooled: write() takes part of it and returns the
    count (no error). The rest was dropped while the entries counted as durable; the half
    line then glued to the next batch, and a restart adopting the file could read neither."""
    directory = tmp_path / "spool"
    spool = Spool(directory, "c")
    spool.open()
    real_write = os.write
    calls: list[int] = []

    def filling(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))  # short: the disk is full
        raise OSError(28, "No space left on device")

    try:
        monkeypatch.setattr(os, "write", filling)
        with pytest.raises(SpoolFull):
            await spool.add([Entry("first", events='[{"kind":"command","raw":"A"}]')])
        monkeypatch.setattr(os, "write", real_write)  # room again
        await spool.add([Entry("second", events='[{"kind":"command","raw":"B"}]')])
        lines = spool.path.read_bytes().splitlines()
        assert [Entry.parse(x) for x in lines] == [
            Entry("second", events='[{"kind":"command","raw":"B"}]')
        ]
    finally:
        spool.close()


@pytest.mark.integration
async def test_credential_issued_for_a_session_that_left_meanwhile_is_revoked(
    bao: OpenBao, vault_admin: tuple[str, str]
) -> None:
    """The client goes (or a start-up deadline passes) while Vault creates the session's
    login: the open is cancelled, Vault's answer was dropped, and the login lived on,
    revoked by nobody, for its whole TTL; a client doing it in a loop piles them up."""
    role = "ro" + secrets.token_hex(3)
    try:
        configure_database(bao.client(), "postgres", vault_admin, role)
        provider = _provider(bao, ref=f"database/creds/{role}")
        try:
            await provider.acquire(f"database/creds/{role}", "warm-up")  # logged in
            opening = asyncio.ensure_future(provider.acquire(f"database/creds/{role}", "s1"))
            await asyncio.sleep(0)  # the open has begun: Vault is asked, no answer yet
            opening.cancel()
            with pytest.raises(asyncio.CancelledError):
                await opening
            deadline = time.monotonic() + 10
            live: list[str] = ["?"]
            while time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                live = _leases(bao, f"database/creds/{role}/")
                if len(live) == 1:  # only the warm-up's
                    break
            assert len(live) == 1, live
        finally:
            await provider.close()
    finally:
        drop_dynamic_roles(role)


def _leases(bao: OpenBao, prefix: str) -> list[str]:
    try:
        answer = bao.client().sys.list_leases(prefix=prefix)
    except hvac.exceptions.InvalidPath:
        return []
    return list(answer["data"]["keys"])


def test_vault_over_plain_http_to_another_host_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """vault.addr http://vault:8200 (deploy/portcullis.compose.yaml): the proxy's Vault
    token and every dynamic password crossed the network in clear without a word."""
    connection = ConnectionSettings(name="t", type="http", listen="127.0.0.1:1",
                                    upstream="http://127.0.0.1:2")  # fmt: skip
    auth = {"method": "token", "token": "hvs.never-logged"}
    with caplog.at_level(logging.WARNING, logger="portcullis.vault"):
        for addr in ("http://127.0.0.1:8200", "http://localhost:8200", "https://vault:8200"):
            VaultProvider(connection, VaultSettings(addr, auth))
        assert "plain HTTP" not in caplog.text
        # refused at start since probe p9 unless opted out by name; then still warned
        opted_out = {**auth, "insecure_plain_http_to_remote_vault": True}
        VaultProvider(connection, VaultSettings("http://vault:8200", opted_out))
    assert "Vault at http://vault:8200 is plain HTTP" in caplog.text
    assert "never-logged" not in caplog.text


@pytest.mark.integration
async def test_vault_token_file_is_read_beside_the_configuration(
    bao: OpenBao, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vault.auth.token_file: vault-token (relative) was read from the working directory,
    not the configuration's: started elsewhere (a unit without WorkingDirectory, a shell in
    /tmp), the proxy read whatever file of that name was there, or none."""
    bao.client().secrets.kv.v2.create_or_update_secret(path="app", secret={"v": "value-1"})
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "vault-token").write_text(bao.root_token)
    (etc / "vault-token").chmod(0o600)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "x").mkdir(parents=True)
    (elsewhere / "vault-token").write_text("planted")
    (elsewhere / "vault-token").chmod(0o600)
    path = etc / "portcullis.yaml"
    (etc / "rego").mkdir()
    path.write_text(
        yaml.safe_dump(
            {
                "identity": {"dev": True},
                "vault": {"addr": bao.addr, "auth": {"method": "token",
                                                     "token_file": "vault-token"}},
                "connections": [{
                    "name": "t", "type": "http", "listen": "127.0.0.1:1",
                    "upstream": "http://127.0.0.1:2",
                    "credentials": {"provider": "vault", "ref": "secret/data/app#v",
                                    "header": "X-Key"},
                }],
            }
        )
    )  # fmt: skip
    monkeypatch.chdir(elsewhere)
    config = load_config(path)
    assert config.vault is not None
    provider = VaultProvider(config.connections[0], config.vault)
    try:
        lease = await provider.acquire("secret/data/app#v", "s1")
    finally:
        await provider.close()
    assert lease.value == "value-1"


def test_default_spool_is_beside_the_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spool's default, var/spool, was relative to the working directory (every other
    default path is relative to the configuration's): a proxy restarted from another
    directory never delivered what the last one spooled, and one started in /tmp spooled
    evidence under /tmp/var/spool."""
    path, _ = write_config(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for connection in load_config(path).connections:
        where = Path(connection.options.get("spool_dir", "var/spool")).resolve()
        assert where == (tmp_path / "var" / "spool").resolve()


def test_spool_does_not_adopt_another_connections_whose_name_it_begins(tmp_path: Path) -> None:
    """Connections `orders` and `orders-eu` share the default spool directory: the glob
    orders-*.spool took orders-eu's files, and their entries went to the PDP through the
    `orders` proxy, which the PDP refuses for sessions not of its connection — refused
    entries are dropped: orders-eu's undelivered evidence was lost."""
    directory = tmp_path / "spool"
    eu = Spool(directory, "orders-eu")
    eu.open()
    eu._write_sync([_spooled("eu-session")])
    eu.entries.append(Entry("eu-session"))  # undelivered: the file stays at close
    eu.close()
    orders = Spool(directory, "orders")
    orders.open()
    try:
        assert not orders.entries
    finally:
        orders.close()
    again = Spool(directory, "orders-eu")
    again.open()
    try:
        assert [e.session_id for e in again.entries] == ["eu-session"]
    finally:
        again.close()


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://reader:hunter2-vault@127.0.0.1/orders",
        "postgresql://reader@127.0.0.1/orders?password=hunter2-vault",
        "host=127.0.0.1 user=reader password=hunter2-vault dbname=orders",
    ],
)
def test_discover_refuses_a_password_on_its_command_line(
    tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`portcullis discover` told the operator of a Vault connection to "give --dsn": the
    dynamic password pasted there sat in /proc/PID/cmdline, which every local user reads
    (ps) for as long as the sampling runs."""
    from pdp.cli import main

    path, _ = write_config(tmp_path)
    env = ("ORDERS_DB_PASSWORD", "BILLING_TOKEN")
    with pytest.MonkeyPatch.context() as mp:
        for name in env:
            mp.setenv(name, "x")
        with pytest.raises(SystemExit) as refused:
            main(["-c", str(path), "discover", "--connection", "orders-db", "--dsn", dsn,
                  "--data", str(tmp_path / "data.json")])  # fmt: skip
    assert "PGPASSWORD" in str(refused.value) and "hunter2" not in str(refused.value)


async def test_a_failing_recording_flush_still_gives_the_credential_back(tmp_path: Path) -> None:
    """ProxySession.close() flushed the recording, then released the credential: a flush
    that raised (or was cancelled again) skipped the release, and a Vault lease went on
    being renewed for as long as the proxy ran. Real PDP, proxy and PostgreSQL."""
    async with running_gateway(tmp_path) as gw:
        runtime = gw.proxy.runtime
        released: list[str] = []
        release = runtime.provider.release

        async def counted(lease):  # type: ignore[no-untyped-def]
            released.append(lease.ref)
            await release(lease)

        runtime.provider.release = counted  # type: ignore[method-assign]
        conn = await asyncpg.connect(gw.dsn(gw.token()))
        assert await conn.fetchval("SELECT count(*) FROM orders") == 2
        (session,) = list(runtime.sessions)
        assert session.recorder is not None and session.lease is not None

        async def broken() -> None:
            raise RuntimeError("the recording could not be flushed")

        session.recorder.close = broken  # type: ignore[method-assign]
        await conn.close()
        for _ in range(100):
            if released:
                break
            await asyncio.sleep(0.05)
        assert len(released) == 1 and session.lease is None
