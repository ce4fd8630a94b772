"""The only importer of the OPA evaluator (`opa_bindings`, the real OPA v1 Go engine).

Owns turning a PolicyBundle into a loaded engine and evaluating `data.portcullis.decision`.
The Go runtime inside must not live through a fork without exec, so the PDP server calls
this only inside its evaluation worker processes (pdp.engine.worker); CLI commands and
tests that run in their own process may call it directly.
"""

from __future__ import annotations

from typing import Any

from pdp.engine.bundle import PolicyBundle

DECISION_PATH = "portcullis.decision"

_UNDEFINED = object()


class PolicyLoadError(Exception):
    """The bundle does not compile or its probe evaluation fails."""


def engine_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return "opa-golib-python-bindings " + version("opa-golib-python-bindings")
    except PackageNotFoundError:
        return "opa-golib-python-bindings (unknown version)"


def new_engine(bundle: PolicyBundle, probe: bool = True) -> Any:
    """Load every module and the data of a bundle into a fresh engine.

    With probe, evaluate the decision once on an empty input: the evaluator reports
    compile errors such as unsafe variables only when a query is first prepared.
    """
    from opa_bindings import OpaEngine, OpaError

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
