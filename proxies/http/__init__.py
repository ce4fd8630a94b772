"""The HTTP protocol (with MCP): a reverse proxy on the shared runtime, every request decided
(proxy.py; its sans-IO parts: codec.py, target.py, messages.py, bodies.py, websocket.py)."""
