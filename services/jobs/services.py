"""Pipeline services: long-running containers (an inference server, typically) that operators use.

docs/services.md tells the lifecycle; in short:

* A service is its container: ``(image:tag, command)``. The first operator that declares one starts it;
  later operators and jobs with the same identity reuse it, whatever they call it. One runs per identity
  and node (the ``services`` table's unique key), whichever jobs process asks first.
* An operator whose services are not running waits in the queue for its own requests plus theirs
  (:meth:`ServiceManager.demand`); when it is granted, :meth:`ServiceManager.use` hands each service its
  share of the grant (its GPU ids included) and keeps it held in the ledger, as ``("services", id)``,
  for as long as the service runs.
* Before the operator starts, each of its services is ready: every declared http port accepts
  connections, within ``start_timeout``. A service that fails to start or to become ready faults the
  operator with the end of the service's log (:class:`ServiceFailure`).
* The operator gets ``NAME=host:port`` per http connection and joins the service's network namespace
  (:attr:`~services.jobs.runtimes.base.OperatorSpec.joins`): it reaches its services and nothing else.
* A service stops on Clara.Stop (:meth:`ServiceManager.stop_all`) or after ``idle_timeout`` seconds with
  no operator using it; it survives a restart of the jobs service (:meth:`ServiceManager.recover`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from services.jobs import service_table, triton
from services.jobs.environment import gpu_variables
from services.jobs.queue import OperatorGrant, OperatorQueue
from services.jobs.runtimes.base import (
    INSTANCE_LABEL,
    SERVICE_LABEL,
    SERVICES_JOB,
    Exit,
    Mount,
    OperatorSpec,
    Runtime,
    RuntimeFailure,
    ServiceHandle,
    ServiceNetwork,
)
from services.jobs.scheduler import CannotHold, Demand, Grant
from services.jobs.triton import PlatformService
from shared import ids
from shared.db import Database
from shared.db.connection import Conflict
from shared.logging import get_logger
from shared.metrics import Metrics
from shared.pipeline_definition import Operator, Service
from shared.pipeline_definition.fields import NAME

log = get_logger(__name__)

Identity = tuple[str, tuple[str, ...]]
"""``(image:tag, command)``: what makes two service declarations one service."""

SERVICE_DATA_MOUNT = "/clara/common"
"""Where a service finds the service-data folder (``NVIDIA_CLARA_SERVICE_DATA_PATH``), read-only."""
LOG_TAIL_BYTES = 2000
"""How much of a failed service's log its operator's fault message quotes."""
_VARIABLE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass(frozen=True)
class ServiceSettings:
    """What the service manager needs of the configuration."""

    node: str = "local"
    """Whose resources the services hold: one service per identity per node."""
    start_timeout: float = 300.0
    """Seconds a service has to accept connections on every declared http port."""
    idle_timeout: float = 1800.0
    """Seconds without an operator using it after which a service stops; 0 keeps services until Clara.Stop."""
    data_dir: Path | None = None
    """Mounted read-only at :data:`SERVICE_DATA_MOUNT` in every service (models, typically)."""
    volumes_path: Path = Path(".claret/service-volumes")
    """Where the folders of ``volume`` connections are made, one folder per service instance."""
    triton_home: Path | None = None
    """An environment holding nvidia-pytriton's tritonserver (scripts/triton): the sandbox runtime's Triton."""
    triton_image: str | None = None
    """The Docker runtime's Triton image."""
    triton_gpus: int = 0
    """GPUs the Triton instance holds (from the ledger, like any service's)."""
    models_repository: Path = Path(".claret/models/repository")
    """The Model Repository's folder of unpacked models, which Triton serves."""


class ServiceFailure(Exception):
    """A service an operator uses could not start or become ready; the message says why, for the job."""


class ServicesNeedResources(Exception):
    """The operator's grant does not cover a service that must be started now (it stopped after the
    operator was queued): the operator is to be queued again, with the service's requests."""


def identity(service: Service) -> Identity:
    return service.container.reference, service.container.command


def identity_text(key: Identity) -> str:
    """An identity as the services table keeps it."""
    return json.dumps([key[0], list(key[1])])


def expand(command: Sequence[str], env: dict[str, str]) -> tuple[str, ...]:
    """``$(NAME)`` in a service's command becomes that variable of its environment (as Clara's pipelines
    write ``--model-store=$(NVIDIA_CLARA_SERVICE_DATA_PATH)/models``); unknown names stay as written."""
    return tuple(_VARIABLE.sub(lambda m: env.get(m.group(1), m.group(0)), word) for word in command)


def connection_variables(uses: Iterable[tuple[Service, ServiceNetwork]]) -> dict[str, str]:
    """``NAME=host:port`` for each http connection of the operator's services (``host`` without a port),
    ``NAME=path`` for each volume connection."""
    found: dict[str, str] = {}
    for service, network in uses:
        found.update(
            (name, f"{network.host}:{port}" if port else network.host) for name, port in service.http_connections
        )
        found.update(service.volume_connections)
    return found


@dataclass(eq=False)
class Instance:
    """One running (or starting) service."""

    id: str
    identity: Identity
    name: str
    grant: OperatorGrant | None
    """What it holds in the ledger (None: another jobs process on this node runs it)."""
    ready: asyncio.Future[ServiceNetwork]
    handle: ServiceHandle | None = None
    exited: asyncio.Task[Exit] | None = None
    task: asyncio.Task[None] | None = None
    users: int = 0
    idle: asyncio.TimerHandle | None = None
    stopping: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return SERVICES_JOB, self.id


@dataclass(frozen=True)
class ServicesInUse:
    """What an operator gets from its services."""

    env: dict[str, str]
    joins: tuple[str, ...]
    mounts: tuple[Mount, ...] = ()
    instances: tuple[Instance, ...] = ()


class ServiceManager:
    def __init__(
        self,
        db: Database,
        runtime: Runtime,
        queue: OperatorQueue,
        settings: ServiceSettings,
        *,
        replica: str,
        instance: str,
        logs_path: Path,
        user: tuple[int, int],
        pids: int,
        max_log_bytes: int,
        stop_grace: float,
        metrics: Metrics,
        released: Callable[[], Awaitable[None]],
    ) -> None:
        """``released`` is called whenever a service gave back what it held (the queue may start more)."""
        self._db = db
        self._runtime = runtime
        self._queue = queue
        self.settings = settings
        self._replica = replica
        self._platform = instance
        self._logs_path = logs_path
        self._user = user
        self._pids = pids
        self._max_log_bytes = max_log_bytes
        self._grace = stop_grace
        self._metrics = metrics
        self._released = released
        self.triton = triton.for_runtime(
            runtime.name, settings.triton_home, settings.triton_image, settings.models_repository, settings.triton_gpus
        )
        """Serves operators' ``models:``; None when no Triton is configured (or the runtime cannot run it)."""
        self._loading: dict[str, asyncio.Lock] = {}
        self._instances: dict[Identity, Instance] = {}
        self._closing = False
        metrics.services_running.set_function(lambda: self.running)

    # -- public surface ------------------------------------------------------------------------------------

    def log_path(self, name: str, service_id: str) -> Path:
        return self._logs_path / SERVICES_JOB / name / f"{service_id}.log"

    def newest_log(self, name: str) -> Path | None:
        """The log of the latest service started under ``name`` (ReadLogs of job ``services``)."""
        if not NAME.fullmatch(name):  # a path component: nothing but a name the loader accepts
            return None
        logs = sorted((self._logs_path / SERVICES_JOB / name).glob("*.log"), key=lambda p: p.stat().st_mtime)
        return logs[-1] if logs else None

    @property
    def running(self) -> int:
        """This process's services that are ready (not those of another it uses)."""
        ready = (inst for inst in self._instances.values() if inst.grant is not None and inst.ready.done())
        return sum(1 for inst in ready if not inst.ready.exception())

    def instances(self) -> tuple[Instance, ...]:
        """The services this process knows now: starting, ready, or another process's that it uses."""
        return tuple(self._instances.values())

    def services_of(self, operator: Operator) -> tuple[Service, ...]:
        """The services the operator uses: those it declares, and Triton when it lists models."""
        if operator.models and self.triton is not None:
            return (*operator.services, self.triton)
        return operator.services

    async def demand(self, operator: Operator) -> Demand:
        """What the operator's services that do not run (nor start) on this node need besides the operator."""
        missing = [s.requests for s in self.services_of(operator) if not await self._runs(identity(s))]
        return Demand(
            cpu=sum(r.cpu for r in missing), memory_mb=sum(r.memory for r in missing), gpus=sum(r.gpu for r in missing)
        )

    async def use(self, operator: Operator, grant: OperatorGrant) -> tuple[ServicesInUse, OperatorGrant]:
        """Make the operator's services ready (starting those that do not run from its grant) and mark them
        in use; returns what the operator gets and the part of the grant it keeps. Raises
        :class:`ServiceFailure` or :class:`ServicesNeedResources` (nothing is left in use then)."""
        requests = operator.requests
        own = Grant(
            grant.key, Demand(requests.cpu, requests.memory, requests.gpu), grant.gpu_ids[: requests.gpu], grant.node
        )
        services = self.services_of(operator)
        for service in services:
            await self._runs(identity(service))
        fresh = self._claim(operator, grant)
        chosen = [(s, self._instances[identity(s)]) for s in services]
        for _, inst in chosen:
            self._hold(inst)
        try:
            await self._queue.split(grant.key, [own, *(inst.grant for _, inst in fresh if inst.grant)])
        except BaseException:
            for _, inst in fresh:
                self._instances.pop(inst.identity, None)
            self.done(inst for _, inst in chosen)
            raise
        for service, inst in fresh:
            inst.task = asyncio.create_task(self._run(service, inst))
            inst.task.add_done_callback(partial(self._run_ended, inst))
        try:
            networks = [await asyncio.shield(inst.ready) for _, inst in chosen]
            for (service, inst), network in zip(chosen, networks, strict=True):
                if service is self.triton:
                    await self._load(inst, network, operator.models)
        except BaseException:
            self.done(inst for _, inst in chosen)
            raise
        for _, inst in chosen:
            if inst.grant is None:
                self._mark_used(inst)
        uses = list(zip(services, networks, strict=True))
        joins = tuple(dict.fromkeys(network.ref for network in networks))
        mounts = tuple(m for service, inst in chosen for m in self._volumes(service, inst.id))
        return ServicesInUse(connection_variables(uses), joins, mounts, tuple(inst for _, inst in chosen)), own

    async def _load(self, inst: Instance, network: ServiceNetwork, models: Sequence[str]) -> None:
        """Have Triton load each model it has not loaded since the model's last upload (an upload under the
        name clears the record, so the next operator gets the new files); one load at a time per Triton."""
        async with self._loading.setdefault(inst.id, asyncio.Lock()):
            for name in models:
                recorded = await self._db.read(partial(service_table.has_loaded, service_id=inst.id, model=name))
                path = f"/v2/models/{quote(name, safe='')}"
                if recorded and (await self._ask(network, "GET", f"{path}/ready"))[0] == 200:
                    continue
                status, body = await self._ask(network, "POST", f"/v2/repository/models/{quote(name, safe='')}/load")
                if status != 200:
                    reason = body.decode(errors="replace").strip()[:LOG_TAIL_BYTES]
                    raise ServiceFailure(f"Triton could not load model {name!r} (HTTP {status}): {reason}")
                await self._db.write(partial(service_table.loaded, service_id=inst.id, model=name))
                log.info("model loaded", model=name, service_id=inst.id)

    async def _ask(self, network: ServiceNetwork, method: str, path: str) -> tuple[int, bytes]:
        """Triton's answer; while it is still starting (503), asked again for up to ``start_timeout``."""
        deadline = time.monotonic() + self.settings.start_timeout
        while True:
            try:
                status, body = await self._runtime.request(network, triton.HTTP_PORT, method, path)
            except OSError as exc:
                raise ServiceFailure(f"Triton does not answer: {exc}") from exc
            if status != 503 or time.monotonic() > deadline:
                return status, body
            await asyncio.sleep(0.05)

    def hold_again(self, operator: Operator) -> tuple[Instance, ...]:
        """An operator re-attached after a restart uses its services again (those still running)."""
        found = tuple(inst for s in self.services_of(operator) if (inst := self._instances.get(identity(s))))
        for inst in found:
            self._hold(inst)
        return found

    def done(self, instances: Iterable[Instance]) -> None:
        """Operators stopped using these services; one no operator uses is stopped after the idle timeout."""
        for inst in instances:
            inst.users -= 1
            if inst.grant is None:
                self._mark_used(inst)
            elif inst.users == 0 and self.settings.idle_timeout > 0:
                self._idle_in(inst, self.settings.idle_timeout)

    def _mark_used(self, inst: Instance) -> None:
        """Another process's service began or ended serving an operator here: its owner's idle clock restarts
        (the row's ``last_used``)."""
        self._background(self._db.write(partial(service_table.used, service_id=inst.id, at=ids.now())))

    def _idle_in(self, inst: Instance, delay: float) -> None:
        inst.idle = asyncio.get_running_loop().call_later(delay, lambda: self._background(self._stop_if_idle(inst)))

    def _background(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.create_task(work)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def stop_all(self, reason: str) -> None:
        """Clara.Stop: halt every service of this node (also another jobs process's) and release what they
        hold. Jobs go on; an operator that loses its service fails as it would."""
        ours = list(self._instances.values())
        await asyncio.gather(*(self._stop(inst, reason) for inst in ours if inst.grant is not None))
        others = await self._db.read(partial(service_table.of_node, node=self.settings.node))
        await asyncio.gather(*(self._stop_row(row) for row in others if row.owner != self._replica))

    async def recover(self, *, every: bool) -> None:
        """At start: carry on the services of this node that this process (``every``: any process) ran,
        holding their grants again; stop those that never became ready; remove any no row knows."""
        rows = await self._db.read(partial(service_table.of_node, node=self.settings.node))
        for row in rows:
            if every or row.owner == self._replica:
                await self._carry_on(row)
        for service_id in await self._runtime.remove_orphan_services(self._known):
            log.warning("removed a service no row knows", service_id=service_id)

    async def carry_on(self, rows: Iterable[service_table.ServiceRow]) -> None:
        """Carry on services this process adopted from a jobs process that went silent."""
        for row in rows:
            await self._carry_on(row)

    async def let_go(self) -> None:
        """This process was taken over while it stalled: its services are another's to follow now."""
        await self.close()
        self._closing = False

    async def _known(self) -> set[str]:
        return {row.id for row in await self._db.read(partial(service_table.of_node, node=self.settings.node))}

    async def close(self) -> None:
        """Stop following services; they keep running, for the next start to carry on."""
        self._closing = True
        tasks = [t for inst in self._instances.values() for t in (inst.task, inst.exited) if t is not None]
        for inst in self._instances.values():
            if inst.idle is not None:
                inst.idle.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._instances.clear()

    # -- claiming ------------------------------------------------------------------------------------------

    def _claim(self, operator: Operator, grant: OperatorGrant) -> list[tuple[Service, Instance]]:
        """Register the operator's services that do not run yet, each with its share of ``grant`` beyond the
        operator's own requests. Synchronous: operators granted together see each other's claims."""
        requests = operator.requests
        cpu, memory, gpus = grant.demand.cpu - requests.cpu, grant.demand.memory_mb - requests.memory, grant.gpu_ids
        gpus = gpus[requests.gpu :]
        fresh: list[tuple[Service, Instance]] = []
        for service in self.services_of(operator):
            if identity(service) in self._instances:
                continue
            need = service.requests
            if need.cpu > cpu or need.memory > memory or need.gpu > len(gpus):
                for _, inst in fresh:
                    del self._instances[inst.identity]
                raise ServicesNeedResources(f"service {service.name!r} must be started and its requests waited for")
            service_id = ids.new_id()
            demand = Demand(need.cpu, need.memory, need.gpu)
            share = Grant((SERVICES_JOB, service_id), demand, gpus[: need.gpu], grant.node)
            cpu, memory, gpus = cpu - need.cpu, memory - need.memory, gpus[need.gpu :]
            ready: asyncio.Future[ServiceNetwork] = asyncio.get_running_loop().create_future()
            ready.add_done_callback(lambda f: f.cancelled() or f.exception())  # read by whoever waits, if any
            inst = Instance(service_id, identity(service), service.name, share, ready)
            self._instances[inst.identity] = inst
            fresh.append((service, inst))
        return fresh

    async def _row(self, key: Identity) -> service_table.ServiceRow | None:
        """The table's service of this identity on this node, whichever process runs it."""
        return await self._db.read(partial(service_table.find, node=self.settings.node, identity=identity_text(key)))

    async def _runs(self, key: Identity) -> bool:
        """Whether a service of this identity runs (or starts) on this node: one of this process's, or
        another jobs process's from the table (known from now on, as long as its row is there)."""
        inst = self._instances.get(key)
        if inst is not None and (inst.grant is not None or not inst.ready.done()):
            return True  # ours, or another's being waited for
        row = await self._row(key)
        if inst is not None and (row is None or row.id != inst.id):
            del self._instances[key]  # the other process's service stopped
        if row is None or key in self._instances:
            return row is not None
        other = Instance(row.id, key, row.name, None, asyncio.get_running_loop().create_future())
        self._instances[key] = other
        if row.ready is not None and row.network is not None:
            other.ready.set_result(row.network)
        else:
            other.task = asyncio.create_task(self._follow_other(other, row.identity))
        return True

    def _hold(self, inst: Instance) -> None:
        inst.users += 1
        if inst.idle is not None:
            inst.idle.cancel()
            inst.idle = None

    # -- one service's life ----------------------------------------------------------------------------------

    def _volumes(self, service: Service, service_id: str) -> tuple[Mount, ...]:
        """The folders of the service's ``volume`` connections, made (for the operators' user) if missing."""
        mounts = []
        for name, path in service.volume_connections:
            folder = self.settings.volumes_path / service_id / name
            if not folder.is_dir():
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                if os.geteuid() == 0:
                    os.chown(folder, *self._user)
            mounts.append(Mount(folder, path, read_only=False))
        return tuple(mounts)

    def _spec(self, service_id: str, name: str, service: Service | None, gpu_ids: tuple[str, ...]) -> OperatorSpec:
        """The runtime's spec of a service (``service`` None: enough of one to find it again, see :meth:`_found`)."""
        env: dict[str, str] = {}
        mounts: tuple[Mount, ...] = ()
        if service is not None:
            data_path = {"NVIDIA_CLARA_SERVICE_DATA_PATH": SERVICE_DATA_MOUNT}
            env = {**service.variables, **data_path, **gpu_variables(gpu_ids), **dict(service.volume_connections)}
            mounts = self._volumes(service, service_id)
            if isinstance(service, PlatformService):
                env.update(service.env)
                mounts += service.mounts
            if self.settings.data_dir is not None:
                mounts += (Mount(self.settings.data_dir, SERVICE_DATA_MOUNT, read_only=True),)
        requests = service.requests if service is not None else None
        return OperatorSpec(
            job_id=SERVICES_JOB,
            operator=service_id,
            image=service.container.reference if service else "",
            command=expand(service.container.command, env) if service else (),
            env=env,
            mounts=mounts,
            cpu=requests.cpu if requests else 1,
            memory_mb=requests.memory if requests else 0,
            gpu_ids=gpu_ids,
            log_path=self.log_path(name, service_id),
            labels={SERVICE_LABEL: service_id, INSTANCE_LABEL: self._platform},
            user=self._user,
            pids_limit=self._pids,
            max_log_bytes=self._max_log_bytes,
        )

    def _found(self, row: service_table.ServiceRow) -> OperatorSpec:
        """Enough of a recorded service's spec for the runtime to find it again (attach, stop)."""
        return self._spec(row.id, row.name, None, row.gpu_ids)

    async def _run(self, service: Service, inst: Instance) -> None:
        """Start the service, wait until it is ready, follow it until it ends; then clean up after it (unless
        this process is shutting down: it keeps running for the next start)."""
        assert inst.grant is not None
        row = service_table.ServiceRow(
            id=inst.id,
            node=self.settings.node,
            identity=identity_text(inst.identity),
            name=inst.name,
            owner=self._replica,
            cpu=inst.grant.demand.cpu,
            memory_mb=inst.grant.demand.memory_mb,
            gpu_ids=inst.grant.gpu_ids,
            started=ids.now(),
        )
        try:
            await self._db.write(lambda conn: service_table.insert(conn, row))
        except Conflict:  # another jobs process of this node runs it: use theirs
            await self._queue.release(inst.key)
            await self._released()
            inst.grant = None
            await self._follow_other(inst, row.identity)
            return
        failure = None
        try:
            await self._start(service, inst)
            exit = await inst.exited if inst.exited is not None else Exit(-1)
            log.info("service ended", service=inst.name, service_id=inst.id, exit_code=exit.code, why=inst.stopping)
        except ServiceFailure as exc:
            self._metrics.services_started.labels("failed").inc()
            log.warning("service failed", service=inst.name, service_id=inst.id, reason=str(exc))
            failure = exc
        finally:
            if not self._closing:
                await self._forget(inst, failure)

    def _run_ended(self, inst: Instance, task: asyncio.Task[None]) -> None:
        """A service's task that failed unexpectedly must not leave its operators waiting."""
        if task.cancelled() or task.exception() is None:
            return
        log.error("service task failed", service=inst.name, service_id=inst.id, exc_info=task.exception())
        if not inst.ready.done():
            inst.ready.set_exception(ServiceFailure(f"service {inst.name!r} failed: {task.exception()}"))

    async def _start(self, service: Service, inst: Instance) -> None:
        assert inst.grant is not None
        spec = self._spec(inst.id, inst.name, service, inst.grant.gpu_ids)
        try:
            handle = await self._runtime.start_service(spec)
        except RuntimeFailure as exc:
            raise ServiceFailure(f"service {inst.name!r} could not start: {exc}") from exc
        inst.handle = handle
        inst.exited = asyncio.create_task(handle.wait())
        await self._db.write(lambda conn: service_table.started(conn, inst.id, handle.runtime_id, handle.network))
        await self._until_ready(service, inst, handle, spec.log_path)
        await self._db.write(lambda conn: service_table.mark_ready(conn, inst.id, ids.now()))
        self._metrics.services_started.labels("ready").inc()
        log.info("service ready", service=inst.name, service_id=inst.id, address=handle.network.host)
        inst.ready.set_result(handle.network)

    async def _until_ready(self, service: Service, inst: Instance, handle: ServiceHandle, log_path: Path) -> None:
        """Until every declared http port accepts connections (a service without ports: once it runs)."""
        assert inst.exited is not None
        ports = sorted({port for _, port in service.http_connections if port})
        deadline = time.monotonic() + self.settings.start_timeout
        delay = 0.02
        while True:
            if inst.exited.done():
                code = inst.exited.result().code
                raise ServiceFailure(
                    f"service {inst.name!r} exited with code {code} before it was ready{tail(log_path)}"
                )
            waiting = [port for port in ports if not await self._runtime.accepts(handle.network, port)]
            if not waiting:
                return
            if time.monotonic() > deadline:  # _forget stops it
                raise ServiceFailure(
                    f"service {inst.name!r} was not ready within {self.settings.start_timeout:g} s: nothing "
                    f"accepted connections on port {', '.join(map(str, waiting))}{tail(log_path)}"
                )
            await asyncio.wait([inst.exited], timeout=delay)
            delay = min(delay * 2, 1.0)

    async def _follow_other(self, inst: Instance, identity_text: str) -> None:
        """Wait for another jobs process's service of this identity to be ready, then use it."""
        while not self._closing:
            row = await self._db.read(partial(service_table.find, node=self.settings.node, identity=identity_text))
            if row is None:
                break
            if row.ready is not None and row.network is not None:
                inst.id = row.id  # to tell later whether it still runs
                inst.ready.set_result(row.network)
                return
            await asyncio.sleep(0.1)
        self._instances.pop(inst.identity, None)
        if not inst.ready.done():
            inst.ready.set_exception(ServiceFailure(f"service {inst.name!r} stopped before it was ready"))

    async def _forget(self, inst: Instance, failure: ServiceFailure | None = None) -> None:
        """The service ended (or failed to start: ``failure``): its row goes and what it held is released;
        only then do the operators waiting for it learn it failed."""
        if self._instances.get(inst.identity) is inst:
            del self._instances[inst.identity]
        if inst.idle is not None:
            inst.idle.cancel()
        if inst.handle is not None and inst.exited is not None and not inst.exited.done():
            with contextlib.suppress(Exception):
                await inst.handle.stop(self._grace)
            await asyncio.gather(inst.exited, return_exceptions=True)
        await self._db.write(lambda conn: service_table.delete(conn, inst.id))
        await self._queue.release(inst.key)
        self._loading.pop(inst.id, None)
        await asyncio.to_thread(shutil.rmtree, self.settings.volumes_path / inst.id, ignore_errors=True)
        if not inst.ready.done():
            inst.ready.set_exception(failure or ServiceFailure(f"service {inst.name!r} was stopped ({inst.stopping})"))
        await self._released()

    # -- stopping --------------------------------------------------------------------------------------------

    async def _stop_if_idle(self, inst: Instance) -> None:
        """Stop a service nobody used for the idle timeout: not this process's operators (``users``), nor
        another's (the row's ``last_used``; then the clock runs on from that use)."""
        if inst.users or self._instances.get(inst.identity) is not inst:
            return
        row = await self._row(inst.identity)
        idle_for = ids.now() - (row.last_used if row is not None else 0)
        if idle_for < self.settings.idle_timeout:
            self._idle_in(inst, self.settings.idle_timeout - idle_for)
        elif not inst.users:
            await self._stop(inst, "idle")

    async def _stop(self, inst: Instance, why: str) -> None:
        inst.stopping = why
        log.info("stopping service", service=inst.name, service_id=inst.id, why=why)
        if inst.handle is not None and inst.ready.done():
            await inst.handle.stop(self._grace)  # its _run cleans up once it has ended
        elif inst.task is not None:
            inst.task.cancel()
        if inst.task is not None:
            await asyncio.gather(inst.task, return_exceptions=True)

    async def _stop_row(self, row: service_table.ServiceRow) -> None:
        """Stop a service of this node run by another jobs process (it cleans up after it once it ended)."""
        if row.runtime_id is not None:
            await self._runtime.stop_service(self._found(row), row.runtime_id, self._grace)

    # -- restart -----------------------------------------------------------------------------------------------

    async def _carry_on(self, row: service_table.ServiceRow) -> None:
        """Follow a service started by an earlier run of this process (or by one it took over), holding its
        grant again; one that is gone, never became ready or cannot be held is stopped and forgotten."""
        image, command = json.loads(row.identity)
        grant = Grant((SERVICES_JOB, row.id), Demand(row.cpu, row.memory_mb, len(row.gpu_ids)), row.gpu_ids)
        inst = self._instances.get((image, tuple(command)))
        if inst is not None and inst.grant is None and inst.id == row.id:  # another's it used: ours from now on
            if inst.task is not None:
                inst.task.cancel()
            inst.grant = grant
        else:
            inst = Instance(
                row.id, (image, tuple(command)), row.name, grant, asyncio.get_running_loop().create_future()
            )
        handle = None
        if row.runtime_id is not None and row.network is not None and row.ready is not None:
            handle = await self._runtime.attach_service(self._found(row), row.runtime_id, row.network)
        if handle is not None and self._instances.get(inst.identity, inst) is inst:
            try:
                await self._queue.restore(grant)
            except CannotHold as exc:
                log.warning("cannot hold a service's grant again", service_id=row.id, reason=str(exc))
            else:
                await self._db.write(lambda conn: service_table.adopt(conn, row.id, self._replica))
                inst.handle, inst.exited = handle, asyncio.create_task(handle.wait())
                if not inst.ready.done():
                    inst.ready.set_result(handle.network)
                self._instances[inst.identity] = inst
                inst.task = asyncio.create_task(self._carried_on(inst))
                inst.users += 1
                self.done([inst])  # the idle clock starts now, unless operators use it
                log.info("service re-attached", service=row.name, service_id=row.id)
                return
        log.info("service not carried on", service=row.name, service_id=row.id, found=handle is not None)
        if self._instances.get(inst.identity) is inst:
            del self._instances[inst.identity]
        if handle is not None:
            await handle.stop(0)
            await handle.wait()
        elif row.runtime_id is not None:  # started but never ready: stop what may still run of it
            await self._runtime.stop_service(self._found(row), row.runtime_id, 0)
        await self._db.write(lambda conn: service_table.delete(conn, row.id))
        await self._queue.release(inst.key)

    async def _carried_on(self, inst: Instance) -> None:
        assert inst.exited is not None
        try:
            exit = await inst.exited
            log.info("service ended", service=inst.name, service_id=inst.id, exit_code=exit.code, why=inst.stopping)
        finally:
            if not self._closing:
                await self._forget(inst)


def tail(path: Path) -> str:
    """``; its log ends: ...`` with the last lines of a service's log, or nothing when it wrote none."""
    try:
        with path.open("rb") as file:
            size = file.seek(0, 2)
            file.seek(max(size - LOG_TAIL_BYTES, 0))
            text = file.read().decode(errors="replace").strip()
    except OSError:
        return ""
    return f"; its log ends: {text}" if text else ""
