"""The pipelines table. Plain functions over a ``Connection``; run them through ``Database``."""

from __future__ import annotations

import json
from dataclasses import dataclass

from shared.db.connection import Connection, Row
from shared.pipeline_definition import DefinitionFile


@dataclass(frozen=True)
class PipelineRecord:
    """A stored pipeline: its definition files as sent, first the pipeline document."""

    id: str
    name: str
    files: tuple[DefinitionFile, ...]
    metadata: dict[str, str]
    created: float
    updated: float


def files_to_json(files: tuple[DefinitionFile, ...] | list[DefinitionFile]) -> str:
    return json.dumps([[f.path, f.content] for f in files])


def files_from_json(text: str) -> tuple[DefinitionFile, ...]:
    return tuple(DefinitionFile(path=path, content=content) for path, content in json.loads(text))


def _record(row: Row) -> PipelineRecord:
    return PipelineRecord(
        id=row["id"],
        name=row["name"],
        files=files_from_json(row["files"]),
        metadata=json.loads(row["metadata"]),
        created=row["created"],
        updated=row["updated"],
    )


def insert(conn: Connection, record: PipelineRecord) -> bool:
    """Insert; False when the id is taken."""
    cursor = conn.execute(
        "INSERT INTO pipelines (id, name, files, metadata, created, updated) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (
            record.id,
            record.name,
            files_to_json(record.files),
            json.dumps(record.metadata),
            record.created,
            record.updated,
        ),
    )
    return cursor.rowcount == 1


def get(conn: Connection, pipeline_id: str) -> PipelineRecord | None:
    row = conn.execute("SELECT * FROM pipelines WHERE id = ?", (pipeline_id,)).fetchone()
    return None if row is None else _record(row)


def list_all(conn: Connection) -> list[PipelineRecord]:
    return [_record(row) for row in conn.execute("SELECT * FROM pipelines ORDER BY created, id")]


def delete(conn: Connection, pipeline_id: str) -> bool:
    return conn.execute("DELETE FROM pipelines WHERE id = ?", (pipeline_id,)).rowcount == 1


def replace_definition(
    conn: Connection, pipeline_id: str, name: str, files: tuple[DefinitionFile, ...], updated: float
) -> bool:
    cursor = conn.execute(
        "UPDATE pipelines SET name = ?, files = ?, updated = ? WHERE id = ?",
        (name, files_to_json(files), updated, pipeline_id),
    )
    return cursor.rowcount == 1


def ids_for(conn: Connection, ref: str) -> list[str]:
    """The ids of the pipelines ``ref`` names: by id, or by name (names need not be unique)."""
    rows = conn.execute("SELECT id FROM pipelines WHERE id = ? OR name = ? ORDER BY id", (ref, ref))
    return [row["id"] for row in rows]
