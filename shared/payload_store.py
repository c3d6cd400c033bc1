"""Payload files on a shared directory tree: ``<root>/<payload_id>/<relative name>``.

All state is on disk, so service replicas on one host can share the tree; there is no in-memory
registry and no database here. Visibility rules (docs/behaviour.md, Payloads):

* A file appears only when complete: uploads and copies go to a hidden temporary next to the
  destination (prefix :data:`TEMP_PREFIX`) and are renamed over the final name with ``os.replace``,
  which is atomic. A failed or cancelled upload removes its temporaries (:class:`PendingFiles`); a crash
  leaves them behind, and :meth:`PayloadStore.sweep_temporaries` removes them at the next start.
* A full volume (ENOSPC, EDQUOT) met by any write is ``STORAGE_FULL`` naming the volume, never an errno.
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
from collections.abc import AsyncIterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from shared.errors import FULL_ERRNOS, ClaretError, ErrorCode, storage_full

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
_OPEN_APPEND = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC


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
        with _volume_full_errors(self.root):
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

    async def write_file(self, payload_id: str, name: str, chunks: AsyncIterable[bytes]) -> FileInfo:
        """Store the concatenated ``chunks`` as ``name`` (relative to the payload root) and return it.

        The file becomes visible only when the stream ended; a stream that raises or is cancelled leaves
        nothing behind. Concurrent writers of one name each use their own temporary: the last to finish
        wins. No fsync: other processes see the renamed file through the page cache at once, and after a
        power loss the client's upload (of a job not yet started) is simply repeated; syncing multi-GB
        files would stall the upload path for a guarantee nobody needs. One file of a stream: uploads of
        several files, and last-moment checks before the rename, use :meth:`pending_files`.
        """
        with self.pending_files(payload_id) as files:
            relative = files.open(name)  # a refused name fails before the stream is read
            async for chunk in chunks:
                files.write(name, chunk)
            return files.commit()[relative]

    def pending_files(self, payload_id: str) -> PendingFiles:
        """Temporaries for the files of one upload stream (see :class:`PendingFiles`), after the storage guard."""
        files = PendingFiles(self, payload_id)
        self.check_space()
        return files

    async def read_file(self, payload_id: str, name: str, fallback: str | None = None) -> tuple[FileInfo, FileChunks]:
        """Resolve ``name`` (or ``fallback``, see :meth:`resolve`) and open it; chunks of at most ``chunk_size``."""
        base = self.path(payload_id)
        found = self.resolve(payload_id, name, fallback)
        file, st = _open_regular(base, found.name[1:], name, payload_id)
        return _info(found.name[1:], st), FileChunks(file, self.chunk_size)

    def resolve(self, payload_id: str, name: str, fallback: str | None = None) -> FileInfo:
        """Find ``name`` (relative to the payload root) by the case rules (docs/behaviour.md, Payloads).

        The exact spelling wins; otherwise a single case-insensitive match is taken; several matches
        without an exact one are ``AMBIGUOUS_NAME``; none is ``NO_SUCH_FILE``. Only when ``name`` finds
        nothing at all is ``fallback`` looked up, by the same rules (so an ambiguous ``name`` stays an error
        rather than quietly meaning another file).
        """
        try:
            return self._resolve(payload_id, name)
        except ClaretError as error:
            if fallback is None or error.code is not ErrorCode.NO_SUCH_FILE:
                raise
        try:
            return self._resolve(payload_id, fallback)
        except ClaretError as error:
            if error.code is not ErrorCode.NO_SUCH_FILE:
                raise
        raise ClaretError(
            ErrorCode.NO_SUCH_FILE, f"no file {name!r} in payload {payload_id} (nor '/{normalise_name(fallback)}')"
        )

    def _resolve(self, payload_id: str, name: str) -> FileInfo:
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

    def remove_file(self, payload_id: str, name: str, fallback: str | None = None) -> None:
        """Delete one file (found as :meth:`resolve` finds it) and the directories it leaves empty, except
        root and input/."""
        base = self.path(payload_id)
        target = base / self.resolve(payload_id, name, fallback).name[1:]
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
        error half way keeps the files copied so far; a full volume is ``STORAGE_FULL``. Blocking: run it off
        the event loop.
        """
        source = self.path(source_id)
        target = self.path(target_id)
        prefix = normalise_name(subdir)
        files = [info.name[1:] for info in self.list_files(source_id)]
        self._check_no_collision(files, prefix, source_id, target_id)
        self.check_space()
        for relative in files:
            destination = f"{prefix}/{relative}"
            with _volume_full_errors(self.root):
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


@dataclass(slots=True)
class _Temp:
    """A file being written under a hidden name: visible once :func:`_replace` renames it."""

    path: Path
    file: BinaryIO
    """Closed while :class:`PendingFiles` writes another file of the stream."""


class PendingFiles:
    """The files of one upload stream, each in its own hidden temporary until :meth:`commit` renames them.

    Use it as a ``with`` block: leaving the block without a commit (an error, a cancelled stream) discards
    every temporary, so a broken stream leaves nothing. The files' chunks may come in any interleaving;
    each file is the concatenation of the chunks written to its name, in order. Only the file written last
    is open: switching to another name closes the current temporary (flushing its buffer) and reopens the
    other one for appending, so descriptors and buffer memory stay at one file's worth however many files
    a stream carries and however they interleave.
    """

    def __init__(self, store: PayloadStore, payload_id: str) -> None:
        self._store = store
        self._payload_id = payload_id
        self._base = store.path(payload_id)
        self._temps: dict[str, _Temp] = {}
        """By normalised relative name, in the order the names first came; committed ones leave."""
        self._current: tuple[str, _Temp] | None = None
        """The name as last written to and its (open) temporary."""

    def __enter__(self) -> PendingFiles:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.discard()

    def open(self, name: str) -> str:
        """Make the temporary for ``name`` (relative to the payload root) unless it exists; its relative name.

        Refused names (``INVALID_FILE_NAME``, also a name that is a directory) fail here, before any data.
        """
        relative = normalise_name(name)
        if relative not in self._temps:
            if _is_dir(self._base / relative):
                raise _invalid(name, self._payload_id, "it is a directory")
            with self._os_errors():
                self._temps[relative] = self._store._open_temp(self._base, relative, name, self._payload_id)
        return relative

    def write(self, name: str, data: bytes) -> None:
        """Append ``data`` to the file ``name``. The hot path of every upload: no context manager per chunk."""
        if self._current is None or self._current[0] != name:
            self._switch(name)
        assert self._current is not None
        try:
            self._current[1].file.write(data)  # buffered: one syscall per WRITE_BUFFER, not per chunk
        except OSError:
            with self._os_errors():  # translated once it failed
                raise

    def commit(self) -> dict[str, FileInfo]:
        """Close every temporary and rename each over its final name; the files by relative name.

        Each file appears atomically, one after the other. A rename that fails (a directory took the name
        meanwhile) keeps the files renamed before it and, on leaving the ``with`` block, discards the rest.
        """
        written: dict[str, FileInfo] = {}
        with self._os_errors():
            for temp in self._temps.values():
                temp.file.close()  # the last flush: a full volume shows here at the latest
            for relative, temp in list(self._temps.items()):
                st = os.lstat(temp.path)
                _replace(temp, self._base / relative, relative, self._payload_id)
                del self._temps[relative]
                written[relative] = _info(relative, st)
        return written

    def discard(self) -> None:
        """Remove every temporary not committed and the directories made for it that stay empty."""
        self._current = None
        for relative, temp in self._temps.items():
            _discard(temp)
            _prune_empty_parents(self._base, self._base / relative)
        self._temps.clear()

    def _switch(self, name: str) -> None:
        """Make ``name`` the open file: close the one written so far, reopen (or make) ``name``'s temporary."""
        temp = self._temps[self.open(name)]
        with self._os_errors():
            if self._current is not None and self._current[1] is not temp:
                self._current[1].file.close()
            if temp.file.closed:
                temp.file = _reopen(temp.path)
        self._current = (name, temp)

    @contextlib.contextmanager
    def _os_errors(self) -> Iterator[None]:
        """OSErrors as a client can act on them: a full volume, or the payload deleted while the stream ran."""
        try:
            with _volume_full_errors(self._store.root):
                yield
        except OSError as error:
            if not _is_dir(self._base):
                raise ClaretError(ErrorCode.NO_SUCH_PAYLOAD, f"no payload {self._payload_id}") from error
            raise


def _reopen(path: Path) -> BinaryIO:
    """Open a temporary again for appending (never through a link planted in its place)."""
    return open(os.open(path, _OPEN_APPEND), "ab", buffering=WRITE_BUFFER)


@contextlib.contextmanager
def _volume_full_errors(root: Path) -> Iterator[None]:
    """Turn a full volume (ENOSPC, EDQUOT from a write, mkdir, open or close) into ``STORAGE_FULL`` naming it.

    An errno tells a client nothing it can act on; this says which volume to free. The caller's cleanup
    runs as for any exception, so nothing half-written stays, and the next write works once space is back.
    """
    try:
        yield
    except OSError as error:
        if error.errno not in FULL_ERRNOS:
            raise
        raise storage_full(f"the payload volume ({root})") from error


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
