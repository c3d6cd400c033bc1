"""Claret's scheduling API (``claret.jobs.Scheduling``, protos/claret_api/scheduling.proto): what the jobs
service's queue holds now, for the web console's queue and GPU pages and ``claret queue``.

A thin translation of :meth:`~services.jobs.queue.OperatorQueue.view` (nodes, grants held, waiting operators
in decision order with why they wait), the executor's operators waiting for upstream ones, and the pipeline
services this process knows; grants get their start times from the database.
"""

from __future__ import annotations

from protos.claret_api import scheduling_pb2 as pb
from protos.claret_api import scheduling_pb2_grpc
from services.jobs import job_table
from services.jobs.executor import Executor
from services.jobs.queue import QueueView
from services.jobs.scheduler import Capacity
from services.jobs.services import Instance
from shared.db import Database
from shared.metrics import Metrics
from shared.wire import Context, Servicer, answered, rows_wanted


def resources(capacity: Capacity) -> pb.SchedulingResources:
    return pb.SchedulingResources(cpus=capacity.cpus, memory_mb=capacity.memory_mb, gpu_ids=capacity.gpu_ids)


def service(instance: Instance) -> pb.SchedulingService:
    ready = instance.ready.done() and not instance.ready.cancelled() and instance.ready.exception() is None
    return pb.SchedulingService(
        id=instance.id,
        name=instance.name,
        image=instance.identity[0],
        users=instance.users,
        ready=ready,
        gpu_ids=instance.grant.gpu_ids if instance.grant is not None else (),
    )


def snapshot(
    view: QueueView, started: dict[tuple[str, str], float], blocked: list[tuple[str, str, tuple[str, ...]]]
) -> pb.SchedulingSnapshotResponse:
    return pb.SchedulingSnapshotResponse(
        nodes=[
            pb.SchedulingNode(name=name, capacity=resources(capacity), free=resources(free))
            for name, (capacity, free) in view.nodes.items()
        ],
        held=[
            pb.SchedulingGrant(
                job_id=grant.key[0],
                operator=grant.key[1],
                node=grant.node,
                cpu=grant.demand.cpu,
                memory_mb=grant.demand.memory_mb,
                gpu_ids=grant.gpu_ids,
                since=started.get(grant.key, 0.0),
            )
            for grant in view.held
        ],
        waiting=[
            pb.SchedulingWaiting(
                job_id=entry.key[0],
                operator=entry.key[1],
                priority=entry.priority.name.lower(),
                cpu=entry.demand.cpu,
                memory_mb=entry.demand.memory_mb,
                gpus=entry.demand.gpus,
                waited=max(view.clock - entry.since, 0.0),
                reason=entry.reason,
            )
            for entry in view.waiting
        ],
        waiting_total=view.waiting_total,
        blocked=[pb.SchedulingBlocked(job_id=job, operator=name, upstream=up) for job, name, up in blocked],
    )


class SchedulingServicer(Servicer, scheduling_pb2_grpc.SchedulingServicer):
    def __init__(self, db: Database, executor: Executor, metrics: Metrics) -> None:
        super().__init__(metrics)
        self._db = db
        self._executor = executor

    @answered
    async def Snapshot(self, request: pb.SchedulingSnapshotRequest, context: Context) -> pb.SchedulingSnapshotResponse:
        limit = rows_wanted(request.limit)
        view = await self._executor.queue.view(limit)
        keys = {grant.key for grant in view.held}
        started = await self._db.read(lambda conn: job_table.started_times(conn, keys)) if keys else {}
        answer = snapshot(view, started, self._executor.blocked(limit))
        answer.services.extend(service(instance) for instance in self._executor.services.instances())
        return answer


__all__ = ["SchedulingServicer", "snapshot"]
