"""The Model Repository: models as the platform keeps them, and the catalogs and instances naming them.

Files (``root``, CLARET_MODELS_DIR): ``repository/<name>/`` is each model unpacked, in Triton's
repository layout (so one Triton can serve the folder); ``archives/<id>`` is the archive as uploaded, which
DownloadModel streams back; ``.incoming/`` holds uploads in progress. An upload is received into a
temporary file (flat memory), checked and unpacked (:mod:`.archive`) beside the repository, and only then
swapped in and recorded: a refused or broken upload leaves nothing, and one under an existing name
replaces that model whole (its id and metadata stay). Records are in the database (:mod:`.model_table`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path

from services.models import archive
from shared import ids
from shared.db import Database
from shared.db import models as model_table
from shared.db.connection import Connection
from shared.db.metadata import MetadataRows
from shared.db.models import ListKind, ModelRecord
from shared.errors import FULL_ERRNOS, ClaretError, ErrorCode, storage_full
from shared.pipeline_definition.operators import MODEL_NAME

READ_BYTES = 1024 * 1024
"""DownloadModel's chunk size."""


def no_such_model(model_id: str) -> ClaretError:
    return ClaretError(ErrorCode.NO_SUCH_MODEL, f"no model with id {model_id!r}")


def no_such_list(kind: ListKind, list_id: str) -> ClaretError:
    code = ErrorCode.NO_SUCH_CATALOG if kind == "catalog" else ErrorCode.NO_SUCH_INSTANCE
    return ClaretError(code, f"no model {kind} with id {list_id!r}")


class ModelRepository:
    def __init__(self, db: Database, root: Path, max_bytes: int) -> None:
        self._db = db
        self.root = root
        self.repository = root / "repository"
        self._archives = root / "archives"
        self._incoming = root / ".incoming"
        self._max_bytes = max_bytes
        self._metadata = MetadataRows(db, "models", no_such_model)
        self._installing = asyncio.Lock()
        for folder in (self.repository, self._archives, self._incoming):
            folder.mkdir(parents=True, exist_ok=True)

    def sweep_incoming(self) -> None:
        """At start: uploads a crash interrupted leave nothing behind."""
        for leftover in self._incoming.iterdir():
            shutil.rmtree(leftover, ignore_errors=True)

    # -- models ----------------------------------------------------------------------------------------

    async def upload(self, name: str, model_type: int, chunks: AsyncIterable[bytes]) -> ModelRecord:
        """Receive, check and install a model called ``name``; INVALID_MODEL names what is wrong with it."""
        if not MODEL_NAME.fullmatch(name) or name in (".", ".."):
            raise invalid_model(f"{name!r} is not a model name (1-255 characters, no spaces or slashes)")
        work = self._incoming / ids.new_id()
        work.mkdir()
        try:
            size = await self._receive(work / "archive", chunks)
            unpack = partial(archive.unpack, work / "archive", work / "model", name, self._max_bytes)
            unpacked = await asyncio.to_thread(unpack)
            record = ModelRecord(ids.new_id(), name, model_type, size, unpacked.versions, ids.now())
            async with self._installing:  # one swap at a time: two uploads of one name must not interleave
                return await self._install(work, unpacked.folder, record)
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)

    async def _receive(self, path: Path, chunks: AsyncIterable[bytes]) -> int:
        """The upload into ``path``; written in the event loop, as payload uploads are (buffered, local)."""
        size = 0
        try:
            with await asyncio.to_thread(path.open, "wb") as file:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self._max_bytes:
                        limit = f"over the {self._max_bytes} bytes accepted (CLARET_MAX_MODEL_MB)"
                        raise invalid_model(f"the upload is {limit}")
                    file.write(chunk)
        except OSError as exc:
            if exc.errno in FULL_ERRNOS:
                raise storage_full(f"the model volume ({self.root})") from exc
            raise
        if size == 0:
            raise invalid_model("the upload carried no model data")
        return size

    async def _install(self, work: Path, folder: Path, record: ModelRecord) -> ModelRecord:
        """Swap the unpacked model in under its name, then record it (keeping the id of one it replaces);
        a failed record puts the previous model back."""
        target, previous = self.repository / record.name, work / "previous"
        await asyncio.to_thread(_swap, folder, target, previous)
        try:
            recorded = await self._db.write(partial(model_table.put, model=record))
        except BaseException:
            await asyncio.to_thread(_swap_back, target, previous)
            raise
        await asyncio.to_thread(os.replace, work / "archive", self._archives / recorded.id)
        return recorded

    async def get(self, model_id: str) -> ModelRecord:
        found = await self._db.read(partial(model_table.get, model_id=checked_id(model_id)))
        if found is None:
            raise no_such_model(model_id)
        return found

    async def models(self) -> list[ModelRecord]:
        return await self._db.read(model_table.all_models)

    async def download(self, model_id: str) -> tuple[ModelRecord, AsyncIterator[bytes]]:
        """The model and its archive as uploaded, in chunks."""
        record = await self.get(model_id)
        path = self._archives / record.id
        opened = await asyncio.to_thread(path.open, "rb")

        async def chunks() -> AsyncIterator[bytes]:
            with opened:
                while data := await asyncio.to_thread(opened.read, READ_BYTES):
                    yield data

        return record, chunks()

    async def delete(self, model_id: str) -> None:
        """Forget the model and remove its files (it leaves every catalog and instance that listed it)."""
        record = await self.get(model_id)

        def forget(conn: Connection) -> list[str] | bool:
            users = model_table.loaded_by(conn, record.name)
            return users or model_table.delete(conn, record.id)

        async with self._installing:
            outcome = await self._db.write(forget)
            if isinstance(outcome, list):
                raise ClaretError(
                    ErrorCode.MODEL_IN_USE,
                    f"model {record.name!r} is loaded in a running Triton (service {', '.join(outcome)}); "
                    f"it can be deleted once that Triton stops (Clara.Stop, or its idle timeout)",
                )
            if not outcome:
                raise no_such_model(model_id)
            await asyncio.to_thread(shutil.rmtree, self.repository / record.name, True)
            await asyncio.to_thread((self._archives / record.id).unlink, True)

    async def add_metadata(self, model_id: str, new: Mapping[str, str]) -> dict[str, str]:
        return await self._metadata.add(checked_id(model_id), new)

    async def remove_metadata(self, model_id: str, keys: Iterable[str]) -> dict[str, str]:
        return await self._metadata.remove(checked_id(model_id), keys)

    # -- catalogs and instances ------------------------------------------------------------------------

    async def create_list(self, kind: ListKind) -> str:
        list_id = ids.new_id()
        await self._db.write(partial(model_table.create_list, list_id=list_id, kind=kind, at=ids.now()))
        return list_id

    async def lists(self, kind: ListKind) -> list[tuple[str, list[ModelRecord]]]:
        def read(conn: Connection) -> list[tuple[str, list[ModelRecord]]]:
            return [(list_id, model_table.entries(conn, list_id)) for list_id in model_table.lists(conn, kind)]

        return await self._db.read(read)

    async def read_list(self, kind: ListKind, list_id: str) -> list[ModelRecord]:
        checked = checked_id(list_id, kind)

        def read(conn: Connection) -> list[ModelRecord] | None:
            return model_table.entries(conn, checked) if model_table.list_exists(conn, checked, kind) else None

        found = await self._db.read(read)
        if found is None:
            raise no_such_list(kind, list_id)
        return found

    async def update_list(self, kind: ListKind, list_id: str, model_ids: Sequence[str]) -> None:
        """Set the models the catalog or instance lists (in that order); unknown models refuse it whole."""
        checked = checked_id(list_id, kind)
        wanted = list(dict.fromkeys(checked_id(m) for m in model_ids))

        def update(conn: Connection) -> str | None:
            if not model_table.list_exists(conn, checked, kind):
                return "list"
            missing = [m for m in wanted if model_table.get(conn, m) is None]
            if missing:
                return missing[0]
            model_table.replace_entries(conn, checked, wanted)
            return None

        problem = await self._db.write(update)
        if problem == "list":
            raise no_such_list(kind, list_id)
        if problem is not None:
            raise no_such_model(problem)

    async def delete_list(self, kind: ListKind, list_id: str) -> None:
        if not await self._db.write(partial(model_table.delete_list, list_id=checked_id(list_id, kind), kind=kind)):
            raise no_such_list(kind, list_id)


def invalid_model(message: str) -> ClaretError:
    return ClaretError(ErrorCode.INVALID_MODEL, message)


def checked_id(value: str, kind: str = "model") -> str:
    """A catalog, instance or model id as the platform writes them (32 hex digits), or INVALID_MODEL_ID."""
    return ids.parse_id(value, ErrorCode.INVALID_MODEL_ID, kind)


def _swap(folder: Path, target: Path, previous: Path) -> None:
    if target.exists():
        os.replace(target, previous)
    os.replace(folder, target)


def _swap_back(target: Path, previous: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    if previous.exists():
        os.replace(previous, target)
