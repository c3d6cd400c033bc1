"""The ``docker`` runtime: one container per operator through the Docker Engine API (aiodocker).

Inputs are bind-mounted read-only and outputs read-write at the declared paths. Every container gets
limits, whatever the requests say: memory (at least :data:`.base.MIN_MEMORY_MB`, no swap beyond it), cpus (at
least one) and processes (``pids_limit``); granted GPUs become ``DeviceRequests`` with explicit
``DeviceIDs``. Containers run as the spec's uid:gid (files they write are that user's, never root's),
with an init process (so a stop signal reaches a shell that ignores signals as PID 1), every capability
dropped, no new privileges, no network unless asked, and labels that find them again after a restart.

Logs: the container's output is read live, as raw multiplexed bytes, from an ``/attach`` stream opened
before the container starts (see :class:`.docker_logs.LogCopy` for why attach and not ``/logs?follow``), demultiplexed
into the operator's log file up to ``max_log_bytes`` (then :func:`truncation_marker`, and the rest is
drained and dropped). Completion is the container's exit *and* the end of that copy: nothing waits on a
clock that could drop output. The container is removed once both are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
from aiodocker.containers import DockerContainer
from aiodocker.exceptions import DockerError

from services.jobs.runtimes import netns
from services.jobs.runtimes.base import (
    INSTANCE_LABEL,
    JOB_LABEL,
    OPERATOR_LABEL,
    SERVICE_LABEL,
    Exit,
    Handle,
    NeverStarted,
    OperatorSpec,
    RuntimeFailure,
    ServiceNetwork,
    joined_network,
    memory_limit_bytes,
)
from services.jobs.runtimes.docker_logs import CappedLog, LogCopy, engine_log_config, error_text, open_stream
from shared.logging import get_logger

log = get_logger(__name__)


CREATE_ATTEMPTS = 20
"""How often a create that meets a leftover of the same name is tried (0.1 s apart)."""
MIN_CPUS = 1
"""The smallest cpu limit, in cores (a request of 0 included)."""
OUT_OF_MEMORY = "killed: out of memory (the operator's memory request is its limit)"


class PathMapping:
    """Bind mounts must name host paths: when this service runs in a container and talks to the host's
    engine, its view of the payload tree (``local``) sits at another path on the host (``host``)."""

    def __init__(self, local: Path, host: Path | None) -> None:
        self._local = local.resolve()
        self._host = host

    def to_host(self, path: Path) -> str:
        resolved = path.resolve()
        if self._host is None or not resolved.is_relative_to(self._local):
            return str(resolved)
        return str(self._host / resolved.relative_to(self._local))


def container_config(spec: OperatorSpec, paths: PathMapping) -> dict[str, Any]:
    """The body of ``POST /containers/create`` for one operator."""
    memory = memory_limit_bytes(spec)
    host_config: dict[str, Any] = {
        "Binds": [f"{paths.to_host(m.source)}:{m.target}:{'ro' if m.read_only else 'rw'}" for m in spec.mounts],
        "Init": True,
        # An operator that uses a service shares its service's network namespace; others have none.
        "NetworkMode": network_mode(spec),
        "SecurityOpt": ["no-new-privileges"],
        "CapDrop": ["ALL"],  # operators read and write files; they need no privilege beyond their own files
        # Always limited, whatever the request (0 opted out once): memory with no swap beyond it, cpus,
        # and processes (a fork bomb stops at the limit instead of exhausting the host's pids).
        "Memory": memory,
        "MemorySwap": memory,
        "NanoCpus": max(spec.cpu, MIN_CPUS) * 1_000_000_000,
        "PidsLimit": max(spec.pids_limit, 1),  # the engine reads 0 or less as no limit
        "LogConfig": engine_log_config(spec),
    }
    if spec.gpu_ids:
        host_config["DeviceRequests"] = [
            {"Driver": "nvidia", "DeviceIDs": list(spec.gpu_ids), "Capabilities": [["gpu"]]}
        ]
    config: dict[str, Any] = {
        "Image": spec.image,
        "Env": [f"{key}={value}" for key, value in spec.env.items()],
        "Labels": dict(spec.labels),
        "HostConfig": host_config,
        # No TTY: the engine keeps stdout and stderr apart and serves them as a multiplexed stream of
        # frames with 8-byte headers (LogCopy reads it raw); no stdin.
        "Tty": False,
        "OpenStdin": False,
        "AttachStdin": False,
        "AttachStdout": True,
        "AttachStderr": True,
    }
    if spec.user is not None:  # numeric: the image need not know the user; what it writes is that uid's
        config["User"] = f"{spec.user[0]}:{spec.user[1]}"
    if spec.command:  # Docker CMD semantics: the image's entrypoint, if any, receives these as arguments
        config["Cmd"] = list(spec.command)
    return config


def network_mode(spec: OperatorSpec) -> str:
    service = joined_network(spec)
    if service is not None:
        return f"container:{service}"
    return "bridge" if spec.network else "none"


def namespace_holder(state: dict[str, Any]) -> int | None:
    """The pid of a running container's first process, when this process can see it (in the host's pids)."""
    pid = int(state.get("Pid") or 0)
    return pid if pid and os.path.exists(netns.namespace_path(pid)) else None


def container_name(spec: OperatorSpec) -> str:
    return f"claret-{spec.job_id}-{spec.operator}"


class DockerHandle:
    """A running container; its output is copied into the log file until its streams end."""

    def __init__(self, container: DockerContainer, logs: LogCopy) -> None:
        self._container = container
        self._logs = logs

    @property
    def runtime_id(self) -> str:
        return str(self._container.id)

    async def wait(self) -> Exit:
        try:
            result = await self._container.wait()
        except (DockerError, aiohttp.ClientError, TimeoutError) as exc:
            with contextlib.suppress(DockerError, aiohttp.ClientError):
                await self._container.delete(force=True)  # it must not keep resources that are given back
            self._logs.abandon()
            return Exit(-1, f"lost the container: {getattr(exc, 'message', exc)}")
        copy_problem = await self._logs.finish()  # the engine ends the stream once the output is drained
        state = await self._inspect_state()
        with contextlib.suppress(DockerError):
            await self._container.delete(force=True)
        truncated = self._logs.truncated
        if (error := (result.get("Error") or {}).get("Message")) or "StatusCode" not in result:
            return Exit(-1, f"lost the container: {error or result}", log_truncated=truncated)
        code = int(result["StatusCode"])
        messages = [OUT_OF_MEMORY] if state.get("OOMKilled") else []
        messages += [copy_problem] if copy_problem else []
        return Exit(code, "; ".join(messages), log_truncated=truncated)

    async def _inspect_state(self) -> dict[str, Any]:
        try:
            info = await self._container.show()
        except DockerError:
            return {}
        state: dict[str, Any] = info.get("State", {})
        return state

    async def stop(self, grace: float) -> None:
        """Docker sends the stop signal, then SIGKILL after ``grace`` seconds."""
        with contextlib.suppress(DockerError):
            await self._container.stop(t=max(1, round(grace)))


class DockerServiceHandle(DockerHandle):
    """A service's container; operators join its network namespace (``NetworkMode: container:<id>``)."""

    def __init__(self, container: DockerContainer, logs: LogCopy, network: ServiceNetwork) -> None:
        super().__init__(container, logs)
        self._network = network

    @property
    def network(self) -> ServiceNetwork:
        return self._network


class DockerRuntime:
    name = "docker"

    def __init__(self, docker: aiodocker.Docker, paths: PathMapping, instance: str) -> None:
        self._docker = docker
        self._paths = paths
        self._instance = instance

    @classmethod
    async def connect(cls, url: str | None, paths: PathMapping, instance: str, within: float = 3.0) -> DockerRuntime:
        """Connect and check that the engine answers; RuntimeFailure when it does not."""
        docker = aiodocker.Docker(url=url)
        try:
            await asyncio.wait_for(docker.version(), within)
        except (DockerError, OSError, TimeoutError, ValueError) as exc:
            await docker.close()
            raise RuntimeFailure(f"no Docker engine answers at {url or 'the default socket'}: {exc}") from exc
        return cls(docker, paths, instance)

    async def start(self, spec: OperatorSpec) -> Handle:
        container, logs = await self._launch(spec, container_config(spec, self._paths))
        return DockerHandle(container, logs)

    async def start_service(self, spec: OperatorSpec) -> DockerServiceHandle:
        """The service's container with no network but its loopback, which its operators share."""
        container, logs = await self._launch(spec, container_config(spec, self._paths))
        handle = DockerServiceHandle(container, logs, ServiceNetwork(container.id, netns.LOOPBACK))
        if not await self._sees_processes(container.id):
            await handle.stop(0)
            await handle.wait()
            raise RuntimeFailure(
                "the jobs service cannot see the service container's processes, so it cannot tell when the "
                "service is ready: run it in the host's process namespace (compose: pid: host)"
            )
        return handle

    async def attach_service(
        self, spec: OperatorSpec, runtime_id: str, network: ServiceNetwork
    ) -> DockerServiceHandle | None:
        handle = await self.attach(spec, runtime_id)
        if not isinstance(handle, DockerHandle):
            return None
        return DockerServiceHandle(handle._container, handle._logs, network)

    async def stop_service(self, spec: OperatorSpec, runtime_id: str, grace: float) -> None:
        """The engine's stop (no log copy of our own: the process that follows the service copies it)."""
        with contextlib.suppress(DockerError):
            await self._docker.containers.container(runtime_id).stop(t=max(1, round(grace)))

    async def accepts(self, network: ServiceNetwork, port: int) -> bool:
        """A TCP connection made inside the service container's network namespace."""
        pid = namespace_holder(await self._state(network.ref))
        return pid is not None and await netns.accepts(pid, port)

    async def request(self, network: ServiceNetwork, port: int, method: str, path: str) -> tuple[int, bytes]:
        pid = namespace_holder(await self._state(network.ref))
        if pid is None:
            raise ConnectionRefusedError(f"the service's container {network.ref} does not run")
        return await netns.request(pid, port, method, path)

    async def _sees_processes(self, container_id: str) -> bool:
        """Whether this process sees the running container's processes (False when it runs in a pid namespace
        of its own); a container that ended (or is ending: asked again a moment later) does not tell."""
        for _ in range(2):
            state = await self._state(container_id)
            if not state.get("Running") or namespace_holder(state) is not None:
                return True
            await asyncio.sleep(0.1)
        return False

    async def _state(self, container_id: str) -> dict[str, Any]:
        try:
            state: dict[str, Any] = (await (await self._docker.containers.get(container_id)).show())["State"]
        except DockerError:
            return {}
        return state

    async def remove_orphan_services(self, known: Callable[[], Awaitable[set[str]]]) -> list[str]:
        removed = []
        filters = json.dumps({"label": [f"{INSTANCE_LABEL}={self._instance}", SERVICE_LABEL]})
        containers = await self._docker.containers.list(all=True, filters=filters)
        recorded = await known()
        for container in containers:
            service_id = str((container["Labels"] or {}).get(SERVICE_LABEL))
            if service_id not in recorded:
                with contextlib.suppress(DockerError):
                    await container.delete(force=True)
                    removed.append(service_id)
        return removed

    async def _launch(self, spec: OperatorSpec, config: dict[str, Any]) -> tuple[DockerContainer, LogCopy]:
        """Create and start a container, its output copied into the log file from its first byte."""
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = CappedLog(spec.log_path, spec.max_log_bytes, rewrite=False)
        try:
            container = await self._create(spec, config)
        except BaseException:
            log_file.close()
            raise
        try:
            stream = await open_stream(container, restarted=False)  # before the start: from its first byte
        except DockerError as exc:
            log_file.close()
            with contextlib.suppress(DockerError):
                await container.delete(force=True)
            raise RuntimeFailure(f"the Docker engine could not attach to the container: {exc.message}") from exc
        logs = LogCopy(container, log_file, stream)
        try:
            await container.start()
        except (DockerError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            logs.abandon()
            with contextlib.suppress(DockerError, aiohttp.ClientError, OSError):
                await container.delete(force=True)
            raise RuntimeFailure(f"the Docker engine could not start the container: {error_text(exc)}") from exc
        return container, logs

    async def _create(self, spec: OperatorSpec, config: dict[str, Any]) -> DockerContainer:
        """Create the operator's container. Its name is unique to this job and operator, so one that is
        already there is a leftover of an earlier attempt (a create still in flight when the service died,
        which may hold the name before the container can be seen): remove it and try again, for a while."""
        for attempt in range(CREATE_ATTEMPTS):
            try:
                return await self._docker.containers.create(config, name=container_name(spec))
            except DockerError as exc:
                if exc.status == 404:
                    raise RuntimeFailure(f"image {spec.image!r} is not on this Docker engine: {exc.message}") from exc
                if exc.status != 409 or attempt == CREATE_ATTEMPTS - 1:
                    raise RuntimeFailure(f"the Docker engine refused to create the container: {exc.message}") from exc
            log.warning("removing a leftover container", name=container_name(spec), attempt=attempt)
            with contextlib.suppress(DockerError):
                await (await self._docker.containers.get(container_name(spec))).delete(force=True)
            await asyncio.sleep(0.1)
        raise AssertionError("unreachable")

    async def attach(self, spec: OperatorSpec, runtime_id: str | None) -> Handle | None:
        """The container of an operator started before a restart (by id, else by its unique name); its
        log file is rewritten from the engine's copy (see :func:`engine_log_config`), which it then
        follows to the end, under the same cap. A container that was created but never
        started is removed (its GPU grant may have changed) and reported as :class:`NeverStarted`."""
        try:
            container = await self._docker.containers.get(runtime_id or container_name(spec))
            state = (await container.show())["State"]["Status"]
        except DockerError as exc:
            if runtime_id is None and exc.status == 404:
                raise NeverStarted(f"no container named {container_name(spec)}") from exc
            return None
        if state == "created":
            with contextlib.suppress(DockerError):
                await container.delete(force=True)
            raise NeverStarted(f"container {container.id} was created but never started")
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        return DockerHandle(container, LogCopy(container, CappedLog(spec.log_path, spec.max_log_bytes, rewrite=True)))

    async def problem(self) -> str | None:
        try:
            await asyncio.wait_for(self._docker.version(), 2)
        except (DockerError, OSError, TimeoutError, ValueError) as exc:
            return f"the Docker engine does not answer: {exc or type(exc).__name__}"
        return None

    async def remove_orphans(self, running: Callable[[], Awaitable[set[tuple[str, str]]]]) -> list[str]:
        """Remove containers of this instance whose operator is not running (e.g. left by a crash). The
        containers are listed before ``running`` is read: another replica records an operator as running
        before it creates its container, so a container listed here is never one too new to be recorded."""
        filters = json.dumps({"label": [f"{INSTANCE_LABEL}={self._instance}"]})
        removed = []
        containers = await self._docker.containers.list(all=True, filters=filters)
        recorded = await running()
        for container in containers:
            labels = container["Labels"] or {}
            if SERVICE_LABEL in labels:  # services are recovered on their own (remove_orphan_services)
                continue
            if (labels.get(JOB_LABEL), labels.get(OPERATOR_LABEL)) not in recorded:
                with contextlib.suppress(DockerError):
                    await container.delete(force=True)
                    removed.append(str(container.id))
        return removed

    async def close(self) -> None:
        await self._docker.close()
