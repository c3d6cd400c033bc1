"""Metrics after a real job, and readiness following the runtime's engine."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from protos.nvidia.clara.platform import common_pb2
from protos.nvidia.clara.platform import jobs_pb2 as pb
from tests.helpers import free_port, make_settings, serve_process, start_in_process
from tests.jobs_flow import DATA, Platform
from tests.store import target

BOTH_STORES = True  # every test runs on SQLite and on PostgreSQL (tests/conftest.py)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_move_by_the_right_amounts_after_a_job(tmp_path: Path) -> None:
    server, resources = await start_in_process(make_settings(tmp_path, gpus=("0", "1")))
    metrics_port = resources.metrics.serve("127.0.0.1", 0)  # this server's own registry
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            clara = Platform(channel, resources.settings.database_target)
            before = await asyncio.to_thread(scrape, metrics_port)  # the collector reads through this loop
            job = await clara.job(await clara.pipeline((DATA / "two_operators.yaml").read_text()))
            await clara.upload(job.payload_id.value, "a.txt", b"x" * 1000)
            await clara.start(job.job_id.value)
            await clara.wait_stopped(job.job_id.value)
            await clara.download(job.payload_id.value, "/operators/copier/a.txt")
            after = await asyncio.to_thread(scrape, metrics_port)  # the collector reads through this loop
    finally:
        await server.stop(grace=1)
        await resources.close()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("claret_rpc_requests_total", service="Jobs", method="Start", code="0") == 1
    assert delta("claret_rpc_requests_total", service="Payloads", method="Upload", code="0") == 1
    assert delta("claret_rpc_duration_seconds_count", service="Jobs", method="Create") == 1
    assert delta("claret_operators_finished_total", outcome="completed") == 2
    assert delta("claret_queue_wait_seconds_count", priority="normal") == 2
    assert delta("claret_runtime_start_seconds_count", runtime="sandbox") == 2
    assert delta("claret_payload_bytes_total", direction="uploaded") == 1000
    assert delta("claret_payload_bytes_total", direction="downloaded") == 1000
    assert delta("claret_db_transaction_seconds_count", kind="write") >= 5
    assert value(after, "claret_jobs", state="stopped", status="healthy") == 1
    node = next(dict(labels)["node"] for name, labels in after if name == "claret_gpus_total")
    assert value(after, "claret_gpus_total", node=node) == 2
    assert value(after, "claret_gpus_granted", node=node) == 0


class EngineProxy:
    """A unix socket in front of the Docker engine's, which the test can take down and bring back."""

    def __init__(self, path: Path, engine: str = "/var/run/docker.sock") -> None:
        self.path, self._engine = path, engine
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_unix_server(self._relay, path=str(self.path))

    async def down(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        self.path.unlink(missing_ok=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        engine_reader, engine_writer = await asyncio.open_unix_connection(self._engine)
        self._writers.update((writer, engine_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, engine_writer), pipe(engine_reader, writer))


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
async def test_health_follows_the_docker_engine(tmp_path: Path) -> None:
    proxy = EngineProxy(tmp_path / "docker.sock")
    await proxy.up()
    settings = make_settings(tmp_path, runtime="docker", docker_url=f"unix://{proxy.path}", readiness_interval=0.2)
    server, resources = await start_in_process(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)

            async def status(service: str) -> int:
                reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
                return int(reply.status)

            async def becomes(service: str, wanted: int) -> None:
                for _ in range(100):
                    if await status(service) == wanted:
                        return
                    await asyncio.sleep(0.1)
                raise AssertionError(f"{service or 'the server'} never became {wanted}")

            serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
            assert await status("nvidia.clara.platform.Jobs") == serving
            await proxy.down()
            await becomes("nvidia.clara.platform.Jobs", not_serving)
            await becomes("", not_serving)
            assert await status("nvidia.clara.platform.Pipelines") == serving  # it needs no engine
            await proxy.up()
            await becomes("nvidia.clara.platform.Jobs", serving)
            await becomes("", serving)
    finally:
        await server.stop(grace=1)
        await resources.close()
        with contextlib.suppress(AssertionError):
            await proxy.down()


def test_serve_exposes_metrics_on_the_configured_port(tmp_path: Path) -> None:
    metrics_port = free_port()
    with serve_process(tmp_path / "data", "--runtime", "sandbox", "--metrics-port", str(metrics_port)):
        samples = scrape(metrics_port)
        assert any(name == "claret_gpus_total" for name, _ in samples)


async def test_json_logs_tell_each_rpc_and_one_jobs_story(tmp_path: Path) -> None:
    log_file = tmp_path / "server.log"
    args = ("--runtime", "sandbox", "--log-format", "json", "--log-level", "debug")
    with open(log_file, "w") as sink, serve_process(tmp_path / "data", *args, stderr=sink) as (address, _):
        async with grpc.aio.insecure_channel(address) as channel:
            clara = Platform(channel, target(tmp_path / "data"))
            job = await clara.job(await clara.pipeline((DATA / "two_operators.yaml").read_text()))
            await clara.start(job.job_id.value)
            await clara.wait_stopped(job.job_id.value)
            missing = await clara.jobs.Status(pb.JobsStatusRequest(job_id=common_pb2.Identifier(value="0" * 32)))
            assert missing.header.code < 0
    events = [json.loads(line) for line in log_file.read_text().splitlines() if line.startswith("{")]
    rpcs = [e for e in events if e.get("event") == "rpc"]
    start = next(e for e in rpcs if e["rpc"] == "Jobs.Start")
    assert start["code"] == 0 and start["peer"].startswith("ipv4:127.0.0.1") and start["ms"] >= 0
    assert len({e["request_id"] for e in rpcs}) == len(rpcs)  # one line per RPC, each its own id
    refused = next(e for e in rpcs if e["code"] < 0)
    assert refused["level"] == "info" and refused["rpc"] == "Jobs.Status" and "no job" in refused["messages"][0]
    story = [e for e in events if e.get("job_id") == job.job_id.value]
    assert {(e["event"], e.get("operator")) for e in story} >= {
        ("operator started", "copier"),
        ("operator ended", "copier"),
        ("operator started", "shouter"),
        ("operator ended", "shouter"),
        ("job ended", None),
    }
    assert all(e.get("runtime_id") for e in story if e["event"].startswith("operator "))
    assert all("request_id" not in e for e in story if e["event"] == "operator ended")  # not the Start RPC's
