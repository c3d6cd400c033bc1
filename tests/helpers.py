"""What tests share besides fixtures: servers on free ports, settings, the store, the official client.

Fixtures are in ``tests/conftest.py``; test modules import helpers from here, never from the conftest.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import grpc
import psycopg
import pytest

from claret.serve import build_services, make_server
from shared.config import Settings
from shared.resources import Resources
from shared.server import ClaretServer

ROOT = Path(__file__).resolve().parent.parent


OFFICIAL_CLIENT = "nvidia-clara-client==0.8.1.7"


STORES = ("sqlite", "postgresql")


POSTGRES = f"postgresql://postgres@127.0.0.1:{os.environ.get('CLARET_TEST_POSTGRES_PORT', '55432')}"


def required(reason: str) -> None:
    """Skip on a developer's machine without the means; fail in CI, where everything must run."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@contextmanager
def postgres_database(base: str) -> Iterator[str]:
    """A fresh database on the test PostgreSQL server, dropped (connections and all) afterwards: its URL."""
    name = f"claret_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def lasting_port() -> int:
    """A free port below the kernel's ephemeral range, for a server stopped and started again on the same port
    while the test makes connections: a port from :func:`free_port` may meanwhile become the source port of
    any outgoing connection (CI saw Orthanc's, in "Address already in use")."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        port = random.randrange(max(low - 12000, 1024), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


@dataclass
class RunningServer:
    """A server under test: where it listens and the settings it runs with."""

    address: str
    settings: Settings
    server: ClaretServer | None = None
    pid: int | None = None

    def channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.address)


def make_settings(tmp_path: Path, **changes: object) -> Settings:
    defaults = Settings(
        port=0,
        data_dir=tmp_path / "data",
        database_url=os.environ.get("CLARET_DATABASE_URL"),  # the test's store
        gpus=(),
        runtime="sandbox",
        console_port=0,  # a console per server, each on a port of its own
        stop_grace=1.0,
    )
    return defaults.replace(**changes)


async def start_in_process(settings: Settings) -> tuple[ClaretServer, Resources]:
    resources = await Resources.open(settings)
    server = make_server(settings, await build_services(resources))
    await server.start()
    return server, resources


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex((host, port)) == 0:
                time.sleep(0.1)  # another process may hold the port: then ours exits, failing to bind
                if process.poll() is not None:
                    raise RuntimeError(f"server exited with {process.returncode}")
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


@contextmanager
def serve_process(
    data_dir: Path,
    *args: str,
    stderr: IO[str] | None = None,
    netns: tuple[str, str] | None = None,
    **env: str,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m claret serve` on a free port (plus ``args``); yields its address and process. With
    ``netns=(namespace, address)`` it runs in that network namespace, listening on that address."""
    port = free_port()
    host = "127.0.0.1" if netns is None else netns[1]
    command = [
        sys.executable,
        "-m",
        "claret",
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    process = subprocess.Popen(
        [*(() if netns is None else ("ip", "netns", "exec", netns[0])), *command, *args],
        env={**os.environ, "CLARET_GPUS": "", **env},
        cwd=data_dir.parent,
        stderr=stderr,
    )
    try:
        wait_for_port(port, process, host=host)
        yield f"{host}:{port}", process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=15)


def run_official(python: Path, script: str, *args: str, timeout: float = 60) -> object:
    """Run tests/official/<script> with the official client; it prints one JSON document."""
    result = subprocess.run(
        [str(python), str(ROOT / "tests" / "official" / script), *args], capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise AssertionError(f"{script} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])
