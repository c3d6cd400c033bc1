"""The PostgreSQL store's own behaviour, beyond what every test runs on both stores."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from shared.db.postgres import PostgresDatabase
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
