"""The SSH protocol: declared for configuration and policy; no proxy serves it yet."""
