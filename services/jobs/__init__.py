"""The jobs service: Jobs RPCs, the scheduler and runtimes, and the platform's Clara service."""

from __future__ import annotations

from protos.nvidia.clara.platform import clara_pb2_grpc, jobs_pb2_grpc
from services.jobs.clara_servicer import ClaraServicer
from services.jobs.executor import Executor
from services.jobs.manager import JobManager
from services.jobs.runtimes import open_runtime
from services.jobs.scheduler import Capacity, Scheduler
from services.jobs.servicer import JobsServicer
from shared import gpus
from shared.resources import Resources
from shared.server import Service, ServicerSet

JOBS = "nvidia.clara.platform.Jobs"
CLARA = "nvidia.clara.platform.Clara"


async def build(resources: Resources) -> Service:
    settings = resources.settings
    capacity = Capacity(cpus=settings.cpus, memory_mb=settings.memory_mb, gpu_ids=gpus.discover(settings.gpus))
    executor = Executor(resources.db, resources.payloads, await open_runtime(settings), Scheduler(capacity), settings)
    manager = JobManager(resources.db, resources.payloads, executor, settings)

    async def stop_operators() -> None:
        await executor.stop_all("the platform was asked to stop (Clara.Stop)")

    return ServicerSet(
        [
            (JOBS, JobsServicer(manager), jobs_pb2_grpc.add_JobsServicer_to_server),
            (CLARA, ClaraServicer(stop_operators), clara_pb2_grpc.add_ClaraServicer_to_server),
        ],
        on_start=[executor.recover],
        on_stop=[executor.close],
    )
