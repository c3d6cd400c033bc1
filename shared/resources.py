"""What the services of one process share: settings, metrics, the database and the payload store."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from shared.config import Settings
from shared.db import Database
from shared.metrics import Metrics
from shared.payload_store import PayloadStore


def private_folder(folder: Path) -> None:
    """Make ``folder`` and keep it to its owner (0700): operators write setuid-capable files and logs there,
    and no local user may reach them. Runtimes mount what an operator needs, as root or as the owner."""
    folder.mkdir(parents=True, exist_ok=True)
    if folder.stat().st_uid == os.geteuid():
        folder.chmod(0o700)


@dataclass(frozen=True)
class Resources:
    """Opened once per process and handed to every service's ``build``."""

    settings: Settings
    metrics: Metrics
    db: Database
    payloads: PayloadStore

    @classmethod
    async def open(cls, settings: Settings) -> Resources:
        metrics = Metrics()
        db = await Database.open(settings.database_target, metrics)
        for folder in (settings.payload_path, settings.logs_path):
            private_folder(folder)
        store = PayloadStore(settings.payload_path, max_usage=settings.max_storage_usage)
        return cls(settings=settings, metrics=metrics, db=db, payloads=store)

    async def close(self) -> None:
        await self.db.close()
