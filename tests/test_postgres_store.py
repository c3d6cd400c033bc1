"""The PostgreSQL store's own behaviour, beyond what every test runs on both stores."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psycopg
import pytest

from shared.db.postgres import POOL_SIZE, PostgresDatabase
from tests.helpers import free_port
from tests.store import target


@pytest.mark.parametrize("store", ["postgresql"], indirect=True)
async def test_services_wait_for_a_postgresql_server_that_starts_late(tmp_path: Path, store: str) -> None:
    """As in compose, where the services may start before PostgreSQL: the store connects once it listens
    (here a forwarder to the test server that opens its port 1.5 s late), and gives up after its wait."""
    url = str(target(tmp_path))
    host_port = url.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    late = free_port()

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True)

    async def open_late() -> asyncio.Server:
        await asyncio.sleep(1.5)
        return await asyncio.start_server(forward, "127.0.0.1", late)

    opening = asyncio.create_task(open_late())
    began = time.monotonic()
    db = await PostgresDatabase.connect(url.replace(host_port, f"127.0.0.1:{late}"))
    server = await opening
    try:
        assert time.monotonic() - began >= 1.5
        assert await db.problem() is None
        await db.close()
    finally:
        server.close()
    with pytest.raises(OSError):
        await PostgresDatabase.connect(url.replace(host_port, f"127.0.0.1:{free_port()}"), wait=1)


@pytest.mark.parametrize("store", ["postgresql"], indirect=True)
async def test_connections_the_server_dropped_are_opened_again(tmp_path: Path, store: str) -> None:
    """A server restart (here: every backend of this store terminated) fails the units of work then under
    way, not the ones after: each worker opens its connection again; a listener keeps waking its owner."""
    url = str(target(tmp_path))
    db = await PostgresDatabase.connect(url)
    woken = asyncio.Event()
    try:
        assert await db.read(lambda conn: conn.execute("SELECT 1").fetchone()[0]) == 1
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        answers = []
        for _ in range(40):
            try:
                answers.append(await db.read(lambda conn: conn.execute("SELECT 2").fetchone()[0]))
            except psycopg.OperationalError:
                answers.append(None)
        # Each of the pool's connections fails once at most: the worker that meets it dropped opens another.
        # (Which idle worker a unit lands on is the thread pool's choice, so a worker unused so far may meet
        # its dropped connection late in the run: only the count is certain.)
        assert answers.count(None) <= POOL_SIZE
        assert await db.problem() is None
        assert await db.listen("claret_test", woken.set)
        await db.notify("claret_test")
        await asyncio.wait_for(woken.wait(), 5)
    finally:
        await db.close()
