"""The ``api-version`` key: accepted range 0.2.0 to 0.7.x, and the features each version switches on."""

from __future__ import annotations

import re

from shared.pipeline_definition.fields import Section

ApiVersion = tuple[int, int, int]

OLDEST: ApiVersion = (0, 2, 0)
NEWEST_MINOR: tuple[int, int] = (0, 7)
TYPED_IO: ApiVersion = (0, 5, 0)
"""From here on: typed inputs/outputs, and every output needs a ``name``."""

_VERSION = re.compile(r"\s*(\d{1,6})\.(\d{1,6})(?:\.(\d{1,6}))?\s*")


def parse_version(raw: str) -> ApiVersion | None:
    """``"0.4.0"`` (or ``"0.4"``, as YAML turns ``0.4`` into a number) to ``(0, 4, 0)``; None if malformed."""
    match = _VERSION.fullmatch(raw)
    if match is None:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def format_version(version: ApiVersion) -> str:
    return ".".join(str(part) for part in version)


def read_version(section: Section, *, required: bool) -> ApiVersion | None:
    """The ``api-version`` of a document, checked against the supported range; None if absent or bad."""
    raw = section.text("api-version", required=required)
    if raw is None:
        return None
    version = parse_version(raw)
    where = section.at("api-version")
    if version is None:
        section.problems.invalid(where, f"{raw!r} is not a version: expected e.g. '0.4.0'")
    elif version < OLDEST or version[:2] > NEWEST_MINOR:
        supported = f"{format_version(OLDEST)} to {NEWEST_MINOR[0]}.{NEWEST_MINOR[1]}.x"
        section.problems.invalid(where, f"version {raw} is not supported: expected {supported}")
        return None
    return version
