"""The PDP's composition root: builds engine, store, identity and service from a Config.

Nothing deep inside the PDP imports a concrete backend; this module picks them. Tests
swap a part by passing their own (for example a slow engine, or a broken store).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import cast

from aiohttp import web

from pdp.api.approval_rpc import policy_authorizer
from pdp.api.http_api import build_http_app
from pdp.api.proxy_auth import ProxyAuthenticator, ProxyKey, write_private
from pdp.api.server import PDPServer
from pdp.api.service import DecisionService
from pdp.api.webhooks import WebhookNotifier
from pdp.console.app import mount_console
from pdp.console.settings import ConsoleSettings
from pdp.domain.approvals import ApprovalBook
from pdp.domain.claims import kept_claims
from pdp.domain.decisions import Decider
from pdp.domain.identity import DevIssuer, TokenVerifier
from pdp.domain.sessions import SessionReaper, SessionTable
from pdp.engine import PolicyEngine, create_engine
from pdp.evidence.checkpoints import CheckpointWriter, anchor_path_for
from pdp.evidence.signing import Signer
from pdp.forwarding import build_forwarders
from pdp.plumbing.keys import load_or_create_ed25519
from pdp.store import AuditStore, open_store
from pdp.store.macs import KEY_PURPOSE as RECORD_KEY_PURPOSE
from portcullis.config import FORWARD_CLEARTEXT_OPT_OUT, Config
from portcullis.config_keyfiles import check_key_file
from portcullis.connection_gate import ConnectionGate, serve_gated
from portcullis.heap import freeze_startup_heap
from portcullis.network_path import cleartext_remote

log = logging.getLogger("portcullis.pdp")


@dataclass
class Parts:
    """Replaceable parts; None means: build from the configuration."""

    engine: PolicyEngine | None = None
    store: AuditStore | None = None
    verifier: TokenVerifier | None = None
    console: ConsoleSettings | None = None  # the web console's (default: from the config)


# pdp.http_listen (health, metrics, approvals API, console) needs no token to connect:
# connections held per peer address and in all (one past either is reset as it is
# accepted), and how long one may idle without a request (aiohttp's default: 75 s)
HTTP_CONNECTIONS_PER_PEER = 64
HTTP_CONNECTIONS = 1024
HTTP_IDLE_SECONDS = 15.0


class SigningKeyMissing(Exception):
    """The PDP's signing key is gone while the evidence it signed is not (start refused)."""


def _warn_of_insecure_settings(config: Config) -> None:
    """What the configuration knowingly lets through, logged at every start (the IdP in
    clear is logged by its verifier, key files others may read as each is read)."""
    for warning in config.warnings:
        log.warning("%s", warning)
    for i, sink in enumerate(config.forwarding):
        if sink.insecure_plain_http_to_remote and cleartext_remote(sink.url):
            log.warning(
                "INSECURE forwarding[%d].%s: audit records are posted to %s in plain HTTP"
                " to another host: whoever is on the path reads, changes or drops them",
                i,
                FORWARD_CLEARTEXT_OPT_OUT,
                sink.url,
            )


class PDPApp:
    def __init__(self, config: Config, parts: Parts | None = None) -> None:
        parts = parts or Parts()
        self.config = config
        self.console_settings = parts.console or ConsoleSettings.from_config(config)
        self.engine = parts.engine or create_engine(config.pdp.engine)
        self.store: AuditStore = parts.store or cast(AuditStore, open_store(config.pdp.store))
        dev_issuer = DevIssuer(config.identity) if config.identity.dev else None
        self.verifier = parts.verifier or TokenVerifier(config.identity, dev_issuer=dev_issuer)
        self.decider = Decider(
            self.engine, self.store, reuse_evaluations=config.pdp.reuse_evaluations
        )
        self.sessions = SessionTable(self.store, on_close=self.decider.forget_session)
        # the claims a session.open record keeps in the clear (pdp.domain.claims)
        self.sessions.kept_claims = kept_claims(
            config.identity.groups_claim, config.identity.evidence_claims
        )
        # sessions left open in a store this PDP writes alone are watched from the start
        # (replicas share a PostgreSQL store, where the others hold their sessions live)
        self.reaper = SessionReaper(
            self.sessions,
            config.pdp.session_timeout_seconds,
            adopt_unclosed=config.pdp.store.type == "sqlite",
        )
        # the keys a PDP signs evidence and trusts proxies with, loaded (or made) once here;
        # a signing key made here over a store that holds signed checkpoints is refused at
        # start (_refuse_a_new_key_over_signed_evidence)
        self._signing_key_made = not config.pdp.signing_key.exists()
        readable = config.pdp.insecure_readable_key_files  # (refused unless said: keys.py)
        self.signer = Signer(
            load_or_create_ed25519(config.pdp.signing_key, allow_readable=readable)
        )
        self.proxy_key = ProxyKey.load_or_create(config.pdp.proxy_key, allow_readable=readable)
        if config.pdp.tls is not None and config.pdp.tls.key_file is not None:
            check_key_file(config.pdp.tls.key_file, "pdp.tls.key_file", readable)
        _warn_of_insecure_settings(config)
        # the MAC of session records: a session found in the store is one this PDP wrote
        self.sessions.record_key = self.proxy_key.derive("session-records")
        # the MAC of every record's batch (pdp.store.macs): a checkpoint vouches only for
        # records a PDP holding the proxy key wrote (a store keeping no MACs: no check)
        self.record_key: bytes | None = None
        if hasattr(self.store, "batch_macs"):
            self.record_key = self.proxy_key.derive(RECORD_KEY_PURPOSE)
            self.store.record_key = self.record_key  # type: ignore[attr-defined]
        self.webhook = (
            WebhookNotifier(
                config.approvals.webhook,
                lambda request: self.approvals.notified(request, "webhook"),
                signer=self.signer,  # receivers tell the PDP's notices from anyone's
            )
            if config.approvals.webhook
            else None
        )
        self.approvals = ApprovalBook(
            self.store,
            policy_authorizer(self.decider),
            notify=self.webhook,
            decision_timeout=config.approvals.timeout_seconds,
        )
        # the digest an approval binds its parameter values with: stable across restarts
        self.approvals.binding_key = self.proxy_key.derive("approval-parameters")
        self.service = DecisionService(
            config,
            self.verifier,
            self.decider,
            self.sessions,
            approvals=self.approvals,
            signer=self.signer,
            proxies=ProxyAuthenticator(self.proxy_key),
        )
        self.forwarders = build_forwarders(config.forwarding, self.store)
        self.checkpoints: CheckpointWriter | None = None
        self.server: PDPServer | None = None
        self._http: web.AppRunner | None = None
        self._http_listener: asyncio.AbstractServer | None = None
        self.http_gate = ConnectionGate(HTTP_CONNECTIONS_PER_PEER, HTTP_CONNECTIONS)
        self.ready = False

    @property
    def address(self) -> str:
        assert self.server is not None
        return self.server.address

    def issue_proxy_credential(self, name: str, connections: list[str]) -> str:
        """A credential for a proxy this PDP trusts (`up` hands one to each of its proxies)."""
        return self.proxy_key.issue(name, connections)

    def _write_local_credential(self) -> None:
        """The credential file a proxy started alone on this host reads (0600)."""
        names = [c.name for c in self.config.connections]
        credential = self.proxy_key.issue("local", names)
        write_private(self.config.pdp.proxy_credential_file, credential.encode() + b"\n")

    async def start(self) -> None:
        self._write_local_credential()
        await self.store.start()
        await self._refuse_a_new_key_over_signed_evidence()
        self.checkpoints = CheckpointWriter(
            self.store,
            self.signer,
            anchor_path=anchor_path_for(self.config.pdp.signing_key),
            record_key=self.record_key,
        )
        self.checkpoints.start()
        for forwarder in self.forwarders:
            await forwarder.start()
        self.service.guard_sync.begin()  # the other PDPs' budgets and pauses, read back
        await self.engine.start()
        await self.service.guard_sync.settle()
        self.server = PDPServer(
            self.service,
            self.config.pdp.listen,
            self.config.pdp.tls,
            reuse_port=self.config.pdp.reuse_port,
        )
        await self.server.start()
        if self.config.pdp.http_listen:
            await self._start_http(self.config.pdp.http_listen)
        await self.approvals.start()
        self.reaper.start()
        self.ready = True

    async def _refuse_a_new_key_over_signed_evidence(self) -> None:
        """Fail closed when the signing key was made at this start while the store holds
        checkpoints another key signed (the key file lost, a volume not mounted, a file
        deleted by whoever can write var/): signing on with a key no rotation hands over to
        would leave every signature of one key or the other failing `audit verify` for good,
        and `audit rotate-key --old-key-lost` needs a store the old key still verifies. The
        key just made signed nothing: it is removed, and the PDP does not start."""
        if not self._signing_key_made:
            return
        if not await self.store.newest("checkpoint", limit=1):
            return  # a first start: the key made is the chain's first
        path = self.config.pdp.signing_key
        path.unlink(missing_ok=True)
        await self.store.close()
        raise SigningKeyMissing(
            f"signing key {path} is missing while the audit store holds signed checkpoints: "
            "restore the key file, or run `portcullis audit rotate-key --old-key-lost "
            "--old-public-key PEM` to hand the chain over to a new key"
        )

    async def _start_http(self, listen: str) -> None:
        http_app = build_http_app(self)
        mount_console(http_app, self, self.console_settings)
        self._http = web.AppRunner(http_app, access_log=None, keepalive_timeout=HTTP_IDLE_SECONDS)
        # the listener needs no token, and every connection is a file descriptor the gRPC
        # side needs: behind the connection caps
        if listen.startswith("unix:"):
            where: str | tuple[str, int] = listen
        else:
            host, _, port = listen.rpartition(":")
            where = (host, int(port))
        self._http_listener = await serve_gated(
            self._http, self.http_gate, log, "PDP HTTP", where, self.config.pdp.reuse_port or None
        )
        log.info("PDP HTTP (health, metrics, console at /console/) on %s", listen)

    async def stop(self, grace: float = 10.0) -> None:
        """Drain in-flight calls, then close engine, identity and store in that order."""
        self.ready = False
        await self.reaper.stop()
        await self.approvals.stop()
        if self.webhook is not None:
            await self.webhook.close()
        if self.server is not None:
            await self.server.stop(grace)
        if self._http_listener is not None:
            self._http_listener.close()
        if self._http is not None:
            await self._http.cleanup()
        if self.checkpoints is not None:
            await self.checkpoints.stop()  # the last checkpoint covers every answered call
        await self.engine.close()
        self.service.shell_reader.close()
        self.service.sql_reader.close()
        await self.verifier.close()
        for forwarder in self.forwarders:
            await forwarder.stop()
        await self.store.close()

    async def run_until(self, stop: asyncio.Event, grace: float = 10.0) -> None:
        await self.start()
        freeze_startup_heap()
        try:
            await stop.wait()
        finally:
            await self.stop(grace)
