"""What the platform answers, as typed values: frozen records and small enums instead of ``*_pb2`` messages.

The enums' members are made from the generated protobuf enums (``jobs_pb2.JobState.items()`` with the
``JOB_STATE_`` prefix dropped), so no number-to-name table is written here, and a value the protos gain
appears without an edit. They are IntEnums whose values are the wire numbers, so a member equals the
generated constant (``JobState.STOPPED == jobs_pb2.JOB_STATE_STOPPED``); ``wire_name`` gives the proto's
name back (``JOB_STATE_STOPPED``), which is what the CLI prints.

Times are timezone-aware UTC datetimes, or None where the wire has 0 ("not yet"). Each record is built by
a ``from_*`` class method from the message(s) that carry it; the client calls them, and tests may too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import EnumType, IntEnum, _EnumDict
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from claret.errors import ClientError
from protos.nvidia.clara.platform import jobs_pb2, models_pb2, payloads_pb2

if TYPE_CHECKING:
    from protos.claret_api import dicom_pb2, scheduling_pb2
    from protos.nvidia.clara.platform import clara_pb2, common_pb2, pipelines_pb2

__all__ = [
    "DOTNET_EPOCH",
    "BlockedOperator",
    "CanceledJob",
    "CreatedJob",
    "CreatedPipeline",
    "DefinitionFile",
    "DicomAeTitle",
    "DicomAssociation",
    "DicomDestination",
    "DicomExport",
    "DicomSource",
    "DicomStatus",
    "Gpu",
    "GpuProcess",
    "HeldGrant",
    "Job",
    "JobDagNode",
    "JobState",
    "JobStatus",
    "Model",
    "ModelList",
    "ModelType",
    "Operator",
    "OperatorStatus",
    "Payload",
    "PayloadFile",
    "PayloadType",
    "Pipeline",
    "PipelineNode",
    "PlatformVersion",
    "Priority",
    "QueueNode",
    "QueueSnapshot",
    "Room",
    "RunningService",
    "StartedJob",
    "WaitingOperator",
    "WireEnum",
    "moment",
    "unix_moment",
]

_T = TypeVar("_T")
DOTNET_EPOCH = datetime(1, 1, 1, tzinfo=UTC)
"""Wire timestamps count seconds from here (the .NET epoch the original platform used)."""


# Enums


class _WireEnumType(EnumType):
    """Makes an enum's members from a generated protobuf enum named in the class statement:
    ``class JobState(WireEnum, wire=jobs_pb2.JobState, prefix="JOB_STATE_")``."""

    _wire_prefix: str

    def __new__(metacls, cls: str, bases: tuple[type, ...], classdict: _EnumDict, **kwds: Any) -> _WireEnumType:
        # classdict is the class body's namespace (public as enum.EnumDict from Python 3.13): what is set in
        # it before the class is made becomes a member, exactly as a line of the body would.
        wire, prefix = kwds.pop("wire", None), kwds.pop("prefix", "")
        for name, number in wire.items() if wire is not None else ():
            classdict[name.removeprefix(prefix)] = number
        made = super().__new__(metacls, cls, bases, classdict, **kwds)
        made._wire_prefix = prefix
        return made

    def __getattr__(cls: type[_T], name: str) -> _T:
        # Reached only when ordinary lookup failed. It is here for the type checker, which cannot list members
        # made from a descriptor but learns from it that ``JobState.STOPPED`` is a JobState; at run time a
        # misspelt member still fails, naming the members there are.
        if name.startswith("_"):
            raise AttributeError(name)
        members = ", ".join(vars(cls).get("_member_names_", ()))
        raise AttributeError(f"{cls.__name__} has no member {name!r}; it has {members}")


class WireEnum(IntEnum, metaclass=_WireEnumType):
    """An enum of the Clara API: members named as in the proto without its prefix, valued as on the wire."""

    @property
    def wire_name(self) -> str:
        """The proto's name of the value (``JOB_STATE_STOPPED``)."""
        return type(self)._wire_prefix + self.name

    @classmethod
    def _missing_(cls, value: object) -> Self | None:
        # A newer platform may send a number these protos lack (proto3 enums are open): it reads as the
        # UNKNOWN (0) member every proto3 enum has, rather than failing the whole answer.
        return next((member for member in cls if member == 0), None) if isinstance(value, int) else None


class JobState(WireEnum, wire=jobs_pb2.JobState, prefix="JOB_STATE_"):
    """Where a job is in its life: PENDING (created or queued), RUNNING, STOPPED (UNKNOWN: never sent)."""


class JobStatus(WireEnum, wire=jobs_pb2.JobStatus, prefix="JOB_STATUS_"):
    """How a job is doing or ended: HEALTHY, FAULTED, CANCELED, EVICTED, TERMINATED."""


class OperatorStatus(WireEnum, wire=jobs_pb2.JobOperatorStatus, prefix="JOB_OPERATOR_STATUS_"):
    """Where one operator of a job is: PENDING, RUNNING, COMPLETED, FAULTED."""


class Priority(WireEnum, wire=jobs_pb2.JobPriority, prefix="JOB_PRIORITY_"):
    """A job's priority: LOWER, NORMAL, HIGHER, IMMEDIATE."""


class PayloadType(WireEnum, wire=payloads_pb2.PayloadType, prefix="PAYLOAD_TYPE_"):
    """PIPELINE (a job's payload) or REUSABLE (created on its own, shared by jobs)."""


class ModelType(WireEnum, wire=models_pb2.ModelType, prefix="MODEL_TYPE_"):
    """The inference toolset of a model: TENSOR_FLOW, TENSOR_RT, PY_TORCH or UNKNOWN."""


def moment(stamp: common_pb2.Timestamp) -> datetime | None:
    """A wire time as a UTC datetime; None for 0, the wire's "not yet"."""
    if stamp.value <= 0:
        return None
    try:
        return DOTNET_EPOCH + timedelta(seconds=stamp.value)
    except OverflowError:
        raise ClientError(f"the platform sent a time past the year 9999 ({stamp.value} s)") from None


def unix_moment(seconds: float) -> datetime | None:
    """A time of Claret's own APIs (unix seconds, fractions kept) as a UTC datetime; None for 0, "not yet"."""
    if seconds <= 0:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, ValueError, OSError):
        raise ClientError(f"the platform sent a time out of range ({seconds} s since 1970)") from None


def _frozen(mapping: Mapping[str, str]) -> Mapping[str, str]:
    """A read-only copy, so that a frozen record is frozen all the way down."""
    return MappingProxyType(dict(mapping))


def _no_metadata() -> Mapping[str, str]:
    return MappingProxyType({})


# Jobs


@dataclass(frozen=True)
class Operator:
    """One operator of a job, as Jobs.Status reports it."""

    name: str
    status: OperatorStatus
    created: datetime | None = None
    started: datetime | None = None
    stopped: datetime | None = None

    @property
    def done(self) -> bool:
        """Whether it has ended (COMPLETED or FAULTED): what a job's progress counts."""
        return self.status in (OperatorStatus.COMPLETED, OperatorStatus.FAULTED)

    @classmethod
    def from_wire(cls, details: jobs_pb2.JobsStatusResponse.JobOperatorDetails) -> Self:
        return cls(
            details.name,
            OperatorStatus(details.status),
            moment(details.created),
            moment(details.started),
            moment(details.stopped),
        )


@dataclass(frozen=True)
class JobDagNode:
    """One operator of a job's DAG, with the operators whose outputs it reads and those it runs after."""

    name: str
    input_dependencies: tuple[str, ...] = ()
    order_dependencies: tuple[str, ...] = ()

    @classmethod
    def from_wire(cls, node: jobs_pb2.JobsStatusResponse.JobDagNode) -> Self:
        return cls(
            node.name,
            tuple(up.name for up in node.input_dependencies),
            tuple(up.name for up in node.order_dependencies),
        )


@dataclass(frozen=True)
class Job:
    """A job. From Jobs.Status it has its operators, DAG and messages; Jobs.List does not carry those, so a
    listed job has none."""

    id: str
    name: str
    pipeline_id: str
    payload_id: str
    state: JobState
    status: JobStatus
    priority: Priority
    created: datetime | None = None
    started: datetime | None = None
    """When its first operator started (None while it waits in the queue)."""
    stopped: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=_no_metadata)
    operators: tuple[Operator, ...] = ()
    dag: tuple[JobDagNode, ...] = ()
    messages: tuple[str, ...] = ()
    """What the platform has to say about it: why it faulted, was canceled or evicted, warnings."""

    @classmethod
    def from_status(cls, reply: jobs_pb2.JobsStatusResponse) -> Self:
        return cls(
            id=reply.job_id.value,
            name=reply.name,
            pipeline_id=reply.pipeline_id.value,
            payload_id=reply.payload_id.value,
            state=JobState(reply.state),
            status=JobStatus(reply.status),
            priority=Priority(reply.priority),
            created=moment(reply.created),
            started=moment(reply.started),
            stopped=moment(reply.stopped),
            metadata=_frozen(reply.metadata),
            operators=tuple(Operator.from_wire(op) for op in reply.operator_details),
            dag=tuple(JobDagNode.from_wire(node) for node in reply.dag),
            messages=tuple(reply.messages),
        )

    @classmethod
    def from_list(cls, details: jobs_pb2.JobsListResponse.JobDetails) -> Self:
        return cls(
            id=details.job_id.value,
            name=details.job_name,
            pipeline_id=details.pipeline_id.value,
            payload_id=details.payload_id.value,
            state=JobState(details.state),
            status=JobStatus(details.status),
            priority=Priority(details.priority),
            created=moment(details.created),
            started=moment(details.started),
            stopped=moment(details.stopped),
            metadata=_frozen(details.metadata),
        )


@dataclass(frozen=True)
class CreatedJob:
    """What Jobs.Create answered: the new job and the payload its input goes into."""

    job_id: str
    payload_id: str


@dataclass(frozen=True)
class StartedJob:
    """What Jobs.Start answered: where the job is now (PENDING while it waits for resources)."""

    state: JobState
    status: JobStatus
    priority: Priority


@dataclass(frozen=True)
class CanceledJob:
    """What Jobs.Cancel answered (a job already stopped keeps how it ended)."""

    job_id: str
    state: JobState
    status: JobStatus


# Pipelines


@dataclass(frozen=True)
class CreatedPipeline:
    """What Pipelines.Create answered: the new id, and the messages of its successful header (the keys of
    the definition the platform ignored, as warnings)."""

    pipeline_id: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class DefinitionFile:
    """One file of a pipeline's definition: its path (relative to the pipeline document's folder) and text."""

    path: str
    content: str


@dataclass(frozen=True)
class PipelineNode:
    """One operator of a pipeline's DAG and the operators that run after it."""

    name: str
    next: tuple[PipelineNode, ...] = ()

    @classmethod
    def from_wire(cls, node: pipelines_pb2.PipelinesDetailsResponse.PipelineDagNode) -> Self:
        return cls(node.name, tuple(cls.from_wire(child) for child in node.next))


@dataclass(frozen=True)
class Pipeline:
    """A pipeline. From Pipelines.Details it has its DAG and definition files (the document first); a
    listed pipeline has neither."""

    id: str
    name: str
    metadata: Mapping[str, str] = field(default_factory=_no_metadata)
    dag: tuple[PipelineNode, ...] = ()
    files: tuple[DefinitionFile, ...] = ()

    @classmethod
    def from_details(cls, pipeline_id: str, replies: Sequence[pipelines_pb2.PipelinesDetailsResponse]) -> Self:
        """One reply per definition file; id, name, DAG and metadata are repeated on each (none: all empty)."""
        if not replies:
            return cls(pipeline_id, "")
        first = replies[0]
        return cls(
            first.pipeline_id.value or pipeline_id,
            first.name,
            _frozen(first.metadata),
            tuple(PipelineNode.from_wire(node) for node in first.dag),
            tuple(DefinitionFile(r.definition.path, r.definition.content) for r in replies),
        )

    @classmethod
    def from_list(cls, details: pipelines_pb2.PipelinesListResponse.PipelineDetails) -> Self:
        return cls(details.pipeline_id.value, details.name, _frozen(details.metadata))


# Payloads


@dataclass(frozen=True)
class PayloadFile:
    """A file of a payload: its name (in Payloads.Details from the payload root, ``/input/a.txt``), size in
    bytes and mode bits."""

    name: str
    size: int
    mode: int = 0

    @classmethod
    def from_wire(cls, details: payloads_pb2.PayloadFileDetails) -> Self:
        return cls(details.name, details.size, details.mode)


@dataclass(frozen=True)
class Payload:
    """A payload and its files. An empty payload has no Details messages, so its type, job and metadata read
    as UNKNOWN, None and empty."""

    id: str
    type: PayloadType
    job_id: str | None
    """The job whose payload it is; None for a reusable payload."""
    metadata: Mapping[str, str] = field(default_factory=_no_metadata)
    files: tuple[PayloadFile, ...] = ()

    @classmethod
    def from_details(cls, payload_id: str, replies: Sequence[payloads_pb2.PayloadsDetailsResponse]) -> Self:
        """One reply per file; type, job and metadata are repeated on each."""
        if not replies:
            return cls(payload_id, PayloadType.UNKNOWN, None)
        first = replies[0]
        return cls(
            payload_id,
            PayloadType(first.type),
            first.job_id.value or None,
            _frozen(first.metadata),
            tuple(PayloadFile.from_wire(r.file) for r in replies),
        )


# The platform


@dataclass(frozen=True)
class Model:
    """A model of the Model Repository."""

    id: str
    name: str
    type: ModelType
    metadata: Mapping[str, str] = field(default_factory=_no_metadata)

    @classmethod
    def from_wire(cls, details: models_pb2.ModelDetails) -> Self:
        return cls(details.model_id.value, details.name, ModelType(details.type), _frozen(details.metadata))


@dataclass(frozen=True)
class ModelList:
    """A catalog or an instance of the Model Repository: an ordered list of its models (one wire shape,
    ``ModelCatalogDetails``, whose ``catalog_id`` carries an instance's id in ListInstances)."""

    id: str
    models: tuple[Model, ...] = ()

    @classmethod
    def from_wire(cls, details: models_pb2.ModelCatalogDetails) -> Self:
        return cls(details.catalog_id.value, tuple(Model.from_wire(m) for m in details.models))


@dataclass(frozen=True)
class PlatformVersion:
    """The Clara API version a platform implements (``0.7.4``), with its label (``claret``)."""

    major: int
    minor: int
    patch: int
    label: str = ""

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}" + (f"-{self.label}" if self.label else "")

    @classmethod
    def from_wire(cls, version: common_pb2.Version) -> Self:
        return cls(version.major, version.minor, version.patch, version.label)


@dataclass(frozen=True)
class GpuProcess:
    """An operator using a GPU, and its job (None when the platform does not know it)."""

    name: str
    job_id: str | None


@dataclass(frozen=True)
class Gpu:
    """One GPU as Clara.Utilization reports it: utilisations are fractions (0.45), memory in MB."""

    node_id: str
    pcie_id: int
    compute_utilization: float
    memory_utilization: float
    memory_free_mb: int
    memory_used_mb: int
    processes: tuple[GpuProcess, ...] = ()
    measured: datetime | None = None

    @classmethod
    def from_wire(cls, gpu: clara_pb2.ClaraUtilizationResponse.GpuUtilization) -> Self:
        return cls(
            gpu.node_id,
            gpu.pcie_id,
            gpu.compute_utilization,
            gpu.memory_utilization,
            gpu.memory_free,
            gpu.memory_used,
            tuple(GpuProcess(p.name, p.job_id.value or None) for p in gpu.process_details),
            moment(gpu.timestamp),
        )


# The DICOM service (Claret's own API, claret.dicom.Dicom: its messages have no header and times are unix seconds)


@dataclass(frozen=True)
class DicomAeTitle:
    """An AE title the DICOM service answers to, and the jobs that instances sent to it start."""

    ae_title: str
    name: str
    pipelines: tuple[tuple[str, str], ...]
    """(key after ``pipeline-``, pipeline id or name) as configured: each batch starts a job per entry."""
    priority: str
    grouping: str
    """``association`` or ``study`` (a study's batch closes after ``timeout`` seconds without instances)."""
    timeout: float
    sources: tuple[str, ...] = ()
    """Calling AE titles allowed to use it; empty: any the service accepts."""
    export_operators: tuple[str, ...] = ()
    export_destinations: tuple[str, ...] = ()
    """Destination names its results are sent to; empty: none."""
    ignored_sop_classes: tuple[str, ...] = ()

    @classmethod
    def from_wire(cls, entry: dicom_pb2.DicomAeTitle) -> Self:
        return cls(
            entry.ae_title,
            entry.name,
            tuple((p.key, p.ref) for p in entry.pipelines),
            entry.priority,
            entry.grouping,
            entry.timeout,
            tuple(entry.sources),
            tuple(entry.export_operators),
            tuple(entry.export_destinations),
            tuple(entry.ignored_sop_classes),
        )


@dataclass(frozen=True)
class DicomSource:
    """A calling AE title that may send, from ``host`` only when it is given."""

    ae_title: str
    host: str | None = None


@dataclass(frozen=True)
class DicomDestination:
    """A DICOM peer results are sent to, by ``name``."""

    name: str
    ae_title: str
    host: str
    port: int


@dataclass(frozen=True)
class DicomStatus:
    """The DICOM service's configuration in force, and why the file as it is now was refused (if it was)."""

    config_path: str
    loaded: datetime | None
    """When the configuration in force was read."""
    problem: str | None
    """Why the file was refused (``file:line: ...``): the configuration in force is then the last good one."""
    scp_port: int
    scu_ae_title: str
    ae_titles: tuple[DicomAeTitle, ...] = ()
    sources: tuple[DicomSource, ...] = ()
    destinations: tuple[DicomDestination, ...] = ()

    @classmethod
    def from_wire(cls, reply: dicom_pb2.DicomStatusResponse) -> Self:
        return cls(
            reply.config_path,
            unix_moment(reply.loaded),
            reply.problem or None,
            reply.scp_port,
            reply.scu_ae_title,
            tuple(DicomAeTitle.from_wire(entry) for entry in reply.ae_titles),
            tuple(DicomSource(s.ae_title, s.host or None) for s in reply.sources),
            tuple(DicomDestination(d.name, d.ae_title, d.host, d.port) for d in reply.destinations),
        )


@dataclass(frozen=True)
class DicomAssociation:
    """An association with the DICOM service's SCP, once it ended: ``released``, ``aborted`` or ``rejected``."""

    id: str
    called: str
    calling: str
    address: str
    outcome: str
    reason: str
    """Why it was rejected; empty otherwise."""
    instances: int
    bytes: int
    started: datetime | None
    ended: datetime | None

    @classmethod
    def from_wire(cls, row: dicom_pb2.DicomAssociation) -> Self:
        return cls(
            row.id,
            row.called,
            row.calling,
            row.address,
            row.outcome,
            row.reason,
            row.instances,
            row.bytes,
            unix_moment(row.started),
            unix_moment(row.ended),
        )


@dataclass(frozen=True)
class DicomExport:
    """One job's DICOM results to one destination: ``pending`` (tried again at ``next_try``), ``sent`` or
    ``failed`` (after its attempts)."""

    job_id: str
    destination: str
    state: str
    files: int
    attempts: int
    error: str
    """The last attempt's failure; empty when none failed."""
    next_try: datetime | None
    updated: datetime | None

    @classmethod
    def from_wire(cls, row: dicom_pb2.DicomExport) -> Self:
        return cls(
            row.job_id,
            row.destination,
            row.state,
            row.files,
            row.attempts,
            row.error,
            unix_moment(row.next_try),
            unix_moment(row.updated),
        )


@dataclass(frozen=True)
class Room:
    """Cores, memory and GPU ids: what a node has, or has free."""

    cpus: int
    memory_mb: int
    gpu_ids: tuple[str, ...]

    @classmethod
    def from_wire(cls, room: scheduling_pb2.SchedulingResources) -> Self:
        return cls(room.cpus, room.memory_mb, tuple(room.gpu_ids))


@dataclass(frozen=True)
class QueueNode:
    """A node the jobs service places operators on (``""``: its own machine; a swarm node id otherwise)."""

    name: str
    capacity: Room
    free: Room


@dataclass(frozen=True)
class HeldGrant:
    """What a started operator (or pipeline service: job ``services``) holds: the GPU ledger's rows."""

    job_id: str
    operator: str
    node: str
    cpu: int
    memory_mb: int
    gpu_ids: tuple[str, ...]
    since: datetime | None


@dataclass(frozen=True)
class WaitingOperator:
    """An operator ready to start, waiting in the queue; ``reason`` says why it has not started."""

    job_id: str
    operator: str
    priority: str
    cpu: int
    memory_mb: int
    gpus: int
    waited_s: float
    reason: str


@dataclass(frozen=True)
class BlockedOperator:
    """An operator of a started job waiting for its ``upstream`` operators to complete."""

    job_id: str
    operator: str
    upstream: tuple[str, ...]


@dataclass(frozen=True)
class RunningService:
    """A pipeline service the jobs service runs (or starts)."""

    id: str
    name: str
    image: str
    users: int
    ready: bool
    gpu_ids: tuple[str, ...]


@dataclass(frozen=True)
class QueueSnapshot:
    """What the jobs service's queue holds now (Claret's ``claret.jobs.Scheduling`` API)."""

    nodes: tuple[QueueNode, ...]
    held: tuple[HeldGrant, ...]
    waiting: tuple[WaitingOperator, ...]
    """In the order they would start, at most the limit asked for."""
    waiting_total: int
    blocked: tuple[BlockedOperator, ...]
    services: tuple[RunningService, ...]

    @classmethod
    def from_wire(cls, reply: scheduling_pb2.SchedulingSnapshotResponse) -> Self:
        return cls(
            tuple(QueueNode(n.name, Room.from_wire(n.capacity), Room.from_wire(n.free)) for n in reply.nodes),
            tuple(
                HeldGrant(g.job_id, g.operator, g.node, g.cpu, g.memory_mb, tuple(g.gpu_ids), unix_moment(g.since))
                for g in reply.held
            ),
            tuple(
                WaitingOperator(w.job_id, w.operator, w.priority, w.cpu, w.memory_mb, w.gpus, w.waited, w.reason)
                for w in reply.waiting
            ),
            reply.waiting_total,
            tuple(BlockedOperator(b.job_id, b.operator, tuple(b.upstream)) for b in reply.blocked),
            tuple(RunningService(s.id, s.name, s.image, s.users, s.ready, tuple(s.gpu_ids)) for s in reply.services),
        )
