"""The PostgreSQL store: psycopg 3, for services on several hosts (``CLARET_DATABASE_URL=postgresql://...``).

The table modules are plain synchronous functions over a :class:`~shared.db.connection.Connection`. Here a
unit of work runs whole on a worker thread of this store, on that thread's own connection: BEGIN, the
function's statements and COMMIT are blocking calls there, and the event loop hands the work over once and
takes the result once, as the SQLite store does. (Statements handed one by one from a worker thread to
asyncpg on the event loop cost two thread hops each and left this store at 0.58 of SQLite's throughput:
docs/performance.md.)

Writes run SERIALIZABLE and are retried on a serialization failure or deadlock, which gives the table
modules the guarantee SQLite's ``BEGIN IMMEDIATE`` gives them: a read-then-write in one unit of work sees
no other writer in between. Decision rounds of the shared jobs queue name their node's queue
(``write(fn, queue=...)``): a session advisory lock, taken before the transaction begins, makes them wait
for each other instead of failing and retrying; a replica claims its grants with ``FOR UPDATE SKIP
LOCKED``. LISTEN/NOTIFY wakes replicas up, each channel listened to on a connection and thread of its own.

Migrations are the SQLite ones with the few type names that differ translated (:func:`postgres_ddl`),
applied under an advisory lock so that replicas starting together apply each once.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache, partial
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import errors, sql

from shared.db import Database, migrations, split_statements
from shared.db.connection import Conflict, Connection
from shared.errors import storage_full
from shared.logging import get_logger
from shared.metrics import Metrics

T = TypeVar("T")
log = get_logger(__name__)

POOL_SIZE = 8
"""Worker threads, each with its connection: units of work at once."""
CONNECT_WAIT_S = 30.0
WRITE_ATTEMPTS = 50
MIGRATION_LOCK = 0x434C_5254  # "CLRT": one advisory lock id for schema migrations
RETRYABLE = (errors.SerializationFailure, errors.DeadlockDetected)
BEGIN_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
BEGIN_WRITE = "BEGIN ISOLATION LEVEL SERIALIZABLE"
LISTEN_POLL_S = 0.5
"""How often a listener thread looks whether it is to stop."""

Work = Callable[[psycopg.Connection[Any]], T]


class PostgresDatabase(Database):
    """Worker threads with a psycopg connection each, to the shared PostgreSQL database."""

    def __init__(self, url: str, metrics: Metrics) -> None:
        self._url = url
        self._read_seconds = metrics.db_seconds.labels("read")  # children looked up once: labels() locks
        self._write_seconds = metrics.db_seconds.labels("write")
        self.name = _without_password(url)
        self._threads = ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="claret-db")
        self._local = threading.local()
        self._opened: list[psycopg.Connection[Any]] = []
        self._opened_lock = threading.Lock()
        self._listeners: list[_Listener] = []
        self._spare: queue.SimpleQueue[psycopg.Connection[Any]] = queue.SimpleQueue()

    @classmethod
    async def connect(cls, url: str, wait: float = CONNECT_WAIT_S, metrics: Metrics | None = None) -> PostgresDatabase:
        """Connect (waiting up to ``wait`` seconds for a server that is still starting) and migrate."""
        db = cls(url, Metrics() if metrics is None else metrics)
        deadline = time.monotonic() + wait
        while True:
            try:
                await db._open_all()
                break
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    await db.close()
                    raise OSError(f"cannot connect to the database {db.name}: {exc}") from exc
                log.info("waiting for PostgreSQL", database=db.name, reason=str(exc).strip())
                await asyncio.sleep(1)
        try:
            applied = await db._run(_migrate)
        except BaseException:
            await db.close()
            raise
        if applied:
            log.info("database migrated", database=db.name, applied=applied)
        return db

    async def read(self, fn: Callable[[Connection], T]) -> T:
        with self._read_seconds.time():
            return await self._run(partial(_transaction, fn=fn, begin=BEGIN_READ))

    async def read_fast(self, fn: Callable[[Connection], T]) -> T:
        """Without a transaction: its statements (a few rows by key) each see the latest commit, which
        saves the two round trips of BEGIN and COMMIT on the most polled read (Jobs.Status)."""
        with self._read_seconds.time():
            return await self._run(lambda conn: fn(_Session(conn)))

    async def write(self, fn: Callable[[Connection], T], *, queue: str | None = None) -> T:
        with self._write_seconds.time():
            return await self._run(partial(_write, fn=fn, queue=queue, name=self.name))

    async def _open_all(self) -> None:
        """Open every worker's connection now, for the workers to take at their first unit of work: a
        process keeps as many sockets while it serves (none opened later, under load)."""
        for conn in await asyncio.to_thread(_open_many, self._url, POOL_SIZE):
            self._spare.put(self._keep(conn))

    def _keep(self, conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
        with self._opened_lock:
            self._opened.append(conn)
        return conn

    async def _run(self, work: Work[T]) -> T:
        """Run ``work`` on a worker thread with its connection. Cancelled, it still waits for the work to
        end: a unit of work never goes on outside its transaction."""
        future = self._threads.submit(self._on_worker, work)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:  # a running thread cannot be cancelled: wait for it
            with contextlib.suppress(BaseException):
                await asyncio.wrap_future(future)
            raise

    def _on_worker(self, work: Work[T]) -> T:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._spare.get_nowait() if not self._spare.empty() else None
        if conn is None or conn.broken or conn.closed:  # the server went away meanwhile: a new one
            conn = self._local.conn = self._keep(_open(self._url))
        return work(conn)

    async def problem(self) -> str | None:
        try:
            await self._run(lambda conn: conn.execute("SELECT 1"))
        except Exception as exc:
            return f"the database {self.name} does not answer: {exc}"
        return None

    async def notify(self, channel: str) -> None:
        await self._run(lambda conn: conn.execute("SELECT pg_notify(%s, '')", (channel,)))

    async def listen(self, channel: str, wake: Callable[[], None]) -> bool:
        listener = _Listener(self._url, channel, asyncio.get_running_loop(), wake)
        await asyncio.to_thread(listener.start)
        self._listeners.append(listener)
        return True

    async def close(self) -> None:
        for listener in self._listeners:
            await asyncio.to_thread(listener.stop)
        self._listeners.clear()
        self._threads.shutdown(wait=True)
        with self._opened_lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()


def _open_many(url: str, count: int) -> list[psycopg.Connection[Any]]:
    """``count`` connections, or none: those opened before a failure are closed."""
    opened: list[psycopg.Connection[Any]] = []
    try:
        for _ in range(count):
            opened.append(_open(url))
    except BaseException:
        for conn in opened:
            conn.close()
        raise
    return opened


def _open(url: str) -> psycopg.Connection[Any]:
    """A connection in autocommit mode: the store says BEGIN and COMMIT itself, with the isolation it wants."""
    return psycopg.connect(url, autocommit=True, row_factory=_records)


def _transaction(conn: psycopg.Connection[Any], fn: Callable[[Connection], T], begin: str) -> T:
    conn.execute(begin)
    try:
        result = fn(_Session(conn))
    except BaseException:
        if not conn.broken:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")  # a serialization failure can come here too: the caller retries
    return result


def _write(conn: psycopg.Connection[Any], fn: Callable[[Connection], T], queue: str | None, name: str) -> T:
    with _queued(conn, queue):
        for attempt in range(WRITE_ATTEMPTS):
            try:
                return _transaction(conn, fn, BEGIN_WRITE)
            except RETRYABLE:
                if attempt == WRITE_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # let the other one finish
            except errors.DiskFull as exc:
                raise storage_full(f"the database server's volume ({name})") from exc
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _queued(conn: psycopg.Connection[Any], queue: str | None) -> Iterator[None]:
    """Hold a session advisory lock named ``queue`` around a unit of work: taken before its transaction
    begins, so its snapshot already shows what the previous holder committed."""
    if queue is None:
        yield
        return
    conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (queue,))
    try:
        yield
    finally:
        if not conn.broken:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (queue,))


def _migrate(conn: psycopg.Connection[Any]) -> list[int]:
    applied = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied DOUBLE PRECISION NOT NULL)"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, name, script in migrations():
            if version in done:
                continue
            for statement in split_statements(postgres_ddl(script)):
                conn.execute(statement.encode())  # DDL as written: no parameters, so no placeholders to mind
            conn.execute("INSERT INTO schema_migrations VALUES (%s, %s, %s)", (version, name, time.time()))
            applied.append(version)
    return applied


# -- what the table modules see ----------------------------------------------------------------------------


class _Session:
    """The :class:`Connection` the table modules use: ``?`` placeholders, a uniqueness conflict as
    :class:`Conflict`, rows that answer to column names and positions."""

    dialect = "postgresql"

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, statement: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        try:
            return self._conn.execute(_translate(statement), tuple(parameters))
        except errors.UniqueViolation as exc:
            raise Conflict(str(exc)) from exc

    def executemany(self, statement: str, parameters: Any, /) -> psycopg.Cursor[Any]:
        cursor = self._conn.cursor()
        batch = [tuple(p) for p in parameters]
        if batch:
            try:
                cursor.executemany(_translate(statement), batch)
            except errors.UniqueViolation as exc:
                raise Conflict(str(exc)) from exc
        return cursor


class _Record:
    """A row: ``row["name"]``, ``row[0]``, ``row.keys()``, iteration over the values."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: str | int, /) -> Any:
        return self._values[self._index[key] if isinstance(key, str) else key]

    def keys(self) -> list[str]:
        return list(self._index)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _records(cursor: psycopg.Cursor[Any]) -> Callable[[Sequence[Any]], _Record]:
    """psycopg's row factory for :class:`_Record`: the column index is made once per result."""
    index = {column.name: position for position, column in enumerate(cursor.description or ())}
    return partial(_Record, index=index)


@lru_cache(maxsize=1024)
def _translate(statement: str) -> bytes:
    """``?`` placeholders -> psycopg's ``%s`` (the table modules' SQL has no ``%`` of its own)."""
    return statement.replace("?", "%s").encode()


class _Listener:
    """LISTEN on a channel, on a connection and thread of its own; ``wake()`` runs on the loop per notice."""

    def __init__(self, url: str, channel: str, loop: asyncio.AbstractEventLoop, wake: Callable[[], None]) -> None:
        self._url = url
        self._channel = channel
        self._loop = loop
        self._wake = wake
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._listen, name=f"claret-listen-{channel}", daemon=True)
        self._conn: psycopg.Connection[Any] | None = None

    def start(self) -> None:
        self._conn = psycopg.connect(self._url, autocommit=True)
        self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        self._thread.start()

    def _listen(self) -> None:
        assert self._conn is not None
        while not self._stopping.is_set():
            try:
                for _ in self._conn.notifies(timeout=LISTEN_POLL_S):
                    with contextlib.suppress(RuntimeError):  # the loop closed: the process is stopping
                        self._loop.call_soon_threadsafe(self._wake)
            except psycopg.Error as exc:
                if not self._stopping.is_set():
                    log.warning("stopped listening", channel=self._channel, error=str(exc))
                return

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        if self._conn is not None:
            self._conn.close()


def postgres_ddl(script: str) -> str:
    """A migration written for SQLite, in PostgreSQL's type names: REAL is single precision there, and
    integers are 64-bit like SQLite's."""
    script = re.sub(
        r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", script
    )
    script = re.sub(r"\bINTEGER\b", "BIGINT", script)
    return re.sub(r"\bREAL\b", "DOUBLE PRECISION", script)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
