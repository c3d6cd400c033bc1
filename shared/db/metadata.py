"""Read-modify-write of the ``metadata`` JSON column that pipelines, jobs and payloads share."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Literal

Table = Literal["pipelines", "jobs", "payloads"]
Edit = Callable[[dict[str, str]], dict[str, str]]


def change(conn: sqlite3.Connection, table: Table, row_id: str, edit: Edit) -> dict[str, str] | None:
    """Apply ``edit`` to one row's metadata inside the caller's transaction; None when no such row."""
    row = conn.execute(f"SELECT metadata FROM {table} WHERE id = ?", (row_id,)).fetchone()
    if row is None:
        return None
    metadata = edit(json.loads(row[0]))
    conn.execute(f"UPDATE {table} SET metadata = ? WHERE id = ?", (json.dumps(metadata), row_id))
    return metadata
