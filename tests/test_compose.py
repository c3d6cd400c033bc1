"""The docker-compose deployment with the real engine, as a user runs it: the image is built without any
registry (a base made by debootstrap, Claret and its dependencies from wheels built here), the stack comes up
with two jobs replicas, the official client runs its whole combined flow against pipelines, payloads and jobs
on their own ports, the jobs service starts the operators as sibling containers on the host's engine, calls
spread over the replicas inside the compose network, and `down` leaves nothing behind. The `postgresql` and
`metrics` profiles come up too, with their images built from Debian's packages on the same base: the flow
keeps its data in the compose PostgreSQL, and Prometheus scrapes every replica."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from claret.client import PlatformClient
from claret.records import JobState, JobStatus
from services.jobs.runtimes.base import INSTANCE_LABEL, JOB_LABEL, OPERATOR_LABEL, SERVICE_LABEL
from tests.compose_helpers import (
    COMPOSE_FILE,
    PROFILES_FILE,
    claret_image_built,
    compose_environment,
    compose_program,
    console_page,
    run,
    wait_healthy,
)
from tests.helpers import free_port
from tests.test_official_client import check_combined_flow

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]

# Kept between runs, so that Docker's cache of their builds serves the next run (Claret's image is removed).
PROFILE_IMAGES = {"POSTGRES_IMAGE": "claret-postgres:test", "PROMETHEUS_IMAGE": "claret-prometheus:test"}
JOBS_REPLICAS = 2
SCRAPED_WITHIN = 60.0


@dataclass
class Stack:
    compose: list[str]
    env: dict[str, str]
    project: str
    image: str
    instance: str
    data: Path
    pipelines: str
    payloads: str
    jobs: list[str]
    """One address per jobs replica."""
    prometheus: str
    """Host address of the `metrics` profile's Prometheus."""
    console: str
    """Host address of the web console."""
    started: float

    def __call__(self, *args: str, timeout: float = 120) -> str:
        return run(*self.compose, *args, env=self.env, timeout=timeout)


def bring_down(stack: Stack) -> None:
    """`down`; whatever is left by the project or its operators is an error."""
    try:
        stack("down", "--volumes", "--remove-orphans", "--timeout", "10", timeout=180)
    finally:
        operators = run("docker", "ps", "-aq", "--filter", f"label={INSTANCE_LABEL}={stack.instance}").split()
        if operators:
            run("docker", "rm", "-f", *operators)
    project_label = f"label=com.docker.compose.project={stack.project}"
    left = run("docker", "ps", "-a", "--filter", project_label, "--format", "{{.Names}}").split()
    networks = run("docker", "network", "ls", "--filter", project_label, "--format", "{{.Name}}").split()
    volumes = run("docker", "volume", "ls", "--filter", project_label, "--format", "{{.Name}}").split()
    assert (left, networks, volumes, operators) == ([], [], [], []), "left behind by the compose stack"


@pytest.fixture(scope="module")
def claret_image(docker_engine: None) -> Iterator[str]:
    """Claret's image, built as a user builds it without any registry, shared by the module's stacks."""
    with claret_image_built() as image:
        yield image


@contextmanager
def compose_stack(image: str, root: Path, *profiles: str, **variables: str) -> Iterator[Stack]:
    """The stack as a user brings it up (docker-compose.yml and, as docker-compose reads it by default, the
    profiles' file), with these profiles and compose variables, under a project name, instance name, data
    folder and free host ports of its own; healthy, with JOBS_REPLICAS jobs replicas; then brought down."""
    compose = [*compose_program(), "-f", str(COMPOSE_FILE), "-f", str(PROFILES_FILE)]
    project = f"claret-test-{uuid.uuid4().hex[:10]}"
    pipelines_port, payloads_port, prometheus_port, console_port = free_port(), free_port(), free_port(), free_port()
    env = compose_environment(
        image,
        root,
        project,
        **PROFILE_IMAGES,
        CLARET_PIPELINES_PORT=str(pipelines_port),
        CLARET_PAYLOADS_PORT=str(payloads_port),
        CLARET_JOBS_PORT="0",  # a free host port for each replica
        CLARET_POSTGRES_PORT=str(free_port()),
        CLARET_PROMETHEUS_PORT=str(prometheus_port),
        CLARET_CONSOLE_PORT=str(console_port),
        **variables,
    )
    stack = Stack(
        compose=[*compose, "-p", project, *(option for profile in profiles for option in ("--profile", profile))],
        env=env,
        project=project,
        image=image,
        instance=project,
        data=root / "data",
        pipelines=f"127.0.0.1:{pipelines_port}",
        payloads=f"127.0.0.1:{payloads_port}",
        jobs=[],
        prometheus=f"127.0.0.1:{prometheus_port}",
        console=f"127.0.0.1:{console_port}",
        started=time.time(),
    )
    try:
        stack("build", timeout=600)
        stack("up", "-d", "--scale", f"jobs={JOBS_REPLICAS}", timeout=300)
        wait_healthy(
            lambda: stack("ps", "-q").split(),
            expected=3 + JOBS_REPLICAS + len(profiles),  # pipelines, payloads, console; each profile adds one
            logs=lambda: stack("logs", "--no-color", "--tail", "40"),
        )
        for index in range(1, JOBS_REPLICAS + 1):
            published = stack("port", f"--index={index}", "jobs", "30031").strip()
            stack.jobs.append(f"127.0.0.1:{published.rsplit(':', 1)[1]}")
        yield stack
    finally:
        bring_down(stack)


def test_postgresql_and_metrics_profiles(claret_image: str, official_python: Path, tmp_path: Path) -> None:
    """Both profiles in one stack: the official client's flow keeps its data in the compose PostgreSQL (no
    SQLite file), which stops cleanly; Prometheus scrapes every replica and sees Claret's metrics.
    Defined before the tests of the `stack` fixture: pytest keeps this order, so that the two stacks are never
    up at once on CI's two cores."""
    url = "postgresql://claret:claret@postgres:5432/claret"
    with compose_stack(claret_image, tmp_path / "stack", "postgresql", "metrics", CLARET_DATABASE_URL=url) as stack:
        check_combined_flow(official_python, tmp_path, stack.pipelines, stack.jobs[0], stack.payloads)

        psql = ("exec", "-T", "postgres", "psql", "-U", "claret", "-d", "claret", "-At", "-F", " ", "-c")
        rows = stack(*psql, "SELECT state, status FROM jobs ORDER BY state, status").splitlines()
        stopped = JobState.STOPPED.value
        assert rows == [f"{stopped} {JobStatus.HEALTHY.value}", f"{stopped} {JobStatus.CANCELED.value}"], rows
        assert not list(stack.data.glob("*.db")), "a service used SQLite"

        jobs = metrics_targets(stack, "jobs")
        every = jobs | metrics_targets(stack, "pipelines") | metrics_targets(stack, "payloads")
        assert len(jobs) == JOBS_REPLICAS and len(every) == 2 + JOBS_REPLICAS
        # a Claret metric each jobs replica exports from its start: no wait for a scrape after the flow
        capacity = "count by (instance) (claret_cpus_total)"
        wait_scraped(stack, {"up": dict.fromkeys(every, "1"), capacity: dict.fromkeys(jobs, "1")})

        stack("stop", "--timeout", "10", "postgres")
        postgres = stack("ps", "-q", "postgres").strip()
        assert run("docker", "inspect", "-f", "{{.State.ExitCode}}", postgres).strip() == "0"
        assert "database system is shut down" in stack("logs", "--no-color", "--tail", "1", "postgres")


def metrics_targets(stack: Stack, service: str) -> set[str]:
    """The `/metrics` addresses of a service's containers in the compose network, as Prometheus names them."""
    ids = stack("ps", "-q", service).split()
    out = run("docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", *ids)
    return {f"{address}:9464" for address in out.split()}


def wait_scraped(stack: Stack, expected: dict[str, dict[str, str]]) -> None:
    """Until Prometheus answers each query with these values by target (it scrapes every 15 s)."""
    deadline = time.monotonic() + SCRAPED_WITHIN
    while (seen := {query: prometheus_query(stack, query) for query in expected}) != expected:
        if time.monotonic() > deadline:
            logs = stack("logs", "--no-color", "--tail", "20", "prometheus")
            raise AssertionError(f"Prometheus answers {seen}, not {expected}\n{logs}")
        time.sleep(1)


def prometheus_query(stack: Stack, query: str) -> dict[str, str]:
    """An instant query's values by target; empty while Prometheus is still starting."""
    url = f"http://{stack.prometheus}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            results = json.load(response)["data"]["result"]
    except (urllib.error.URLError, ConnectionError):
        return {}
    return {result["metric"]["instance"]: result["value"][1] for result in results}


@pytest.fixture(scope="module")
def stack(claret_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with compose_stack(claret_image, tmp_path_factory.mktemp("compose")) as stack:
        yield stack


def container_events(stack: Stack) -> list[dict[str, str]]:
    """What the host's engine did with containers of this platform instance since the stack started."""
    out = run(
        "docker",
        "events",
        "--since",
        f"{stack.started - 1:.3f}",
        "--until",
        f"{time.time() + 0.5:.3f}",
        "--filter",
        "type=container",
        "--filter",
        f"label={INSTANCE_LABEL}={stack.instance}",
        "--format",
        "{{json .}}",
    )
    events = []
    for line in out.splitlines():
        event = json.loads(line)
        events.append({"action": event["Action"], **event["Actor"]["Attributes"]})
    return events


def test_official_client_flow_through_the_compose_stack(stack: Stack, official_python: Path, tmp_path: Path) -> None:
    check_combined_flow(official_python, tmp_path, stack.pipelines, stack.jobs[0], stack.payloads)

    # the operators ran as containers of the host's engine, beside the stack's, not inside the jobs service
    events = container_events(stack)
    jobs = {event[JOB_LABEL] for event in events}
    assert len(jobs) == 1, events  # the flow's second job was cancelled before it ran
    for operator in ("copier", "shouter"):
        actions = [event["action"] for event in events if event[OPERATOR_LABEL] == operator]
        assert actions[:3] == ["create", "attach", "start"] and "die" in actions and actions[-1] == "destroy", events
        assert {event["image"] for event in events if event[OPERATOR_LABEL] == operator} == {"busybox:latest"}
    assert not any("com.docker.compose.project" in event for event in events)
    # ... writing into the bind-mounted payload tree, at the host paths the services use
    outputs = list(stack.data.glob("payloads/*/operators/shouter/input-2.txt.upper"))
    assert len(outputs) == 1
    assert outputs[0].read_bytes() == (tmp_path / "input-2.txt").read_bytes().upper()
    assert run("docker", "ps", "-aq", "--filter", f"label={INSTANCE_LABEL}={stack.instance}") == ""
    # the console reaches each service at its own address: its jobs page lists the job the flow ran
    (job_id,) = jobs
    assert f"/jobs/{job_id}" in console_page(stack.console, "/jobs")


SERVICE_PIPELINE = """api-version: 0.4.0
name: with-service
operators:
- name: reader
  container:
    image: busybox
    command: ["sh", "-c", "wget -q -O - http://$WEB_URI/passwd | head -1"]
  requests: {cpu: 0, memory: 1}
  services:
  - name: web
    container:
      image: busybox
      command: ["httpd", "-f", "-p", "8000", "-h", "/etc"]
    requests: {cpu: 0, memory: 1}
    connections:
      http: [{name: WEB_URI, port: 8000}]
"""


def test_a_pipeline_service_runs_under_the_compose_stack(stack: Stack) -> None:
    """The jobs container sees the host's processes (pid: host) and may enter a service's network namespace
    (SYS_ADMIN, SYS_PTRACE), so it tells when the service is ready; its operator reads it; Clara.Stop on
    the other replica halts it."""

    async def flow() -> tuple[JobStatus, list[str]]:
        async with PlatformClient(stack.pipelines) as pipelines, PlatformClient(stack.jobs[0]) as jobs:
            pipeline = await pipelines.create_pipeline([("service.yaml", SERVICE_PIPELINE)])
            job = await jobs.create_job(pipeline.pipeline_id, "service")
            await jobs.start_job(job.job_id)
            deadline = time.monotonic() + 60
            while (status := await jobs.job_status(job.job_id)).state is not JobState.STOPPED:
                assert time.monotonic() < deadline, status
                await asyncio.sleep(0.2)
            lines = [line async for line in jobs.read_logs(job.job_id, "reader")]
        async with PlatformClient(stack.jobs[1]) as other:
            await other.stop_platform()  # the other replica halts the service the first one follows
        return status.status, lines

    status, lines = asyncio.run(flow())
    assert (status, lines) == (JobStatus.HEALTHY, ["root:x:0:0:root:/root:/bin/sh"])
    ours = ("--filter", f"label={INSTANCE_LABEL}={stack.instance}", "--filter", f"label={SERVICE_LABEL}")
    deadline = time.monotonic() + 10  # stopped at once; the replica that follows it removes the container
    while run("docker", "ps", "-aq", *ours) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert run("docker", "ps", "-aq", *ours) == ""


ROUND_ROBIN = """
import json, socket, sys, urllib.request
import grpc
from protos.nvidia.clara.platform import jobs_pb2, jobs_pb2_grpc

def listed():
    counts = {}
    for ip in sorted({info[4][0] for info in socket.getaddrinfo("jobs", 9464, proto=socket.IPPROTO_TCP)}):
        text = urllib.request.urlopen(f"http://{ip}:9464/metrics", timeout=5).read().decode()
        counts[ip] = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                         if line.startswith("claret_rpc_requests_total{") and 'method="List"' in line)
    return counts

calls = int(sys.argv[1])
before = listed()
config = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
with grpc.insecure_channel("dns:///jobs:30031", options=[("grpc.service_config", config)]) as channel:
    grpc.channel_ready_future(channel).result(timeout=10)
    stub = jobs_pb2_grpc.JobsStub(channel)
    for _ in range(calls):
        list(stub.List(jobs_pb2.JobsListRequest(), timeout=10))
after = listed()
print(json.dumps({ip: after[ip] - before.get(ip, 0) for ip in after}))
"""


def test_calls_spread_over_jobs_replicas_inside_the_network(stack: Stack) -> None:
    assert len(set(stack.jobs)) == JOBS_REPLICAS  # a host port each

    # a client in the compose network: gRPC's round_robin over the service name's DNS records
    network = f"{stack.project}_default"
    out = run(
        "docker", "run", "--rm", "--network", network, "--entrypoint", "python3", stack.image, "-c", ROUND_ROBIN, "20"
    )
    per_replica = json.loads(out.strip().splitlines()[-1])
    assert len(per_replica) == JOBS_REPLICAS and sum(per_replica.values()) == 20, per_replica
    assert all(count > 0 for count in per_replica.values()), per_replica
