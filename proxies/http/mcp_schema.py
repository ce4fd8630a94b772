"""MCP's typed members: a masked server message kept valid for the client that reads it.

Owns what MCP's schema (2025-11-25; schema.ts) says of the members of what a server sends
that are not free text: booleans (a tool's `readOnlyHint`), numbers (an annotation's
`priority`, a resource's `size`, a progress), enumerations (a role, a log level, a
content item's `type`), lists of them (`audience`). A mask writes strings
(`[REDACTED]`); where the schema allows no string, a strict client (the `mcp` SDK's
pydantic models) rejects the whole answer. `conform` compares the masked message with the
one that came: a typed member the masks changed is dropped when the schema lets it be
absent (an absent hint means the cautious default: not read-only, destructive), the item
holding it is dropped from a list of items when it must be present (a tool, a content
item), and otherwise the message cannot be shown (`Unconformable`: the caller answers with
an error). What the masks left as it came is not touched, nor anything free (`_meta`,
`structuredContent`, a log's `data`, a schema). No IO here.
"""

from __future__ import annotations

from typing import Any


class Unconformable(ValueError):
    """The masked message breaks MCP's schema where nothing can be dropped."""


class _Dropped(Unconformable):
    """This item cannot stay as masked: its list goes on without it."""


# a member's kind: "str", "bool", "num", "unit" (a number 0..1), "int", "any" (free), a
# frozenset (an enumeration of strings), ("list", kind), ("union", kind, ...), or the
# name of an object type below; (kind, required)
Kind = Any
ROLE = frozenset({"user", "assistant"})
LOG_LEVEL = frozenset(
    {"debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"}
)
TASK_STATUS = frozenset({"working", "input_required", "completed", "failed", "cancelled"})

_TYPES: dict[str, dict[str, tuple[Kind, bool]]] = {
    "Annotations": {
        "audience": (("list", ROLE), False),
        "priority": ("unit", False),
        "lastModified": ("str", False),
    },
    "ToolAnnotations": {
        "title": ("str", False),
        "readOnlyHint": ("bool", False),
        "destructiveHint": ("bool", False),
        "idempotentHint": ("bool", False),
        "openWorldHint": ("bool", False),
    },
    "Icon": {
        "src": ("str", True),
        "mimeType": ("str", False),
        "sizes": (("list", "str"), False),
        "theme": (frozenset({"light", "dark"}), False),
    },
    "Implementation": {
        "name": ("str", True),
        "title": ("str", False),
        "version": ("str", True),
        "description": ("str", False),
        "websiteUrl": ("str", False),
        "icons": (("list", "Icon"), False),
    },
    "Tool": {
        "name": ("str", True),
        "title": ("str", False),
        "description": ("str", False),
        "inputSchema": ("object", True),
        "outputSchema": ("object", False),
        "annotations": ("ToolAnnotations", False),
        "icons": (("list", "Icon"), False),
        "execution": ("ToolExecution", False),
        "_meta": ("object", False),
    },
    "ToolExecution": {"taskSupport": (frozenset({"forbidden", "optional", "required"}), False)},
    "Resource": {
        "uri": ("str", True),
        "name": ("str", True),
        "title": ("str", False),
        "description": ("str", False),
        "mimeType": ("str", False),
        "size": ("int", False),
        "icons": (("list", "Icon"), False),
        "annotations": ("Annotations", False),
        "_meta": ("object", False),
    },
    "ResourceTemplate": {
        "uriTemplate": ("str", True),
        "name": ("str", True),
        "title": ("str", False),
        "description": ("str", False),
        "mimeType": ("str", False),
        "icons": (("list", "Icon"), False),
        "annotations": ("Annotations", False),
        "_meta": ("object", False),
    },
    "ResourceContents": {
        "uri": ("str", True),
        "mimeType": ("str", False),
        "text": ("str", False),
        "blob": ("str", False),
        "_meta": ("object", False),
    },
    "PromptArgument": {
        "name": ("str", True),
        "title": ("str", False),
        "description": ("str", False),
        "required": ("bool", False),
    },
    "Prompt": {
        "name": ("str", True),
        "title": ("str", False),
        "description": ("str", False),
        "arguments": (("list", "PromptArgument"), False),
        "icons": (("list", "Icon"), False),
        "_meta": ("object", False),
    },
    "PromptMessage": {"role": (ROLE, True), "content": ("Content", True)},
    "SamplingMessage": {"role": (ROLE, True), "content": ("any", True), "_meta": ("object", False)},
    "Task": {
        "taskId": ("str", True),
        "status": (TASK_STATUS, True),
        "statusMessage": ("str", False),
        "createdAt": ("str", True),
        "lastUpdatedAt": ("str", True),
        "ttl": (("union", "int", "null"), True),
        "pollInterval": ("int", False),
    },
    "ModelPreferences": {
        "hints": ("any", False),
        "costPriority": ("unit", False),
        "speedPriority": ("unit", False),
        "intelligencePriority": ("unit", False),
    },
    "Completion": {
        "values": (("list", "str"), True),
        "total": ("int", False),
        "hasMore": ("bool", False),
    },
    "Error": {"code": ("int", True), "message": ("str", True), "data": ("any", False)},
    # (a content item's own members by its `type`: _CONTENT)
    "TextContent": {
        "type": (frozenset({"text"}), True),
        "text": ("str", True),
        "annotations": ("Annotations", False),
        "_meta": ("object", False),
    },
    "BinaryContent": {
        "type": (frozenset({"image", "audio"}), True),
        "data": ("str", True),
        "mimeType": ("str", True),
        "annotations": ("Annotations", False),
        "_meta": ("object", False),
    },
    "EmbeddedResource": {
        "type": (frozenset({"resource"}), True),
        "resource": ("ResourceContents", True),
        "annotations": ("Annotations", False),
        "_meta": ("object", False),
    },
    "ToolUseContent": {
        "type": (frozenset({"tool_use"}), True),
        "name": ("str", True),
        "id": ("str", True),
        "input": ("object", True),
        "_meta": ("object", False),
    },
}
_TYPES["ResourceLink"] = {"type": (frozenset({"resource_link"}), True), **_TYPES["Resource"]}
_CONTENT = {
    "text": "TextContent",
    "image": "BinaryContent",
    "audio": "BinaryContent",
    "resource_link": "ResourceLink",
    "resource": "EmbeddedResource",
    "tool_use": "ToolUseContent",
}
_PAGED = {"nextCursor": ("str", False), "_meta": ("object", False)}

# what a server answers each method with (its `result`), by the method of the request
RESULTS: dict[str, dict[str, tuple[Kind, bool]]] = {
    "initialize": {
        "protocolVersion": ("str", True),
        "capabilities": ("object", True),
        "serverInfo": ("Implementation", True),
        "instructions": ("str", False),
        "_meta": ("object", False),
    },
    "tools/list": {"tools": (("list", "Tool"), True), **_PAGED},
    "tools/call": {
        "content": (("list", "Content"), True),
        "structuredContent": ("any", False),
        "isError": ("bool", False),
        "_meta": ("object", False),
    },
    "resources/list": {"resources": (("list", "Resource"), True), **_PAGED},
    "resources/templates/list": {
        "resourceTemplates": (("list", "ResourceTemplate"), True),
        **_PAGED,
    },
    "resources/read": {
        "contents": (("list", "ResourceContents"), True),
        "_meta": ("object", False),
    },
    "prompts/list": {"prompts": (("list", "Prompt"), True), **_PAGED},
    "prompts/get": {
        "description": ("str", False),
        "messages": (("list", "PromptMessage"), True),
        "_meta": ("object", False),
    },
    "completion/complete": {"completion": ("Completion", True), "_meta": ("object", False)},
    "tasks/get": _TYPES["Task"],
    "tasks/cancel": _TYPES["Task"],
    "tasks/list": {"tasks": (("list", "Task"), True), **_PAGED},
}
# what a server's own request or notification carries (its `params`), by its method
PARAMS: dict[str, dict[str, tuple[Kind, bool]]] = {
    "notifications/message": {
        "level": (LOG_LEVEL, True),
        "logger": ("str", False),
        "data": ("any", True),
    },
    "notifications/progress": {
        "progressToken": (("union", "str", "int"), True),
        "progress": ("num", True),
        "total": ("num", False),
        "message": ("str", False),
    },
    "notifications/cancelled": {
        "requestId": (("union", "str", "int"), False),
        "reason": ("str", False),
    },
    "notifications/resources/updated": {"uri": ("str", True)},
    "notifications/tasks/status": _TYPES["Task"],
    "sampling/createMessage": {
        "messages": (("list", "SamplingMessage"), True),
        "modelPreferences": ("ModelPreferences", False),
        "systemPrompt": ("str", False),
        "includeContext": (frozenset({"none", "thisServer", "allServers"}), False),
        "temperature": ("num", False),
        "maxTokens": ("int", True),
        "stopSequences": (("list", "str"), False),
        "metadata": ("object", False),
    },
    "elicitation/create": {
        "mode": (frozenset({"form", "url"}), False),
        "message": ("str", True),
        "requestedSchema": ("object", False),
        "url": ("str", False),
        "elicitationId": ("str", False),
    },
}


def conform_message(masked: dict[str, Any], came: dict[str, Any], method: str) -> dict[str, Any]:
    """A masked JSON-RPC message (`masked`) whose typed members are as MCP's schema types
    them: an answer to `method` (its `result`, its `error`) or the server's own `method`
    (its `params`). Raises Unconformable when that cannot be had by dropping."""
    out = dict(masked)
    for key, shape in (("result", RESULTS.get(method)), ("params", PARAMS.get(method))):
        if key in masked and shape is not None and isinstance(masked[key], dict):
            out[key] = _members(masked[key], came.get(key), shape)
    if "error" in masked:
        out["error"] = _value(masked["error"], came.get("error"), "Error")
    return out


def _members(masked: dict[str, Any], came: Any, shape: dict[str, tuple[Kind, bool]]) -> dict:
    came = came if isinstance(came, dict) else {}
    out: dict[str, Any] = {}
    for key, value in masked.items():
        if key not in shape:
            out[key] = value  # (what MCP does not type here: as the masks left it)
            continue
        kind, required = shape[key]
        try:
            out[key] = _value(value, came.get(key, _ABSENT), kind)
        except _Dropped:
            if required:
                raise
            # (a typed member the masks changed, which may be absent: absent)
    return out


_ABSENT = object()


def _value(value: Any, came: Any, kind: Kind) -> Any:
    """`value` as masked, of `kind`; raises _Dropped when the masks made it another kind."""
    if isinstance(kind, tuple) and kind[0] == "list":
        if not isinstance(value, list):
            return _leaf(value, came, kind)
        came_items = came if isinstance(came, list) and len(came) == len(value) else None
        out = []
        for n, item in enumerate(value):
            try:
                out.append(_value(item, came_items[n] if came_items else _ABSENT, kind[1]))
            except _Dropped:
                if not isinstance(kind[1], str) or kind[1] not in _DROPPABLE:
                    raise  # (a list of values: `audience`, a completion's values)
                # (an item of a list of items, a tool, a content block: the rest stay)
        return out
    if kind == "Content":
        named = value.get("type") if isinstance(value, dict) else None
        if named not in _CONTENT and isinstance(came, dict):
            named = came.get("type")  # (its type masked: read as the type it came as)
        if not isinstance(named, str) or named not in _CONTENT:
            return _leaf(value, came, "object")
        kind = _CONTENT[named]
    if isinstance(kind, str) and kind in _TYPES:
        if not isinstance(value, dict):
            return _leaf(value, came, "object")
        return _members(value, came, _TYPES[kind])
    return _leaf(value, came, kind)


# lists whose items are things a server offers or answers with, any of which may go alone
_DROPPABLE = frozenset(
    {"Tool", "Resource", "ResourceTemplate", "ResourceContents", "Prompt", "Content", "Task"}
    | {"PromptMessage", "PromptArgument", "Icon"}
)


def _leaf(value: Any, came: Any, kind: Kind) -> Any:
    if _fits(value, kind) or (came is not _ABSENT and value == came):
        return value  # (of its kind, or as it came: what the server wrote, not the masks)
    raise _Dropped(kind)


def _fits(value: Any, kind: Kind) -> bool:
    if kind == "any":
        return True
    if kind == "str":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "num":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "unit":
        return _fits(value, "num") and 0 <= value <= 1
    if kind == "null":
        return value is None
    if kind == "object":
        return isinstance(value, dict)
    if isinstance(kind, frozenset):
        return isinstance(value, str) and value in kind
    if isinstance(kind, tuple) and kind[0] == "union":
        return any(_fits(value, k) for k in kind[1:])
    if isinstance(kind, tuple) and kind[0] == "list":
        return isinstance(value, list) and all(_fits(v, kind[1]) for v in value)
    if isinstance(kind, str) and kind in _TYPES:
        return isinstance(value, dict)
    return False


# what a JSON Schema asks of a value that a masked value (`[REDACTED]`, `a***@x.com`,
# `**** 1111`, a hash) need not meet: a pattern, a format, a length, a range, an
# enumeration, distinct items (masked values are alike)
_VALUE_KEYWORDS = frozenset(
    {"pattern", "format", "maxLength", "minLength", "enum", "const", "contentEncoding"}
    | {"contentMediaType", "contentSchema", "minimum", "maximum", "exclusiveMinimum"}
    | {"exclusiveMaximum", "multipleOf", "uniqueItems"}
)
# keywords whose meaning a relaxed subschema would turn round (what `not` forbids, which
# branch `if` picks, `oneOf`'s exactly one): gone, or `oneOf` read as `anyOf`
_TURNING_KEYWORDS = frozenset({"not", "if", "then", "else"})
_SCHEMA_MAPS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_ONE = frozenset({"items", "additionalItems", "contains", "unevaluatedItems"})


def relaxed_output_schema(schema: Any) -> Any:
    """A tool's `outputSchema` (MCP Server → Tools → Output schema: a JSON Schema whose root
    is an object) that the tool's masked results meet: what a schema asks of values
    (_VALUE_KEYWORDS) dropped, every type but the root's allowing a string, and no
    keyword left whose meaning that would turn round (_TURNING_KEYWORDS). A client that
    validates structured content against the schema (the `mcp` SDK's) rejected every
    masked result of a tool whose schema asks a pattern or a number of a masked field."""
    if not isinstance(schema, dict):
        return schema
    out = _relaxed(schema, 0)
    if isinstance(out, dict) and "type" in schema:
        out["type"] = schema["type"]  # (the root stays an object: MCP's own rule)
    return out


_RELAX_DEPTH = 64


def _relaxed(schema: Any, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > _RELAX_DEPTH:
        return {} if depth > _RELAX_DEPTH else schema  # ({}: anything)
    out: dict[str, Any] = {}
    for key, child in schema.items():
        if key in _VALUE_KEYWORDS or key in _TURNING_KEYWORDS:
            continue
        if key == "type":
            kinds = child if isinstance(child, list) else [child]
            out[key] = kinds if "string" in kinds else [*kinds, "string"]
        elif key in _SCHEMA_MAPS and isinstance(child, dict):
            out[key] = {name: _relaxed(sub, depth + 1) for name, sub in child.items()}
        elif key in _SCHEMA_LISTS and isinstance(child, list):
            out["anyOf" if key == "oneOf" else key] = [_relaxed(s, depth + 1) for s in child]
        elif key in _SCHEMA_ONE or key in ("additionalProperties", "unevaluatedProperties"):
            # (`false` stays: the masks add no member; a schema is relaxed)
            out[key] = _relaxed(child, depth + 1) if isinstance(child, dict) else child
        elif key == "propertyNames":
            continue  # (a masked name, `_fresh_key`'s, may not match it)
        else:
            out[key] = child
    return out
