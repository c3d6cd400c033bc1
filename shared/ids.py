"""Identifiers and timestamps as the Clara API writes them.

Ids are emitted as 32 lowercase hex characters; dashed UUIDs (any case) are accepted on input.
Timestamps on the wire count seconds since 0001-01-01T00:00:00Z (the .NET epoch).
"""

from __future__ import annotations

import functools
import time
import uuid
from datetime import UTC, datetime

from shared.errors import ClaretError, ErrorCode

DOTNET_EPOCH_OFFSET = 62135596800
"""Seconds from 0001-01-01 to 1970-01-01: ``dotnet = unix + DOTNET_EPOCH_OFFSET``."""


def new_id() -> str:
    return uuid.uuid4().hex


def parse_id(value: str, code: ErrorCode, what: str) -> str:
    """Canonical 32-hex form of ``value``, or ClaretError(code) naming what was wrong."""
    text = value.strip()
    if not text:
        raise ClaretError(code, f"{what} id is missing")
    try:
        parsed = uuid.UUID(text)
    except ValueError:
        raise ClaretError(code, f"{what} id {value!r} is not a valid id (32 hex characters or a UUID)") from None
    return parsed.hex


def now() -> float:
    return time.time()


def to_dotnet(unix: float | None) -> int:
    """Seconds since the .NET epoch; 0 for an unset time (clients show None)."""
    return 0 if unix is None else int(unix) + DOTNET_EPOCH_OFFSET


def from_dotnet(value: int) -> float | None:
    return None if value <= 0 else float(value - DOTNET_EPOCH_OFFSET)


@functools.lru_cache(maxsize=4096)
def legacy_time(unix: float | None) -> str:
    """The legacy string fields: ``YYYY-MM-DD HH:MM:SSZ``, empty when unset. Remembered: a polled job asks
    for the same few times again and again, and formatting one costs more than the rest of its field."""
    if unix is None:
        return ""
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
