"""What an MCP message names, as the proxy checks it and the PDP shows it to the policy.

Shared vocabulary (the neutral package): the method → the params key naming what it
acts on (a tool, a prompt, a resource) and the name the policy sees it under, and the
methods that carry arguments. No IO.
"""

from __future__ import annotations

# method → the params key that names what it acts on, and the key it is shown under
TARGETS = {
    "tools/call": ("name", "tool"),
    "prompts/get": ("name", "prompt"),
    "resources/read": ("uri", "uri"),
    "resources/subscribe": ("uri", "uri"),
    "resources/unsubscribe": ("uri", "uri"),
}
WITH_ARGUMENTS = frozenset({"tools/call", "prompts/get"})
