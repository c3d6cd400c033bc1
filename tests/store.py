"""The store a test runs on (see the ``store`` fixture in tests/conftest.py), read and written directly."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import psycopg

from shared.db import is_postgres


def target(data_dir: Path) -> str | Path:
    """What a server started on ``data_dir`` uses: the test's PostgreSQL database, else its SQLite file."""
    return os.environ.get("CLARET_DATABASE_URL") or data_dir / "claret.db"


def query(store: str | Path, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
    """Run one statement (``?`` placeholders) in its own transaction; the rows it gives back, if any."""
    if is_postgres(store):
        with psycopg.connect(str(store), autocommit=True) as pg:
            cursor = pg.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]
            return list(cursor.fetchall()) if cursor.description else []
    with sqlite3.connect(store) as conn:
        return conn.execute(sql, params).fetchall()
