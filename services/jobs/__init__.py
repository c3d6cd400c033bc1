"""The jobs service: Jobs RPCs, the scheduler and runtimes, and the platform's Clara service."""

from __future__ import annotations

import asyncio

from protos.nvidia.clara.platform import clara_pb2_grpc, jobs_pb2_grpc
from services.jobs import job_table, queue_table
from services.jobs.clara_servicer import ClaraServicer
from services.jobs.executor import Executor
from services.jobs.manager import JobManager
from services.jobs.queue import WAKE_CHANNEL, LocalQueue, OperatorQueue, SharedQueue
from services.jobs.replicas import ReplicaLoop
from services.jobs.runtimes import open_runtime
from services.jobs.scheduler import Capacity, Scheduler
from services.jobs.servicer import JobsServicer
from shared import gpus, metrics
from shared.config import Settings
from shared.db import Database
from shared.resources import Resources
from shared.server import Service, ServicerSet

JOBS = "nvidia.clara.platform.Jobs"
CLARA = "nvidia.clara.platform.Clara"


def granted(queue: OperatorQueue) -> dict[str, tuple[float, float]]:
    """(granted, total) of each resource this node's queue hands out, for the metrics endpoint."""
    total, free = queue.capacity, queue.free
    return {
        "gpus": (len(total.gpu_ids) - len(free.gpu_ids), len(total.gpu_ids)),
        "cpus": (total.cpus - free.cpus, total.cpus),
        "memory_mb": (total.memory_mb - free.memory_mb, total.memory_mb),
    }


def open_queue(db: Database, settings: Settings) -> OperatorQueue:
    """This node's queue: in memory, or shared by jobs replicas through the database."""
    capacity = Capacity(cpus=settings.cpus, memory_mb=settings.memory_mb, gpu_ids=gpus.discover(settings.gpus))
    if settings.queue == "database":
        return SharedQueue(db, capacity, node=settings.node_name, replica=settings.replica_id)
    return LocalQueue(Scheduler(capacity))


async def build(resources: Resources) -> Service:
    settings = resources.settings
    queue = open_queue(resources.db, settings)
    runtime = await open_runtime(settings)
    executor = Executor(resources.db, resources.payloads, runtime, queue, settings)
    manager = JobManager(resources.db, resources.payloads, executor, settings)
    replicas = ReplicaLoop(resources.db, executor, settings) if settings.queue == "database" else None
    loop = asyncio.get_running_loop()

    def count() -> metrics.Counts:  # on the metrics server's thread
        return asyncio.run_coroutine_threadsafe(resources.db.read(job_table.counts), loop).result(timeout=10)

    collectors = [
        metrics.DatabaseCollector(count),
        metrics.CapacityCollector(settings.node_name, lambda: granted(queue)),
    ]

    async def start() -> None:
        for collector in collectors:
            metrics.register(collector)
        if replicas is not None:
            await replicas.register()
        await executor.recover()
        if replicas is not None:
            await replicas.start()

    async def stop() -> None:
        if replicas is not None:
            await replicas.stop()
        await executor.close()
        if replicas is not None:
            await replicas.leave()
        for collector in collectors:
            metrics.unregister(collector)

    async def stop_operators() -> None:
        reason = "the platform was asked to stop (Clara.Stop)"
        if replicas is not None:  # the other replicas stop theirs at their next look
            await resources.db.write(lambda conn: queue_table.request_cancel_all(conn, reason, settings.replica_id))
            await resources.db.notify(WAKE_CHANNEL)
        await executor.stop_all(reason)

    return ServicerSet(
        [
            (JOBS, JobsServicer(manager), jobs_pb2_grpc.add_JobsServicer_to_server),
            (CLARA, ClaraServicer(stop_operators), clara_pb2_grpc.add_ClaraServicer_to_server),
        ],
        on_start=[start],
        on_stop=[stop],
        checks=[resources.db.problem, runtime.problem],
    )
