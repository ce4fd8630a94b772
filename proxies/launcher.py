"""`portcullis up`: the PDP and every configured proxy in one process tree.

Owns the order of start and drain: the PDP first, proxies after; proxies drain before the
PDP. Which proxy serves a connection type is its protocol's declaration
(portcullis.protocols): the launcher needs no edit for a new protocol. A connection with
`metrics_listen` gets its /metrics, /healthz, /readyz once its proxy listens
(proxies.runtime.health). On SIGTERM every proxy drains at once (proxies.runtime.drain:
`proxies.drain_seconds` of grace for what is in flight), then they stop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from portcullis import protocols
from portcullis.config import Config, ConnectionSettings, resolve_secrets
from portcullis.heap import freeze_startup_heap
from portcullis.protocols import workers_of
from proxies.runtime.health import HealthServer
from proxies.runtime.process import ProcessRuntime
from proxies.runtime.workers import WorkerProcesses, new_cancel_routes

log = logging.getLogger("portcullis.up")


class Proxy(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


# factory(connection, config, pdp_address, runtime=ProxyRuntime): the launcher hands each
# proxy its connection's runtime over the process's shared one
ProxyFactory = Callable[..., Proxy]


def factory_for(kind: str) -> ProxyFactory | None:
    """The proxy that serves a connection type, as its protocol declares it
    (portcullis.protocols); None for a type declared and not served by this build."""
    known = protocols.protocol(kind)
    return known.server() if known is not None else None


def proxy_kinds() -> list[str]:
    """The connection types this build serves."""
    return [name for name, known in protocols.registered().items() if known.serve is not None]


def served(connections: Sequence[ConnectionSettings]) -> list[ConnectionSettings]:
    """The connections this build has a proxy for (the others are declared, not served)."""
    kinds = proxy_kinds()
    return [c for c in connections if c.type in kinds]


CredentialIssuer = Callable[[str, list[str]], str]


def handed_credential(
    config: Config, connections: str | Sequence[str], issue: CredentialIssuer
) -> Config:
    """What `up` hands the proxies it serves: a credential the PDP issued for them alone
    (proxy `up:NAME,...`, serving those connections), unless they have a certificate."""
    from proxies.runtime.pdp_auth import with_credential

    if config.proxies.pdp.cert_file:
        return config
    names = [connections] if isinstance(connections, str) else list(connections)
    return with_credential(config, issue(f"up:{','.join(names)}", names))


def announce_unrecorded(connection: ConnectionSettings) -> bool:
    """Log, loudly, a connection whose proxy records no session events (`recording:
    false`, for benchmarks): what ran there, and every command answered from the decision
    cache, is in no audit record. True when it is so."""
    if connection.options.get("recording", True) is not False:
        return False
    log.warning(
        "connection %s: RECORDING OFF (recording: false): no session events are recorded — "
        "commands answered from the decision cache leave no audit record; benchmarks only",
        connection.name,
    )
    return True


async def start_proxies(
    connections: Sequence[ConnectionSettings],
    config: Config,
    pdp_address: str,
    issue: CredentialIssuer | None = None,
) -> list[Proxy]:
    """A proxy per served connection, all over one ProcessRuntime (one PDP client and
    recording tick for the process), and each connection's other workers."""
    serving = []
    for connection in connections:
        if factory_for(connection.type) is not None:
            serving.append(connection)
            announce_unrecorded(connection)
            continue
        log.warning(
            "connection %s: this build serves no %s proxy yet (served: %s); "
            "its listen address stays closed",
            connection.name,
            connection.type,
            ", ".join(proxy_kinds()) or "none",
        )
    if not serving:
        return []
    if issue is not None:
        config = handed_credential(config, [c.name for c in serving], issue)
    process = ProcessRuntime.build(pdp_address, config, serving)
    proxies: list[Proxy] = [process]  # stopped last: after every proxy on it
    try:
        for connection in serving:
            factory = factory_for(connection.type)
            assert factory is not None
            # a connection's secrets are read here, where its proxy starts, and nowhere else
            served, (connection,) = resolve_secrets(config, [connection])
            if connection.worker == 0 and workers_of(connection.options) > 1:
                connection = new_cancel_routes(connection)
            runtime = process.connection(connection, served)
            proxy = factory(connection, served, pdp_address, runtime=runtime)
            await proxy.start()
            proxies.append(proxy)
            if connection.metrics_listen:
                health = HealthServer(runtime, connection.metrics_listen)
                await health.start()
                proxies.append(health)
            if connection.worker == 0 and workers_of(connection.options) > 1:
                # its other workers share the port; each is a process of its own
                others = WorkerProcesses(connection, served, pdp_address)
                proxies.append(others)
                await others.start()
    except BaseException:
        await stop_proxies(proxies)
        raise
    return proxies


async def stop_proxies(proxies: list[Proxy]) -> None:
    for proxy in reversed(proxies):
        await proxy.stop()


async def drain_proxies(proxies: list[Proxy], grace: float) -> None:
    """Every proxy (and every other worker process) drains at the same time: none
    accepts, what is in flight has `grace` seconds, then each session is ended with its
    protocol's shutdown message (proxies.runtime.drain)."""
    draining = [p.drain(grace) for p in proxies if hasattr(p, "drain")]
    for failed in await asyncio.gather(*draining, return_exceptions=True):
        if isinstance(failed, BaseException):
            log.error("draining a proxy failed", exc_info=failed)


async def run_proxies(
    connections: list[ConnectionSettings],
    config: Config,
    pdp_address: str,
    stop: asyncio.Event,
    started: Callable[[], None] | None = None,
) -> None:
    proxies = await start_proxies(connections, config, pdp_address)
    freeze_startup_heap()
    if started is not None:
        started()
    try:
        await stop.wait()
    finally:
        await drain_proxies(proxies, config.proxies.drain_seconds)
        await stop_proxies(proxies)


async def run_with_proxies(
    pdp: Any,
    config: Config,
    stop: asyncio.Event,
    started: Callable[[], Awaitable[None]] | None = None,
) -> None:
    await pdp.start()
    try:
        proxies = await start_proxies(
            config.connections, config, pdp.address, getattr(pdp, "issue_proxy_credential", None)
        )
        freeze_startup_heap()
        try:
            if started is not None:
                await started()
            await stop.wait()
        finally:
            await drain_proxies(proxies, config.proxies.drain_seconds)
            await stop_proxies(proxies)
    finally:
        await pdp.stop()
