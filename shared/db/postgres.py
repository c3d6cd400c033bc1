"""The PostgreSQL store: asyncpg, for services on several hosts (``CLARET_DATABASE_URL=postgresql://...``).

The table modules are plain synchronous functions over a :class:`~shared.db.connection.Connection`. Here
such a function runs on a worker thread of this store, against :class:`_Bridge`, which hands each statement
to asyncpg on the event loop and waits for its rows: the SQL stays written once, and the network round
trip (not the hand-off) is what a statement costs.

Writes run SERIALIZABLE and are retried on a serialization failure or deadlock, which gives the table
modules the guarantee SQLite's ``BEGIN IMMEDIATE`` gives them: a read-then-write in one unit of work sees
no other writer in between. Decision rounds of the shared jobs queue name their node's queue
(``write(fn, queue=...)``): a session advisory lock, taken before the transaction begins, makes them wait
for each other instead of failing and retrying; a replica claims its grants with ``FOR UPDATE SKIP
LOCKED``. LISTEN/NOTIFY wakes replicas up.

Migrations are the SQLite ones with the few type names that differ translated (:func:`postgres_ddl`),
applied under an advisory lock so that replicas starting together apply each once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from shared.db import Database, migrations, split_statements
from shared.db.connection import Conflict, Connection, Row
from shared.errors import storage_full
from shared.logging import get_logger
from shared.metrics import Metrics

T = TypeVar("T")
log = get_logger(__name__)

POOL_SIZE = 8
CONNECT_WAIT_S = 30.0
WRITE_ATTEMPTS = 50
MIGRATION_LOCK = 0x434C_5254  # "CLRT": one advisory lock id for schema migrations
RETRYABLE = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)


class PostgresDatabase(Database):
    """A pool of asyncpg connections to the shared PostgreSQL database."""

    def __init__(self, pool: asyncpg.Pool, url: str, metrics: Metrics) -> None:
        self._seconds = metrics.db_seconds
        self._pool = pool
        self.name = _without_password(url)
        self._threads = ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="claret-db")
        self._listeners: list[tuple[asyncpg.Connection, str, Callable[..., None]]] = []

    @classmethod
    async def connect(cls, url: str, wait: float = CONNECT_WAIT_S, metrics: Metrics | None = None) -> PostgresDatabase:
        """Connect (waiting up to ``wait`` seconds for a server that is still starting) and migrate."""
        deadline = time.monotonic() + wait
        while True:
            try:
                # All connections up front: a process's sockets stay as many while it serves.
                pool = await asyncpg.create_pool(url, min_size=POOL_SIZE, max_size=POOL_SIZE)
                break
            except (OSError, asyncpg.CannotConnectNowError) as exc:
                if time.monotonic() > deadline:
                    raise
                log.info("waiting for PostgreSQL", database=_without_password(url), reason=str(exc))
                await asyncio.sleep(1)
        db = cls(pool, url, Metrics() if metrics is None else metrics)
        try:
            applied = await db._migrate()
        except BaseException:
            await db.close()
            raise
        if applied:
            log.info("database migrated", database=db.name, applied=applied)
        return db

    async def read(self, fn: Callable[[Connection], T]) -> T:
        with self._seconds.labels("read").time():
            async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                return await self._run(conn, fn)

    async def read_fast(self, fn: Callable[[Connection], T]) -> T:
        """Without a transaction: its statements (a few rows by key) each see the latest commit, which
        saves the two round trips of BEGIN and COMMIT on the most polled read (Jobs.Status)."""
        with self._seconds.labels("read").time():
            async with self._pool.acquire() as conn:
                return await self._run(conn, fn)

    async def write(self, fn: Callable[[Connection], T], *, queue: str | None = None) -> T:
        with self._seconds.labels("write").time():
            for attempt in range(WRITE_ATTEMPTS):
                try:
                    async with (
                        self._pool.acquire() as conn,
                        _queued(conn, queue),
                        conn.transaction(isolation="serializable"),
                    ):
                        return await self._run(conn, fn)
                except RETRYABLE:
                    if attempt == WRITE_ATTEMPTS - 1:
                        raise
                    await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # let the other one finish
                except asyncpg.DiskFullError as exc:
                    raise storage_full(f"the database server's volume ({self.name})") from exc
            raise AssertionError("unreachable")

    async def _run(self, conn: asyncpg.Connection, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` on a worker thread. Cancelled, it still waits for ``fn`` to end before the transaction
        around it is rolled back: a unit of work never goes on outside its transaction."""
        loop = asyncio.get_running_loop()
        work = self._threads.submit(fn, _Bridge(conn, loop))
        try:
            return await asyncio.wrap_future(work)
        except asyncio.CancelledError:  # a running thread cannot be cancelled: wait for it, then roll back
            with contextlib.suppress(BaseException):
                await asyncio.wrap_future(work)
            raise

    async def problem(self) -> str | None:
        try:
            await self._pool.fetchval("SELECT 1")
        except Exception as exc:
            return f"the database {self.name} does not answer: {exc}"
        return None

    async def notify(self, channel: str) -> None:
        await self._pool.execute("SELECT pg_notify($1, '')", channel)

    async def listen(self, channel: str, wake: Callable[[], None]) -> bool:
        conn = await self._pool.acquire()

        def on_notification(*_: object) -> None:
            wake()

        await conn.add_listener(channel, on_notification)
        self._listeners.append((conn, channel, on_notification))
        return True

    async def close(self) -> None:
        for conn, channel, callback in self._listeners:
            try:
                await conn.remove_listener(channel, callback)
            finally:
                await self._pool.release(conn)
        self._listeners.clear()
        await self._pool.close()
        self._threads.shutdown(wait=False)

    async def _migrate(self) -> list[int]:
        applied = []
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied DOUBLE PRECISION NOT NULL)"
            )
            done = {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, name, sql in migrations():
                if version in done:
                    continue
                for statement in split_statements(postgres_ddl(sql)):
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2, $3)", version, name, time.time())
                applied.append(version)
        return applied


@contextlib.asynccontextmanager
async def _queued(conn: asyncpg.Connection, queue: str | None) -> AsyncIterator[None]:
    """Hold a session advisory lock named ``queue`` around a transaction: taken before it begins, so its
    snapshot already shows what the previous holder committed."""
    if queue is None:
        yield
        return
    await conn.execute("SELECT pg_advisory_lock(hashtext($1))", queue)
    try:
        yield
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", queue)


# -- the bridge ----------------------------------------------------------------------------------------------


class _Cursor:
    def __init__(self, rows: list[Row], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> Row | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Row]:
        return list(self._rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(self._rows)


class _Bridge:
    """A synchronous :class:`Connection` over an asyncpg connection, used from a worker thread."""

    dialect = "postgresql"

    def __init__(self, conn: asyncpg.Connection, loop: asyncio.AbstractEventLoop) -> None:
        self._conn = conn
        self._loop = loop

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> _Cursor:
        query, returns_rows = _translate(sql)
        if returns_rows:
            rows = self._call(self._conn.fetch(query, *parameters))
            return _Cursor(rows, len(rows))
        status: str = self._call(self._conn.execute(query, *parameters))
        count = status.rsplit(" ", 1)[-1]
        return _Cursor([], int(count) if count.isdigit() else -1)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> _Cursor:
        batch = [tuple(p) for p in parameters]
        if batch:
            self._call(self._conn.executemany(_translate(sql)[0], batch))
        return _Cursor([], -1)

    def _call(self, work: Any) -> Any:
        try:
            return asyncio.run_coroutine_threadsafe(work, self._loop).result()
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(str(exc)) from exc


@lru_cache(maxsize=1024)
def _translate(sql: str) -> tuple[str, bool]:
    """``?`` placeholders -> ``$1, $2, ...``; and whether the statement gives rows back."""
    numbers = iter(range(1, sql.count("?") + 1))
    query = re.sub(r"\?", lambda _: f"${next(numbers)}", sql)
    head = query.lstrip().split(None, 1)[0].upper()
    return query, head in ("SELECT", "WITH", "VALUES") or " RETURNING " in query.upper()


def postgres_ddl(sql: str) -> str:
    """A migration written for SQLite, in PostgreSQL's type names: REAL is single precision there, and
    integers are 64-bit like SQLite's."""
    sql = re.sub(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", sql)
    sql = re.sub(r"\bINTEGER\b", "BIGINT", sql)
    return re.sub(r"\bREAL\b", "DOUBLE PRECISION", sql)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
