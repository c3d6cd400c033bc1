"""Metadata maps of pipelines, jobs and reusable payloads: the same rules everywhere.

Keys compare case-insensitively; a key is at most 128 bytes, a value at most 256 bytes (UTF-8) and one
object holds at most 4 MB of metadata. Adding a key that exists fails as a whole (nothing is changed).
Removing a key that does not exist is not an error, so clean-up scripts can be re-run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from shared.errors import ClaretError, ErrorCode

MAX_KEY_BYTES = 128
MAX_VALUE_BYTES = 256
MAX_TOTAL_BYTES = 4 * 1024 * 1024


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def validate(metadata: Mapping[str, str]) -> dict[str, str]:
    """Check a new metadata map on its own; returns a plain dict copy."""
    seen: dict[str, str] = {}
    total = 0
    for key, value in metadata.items():
        if not key.strip():
            raise ClaretError(ErrorCode.INVALID_METADATA, "metadata key must not be empty")
        if _size(key) > MAX_KEY_BYTES:
            raise ClaretError(
                ErrorCode.INVALID_METADATA, f"metadata key {key[:40]!r}... is longer than {MAX_KEY_BYTES} bytes"
            )
        if _size(value) > MAX_VALUE_BYTES:
            raise ClaretError(
                ErrorCode.INVALID_METADATA, f"metadata value of key {key!r} is longer than {MAX_VALUE_BYTES} bytes"
            )
        folded = key.casefold()
        if folded in seen:
            raise ClaretError(
                ErrorCode.INVALID_METADATA, f"metadata key {key!r} duplicates {seen[folded]!r} (keys ignore case)"
            )
        seen[folded] = key
        total += _size(key) + _size(value)
    if total > MAX_TOTAL_BYTES:
        raise ClaretError(ErrorCode.INVALID_METADATA, f"metadata is {total} bytes, over {MAX_TOTAL_BYTES}")
    return dict(metadata)


def add(existing: Mapping[str, str], new: Mapping[str, str]) -> dict[str, str]:
    """``existing`` plus ``new``; refuses the whole call if any new key is already there."""
    validate(new)
    present = {key.casefold(): key for key in existing}
    clashes = [key for key in new if key.casefold() in present]
    if clashes:
        raise ClaretError(ErrorCode.INVALID_METADATA, *(f"metadata key {key!r} already exists" for key in clashes))
    return validate({**existing, **new})


def remove(existing: Mapping[str, str], keys: Iterable[str]) -> dict[str, str]:
    drop = {key.casefold() for key in keys}
    return {key: value for key, value in existing.items() if key.casefold() not in drop}
