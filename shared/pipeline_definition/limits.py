"""Bounds that keep a hostile definition from costing more than a bounded amount of time and memory."""

from __future__ import annotations

MAX_FILE_BYTES = 1024 * 1024
"""Largest definition file accepted (UTF-8 bytes)."""

MAX_NESTING = 64
"""Deepest YAML nesting accepted; real definitions stay under ten levels."""

MAX_ALIASES = 500
"""Most ``*alias`` references in one file."""

MAX_NODES = 50_000
"""Most YAML nodes in one file once aliases are expanded (stops "billion laughs" documents)."""

MAX_IMPORT_DEPTH = 16
"""Longest chain of files importing each other."""

MAX_IMPORTS = 512
"""Most import expansions in one definition (a file imported twice counts twice)."""

MAX_MESSAGES = 50
"""Most problems reported by one failed load, and most ignored keys named by one load; the rest are counted."""
