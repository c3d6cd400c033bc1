"""What the table modules need of a database connection: the part of ``sqlite3.Connection`` they use.

The table modules (``shared/db/*.py``) are plain functions over a :class:`Connection`, written in the SQL that
SQLite and PostgreSQL share (``?`` placeholders, ``ON CONFLICT``, ``RETURNING``, ``IS DISTINCT FROM``).
SQLite hands them its own connection; the PostgreSQL store hands them an adapter over asyncpg
(``shared/db/postgres.py``). Rows answer both ``row["column"]`` and ``row[0]``, and ``row.keys()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

Row = Any
"""``sqlite3.Row`` or ``asyncpg.Record``: index by name or position; ``keys()``."""


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Row: ...

    def fetchall(self) -> list[Row]: ...

    def __iter__(self) -> Iterator[Row]: ...


class Connection(Protocol):
    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...


def row_locks(conn: Connection) -> str:
    """`` FOR UPDATE SKIP LOCKED`` where the store locks rows (PostgreSQL), else nothing (SQLite locks the
    whole database for a writer): for claims that concurrent transactions should split between them."""
    return " FOR UPDATE SKIP LOCKED" if getattr(conn, "dialect", "sqlite") == "postgresql" else ""


class Conflict(Exception):
    """A uniqueness rule of the schema refused a write (``sqlite3.IntegrityError``, asyncpg's
    ``UniqueViolationError``); the transaction rolled back."""
