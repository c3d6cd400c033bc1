"""The jobs service: Jobs RPCs, the scheduler and runtimes, and the platform's Clara service."""

from __future__ import annotations

from protos.nvidia.clara.platform import clara_pb2_grpc, jobs_pb2_grpc
from services.jobs.clara_servicer import ClaraServicer
from services.jobs.executor import Executor
from services.jobs.manager import JobManager
from services.jobs.runtimes import open_runtime
from services.jobs.scheduler import Capacity, Scheduler
from services.jobs.servicer import JobsServicer
from shared import gpus, metrics
from shared.resources import Resources
from shared.server import Service, ServicerSet

JOBS = "nvidia.clara.platform.Jobs"
CLARA = "nvidia.clara.platform.Clara"


def granted(scheduler: Scheduler) -> dict[str, tuple[float, float]]:
    """(granted, total) of each resource this node's scheduler hands out, for the metrics endpoint."""
    total, free = scheduler.capacity, scheduler.free
    return {
        "gpus": (len(total.gpu_ids) - len(free.gpu_ids), len(total.gpu_ids)),
        "cpus": (total.cpus - free.cpus, total.cpus),
        "memory_mb": (total.memory_mb - free.memory_mb, total.memory_mb),
    }


async def build(resources: Resources) -> Service:
    settings = resources.settings
    capacity = Capacity(cpus=settings.cpus, memory_mb=settings.memory_mb, gpu_ids=gpus.discover(settings.gpus))
    scheduler = Scheduler(capacity)
    runtime = await open_runtime(settings)
    executor = Executor(resources.db, resources.payloads, runtime, scheduler, settings)
    manager = JobManager(resources.db, resources.payloads, executor, settings)
    collectors = [
        metrics.DatabaseCollector(settings.database_path),
        metrics.CapacityCollector(gpus.node_name(), lambda: granted(scheduler)),
    ]

    async def start() -> None:
        for collector in collectors:
            metrics.register(collector)
        await executor.recover()

    async def stop() -> None:
        await executor.close()
        for collector in collectors:
            metrics.unregister(collector)

    async def stop_operators() -> None:
        await executor.stop_all("the platform was asked to stop (Clara.Stop)")

    return ServicerSet(
        [
            (JOBS, JobsServicer(manager), jobs_pb2_grpc.add_JobsServicer_to_server),
            (CLARA, ClaraServicer(stop_operators), clara_pb2_grpc.add_ClaraServicer_to_server),
        ],
        on_start=[start],
        on_stop=[stop],
        checks=[resources.db.problem, runtime.problem],
    )
