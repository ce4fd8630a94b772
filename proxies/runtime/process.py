"""What every proxy of one process shares: built once per process by the launcher.

Owns the process's one PDP client — one channel, one DecideStream, one proxy credential,
one watch of the policy revision and of the PDP's reachability — and the one recording
tick that sends every session's pending events in one RecordBatches call. Each served
connection gets its own ProxyRuntime over it (`connection()`): its credential provider,
spool, options, sessions and decision timeout stay its own. A late decision or a policy
change reaches every connection's runtime; the client closes after the last of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from portcullis.config import Config, ConnectionSettings
from proxies.runtime.pdp_auth import client_auth
from proxies.runtime.pdp_client import PDPClient, Ruling
from proxies.runtime.recorder import RecordingTick
from proxies.runtime.session import DEFAULT_PDP_TIMEOUT, ProxyRuntime


class ProcessRuntime:
    def __init__(self, pdp: PDPClient) -> None:
        self.pdp = pdp
        self.recording_tick = RecordingTick(pdp)
        self.runtimes: list[ProxyRuntime] = []
        self._started = False

    @classmethod
    def build(
        cls, pdp_address: str, config: Config, connections: Sequence[ConnectionSettings] = ()
    ) -> ProcessRuntime:
        """config: where the proxy credential or certificate for the PDP comes from. Calls
        other than Decide wait as long as the most patient connection's Decide does."""
        timeout = max(
            (float(c.options.get("pdp_timeout_seconds", DEFAULT_PDP_TIMEOUT)) for c in connections),
            default=DEFAULT_PDP_TIMEOUT,
        )
        return cls(PDPClient(pdp_address, timeout=timeout, **client_auth(config, pdp_address)))

    def connection(self, connection: ConnectionSettings, config: Config) -> ProxyRuntime:
        """The runtime of one served connection, over this process's PDP client; config:
        the one its proxy starts with (its secrets resolved: the Vault login among them)."""
        return ProxyRuntime.build(
            connection,
            self.pdp.address,
            vault=config.vault,
            approval_timeout=config.approvals.timeout_seconds,
            process=self,
            token_leeway=config.identity.leeway_seconds,
        )

    async def start(self) -> None:
        """Once, whichever connection starts first."""
        if self._started:
            return
        self._started = True
        self.pdp.on_late = self._late
        await self.pdp.start()
        self.pdp.on_change(self._policy_changed)

    def attach(self, runtime: ProxyRuntime) -> None:
        self.runtimes.append(runtime)

    def detach(self, runtime: ProxyRuntime) -> None:
        if runtime in self.runtimes:
            self.runtimes.remove(runtime)

    def _late(self, session_id: str, ruling: Ruling) -> None:
        for runtime in self.runtimes:
            runtime.late(session_id, ruling)

    def _policy_changed(self) -> None:
        for runtime in self.runtimes:
            runtime.policy_changed()

    async def stop(self) -> None:
        """After every connection's runtime has stopped (the launcher's order)."""
        if not self._started:
            return
        self._started = False
        await self.recording_tick.close()
        await self.pdp.close()
