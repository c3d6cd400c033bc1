"""Pipelines as the platform keeps them: validated on the way in, stored with their definition files.

Create and Update answer the keys the loader ignored (as warning messages), so authors see their typos;
nothing else reports them (Jobs loads the same files without them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from shared import ids
from shared import metadata as metadata_rules
from shared.db import Database
from shared.db import pipelines as pipelines_table
from shared.db.metadata import MetadataRows
from shared.db.pipelines import PipelineRecord
from shared.errors import ClaretError, ErrorCode
from shared.pipeline_definition import DefinitionFile, LoadedDefinition, Pipeline, load_definition


def merge_parts(parts: Iterable[tuple[str, str]]) -> list[DefinitionFile]:
    """Concatenate the streamed parts of each file, in arrival order; paths that differ only by case are
    one file (named as first seen). The first file is the pipeline document."""
    order: dict[str, str] = {}
    contents: dict[str, list[str]] = {}
    for path, content in parts:
        key = path.casefold()
        order.setdefault(key, path)
        contents.setdefault(key, []).append(content)
    if not order:
        raise ClaretError(ErrorCode.PIPELINE_LOAD, "no pipeline definition was sent")
    return [DefinitionFile(path=path, content="".join(contents[key])) for key, path in order.items()]


@dataclass(frozen=True)
class Created:
    """A pipeline just stored: its id and the warnings of its definition (keys that were ignored)."""

    pipeline_id: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class PipelineView:
    """A stored pipeline with its loaded model (for the DAG)."""

    record: PipelineRecord
    model: Pipeline


class PipelineCatalog:
    def __init__(self, db: Database, *, default_timeout: int, max_timeout: int) -> None:
        """Definitions load with the platform's job timeouts (a pipeline's own is capped at ``max_timeout``)."""
        self._db = db
        self._default_timeout = default_timeout
        self._max_timeout = max_timeout
        self._metadata = MetadataRows(db, "pipelines", _missing)

    def load(self, files: Sequence[DefinitionFile]) -> LoadedDefinition:
        return load_definition(files, default_timeout=self._default_timeout, max_timeout=self._max_timeout)

    async def create(
        self, files: Sequence[DefinitionFile], pipeline_id: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> Created:
        loaded = self.load(files)
        new_id = ids.new_id() if not pipeline_id else _key(pipeline_id)
        now = ids.now()
        record = PipelineRecord(
            id=new_id,
            name=loaded.pipeline.name,
            files=tuple(files),
            metadata=metadata_rules.validate(metadata or {}),
            created=now,
            updated=now,
        )
        if not await self._db.write(lambda conn: pipelines_table.insert(conn, record)):
            raise ClaretError(ErrorCode.PIPELINE_STORE, f"pipeline id {new_id} is already taken")
        return Created(new_id, loaded.warnings)

    async def get(self, pipeline_id: str) -> PipelineRecord:
        key = _key(pipeline_id)
        record = await self._db.read_fast(lambda conn: pipelines_table.get(conn, key))
        if record is None:
            raise _missing(pipeline_id)
        return record

    async def details(self, pipeline_id: str) -> PipelineView:
        record = await self.get(pipeline_id)
        return PipelineView(record=record, model=self.load(record.files).pipeline)

    async def list(self) -> list[PipelineRecord]:
        return await self._db.read(pipelines_table.list_all)

    async def remove(self, pipeline_id: str) -> None:
        key = _key(pipeline_id)
        if not await self._db.write(lambda conn: pipelines_table.delete(conn, key)):
            raise _missing(pipeline_id)

    async def update(self, pipeline_id: str, files: Sequence[DefinitionFile]) -> tuple[str, ...]:
        """Replace the definition for jobs created from now on (earlier jobs keep their own copy); the
        warnings of the new definition."""
        key = _key(pipeline_id)
        loaded = self.load(files)
        name = loaded.pipeline.name
        replaced = await self._db.write(
            lambda conn: pipelines_table.replace_definition(conn, key, name, tuple(files), ids.now())
        )
        if not replaced:
            raise _missing(pipeline_id)
        return loaded.warnings

    async def add_metadata(self, pipeline_id: str, new: Mapping[str, str]) -> dict[str, str]:
        return await self._metadata.add(_key(pipeline_id), new)

    async def remove_metadata(self, pipeline_id: str, keys: Iterable[str]) -> dict[str, str]:
        return await self._metadata.remove(_key(pipeline_id), keys)


def _key(pipeline_id: str) -> str:
    return ids.parse_id(pipeline_id, ErrorCode.INVALID_PIPELINE_ID, "pipeline")


def _missing(pipeline_id: str) -> ClaretError:
    return ClaretError(ErrorCode.NO_SUCH_PIPELINE, f"no pipeline with id {pipeline_id!r}")
