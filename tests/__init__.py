"""The tests run servers in this very process too (tests/conftest.py ``platform``): this package is imported
before any test module or grpc, so it sets what a server process sets (claret/serve_command.py)."""

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
