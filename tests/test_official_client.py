"""The official nvidia-clara-client 0.8.1.7, unmodified, through the whole flow of its combined example:
against `claret serve` (one port) and against three separately started services (one port each)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import RunningServer, free_port, run_official, wait_for_port

BOTH_STORES = True  # every test runs on SQLite and on PostgreSQL (tests/conftest.py)

DATA = Path(__file__).parent / "data"


@pytest.fixture
def separate_services(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """Pipelines, jobs and payloads as three processes sharing one data directory."""
    processes, addresses = [], []
    env = {**os.environ, "CLARET_GPUS": "", "CLARET_DATA_DIR": str(tmp_path / "data"), "CLARET_STOP_GRACE": "1"}
    try:
        for service in ("pipelines", "jobs", "payloads"):
            port = free_port()
            process = subprocess.Popen([sys.executable, "-m", f"services.{service}", "--port", str(port)], env=env)
            processes.append(process)
            wait_for_port(port, process)
            addresses.append(f"127.0.0.1:{port}")
        yield addresses[0], addresses[1], addresses[2]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=15)


def check_combined_flow(official_python: Path, tmp_path: Path, pipelines: str, jobs: str, payloads: str) -> None:
    inputs = []
    for i, size in enumerate((10, 70_000, 300_000)):
        path = tmp_path / f"input-{i}.txt"
        path.write_bytes(b"".join(bytes([97 + (j % 26)]) for j in range(size)))
        inputs.append(path)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    result = run_official(
        official_python,
        "combined_flow.py",
        pipelines,
        jobs,
        payloads,
        str(DATA / "two_operators.yaml"),
        str(downloads),
        *map(str, inputs),
    )
    assert isinstance(result, dict)
    assert result["start"][1] == 1  # HEALTHY
    assert (result["state"], result["status"]) == (3, 1), result  # STOPPED, HEALTHY
    assert result["operators"] == {"copier": 3, "shouter": 3}
    assert result["created_before_stopped"] is True
    assert result["metadata"] == {"source": "tests"} and result["removed"] == {"source": "tests"}
    expected = {}
    for path in inputs:
        expected[f"/operators/copier/{path.name}"] = hashlib.sha256(path.read_bytes()).hexdigest()
        expected[f"/operators/shouter/{path.name}.upper"] = hashlib.sha256(path.read_bytes().upper()).hexdigest()
    assert result["downloads"] == expected
    assert sorted(result["files"]) == sorted([*(f"/input/{p.name}" for p in inputs), *expected])
    assert "copied 3 files" in result["logs"]["copier"] and "to-stderr" in result["logs"]["copier"]
    assert result["logs"]["shouter"] == ["shouted"]
    assert result["listed"] == [result["job_id"]]
    assert result["cancel"] == [True, 3, 3]  # STOPPED, CANCELED


def test_combined_flow_against_claret_serve(served: RunningServer, official_python: Path, tmp_path: Path) -> None:
    address = served.address
    check_combined_flow(official_python, tmp_path, address, address, address)


def test_combined_flow_against_separate_services(
    separate_services: tuple[str, str, str], official_python: Path, tmp_path: Path
) -> None:
    check_combined_flow(official_python, tmp_path, *separate_services)
