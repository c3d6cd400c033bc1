"""The jobs service: Jobs RPCs, the scheduler and runtimes, the platform's Clara service, and Claret's own
scheduling API (what the queue holds)."""

from __future__ import annotations

import asyncio

from protos.claret_api import scheduling_pb2_grpc
from protos.nvidia.clara.platform import clara_pb2_grpc, jobs_pb2_grpc
from services.jobs import job_table
from services.jobs.clara_servicer import ClaraServicer
from services.jobs.manager import JobManager
from services.jobs.queue import OperatorQueue
from services.jobs.runtimes import open_runtime
from services.jobs.scheduling_servicer import SchedulingServicer
from services.jobs.servicer import JobsServicer
from services.jobs.topology import open_topology
from shared import metrics
from shared.resources import Resources
from shared.server import Service, ServicerSet

JOBS = "nvidia.clara.platform.Jobs"
CLARA = "nvidia.clara.platform.Clara"
SCHEDULING = "claret.jobs.Scheduling"


def granted(queue: OperatorQueue) -> dict[str, tuple[float, float]]:
    """(granted, total) of each resource this node's queue hands out, for the metrics endpoint."""
    total, free = queue.capacity, queue.free
    return {
        "gpus": (len(total.gpu_ids) - len(free.gpu_ids), len(total.gpu_ids)),
        "cpus": (total.cpus - free.cpus, total.cpus),
        "memory_mb": (total.memory_mb - free.memory_mb, total.memory_mb),
    }


async def build(resources: Resources) -> Service:
    """The jobs service as this process runs it: its topology (one process or replicas), the Jobs and Clara
    servicers over it, and the metrics that describe it."""
    settings = resources.settings
    runtime = await open_runtime(settings)
    topology = open_topology(resources.db, resources.payloads, runtime, settings, resources.metrics)
    manager = JobManager(resources.db, resources.payloads, topology)
    queue = topology.executor.queue
    loop = asyncio.get_running_loop()

    def count() -> metrics.Counts:  # on the metrics server's thread
        return asyncio.run_coroutine_threadsafe(resources.db.read(job_table.counts), loop).result(timeout=10)

    collectors = [
        metrics.DatabaseCollector(count),
        metrics.CapacityCollector(settings.node_name, lambda: granted(queue)),
    ]

    async def start() -> None:
        for collector in collectors:
            resources.metrics.register(collector)
        await topology.start()

    async def stop() -> None:
        await topology.stop()
        for collector in collectors:
            resources.metrics.unregister(collector)

    async def stop_all() -> None:
        await topology.stop_all("the platform was asked to stop (Clara.Stop)")

    return ServicerSet(
        [
            (JOBS, JobsServicer(manager, resources.metrics), jobs_pb2_grpc.add_JobsServicer_to_server),
            (CLARA, ClaraServicer(resources.metrics, stop_all), clara_pb2_grpc.add_ClaraServicer_to_server),
            (
                SCHEDULING,
                SchedulingServicer(resources.db, topology.executor, resources.metrics),
                scheduling_pb2_grpc.add_SchedulingServicer_to_server,
            ),
        ],
        on_start=[start],
        on_stop=[stop],
        checks=[resources.db.problem, runtime.problem],
    )
