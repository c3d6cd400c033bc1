from protos.nvidia.clara.platform import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClaraStopRequest(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ...) -> None: ...

class ClaraStopResponse(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ...) -> None: ...

class ClaraUtilizationRequest(_message.Message):
    __slots__ = ("header", "watch")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    WATCH_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    watch: bool
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., watch: _Optional[bool] = ...) -> None: ...

class ClaraUtilizationResponse(_message.Message):
    __slots__ = ("header", "gpu_metrics")
    class GpuUtilization(_message.Message):
        __slots__ = ("node_id", "pcie_id", "compute_utilization", "memory_free", "memory_used", "memory_utilization", "timestamp", "process_details")
        class ProcessDetails(_message.Message):
            __slots__ = ("name", "job_id")
            NAME_FIELD_NUMBER: _ClassVar[int]
            JOB_ID_FIELD_NUMBER: _ClassVar[int]
            name: str
            job_id: _common_pb2.Identifier
            def __init__(self, name: _Optional[str] = ..., job_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ...) -> None: ...
        NODE_ID_FIELD_NUMBER: _ClassVar[int]
        PCIE_ID_FIELD_NUMBER: _ClassVar[int]
        COMPUTE_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
        MEMORY_FREE_FIELD_NUMBER: _ClassVar[int]
        MEMORY_USED_FIELD_NUMBER: _ClassVar[int]
        MEMORY_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
        TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
        PROCESS_DETAILS_FIELD_NUMBER: _ClassVar[int]
        node_id: str
        pcie_id: int
        compute_utilization: float
        memory_free: int
        memory_used: int
        memory_utilization: float
        timestamp: _common_pb2.Timestamp
        process_details: _containers.RepeatedCompositeFieldContainer[ClaraUtilizationResponse.GpuUtilization.ProcessDetails]
        def __init__(self, node_id: _Optional[str] = ..., pcie_id: _Optional[int] = ..., compute_utilization: _Optional[float] = ..., memory_free: _Optional[int] = ..., memory_used: _Optional[int] = ..., memory_utilization: _Optional[float] = ..., timestamp: _Optional[_Union[_common_pb2.Timestamp, _Mapping]] = ..., process_details: _Optional[_Iterable[_Union[ClaraUtilizationResponse.GpuUtilization.ProcessDetails, _Mapping]]] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    GPU_METRICS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    gpu_metrics: _containers.RepeatedCompositeFieldContainer[ClaraUtilizationResponse.GpuUtilization]
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., gpu_metrics: _Optional[_Iterable[_Union[ClaraUtilizationResponse.GpuUtilization, _Mapping]]] = ...) -> None: ...

class ClaraVersionRequest(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ...) -> None: ...

class ClaraVersionResponse(_message.Message):
    __slots__ = ("header", "version")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    version: _common_pb2.Version
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., version: _Optional[_Union[_common_pb2.Version, _Mapping]] = ...) -> None: ...
