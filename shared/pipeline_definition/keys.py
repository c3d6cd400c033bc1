"""The keys the definition language defines, per kind of mapping (pipeline, operator, service, ...).

Any other key is kept and ignored, and the load names it (:class:`~problems.IgnoredKey`) so Create and
Update can tell the author, who most likely made a typo. Free-form mappings (``parameters``,
``variables``, ``import.args``) have no fixed keys and are not listed.

A key listed here is part of the language even where this platform does not act on it, and gets no
warning: ``orchestrator`` and ``pipeline-inject`` (accepted and ignored; real pipelines carry
``orchestrator: Clara``, and a warning on each would teach authors to skip warnings), a service's
``description``, and typed attributes before api-version 0.5.0.
"""

from __future__ import annotations

Keys = frozenset[str]

_DOCUMENT: Keys = frozenset({"api-version", "name", "description", "parameters"})
"""What every document of the language may hold (an imported operator file is a document of its own)."""

PIPELINE: Keys = _DOCUMENT | {"operators", "pull-secrets", "timeout", "orchestrator", "pipeline-inject"}
OPERATOR: Keys = _DOCUMENT | {
    "container",
    "input",
    "output",
    "requests",
    "variables",
    "services",
    "models",
    "timeout",
}
SERVICE: Keys = frozenset({"api-version", "name", "description", "container", "requests", "variables", "connections"})
IMPORT: Keys = frozenset({"path", "args"})
"""The ``import`` mapping itself; keys written beside it are the declaration's own (they override)."""
CONTAINER: Keys = frozenset({"image", "tag", "command"})
REQUESTS: Keys = frozenset({"cpu", "gpu", "memory"})
_TYPED: Keys = frozenset({"name", "path", "type", "element-type", "shape"})
INPUT: Keys = _TYPED | {"from"}
OUTPUT: Keys = _TYPED
MODEL: Keys = frozenset({"name"})
CONNECTIONS: Keys = frozenset({"http", "volume"})
HTTP: Keys = frozenset({"name", "port"})
VOLUME: Keys = frozenset({"name", "path"})
