"""Domain errors: one exception type carrying a wire code (the table below; docs/behaviour.md says what each means).

Domain modules raise :class:`ClaretError`; the per-RPC wrapper in :mod:`shared.wire` turns it into the
response's ``ResponseHeader`` (gRPC status stays OK).
"""

from __future__ import annotations

import errno
from enum import IntEnum


class ErrorCode(IntEnum):
    """Negative ``ResponseHeader.code`` values. Documented Clara codes first, then Claret's own."""

    INTERNAL = -1

    INVALID_PIPELINE_ID = -0x1000
    NO_SUCH_PIPELINE = -0x1001
    PIPELINE_STORE = -0x1002
    PIPELINE_LIST = -0x1003
    PIPELINE_UPDATE = -0x1004
    PIPELINE_DEFINITION = -0x1100
    PIPELINE_LOAD = -0x1101

    INVALID_JOB_ID = -0x2000
    NO_SUCH_JOB = -0x2001
    JOB_WRONG_STATE = -0x2002
    JOB_CANNOT_FIT = -0x2003
    NO_SUCH_OPERATOR = -0x2004
    INVALID_JOB_NAME = -0x2100
    INVALID_VARIABLES = -0x2101

    INVALID_PAYLOAD_ID = -0x3000
    NO_SUCH_PAYLOAD = -0x3001
    NO_SUCH_FILE = -0x3002
    PAYLOAD_READ_ONLY = -0x3003
    INVALID_FILE_NAME = -0x3004
    STORAGE_FULL = -0x3005
    AMBIGUOUS_NAME = -0x3006

    INVALID_MODEL_ID = -0x4000
    NO_SUCH_MODEL = -0x4001
    INVALID_MODEL = -0x4002
    NO_SUCH_CATALOG = -0x4003
    NO_SUCH_INSTANCE = -0x4004
    MODEL_IN_USE = -0x4005
    TRITON_UNAVAILABLE = -0x4006

    INVALID_METADATA = -0x5000


class ClaretError(Exception):
    """A failure the caller can act on: a wire code and at least one message naming the bad value."""

    def __init__(self, code: ErrorCode, *messages: str) -> None:
        if not messages:
            raise ValueError("ClaretError needs at least one message")
        super().__init__("; ".join(messages))
        self.code = code
        self.messages: tuple[str, ...] = messages

    def __repr__(self) -> str:
        return f"ClaretError({self.code.name}, {self.messages!r})"


FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
"""What the kernel answers a write to a full volume (or past a quota)."""


def storage_full(volume: str) -> ClaretError:
    """``STORAGE_FULL`` naming the volume that is full, e.g. ``the payload volume (/data/payloads)``."""
    return ClaretError(ErrorCode.STORAGE_FULL, f"storage full: no space left on {volume}")
