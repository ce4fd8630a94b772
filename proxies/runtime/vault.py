"""The Vault (or OpenBao) credential provider: per-session secrets from Vault through hvac.

Owns the proxy's own Vault identity (token, AppRole or JWT login, kept alive by renew-self
in the background) and every lease it takes for a session:

- `<mount>/creds/<role>` (database secrets engine) → a dynamic username/password that lives
  while the session lives: renewed in the background before it would expire, revoked at
  release; if the proxy dies, Vault revokes it at the latest when its TTL runs out (a
  longer one than `credentials.lease_ttl`, 15 minutes by default, is cut to it at once).
- `<mount>/data/<path>#<key>` (KV v2) → one value (an HTTP token, an SSH key).
- `<mount>/sign/<role>` (SSH secrets engine) → a fresh ed25519 key pair per session whose
  public key Vault signs; the private key never leaves proxy memory.
- `auth/token/create/<role>` → a Vault token issued per session from that token role (an
  HTTP credential for an upstream that checks Vault tokens), revoked at release; one
  carrying root or the proxy's own policies (a role without allowed_policies), or one
  nothing can revoke (a batch token), is refused.

Vault is asked at `vault.addr` and nowhere else: a redirect (3xx) is refused, not followed
(requests keeps the X-Vault-Token header on the way to another host, so whoever answered
at the address would send the proxy's token where it liked).

hvac is synchronous, so every call runs in a worker thread. Must not: log, raise, or repr
a secret or a Vault token — errors name Vault's address, the reference and what failed,
nothing Vault sent back. A Vault outage refuses new sessions (CredentialUnavailable) and
leaves sessions that already hold a credential alone; a renewal Vault refuses as of a lease
it no longer holds (revoked) ends its session at once. Issuing is bounded per provider
(ISSUING_AT_ONCE under way, ISSUING_HELD in all): clients that leave as soon as they are
allowed cannot queue Vault calls ahead of the renewals every session needs. A `vault.addr`
that is plain HTTP to another host stops the proxy at start (ConfigError) unless
vault.auth opts out by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import hvac
import hvac.exceptions
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    SSHCertificate,
    SSHCertificateType,
    load_ssh_public_identity,
)

from portcullis.config import ConfigError, ConnectionSettings, VaultSettings
from portcullis.network_path import cleartext_remote
from proxies.runtime.credentials import CredentialLease, CredentialUnavailable, upstream_auth
from proxies.runtime.lease_ledger import LeaseLedger
from proxies.runtime.spool import DEFAULT_SPOOL_DIR

log = logging.getLogger("portcullis.vault")

T = TypeVar("T")

REQUEST_TIMEOUT = 5.0  # seconds per Vault request: an outage must refuse a session, not hang it
RENEW_AT = 2 / 3  # renew once this fraction of a TTL has passed
MIN_SLEEP = 0.5
ACCESSOR_LEASE = "token-accessor:"  # a lease id that is a token's accessor, not a lease
# what an upstream SSH certificate may permit: a pty and the forwardings the proxy mediates
# (each decided by the PDP). Not agent or X11 forwarding, not ~/.ssh/rc: the proxy never
# uses them, and a certificate that leaked with its key must not grant them either.
SSH_EXTENSIONS = frozenset({"permit-pty", "permit-port-forwarding"})
SSH_CERT_SECONDS = 3600  # longest validity accepted unless credentials.certificate_ttl says
SSH_CLOCK_SKEW = 60
# longest a dynamic secret's lease runs unrenewed (credentials.lease_ttl): what a proxy
# killed before it could revoke leaves behind; a role's default_ttl beyond it is cut to it
LEASE_SECONDS = 900
# issuings under way at once, per provider, and those waiting for a turn plus the
# revocations of those whose client left meanwhile: a reader's clients that connect and
# leave in a loop each left one running to its end, without bound, queued ahead of the
# worker threads every lease's renewal needs
ISSUING_AT_ONCE = 32
ISSUING_HELD = 256
# the opt-out (vault.auth) from refusing a vault.addr that is plain HTTP beyond this host:
# only the literal true, never a string an environment variable expanded to
INSECURE_PLAIN_HTTP = "insecure_plain_http_to_remote_vault"
# what Vault answers a renewal of a lease (or token) it no longer holds: lease or token not
# found (400), permission denied (403: the proxy's token is gone, and its leases with it),
# nothing there (404). An outage (unreachable, sealed, 5xx, 429) is retried instead.
LEASE_GONE = (
    hvac.exceptions.InvalidRequest,
    hvac.exceptions.Forbidden,
    hvac.exceptions.InvalidPath,
)


@dataclass(frozen=True)
class VaultRef:
    """A parsed credential reference: which engine, at which mount, for which role or path."""

    kind: str  # database | kv | ssh | token
    mount: str
    name: str  # database/ssh role, or KV path
    key: str = ""  # KV field


def parse_ref(ref: str) -> VaultRef:
    """`<mount>/creds/<role>`, `<mount>/data/<path>#<key>` or `<mount>/sign/<role>`."""
    if ref.startswith("auth/token/create/") and "/" not in ref[len("auth/token/create/") :]:
        role = ref[len("auth/token/create/") :]
        if role:
            return VaultRef("token", "auth/token", role)
    if "#" in ref:
        path, _, key = ref.partition("#")
        mount, sep, name = path.partition("/data/")
        if sep and mount and name and key:
            return VaultRef("kv", mount, name, key)
    else:
        for marker, kind in (("/creds/", "database"), ("/sign/", "ssh")):
            mount, sep, name = ref.partition(marker)
            if sep and mount and name and "/" not in name:
                return VaultRef(kind, mount, name)
    raise CredentialUnavailable(
        f"credential reference {ref!r} is not one the Vault provider understands "
        "(<mount>/creds/<role>, <mount>/data/<path>#<key>, <mount>/sign/<role>, "
        "auth/token/create/<role>)"
    )


class VaultProvider:
    """CredentialProvider backed by Vault; one per listening proxy (connection)."""

    def __init__(
        self,
        connection: ConnectionSettings,
        settings: VaultSettings,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.connection = connection
        self.addr = settings.addr
        self._auth = dict(settings.auth)
        self.method = str(self._auth.get("method", "token"))
        self._settings = settings
        self._upstream_auth = upstream_auth(connection)
        ca_cert = self._auth.get("ca_cert")
        session = requests.Session()
        session.hooks["response"].append(_refuse_redirect)
        self._client = hvac.Client(
            url=settings.addr,
            timeout=timeout,
            verify=str(settings.path(str(ca_cert))) if ca_cert else True,
            allow_redirects=False,
            session=session,
        )
        if urlsplit(settings.addr).username is not None:
            # (requests would send it as Basic auth, and every error naming Vault's address
            # — to clients too — would carry it)
            raise ConfigError(
                "vault.addr", "must not carry a user or password (user:password@); use vault.auth"
            )
        if cleartext_remote(settings.addr):
            if self._auth.get(INSECURE_PLAIN_HTTP) is not True:
                raise ConfigError(
                    "vault.addr",
                    f"{settings.addr} is plain HTTP to another host: the proxy's Vault token "
                    "and every credential it fetches would cross the network in clear; use "
                    f"https:// (or, knowing that, set vault.auth.{INSECURE_PLAIN_HTTP}: true)",
                )
            log.warning(
                "Vault at %s is plain HTTP to another host (vault.auth.%s): the proxy's Vault "
                "token and every credential it fetches cross the network in clear; use https://",
                settings.addr,
                INSECURE_PLAIN_HTTP,
            )
        self._login_lock = asyncio.Lock()
        self._logged_in = False
        # the policies of the proxy's own token (lookup-self at login): what no token it
        # issues to a session may carry (_token)
        self._own_policies: frozenset[str] = frozenset()
        self._token_task: asyncio.Task[None] | None = None
        self._renewers: dict[str, asyncio.Task[None]] = {}
        self._leases: dict[str, str] = {}  # lease_id → ref, for revocation at close
        self._orphans: set[asyncio.Task[None]] = set()  # releases of leases nobody took
        self._issuing: set[asyncio.Future[CredentialLease]] = set()
        self._issue_slots = asyncio.Semaphore(ISSUING_AT_ONCE)
        self._waiting = 0  # acquires waiting for one of the slots
        self._closing = False
        # the leases held, on disk: what a crash leaves, the next start revokes
        spool_dir = Path(str(connection.options.get("spool_dir", DEFAULT_SPOOL_DIR)))
        self._ledger = LeaseLedger(spool_dir, connection.name)
        self._ledger_open = False
        self._unrevoked = 0  # revocations that failed: the ledger file stays for the next start

    def __repr__(self) -> str:
        return f"VaultProvider(addr={self.addr!r}, auth={self.method!r})"

    # -- the provider interface -------------------------------------------------------------

    async def acquire(self, ref: str, session_id: str) -> CredentialLease:
        """The session's credential. Cancelled while Vault issues it (the client left, a
        start-up deadline), the issuing still runs to its end and what it issued is
        released at once: Vault's answer is never lost with the lease live in it. At most
        ISSUING_AT_ONCE are issued at a time, the others wait their turn (one whose client
        leaves meanwhile is never issued); past ISSUING_HELD waiting, issuing or given back
        a session is refused at once (CredentialUnavailable)."""
        if self._waiting + len(self._issuing) + len(self._orphans) >= ISSUING_HELD:
            raise CredentialUnavailable(
                f"the proxy is already obtaining {ISSUING_HELD} credentials from Vault for "
                f"{self.connection.name!r}; cannot obtain {ref} now, try again shortly"
            )
        self._waiting += 1
        try:
            await self._issue_slots.acquire()  # a client that leaves while waiting costs nothing
        finally:
            self._waiting -= 1
        if self._closing:  # (it waited its turn while the proxy stopped)
            self._issue_slots.release()
            raise CredentialUnavailable(f"the proxy is stopping; cannot obtain {ref}")
        issuing = asyncio.ensure_future(self._acquire(ref, session_id))
        self._issuing.add(issuing)
        issuing.add_done_callback(self._issuing.discard)
        issuing.add_done_callback(lambda _: self._issue_slots.release())
        try:
            return await asyncio.shield(issuing)
        except asyncio.CancelledError:
            issuing.add_done_callback(self._release_orphan)
            raise

    def _release_orphan(self, issuing: asyncio.Future[CredentialLease]) -> None:
        if issuing.cancelled() or issuing.exception() is not None:
            return
        task = asyncio.ensure_future(self.release(issuing.result()))
        self._orphans.add(task)
        task.add_done_callback(self._orphans.discard)

    async def _acquire(self, ref: str, session_id: str) -> CredentialLease:
        target = parse_ref(ref)
        await self._ensure_login(ref)
        try:
            return await self._issue(target, ref, session_id)
        except hvac.exceptions.Forbidden:
            if self.method == "token" or await self._token_alive():
                raise self._unavailable(ref, hvac.exceptions.Forbidden()) from None
            # the proxy's own token expired (say, while Vault was away): log in again, once
            self._logged_in = False
            await self._ensure_login(ref)
            try:
                return await self._issue(target, ref, session_id)
            except Exception as exc:
                raise self._unavailable(ref, exc) from None
        except CredentialUnavailable:
            raise
        except Exception as exc:
            raise self._unavailable(ref, exc) from None

    async def release(self, lease: CredentialLease) -> None:
        """Stop renewing and revoke the lease (dynamic secrets); KV values and certs have none."""
        if not lease.lease_id:
            return
        task = self._renewers.pop(lease.lease_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._revoke(lease.lease_id, self._leases.pop(lease.lease_id, lease.ref))

    async def close(self) -> None:
        """Revoke what is still leased, stop renewing, give up the proxy's own login token."""
        self._closing = True  # an acquire still waiting its turn issues nothing now
        await asyncio.gather(*self._issuing, return_exceptions=True)  # (their leases below)
        await asyncio.gather(*self._orphans, return_exceptions=True)
        tasks = [*self._renewers.values(), *([self._token_task] if self._token_task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._renewers.clear()
        leases, self._leases = self._leases, {}
        await asyncio.gather(*(self._revoke(lid, ref) for lid, ref in leases.items()))
        if self._unrevoked:
            self._ledger.abandon()  # left for the next start to revoke
        else:
            self._ledger.close()
        if self._logged_in and self.method != "token":
            # a login token is ours alone; a configured token belongs to the operator
            with contextlib.suppress(Exception):
                await self._call(self._client.auth.token.revoke_self)
        self._logged_in = False
        with contextlib.suppress(Exception):
            self._client.adapter.close()

    # -- issuing ----------------------------------------------------------------------------

    async def _issue(self, target: VaultRef, ref: str, session_id: str) -> CredentialLease:
        if target.kind == "database":
            return await self._database(target, ref, session_id)
        if target.kind == "token":
            return await self._token(target, ref, session_id)
        if target.kind == "kv":
            return await self._kv(target, ref)
        return await self._ssh(target, ref, session_id)

    async def _database(self, target: VaultRef, ref: str, session_id: str) -> CredentialLease:
        response = await self._call(
            self._client.secrets.database.generate_credentials,
            name=target.name,
            mount_point=target.mount,
        )
        data = response.get("data") or {}
        lease_id = str(response.get("lease_id") or "")
        duration = int(response.get("lease_duration") or 0)
        if lease_id:
            self._ledger.issued(lease_id)
            duration = await self._bounded(lease_id, ref, duration, bool(response.get("renewable")))
        lost: asyncio.Future[None] | None = None
        if lease_id and duration > 0:
            lost = asyncio.get_running_loop().create_future()
        lease = CredentialLease(
            ref=ref,
            username=str(data.get("username", "")),
            password=str(data.get("password", "")),
            lease_id=lease_id,
            extra={"lease_duration": duration},
            upstream_auth=self._upstream_auth,
            lost=lost,
        )
        if lease_id:
            self._leases[lease_id] = ref
            if lost is not None:
                renews = bool(response.get("renewable"))
                self._renewers[lease_id] = asyncio.create_task(
                    self._keep_lease(lease_id, ref, duration, lost, renews=renews),
                    name=f"vault-lease-renewer:{session_id}",
                )
        log.info(
            "session %s: Vault issued %s as %s (lease %ss)",
            session_id,
            ref,
            lease.username,
            duration,
        )
        return lease

    async def _kv(self, target: VaultRef, ref: str) -> CredentialLease:
        response = await self._call(
            self._client.secrets.kv.v2.read_secret_version,
            path=target.name,
            mount_point=target.mount,
            raise_on_deleted_version=True,
        )
        fields = ((response.get("data") or {}).get("data")) or {}
        if target.key not in fields:
            raise CredentialUnavailable(
                f"Vault secret {ref.partition('#')[0]!r} has no field {target.key!r}"
            )
        value = str(fields[target.key])
        spec = self.connection.credentials
        is_key = "PRIVATE KEY-----" in value
        return CredentialLease(
            ref=ref,
            username=str(spec.get("username", "")),
            header=str(spec.get("header", "")),
            value=value,
            private_key=value if is_key else "",
            extra={
                "version": (response.get("data") or {}).get("metadata", {}).get("version"),
                **({"query": str(spec["query"])} if spec.get("query") else {}),
            },
            upstream_auth=self._upstream_auth,
        )

    async def _token(self, target: VaultRef, ref: str, session_id: str) -> CredentialLease:
        # for lease_ttl, renewed while the session lives, like a database lease: a role
        # without token_ttl would give the token the mount's 32 days, which a proxy killed
        # before revoking would leave behind
        bound = int(self.connection.credentials.get("lease_ttl") or LEASE_SECONDS)
        response = await self._call(
            self._client.auth.token.create,
            role_name=target.name,
            meta={"portcullis_session": session_id},
            ttl=f"{bound}s",
        )
        auth = response.get("auth") or {}
        token, accessor = str(auth.get("client_token", "")), str(auth.get("accessor", ""))
        if not token:
            raise CredentialUnavailable(f"Vault issued no token for {ref!r}")
        if not accessor:
            # a batch token (token_type batch): no accessor, nothing revokes it; it would
            # stay valid for its whole TTL after the session it was issued for ended
            raise CredentialUnavailable(
                f"Vault issued a token for {ref} that cannot be revoked when its session "
                "ends (a batch token): give the token role token_type service"
            )
        lease_id = ACCESSOR_LEASE + accessor
        self._leases[lease_id] = ref
        self._ledger.issued(lease_id)
        duration = int(auth.get("lease_duration") or 0)
        issued = _names(auth.get("policies")) + _names(auth.get("identity_policies"))
        powers = _proxy_powers(issued, self._own_policies)
        if powers:
            # a token role without allowed_policies gives the token its creator's policies:
            # the session's upstream would hold the proxy's own Vault identity (every
            # connection's credentials; root when the proxy is logged in as root)
            await self._revoke(lease_id, ref)
            self._leases.pop(lease_id, None)
            raise CredentialUnavailable(
                f"Vault issued a token for {ref} with the proxy's own policies "
                f"({', '.join(powers)}): give the token role allowed_policies of its own "
                "(and orphan: true when the proxy logs in as an identity entity: its tokens "
                "inherit the entity's policies)"
            )
        if not 0 < duration <= bound:  # a role's token_explicit_max_ttl/period cannot lengthen it
            await self._revoke(lease_id, ref)
            self._leases.pop(lease_id, None)
            raise CredentialUnavailable(
                f"Vault issued a token for {ref} valid for {duration or 'unlimited'}s, not "
                f"within {bound}s (credentials.lease_ttl): check the token role's period"
            )

        def renew(increment: int) -> int:
            answer = self._client.auth.token.renew(token, increment=increment)
            return int((answer.get("auth") or {}).get("lease_duration") or 0)

        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._renewers[lease_id] = asyncio.create_task(
            self._keep_lease(lease_id, ref, duration, lost, renew, bool(auth.get("renewable"))),
            name=f"vault-token-renewer:{session_id}",
        )
        spec = self.connection.credentials
        return CredentialLease(
            ref=ref,
            header=str(spec.get("header", "")),
            value=token,
            lease_id=lease_id,
            extra={"query": str(spec["query"])} if spec.get("query") else {},
            lost=lost,
        )

    async def _ssh(self, target: VaultRef, ref: str, session_id: str) -> CredentialLease:
        key = Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
        private = key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()
        spec = self.connection.credentials
        principal = str(spec.get("username", ""))  # "": the role's default_user
        # not hvac's sign_ssh_key: it always sends ttl="", for which Vault (OpenBao) signs
        # for the mount's maximum (32 days) instead of the role's ttl
        request: dict[str, Any] = {"public_key": public}
        if principal:  # sent empty, it is refused; left out, the role's default_user
            request["valid_principals"] = principal
        if spec.get("certificate_ttl"):
            request["ttl"] = f"{int(spec['certificate_ttl'])}s"
        asked = time.time()
        response = await self._call(
            self._client.write_data, f"{target.mount}/sign/{target.name}", data=request
        )
        data = response.get("data") or {}
        certificate = str(data.get("signed_key", "")).strip()
        if not certificate:
            raise CredentialUnavailable(f"Vault returned no certificate for {ref}")
        principal = _check_certificate(
            certificate, ref, principal, asked, int(spec.get("certificate_ttl") or SSH_CERT_SECONDS)
        )
        log.info(
            "session %s: Vault signed an SSH certificate for %s (serial %s)",
            session_id,
            ref,
            data.get("serial_number", "?"),
        )
        return CredentialLease(
            ref=ref,
            username=principal,
            private_key=private,
            extra={
                "certificate": certificate,
                "public_key": public,
                "serial_number": data.get("serial_number", ""),
            },
        )

    async def _bounded(self, lease_id: str, ref: str, duration: int, renewable: bool) -> int:
        """The lease's duration once no longer than credentials.lease_ttl: a longer one (a
        role without default_ttl runs for the mount's 32 days) is renewed down to it at
        once, or revoked and refused when it cannot be."""
        bound = int(self.connection.credentials.get("lease_ttl") or LEASE_SECONDS)
        if 0 < duration <= bound:
            return duration
        granted = 0
        if renewable:
            with contextlib.suppress(Exception):
                response = await self._call(
                    self._client.sys.renew_lease, lease_id=lease_id, increment=bound
                )
                granted = int(response.get("lease_duration") or 0)
        if 0 < granted <= bound:
            return granted
        await self._revoke(lease_id, ref)
        raise CredentialUnavailable(
            f"Vault leased {ref} for {duration}s and it cannot be cut to {bound}s "
            "(credentials.lease_ttl): a proxy killed before revoking would leave it that long"
        )

    # -- keeping leases and the login alive ------------------------------------------------

    async def _keep_lease(
        self,
        lease_id: str,
        ref: str,
        duration: int,
        lost: asyncio.Future[None],
        renew: Callable[[int], int] | None = None,
        renews: bool = True,
    ) -> None:
        """Renew before expiry for as long as the session holds the lease (until release:
        this task is cancelled); renew(increment) → seconds granted (default:
        sys/leases/renew of lease_id). When it ends first — it could not be renewed in
        time, Vault refused the renewal as of a lease it no longer holds (revoked: the
        session ends at that renewal, not at the expiry the proxy last knew), it reached
        its maximum TTL, or it does not renew — `lost` is done: the
        session holding it ends (Vault revokes the credential then, and a connection it
        opened must not outlive it)."""
        if renew is None:

            def renew(increment: int) -> int:
                response = self._client.sys.renew_lease(lease_id=lease_id, increment=increment)
                return int(response.get("lease_duration") or 0)

        expires = time.monotonic() + duration
        margin = duration * (1 - RENEW_AT)  # renew when this much of the lease is left
        try:
            while renews:
                remaining = expires - time.monotonic()
                if remaining <= 0:
                    log.error("Vault lease for %s expired: it could not be renewed in time", ref)
                    return
                # on schedule: sleep until the margin; after a failed renewal: retry soon
                wait = remaining - margin if remaining > margin else remaining / 3
                await asyncio.sleep(max(wait, 0.1))
                asked = time.monotonic()
                try:
                    granted = await self._call(renew, duration)
                except LEASE_GONE as exc:
                    # Vault's own word that the lease is no more (revoked by an operator, its
                    # token revoked or expired with it): retrying until the expiry the
                    # proxy last knew would keep the session on a credential Vault ended
                    log.error(
                        "Vault refused to renew the lease for %s (%s): it has ended; its "
                        "session ends now",
                        ref,
                        _describe(exc),
                    )
                    return
                except Exception as exc:
                    log.warning(
                        "renewing the Vault lease for %s failed (%s); retrying while it is "
                        "still valid",
                        ref,
                        _describe(exc),
                    )
                    continue
                expires = min(expires, asked + granted) if granted <= 0 else asked + granted
                if granted < duration:
                    log.warning(
                        "Vault lease for %s reaches its max TTL in %ss; the upstream "
                        "credential and its session end then",
                        ref,
                        granted,
                    )
                    break
            await asyncio.sleep(max(expires - time.monotonic(), 0))
        finally:
            if not lost.done() and not _cancelling():
                lost.set_result(None)

    async def _token_alive(self) -> bool:
        try:
            await self._call(self._client.auth.token.lookup_self)
        except Exception:
            return False
        return True

    async def _ensure_login(self, ref: str) -> None:
        if self._logged_in:
            return
        async with self._login_lock:
            if self._logged_in:
                return
            try:
                ttl, renewable = await self._call(self._login)
            except CredentialUnavailable:
                raise
            except Exception as exc:
                raise self._unavailable(ref, exc, login=True) from None
            self._logged_in = True
            if not self._ledger_open:
                self._ledger_open = True
                await self._revoke_orphans()
            if self._token_task is not None:
                self._token_task.cancel()
            if ttl > 0:
                self._token_task = asyncio.create_task(
                    self._keep_token(ttl, renewable), name="vault-token-renewer"
                )

    def _login(self) -> tuple[int, bool]:
        """Authenticate (in a worker thread); the token's TTL and whether it renews."""
        auth = self._auth
        client = self._client
        if self.method == "token":
            client.token = _secret(auth, "token", self._settings)
        elif self.method == "approle":
            client.auth.approle.login(
                role_id=_secret(auth, "role_id", self._settings),
                secret_id=_secret(auth, "secret_id", self._settings),
                mount_point=str(auth.get("mount", "approle")),
            )
        elif self.method == "jwt":
            client.auth.jwt.jwt_login(
                role=str(auth.get("role", "")),
                jwt=_secret(auth, "jwt", self._settings),
                path=str(auth.get("mount", "jwt")),
            )
        else:
            raise CredentialUnavailable(f"Vault auth method {self.method!r} is not supported")
        data = client.auth.token.lookup_self().get("data") or {}
        # its token's policies and those of its entity (a jwt, kubernetes or userpass
        # login): a token it creates inherits the entity, and with it those
        self._own_policies = frozenset(
            _names(data.get("policies")) + _names(data.get("identity_policies"))
        )
        return int(data.get("ttl") or 0), bool(data.get("renewable"))

    async def _keep_token(self, ttl: int, renewable: bool) -> None:
        """renew-self before the proxy's token expires; log in again when it cannot renew."""
        while True:
            await asyncio.sleep(max(ttl * RENEW_AT, MIN_SLEEP))
            try:
                if renewable:
                    response = await self._call(self._client.auth.token.renew_self)
                    auth = response.get("auth") or {}
                    ttl, renewable = (
                        int(auth.get("lease_duration") or 0),
                        bool(auth.get("renewable")),
                    )
                else:
                    ttl = 0
                if ttl <= 1 and self.method != "token":
                    ttl, renewable = await self._call(self._login)
                if ttl <= 0:
                    return
            except Exception as exc:
                log.warning(
                    "renewing the proxy's Vault token failed (%s); retrying", _describe(exc)
                )
                ttl = max(int(ttl / 3), 3)

    async def _revoke_orphans(self) -> None:
        """Revoke the leases of this connection's proxies that are gone (killed before
        they could), as their ledgers hold them."""
        try:
            orphans = self._ledger.open()
        except OSError as exc:
            log.warning(
                "lease ledger in %s unusable (%s): leases a crash leaves end at their TTL",
                self._ledger.directory,
                exc.strerror or type(exc).__name__,
            )
            return
        if orphans:
            log.warning(
                "revoking %d Vault leases of a proxy of %s that is gone",
                len(orphans),
                self.connection.name,
            )
        for lease_id in orphans:
            await self._revoke(lease_id, "a lease of a proxy that is gone")

    async def _revoke(self, lease_id: str, ref: str) -> bool:
        try:
            if lease_id.startswith(ACCESSOR_LEASE):  # a token issued per session
                accessor = lease_id[len(ACCESSOR_LEASE) :]
                await self._call(self._client.auth.token.revoke_accessor, accessor)
            else:
                await self._call(self._client.sys.revoke_lease, lease_id=lease_id)
        except Exception as exc:
            self._unrevoked += 1
            log.warning(
                "revoking the Vault lease for %s failed (%s); Vault revokes it when "
                "its TTL runs out",
                ref,
                _describe(exc),
            )
            return False
        self._ledger.released(lease_id)
        return True

    # -- plumbing -------------------------------------------------------------------------

    @staticmethod
    async def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    def _unavailable(
        self, ref: str, exc: BaseException, login: bool = False
    ) -> CredentialUnavailable:
        """A client-safe error: names Vault, the reference and the failure class — no body,
        and not Vault's address (the internal layout is the operator's: it is logged)."""

        def said(at: str) -> str:  # at: where Vault is, or "" for what the client hears
            step = f"logging in to Vault{at} ({self.method})" if login else ref
            if isinstance(exc, VaultRedirected):
                return (
                    f"Vault{at} answered with a redirect, which the proxy does not "
                    f"follow (its token goes to vault.addr only); cannot obtain {ref}"
                )
            if isinstance(exc, requests.exceptions.RequestException):
                return f"Vault{at} is unreachable; cannot obtain {ref}"
            if isinstance(exc, hvac.exceptions.VaultDown):
                return f"Vault{at} is sealed or unavailable; cannot obtain {ref}"
            if isinstance(exc, hvac.exceptions.Forbidden):
                return f"Vault denied {step}: permission denied"
            if isinstance(exc, hvac.exceptions.InvalidPath):
                return f"Vault has nothing at {step}"
            if isinstance(exc, hvac.exceptions.VaultError):
                return f"Vault could not serve {step} ({type(exc).__name__})"
            return f"Vault request for {step} failed ({type(exc).__name__})"

        log.warning("credential unavailable: %s", said(f" at {self.addr}"))
        return CredentialUnavailable(said(""))


def _check_certificate(text: str, ref: str, principal: str, asked: float, ttl: int) -> str:
    """The certificate's one principal; CredentialUnavailable for a signed certificate that
    grants more than a session's upstream login needs (the role, not the request, decides
    its extensions and validity, and it cannot be revoked when the session ends)."""
    try:
        cert = load_ssh_public_identity(text.encode())
    except ValueError:
        cert = None
    if not isinstance(cert, SSHCertificate) or cert.type is not SSHCertificateType.USER:
        raise CredentialUnavailable(f"Vault's answer for {ref} is not a user certificate")
    problems = []
    named = cert.valid_principals
    if len(named) != 1 or (principal and named[0] != principal.encode()):
        # none would be any user to OpenSSH's older servers; several, more than one login
        problems.append(f"its principals are not exactly {principal or 'one user'!r}")
    extra = sorted(k.decode(errors="replace") for k in cert.extensions if k not in _EXT_BYTES)
    if extra:
        problems.append(f"it permits {', '.join(extra)}")
    if cert.valid_before > asked + ttl + SSH_CLOCK_SKEW:
        problems.append(f"it is valid for longer than {ttl}s")
    if problems:
        raise CredentialUnavailable(
            f"Vault signed a certificate for {ref} that the proxy refuses: "
            f"{'; '.join(problems)} (the SSH role's default_extensions may hold only "
            f"{', '.join(sorted(SSH_EXTENSIONS))}; its ttl, or credentials.certificate_ttl, "
            "bounds the validity)"
        )
    return named[0].decode(errors="replace")


_EXT_BYTES = frozenset(e.encode() for e in SSH_EXTENSIONS)


def _secret(auth: dict[str, Any], name: str, settings: VaultSettings) -> str:
    """An auth secret, given inline (`name`) or in a file (`name_file`, e.g. a k8s token;
    relative to the configuration's directory)."""
    value = auth.get(name)
    if not value and auth.get(f"{name}_file"):
        path = settings.path(str(auth[f"{name}_file"]))
        with path.open() as f:
            if os.fstat(f.fileno()).st_mode & 0o077 and name != "jwt":
                # the proxy's Vault identity to whoever reads it (ssh refuses such a key);
                # a JWT file is short-lived and projected 0644 by Kubernetes
                raise CredentialUnavailable(
                    f"vault.auth.{name}_file {path} is readable by other users; chmod 600 it"
                )
            value = f.read().strip()
    if not value:
        raise CredentialUnavailable(f"vault.auth.{name} is not set")
    return str(value)


def _names(value: Any) -> list[str]:
    """The policy names of a Vault answer's list (none when it is not one)."""
    return [p for p in value if isinstance(p, str)] if isinstance(value, list) else []


def _proxy_powers(issued: list[str], own: frozenset[str]) -> list[str]:
    """The policies of a token issued for a session that are the proxy's own powers: root,
    and every policy of the proxy's token or entity but `default` (which every token has)."""
    return sorted(set(issued) & ({"root"} | own) - {"default"})


class VaultRedirected(requests.exceptions.RequestException):
    """Vault's address answered with a redirect (not followed)."""


def _refuse_redirect(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """requests' response hook: a redirect ends the call (where it points is not kept)."""
    if response.is_redirect or 300 <= response.status_code < 400:
        response.close()
        raise VaultRedirected("Vault answered with a redirect")


def _cancelling() -> bool:
    """Whether the running task is being cancelled (the lease released, the provider
    closed): then the lease did not end under its session."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _describe(exc: BaseException) -> str:
    """Names the failure without repeating anything Vault sent back."""
    if isinstance(exc, VaultRedirected):
        return "Vault redirected"
    if isinstance(exc, requests.exceptions.RequestException):
        return "Vault unreachable"
    return type(exc).__name__
