"""The shared database: one interface, two stores.

Design rule: one await per unit of work. Callers pass a plain function that receives a
:class:`~shared.db.connection.Connection` and does all of its statements; :meth:`Database.write` runs it in
one transaction (serialized with every other writer: SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's
SERIALIZABLE with retries), commits, or rolls back when it raises. The table modules (beside this one for
the tables several services use; ``services/jobs/*_table.py`` for the jobs service's own) are such
functions, in the SQL both stores speak.

* :class:`~shared.db.sqlite.SqliteDatabase` (default): one file in WAL mode through aiosqlite, shared by the
  processes of one host.
* :class:`~shared.db.postgres.PostgresDatabase` (``CLARET_DATABASE_URL=postgresql://...``): psycopg on
  worker threads, for services on several hosts; LISTEN/NOTIFY wakes jobs replicas up.

Both apply the same versioned migrations (``migrations/NNN_name.sql``) at open.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TypeVar

from shared.db.connection import Conflict, Connection
from shared.metrics import Metrics

__all__ = ["Conflict", "Connection", "Database", "is_postgres", "migrations", "split_statements"]

T = TypeVar("T")


def is_postgres(target: str | Path) -> bool:
    return str(target).startswith(("postgresql://", "postgres://"))


class Database(ABC):
    """One process's access to the shared database."""

    name: str
    """Where it is, for messages (a file path, or a URL without its password)."""

    @staticmethod
    async def open(target: str | Path, metrics: Metrics | None = None) -> Database:
        """Connect to a SQLite file or a ``postgresql://`` URL, and apply pending migrations. Units of work are
        timed into ``metrics`` (a registry of its own when none is given)."""
        metrics = Metrics() if metrics is None else metrics
        if is_postgres(target):
            from shared.db.postgres import PostgresDatabase

            return await PostgresDatabase.connect(str(target), metrics=metrics)
        from shared.db.sqlite import SqliteDatabase

        return await SqliteDatabase.connect(Path(target), metrics)

    @abstractmethod
    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` (reads only) on one consistent snapshot."""

    @abstractmethod
    async def read_fast(self, fn: Callable[[Connection], T]) -> T:
        """A short read (one statement, a few rows by key) by the quickest way the store has: for polled
        point reads (Jobs.Status) and the lookups by id that start Create, Start, Upload and Download."""

    @abstractmethod
    async def write(self, fn: Callable[[Connection], T], *, queue: str | None = None) -> T:
        """Run ``fn`` in one transaction, serialized with every other writer. Writers that name the same
        ``queue`` wait for each other's end before they start (PostgreSQL runs other writers concurrently
        and retries on conflict; a decision round that rereads the whole queue should rather wait)."""

    @abstractmethod
    async def problem(self) -> str | None:
        """Why the database cannot be used right now, or None (a readiness check)."""

    @abstractmethod
    async def close(self) -> None: ...

    async def notify(self, channel: str) -> None:  # noqa: B027 - a no-op is the right default
        """Wake up whoever listens on ``channel`` (a no-op where the store cannot: they poll)."""

    async def listen(self, channel: str, wake: Callable[[], None]) -> bool:
        """Call ``wake`` on every :meth:`notify` of ``channel``; False when the store cannot (poll instead)."""
        return False


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every ``migrations/NNN_name.sql``, in order."""
    found = []
    for entry in resources.files("shared.db").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            number, _, name = entry.name.removesuffix(".sql").partition("_")
            found.append((int(number), name, entry.read_text()))
    return sorted(found)


def split_statements(script: str) -> list[str]:
    """Split a SQL script into complete statements (each store runs one statement at a time)."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):  # a lexer for ";" outside quotes and comments, nothing more
            if pending.strip():
                statements.append(pending.strip())
            pending = ""
    if pending.strip().strip(";").strip() and not pending.strip().startswith("--"):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {pending.strip()[:80]!r}")
    return statements
