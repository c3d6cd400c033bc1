"""The foundation: `claret serve` with no configuration, health, reflection, error handling, shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from protos.nvidia.clara.platform import clara_pb2, clara_pb2_grpc
from services.jobs.clara_servicer import ClaraServicer
from shared.metrics import Metrics
from shared.server import ClaretServer, ServicerSet
from tests.helpers import RunningServer, free_port, run_official, wait_for_port

BOTH_STORES = True  # every test runs on SQLite and on PostgreSQL (tests/conftest.py)

CORE_SERVICES = {f"nvidia.clara.platform.{name}" for name in ("Jobs", "Pipelines", "Payloads", "Clara")}


async def list_services(address: str) -> set[str]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        async for response in responses:
            return {service.name for service in response.list_services_response.service}
    raise AssertionError("no reflection response")


async def test_serve_answers_reflection_and_health(served: RunningServer) -> None:
    names = await list_services(served.address)
    assert names >= CORE_SERVICES
    assert "grpc.health.v1.Health" in names
    async with grpc.aio.insecure_channel(served.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ["", *sorted(CORE_SERVICES)]:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service


async def test_reflection_describes_the_clara_wire_types(platform: RunningServer) -> None:
    async with platform.channel() as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="nvidia.clara.platform.Jobs")
        async for response in stub.ServerReflectionInfo(iter([request])):
            files = response.file_descriptor_response.file_descriptor_proto
            assert any(b"nvidia/clara/platform/jobs.proto" in blob for blob in files)
            break


def test_official_client_talks_to_serve(served: RunningServer, official_python: Path) -> None:
    result = run_official(official_python, "clara_platform.py", served.address)
    assert result == {"version": [0, 7, 4, "claret"], "snapshots": 1, "gpus": 0}


def _failing_sample() -> list[object]:
    raise RuntimeError("sensor on fire")


async def test_handler_exception_is_code_minus_one_and_server_keeps_serving() -> None:
    clara = ClaraServicer(Metrics(), sample=_failing_sample)  # type: ignore[arg-type]
    service = ServicerSet([("nvidia.clara.platform.Clara", clara, clara_pb2_grpc.add_ClaraServicer_to_server)])
    server = ClaretServer([service], "127.0.0.1", 0)
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = clara_pb2_grpc.ClaraStub(channel)
            replies = [r async for r in stub.Utilization(clara_pb2.ClaraUtilizationRequest())]
            assert len(replies) == 1
            assert replies[0].header.code == -1
            assert "sensor on fire" in replies[0].header.messages[0]
            version = await stub.Version(clara_pb2.ClaraVersionRequest())
            assert version.header.code == 0 and version.version.minor == 7
    finally:
        await server.stop(grace=1)


async def test_utilization_watch_streams_until_the_client_leaves(platform: RunningServer) -> None:
    async with platform.channel() as channel:
        stub = clara_pb2_grpc.ClaraStub(channel)
        call = stub.Utilization(clara_pb2.ClaraUtilizationRequest(watch=True))
        replies = []
        async for reply in call:
            replies.append(reply)
            if len(replies) == 2:
                call.cancel()
                break
        assert [r.header.code for r in replies] == [0, 0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_shuts_down_gracefully_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "claret", "serve", "--port", str(port)],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "CLARET_GPUS": ""},
        stderr=subprocess.PIPE,
    )
    wait_for_port(port, process)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr.decode()
    assert b"stopped" in stderr
    assert (tmp_path / ".claret" / "claret.db").exists()  # the default data dir, relative to the cwd


def test_serve_refuses_bad_options_with_a_clear_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "claret", "serve", "--services", "jobs,nonsense"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "choose from pipelines, payloads, jobs" in result.stderr


def test_importing_claret_changes_no_environment_variable() -> None:
    """A library import must not reconfigure its host process; only `claret serve` sets what a server needs."""
    check = (
        "import os; before = dict(os.environ); "
        "import claret, claret.cli, claret.client, claret.records, claret.serve_command; "
        "changed = sorted(set(os.environ.items()) ^ set(before.items())); "
        "assert not changed, changed"
    )
    environment = {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"}
    subprocess.run([sys.executable, "-c", check], env=environment, check=True, capture_output=True)
