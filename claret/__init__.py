"""Claret: an open, Clara Deploy-compatible platform that runs GPU pipelines of containers."""

import os

__version__ = "0.1.0"

# gRPC's fork handlers run in a forked child before it execs and have crashed it (SIGSEGV in cygrpc).
# Claret never forks a gRPC process on purpose (operators start through posix_spawn); turn them off
# before grpc is first imported, for any library that still forks.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
