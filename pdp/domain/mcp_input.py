"""input.command.mcp for an `mcp.call`: what the policy sees of one MCP message.

Owns the rule that the PDP reads the message itself, from the raw text the proxy sent
(the canonical JSON of the `endpoint` — path and query — it went to, with `{"method",
"params"}` of a JSON-RPC request or notification, `{"result"|"error", "answers"}` of a
client's answer to the server (`answers`: the method of the server's request it answers,
which the proxy handed the client; the text cannot say it otherwise), or `{"http":
"GET"|"DELETE"}`: opening the server's event stream, ending the session), and never takes
a proxy's description of which tool is called with which arguments. `"listing": true` beside the
method asks whether a `tools/list` (`prompts/list`, `resources/list`) answer may show a
tool (prompt, resource), not to call (get, read) it. From the proxy
it takes only whether the message was a notification (the id the text leaves out says
so). The roots a client declares to the server (its answer to `roots/list`, or one of a
request's `inputResponses`) are shown as `roots`, their URIs; the tools running when the
server asked what a response answers (the session's calls in flight) as `during`, the
variable names of the resource templates (as the server listed them) a resources/read or
subscribe URI fills as `template_variables` (`["email"]`: a lookup by email), and an
elicitation's answer that gives nothing (declined, cancelled) as `declined`. The
headers the proxy bound into the text (`"headers": [[name, value], ...]`: those it
forwards that a server may act on) are shown as `headers`. Text that is not such a
message is handed to the policy as `malformed`, which the shipped policy denies.

No IO here; called by the PDP's command_input() through the `mcp` protocol declaration.
"""

from __future__ import annotations

from typing import Any

from portcullis import strict_json
from portcullis.mcp import (
    TARGETS,
    URI_METHODS,
    WITH_ARGUMENTS,
    params_problem,
    template_problem,
    template_variables_problem,
    uri_problem,
)

MALFORMED = {"message": "malformed", "method": "", "malformed": True}
# what a `listing` question may ask of a listed item: calling a tool, getting a prompt,
# reading a resource (whether a tools, prompts or resources list may show it)
LISTED = frozenset({"tools/call", "prompts/get", "resources/read"})
# an HTTP request that carries no message: what it asks
HTTP_MESSAGES = {"GET": "stream", "DELETE": "end"}
# an answer to an elicitation that gives nothing: the user declined or cancelled
_DECLINED = ({"action": "decline"}, {"action": "cancel"})


def mcp_command(kind: str, raw: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """input.command.mcp: {message, method, endpoint, tool|prompt|uri, arguments,
    listing, answers, roots}; `message` is request, notification, response, stream, end or
    malformed. A completion/complete shows the prompt or resource template (`uri`) its ref names."""
    try:
        # (strict_json's reading, as the proxy's: no repeated name, no number the policy's
        # input would hold as another)
        message = strict_json.loads(raw)
    except (ValueError, RecursionError):
        return dict(MALFORMED)
    endpoint = message.pop("endpoint", None) if isinstance(message, dict) else None
    if not isinstance(endpoint, str):
        return dict(MALFORMED)
    headers = message.pop("headers", None)
    if headers is not None and not _header_pairs(headers):
        return dict(MALFORMED)
    filled = message.pop("template_variables", None)
    shown = _shown(message, endpoint, attributes)
    if headers is not None:
        shown["headers"] = headers
    if filled is not None and not shown.get("malformed"):
        # (a read's or subscribe's, never a listing question's nor an answer's)
        method = "" if shown.get("listing") else str(message.get("method"))
        if template_variables_problem(method, filled) is not None:
            return {**shown, "malformed": True}
        shown["template_variables"] = filled
    return shown


def _header_pairs(value: Any) -> bool:
    """[[name, value], ...]: the headers a message went upstream with (the proxy binds
    them into its text, so an approval covers no other)."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
            for pair in value
        )
    )


def _shown(message: dict[str, Any], endpoint: str, attributes: dict[str, Any]) -> dict[str, Any]:
    if "http" in message:
        if set(message) != {"http"} or message["http"] not in HTTP_MESSAGES:
            return dict(MALFORMED)
        return {"message": HTTP_MESSAGES[message["http"]], "method": "", "endpoint": endpoint}
    if "method" not in message:
        answers = message.pop("answers", None)
        during = message.pop("during", [])
        if not isinstance(during, list) or not all(isinstance(tool, str) for tool in during):
            return dict(MALFORMED)
        if set(message) in ({"result"}, {"error"}) and isinstance(answers, str):
            answer: dict[str, Any] = {
                "message": "response", "method": "", "endpoint": endpoint, "answers": answers
            }  # fmt: skip
            if during:
                # the tools the session's calls in flight ran when the server's request
                # reached the client: what an answer to it may steer
                answer["during"] = during
            if answers == "elicitation/create" and message.get("result") in _DECLINED:
                # the user said no (MCP Client → Elicitation: decline, cancel), and nothing
                # else: a tool is given nothing to act on
                answer["declined"] = True
            if answers == "roots/list" and "result" in message:
                roots = _roots([message["result"]])
                if roots is None:
                    return {**answer, "malformed": True}
                if roots:
                    answer["roots"] = roots
            return answer
        return dict(MALFORMED)
    method = message["method"]
    params = message.get("params", {})
    listing = message.get("listing", False)
    if (
        not isinstance(method, str)
        or not isinstance(params, dict)
        or set(message) - {"method", "params", "listing"}
        or listing not in (True, False)
        or (listing and method not in LISTED)
    ):
        return dict(MALFORMED)
    out: dict[str, Any] = {
        "message": "notification" if attributes.get("notification") is True else "request",
        "method": method,
        "endpoint": endpoint,
    }
    if params_problem(method, params) is not None:
        # a key MCP does not define for the method, which a server may read as one it does
        # (`meta` as `_meta`) while the policy reads it as nothing
        return {**out, "malformed": True}
    target = TARGETS.get(method)
    if target is not None:
        key, shown = target
        value = params.get(key)
        if not isinstance(value, str):
            return {**out, "malformed": True}
        out[shown] = value
        if method in URI_METHODS and uri_problem(value) is not None:
            # a URI a server may resolve to another than the one a prefix matched
            return {**out, "malformed": True}
    if method == "completion/complete":
        # what it completes an argument of (MCP Server → Utilities → Completion): a prompt
        # by name, or a resource template by its URI template, shown as a prompt or a uri
        ref = params.get("ref")
        ref = ref if isinstance(ref, dict) else {}
        named = {"ref/prompt": ("name", "prompt"), "ref/resource": ("uri", "uri")}.get(
            str(ref.get("type"))
        )
        completed = ref.get(named[0]) if named is not None else None
        if named is None or not isinstance(completed, str):
            return {**out, "malformed": True}
        out[named[1]] = completed
        if named[1] == "uri" and template_problem(completed) is not None:
            # a template a server may resolve to another than the one a prefix matched
            return {**out, "malformed": True}
    if "inputResponses" in params:
        # the client's answers to the server's input requests (2026-07-28), roots among
        # them: an answer is not told by its method there, so any holding `roots` is one
        answered = params["inputResponses"]
        roots = _roots(list(answered.values())) if isinstance(answered, dict) else None
        if roots is None:
            return {**out, "malformed": True}
        if roots:
            out["roots"] = roots
    if listing:
        out["listing"] = True
    elif method in WITH_ARGUMENTS:
        arguments = params.get("arguments", {})
        if not isinstance(arguments, dict):
            return {**out, "malformed": True}
        out["arguments"] = arguments
    return out


def _roots(results: list[Any]) -> list[str] | None:
    """The root URIs client answers declare (MCP Client → Roots: `{"roots": [{"uri"}]}`),
    [] when none of them is a roots answer; None when an answer is not an object, or its
    roots are not read one way only (a URI a server may resolve to another than the one a
    prefix matched)."""
    uris: list[str] = []
    for result in results:
        if not isinstance(result, dict):
            return None
        if "roots" not in result:
            continue
        roots = result["roots"]
        if not isinstance(roots, list):
            return None
        for root in roots:
            uri = root.get("uri") if isinstance(root, dict) else None
            if not isinstance(uri, str) or uri_problem(uri) is not None:
                return None
            uris.append(uri)
    return uris
