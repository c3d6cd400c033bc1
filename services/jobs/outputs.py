"""An operator's output folders on the host: made for the operator's user before it starts, swept once
it has ended, and measured against the job's output quota.

The sweep is what keeps a hostile operator from planting a file that gives a local user more rights: it
strips setuid and setgid bits and hands anything left owned by root to the operator's user. It walks by
directory descriptors and never follows a symbolic link, so a link in the outputs cannot point it at a
host file.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

PRIVILEGE_BITS = stat.S_ISUID | stat.S_ISGID


def prepare(folders: Iterable[Path], user: tuple[int, int] | None) -> None:
    """Make the output folders, owned by the operator's user when this service is root (it writes there)."""
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        if user is not None and os.geteuid() == 0:
            os.chown(folder, *user)


def usage(folders: Iterable[Path]) -> int:
    """Bytes of disk the folders' contents take (blocks, so sparse files count as what they hold). Walked
    by descriptor: a running operator that swaps a folder for a link cannot lead the walk out."""
    total = 0
    for folder in folders:
        with contextlib.suppress(OSError):
            for _top, dirs, files, dir_fd in os.fwalk(folder, follow_symlinks=False):
                for name in (*dirs, *files):
                    with contextlib.suppress(OSError):
                        total += os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_blocks * 512
    return total


def sweep(folders: Iterable[Path], user: tuple[int, int] | None) -> None:
    """After the operator ended: no setuid or setgid bit anywhere below the folders, and nothing owned by
    root (given to ``user``) when this service is root."""
    owner = user if os.geteuid() == 0 else None
    for folder in folders:
        with contextlib.suppress(OSError):  # gone, or (a service that is not root) made unreadable
            _sweep_one(os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC), owner)
        with contextlib.suppress(OSError):
            for _top, dirs, files, dir_fd in os.fwalk(folder, follow_symlinks=False):
                for name in (*dirs, *files):
                    with contextlib.suppress(OSError):
                        _sweep_entry(name, dir_fd, owner)


def _sweep_entry(name: str, dir_fd: int, owner: tuple[int, int] | None) -> None:
    info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_ISLNK(info.st_mode):
        if owner is not None and info.st_uid == 0:
            os.chown(name, *owner, dir_fd=dir_fd, follow_symlinks=False)
        return
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        return  # a FIFO or socket: no privilege bits worth having, and opening one could block
    _sweep_one(os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd), owner)


def _sweep_one(fd: int, owner: tuple[int, int] | None) -> None:
    """Fix one opened file or folder (through its descriptor: what was checked is what is changed)."""
    try:
        info = os.fstat(fd)
        if owner is not None and info.st_uid == 0:
            os.fchown(fd, *owner)  # (this clears setuid and setgid bits of a file too)
        mode = stat.S_IMODE(info.st_mode)
        if mode & PRIVILEGE_BITS:
            os.fchmod(fd, mode & ~PRIVILEGE_BITS)
    finally:
        os.close(fd)
