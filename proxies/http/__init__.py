"""The HTTP protocol (with MCP): declared for configuration and policy; no proxy serves it yet."""
