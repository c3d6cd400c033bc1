"""What the services of one process share: settings, the database and the payload store."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import Settings
from shared.db import Database
from shared.payload_store import PayloadStore


@dataclass(frozen=True)
class Resources:
    """Opened once per process and handed to every service's ``build``."""

    settings: Settings
    db: Database
    payloads: PayloadStore

    @classmethod
    async def open(cls, settings: Settings) -> Resources:
        db = await Database.open(settings.database_target)
        settings.payload_path.mkdir(parents=True, exist_ok=True)
        store = PayloadStore(settings.payload_path, max_usage=settings.max_storage_usage)
        return cls(settings=settings, db=db, payloads=store)

    async def close(self) -> None:
        await self.db.close()
