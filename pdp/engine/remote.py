"""The remote engine: an OPA server asked through its REST Data API.

Owns `POST {url}/v1/data/<path>?provenance` with `{"input": ...}` (OPA's documented
Data API), the per-evaluation deadline, and reading the policy revision from OPA's
provenance (bundle revisions). A missing `result` is an undefined decision, which the
PDP denies; any HTTP or transport failure is an EngineError, also a deny.

Policy for the OPA server comes as a bundle: `portcullis policy build rego/ --out
bundle.tar.gz [--signing-key ...]` writes one OPA loads (`opa run -s -b`, or its bundle
service config with `signing.keyid`); the manifest's revision is the git commit, and it
comes back here in the provenance, so each decision names the bundle revision that made it.

Why not opa-python-client (PyPI `opa-python-client`, whose AsyncOpaClient would do this
POST through `query_rule`): its request helper retries a failed or 502/503/504 answer with
backoff, where a decision must fail closed within its own deadline and never be asked
twice; `query_rule` raises on a non-200 answer without the body OPA sent (the reason an
auditor needs); its session's timeout is one for the client, not one per decision; and
it would add requests, urllib3 and aiofiles to the PDP for one POST that aiohttp,
already here, makes with a pooled connector. Its administrative calls (policies, data)
have no use here: the PDP never pushes policy to OPA, bundles do.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from pdp.engine import DECISION_PATH, EngineError, EngineResult
from portcullis.config import EngineSettings


def revision_from_provenance(provenance: Any) -> str:
    """`opa:<bundle>@<revision>,...` from OPA's provenance object, or `opa:unknown`."""
    if not isinstance(provenance, dict):
        return "opa:unknown"
    bundles = provenance.get("bundles")
    if isinstance(bundles, dict) and bundles:
        parts = [
            f"{name}@{info.get('revision', '')}"
            for name, info in sorted(bundles.items())
            if isinstance(info, dict)
        ]
        return "opa:" + ",".join(parts)
    if isinstance(provenance.get("revision"), str) and provenance["revision"]:
        return "opa:" + provenance["revision"]
    return "opa:unknown"


class RemoteEngine:
    name = "remote"
    knows_revision = False  # a bundle can change at OPA without this PDP noticing

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self.timeout = settings.timeout_ms / 1000
        self._session: aiohttp.ClientSession | None = None
        self._revision = "opa:unknown"
        self._version = "opa (remote)"

    @property
    def revision(self) -> str:
        return self._revision

    @property
    def version(self) -> str:
        return self._version

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=30)
        )
        # learn the revision now; an unreachable OPA does not stop the PDP (it denies)
        try:
            await self.evaluate({}, DECISION_PATH)
        except EngineError:
            pass

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def evaluate(
        self, policy_input: dict[str, Any], path: str = DECISION_PATH
    ) -> EngineResult:
        if self._session is None:
            raise EngineError("remote engine not started")
        url = f"{self.settings.url}/v1/data/{path.replace('.', '/')}?provenance=true"
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                async with self._session.post(url, json={"input": policy_input}) as response:
                    if response.status != 200:
                        text = (await response.text())[:200]
                        raise EngineError(f"OPA answered HTTP {response.status}: {text}")
                    body = await response.json(content_type=None)
        except TimeoutError:
            raise EngineError(f"OPA did not answer within {self.settings.timeout_ms} ms") from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise EngineError(f"cannot reach OPA: {type(exc).__name__}: {exc}") from None
        if not isinstance(body, dict):
            raise EngineError("OPA answered something that is not a JSON object")
        provenance = body.get("provenance")
        if provenance is not None:
            self._revision = revision_from_provenance(provenance)
            if isinstance(provenance, dict) and provenance.get("version"):
                self._version = f"opa {provenance['version']} (remote)"
        elapsed = (time.perf_counter() - started) * 1000
        return EngineResult(body.get("result"), self._revision, elapsed)
