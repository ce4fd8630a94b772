"""Portcullis Policy Decision Point: identity, policy engines, decisions and evidence."""

import os

__version__ = "0.1.0"

# gRPC's fork handlers, on by default in grpcio, run at every fork() of a process holding
# gRPC threads; `portcullis up` forks (then at once execs) proxy workers and evaluation
# workers while its PDP server answers, and the handlers' race with those threads crashed
# it (SIGSEGV, about one start in eight with `workers: 2`). No child here uses the
# parent's gRPC state: each execs, so the handlers are off before grpc is first imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
