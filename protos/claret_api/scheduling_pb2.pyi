from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SchedulingSnapshotRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class SchedulingResources(_message.Message):
    __slots__ = ("cpus", "memory_mb", "gpu_ids")
    CPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    GPU_IDS_FIELD_NUMBER: _ClassVar[int]
    cpus: int
    memory_mb: int
    gpu_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cpus: _Optional[int] = ..., memory_mb: _Optional[int] = ..., gpu_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class SchedulingNode(_message.Message):
    __slots__ = ("name", "capacity", "free")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    FREE_FIELD_NUMBER: _ClassVar[int]
    name: str
    capacity: SchedulingResources
    free: SchedulingResources
    def __init__(self, name: _Optional[str] = ..., capacity: _Optional[_Union[SchedulingResources, _Mapping]] = ..., free: _Optional[_Union[SchedulingResources, _Mapping]] = ...) -> None: ...

class SchedulingGrant(_message.Message):
    __slots__ = ("job_id", "operator", "node", "cpu", "memory_mb", "gpu_ids", "since")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    GPU_IDS_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    operator: str
    node: str
    cpu: int
    memory_mb: int
    gpu_ids: _containers.RepeatedScalarFieldContainer[str]
    since: float
    def __init__(self, job_id: _Optional[str] = ..., operator: _Optional[str] = ..., node: _Optional[str] = ..., cpu: _Optional[int] = ..., memory_mb: _Optional[int] = ..., gpu_ids: _Optional[_Iterable[str]] = ..., since: _Optional[float] = ...) -> None: ...

class SchedulingWaiting(_message.Message):
    __slots__ = ("job_id", "operator", "priority", "cpu", "memory_mb", "gpus", "waited", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    WAITED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    operator: str
    priority: str
    cpu: int
    memory_mb: int
    gpus: int
    waited: float
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., operator: _Optional[str] = ..., priority: _Optional[str] = ..., cpu: _Optional[int] = ..., memory_mb: _Optional[int] = ..., gpus: _Optional[int] = ..., waited: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class SchedulingBlocked(_message.Message):
    __slots__ = ("job_id", "operator", "upstream")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    operator: str
    upstream: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job_id: _Optional[str] = ..., operator: _Optional[str] = ..., upstream: _Optional[_Iterable[str]] = ...) -> None: ...

class SchedulingService(_message.Message):
    __slots__ = ("id", "name", "image", "users", "ready", "gpu_ids")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    GPU_IDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    image: str
    users: int
    ready: bool
    gpu_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., image: _Optional[str] = ..., users: _Optional[int] = ..., ready: _Optional[bool] = ..., gpu_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class SchedulingSnapshotResponse(_message.Message):
    __slots__ = ("nodes", "held", "waiting", "waiting_total", "blocked", "services")
    NODES_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    WAITING_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[SchedulingNode]
    held: _containers.RepeatedCompositeFieldContainer[SchedulingGrant]
    waiting: _containers.RepeatedCompositeFieldContainer[SchedulingWaiting]
    waiting_total: int
    blocked: _containers.RepeatedCompositeFieldContainer[SchedulingBlocked]
    services: _containers.RepeatedCompositeFieldContainer[SchedulingService]
    def __init__(self, nodes: _Optional[_Iterable[_Union[SchedulingNode, _Mapping]]] = ..., held: _Optional[_Iterable[_Union[SchedulingGrant, _Mapping]]] = ..., waiting: _Optional[_Iterable[_Union[SchedulingWaiting, _Mapping]]] = ..., waiting_total: _Optional[int] = ..., blocked: _Optional[_Iterable[_Union[SchedulingBlocked, _Mapping]]] = ..., services: _Optional[_Iterable[_Union[SchedulingService, _Mapping]]] = ...) -> None: ...
