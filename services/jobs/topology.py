"""How a jobs process stands among others: alone, or one of several replicas sharing the database.

The one place that knows. :func:`open_topology` builds the queue, the executor and (for replicas) the
replica loop once, from the settings; everything else asks the topology: what to carry on after a restart,
where a Cancel goes, how to start, stop and Clara.Stop.

* :class:`SingleProcess` (``CLARET_QUEUE=local``, the default): an in-memory queue; this process runs every
  job, so after a restart it carries on every job that was in flight. With the swarm runtime its queue holds
  the swarm's nodes (:class:`SwarmNodes`) instead of this machine's resources.
* :class:`Replicas` (``CLARET_QUEUE=database``): the queue and ledger in the database; each replica runs the
  jobs it started and carries on its own (and orphans) after a restart; a Cancel of a job another replica
  runs is written for that replica to act on (:mod:`services.jobs.replicas`).
"""

from __future__ import annotations

from typing import Protocol

from services.jobs import queue_table
from services.jobs.executor import Executor, ExecutorSettings
from services.jobs.model import JobRecord, JobStatus
from services.jobs.queue import WAKE_CHANNEL, LocalQueue, OperatorKey, SharedQueue
from services.jobs.replicas import ReplicaLoop
from services.jobs.runtimes.base import Runtime
from services.jobs.runtimes.swarm import NodeCapacities, SwarmRuntime
from services.jobs.scheduler import Capacity, Scheduler
from shared import gpus
from shared.config import Settings
from shared.db import Database
from shared.metrics import Metrics
from shared.payload_store import PayloadStore

__all__ = ["Replicas", "SingleProcess", "SwarmNodes", "Topology", "open_topology"]


class Topology(Protocol):
    """What differs between one jobs process and several."""

    @property
    def executor(self) -> Executor: ...

    async def start(self) -> None:
        """Carry on what was in flight, then begin (before the server answers)."""
        ...

    async def stop(self) -> None:
        """Stop following operators (they keep running: the next start re-attaches them)."""
        ...

    async def cancel(self, job: JobRecord, message: str) -> None:
        """End a job that has not stopped, wherever it runs (it may return before its operators are gone)."""
        ...

    async def stop_all(self, reason: str) -> None:
        """Clara.Stop: halt every pipeline service of this node and release what they hold (jobs go on)."""
        ...


class SingleProcess:
    """One jobs process runs every job."""

    def __init__(self, executor: Executor, nodes: SwarmNodes | None = None) -> None:
        self._executor = executor
        self._nodes = nodes

    @property
    def executor(self) -> Executor:
        return self._executor

    async def start(self) -> None:
        if self._nodes is not None:  # before recovery: re-attached operators are held again on their nodes
            await self._nodes.start()
        await self._executor.recover(every=True)

    async def stop(self) -> None:
        await self._executor.close()

    async def cancel(self, job: JobRecord, message: str) -> None:
        await self._executor.end(job.id, JobStatus.CANCELED, message)

    async def stop_all(self, reason: str) -> None:
        await self._executor.services.stop_all(reason)


class Replicas:
    """This process as one of several jobs replicas sharing the database's queue and ledger."""

    def __init__(self, db: Database, executor: Executor, loop: ReplicaLoop) -> None:
        self._db = db
        self._executor = executor
        self._loop = loop

    @property
    def executor(self) -> Executor:
        return self._executor

    async def start(self) -> None:
        await self._loop.register()  # heartbeats first: no other replica takes our jobs while we recover
        await self._executor.recover(every=False)
        await self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        await self._executor.close()
        await self._loop.leave()

    async def cancel(self, job: JobRecord, message: str) -> None:
        if job.queued is None or self._executor.runs(job.id):  # never started, or ours: end it here
            await self._executor.end(job.id, JobStatus.CANCELED, message)
            return
        # Its owner (maybe this replica, adopting it right now) ends it at its next look.
        await self._db.write(lambda conn: queue_table.request_cancel(conn, job.id, message))
        await self._db.notify(WAKE_CHANNEL)

    async def stop_all(self, reason: str) -> None:
        await self._executor.services.stop_all(reason)  # also the other replicas' on this node


class SwarmNodes:
    """Keeps the queue's nodes those the swarm has (ready and active), from the start and as they change;
    an operator waiting for room may start as soon as a node joins or comes back."""

    def __init__(self, runtime: SwarmRuntime, scheduler: Scheduler[OperatorKey], executor: Executor) -> None:
        self._runtime = runtime
        self._scheduler = scheduler
        self._executor = executor

    async def start(self) -> None:
        self._scheduler.set_nodes(await self._runtime.nodes())
        self._runtime.follow_nodes(self._changed)

    async def _changed(self, nodes: NodeCapacities) -> None:
        self._scheduler.set_nodes(nodes)
        await self._executor.pump()


def open_topology(
    db: Database, store: PayloadStore, runtime: Runtime, settings: Settings, metrics: Metrics
) -> Topology:
    """The topology ``settings.queue`` names, with this node's capacity, its queue and its executor."""
    capacity = Capacity(cpus=settings.cpus, memory_mb=settings.memory_mb, gpu_ids=gpus.discover(settings.gpus))
    executor_settings = ExecutorSettings.of(settings)
    if isinstance(runtime, SwarmRuntime):
        if settings.queue == "database":
            raise ValueError(
                "the swarm runtime places operators on the swarm's nodes from one queue: run one jobs process "
                "with CLARET_QUEUE=local (Swarm spreads the operators, not the jobs processes)"
            )
        scheduler: Scheduler[OperatorKey] = Scheduler({})  # the swarm's nodes, once SwarmNodes started
        executor = Executor(db, store, runtime, LocalQueue(scheduler), executor_settings, metrics)
        return SingleProcess(executor, SwarmNodes(runtime, scheduler, executor))
    if settings.queue == "database":
        shared = SharedQueue(db, capacity, node=settings.node_name, replica=settings.replica_id)
        executor = Executor(db, store, runtime, shared, executor_settings, metrics)
        loop = ReplicaLoop(
            db,
            executor,
            replica=settings.replica_id,
            node=settings.node_name,
            poll=settings.queue_poll,
            takeover_after=settings.takeover_after,
        )
        return Replicas(db, executor, loop)
    local = LocalQueue(Scheduler(capacity))
    return SingleProcess(Executor(db, store, runtime, local, executor_settings, metrics))
