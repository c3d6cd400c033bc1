"""What the table modules need of a database connection: the part of ``sqlite3.Connection`` they use.

The table modules (``shared/db/*.py``, ``services/jobs/*_table.py``) are plain functions over a
:class:`Connection`, written in the SQL that SQLite and PostgreSQL share (``?`` placeholders, ``ON
CONFLICT``, ``RETURNING``, ``IS DISTINCT FROM``). SQLite hands them its own connection; the PostgreSQL store
hands them an adapter over a psycopg connection (``shared/db/postgres.py``). Rows answer both ``row["column"]`` and
``row[0]``, and ``row.keys()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, Protocol


class Row(Protocol):
    """``sqlite3.Row`` or the PostgreSQL store's record: a value by column name or position, and the names."""

    def __getitem__(self, key: str | int, /) -> Any: ...

    def keys(self) -> list[str]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Row | None: ...

    def fetchall(self) -> list[Row]: ...

    def __iter__(self) -> Iterator[Row]: ...


class Connection(Protocol):
    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...


def returned(cursor: Cursor) -> Row:
    """The row a statement always answers (``INSERT ... RETURNING``, an aggregate)."""
    row = cursor.fetchone()
    if row is None:
        raise AssertionError("the statement answered no row")
    return row


Dialect = Literal["sqlite", "postgresql"]


def dialect(conn: Connection) -> Dialect:
    """Which SQL the connection speaks: the PostgreSQL store's session says ``postgresql`` in its ``dialect``;
    ``sqlite3.Connection`` has no such attribute."""
    return "postgresql" if getattr(conn, "dialect", "sqlite") == "postgresql" else "sqlite"


def row_locks(conn: Connection) -> str:
    """`` FOR UPDATE SKIP LOCKED`` where the store locks rows (PostgreSQL), else nothing (SQLite locks the
    whole database for a writer): for claims that concurrent transactions should split between them."""
    return " FOR UPDATE SKIP LOCKED" if dialect(conn) == "postgresql" else ""


class Conflict(Exception):
    """A uniqueness rule of the schema refused a write (``sqlite3.IntegrityError``, psycopg's
    ``UniqueViolation``); the transaction rolled back."""
