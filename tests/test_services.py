"""Pipeline services (issue #19), on both runtimes, through real servers: an operator reads its service at
``$NAME``, jobs share one instance, the service holds its requests in the ledger until Clara.Stop (the
official client's), an unready service faults its operator, the service survives a SIGKILL of the jobs
service without being orphaned, and operators reach their own service and nothing else."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from subprocess import PIPE

import grpc
import pytest

from protos.nvidia.clara.platform import jobs_pb2 as pb
from shared.resources import Resources
from tests.helpers import make_settings, run_official, serve_process, start_in_process
from tests.jobs_flow import DATA, Platform, one_operator, process_alive, run_job
from tests.store import query

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sandboxed services need the jobs service to run as root")

HELLO = "hello from the service"
SANDBOX_SERVER = "python3 -m http.server {port} --bind 127.0.0.1 --directory $(NVIDIA_CLARA_SERVICE_DATA_PATH)"
DOCKER_SERVER = "httpd -f -v -p {port} -h $(NVIDIA_CLARA_SERVICE_DATA_PATH)"
SANDBOX_FETCH = (
    "python3 -c \"import os, urllib.request; print(urllib.request.urlopen('http://' + os.environ['WEB_URI']"
    " + '/hello.txt').read().decode(), end='')\""
)
SERVED = {"sandbox": '"GET /hello.txt HTTP/1.1" 200', "docker": "response:200"}
"""What each service's server logs for a file served."""
DOCKER_FETCH = "wget -q -O - http://$WEB_URI/hello.txt"
SANDBOX_PROBE = (
    'python3 -c "import socket, sys; s = socket.socket(); s.settimeout(2);'
    " print(sys.argv[1], 'reach' if s.connect_ex((sys.argv[1], int(sys.argv[2]))) == 0 else 'no')\""
)
DOCKER_PROBE = 'sh -c \'echo | nc -w 2 "$0" "$1" >/dev/null 2>&1 && echo "$0 reach" || echo "$0 no"\''


@pytest.fixture(params=["sandbox", pytest.param("docker", marks=pytest.mark.docker)])
def runtime(request: pytest.FixtureRequest) -> str:
    """Each runtime in turn (the Docker one with its engine and test image)."""
    if request.param == "docker":
        request.getfixturevalue("docker_engine")
    return str(request.param)


def service_pipeline(
    runtime: str,
    operator_command: str,
    *,
    service_command: str | None = None,
    port: int = 8000,
    service_requests: str = "{cpu: 1, memory: 64}",
    operator_requests: str = "{cpu: 1, memory: 64}",
    name: str = "svc",
) -> str:
    """One operator ``reader`` using service ``web`` (an HTTP server of the service-data folder on ``port``,
    unless ``service_command``), whose address it finds in $WEB_URI."""
    server = (SANDBOX_SERVER if runtime == "sandbox" else DOCKER_SERVER).format(port=port)
    service = service_command or f"echo gpus=$NVIDIA_VISIBLE_DEVICES; exec {server}"
    return f"""api-version: 0.4.0
name: {name}
operators:
- name: reader
  container:
    image: busybox
    command: ["sh", "-c", {json.dumps(operator_command)}]
  requests: {operator_requests}
  output: [{{path: /output}}]
  services:
  - name: web
    container:
      image: busybox
      command: ["sh", "-c", {json.dumps(service)}]
    requests: {service_requests}
    connections:
      http:
      - name: WEB_URI
        port: {port}
"""


def fetch(runtime: str) -> str:
    return SANDBOX_FETCH if runtime == "sandbox" else DOCKER_FETCH


def service_data(tmp_path: Path) -> Path:
    folder = tmp_path / "service-data"
    folder.mkdir(exist_ok=True)
    (folder / "hello.txt").write_text(HELLO)
    return folder


def service_rows(database: str | Path) -> list[tuple[str, str, str]]:
    """(id, runtime id, name) of every service the table knows."""
    return [(str(a), str(b), str(c)) for a, b, c in query(database, "SELECT id, runtime_id, name FROM services")]


def service_running(runtime: str, runtime_id: str) -> bool:
    if runtime == "sandbox":
        return process_alive(runtime_id)
    found = subprocess.run(["docker", "ps", "-q", "--no-trunc", "--filter", f"id={runtime_id}"], capture_output=True)
    return runtime_id.encode() in found.stdout


def remove_services() -> None:
    """The containers of whatever services a test left (a failed one); sandboxed ones go at the next
    server's start, which removes the services of its instance that no row knows."""
    found = subprocess.run(["docker", "ps", "-aq", "--filter", "label=claret.service"], capture_output=True, text=True)
    if found.returncode == 0 and found.stdout.split():
        subprocess.run(["docker", "rm", "-f", *found.stdout.split()], capture_output=True)


@asynccontextmanager
async def platform(tmp_path: Path, runtime: str, **changes: object) -> AsyncIterator[tuple[Platform, Resources]]:
    """Every service in this event loop, with the service-data folder of :func:`service_data`."""
    changes = {"cpus": 8, **changes}  # idle services hold their cpus: more than this machine's 2, to schedule by
    settings = make_settings(tmp_path, runtime=runtime, service_data_dir=service_data(tmp_path), **changes)
    server, resources = await start_in_process(settings)
    try:
        address = f"127.0.0.1:{server.port}"
        async with grpc.aio.insecure_channel(address) as channel:
            clara = Platform(channel, settings.database_target, runtime, address)
            try:
                yield clara, resources
            finally:
                await clara.client.stop_platform()  # no service outlives the test
    finally:
        await server.stop(grace=1)
        await resources.close()


def metric(resources: Resources, name: str, **labels: str) -> float:
    value = resources.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def output_of(clara: Platform, payload: str, name: str = "reader", file: str = "out.txt") -> str:
    return (await clara.download(payload, f"operators/{name}/{file}")).decode()


async def test_jobs_share_a_service_that_holds_its_requests_until_clara_stop(
    tmp_path: Path, runtime: str, official_python: Path
) -> None:
    # 3 cpus: the service holds 2 while it runs, so an operator asking for 2 waits until Clara.Stop.
    async with platform(tmp_path, runtime, cpus=3) as (clara, resources):
        reader = service_pipeline(
            runtime, f"{fetch(runtime)} > /output/out.txt", service_requests="{cpu: 2, memory: 64}"
        )
        for _ in range(2):
            final, payload = await run_job(clara, reader)
            assert final.status == pb.JOB_STATUS_HEALTHY, list(final.messages)
            assert await output_of(clara, payload) == HELLO

        [(service_id, runtime_id, name)] = service_rows(clara.database)  # one instance served both jobs
        assert name == "web" and service_running(runtime, runtime_id)
        served = [line for line in await service_log(clara) if SERVED[runtime] in line]
        assert len(served) == 2, served
        assert metric(resources, "claret_services_running") == 1
        assert metric(resources, "claret_services_started_total", outcome="ready") == 1

        big = await clara.job(
            await clara.pipeline(one_operator("echo ran > /output/out.txt", requests="{cpu: 2, memory: 64}"))
        )
        await clara.start(big.job_id.value)
        await asyncio.sleep(1.0)
        assert (await clara.status(big.job_id.value)).state == pb.JOB_STATE_PENDING  # queued: 2 cpus are held

        await asyncio.to_thread(run_official, official_python, "clara_platform.py", clara.address)
        final = await clara.wait_stopped(big.job_id.value)
        assert final.status == pb.JOB_STATUS_HEALTHY, list(final.messages)
        assert service_rows(clara.database) == []
        assert not service_running(runtime, runtime_id)
        assert metric(resources, "claret_services_running") == 0
        assert any(SERVED[runtime] in line for line in await service_log(clara))  # its log outlives it
        assert service_id


async def service_log(clara: Platform, name: str = "web") -> list[str]:
    return [line async for line in clara.client.read_service_log(name)]


async def test_a_service_holds_its_gpus_and_sees_only_them(tmp_path: Path) -> None:
    async with platform(tmp_path, "sandbox", gpus=("0", "1")) as (clara, _):
        reader = service_pipeline("sandbox", f"{fetch('sandbox')} > /output/out.txt", service_requests="{gpu: 1}")
        final, _ = await run_job(clara, reader)
        assert final.status == pb.JOB_STATUS_HEALTHY, list(final.messages)
        assert "gpus=0" in await service_log(clara)
        both = one_operator("echo $NVIDIA_VISIBLE_DEVICES > /output/out.txt", requests="{gpu: 2}")
        job = await clara.job(await clara.pipeline(both))
        await clara.start(job.job_id.value)
        await asyncio.sleep(1.0)
        assert (await clara.status(job.job_id.value)).state == pb.JOB_STATE_PENDING  # queued: GPU 0 is held
        await clara.client.stop_platform()
        final = await clara.wait_stopped(job.job_id.value)
        assert final.status == pb.JOB_STATUS_HEALTHY
        assert await output_of(clara, job.payload_id.value, "op") == "0,1\n"


async def test_a_service_that_never_listens_faults_its_operator_with_its_log(tmp_path: Path, runtime: str) -> None:
    async with platform(tmp_path, runtime, service_start_timeout=1.0) as (clara, _):
        silent = service_pipeline(runtime, "echo never", service_command="echo warming up; exec sleep 60")
        final, _ = await run_job(clara, silent)
        assert final.status == pb.JOB_STATUS_FAULTED
        message = " ".join(final.messages)
        assert "service 'web' was not ready within 1 s" in message and "port 8000" in message, message
        assert "its log ends: warming up" in message, message
        assert service_rows(clara.database) == []

        failing = service_pipeline(runtime, "echo never", service_command="echo boom >&2; exit 3", name="failing")
        final, _ = await run_job(clara, failing)
        assert final.status == pb.JOB_STATUS_FAULTED
        message = " ".join(final.messages)
        assert "service 'web' exited with code 3 before it was ready; its log ends: boom" in message, message


async def test_an_operator_with_its_service_and_more_than_the_node_holds_is_refused_at_start(tmp_path: Path) -> None:
    async with platform(tmp_path, "sandbox", cpus=4) as (clara, _):
        too_big = service_pipeline("sandbox", "true", service_requests="{cpu: 4}")
        job = await clara.job(await clara.pipeline(too_big))
        reply = await clara.start(job.job_id.value)
        assert reply.header.code == -0x2003, reply.header
        assert "needs 5 CPU cores; the node has 4" in " ".join(reply.header.messages)


async def test_an_idle_service_stops_and_the_next_job_starts_another(tmp_path: Path) -> None:
    async with platform(tmp_path, "sandbox", service_idle_timeout=0.5) as (clara, _):
        reader = service_pipeline("sandbox", f"{fetch('sandbox')} > /output/out.txt")
        await run_job(clara, reader)
        [(first, runtime_id, _)] = service_rows(clara.database)
        await wait_until(lambda: not service_rows(clara.database), "the idle service to stop")
        assert not process_alive(runtime_id)
        final, payload = await run_job(clara, reader)
        assert final.status == pb.JOB_STATUS_HEALTHY and await output_of(clara, payload) == HELLO
        [(second, _, _)] = service_rows(clara.database)
        assert second != first


async def wait_until(check: object, what: str, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"waited {within} s for {what}")


def host_addresses() -> list[str]:
    """The host's IPv4 addresses other than loopback (where something listening on all addresses answers)."""
    found = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3].split("/")[0] for line in found.splitlines() if " lo " not in line]


@contextmanager
def host_listener() -> Iterator[int]:
    """A TCP port open on every host address, accepting connections as long as it is open."""
    with socket.create_server(("0.0.0.0", 0), backlog=64) as server:
        yield server.getsockname()[1]


async def test_operators_reach_their_own_service_and_nothing_else(tmp_path: Path, runtime: str) -> None:
    probe = SANDBOX_PROBE if runtime == "sandbox" else DOCKER_PROBE
    async with platform(tmp_path, runtime) as (clara, _):
        with host_listener() as port:
            # Another service (another identity) listening on 8001: running, in a namespace of its own.
            other = service_pipeline(runtime, "true", port=8001, name="other")
            assert (await run_job(clara, other))[0].status == pb.JOB_STATUS_HEALTHY
            targets = [("127.0.0.1", 8000), ("127.0.0.1", 8001)] + [(a, port) for a in host_addresses()]
            probes = "; ".join(f"{probe} {host} {target_port}" for host, target_port in targets)

            final, payload = await run_job(clara, service_pipeline(runtime, f"({probes}) > /output/out.txt"))
            assert final.status == pb.JOB_STATUS_HEALTHY, list(final.messages)
            seen = (await output_of(clara, payload)).splitlines()
            assert seen[0] == "127.0.0.1 reach", seen  # its own service
            assert [line.split()[1] for line in seen[1:]] == ["no"] * (len(targets) - 1), seen

            final, payload = await run_job(clara, one_operator(f"({probes}) > /output/out.txt"))
            assert final.status == pb.JOB_STATUS_HEALTHY, list(final.messages)
            seen = (await output_of(clara, payload, "op")).splitlines()
            assert [line.split()[1] for line in seen] == ["no"] * len(targets), seen


async def test_a_sigkilled_jobs_service_leaves_no_orphan_service(tmp_path: Path, runtime: str) -> None:
    data = tmp_path / "data"
    folder = str(service_data(tmp_path))
    reader = service_pipeline(runtime, f"{fetch(runtime)} > /output/out.txt")
    database = data / "claret.db"
    try:
        with serve_process(data, CLARET_SERVICE_DATA_DIR=folder, CLARET_RUNTIME=runtime) as (address, process):
            async with connected(address, database, runtime) as clara:
                final, _ = await run_job(clara, reader)
                assert final.status == pb.JOB_STATUS_HEALTHY, list(final.messages)
            [(service_id, runtime_id, _)] = service_rows(database)
            process.send_signal(signal.SIGKILL)
            process.wait()
        assert service_running(runtime, runtime_id)  # services outlive the jobs service, like operators

        with serve_process(data, CLARET_SERVICE_DATA_DIR=folder, CLARET_RUNTIME=runtime) as (
            address,
            process,
        ):  # carried on: the next job uses it
            async with connected(address, database, runtime) as clara:
                final, payload = await run_job(clara, reader)
                assert final.status == pb.JOB_STATUS_HEALTHY, list(final.messages)
                assert await output_of(clara, payload) == HELLO
            assert service_rows(database) == [(service_id, runtime_id, "web")]
            process.send_signal(signal.SIGKILL)
            process.wait()

        query(database, "DELETE FROM services")  # as if it had never been recorded: nothing may keep it
        with serve_process(data, CLARET_SERVICE_DATA_DIR=folder, CLARET_RUNTIME=runtime) as (address, process):
            await wait_until(lambda: not service_running(runtime, runtime_id), "the unknown service to go", 20)
    finally:
        remove_services()


@asynccontextmanager
async def connected(address: str, database: Path, runtime: str) -> AsyncIterator[Platform]:
    async with grpc.aio.insecure_channel(address) as channel:
        yield Platform(channel, database, runtime, address)


STAND_INS = {
    # What answers for Triton here: the pipeline's command ("some command") serves a health endpoint.
    "nvcr.io/nvidia/tritonserver:latest": (
        "RUN mkdir -p /srv/v2/health && echo ready > /srv/v2/health/ready"
        " && printf '#!/bin/sh\\nexec httpd -f -p 8000 -h /srv\\n' > /bin/some && chmod +x /bin/some"
    ),
    # The operator asks its server whether it is ready, as Clara's inference operators do first.
    "null-pipeline/operator-py:0.8.1": (
        'CMD ["sh", "-c", "echo CLARA_TRACE=$CLARA_TRACE; wget -q -O /output/ready'
        ' http://$NVIDIA_CLARA_TRTISURI/v2/health/ready"]'
    ),
}


@pytest.fixture(scope="module")
def stand_in_images(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Local images under the names a real Clara pipeline uses, built from the busybox test image."""
    for name, instruction in STAND_INS.items():
        folder = tmp_path_factory.mktemp("image")
        (folder / "Dockerfile").write_text(f"FROM busybox:latest\n{instruction}\n")
        subprocess.run(["docker", "build", "-q", "-t", name, str(folder)], check=True, capture_output=True)
    yield
    subprocess.run(["docker", "rmi", *STAND_INS], capture_output=True)


@pytest.mark.docker
@pytest.mark.usefixtures("stand_in_images")
async def test_a_real_clara_pipeline_with_a_service_runs_with_stand_in_images(tmp_path: Path) -> None:
    text = (DATA / "clara" / "operator_with_services.yaml").read_text()
    async with platform(tmp_path, "docker") as (clara, _):
        final, payload = await run_job(clara, text)
        assert final.status == pb.JOB_STATUS_HEALTHY, list(final.messages)
        assert await output_of(clara, payload, "null-reader", "ready") == "ready\n"
        assert await clara.logs(final.job_id.value, "null-reader") == ["CLARA_TRACE=2"]
        [(_, _, name)] = service_rows(clara.database)
        assert name == "trtis"


@pytest.mark.parametrize("runtime", ["sandbox", pytest.param("docker", marks=pytest.mark.docker)])
async def test_a_volume_connection_is_a_folder_the_service_and_its_operators_share(
    tmp_path: Path, runtime: str, request: pytest.FixtureRequest
) -> None:
    if runtime == "docker":
        request.getfixturevalue("docker_engine")
    text = """api-version: 0.4.0
name: volume
operators:
- name: reader
  container:
    image: busybox
    command: ["sh", "-c", "echo $SHARED; until [ -f $SHARED/from-service ]; do sleep 0.1; done;
      cat $SHARED/from-service > /output/out.txt; echo hi > $SHARED/from-operator"]
  output: [{path: /output}]
  services:
  - name: keeper
    container:
      image: busybox
      command: ["sh", "-c", "echo kept > $SHARED/from-service; exec sleep 600"]
    connections:
      volume:
      - name: SHARED
        path: /shared
"""
    async with platform(tmp_path, runtime) as (clara, _):
        final, payload = await run_job(clara, text)
        assert final.status == pb.JOB_STATUS_HEALTHY, list(final.messages)
        assert await output_of(clara, payload) == "kept\n"
        assert await clara.logs(final.job_id.value, "reader") == ["/shared"]
        [(service_id, _, _)] = service_rows(clara.database)
        folder = tmp_path / "data" / "service-volumes" / service_id / "SHARED"
        assert (folder / "from-operator").read_text() == "hi\n"
        await clara.client.stop_platform()
        assert not folder.exists()  # the shared folder goes with its service


async def test_the_cli_prints_a_service_log(tmp_path: Path) -> None:
    async with platform(tmp_path, "sandbox") as (clara, _):
        await run_job(clara, service_pipeline("sandbox", f"{fetch('sandbox')} > /output/out.txt"))

        async def cli(*args: str) -> tuple[int, str, str]:
            command = [sys.executable, "-m", "claret", "--host", clara.address, "logs", *args]
            process = await asyncio.create_subprocess_exec(*command, stdout=PIPE, stderr=PIPE)
            out, err = await process.communicate()
            return process.returncode or 0, out.decode(), err.decode()

        code, out, err = await cli("--service", "web")
        assert code == 0, err
        assert out.splitlines() == await service_log(clara)
        assert out.splitlines()[0] == "gpus=void"
        code, _, err = await cli("--service", "../../etc")
        assert code == 1 and "no pipeline service named '../../etc' ran here" in err
        code, _, err = await cli("--service", "web", "--job", "0" * 32)
        assert code == 2 and "give either --job (with --operator) or --service" in err


async def test_an_operator_whose_service_stopped_while_it_waited_waits_again_for_the_service_too(
    tmp_path: Path,
) -> None:
    # 2 cpus: the service holds one, a blocker the other; job 2 (service running: it waits for 1 cpu) is
    # granted when Clara.Stop frees the service's cpu, finds its service gone and waits again, for 2 cpus.
    async with platform(tmp_path, "sandbox", cpus=2) as (clara, resources):
        reader = service_pipeline("sandbox", f"{fetch('sandbox')} > /output/out.txt")
        assert (await run_job(clara, reader))[0].status == pb.JOB_STATUS_HEALTHY
        blocker = await clara.job(await clara.pipeline(one_operator("sleep 2; date +%s.%N > /output/out.txt")))
        await clara.start(blocker.job_id.value)
        await clara.wait_operator(blocker.job_id.value, "op", pb.JOB_OPERATOR_STATUS_RUNNING)
        second = await clara.job(await clara.pipeline(reader))
        await clara.start(second.job_id.value)
        await asyncio.sleep(0.3)
        assert (await clara.status(second.job_id.value)).state == pb.JOB_STATE_PENDING

        await clara.client.stop_platform()
        final = await clara.wait_stopped(second.job_id.value)
        assert final.status == pb.JOB_STATUS_HEALTHY, list(final.messages)
        assert await output_of(clara, second.payload_id.value) == HELLO
        blocker_end = float(await output_of(clara, blocker.payload_id.value, "op"))
        [(started,)] = query(clara.database, "SELECT started FROM operators WHERE job_id = ?", (second.job_id.value,))
        assert float(started) >= blocker_end  # type: ignore[arg-type]
        assert metric(resources, "claret_services_started_total", outcome="ready") == 2
