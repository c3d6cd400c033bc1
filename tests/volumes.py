"""A real full filesystem for the disk-full tests: a small tmpfs, filled up by a file of zeros."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_volume(path: Path, size: str = "8m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` (made if missing) for the duration; needs root."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill up needs root")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


def fill(volume: Path) -> Path:
    """Write zeros into ``volume``/filler until the filesystem has no block left; returns the filler."""
    filler = volume / "filler"
    block = bytes(64 * 1024)
    with filler.open("wb", buffering=0) as file:
        try:
            while True:
                file.write(block)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    for size in (4096, 512, 1):  # the last partial blocks too
        try:
            with filler.open("ab", buffering=0) as file:
                while True:
                    file.write(bytes(size))
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return filler
