"""The SQLite store: one file in WAL mode through aiosqlite, shared by the processes of one host.

A unit of work runs on aiosqlite's thread in one go, so a transaction costs one thread hand-off instead of
one per statement. :meth:`SqliteDatabase.write` wraps it in ``BEGIN IMMEDIATE`` (a read-then-write never
hits SQLITE_BUSY half way), which also serializes writers across processes.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import aiosqlite

from shared.db import Database, migrations, split_statements
from shared.db.connection import Conflict, Connection
from shared.errors import storage_full
from shared.logging import get_logger
from shared.metrics import Metrics

T = TypeVar("T")
log = get_logger(__name__)

BUSY_TIMEOUT_MS = 30_000
SQLITE_FULL = 13
"""The result code of a write that found the disk full."""


class SqliteDatabase(Database):
    """One process's connection to the shared SQLite file."""

    def __init__(self, connection: aiosqlite.Connection, path: Path, metrics: Metrics) -> None:
        self._read_seconds = metrics.db_seconds.labels("read")  # children looked up once: labels() locks
        self._write_seconds = metrics.db_seconds.labels("write")
        self._connection = connection
        self.path = path
        self.name = str(path)
        self._reader: sqlite3.Connection | None = None

    @classmethod
    async def connect(cls, path: Path, metrics: Metrics | None = None) -> SqliteDatabase:
        """Connect, set WAL and the busy timeout, and apply pending migrations."""
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = await aiosqlite.connect(path, isolation_level=None, check_same_thread=False)
        db = cls(connection, path, Metrics() if metrics is None else metrics)
        try:
            await db._call(_prepare)
            applied = await db._call(migrate)
        except BaseException:
            await connection.close()  # else its thread outlives us and calls into a closed loop
            raise
        if applied:
            log.info("database migrated", path=str(path), applied=applied)
        db._reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        _prepare(db._reader)
        return db

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # aiosqlite has no public "run this callable on the connection thread"; _execute is that.
        raw = self._connection._conn  # the sqlite3.Connection owned by aiosqlite's thread
        result: T = await self._connection._execute(fn, raw)  # type: ignore[no-untyped-call]
        return result

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` (reads only) on the database thread."""
        with self._read_seconds.time():
            return await self._call(fn)

    async def read_fast(self, fn: Callable[[Connection], T]) -> T:
        """Run a short read (a few rows by key) right here on the event loop thread.

        A hand-off to aiosqlite's thread costs more than such a read itself; in WAL mode a reader never
        waits for writers, so the loop is not held up. For point reads by key only (see ``Database``)."""
        assert self._reader is not None, "the database is not open"
        with self._read_seconds.time():
            return fn(self._reader)

    async def write(self, fn: Callable[[Connection], T], *, queue: str | None = None) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction on the database thread (every writer waits for
        the others, so ``queue`` needs nothing more)."""
        with self._write_seconds.time():
            try:
                return await self._call(lambda conn: transaction(conn, fn))
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF == SQLITE_FULL:  # extended codes keep the primary in the low byte
                    raise storage_full(f"the database volume ({self.path})") from exc
                raise

    async def problem(self) -> str | None:
        """Why the database cannot be used right now, or None (a readiness check)."""
        try:
            await self._call(lambda conn: conn.execute("SELECT 1").fetchone())
        except Exception as exc:
            return f"the database {self.path} does not answer: {exc}"
        return None

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        await self._connection.close()


def transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``fn`` and commit, or roll back (also when the COMMIT itself fails: a full disk, say)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except sqlite3.IntegrityError as exc:
        _rollback(conn)
        raise Conflict(str(exc)) from exc
    except BaseException:
        _rollback(conn)
        raise
    return result


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:  # a failed COMMIT leaves it open; a statement may have rolled it back already
        conn.execute("ROLLBACK")


def _prepare(conn: sqlite3.Connection) -> None:
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    _use_wal(conn)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")


def _use_wal(conn: sqlite3.Connection, attempts: int = 100) -> None:
    """Switch a new database file to WAL. The switch takes a lock the busy handler does not wait for, so
    replicas starting together on a fresh file can meet "database is locked": try again for a while."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


def migrate(conn: sqlite3.Connection) -> list[int]:
    """Apply every migration not yet recorded, each in its own transaction; safe with replicas racing."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied REAL NOT NULL)"
    )
    applied = []
    for version, name, sql in migrations():

        def apply(c: sqlite3.Connection, version: int = version, name: str = name, sql: str = sql) -> bool:
            if c.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone():
                return False
            for statement in split_statements(sql):
                c.execute(statement)
            c.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, time.time()))
            return True

        if transaction(conn, apply):
            applied.append(version)
    return applied
