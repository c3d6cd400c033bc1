"""The store interface on both stores: atomic units of work, conflicts, wake-ups, migrations."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.db import Conflict, Connection, Database, is_postgres
from tests.store import target

BOTH_STORES = True  # every test runs on SQLite and on PostgreSQL (tests/conftest.py)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(target(tmp_path))
    yield database
    await database.close()


def replicas(conn: Connection) -> list[str]:
    return [row[0] for row in conn.execute("SELECT id FROM replicas ORDER BY id")]


def add(conn: Connection, name: str) -> None:
    conn.execute("INSERT INTO replicas (id, node, heartbeat, started) VALUES (?, 'n', 0, 0)", (name,))


async def test_a_unit_of_work_that_fails_half_way_leaves_nothing(db: Database) -> None:
    def half(conn: Connection) -> None:
        add(conn, "first")
        raise RuntimeError("between two statements")

    with pytest.raises(RuntimeError):
        await db.write(half)
    assert await db.read(replicas) == []


async def test_a_cancelled_unit_of_work_is_rolled_back_whole(db: Database) -> None:
    """Cancelled while its function still runs (on a worker thread for PostgreSQL): the function's later
    statements must not land outside the transaction."""

    def slow(conn: Connection) -> None:
        add(conn, "first")
        time.sleep(0.3)
        add(conn, "second")

    task = asyncio.create_task(db.write(slow))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.4)
    assert await db.read(replicas) in ([], ["first", "second"])  # all or nothing, never half


async def test_a_uniqueness_violation_is_a_conflict_and_rolls_back(db: Database) -> None:
    await db.write(lambda conn: add(conn, "a"))

    def twice(conn: Connection) -> None:
        add(conn, "b")
        add(conn, "a")

    with pytest.raises(Conflict):
        await db.write(twice)
    assert await db.read(replicas) == ["a"]


async def test_concurrent_read_then_write_units_never_lose_an_update(db: Database) -> None:
    await db.write(lambda conn: add(conn, "counter"))

    def increment(conn: Connection) -> None:
        (value,) = conn.execute("SELECT heartbeat FROM replicas WHERE id = 'counter'").fetchone()
        conn.execute("UPDATE replicas SET heartbeat = ? WHERE id = 'counter'", (value + 1,))

    await asyncio.gather(*(db.write(increment) for _ in range(40)))
    assert await db.read(lambda conn: conn.execute("SELECT heartbeat FROM replicas").fetchone()[0]) == 40


async def test_listeners_are_woken_where_the_store_can(db: Database, tmp_path: Path) -> None:
    woken = asyncio.Event()
    listening = await db.listen("claret_test", woken.set)
    assert listening == is_postgres(target(tmp_path))  # SQLite: replicas poll instead
    other = await Database.open(target(tmp_path))
    try:
        await other.notify("claret_test")
        if listening:
            await asyncio.wait_for(woken.wait(), 5)
    finally:
        await other.close()


async def test_opening_again_applies_no_migration_twice(db: Database, tmp_path: Path) -> None:
    again = await asyncio.gather(*(Database.open(target(tmp_path)) for _ in range(3)))
    try:
        versions = await db.read(lambda conn: [r[0] for r in conn.execute("SELECT version FROM schema_migrations")])
        assert sorted(versions) == sorted(set(versions)) and len(versions) >= 2
    finally:
        for database in again:
            await database.close()
