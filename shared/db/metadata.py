"""Metadata of pipelines, jobs and reusable payloads: read-modify-write of the ``metadata`` JSON column,
in one transaction, with the rules of :mod:`shared.metadata`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Literal

from shared import metadata as rules
from shared.db.connection import Connection
from shared.errors import ClaretError

if TYPE_CHECKING:
    from shared.db import Database

Table = Literal["pipelines", "jobs", "payloads", "models"]
Edit = Callable[[dict[str, str]], dict[str, str]]


def change(conn: Connection, table: Table, row_id: str, edit: Edit) -> dict[str, str] | None:
    """Apply ``edit`` to one row's metadata inside the caller's transaction; None when no such row."""
    row = conn.execute(f"SELECT metadata FROM {table} WHERE id = ?", (row_id,)).fetchone()
    if row is None:
        return None
    metadata = edit(json.loads(row[0]))
    conn.execute(f"UPDATE {table} SET metadata = ? WHERE id = ?", (json.dumps(metadata), row_id))
    return metadata


class MetadataRows:
    """AddMetadata / RemoveMetadata of one table, for rows whose id the caller already checked."""

    def __init__(self, db: Database, table: Table, missing: Callable[[str], ClaretError]) -> None:
        self._db = db
        self._table = table
        self._missing = missing

    async def add(self, row_id: str, new: Mapping[str, str]) -> dict[str, str]:
        """The row's metadata plus ``new``; refused whole when a key exists (see :func:`rules.add`)."""
        return await self._change(row_id, lambda old: rules.add(old, new))

    async def remove(self, row_id: str, keys: Iterable[str]) -> dict[str, str]:
        drop = list(keys)
        return await self._change(row_id, lambda old: rules.remove(old, drop))

    async def _change(self, row_id: str, edit: Edit) -> dict[str, str]:
        result = await self._db.write(lambda conn: change(conn, self._table, row_id, edit))
        if result is None:
            raise self._missing(row_id)
        return result
