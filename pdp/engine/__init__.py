"""Policy engines: what evaluates `data.portcullis.decision` for the PDP.

Owns the engine interface and the factory that picks an implementation from the
configuration. `embedded` runs the real OPA evaluator in worker processes that can be
replaced when an evaluation overruns its deadline; `remote` asks an OPA server over its
REST Data API. Neither interprets the result: that is portcullis.verdict's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pdp.plumbing.frozen import quick_init
from portcullis.config import EngineSettings

DECISION_PATH = "portcullis.decision"


class EngineError(Exception):
    """An evaluation produced no usable result (timeout, crash, policy error)."""


@quick_init
@dataclass(frozen=True)
class EngineResult:
    # None when the document is undefined. Read it, never change it: the embedded engine
    # hands answers of equal bytes the same document (pdp.engine.embedded)
    result: Any
    revision: str
    elapsed_ms: float
    # the evaluator's answer as it came (embedded engine): equal bytes, equal result, so
    # the PDP maps one answer to a verdict once (pdp.domain.decisions); b"" when unknown
    raw: bytes = b""


class PolicyEngine(Protocol):
    name: str
    # True when the engine loads the policy itself, so `revision` changes the moment the
    # policy does; only then may the PDP reuse an evaluation the policy declared reusable
    knows_revision: bool

    @property
    def revision(self) -> str: ...

    @property
    def version(self) -> str: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def evaluate(
        self, policy_input: dict[str, Any], path: str = DECISION_PATH
    ) -> EngineResult:
        """Raises EngineError when no result could be had in time."""
        ...


def create_engine(settings: EngineSettings) -> PolicyEngine:
    if settings.type == "remote":
        from pdp.engine.remote import RemoteEngine

        return RemoteEngine(settings)
    from pdp.engine.embedded import EmbeddedEngine

    return EmbeddedEngine(settings)
