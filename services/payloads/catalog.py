"""Payloads as the platform keeps them: records in the database, files in the payload store.

Uploads to a job's payload land in ``input/`` and are refused once the job started; uploads to a
reusable payload land at its root. Metadata belongs to reusable payloads only.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping

from shared import ids
from shared import metadata as metadata_rules
from shared.db import Database
from shared.db import payloads as table
from shared.db.connection import Connection
from shared.db.metadata import MetadataRows
from shared.db.payloads import PayloadRecord, PayloadType
from shared.errors import ClaretError, ErrorCode
from shared.payload_store import FileInfo, PayloadStore, normalise_name


def upload_name(record: PayloadRecord, name: str) -> str:
    """Where an uploaded name lands: under ``input/`` for a job's payload (not doubled), else as given."""
    relative = normalise_name(name)
    if record.type is PayloadType.PIPELINE and relative.split("/", 1)[0] != "input":
        return f"input/{relative}"
    return relative


class PayloadCatalog:
    def __init__(self, db: Database, store: PayloadStore) -> None:
        self._db = db
        self.store = store
        self._metadata = MetadataRows(db, "payloads", _missing)

    async def create_reusable(self, metadata: Mapping[str, str] | None = None) -> PayloadRecord:
        record = PayloadRecord(
            id=ids.new_id(),
            type=PayloadType.REUSABLE,
            job_id=None,
            read_only=False,
            metadata=metadata_rules.validate(metadata or {}),
            created=ids.now(),
        )
        self.store.create(record.id)
        await self._db.write(lambda conn: table.insert(conn, record))
        return record

    async def get(self, payload_id: str) -> PayloadRecord:
        key = ids.parse_id(payload_id, ErrorCode.INVALID_PAYLOAD_ID, "payload")
        record = await self._db.read(lambda conn: table.get(conn, key))
        if record is None:
            raise _missing(payload_id)
        return record

    async def writable(self, payload_id: str) -> PayloadRecord:
        record = await self.get(payload_id)
        if record.read_only:
            raise ClaretError(
                ErrorCode.PAYLOAD_READ_ONLY, f"payload {record.id} is read-only: its job {record.job_id} has started"
            )
        return record

    async def upload(self, record: PayloadRecord, name: str, chunks: AsyncIterable[bytes]) -> FileInfo:
        """Write one file atomically; the reply names it as the client sent it, with the total size."""

        async def still_writable() -> None:  # a job may have started while the file streamed in
            await self.writable(record.id)

        info = await self.store.write_file(record.id, upload_name(record, name), chunks, still_writable)
        return FileInfo(name=name, size=info.size, mode=info.mode)

    async def download(self, payload_id: str, name: str) -> tuple[FileInfo, AsyncIterator[bytes]]:
        record = await self.get(payload_id)
        return await self.store.read_file(record.id, name)

    async def files(self, payload_id: str) -> tuple[PayloadRecord, list[FileInfo]]:
        record = await self.get(payload_id)
        return record, self.store.list_files(record.id)

    async def remove_file(self, payload_id: str, name: str) -> None:
        record = await self.writable(payload_id)
        self.store.remove_file(record.id, name)

    async def delete(self, payload_id: str) -> None:
        record = await self.get(payload_id)

        def check_and_delete(conn: Connection) -> None:  # one transaction: a Start cannot slip between
            if record.job_id is not None and table.job_in_flight(conn, record.job_id):
                raise ClaretError(
                    ErrorCode.PAYLOAD_READ_ONLY,
                    f"payload {record.id} belongs to job {record.job_id}, which has not stopped",
                )
            table.delete(conn, record.id)

        await self._db.write(check_and_delete)
        self.store.delete(record.id)

    async def add_metadata(self, payload_id: str, new: Mapping[str, str]) -> dict[str, str]:
        return await self._metadata.add(await self._reusable(payload_id), new)

    async def remove_metadata(self, payload_id: str, keys: Iterable[str]) -> dict[str, str]:
        return await self._metadata.remove(await self._reusable(payload_id), keys)

    async def _reusable(self, payload_id: str) -> str:
        """The id of a reusable payload: only those carry metadata."""
        record = await self.get(payload_id)
        if record.type is not PayloadType.REUSABLE:
            raise ClaretError(
                ErrorCode.INVALID_METADATA,
                f"payload {record.id} belongs to job {record.job_id}: only reusable payloads carry metadata",
            )
        return record.id


def _missing(payload_id: str) -> ClaretError:
    return ClaretError(ErrorCode.NO_SUCH_PAYLOAD, f"no payload with id {payload_id!r}")
