"""Portcullis protocol proxies: one shared runtime, one thin package per protocol."""

import os

# as pdp/__init__.py: a proxy forks (then at once execs) its other workers while its PDP
# stream is live, and gRPC's fork handlers racing its threads can crash it
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
