"""The ``swarm`` runtime: each operator a one-shot Docker Swarm service, on the node the queue chose.

The jobs service runs on a swarm manager and talks to its engine. Claret's queue stays the one that decides
(docs/swarm.md): it holds one :class:`~services.jobs.scheduler.Capacity` per swarm node that is ready and
active (its cores, memory and the GPU ids the node declares as ``gpu`` generic resources), kept current by
:meth:`SwarmRuntime.follow_nodes`, and grants an operator a node and GPU ids on it. The operator then runs as
a ``replicated-job`` service (one task, never restarted) pinned to that node (``node.id==``), with its requests
as limits; the granted GPU ids reach it as ``NVIDIA_VISIBLE_DEVICES`` as on every runtime (the NVIDIA runtime,
the nodes' default, exposes those devices). The ledger is the one account of the nodes' resources, as on one
machine: tasks declare no reservations, neither cpu and memory nor GPUs as generic resources, because the
constraint enforcer of Swarm 20.10 rejects a live task whose node changes ("assigned node no longer meets
constraints": it counts completed job tasks against the node, and rejects any task holding a generic
resource that is still available), and every operator's job network changes its node (below).

A task's state is not among the events the Engine API streams, so one loop asks for the tasks of every
followed operator at once (:data:`POLL_S` apart while any runs) and settles each handle; node changes are
events (``type=node``), which wake that loop at once. A task on a node that went down ends its operator as
lost with its node (the job ends EVICTED). Logs are streamed from the manager's ``/services/{id}/logs``
into the log file as they come; after the end whatever the stream had not brought yet is read once more.
Cancel, timeout and a lost node remove the service (Swarm stops its container). Services carry the same
labels as Docker containers, which is how a restart finds them again (:meth:`SwarmRuntime.attach`,
:meth:`SwarmRuntime.remove_orphans`).

Networks: Swarm services cannot use ``none``; a task without a network gets its node's default bridge, which
reaches the host and beyond. So each job's operators share an internal overlay network of the job's own
(``claret-<job id>-<random>``: no gateway, nothing else attached), made with its first operator and removed
once no service of the job is left (the engine refuses to remove a network a service still uses). The
services resolve by DNS round robin, so no virtual IP (IPVS) is needed.

Payloads and logs are bind mounts: every node must see the payload store at the same path (NFS in
production; on one machine that is given).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError

from services.jobs.runtimes.base import (
    INSTANCE_LABEL,
    JOB_LABEL,
    OPERATOR_LABEL,
    Exit,
    Handle,
    NeverStarted,
    OperatorSpec,
    RuntimeFailure,
    WithoutPipelineServices,
    memory_limit_bytes,
)
from services.jobs.runtimes.docker import MIN_CPUS, PathMapping
from services.jobs.runtimes.docker_logs import CappedLog, demultiplex, engine_log_config, error_text
from services.jobs.scheduler import Capacity
from shared.logging import get_logger

log = get_logger(__name__)

__all__ = ["NodeCapacities", "SwarmRuntime", "network_spec", "node_capacity", "service_spec"]

POLL_S = 0.1
"""Seconds between two looks at the followed operators' tasks while any runs."""
IDLE_POLL_S = 2.0
"""Seconds between two looks at the nodes when no operator runs (node events wake it sooner)."""
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_read=None)
GPU_KIND = "gpu"
"""The generic resource kind nodes declare their GPUs as (``dockerd --node-generic-resource gpu=<id>``)."""
MIB = 1024 * 1024
ENDED = frozenset({"complete", "failed", "rejected", "shutdown", "orphaned", "remove"})
"""Task states after which nothing runs."""

NodeCapacities = Mapping[str, Capacity]
"""Node id -> what it has, for every node that takes operators now."""


def node_capacity(node: Mapping[str, Any]) -> Capacity | None:
    """What a node of ``GET /nodes`` offers operators, or None when it takes none (down, drained, paused)."""
    if node.get("Status", {}).get("State") != "ready" or node.get("Spec", {}).get("Availability") != "active":
        return None
    resources = node.get("Description", {}).get("Resources", {})
    gpus = tuple(
        named["Value"]
        for generic in resources.get("GenericResources") or ()
        if (named := generic.get("NamedResourceSpec")) and named.get("Kind") == GPU_KIND
    )
    return Capacity(
        cpus=int(resources.get("NanoCPUs", 0)) // 1_000_000_000,
        memory_mb=int(resources.get("MemoryBytes", 0)) // MIB,
        gpu_ids=gpus,
    )


def service_name(spec: OperatorSpec) -> str:
    """Unique to the job and operator, within Swarm's 63 characters whatever the operator is called."""
    return f"claret-{spec.job_id}-{hashlib.sha256(spec.operator.encode()).hexdigest()[:12]}"


def literal(text: str) -> str:
    """``text`` as Swarm's Go templates (applied to a service's environment, hostname and mounts) render
    it: an operator's variable holding ``{{`` stays what it was, never an action that reads the node."""
    return text.replace("{{", '{{"{{"}}')


def network_spec(job_id: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """The job's own network: an overlay with no gateway (``Internal``), so operators reach each other only.
    Its name is new each time: one being removed (unused) is never confused with the one replacing it."""
    return {
        "Name": f"claret-{job_id}-{secrets.token_hex(4)}",
        "Driver": "overlay",
        "Internal": True,
        "CheckDuplicate": True,
        "Labels": {key: labels[key] for key in (JOB_LABEL, INSTANCE_LABEL) if key in labels},
    }


def service_spec(spec: OperatorSpec, paths: PathMapping, grace: float, network: str | None = None) -> dict[str, Any]:
    """The body of ``POST /services/create`` for one operator: the Docker runtime's limits and identity,
    pinned to the granted node, one task, never restarted. The
    container's hostname is its node's (a template of Swarm's), so an operator's output says where it ran.
    ``network``: the job's network (None: the node's default, for tests that want one)."""
    memory = memory_limit_bytes(spec)
    container: dict[str, Any] = {
        "Image": spec.image,
        "Hostname": "{{.Node.Hostname}}",
        "Env": [literal(f"{key}={value}") for key, value in spec.env.items()],
        "Labels": dict(spec.labels),
        "Mounts": [
            {
                "Type": "bind",
                "Source": literal(paths.to_host(m.source)),
                "Target": literal(m.target),
                "ReadOnly": m.read_only,
            }
            for m in spec.mounts
        ],
        "Init": True,
        "CapabilityDrop": ["ALL"],
        "StopGracePeriod": int(grace * 1_000_000_000),
    }
    if spec.user is not None:
        container["User"] = f"{spec.user[0]}:{spec.user[1]}"
    if spec.command:  # Docker CMD semantics: Args go to the image's entrypoint, if any
        container["Args"] = list(spec.command)
    template: dict[str, Any] = {
        "ContainerSpec": container,
        "Resources": {
            "Limits": {
                "NanoCPUs": max(spec.cpu, MIN_CPUS) * 1_000_000_000,
                "MemoryBytes": memory,
                "Pids": max(spec.pids_limit, 1),
            },
        },
        "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
        "Placement": {"Constraints": [f"node.id=={spec.node}"]} if spec.node else {},
        "LogDriver": {"Name": "json-file", "Options": engine_log_config(spec)["Config"]},
    }
    if network is not None:
        template["Networks"] = [{"Target": network}]
    return {
        "Name": service_name(spec),
        "Labels": dict(spec.labels),
        "TaskTemplate": template,
        "Mode": {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}},
        "EndpointSpec": {"Mode": "dnsrr"},
    }


@dataclass(frozen=True)
class _Task:
    """What the loop learnt of an operator's one task."""

    id: str
    state: str
    node: str
    exit_code: int | None
    error: str


def _task(task: Mapping[str, Any]) -> _Task:
    status = task.get("Status", {})
    code = status.get("ContainerStatus", {}).get("ExitCode")
    return _Task(
        str(task["ID"]), str(status.get("State", "")), str(task.get("NodeID", "")), code, str(status.get("Err", ""))
    )


def exit_of(task: _Task) -> Exit:
    """The operator's exit from its ended task."""
    if task.state == "complete":
        return Exit(0)
    if task.state == "failed" and task.exit_code:
        return Exit(task.exit_code, task.error if "non-zero exit" not in task.error else "")
    reason = f"the swarm ended its task ({task.state}): {task.error or 'no reason given'}"
    # Shut down or orphaned by Swarm (its node drained, or lost): not the operator's fault.
    return Exit(-1, reason, evicted=task.state in ("shutdown", "orphaned", "remove"))


class SwarmHandle:
    """A started operator's service: settled by the runtime's loop, its logs copied as they come."""

    def __init__(self, runtime: SwarmRuntime, service_id: str, spec: OperatorSpec, *, rewrite: bool) -> None:
        self._runtime = runtime
        self._service_id = service_id
        self.ended: asyncio.Future[Exit] = asyncio.get_running_loop().create_future()
        self.task_id = ""
        """Its task, once the loop saw it: one that vanishes after that was removed by someone else."""
        self.ran_to_end = False
        """Whether its task ended by itself (its whole log can be read), not lost or stopped."""
        self._log_file = CappedLog(spec.log_path, spec.max_log_bytes, rewrite=rewrite)
        self._copy = asyncio.create_task(self._follow_logs())

    @property
    def runtime_id(self) -> str:
        return self._service_id

    async def _follow_logs(self) -> None:
        """Copy the service's output as it comes (the stream is the manager's, from whichever node runs it)."""
        with contextlib.suppress(aiohttp.ClientError, DockerError, ConnectionError, OSError):
            response = await self._runtime.logs(self._service_id, follow=True)
            try:
                await demultiplex(response.content, self._log_file)
            finally:
                response.close()

    async def _finish_logs(self) -> str:
        """After the end: stop following and, for a task that ran to its end, copy whatever the live stream
        had not brought (a second read of the whole log, its first ``received`` bytes skipped). What went
        wrong, or ""."""
        self._copy.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._copy
        try:
            if self.ran_to_end:
                response = await self._runtime.logs(self._service_id, follow=False)
                try:
                    self._log_file.skip(self._log_file.received)
                    await demultiplex(response.content, self._log_file)
                finally:
                    response.close()
            return ""
        except (aiohttp.ClientError, DockerError, ConnectionError, OSError) as exc:
            problem = f"the log could not be read to its end from the swarm ({error_text(exc)})"
            with contextlib.suppress(OSError, ValueError):
                self._log_file.note(f"\n[claret: {problem}; output may be missing]\n".encode())
            return problem
        finally:
            with contextlib.suppress(OSError):
                self._log_file.close()

    async def wait(self) -> Exit:
        exit = await asyncio.shield(self.ended)
        problem = await self._finish_logs()
        await self._runtime.remove(self._service_id)
        message = "; ".join(part for part in (exit.message, problem) if part)
        return Exit(exit.code, message, log_truncated=self._log_file.truncated, evicted=exit.evicted)

    async def stop(self, grace: float) -> None:
        """Remove the service: Swarm stops its container (SIGTERM, SIGKILL after the grace it was created
        with). Returns once its task has stopped, so its grant is not released while it still runs."""
        if not self.ended.done():
            self.ended.set_result(Exit(-1, "stopped by the platform"))
        await self._runtime.remove(self._service_id, task_id=self.task_id)


class SwarmRuntime(WithoutPipelineServices):
    """Operators as Swarm services through a manager's Engine API."""

    name = "swarm"
    why = "the swarm runtime does not run pipeline services yet: use the docker or sandbox runtime for them"

    def __init__(self, docker: aiodocker.Docker, paths: PathMapping, instance: str, grace: float) -> None:
        self._docker = docker
        self._paths = paths
        self._instance = instance
        self._grace = grace
        self._handles: dict[str, SwarmHandle] = {}
        self._nodes: dict[str, Capacity] = {}
        self._down: set[str] = set()
        self._listeners: list[Callable[[NodeCapacities], Awaitable[None]]] = []
        self._networks: dict[str, asyncio.Future[str]] = {}
        """Job id -> its network's id, once made (a future: operators starting at once make it once)."""
        self._starting: collections.Counter[str] = collections.Counter()
        """Jobs with an operator between its network and its service: their network is not to be swept."""
        self._next_look = 0.0
        """When the loop next reads the nodes and sweeps unused networks whatever happened (every
        :data:`IDLE_POLL_S`; a node event makes it read the nodes at once)."""
        self._nodes_changed = False
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._events: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls, url: str | None, paths: PathMapping, instance: str, grace: float, within: float = 3.0
    ) -> SwarmRuntime:
        """Connect to a swarm manager's engine; RuntimeFailure when none answers or it manages no swarm."""
        docker = aiodocker.Docker(url=url)
        try:
            info = await asyncio.wait_for(docker.system.info(), within)
        except (DockerError, OSError, TimeoutError, ValueError) as exc:
            await docker.close()
            raise RuntimeFailure(f"no Docker engine answers at {url or 'the default socket'}: {exc}") from exc
        if not info.get("Swarm", {}).get("ControlAvailable"):
            await docker.close()
            raise RuntimeFailure(
                "the swarm runtime needs a swarm manager's engine (`docker swarm init`, or run the jobs "
                f"service on a manager node); {url or 'the default socket'} is not one"
            )
        return cls(docker, paths, instance, grace)

    # --- nodes -------------------------------------------------------------------------------------------

    async def nodes(self) -> NodeCapacities:
        """Each node that takes operators now, by id; starts following the swarm (tasks and nodes)."""
        await self._refresh_nodes()
        if self._loop is None:
            self._loop = asyncio.create_task(self._run())
            self._events = asyncio.create_task(self._node_events())
        return dict(self._nodes)

    def follow_nodes(self, changed: Callable[[NodeCapacities], Awaitable[None]]) -> None:
        """Call ``changed`` with the nodes each time a node joins, leaves, drains or changes."""
        self._listeners.append(changed)

    async def _refresh_nodes(self) -> None:
        nodes = await self._docker._query_json("nodes")
        capacities = {str(node["ID"]): capacity for node in nodes if (capacity := node_capacity(node)) is not None}
        self._down = {str(node["ID"]) for node in nodes if node.get("Status", {}).get("State") != "ready"}
        if capacities != self._nodes:
            self._nodes = capacities
            log.info("swarm nodes", nodes={node: len(c.gpu_ids) for node, c in capacities.items()})
            for changed in self._listeners:
                await changed(dict(capacities))

    async def _node_events(self) -> None:
        """Wake the loop when a node changes (joins, leaves, is drained, goes down)."""
        while True:
            try:
                response = await self._docker._do_query(
                    "events",
                    "GET",
                    params={"filters": json.dumps({"type": ["node"]})},
                    timeout=STREAM_TIMEOUT,
                    read_until_eof=True,
                )
                try:
                    async for _ in response.content:
                        self._nodes_changed = True
                        self._wake.set()
                finally:
                    response.close()
            except (aiohttp.ClientError, DockerError, OSError) as exc:
                log.warning("swarm node events broke; following again", error=error_text(exc))
            await asyncio.sleep(1)

    async def _run(self) -> None:
        """The one loop that settles handles and keeps the nodes current: the tasks every :data:`POLL_S` while
        operators run, the nodes when an event says they changed and, as events can be missed, with the
        network sweep every :data:`IDLE_POLL_S`."""
        while True:
            try:
                looking = time.monotonic() >= self._next_look
                if looking or self._nodes_changed:
                    self._nodes_changed = False
                    await self._refresh_nodes()
                if self._handles:
                    await self._settle()
                if looking:
                    self._next_look = time.monotonic() + IDLE_POLL_S
                    await self._remove_unused_networks()
            except (aiohttp.ClientError, DockerError, OSError, TimeoutError) as exc:
                log.warning("cannot read the swarm's state", error=error_text(exc))
            except Exception:  # an answer of a shape not foreseen: the loop must outlive it, or no job ends
                log.exception("cannot make sense of the swarm's state")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S if self._handles else IDLE_POLL_S)

    async def _settle(self) -> None:
        """End the handles whose task ended, or whose node is down or gone."""
        by_service = {str(task["ServiceID"]): _task(task) for task in await self._tasks(list(self._handles))}
        for service_id, handle in list(self._handles.items()):
            task = by_service.get(service_id)
            if task is None:
                if not handle.task_id:
                    continue  # the orchestrator has not made its task yet
                ended = Exit(-1, "its swarm service was removed by someone else")
            elif task.state in ENDED:
                handle.ran_to_end = task.state in ("complete", "failed")
                ended = exit_of(task)
            elif task.node in self._down:
                ended = Exit(-1, f"lost with its node {task.node}, which went down", evicted=True)
            else:
                handle.task_id = task.id
                continue
            del self._handles[service_id]
            if not handle.ended.done():
                handle.ended.set_result(ended)

    async def _tasks(self, services: list[str]) -> list[Mapping[str, Any]]:
        """The tasks of these services, in one request; the engine refuses the request whole (404) when one
        of them is gone, and then each is asked alone."""
        try:
            return await self._tasks_of(services)
        except DockerError as exc:
            if exc.status != 404 or len(services) == 1:
                raise
        found: list[Mapping[str, Any]] = []
        for service in services:
            with contextlib.suppress(DockerError):
                found += await self._tasks_of([service])
        return found

    async def _tasks_of(self, services: list[str]) -> list[Mapping[str, Any]]:
        tasks: list[Mapping[str, Any]] = await self._docker._query_json(
            "tasks", params={"filters": json.dumps({"service": services})}
        )
        return tasks

    # --- operators ---------------------------------------------------------------------------------------

    async def start(self, spec: OperatorSpec) -> Handle:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._starting[spec.job_id] += 1
        try:
            network = None if spec.network else await self._network(spec)
            body = service_spec(spec, self._paths, self._grace, network)
            try:
                created = await self._docker._query_json("services/create", method="POST", data=json.dumps(body))
            except DockerError as exc:
                if exc.status != 409:
                    raise RuntimeFailure(f"the swarm refused the operator's service: {exc.message}") from exc
                await self.remove(service_name(spec))  # a leftover of an earlier attempt
                created = await self._create_again(body)
        finally:
            self._starting[spec.job_id] -= 1
            if not self._starting[spec.job_id]:
                del self._starting[spec.job_id]
        return self._follow(str(created["ID"]), spec, rewrite=False)

    async def _network(self, spec: OperatorSpec) -> str:
        """The id of the job's network, made by the first of its operators to start."""
        made = self._networks.get(spec.job_id)
        if made is None:
            made = self._networks[spec.job_id] = asyncio.get_running_loop().create_future()
            try:
                made.set_result(await self._make_network(spec))
            except BaseException as exc:
                del self._networks[spec.job_id]
                made.set_exception(exc)
                made.exception()  # retrieved: those waiting on it raise it themselves
                raise
        return await asyncio.shield(made)

    async def _make_network(self, spec: OperatorSpec) -> str:
        try:
            body = json.dumps(network_spec(spec.job_id, spec.labels))
            created: Mapping[str, Any] = await self._docker._query_json("networks/create", method="POST", data=body)
        except DockerError as exc:
            raise RuntimeFailure(f"the swarm refused the job's network: {exc.message}") from exc
        return str(created["Id"])

    async def _remove_unused_networks(self) -> None:
        """Remove this instance's job networks that no service of the job uses any more (a network still
        attached to a task that is going away is refused now and removed at a later round)."""
        filters = json.dumps({"label": [f"{INSTANCE_LABEL}={self._instance}", JOB_LABEL]})
        networks = await self._docker._query_json("networks", params={"filters": filters})
        if not networks:
            return
        services = await self._docker._query_json("services", params={"filters": filters})
        in_use = {(service.get("Spec", {}).get("Labels") or {}).get(JOB_LABEL) for service in services}
        for network in networks:
            job_id = str((network.get("Labels") or {}).get(JOB_LABEL))
            if job_id in in_use or job_id in self._starting:
                continue
            made = self._networks.get(job_id)
            if made is not None and made.done() and not made.exception() and made.result() == network["Id"]:
                del self._networks[job_id]  # decided with no await since the check: a later start makes another
            with contextlib.suppress(DockerError):
                async with self._docker._query(f"networks/{network['Id']}", method="DELETE"):
                    pass

    async def _create_again(self, body: dict[str, Any]) -> Mapping[str, Any]:
        try:
            created: Mapping[str, Any] = await self._docker._query_json(
                "services/create", method="POST", data=json.dumps(body)
            )
        except DockerError as exc:
            raise RuntimeFailure(f"the swarm refused the operator's service: {exc.message}") from exc
        return created

    def _follow(self, service_id: str, spec: OperatorSpec, *, rewrite: bool) -> SwarmHandle:
        handle = SwarmHandle(self, service_id, spec, rewrite=rewrite)
        self._handles[service_id] = handle
        self._wake.set()
        return handle

    async def logs(self, service_id: str, *, follow: bool) -> aiohttp.ClientResponse:
        return await self._docker._do_query(
            f"services/{service_id}/logs",
            "GET",
            params={"follow": int(follow), "stdout": 1, "stderr": 1},
            timeout=STREAM_TIMEOUT,
            read_until_eof=True,
        )

    async def remove(self, service: str, *, task_id: str = "") -> None:
        """Remove a service (by id or name); given its task, return once that task stopped (at most the
        grace the service was created with and ten seconds more)."""
        self._handles.pop(service, None)
        with contextlib.suppress(DockerError):
            async with self._docker._query(f"services/{service}", method="DELETE"):
                pass
        for _ in range(int((self._grace + 10) / POLL_S) if task_id else 0):
            try:
                task = _task(await self._docker._query_json(f"tasks/{task_id}"))
            except DockerError:
                return  # reaped: long gone
            if task.state in ENDED:
                return
            await asyncio.sleep(POLL_S)

    async def attach(self, spec: OperatorSpec, runtime_id: str | None) -> Handle | None:
        """The service of an operator started before a restart (by id, else by its unique name); its log
        file is rewritten from the swarm's copy, then followed."""
        try:
            service = await self._docker._query_json(f"services/{runtime_id or service_name(spec)}")
        except DockerError as exc:
            if runtime_id is None and exc.status == 404:
                raise NeverStarted(f"no swarm service named {service_name(spec)}") from exc
            return None
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        return self._follow(str(service["ID"]), spec, rewrite=True)

    async def remove_orphans(self, running: Callable[[], Awaitable[set[tuple[str, str]]]]) -> list[str]:
        """Remove this instance's operator services whose operator is not running (listed before ``running``
        is read, so one too new to be recorded is never taken for an orphan)."""
        filters = json.dumps({"label": [f"{INSTANCE_LABEL}={self._instance}"]})
        services = await self._docker._query_json("services", params={"filters": filters})
        recorded = await running()
        removed = []
        for service in services:
            labels = service.get("Spec", {}).get("Labels") or {}
            if (labels.get(JOB_LABEL), labels.get(OPERATOR_LABEL)) not in recorded:
                await self.remove(str(service["ID"]))
                removed.append(str(service["ID"]))
        return removed

    async def problem(self) -> str | None:
        try:
            info = await asyncio.wait_for(self._docker.system.info(), 2)
        except (DockerError, OSError, TimeoutError, ValueError) as exc:
            return f"the swarm manager's engine does not answer: {exc or type(exc).__name__}"
        if not info.get("Swarm", {}).get("ControlAvailable"):
            return "the Docker engine is no longer a swarm manager"
        return None

    async def close(self) -> None:
        for task in (self._loop, self._events):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with contextlib.suppress(aiohttp.ClientError, DockerError, OSError):  # the next start sweeps what is left
            await self._remove_unused_networks()
        await self._docker.close()
