"""What Claret reads of a Triton model's ``config.pbtxt``: its name. Shared by the Models service, which
checks uploads, and the CLI, which names a model after its folder's config."""

from __future__ import annotations

import re

CONFIG = "config.pbtxt"
_NAME = re.compile(r'^\s*name\s*:\s*"([^"]*)"', re.MULTILINE)


def declared_name(config: str) -> str | None:
    """The model's ``name`` as a config.pbtxt's text gives it, if it gives one."""
    found = _NAME.search(config)
    return None if found is None else found.group(1)
