"""Payloads as the platform keeps them: records in the database, files in the payload store.

Uploads to a job's payload land in ``input/`` and are refused once the job started; uploads to a
reusable payload land at its root. Download and Remove take a name as Details lists it (relative to the
payload root) and, for a job's payload, also the name as it was uploaded (see :func:`fallback_name`).
A job's payload cannot be deleted until its job stopped. Metadata belongs to reusable payloads only.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping

from shared import ids
from shared import metadata as metadata_rules
from shared.db import Database
from shared.db import payloads as payloads_table
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


def fallback_name(record: PayloadRecord, name: str) -> str | None:
    """Where Download and Remove look for ``name`` when nothing answers to it at the payload root.

    For a job's payload that is where Upload put it (``a.txt`` -> ``input/a.txt``, ``input/...`` not
    doubled), so the name as uploaded and the name as Details lists it (``/input/a.txt``) both work. The
    root comes first, each lookup with the case rules of :meth:`PayloadStore.resolve`: a name that matches
    at the root (``/operators/x/out.txt``, ``/input/a.txt``) is taken as it is, and one that is ambiguous
    there stays an error rather than meaning a file under ``input/``. A reusable payload has no fallback.
    """
    if record.type is not PayloadType.PIPELINE:
        return None
    landing = upload_name(record, name)
    return None if landing == normalise_name(name) else landing


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
        await self._db.write(lambda conn: payloads_table.insert(conn, record))
        return record

    async def get(self, payload_id: str) -> PayloadRecord:
        key = ids.parse_id(payload_id, ErrorCode.INVALID_PAYLOAD_ID, "payload")
        record = await self._db.read_fast(lambda conn: payloads_table.get(conn, key))
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

    async def upload(self, record: PayloadRecord, pieces: AsyncIterable[tuple[str, bytes]]) -> list[FileInfo]:
        """Store the files of one upload stream: ``pieces`` are (file name, data) in arrival order.

        Each file is the data sent under its name (names that land on one file, see :func:`upload_name`,
        are one file), in order, however the files interleave. Nothing is visible until the stream ended
        and the payload is still writable (its job may have started meanwhile); then every file appears,
        each atomically. Returns each file named as the client last sent it, with its total size, the file
        of the last piece last.
        """
        names: dict[str, str] = {}  # landing name -> name as sent, most recently switched to last
        sent: str | None = None
        landing = ""
        with self.store.pending_files(record.id) as files:
            async for name, data in pieces:
                if name != sent:  # consecutive pieces of one file skip the name rules
                    sent, landing = name, upload_name(record, name)
                    names.pop(landing, None)
                    names[landing] = name
                files.write(landing, data)
            await self.writable(record.id)  # the last moment: nothing was renamed yet
            written = files.commit()
        return [FileInfo(name, written[landing].size, written[landing].mode) for landing, name in names.items()]

    async def download(self, payload_id: str, name: str) -> tuple[FileInfo, AsyncIterator[bytes]]:
        record = await self.get(payload_id)
        return await self.store.read_file(record.id, name, fallback_name(record, name))

    async def files(self, payload_id: str) -> tuple[PayloadRecord, list[FileInfo]]:
        record = await self.get(payload_id)
        return record, self.store.list_files(record.id)

    async def remove_file(self, payload_id: str, name: str) -> None:
        record = await self.writable(payload_id)
        self.store.remove_file(record.id, name, fallback_name(record, name))

    async def delete(self, payload_id: str) -> None:
        record = await self.get(payload_id)

        def check_and_delete(conn: Connection) -> None:  # one transaction: a Start cannot slip between
            if record.job_id is not None and payloads_table.job_not_stopped(conn, record.job_id):
                raise ClaretError(
                    ErrorCode.PAYLOAD_READ_ONLY,
                    f"payload {record.id} belongs to job {record.job_id}, which is pending or running: "
                    "cancel the job or let it finish first",
                )
            payloads_table.delete(conn, record.id)

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
