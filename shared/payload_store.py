"""Payload files on a shared directory tree: ``<root>/<payload_id>/<relative name>``.

All state is on disk, so service replicas on one host can share the tree; there is no in-memory
registry and no database here. Visibility rules (DECISIONS.md, Payloads):

* A file appears only when complete: uploads and copies go to a hidden temporary next to the
  destination (prefix :data:`TEMP_PREFIX`) and are renamed over the final name with ``os.replace``,
  which is atomic. A failed or cancelled upload removes its temporary; a crash leaves one behind, which
  :meth:`PayloadStore.sweep_temporaries` removes at the next start.
* Deleting a payload first renames its directory to a tombstone (:data:`TOMBSTONE_PREFIX`), so no
  reader ever sees half of a payload.
* Lookups never follow symbolic links and only ever return regular files, so a link planted by an
  operator cannot expose anything outside the payload.

File I/O runs on the event loop thread with plain file objects: page-cache reads and writes of 1 MiB
take well under a millisecond, which is cheaper than a thread hand-off per chunk.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import secrets
import shutil
import stat
import time
import unicodedata
from collections.abc import AsyncIterable, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from shared.errors import ClaretError, ErrorCode

RESERVED_PREFIX = ".claret-"
"""Names of our own bookkeeping entries start with this; uploads may not use it."""
TEMP_PREFIX = RESERVED_PREFIX + "upload-"
TOMBSTONE_PREFIX = RESERVED_PREFIX + "deleted-"
INPUT_DIR = "input"

MAX_NAME_BYTES = 4096
MAX_SEGMENT_BYTES = 255
WRITE_BUFFER = 1024 * 1024
"""Uploads arrive in 64 KiB chunks; buffering turns them into 1 MiB write syscalls."""
SWEEP_MIN_AGE_S = 3600.0
"""Replicas share the tree, so a starting replica only sweeps temporaries nobody has written for this long."""

_PAYLOAD_ID = re.compile(r"[0-9a-f]{32}")
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO that raced in place of a regular file must not hang the event loop.
_OPEN_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_OPEN_TEMP = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class FileInfo:
    """One regular file of a payload, as Details, Upload and Download report it."""

    name: str
    """Relative to the payload root with a leading ``/``, e.g. ``/input/a/b.dcm``."""
    size: int
    mode: int
    """POSIX permission bits (``st_mode & 0o7777``)."""


def normalise_name(name: str) -> str:
    """Return ``name`` relative to the payload root without a leading ``/`` or ``./``; case is kept.

    Raises :class:`ClaretError` ``INVALID_FILE_NAME`` for an empty name, ``.`` / ``..`` / empty
    segments, control characters, the reserved ``.claret-`` prefix, or a name longer than the
    filesystem allows (4096 bytes, 255 per segment). Backslashes are ordinary characters.
    """
    stripped = name
    while stripped.startswith(("/", "./")):
        stripped = stripped[1:] if stripped.startswith("/") else stripped[2:]
    reason = _name_problem(stripped)
    if reason is not None:
        raise ClaretError(ErrorCode.INVALID_FILE_NAME, f"invalid file name {name!r}: {reason}")
    return stripped


def _name_problem(name: str) -> str | None:
    """Why an already stripped relative name is unusable, or None."""
    if not name:
        return "the name is empty"
    if any(unicodedata.category(char) == "Cc" for char in name):
        return "it contains a control character"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "it is not valid UTF-8"
    if size > MAX_NAME_BYTES:
        return f"it is longer than {MAX_NAME_BYTES} bytes"
    for segment in name.split("/"):
        problem = _segment_problem(segment)
        if problem is not None:
            return problem
    # Belt and braces: whatever passed the checks above must stay inside the payload.
    if posixpath.normpath("/" + name) != "/" + name:
        return "it does not stay inside the payload"
    return None


def _segment_problem(segment: str) -> str | None:
    if not segment:
        return "it has an empty path segment"
    if segment in (".", ".."):
        return f"{segment!r} segments are not allowed"
    if segment.casefold().startswith(RESERVED_PREFIX):
        return f"the prefix {RESERVED_PREFIX!r} is reserved"
    if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
        return f"a path segment is longer than {MAX_SEGMENT_BYTES} bytes"
    return None


class FileChunks:
    """Blocks of at most ``chunk_size`` bytes of one open file; closes it at the end or on :meth:`aclose`.

    The file is opened before the first block is asked for, so a reader keeps the version it resolved
    even if an upload replaces the name or the payload is deleted meanwhile. An empty file yields nothing.
    """

    def __init__(self, file: BinaryIO, chunk_size: int) -> None:
        self._file = file
        self._chunk_size = chunk_size

    def __aiter__(self) -> FileChunks:
        return self

    async def __anext__(self) -> bytes:
        if self._file.closed:
            raise StopAsyncIteration
        try:
            block = self._file.read(self._chunk_size)
        except BaseException:
            self._file.close()
            raise
        if not block:
            self._file.close()
            raise StopAsyncIteration
        return block

    async def aclose(self) -> None:
        """Release the file early (a download that ends before the last block)."""
        self._file.close()


class PayloadStore:
    """Payload directories under ``root``; see the module docstring for the on-disk rules.

    ``max_usage`` is the share of the filesystem above which uploads and copies are refused;
    ``chunk_size`` is the largest block :meth:`read_file` hands out.
    """

    def __init__(self, root: Path, *, max_usage: float = 0.8, chunk_size: int = 1024 * 1024) -> None:
        if not 0.0 <= max_usage <= 1.0:
            raise ValueError(f"max_usage must be within 0..1, got {max_usage}")
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.root = root
        self.max_usage = max_usage
        self.chunk_size = chunk_size
        root.mkdir(parents=True, exist_ok=True)

    # -- payloads ---------------------------------------------------------------------------------

    def create(self, payload_id: str) -> Path:
        """Make the payload directory and its ``input/`` folder; an existing payload is left as it is."""
        base = self.root / _checked_id(payload_id)
        (base / INPUT_DIR).mkdir(parents=True, exist_ok=True)
        return base

    def exists(self, payload_id: str) -> bool:
        """Whether the payload directory exists (a malformed id never does)."""
        return _PAYLOAD_ID.fullmatch(payload_id) is not None and _is_dir(self.root / payload_id)

    def path(self, payload_id: str) -> Path:
        """The payload's directory (runtimes bind-mount it); ``NO_SUCH_PAYLOAD`` if it does not exist."""
        base = self.root / _checked_id(payload_id)
        if not _is_dir(base):
            raise ClaretError(ErrorCode.NO_SUCH_PAYLOAD, f"no payload {payload_id}")
        return base

    def delete(self, payload_id: str) -> None:
        """Remove the payload: atomically out of sight first, then off the disk."""
        base = self.path(payload_id)
        tombstone = self.root / f"{TOMBSTONE_PREFIX}{payload_id}-{secrets.token_hex(4)}"
        try:
            os.rename(base, tombstone)
        except FileNotFoundError:  # a concurrent delete won
            raise ClaretError(ErrorCode.NO_SUCH_PAYLOAD, f"no payload {payload_id}") from None
        # The payload is already gone for everyone; what rmtree cannot remove (files owned by a
        # container's user, say) stays in the tombstone for sweep_temporaries.
        shutil.rmtree(tombstone, ignore_errors=True)

    # -- files ------------------------------------------------------------------------------------

    async def write_file(
        self,
        payload_id: str,
        name: str,
        chunks: AsyncIterable[bytes],
        before_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> FileInfo:
        """Store the concatenated ``chunks`` as ``name`` (relative to the payload root) and return it.

        The file becomes visible only when the stream ended; a stream that raises or is cancelled leaves
        nothing behind. Concurrent writers of one name each use their own temporary: the last to finish
        wins. No fsync: other processes see the renamed file through the page cache at once, and after a
        power loss the client's upload (of a job not yet started) is simply repeated; syncing multi-GB
        files would stall the upload path for a guarantee nobody needs. ``before_commit`` runs between the
        last chunk and the rename: raising there discards the upload (the caller's last-moment checks).
        """
        base = self.path(payload_id)
        relative = normalise_name(name)
        self.check_space()
        target = base / relative
        if _is_dir(target):
            raise _invalid(name, payload_id, "it is a directory")
        temp = self._open_temp(base, relative, name, payload_id)
        try:
            info = await _fill(temp, chunks, relative)
            if before_commit is not None:
                await before_commit()
            _replace(temp, target, name, payload_id)
        except BaseException as error:
            _discard(temp)
            _prune_empty_parents(base, target)
            if isinstance(error, OSError) and not _is_dir(base):  # deleted while we wrote
                raise ClaretError(ErrorCode.NO_SUCH_PAYLOAD, f"no payload {payload_id}") from error
            raise
        return info

    async def read_file(self, payload_id: str, name: str) -> tuple[FileInfo, FileChunks]:
        """Resolve ``name`` with the case rules and open it; the chunks are at most ``chunk_size`` bytes."""
        base = self.path(payload_id)
        found = self.resolve(payload_id, name)
        file, st = _open_regular(base, found.name[1:], name, payload_id)
        return _info(found.name[1:], st), FileChunks(file, self.chunk_size)

    def resolve(self, payload_id: str, name: str) -> FileInfo:
        """Find ``name`` (relative to the payload root) by the case rules of platform-api.md 4.2.

        The exact spelling wins; otherwise a single case-insensitive match is taken; several matches
        without an exact one are ``AMBIGUOUS_NAME``; none is ``NO_SUCH_FILE``.
        """
        base = self.path(payload_id)
        segments = normalise_name(name).split("/")
        exact = _lstat_beneath(base, segments)
        if exact is not None:
            return _info("/".join(segments), exact)
        matches = _case_insensitive_matches(base, segments)
        if not matches:
            raise _missing(name, payload_id)
        if len(matches) > 1:
            listed = ", ".join(repr("/" + match) for match in sorted(matches))
            raise ClaretError(
                ErrorCode.AMBIGUOUS_NAME,
                f"file name {name!r} matches several files of payload {payload_id} when case is ignored: {listed}",
            )
        found = _lstat_beneath(base, matches[0].split("/"))
        if found is None:  # removed between the directory scan and now
            raise _missing(name, payload_id)
        return _info(matches[0], found)

    def list_files(self, payload_id: str) -> list[FileInfo]:
        """Every regular file of the payload, sorted by name; temporaries and symbolic links are skipped."""
        base = self.path(payload_id)
        return sorted((_info(rel, st) for rel, st in _walk_files(base)), key=lambda info: info.name)

    def remove_file(self, payload_id: str, name: str) -> None:
        """Delete one file (case rules apply) and the directories it leaves empty, except root and input/."""
        base = self.path(payload_id)
        target = base / self.resolve(payload_id, name).name[1:]
        try:
            os.unlink(target)
        except FileNotFoundError:  # a concurrent remove won
            raise _missing(name, payload_id) from None
        _prune_empty_parents(base, target)

    def copy_into(self, source_id: str, target_id: str, subdir: str = INPUT_DIR) -> None:
        """Copy every file of ``source_id`` to ``target_id``/``subdir``/, keeping relative names.

        A name that collides with a file already in the target, ignoring case (also one copied from an
        earlier source), or that needs a directory where the target has a file (or the reverse), is
        ``INVALID_FILE_NAME`` and nothing of this source is copied. Each file appears whole; an I/O
        error half way keeps the files copied so far. Blocking: run it off the event loop.
        """
        source = self.path(source_id)
        target = self.path(target_id)
        prefix = normalise_name(subdir)
        files = [info.name[1:] for info in self.list_files(source_id)]
        self._check_no_collision(files, prefix, source_id, target_id)
        self.check_space()
        for relative in files:
            destination = f"{prefix}/{relative}"
            temp = self._open_temp(target, destination, destination, target_id)
            try:
                src, st = _open_regular(source, relative, relative, source_id)
                with src, temp.file:
                    shutil.copyfileobj(src, temp.file, WRITE_BUFFER)
                    os.fchmod(temp.file.fileno(), stat.S_IMODE(st.st_mode))
                _replace(temp, target / destination, destination, target_id)
            except BaseException:
                _discard(temp)
                raise

    def _check_no_collision(self, files: list[str], prefix: str, source_id: str, target_id: str) -> None:
        existing = {info.name[1:].casefold() for info in self.list_files(target_id)}
        existing_dirs = {parent for name in existing for parent in _parents(name)}
        for relative in files:
            wanted = f"{prefix}/{relative}".casefold()
            if wanted in existing or wanted in existing_dirs or existing.intersection(_parents(wanted)):
                raise ClaretError(
                    ErrorCode.INVALID_FILE_NAME,
                    f"file '/{prefix}/{relative}' of payload {source_id} collides with a file of payload "
                    f"{target_id} (names are compared ignoring case); nothing copied from {source_id}",
                )

    # -- storage ----------------------------------------------------------------------------------

    def check_space(self) -> None:
        """``STORAGE_FULL`` when the filesystem holding root is fuller than ``max_usage`` (as df counts)."""
        usage = _usage(os.statvfs(self.root))
        if usage > self.max_usage:
            raise ClaretError(
                ErrorCode.STORAGE_FULL,
                f"payload storage is {usage:.1%} full, above the limit of {self.max_usage:.0%}",
            )

    def sweep_temporaries(self, *, min_age: float = SWEEP_MIN_AGE_S) -> int:
        """Remove upload temporaries and delete tombstones left by a crash; return how many went.

        Only temporaries not modified for ``min_age`` seconds go, so a starting replica does not break
        another replica's upload in flight. Tombstones always go: nobody reads them.
        """
        removed = 0
        deadline = time.time() - min_age
        for path in _walk_temporaries(self.root):
            try:
                if path.lstat().st_mtime <= deadline:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # its upload finished or failed meanwhile
                continue
        for entry in _scandir(self.root):
            if entry.name.startswith(TOMBSTONE_PREFIX):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += 1
        return removed

    # -- helpers needing self ---------------------------------------------------------------------

    def _open_temp(self, base: Path, relative: str, name: str, payload_id: str) -> _Temp:
        """Create the parent directories and an exclusive temporary beside ``base/relative``."""
        parent_segments = relative.split("/")[:-1]
        for _attempt in range(3):  # a concurrent remove_file may prune a parent we just made
            parent = _make_parents(base, parent_segments, name, payload_id)
            path = parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
            try:
                fd = os.open(path, _OPEN_TEMP, 0o666)
            except FileNotFoundError:
                continue
            return _Temp(path, open(fd, "wb", buffering=WRITE_BUFFER))
        raise ClaretError(ErrorCode.INTERNAL, f"could not create a temporary for {name!r} in {payload_id}")


@dataclass(frozen=True, slots=True)
class _Temp:
    """A file being written under a hidden name: visible once :func:`_replace` renames it."""

    path: Path
    file: BinaryIO


async def _fill(temp: _Temp, chunks: AsyncIterable[bytes], relative: str) -> FileInfo:
    """Write the whole stream into the temporary and close it; returns the info of the finished file."""
    size = 0
    with temp.file as sink:
        async for chunk in chunks:
            sink.write(chunk)  # buffered: one syscall per WRITE_BUFFER, not per chunk
            size += len(chunk)
        mode = stat.S_IMODE(os.fstat(sink.fileno()).st_mode)
    return FileInfo("/" + relative, size, mode)


def _replace(temp: _Temp, target: Path, name: str, payload_id: str) -> None:
    try:
        os.replace(temp.path, target)
    except IsADirectoryError:  # a directory of that name appeared while the data streamed in
        raise _invalid(name, payload_id, "it is a directory") from None


def _make_parents(base: Path, segments: list[str], name: str, payload_id: str) -> Path:
    """mkdir each parent below ``base`` (never ``base`` itself: a deleted payload stays deleted)."""
    path = base
    for segment in segments:
        path = path / segment
        try:
            os.mkdir(path)
        except FileExistsError:
            if not _is_dir(path):
                raise _invalid(name, payload_id, f"'{path.relative_to(base)}' is a file or a link") from None
        except NotADirectoryError:
            raise _invalid(name, payload_id, "a parent is a file") from None
        except FileNotFoundError:
            raise ClaretError(ErrorCode.NO_SUCH_PAYLOAD, f"no payload {payload_id}") from None
    return path


def _prune_empty_parents(base: Path, file: Path) -> None:
    """rmdir the now-empty directories above ``file``, stopping at the payload root and ``input/``."""
    keep = {base, base / INPUT_DIR}
    directory = file.parent
    while directory not in keep and base in directory.parents:
        try:
            directory.rmdir()
        except OSError:  # not empty (or already gone): stop here
            return
        directory = directory.parent


def _discard(temp: _Temp) -> None:
    """Close and remove an unfinished temporary (closing twice is harmless, unlike os.close of an fd)."""
    with contextlib.suppress(OSError):  # a failing final flush (disk full): the data goes anyway
        temp.file.close()
    with contextlib.suppress(FileNotFoundError):  # gone with a deleted payload
        os.unlink(temp.path)


def _lstat_beneath(base: Path, segments: list[str]) -> os.stat_result | None:
    """Stat of the regular file ``base/segments`` reached through real directories only, else None."""
    path = base
    for segment in segments[:-1]:
        path = path / segment
        if not _is_dir(path):
            return None
    try:
        st = os.lstat(path / segments[-1])
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def _open_regular(base: Path, relative: str, name: str, payload_id: str) -> tuple[BinaryIO, os.stat_result]:
    """Open a regular file for reading, or NO_SUCH_FILE if it vanished or was swapped for something else."""
    try:
        fd = _open_beneath(base, relative)
    except OSError:  # removed, or replaced by a link (ELOOP / ENOTDIR) since it was resolved
        raise _missing(name, payload_id) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _missing(name, payload_id)
    return open(fd, "rb"), st  # the caller owns (and closes) the file object


def _open_beneath(base: Path, relative: str) -> int:
    """Open ``base/relative`` for reading without following a link at any level (no race with a swap)."""
    *parents, leaf = relative.split("/")
    fd = os.open(base, _OPEN_DIR)
    try:
        for segment in parents:
            child = os.open(segment, _OPEN_DIR, dir_fd=fd)
            os.close(fd)
            fd = child
        return os.open(leaf, _OPEN_READ, dir_fd=fd)
    finally:
        os.close(fd)


def _case_insensitive_matches(base: Path, segments: list[str]) -> list[str]:
    """Relative names of the regular files whose every segment equals ``segments`` ignoring case."""
    candidates = [""]
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        wanted = segment.casefold()
        candidates = [
            posixpath.join(relative, entry.name)
            for relative in candidates
            for entry in _scandir(base / relative)
            if entry.name.casefold() == wanted
            and not entry.name.startswith(RESERVED_PREFIX)
            and (entry.is_file(follow_symlinks=False) if last else entry.is_dir(follow_symlinks=False))
        ]
    return candidates


def _walk_files(base: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(relative name, lstat) of every regular file below ``base``, not entering linked directories."""
    pending = [""]
    while pending:
        relative = pending.pop()
        for entry in _scandir(base / relative):
            name = posixpath.join(relative, entry.name)
            if entry.is_dir(follow_symlinks=False):
                pending.append(name)
            elif entry.is_file(follow_symlinks=False) and not entry.name.startswith(RESERVED_PREFIX):
                try:
                    yield name, entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # removed while we listed
                    continue


def _walk_temporaries(root: Path) -> Iterator[Path]:
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if not d.startswith(TOMBSTONE_PREFIX)]
        yield from (Path(directory) / f for f in files if f.startswith(TEMP_PREFIX))


def _scandir(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            return list(entries)
    except (FileNotFoundError, NotADirectoryError):  # removed or replaced meanwhile
        return []


def _parents(name: str) -> list[str]:
    """``a/b/c`` -> ``['a', 'a/b']``."""
    segments = name.split("/")
    return ["/".join(segments[:i]) for i in range(1, len(segments))]


def _usage(fs: os.statvfs_result) -> float:
    """Used share as ``df`` reports it: used / (used + available to unprivileged users)."""
    used = fs.f_blocks - fs.f_bfree
    total = used + fs.f_bavail
    return used / total if total > 0 else 0.0


def _is_dir(path: Path) -> bool:
    """A real directory, not a link to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def _info(relative: str, st: os.stat_result) -> FileInfo:
    return FileInfo("/" + relative, st.st_size, stat.S_IMODE(st.st_mode))


def _checked_id(payload_id: str) -> str:
    if _PAYLOAD_ID.fullmatch(payload_id) is None:
        raise ClaretError(ErrorCode.NO_SUCH_PAYLOAD, f"no payload {payload_id!r} (not 32 lowercase hex digits)")
    return payload_id


def _missing(name: str, payload_id: str) -> ClaretError:
    return ClaretError(ErrorCode.NO_SUCH_FILE, f"no file {name!r} in payload {payload_id}")


def _invalid(name: str, payload_id: str, reason: str) -> ClaretError:
    return ClaretError(ErrorCode.INVALID_FILE_NAME, f"invalid file name {name!r} in payload {payload_id}: {reason}")
