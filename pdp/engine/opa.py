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


# The policy's `answer` (rego/portcullis/decision.rego): its decision with the shipped
# literal mask set written as a mark where that set is the whole mask, the set's JSON
# written in by whoever evaluates it (shipped_mask_splice, decision_evaluator).
ANSWER_PATH = "portcullis.answer"
# [shipped_masks_mark, shipped_pii_masks] in one document: each path the binding evaluates
# first is compiled (~0.5 s for the shipped library), paid at every worker's policy load
_PARTS_PATH = "portcullis.shipped_mask_parts"


def _value_bytes(raw: bytes, path: str) -> bytes | None:
    """The JSON of the value of a raw_evaluate envelope for data.<path> exactly as the
    evaluator wrote it (its escaping and order), or None where it is not there."""
    import json

    start = raw.find(b'"value":')
    end = raw.rfind(b',"text":' + json.dumps(f"data.{path}").encode())
    if start == -1 or end <= start:
        return None
    return raw[start + len(b'"value":') : end]


def shipped_mask_splice(engine: Any) -> tuple[bytes, bytes] | None:
    """(the mark as it stands in an `answer` envelope, the shipped set there instead) for a
    policy that answers `answer` with a mark for its shipped mask set; None for any other
    (no mark, no set, an empty set, an `answer` that is not its `decision` on the probe):
    then the decision is evaluated whole."""
    try:
        import json

        parts_raw = raw_evaluate(engine, _PARTS_PATH, b"{}")
        parts = parse_envelope(parts_raw)
        parts_json = _value_bytes(parts_raw, _PARTS_PATH)
        if not isinstance(parts, list) or len(parts) != 2 or parts_json is None:
            return None
        mark, masks = parts
        if not isinstance(mark, str) or not mark or not isinstance(masks, list) or not masks:
            return None
        # the two values as the evaluator wrote them: `[` mark `,` masks `]`
        if not parts_json.startswith(b"[") or not parts_json.endswith(b"]"):
            return None
        text = parts_json.decode("utf-8")
        _, mark_end = json.JSONDecoder().raw_decode(text, 1)
        if text[mark_end : mark_end + 1] != ",":
            return None
        mark_json, masks_json = text[1:mark_end].encode(), text[mark_end + 1 : -1].encode()
        if json.loads(mark_json) != mark or json.loads(masks_json) != masks:
            return None
        splice = (b'"mask":' + mark_json, b'"mask":' + masks_json)
        probe = raw_evaluate(engine, ANSWER_PATH, b"{}").replace(*splice, 1)
        if parse_envelope(probe) != parse_envelope(raw_evaluate(engine, DECISION_PATH, b"{}")):
            return None
    except EvaluationFailed:
        return None
    return splice


def decision_evaluator(engine: Any) -> Any:
    """A function of input JSON bytes to the raw_evaluate envelope of the decision: the
    policy's `answer` with its shipped mask set written in where the policy has one
    (shipped_mask_splice: ~120,000 evaluator instructions less on a reader's decision, for
    a bytes.replace), else data.portcullis.decision itself. The document read out of it
    is the decision's either way."""
    splice = shipped_mask_splice(engine)
    if splice is None:
        return lambda input_json: raw_evaluate(engine, DECISION_PATH, input_json)
    mark, masks = splice

    def evaluate(input_json: bytes) -> bytes:
        return raw_evaluate(engine, ANSWER_PATH, input_json).replace(mark, masks, 1)

    return evaluate
