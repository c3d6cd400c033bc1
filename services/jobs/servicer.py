"""Jobs RPCs: wire translation over :mod:`services.jobs.manager`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

from protos.nvidia.clara.platform import jobs_pb2 as pb
from protos.nvidia.clara.platform import jobs_pb2_grpc
from services.jobs.manager import JobManager
from services.jobs.model import JobFilter, JobRecord, JobView, OperatorRecord
from shared import ids
from shared.errors import ClaretError, ErrorCode
from shared.metrics import Metrics
from shared.wire import Context, Servicer, identifier, ok_header, streaming, unary

# The model's enums carry the wire's numbers, so a record's value goes into a message as it is (the casts: the
# generated stubs type an enum field as its wrapper class, which the number is at run time). Replies are built
# in one constructor call, nested messages as dicts: Status is the most polled RPC, and building its reply from
# a score of sub-message objects cost more than reading the job (bench/status_rate.py).


def state(job: JobRecord) -> pb.JobState:
    return cast(pb.JobState, int(job.state))


def status(job: JobRecord) -> pb.JobStatus:
    return cast(pb.JobStatus, int(job.status))


def priority(job: JobRecord) -> pb.JobPriority:
    return cast(pb.JobPriority, int(job.priority))


def _id(value: str | None) -> dict[str, str]:
    return {"value": value or ""}


def _time(unix: float | None) -> dict[str, int]:
    return {"value": ids.to_dotnet(unix)}


def operator_details(op: OperatorRecord) -> dict[str, object]:
    """A ``JobOperatorDetails``, as the dict its constructor takes."""
    return {
        "name": op.name,
        "status": int(op.status),
        "created": _time(op.created),
        "started": _time(op.started),
        "stopped": _time(op.stopped),
    }


def dag(operators: list[OperatorRecord]) -> list[dict[str, object]]:
    """One ``JobDagNode`` per operator; its direct upstream operators as ``input_dependencies`` (names only)."""
    return [{"name": op.name, "input_dependencies": [{"name": up} for up in op.upstream]} for op in operators]


def status_response(view: JobView) -> pb.JobsStatusResponse:
    job = view.job
    return pb.JobsStatusResponse(
        header={"code": 0},
        job_id=_id(job.id),
        pipeline_id=_id(job.pipeline_id),
        payload_id=_id(job.payload_id),
        state=state(job),
        status=status(job),
        name=job.name,
        priority=priority(job),
        created=_time(job.created),
        started=_time(job.started),
        stopped=_time(job.stopped),
        operator_details=[operator_details(op) for op in view.operators],
        metadata=job.metadata,
        dag=dag(view.operators),
        messages=job.messages,
        timestamp_created=ids.legacy_time(job.created),
        timestamp_started=ids.legacy_time(job.started),
        timestamp_stopped=ids.legacy_time(job.stopped),
    )


def list_details(job: JobRecord) -> dict[str, object]:
    """A ``JobsListResponse.JobDetails``, as the dict its constructor takes."""
    return {
        "job_id": _id(job.id),
        "payload_id": _id(job.payload_id),
        "pipeline_id": _id(job.pipeline_id),
        "job_name": job.name,
        "state": int(job.state),
        "status": int(job.status),
        "priority": int(job.priority),
        "created": _time(job.created),
        "started": _time(job.started),
        "stopped": _time(job.stopped),
        "metadata": job.metadata,
        "timestamp_created": ids.legacy_time(job.created),
        "timestamp_started": ids.legacy_time(job.started),
        "timestamp_stopped": ids.legacy_time(job.stopped),
    }


def job_filter(wire: pb.JobsListRequest.JobFilter) -> JobFilter:
    return JobFilter(
        states=tuple(int(s) for s in wire.has_state),
        statuses=tuple(int(s) for s in wire.has_status),
        pipeline_ids=tuple(ids.parse_id(p.value, ErrorCode.INVALID_PIPELINE_ID, "pipeline") for p in wire.pipeline_id),
        created_after=ids.from_dotnet(wire.created_after.value),
        completed_before=ids.from_dotnet(wire.completed_before.value),
    )


def variables(values: list[pb.JobsStartRequest.NamedValue]) -> dict[str, str]:
    found: dict[str, str] = {}
    for value in values:
        if value.name in found:
            raise ClaretError(ErrorCode.INVALID_VARIABLES, f"variable {value.name!r} is given twice")
        found[value.name] = value.value
    return found


class JobsServicer(Servicer, jobs_pb2_grpc.JobsServicer):
    def __init__(self, manager: JobManager, metrics: Metrics) -> None:
        super().__init__(metrics)
        self._manager = manager

    @unary(pb.JobsCreateResponse)
    async def Create(self, request: pb.JobsCreateRequest, context: Context) -> pb.JobsCreateResponse:
        job = await self._manager.create(
            request.pipeline_id.value,
            request.name,
            request.priority,
            [p.value for p in request.input_payloads],
            dict(request.metadata),
        )
        return pb.JobsCreateResponse(
            header=ok_header(), job_id=identifier(job.id), payload_id=identifier(job.payload_id)
        )

    @unary(pb.JobsStartResponse)
    async def Start(self, request: pb.JobsStartRequest, context: Context) -> pb.JobsStartResponse:
        job = await self._manager.start(request.job_id.value, variables(list(request.Variables)))
        return pb.JobsStartResponse(header=ok_header(), state=state(job), status=status(job), priority=priority(job))

    @unary(pb.JobsCancelResponse)
    async def Cancel(self, request: pb.JobsCancelRequest, context: Context) -> pb.JobsCancelResponse:
        job = await self._manager.cancel(request.job_id.value, request.reason)
        return pb.JobsCancelResponse(
            header=ok_header(), job_id=identifier(job.id), job_state=state(job), job_status=status(job)
        )

    @unary(pb.JobsStatusResponse)
    async def Status(self, request: pb.JobsStatusRequest, context: Context) -> pb.JobsStatusResponse:
        return status_response(await self._manager.status(request.job_id.value))

    @streaming(pb.JobsListResponse)
    async def List(self, request: pb.JobsListRequest, context: Context) -> AsyncIterator[pb.JobsListResponse]:
        for job in await self._manager.find(job_filter(request.filter)):
            yield pb.JobsListResponse(header={"code": 0}, job_details=list_details(job))

    @streaming(pb.JobsReadLogsResponse)
    async def ReadLogs(
        self, request: pb.JobsReadLogsRequest, context: Context
    ) -> AsyncIterator[pb.JobsReadLogsResponse]:
        batches = await self._manager.read_logs(request.job_id.value, request.operator_name)
        sent = False
        async for lines in batches:
            yield pb.JobsReadLogsResponse(
                header=ok_header(), job_id=request.job_id, operator_name=request.operator_name, logs=lines
            )
            sent = True
        if not sent:  # nothing logged yet: one message, so the caller still sees the header
            yield pb.JobsReadLogsResponse(
                header=ok_header(), job_id=request.job_id, operator_name=request.operator_name
            )

    @unary(pb.JobsAddMetadataResponse)
    async def AddMetadata(self, request: pb.JobsAddMetadataRequest, context: Context) -> pb.JobsAddMetadataResponse:
        metadata = await self._manager.add_metadata(request.job_id.value, dict(request.metadata))
        return pb.JobsAddMetadataResponse(header=ok_header(), job_id=request.job_id, metadata=metadata)

    @unary(pb.JobsRemoveMetadataResponse)
    async def RemoveMetadata(
        self, request: pb.JobsRemoveMetadataRequest, context: Context
    ) -> pb.JobsRemoveMetadataResponse:
        metadata = await self._manager.remove_metadata(request.job_id.value, request.keys)
        return pb.JobsRemoveMetadataResponse(header=ok_header(), job_id=request.job_id, metadata=metadata)
