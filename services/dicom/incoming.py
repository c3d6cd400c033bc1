"""Received instances on disk, until a job takes them: ``<root>/<association id>/<study>/<series>/<sop>.dcm``.

An association's folder is complete once its ``released.json`` exists (written when the peer released the
association, atomically); a folder without it belongs to an association still open or one that was
aborted or cut off, and is removed. So a restart finds the released associations that no job took yet and
hands them on again, and nothing of an aborted one survives. Files appear by rename from a hidden
temporary, so a half-written instance is never seen.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from services.dicom.instances import Instance
from shared.logging import get_logger

log = get_logger("claret.dicom.incoming")

ASSOCIATION_ID = re.compile(r"[0-9a-f]{16}")
"""How associations are named (``secrets.token_hex(8)``)."""
MARKER = "released.json"
TEMP_PREFIX = ".part-"
FILE_MODE = 0o644
"""Operators run as another user and read their input."""


@dataclass(frozen=True)
class Released:
    """A released association's instances, as the grouping sees them."""

    id: str
    called: str
    calling: str
    address: str
    studies: dict[str, dict[str, int]] = field(default_factory=dict)
    """Instances stored, by study UID, then series UID."""
    started: float = 0.0
    ended: float = 0.0

    @property
    def instances(self) -> int:
        return sum(sum(series.values()) for series in self.studies.values())


class IncomingStore:
    """The folder where received instances wait (the configuration's ``storage.temporary``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def folder(self, association_id: str) -> Path:
        return self.root / association_id

    def write(self, association_id: str, instance: Instance, *data: bytes) -> bool:
        """Store one instance, the concatenation of ``data`` (its UIDs are checked: they are path segments);
        False when it replaced the same instance sent before on the association."""
        target = self.folder(association_id) / instance.study / instance.series / f"{instance.sop_instance}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f"{TEMP_PREFIX}{target.name}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as file:
                file.writelines(data)
            new = not target.exists()
            os.replace(temp, target)  # the same instance sent twice: the later copy wins
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        return new

    def release(self, released: Released) -> None:
        """Mark the association's instances complete (the moment they may become a job)."""
        folder = self.folder(released.id)
        folder.mkdir(parents=True, exist_ok=True)
        temp = folder / f"{TEMP_PREFIX}{MARKER}"
        temp.write_text(json.dumps(asdict(released)))
        os.replace(temp, folder / MARKER)

    def files(self, association_id: str, study: str | None = None) -> list[Path]:
        """The instances of an association (or of one of its studies), in a stable order."""
        base = self.folder(association_id)
        studies = [base / study] if study is not None else sorted(p for p in base.iterdir() if p.is_dir())
        return sorted(
            path
            for folder in studies
            if folder.is_dir()
            for path in folder.glob("*/*.dcm")
            if not path.name.startswith(TEMP_PREFIX)
        )

    def remove(self, association_id: str, study: str | None = None) -> None:
        """Remove an association's folder, or one study of it (the folder too once no study is left)."""
        base = self.folder(association_id)
        if study is None:
            shutil.rmtree(base, ignore_errors=True)
            return
        shutil.rmtree(base / study, ignore_errors=True)
        with contextlib.suppress(OSError):
            if not any(p.is_dir() for p in base.iterdir()):
                shutil.rmtree(base, ignore_errors=True)

    def recover(self) -> list[Released]:
        """At start: the released associations (the studies of them) no job took yet; what was never
        released is removed. Only entries named as associations are touched: a storage folder set to one
        that holds other things loses none of them."""
        found = []
        for entry in sorted(self.root.iterdir()):
            if not ASSOCIATION_ID.fullmatch(entry.name):
                log.warning("not an association's folder: left alone", path=str(entry))
                continue
            released = self._released(entry)
            if released is not None and released.studies:
                found.append(released)
            else:
                _remove(entry)
        return found

    def _released(self, folder: Path) -> Released | None:
        """What the marker says, less the studies a job already took (their folders are gone)."""
        with contextlib.suppress(ValueError, TypeError, OSError):
            released = Released(**json.loads((folder / MARKER).read_text()))
            studies = {uid: series for uid, series in released.studies.items() if (folder / uid).is_dir()}
            return dataclasses.replace(released, studies=studies)
        return None

    def space_problem(self, watermark_percent: float, reserve_bytes: float) -> str | None:
        """Why no more instances are accepted now (the volume is too full), or None."""
        fs = os.statvfs(self.root)
        total, free = fs.f_blocks * fs.f_frsize, fs.f_bavail * fs.f_frsize
        used = 100.0 * (total - free) / total if total else 100.0
        if used > watermark_percent:
            return f"the storage volume is {used:.0f}% full (watermark {watermark_percent:g}%)"
        if free < reserve_bytes:
            return f"the storage volume has {free / 2**30:.1f} GB free (reserve {reserve_bytes / 2**30:g} GB)"
        return None


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            entry.unlink()
