"""A model as uploaded: one zip or tar archive of a Triton model folder, checked and unpacked.

The archive holds the model folder's contents (``config.pbtxt`` at its top) or that one folder. What an
archive may hold is hostile input, so nothing is extracted as the archive says: every member is a plain
file or folder at a relative path without ``..`` (no link, device or absolute path), the members add up to
at most ``max_bytes`` unpacked and ``MAX_MEMBERS`` entries, and each file is written by this module, byte
count checked. The unpacked folder must be a Triton model: ``config.pbtxt`` (whose ``name``, when it gives
one, is the model's name) and at least one numbered version folder.
"""

from __future__ import annotations

import posixpath
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO

from shared.errors import FULL_ERRNOS, ClaretError, ErrorCode, storage_full
from shared.model_config import CONFIG, declared_name

MAX_MEMBERS = 100_000
COPY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Member:
    """A plain file (``size`` bytes) or folder of the archive, at a checked relative path."""

    path: str
    is_dir: bool
    size: int


@dataclass(frozen=True)
class UnpackedModel:
    """A checked model folder: its versions (numbered folders) and unpacked size in bytes."""

    folder: Path
    versions: tuple[int, ...]
    size: int


def invalid(message: str) -> ClaretError:
    return ClaretError(ErrorCode.INVALID_MODEL, message)


def unpack(archive: Path, into: Path, name: str, max_bytes: int) -> UnpackedModel:
    """Check ``archive`` and unpack the model folder it holds into ``into`` (made here), as model ``name``.
    :class:`ClaretError` (INVALID_MODEL) names what is wrong; ``into`` is then left for the caller to remove."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            _extract(list(_zip_entries(zipped)), into, max_bytes)
    else:
        try:
            with tarfile.open(archive) as tarred:
                _extract(list(_tar_entries(tarred)), into, max_bytes)
        except tarfile.TarError as exc:
            raise invalid(f"the model is neither a zip nor a tar archive ({exc})") from None
    return _check_model(_model_folder(into), name)


Entry = tuple[Member, Callable[[], IO[bytes]]]
"""A member and how to read it."""


def _zip_entries(zipped: zipfile.ZipFile) -> Iterator[Entry]:
    for info in zipped.infolist():
        kind = (info.external_attr >> 16) & 0o170000  # unix mode bits, when the archiver kept them
        if kind not in (0, 0o100000, 0o040000):
            raise invalid(f"archive member {info.filename!r} is not a plain file or folder")
        yield Member(_checked_path(info.filename), info.is_dir(), info.file_size), partial(zipped.open, info)


def _tar_entries(tarred: tarfile.TarFile) -> Iterator[Entry]:
    for info in tarred.getmembers():
        if not (info.isfile() or info.isdir()):
            raise invalid(f"archive member {info.name!r} is not a plain file or folder")
        yield Member(_checked_path(info.name), info.isdir(), info.size), partial(_tar_file, tarred, info)


def _tar_file(tarred: tarfile.TarFile, info: tarfile.TarInfo) -> IO[bytes]:
    opened = tarred.extractfile(info)
    if opened is None:
        raise invalid(f"archive member {info.name!r} cannot be read")
    return opened


def _checked_path(raw: str) -> str:
    """A member's path, relative and inside the archive, or INVALID_MODEL."""
    path = raw.replace("\\", "/")
    normal = posixpath.normpath(path) if path.strip("/") else "."
    if "\0" in path or path.startswith("/") or normal == ".." or normal.startswith("../"):
        raise invalid(f"archive member {raw!r} would land outside the model folder")
    return normal


def _extract(entries: list[Entry], into: Path, max_bytes: int) -> None:
    """Write each member ourselves (never the archive library's extract): folders, then file bytes counted
    against what the member declares."""
    if len(entries) > MAX_MEMBERS:
        raise invalid(f"the archive holds {len(entries)} entries; at most {MAX_MEMBERS} are accepted")
    declared = sum(member.size for member, _ in entries if not member.is_dir)
    if declared > max_bytes:
        raise invalid(f"the model unpacks to {declared} bytes, over the {max_bytes} accepted (CLARET_MAX_MODEL_MB)")
    into.mkdir(parents=True)
    for member, read in entries:
        try:
            _write(into / member.path, member, read)
        except (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError) as exc:
            raise invalid(f"the archive is damaged at member {member.path!r}: {exc}") from None
        except OSError as exc:
            if exc.errno in FULL_ERRNOS:
                raise storage_full(f"the model volume ({into.parent})") from exc
            raise invalid(f"archive member {member.path!r} cannot be unpacked: {exc.strerror}") from exc


def _write(target: Path, member: Member, read: Callable[[], IO[bytes]]) -> None:
    if member.is_dir:
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with read() as source, open(target, "xb") as copy:  # "x": a second member of the same path is refused
        written = 0
        while chunk := source.read(COPY_BYTES):
            written += len(chunk)
            if written > member.size:
                raise invalid(f"archive member {member.path!r} holds more than it declares")
            copy.write(chunk)


def _model_folder(into: Path) -> Path:
    """The folder holding ``config.pbtxt``: the top of the archive, or its one folder."""
    if (into / CONFIG).is_file():
        return into
    entries = list(into.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / CONFIG).is_file():
        return entries[0]
    raise invalid(f"the archive holds no {CONFIG}: a Triton model folder has one at its top")


def _check_model(folder: Path, name: str) -> UnpackedModel:
    declared = declared_name((folder / CONFIG).read_text(errors="replace"))
    if declared is not None and declared != name:
        raise invalid(f"{CONFIG} names the model {declared!r}, not {name!r}: Triton needs them equal")
    versions = tuple(sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()))
    if not versions:
        raise invalid("the model has no version folder (a folder named by a number, e.g. 1/, beside config.pbtxt)")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return UnpackedModel(folder, versions, size)


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
