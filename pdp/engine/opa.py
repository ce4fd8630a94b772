"""The only importer of the OPA evaluator (`opa_bindings`, the real OPA v1 Go engine).

Owns turning a PolicyBundle into a loaded engine and evaluating `data.portcullis.decision`.
The Go runtime inside must not live through a fork without exec, so the PDP server calls
this only inside its evaluation worker processes (pdp.engine.worker); CLI commands and
tests that run in their own process may call it directly.
"""

from __future__ import annotations

import functools
from typing import Any

from pdp.engine.bundle import PolicyBundle, unmet_requirement

DECISION_PATH = "portcullis.decision"

_UNDEFINED = object()


class PolicyLoadError(Exception):
    """The bundle does not compile or its probe evaluation fails."""


@functools.cache
def engine_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return "opa-golib-python-bindings " + version("opa-golib-python-bindings")
    except PackageNotFoundError:
        return "opa-golib-python-bindings (unknown version)"


def new_engine(bundle: PolicyBundle, probe: bool = True) -> Any:
    """Load every module and the data of a bundle into a fresh engine.

    With probe, evaluate the decision once on an empty input: the evaluator reports
    compile errors such as unsafe variables only when a query is first prepared. A
    bundle that needs a newer policy input than this PDP builds (bundle.unmet_requirement)
    is refused before anything loads: PolicyLoadError.
    """
    from opa_bindings import OpaEngine, OpaError

    unmet = unmet_requirement(bundle.data)
    if unmet:
        raise PolicyLoadError(unmet)
    engine = OpaEngine()
    engine.print_handler = lambda message, location: None
    try:
        for path, source in bundle.modules.items():
            engine.add_policy(path, source)
        if bundle.data:
            engine.add_data(bundle.data)
        if probe:
            _probe(engine)
    except OpaError as exc:
        engine.close()
        raise PolicyLoadError(exc.message) from None
    return engine


def _probe(engine: Any) -> None:
    from opa_bindings import OpaUndefinedError

    try:
        engine.eval_document(DECISION_PATH, {})
    except OpaUndefinedError:
        pass


def evaluate(engine: Any, policy_input: dict[str, Any], path: str = DECISION_PATH) -> Any:
    """Evaluate data.<path>; returns None when the document is undefined.

    Raises opa_bindings.OpaError on evaluation errors (conflicts, builtin errors).
    """
    from opa_bindings import OpaUndefinedError

    try:
        return engine.eval_document(path, policy_input)
    except OpaUndefinedError:
        return None


def raw_evaluate(engine: Any, path: str, input_json: bytes) -> bytes:
    """Evaluate data.<path> on input given as JSON bytes; returns the evaluator's JSON
    envelope ({"result": [...]} or {"error": {...}}) undecoded.

    Calls the binding's native entry point directly (pinned opa-golib-python-bindings
    0.4.4) so the hot path does no Python JSON work; `parse_envelope` reads the answer.
    """
    import ctypes

    with engine._eval_lock:
        handle = engine._handle
        if handle is None:
            return b'{"error": {"code": "closed", "message": "engine has been closed"}}'
        ptr = engine._lib.OpaEvalDocument(handle, path.encode(), input_json, 0, 0)
        if not ptr:
            return b'{"error": {"code": "internal", "message": "native call returned NULL"}}'
        try:
            return bytes(ctypes.string_at(ptr))
        finally:
            engine._lib.OpaFreeString(ptr)


class EvaluationFailed(Exception):
    """The evaluator reported an error (a conflict, a failing builtin, ...)."""


def parse_envelope(raw: bytes) -> Any:
    """The document in a raw_evaluate envelope: None when undefined; raises
    EvaluationFailed when the evaluator reported an error."""
    import json

    envelope = json.loads(raw)
    if not isinstance(envelope, dict):
        raise EvaluationFailed("evaluator answered something that is not an object")
    error = envelope.get("error")
    if error:
        raise EvaluationFailed(f"{error.get('code', 'error')}: {error.get('message', '')}")
    results = envelope.get("result") or []
    if not results or not results[0].get("expressions"):
        return None
    return results[0]["expressions"][0]["value"]
