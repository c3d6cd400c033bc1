"""The Model Repository's tables (migration 005): models, and the catalogs and instances listing them.

Plain functions over a ``Connection``; what they mean is in ``services/models/repository.py``. Here
(not in the Models service) because Jobs.Start checks an operator's ``models:`` against them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from shared.db.connection import Connection, Row

ListKind = Literal["catalog", "instance"]


@dataclass(frozen=True)
class ModelRecord:
    id: str
    name: str
    type: int
    """ModelType's wire number."""
    size: int
    versions: tuple[int, ...]
    created: float
    metadata: dict[str, str] = field(default_factory=dict, hash=False)


def _record(row: Row) -> ModelRecord:
    return ModelRecord(
        id=row["id"],
        name=row["name"],
        type=row["type"],
        size=row["size"],
        versions=tuple(json.loads(row["versions"])),
        created=row["created"],
        metadata=json.loads(row["metadata"]),
    )


def put(conn: Connection, model: ModelRecord) -> ModelRecord:
    """Record an uploaded model; one of the same name is replaced, keeping its id and metadata (the upload
    overwrites it). Returns what is recorded."""
    conn.execute(
        "INSERT INTO models (id, name, type, metadata, size, versions, created) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET type = excluded.type, size = excluded.size,"
        " versions = excluded.versions, created = excluded.created",
        (
            model.id,
            model.name,
            model.type,
            json.dumps(model.metadata),
            model.size,
            json.dumps(model.versions),
            model.created,
        ),
    )
    # A Triton that loaded the model before is to load it again, the next time an operator needs it.
    conn.execute("DELETE FROM service_models WHERE model = ?", (model.name,))
    found = by_name(conn, model.name)
    assert found is not None
    return found


def get(conn: Connection, model_id: str) -> ModelRecord | None:
    row = conn.execute("SELECT * FROM models WHERE id = ?", (model_id,)).fetchone()
    return None if row is None else _record(row)


def by_name(conn: Connection, name: str) -> ModelRecord | None:
    row = conn.execute("SELECT * FROM models WHERE name = ?", (name,)).fetchone()
    return None if row is None else _record(row)


def all_models(conn: Connection) -> list[ModelRecord]:
    return [_record(row) for row in conn.execute("SELECT * FROM models ORDER BY created, id")]


def loaded_by(conn: Connection, name: str) -> list[str]:
    """The services (Triton instances) that have the model called ``name`` loaded now."""
    rows = conn.execute("SELECT service_id FROM service_models WHERE model = ? ORDER BY service_id", (name,))
    return [row[0] for row in rows]


def delete(conn: Connection, model_id: str) -> bool:
    """Forget a model, and take it out of every catalog and instance; False when there is none."""
    conn.execute("DELETE FROM model_list_entries WHERE model_id = ?", (model_id,))
    return conn.execute("DELETE FROM models WHERE id = ?", (model_id,)).rowcount == 1


def create_list(conn: Connection, list_id: str, kind: ListKind, at: float) -> None:
    conn.execute("INSERT INTO model_lists (id, kind, created) VALUES (?, ?, ?)", (list_id, kind, at))


def list_exists(conn: Connection, list_id: str, kind: ListKind) -> bool:
    return conn.execute("SELECT 1 FROM model_lists WHERE id = ? AND kind = ?", (list_id, kind)).fetchone() is not None


def lists(conn: Connection, kind: ListKind) -> list[str]:
    return [row[0] for row in conn.execute("SELECT id FROM model_lists WHERE kind = ? ORDER BY created, id", (kind,))]


def entries(conn: Connection, list_id: str) -> list[ModelRecord]:
    rows = conn.execute(
        "SELECT m.* FROM model_list_entries e JOIN models m ON m.id = e.model_id"
        " WHERE e.list_id = ? ORDER BY e.position",
        (list_id,),
    )
    return [_record(row) for row in rows]


def replace_entries(conn: Connection, list_id: str, model_ids: Sequence[str]) -> None:
    conn.execute("DELETE FROM model_list_entries WHERE list_id = ?", (list_id,))
    conn.executemany(
        "INSERT INTO model_list_entries (list_id, model_id, position) VALUES (?, ?, ?)",
        [(list_id, model_id, position) for position, model_id in enumerate(model_ids)],
    )


def delete_list(conn: Connection, list_id: str, kind: ListKind) -> bool:
    if not list_exists(conn, list_id, kind):
        return False
    conn.execute("DELETE FROM model_list_entries WHERE list_id = ?", (list_id,))
    conn.execute("DELETE FROM model_lists WHERE id = ?", (list_id,))
    return True
