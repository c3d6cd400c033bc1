"""Runs started jobs: walks each job's DAG, asks the queue what may start, drives the runtime.

The database is the source of truth; what this module holds in memory (one :class:`JobRun` per job in
flight, and the queue and ledger when they are local) is rebuilt from it by :meth:`Executor.recover` at
start. With jobs replicas, each runs the jobs it owns and adopts those of a replica that died
(:meth:`Executor.adopt`, driven by ``services/jobs/replicas.py``).
Every way a job ends (success, a failing operator, cancel, timeout, platform stop, lost operators
after a restart) goes through :meth:`Executor._end`: record why, withdraw what waits, stop what runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from services.jobs import environment, job_table, outputs
from services.jobs.model import JobRecord, JobStatus, OperatorRecord, OperatorStatus
from services.jobs.queue import OperatorGrant, OperatorQueue, Ready
from services.jobs.runtimes.base import (
    INSTANCE_LABEL,
    JOB_LABEL,
    OPERATOR_LABEL,
    Exit,
    Handle,
    NeverStarted,
    OperatorSpec,
    Runtime,
)
from services.jobs.scheduler import CannotHold, Demand, Grant
from services.jobs.services import (
    Instance,
    ServiceFailure,
    ServiceManager,
    ServiceSettings,
    ServicesInUse,
    ServicesNeedResources,
)
from shared import ids
from shared.config import Settings
from shared.db import Database
from shared.db.connection import Connection
from shared.logging import get_logger
from shared.metrics import Metrics
from shared.payload_store import PayloadStore
from shared.pipeline_definition import Operator, Pipeline, load_pipeline_cached

log = get_logger(__name__)

MIB = 1024 * 1024
OUTPUT_CHECK_INTERVAL = 1.0
"""Seconds between measurements of a running job's outputs against its quota."""


@dataclass(frozen=True)
class OperatorLimits:
    """What every operator is held to, besides its own requests."""

    uid: int
    """Host uid (never 0) it runs as."""
    gid: int
    pids: int
    """Most processes and threads at once."""
    log_mb: int
    """MiB of log kept; then a marker line and a job message."""
    output_mb: int
    """MiB a job's operators may write into its payload."""


@dataclass(frozen=True)
class ExecutorSettings:
    """What the executor needs of the configuration (built by the composition root)."""

    replica: str
    """This jobs process: the owner recorded on what it runs."""
    instance: str
    """The platform instance, labelled on what it starts (to find it again, or remove it)."""
    logs_path: Path
    default_timeout: int
    max_timeout: int
    stop_grace: float
    """Seconds between the stop signal and the kill."""
    limits: OperatorLimits
    services: ServiceSettings = field(default_factory=ServiceSettings)
    runtime_id_delay: float = 1.0
    """An operator's runtime id is written with its end, or this many seconds after its start if it still runs:
    a short operator costs one transaction less. Until then a restart finds it by its job and operator names."""

    @classmethod
    def of(cls, settings: Settings) -> ExecutorSettings:
        return cls(
            replica=settings.replica_id,
            instance=settings.instance,
            logs_path=settings.logs_path,
            default_timeout=settings.default_timeout,
            max_timeout=settings.max_timeout,
            stop_grace=settings.stop_grace,
            limits=OperatorLimits(
                uid=settings.operator_uid,
                gid=settings.operator_gid,
                pids=settings.pids_limit,
                log_mb=settings.max_log_mb,
                output_mb=settings.max_output_mb,
            ),
            services=ServiceSettings(
                node=settings.node_name,
                start_timeout=settings.service_start_timeout,
                idle_timeout=settings.service_idle_timeout,
                data_dir=settings.service_data_dir,
                volumes_path=settings.data_dir / "service-volumes",
                triton_home=settings.triton_home,
                triton_image=settings.triton_image,
                triton_gpus=settings.triton_gpus,
                models_repository=settings.models_path / "repository",
            ),
        )


def demand(operator: Operator) -> Demand:
    return Demand(cpu=operator.requests.cpu, memory_mb=operator.requests.memory, gpus=operator.requests.gpu)


def plus(one: Demand, other: Demand) -> Demand:
    return Demand(one.cpu + other.cpu, one.memory_mb + other.memory_mb, one.gpus + other.gpus)


NO_SERVICES = ServicesInUse(env={}, joins=())


async def _wait(handle: Handle) -> Exit:
    """The operator's exit; a runtime that fails to tell (engine gone mid-wait) ends it as lost, so the job
    moves on and its resources are released instead of being held by a task that died."""
    try:
        return await handle.wait()
    except (asyncio.CancelledError, TimeoutError):
        raise
    except Exception as exc:
        with contextlib.suppress(Exception):
            await handle.stop(0)
        return Exit(-1, f"lost the operator: {type(exc).__name__}: {exc}")


@dataclass
class JobRun:
    """A started job while it has operators waiting or running in this process."""

    job: JobRecord
    model: Pipeline
    completed: set[str] = field(default_factory=set)
    submitted: set[str] = field(default_factory=set)
    """Operators handed to the queue: waiting, running or done."""
    ready_since: dict[str, float] = field(default_factory=dict)
    """When each submitted operator became ready (for the queue-wait metric)."""
    handles: dict[str, Handle] = field(default_factory=dict)
    services: dict[str, tuple[Instance, ...]] = field(default_factory=dict)
    """The pipeline services each started operator uses."""
    ending: bool = False
    deadline: asyncio.TimerHandle | None = None
    watching_outputs: bool = False
    """A task measures the job's outputs against its quota while operators run."""

    def ready(self) -> list[str]:
        """Operators not yet submitted whose upstream operators all completed, in declaration order."""
        return [
            op.name
            for op in self.model.operators
            if op.name not in self.submitted and set(op.upstream) <= self.completed
        ]

    def finished(self) -> bool:
        return len(self.completed) == len(self.model.operators)

    def blocked(self) -> list[tuple[str, tuple[str, ...]]]:
        """Operators not ready yet, each with the upstream operators it still waits for."""
        return [
            (op.name, tuple(name for name in op.upstream if name not in self.completed))
            for op in self.model.operators
            if op.name not in self.submitted and not set(op.upstream) <= self.completed
        ]


class Executor:
    def __init__(
        self,
        db: Database,
        store: PayloadStore,
        runtime: Runtime,
        queue: OperatorQueue,
        settings: ExecutorSettings,
        metrics: Metrics,
    ) -> None:
        self._db = db
        self._metrics = metrics
        self._store = store
        self._runtime = runtime
        self.queue = queue
        self.settings = settings
        self._replica = settings.replica
        self._runs: dict[str, JobRun] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._adopting = 0
        """Adoptions in progress: until each survivor holds its grant again, the queue hands nothing out."""
        limits = settings.limits
        self.services = ServiceManager(
            db,
            runtime,
            queue,
            settings.services,
            replica=settings.replica,
            instance=settings.instance,
            logs_path=settings.logs_path,
            user=(limits.uid, limits.gid),
            pids=limits.pids,
            max_log_bytes=limits.log_mb * MIB,
            stop_grace=settings.stop_grace,
            metrics=metrics,
            released=self.pump,
        )

    # -- public surface ------------------------------------------------------------------------------------

    def log_path(self, job_id: str, operator: str) -> Path:
        return self.settings.logs_path / job_id / f"{operator}.log"

    def load(self, job: JobRecord, variables: Mapping[str, str] | None = None) -> Pipeline:
        """The job's pipeline as it runs: its definition with ``variables`` (Start's, or the stored ones) and
        the platform's timeouts."""
        return load_pipeline_cached(
            job.files,
            job.variables if variables is None else variables,
            default_timeout=self.settings.default_timeout,
            max_timeout=self.settings.max_timeout,
        )

    async def admit(self, job: JobRecord, model: Pipeline) -> None:
        """A job was started: queue its root operators."""
        run = JobRun(job=job, model=model)
        self._runs[job.id] = run
        await self._submit_ready(run)
        await self.pump()

    async def end(self, job_id: str, status: JobStatus, reason: str) -> None:
        """End a job: stop it where this executor runs it, else only record its end (nothing of it runs here)."""
        run = self._runs.get(job_id)
        if run is not None:
            await self._end(run, status, reason)
        else:
            ended = partial(job_table.finish, job_id=job_id, status=status, messages=[reason], at=ids.now())
            await self._db.write(ended)

    async def recover(self, *, every: bool) -> None:
        """At start: remove what no job owns, then carry on the jobs that were in flight, re-attaching to
        operators still running: ``every`` one (a single jobs process), or this replica's own and those of no
        replica (a dead replica's wait for the takeover). Orphans go first, before this executor starts
        anything of its own."""
        for runtime_id in await self._runtime.remove_orphans(lambda: self._db.read(job_table.running_operators)):
            log.warning("removed an operator no job owns", runtime_id=runtime_id)
        await self.services.recover(every=every)  # before the operators that use them are re-attached
        await self.adopt(await self._db.write(partial(job_table.adopt_in_flight, owner=self._replica, every=every)))

    async def adopt(self, job_ids: list[str]) -> None:
        """Carry on these in-flight jobs from what the database says, like after a restart. Nothing new starts
        until every operator that survived holds its grant again: one that ended while the service was down
        moves its job on at once, and the queue would otherwise hand out what a later survivor holds."""
        self._adopting += 1
        try:
            await self._adopt_each(job_ids)
        finally:
            self._adopting -= 1
        await self.pump()

    async def _adopt_each(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            try:
                job = await self._db.read(partial(job_table.get, job_id=job_id))
                if job is None or job.stopped is not None or job.id in self._runs:
                    continue
                operators = await self._db.read(partial(job_table.operators, job_id=job.id))
            except Exception:  # the database failed us: the next jobs may still be carried on
                log.exception("cannot read a job to carry it on", job_id=job_id)
                continue
            try:
                await self._recover_job(job, operators)
            except Exception as exc:  # one job that cannot be carried on must not keep the service down
                log.exception("cannot recover a job", job_id=job.id)
                run = self._runs.get(job.id) or JobRun(job=job, model=Pipeline(api_version="0", name=job.name))
                await self._end(run, JobStatus.EVICTED, f"the job could not be carried on after a restart: {exc}")

    async def close(self) -> None:
        """Stop following operators (they keep running and are re-attached at the next start)."""
        await self.forget_all()
        await self.services.close()
        await self._runtime.close()

    async def forget_all(self) -> None:
        """Stop following every job without touching its operators: they are another's to carry on now."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for run in self._runs.values():
            if run.deadline is not None:
                run.deadline.cancel()
        self._runs.clear()

    def runs(self, job_id: str) -> bool:
        """Whether this executor runs the job now."""
        return job_id in self._runs

    # -- scheduling ----------------------------------------------------------------------------------------

    async def _submit_ready(self, run: JobRun) -> None:
        names = run.ready()
        for name in names:  # marked at once: a concurrent call must not submit them too
            run.submitted.add(name)
            run.ready_since[name] = time.monotonic()
        try:
            ready = [
                Ready((run.job.id, n), run.job.priority, await self.waits_for(run.model.operator(n))) for n in names
            ]
            await self.queue.submit(ready)
        except BaseException:  # not queued after all: the next call submits them again
            run.submitted.difference_update(names)
            raise

    def blocked(self, limit: int) -> list[tuple[str, str, tuple[str, ...]]]:
        """Up to ``limit`` operators of the jobs this process runs that wait for upstream operators:
        (job id, operator, the upstream operators not completed)."""
        found = ((job_id, name, upstream) for job_id, run in self._runs.items() for name, upstream in run.blocked())
        return list(itertools.islice(found, limit))

    async def waits_for(self, operator: Operator) -> Demand:
        """What the operator waits for: its requests, and those of its services that do not run."""
        if not self.services.services_of(operator):
            return demand(operator)
        return plus(demand(operator), await self.services.demand(operator))

    async def pump(self) -> None:
        """Start what the queue grants now (once adoptions in progress are done: see :meth:`adopt`)."""
        if self._adopting:
            return
        for grant in await self.queue.take(self._runs.keys()):
            job_id, name = grant.key
            run = self._runs.get(job_id)
            if run is None or run.ending:
                await self.queue.release((job_id, name))
                continue
            self._spawn(self._run_operator(run, name, grant))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        # A fresh context: operator work outlives the RPC that triggered it and must not log as that RPC.
        task = asyncio.create_task(work, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("executor task failed", exc_info=task.exception())

    # -- one operator --------------------------------------------------------------------------------------

    def _spec(
        self,
        run: JobRun,
        operator: Operator,
        gpu_ids: tuple[str, ...],
        services: ServicesInUse = NO_SERVICES,
        node: str = "",
    ) -> OperatorSpec:
        payload_dir = self._store.path(run.job.payload_id)
        return OperatorSpec(
            job_id=run.job.id,
            operator=operator.name,
            image=operator.container.reference,
            command=operator.container.command,
            env={**environment.variables(run.job, operator, gpu_ids), **services.env},
            joins=services.joins,
            mounts=environment.mounts(operator, payload_dir) + services.mounts,
            cpu=operator.requests.cpu,
            memory_mb=operator.requests.memory,
            gpu_ids=gpu_ids,
            log_path=self.log_path(run.job.id, operator.name),
            labels={
                JOB_LABEL: run.job.id,
                OPERATOR_LABEL: operator.name,
                INSTANCE_LABEL: self.settings.instance,
            },
            user=self._user,
            pids_limit=self.settings.limits.pids,
            max_log_bytes=self.settings.limits.log_mb * MIB,
            node=node,
        )

    async def _run_operator(self, run: JobRun, name: str, grant: OperatorGrant) -> None:
        if run.ending:  # the job ended between the grant and this task: start nothing for it
            await self.queue.release((run.job.id, name))
            return
        operator = run.model.operator(name)
        starting = partial(
            job_table.operator_starting,
            job_id=run.job.id,
            name=name,
            gpu_ids=grant.gpu_ids,
            at=ids.now(),
            owner=self._replica,
            node=grant.node,
        )
        if not await self._db.write(starting):  # it ended, or another replica took it over: not ours to run
            await self.queue.release((run.job.id, name))
            await self._ended_elsewhere(run)
            return
        try:
            uses = self.services.services_of(operator)
            services, grant = await self.services.use(operator, grant) if uses else (NO_SERVICES, grant)
        except ServicesNeedResources:  # a service it needs stopped after it was queued: queue it again
            await self.queue.release((run.job.id, name))
            if (lacks := self.queue.lacks(await self.waits_for(operator))) is not None:
                await self._not_started(run, name, ServiceFailure(f"its services stopped; with them again it {lacks}"))
                return
            await self._db.write(lambda conn: job_table.operator_not_started(conn, run.job.id, name))
            run.submitted.discard(name)
            if not run.ending:
                await self._submit_ready(run)
            await self.pump()
            return
        except ServiceFailure as exc:
            await self._not_started(run, name, exc)
            return
        run.services[name] = services.instances
        try:
            outputs.prepare(self._output_dirs(run, name), self._user)
            started = time.monotonic()
            handle = await self._runtime.start(self._spec(run, operator, grant.gpu_ids, services, grant.node))
            self._metrics.runtime_start_seconds.labels(self._runtime.name).observe(time.monotonic() - started)
            self._metrics.queue_wait_seconds.labels(run.job.priority.name.lower()).observe(
                started - run.ready_since.pop(name, started)
            )
        except Exception as exc:  # RuntimeFailure, OSError, or a client library's own: the operator never ran
            await self._not_started(run, name, exc)
            return
        # Known to the job only now: a job that ended before this line is stopped by the check below, one that
        # ends after it by _end, never both.
        run.handles[name] = handle
        self._record_runtime_id_later(run, name, handle)
        log.info(
            "operator started", job_id=run.job.id, operator=name, runtime_id=handle.runtime_id, gpus=list(grant.gpu_ids)
        )
        self._arm_deadline(run, ids.now())
        self._watch_outputs(run)
        if run.ending:  # the job ended while this operator was starting
            self._spawn(handle.stop(self.settings.stop_grace))
        await self._follow(run, name, handle)

    def _record_runtime_id_later(self, run: JobRun, name: str, handle: Handle) -> None:
        def record_if_running() -> None:
            # Not if it ended (its end records it) or this process no longer follows the job (closed, taken over).
            if run.handles.get(name) is handle and self._runs.get(run.job.id) is run:
                job_id, runtime_id = run.job.id, handle.runtime_id
                self._spawn(self._db.write(lambda conn: job_table.operator_runtime_id(conn, job_id, name, runtime_id)))

        asyncio.get_running_loop().call_later(self.settings.runtime_id_delay, record_if_running)

    async def _not_started(self, run: JobRun, name: str, exc: Exception) -> None:
        """The operator (recorded as starting) could not start: it faults its job."""
        reason = f"operator {name!r} could not start: {exc}"
        await self._record_exit(run, name, Exit(-1, str(exc)), ends_job=(JobStatus.FAULTED, reason))
        await self.queue.release((run.job.id, name))  # after its end is recorded, as in _follow
        self.services.done(run.services.pop(name, ()))
        await self.pump()

    async def _follow(self, run: JobRun, name: str, handle: Handle) -> None:
        """Wait for the operator to end (its own timeout applies), then move the job on."""
        limit = run.model.operator(name).timeout
        try:
            async with asyncio.timeout(limit):
                exit = await _wait(handle)
        except TimeoutError:
            await self._end(run, JobStatus.TERMINATED, f"operator {name!r} timed out after {limit} s")
            exit = await _wait(handle)
        del run.handles[name]
        exit = await self._check_outputs(run, name, exit)
        outcome = None if run.ending else self._outcome(run, name, exit)
        await self._record_exit(run, name, exit, handle.runtime_id, ends_job=outcome)
        # Only once its end is recorded: released earlier, its resources could go to an operator recorded
        # RUNNING while this one still was, and a crash then would leave more RUNNING than the node holds.
        await self.queue.release((run.job.id, name))
        self.services.done(run.services.pop(name, ()))
        if outcome is None and not run.ending:
            await self._submit_ready(run)
        self._forget_if_done(run)
        await self.pump()

    # -- outputs and logs: limits ------------------------------------------------------------------------

    @property
    def _user(self) -> tuple[int, int]:
        return self.settings.limits.uid, self.settings.limits.gid

    def _output_dirs(self, run: JobRun, *names: str) -> list[Path]:
        """The output folders of these operators of the job (of all of them when none is named)."""
        payload_dir = self._store.path(run.job.payload_id)
        chosen = [run.model.operator(n) for n in names] if names else run.model.operators
        return [folder for op in chosen for folder in environment.output_dirs(op, payload_dir)]

    def _over_quota(self, used: int) -> str | None:
        quota = self.settings.limits.output_mb
        if used <= quota * MIB:
            return None
        return f"the job's outputs take {used / MIB:.1f} MiB, over its quota of {quota} MiB (CLARET_MAX_OUTPUT_MB)"

    def _watch_outputs(self, run: JobRun) -> None:
        """While the job has running operators, measure its outputs now and then; over the quota, it faults."""
        if run.watching_outputs or run.ending or not self._output_dirs(run):
            return
        run.watching_outputs = True

        async def watch() -> None:
            try:
                while run.handles and not run.ending:
                    await asyncio.sleep(OUTPUT_CHECK_INTERVAL)
                    problem = self._over_quota(await asyncio.to_thread(outputs.usage, self._output_dirs(run)))
                    if problem is not None and not run.ending:
                        names = ", ".join(repr(n) for n in run.handles)
                        await self._end(run, JobStatus.FAULTED, f"operator(s) {names} stopped: {problem}")
            finally:
                run.watching_outputs = False

        self._spawn(watch())

    async def _check_outputs(self, run: JobRun, name: str, exit: Exit) -> Exit:
        """After an operator ended: sweep its outputs (no setuid file, nothing owned by root), note a cut
        log (or what the runtime said of a success) in the job's messages, and fail it when the job's
        outputs went over the quota."""
        own, every = self._output_dirs(run, name), self._output_dirs(run)
        measure = exit.code == 0 and not run.ending

        def settle() -> int:  # one trip to a thread: sweep this operator's folders, measure the job's
            outputs.sweep(own, self._user)
            return outputs.usage(every) if measure else 0

        try:
            problem = self._over_quota(await asyncio.to_thread(settle)) if own or (measure and every) else None
        except Exception:  # the operator's end must be recorded whatever its files did to the sweep
            log.exception("cannot sweep an operator's outputs", job_id=run.job.id, operator=name)
            problem = None
        notes = [f"operator {name!r}: {exit.message}"] if exit.code == 0 and exit.message else []
        if exit.log_truncated:
            notes.append(f"operator {name!r}: log truncated at {self.settings.limits.log_mb} MiB (CLARET_MAX_LOG_MB)")
        if notes:  # a failure says its own in the job's end
            await self._db.write(partial(job_table.add_messages, job_id=run.job.id, messages=notes))
        return exit if problem is None else Exit(-1, problem, exit.log_truncated)

    def _outcome(self, run: JobRun, name: str, exit: Exit) -> tuple[JobStatus, str] | None:
        """How the job ends because this operator ended, or None when it goes on."""
        if exit.evicted:
            return JobStatus.EVICTED, f"operator {name!r} was lost: {exit.message}"
        if exit.code != 0:
            detail = f": {exit.message}" if exit.message else ""
            return JobStatus.FAULTED, f"operator {name!r} exited with code {exit.code}{detail}"
        run.completed.add(name)
        return (JobStatus.HEALTHY, "") if run.finished() else None

    async def _record_exit(
        self, run: JobRun, name: str, exit: Exit, runtime_id: str = "", ends_job: tuple[JobStatus, str] | None = None
    ) -> None:
        """Record the operator's end, and the job's when this ends it: one transaction either way."""
        status = OperatorStatus.COMPLETED if exit.code == 0 else OperatorStatus.FAULTED
        self._metrics.operators_finished.labels(status.name.lower()).inc()
        log.info("operator ended", job_id=run.job.id, operator=name, runtime_id=runtime_id, exit_code=exit.code)
        finished = partial(
            job_table.operator_finished,
            job_id=run.job.id,
            name=name,
            status=status,
            exit_code=exit.code,
            at=ids.now(),
            runtime_id=runtime_id or None,
        )
        if ends_job is None:
            await self._db.write(finished)
        else:
            await self._end(run, *ends_job, also=finished)

    # -- ending a job --------------------------------------------------------------------------------------

    def _arm_deadline(self, run: JobRun, started: float) -> None:
        """End the job TERMINATED once its timeout has passed since ``started`` (its first operator's start),
        unless armed already."""
        timeout = run.job.timeout or self.settings.default_timeout
        if run.deadline is None and not run.ending:
            run.deadline = asyncio.get_running_loop().call_later(
                max(started + timeout - ids.now(), 0),
                lambda: self._spawn(self._end(run, JobStatus.TERMINATED, f"job timed out after {timeout:g} s")),
            )

    async def _end(
        self, run: JobRun, status: JobStatus, message: str, also: Callable[[Connection], object] | None = None
    ) -> None:
        """End the job once: withdraw what waits, record why (with ``also`` in the same transaction), stop
        what runs."""
        if run.ending:
            if also is not None:
                await self._db.write(also)
            return
        await self._stop_waiting(run)
        messages = [message] if message else []

        def record(conn: Connection) -> None:
            if also is not None:
                also(conn)
            job_table.finish(conn, run.job.id, status, messages, ids.now())

        await self._db.write(record)
        log.info("job ended", job_id=run.job.id, status=status.name, reason=message)
        for handle in list(run.handles.values()):
            self._spawn(handle.stop(self.settings.stop_grace))
        self._forget_if_done(run)

    async def _stop_waiting(self, run: JobRun) -> None:
        run.ending = True
        if run.deadline is not None:
            run.deadline.cancel()
        await self.queue.withdraw([(run.job.id, name) for name in run.submitted - run.completed - run.handles.keys()])

    async def _ended_elsewhere(self, run: JobRun) -> None:
        """Stop carrying on a job that ended, or changed hands, behind this executor's back: the operators of
        an ended job are stopped, those of a job another replica took over are left to it."""
        job = await self._db.read(partial(job_table.get, job_id=run.job.id, files=False))
        if not run.ending:
            await self._stop_waiting(run)
            log.info("job ended or taken over elsewhere", job_id=run.job.id)
        if job is None or job.stopped is not None:
            for handle in list(run.handles.values()):
                self._spawn(handle.stop(self.settings.stop_grace))
        self._forget_if_done(run)

    def _forget_if_done(self, run: JobRun) -> None:
        if run.ending and not run.handles:
            self._runs.pop(run.job.id, None)

    # -- restart recovery ----------------------------------------------------------------------------------

    async def _recover_job(self, job: JobRecord, operators: list[OperatorRecord]) -> None:
        try:
            model = self.load(job)
        except Exception as exc:  # the definition loaded at Start; a change of rules since must not wedge us
            run = JobRun(job=job, model=Pipeline(api_version="0.0.0", name=job.name))
            await self._end(run, JobStatus.EVICTED, f"the job's definition no longer loads: {exc}")
            return
        run = JobRun(
            job=job,
            model=model,
            completed={op.name for op in operators if op.status is OperatorStatus.COMPLETED},
            submitted={op.name for op in operators if op.status is not OperatorStatus.PENDING},
        )
        self._runs[job.id] = run
        lost: dict[str, str] = {}  # operator -> why it cannot be carried on
        for op in operators:
            if op.status is OperatorStatus.RUNNING and (why := await self._reattach(run, op)) is not None:
                lost[op.name] = why
        faulted = [op.name for op in operators if op.status is OperatorStatus.FAULTED]
        if lost:

            def lost_ended(conn: Connection) -> None:
                for name in lost:
                    job_table.operator_finished(conn, job.id, name, OperatorStatus.FAULTED, None, ids.now())

            await self._end(
                run,
                JobStatus.EVICTED,
                "; ".join(f"operator {name!r} {why}" for name, why in lost.items()),
                also=lost_ended,
            )
            for name in lost:  # what a shared ledger still holds for them goes back
                await self.queue.release((job.id, name))
        elif faulted:
            await self._end(run, JobStatus.FAULTED, f"operator(s) {', '.join(faulted)} failed")
        elif run.finished():
            await self._end(run, JobStatus.HEALTHY, "")
        else:
            # Operators queued again (never started) no longer count: their old start time was cleared.
            carried_on = run.handles.keys() | run.completed
            started = [op.started for op in operators if op.started is not None and op.name in carried_on]
            if started:
                self._arm_deadline(run, min(started))
            await self._submit_ready(run)

    async def _reattach(self, run: JobRun, record: OperatorRecord) -> str | None:
        """Follow an operator that was running before the restart; without a recorded runtime id (a crash
        right after the start) the runtime looks for it by its job and operator names. Returns why it cannot
        be carried on, or None (re-attached, or queued again when it provably never started)."""
        operator = run.model.operator(record.name)
        spec = self._spec(run, operator, record.gpu_ids, node=record.node)
        try:
            handle = await self._runtime.attach(spec, record.runtime_id)
        except NeverStarted as reason:
            await self._db.write(lambda conn: job_table.operator_not_started(conn, run.job.id, record.name))
            await self.queue.release((run.job.id, record.name))  # a shared ledger may still hold its grant
            run.submitted.discard(record.name)  # queued again below, with a fresh grant
            log.info(
                "operator never started; queued again", job_id=run.job.id, operator=record.name, reason=str(reason)
            )
            return None
        except Exception as exc:
            log.exception("cannot re-attach", job_id=run.job.id, operator=record.name)
            return f"could not be found again after a restart of the jobs service: {exc}"
        if handle is None:
            return "was lost while the jobs service was down"
        try:
            await self.queue.restore(Grant((run.job.id, record.name), demand(operator), record.gpu_ids, record.node))
        except CannotHold as exc:  # the node changed (fewer GPUs, less memory): it cannot be held any more
            log.warning("cannot hold a re-attached operator", job_id=run.job.id, operator=record.name, reason=str(exc))
            await handle.stop(0)
            await _wait(handle)  # what removes its container, or its control group
            return f"was stopped: this node can no longer hold what it was granted ({exc})"
        run.handles[record.name] = handle
        run.services[record.name] = self.services.hold_again(operator)
        if record.runtime_id != handle.runtime_id:  # found by name: remember where it is from now on
            await self._db.write(lambda c: job_table.operator_runtime_id(c, run.job.id, record.name, handle.runtime_id))
        self._spawn(self._follow(run, record.name, handle))
        self._watch_outputs(run)
        log.info("operator re-attached", job_id=run.job.id, operator=record.name, runtime_id=handle.runtime_id)
        return None
