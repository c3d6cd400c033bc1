"""The DICOM service's parts wired together: configuration (reloaded on change), SCP, grouping, job
submission and export; started and stopped with the server that mounts it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from services.dicom import tables
from services.dicom.config import ConfigError, DicomConfig, load
from services.dicom.exporter import Exporter
from services.dicom.grouping import Grouper
from services.dicom.incoming import IncomingStore
from services.dicom.scp import StoreScp
from services.dicom.submit import Submitter
from shared.db.connection import Connection
from shared.logging import get_logger
from shared.platform import SharedClient
from shared.resources import Resources

log = get_logger("claret.dicom")

RELOAD_POLL_S = 1.0
KEEP_ASSOCIATIONS_S = 7 * 24 * 3600.0
"""Association records older than this are forgotten."""


@dataclass(frozen=True)
class ConfigState:
    """The configuration in force, and what happened to the last attempt to change it."""

    config: DicomConfig
    path: Path
    loaded: float
    problem: str | None = None
    """Why the file as it is now was refused (the configuration in force is the last good one)."""


class DicomService:
    """One process's DICOM service: the configuration in force (``state``), the SCP on ``port``, and the
    grouping, submission and export behind it."""

    def __init__(self, resources: Resources, path: Path) -> None:
        settings = resources.settings
        self._resources = resources
        self.state = ConfigState(load(path), path, time.time())
        self._stamp = _stamp(path)
        self.incoming = IncomingStore(self.state.config.storage or settings.data_dir / "dicom")
        self._client = SharedClient(settings, settings.dicom_platform)
        self.submitter = Submitter(
            self.config, self.incoming, resources.payloads, resources.db, resources.metrics, self._client
        )
        self.grouper = Grouper(self.config, self.submitter.submit)
        self.exporter = Exporter(self.config, resources.payloads, resources.db, resources.metrics, self._client)
        self._scp: StoreScp | None = None
        self._recording: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self.port = 0

    def config(self) -> DicomConfig:
        return self.state.config

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for released in self.incoming.recover():  # released before a stop, not yet a job
            self.grouper.released(released)
        self._scp = StoreScp(
            self.config,
            self.incoming,
            self._resources.metrics,
            on_released=self.grouper.released,
            on_recorded=self._recorded,
        )
        settings = self._resources.settings
        self.port = await self._scp.start(settings.dicom_host or settings.host, self.state.config.port)
        self.exporter.start()
        self._watcher = loop.create_task(self._watch_config())
        log.info("DICOM SCP listening", port=self.port, ae_titles=[a.ae_title for a in self.state.config.ae_titles])

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        if self._scp is not None:
            await self._scp.stop()
        await asyncio.gather(*self._recording, return_exceptions=True)  # the last associations' records
        self.grouper.stop()
        await self.submitter.stop()
        await self.exporter.stop()
        await self._client.close()

    def _recorded(self, row: tables.AssociationRow) -> None:
        task = asyncio.get_running_loop().create_task(self._record(row))
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)

    async def _record(self, row: tables.AssociationRow) -> None:
        try:
            await self._resources.db.write(lambda conn: _record_association(conn, row))
        except Exception as exc:  # a lost record must not stop the SCP
            log.warning("association not recorded", association=row.id, error=str(exc))

    async def _watch_config(self) -> None:
        while True:
            await asyncio.sleep(RELOAD_POLL_S)
            stamp = _stamp(self.state.path)
            if stamp != self._stamp:
                self._stamp = stamp
                self.reload()

    def reload(self) -> None:
        """Read the file again: in force when valid, else the last good configuration stays (and says why)."""
        try:
            config = load(self.state.path)
        except ConfigError as exc:
            log.error("DICOM configuration refused; the last good one stays in force", error=str(exc))
            self.state = ConfigState(self.state.config, self.state.path, self.state.loaded, str(exc))
            return
        if config.port != self.state.config.port or config.storage != self.state.config.storage:
            log.warning("the DICOM port and storage folder change at the next start only")
        self.state = ConfigState(config, self.state.path, time.time())
        log.info("DICOM configuration reloaded", ae_titles=[a.ae_title for a in config.ae_titles])


def _record_association(conn: Connection, row: tables.AssociationRow) -> None:
    tables.add_association(conn, row)
    tables.forget_associations_before(conn, row.ended - KEEP_ASSOCIATIONS_S)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    with contextlib.suppress(OSError):
        st = path.stat()
        return (st.st_mtime_ns, st.st_size, st.st_ino)
    return None
