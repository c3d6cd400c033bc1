"""Fixtures that run real Claret servers on real TCP ports, over a real store and payload tree.

The store: a module that sets ``BOTH_STORES = True`` runs each of its tests twice, on a SQLite file and on a
fresh database of a real PostgreSQL server (scripts/postgres); the ``store`` fixture puts the choice in
``CLARET_DATABASE_URL``, which servers started by the test (in process or not) read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

# Servers the tests start as processes serve a console too: on a free port each, not all on 30080.
os.environ.setdefault("CLARET_CONSOLE_PORT", "0")

from tests.helpers import (
    OFFICIAL_CLIENT,
    POSTGRES,
    ROOT,
    STORES,
    RunningServer,
    make_settings,
    postgres_database,
    required,
    serve_process,
    start_in_process,
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    both = getattr(metafunc.module, "BOTH_STORES", False)
    if both == "module":  # one server for the module's tests: see module_store
        if "module_store" in metafunc.fixturenames:
            metafunc.parametrize("module_store", STORES, indirect=True, scope="module")
    elif both:
        metafunc.parametrize("store", STORES, indirect=True)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The test PostgreSQL server (scripts/postgres starts it unless one answers): its base URL."""
    started = subprocess.run(["bash", str(ROOT / "scripts" / "postgres")], capture_output=True, text=True)
    if started.returncode != 0:
        required(f"no PostgreSQL server for the tests: {started.stderr.strip()}")
    return POSTGRES


@pytest.fixture(autouse=True)
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Which store this test's servers use: "sqlite" (the default), or "postgresql" with a database of its own."""
    if getattr(request, "param", "sqlite") == "sqlite":
        monkeypatch.delenv("CLARET_DATABASE_URL", raising=False)
        yield "sqlite"
        return
    with postgres_database(request.getfixturevalue("postgres_server")) as url:
        monkeypatch.setenv("CLARET_DATABASE_URL", url)
        yield "postgresql"


@pytest.fixture(scope="module")
def module_store(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """For a module whose tests share one server (``BOTH_STORES = "module"``): the environment that server
    needs for this round's store (a database of its own on PostgreSQL)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield {}
        return
    with postgres_database(request.getfixturevalue("postgres_server")) as url:
        yield {"CLARET_DATABASE_URL": url}


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """Every service in this test's event loop, on a free port."""
    settings = make_settings(tmp_path)
    server, resources = await start_in_process(settings)
    try:
        yield RunningServer(f"127.0.0.1:{server.port}", settings, server)
    finally:
        await server.stop(grace=1)
        await resources.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[RunningServer]:
    """`claret serve` as a separate process with no configuration beyond its port and data dir."""
    with serve_process(tmp_path / "data") as (address, process):
        port = int(address.rsplit(":", 1)[1])
        yield RunningServer(address, make_settings(tmp_path, port=port), pid=process.pid)


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A Docker engine with the test image (scripts/docker-engine and scripts/test-images provide both).

    Missing, the Docker tests are skipped on a developer's machine but fail in CI, where they must run.
    """
    docker = shutil.which("docker")
    answers = (
        docker is not None
        and subprocess.run([docker, "image", "inspect", "busybox:latest"], capture_output=True).returncode == 0
    )
    if not answers:
        reason = "no Docker engine with the busybox:latest test image (run scripts/docker-engine, scripts/test-images)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def official_python() -> Path:
    """Python of a virtual environment holding the official client, unmodified, with protobuf<4."""
    venv = Path(os.environ.get("CLARET_CLIENT_VENV", ROOT / ".ci-cache" / "clara-client-venv"))
    python = venv / "bin" / "python"
    if not (venv / ".ready").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", OFFICIAL_CLIENT, "protobuf<4"], check=True)
        (venv / ".ready").touch()
    return python
