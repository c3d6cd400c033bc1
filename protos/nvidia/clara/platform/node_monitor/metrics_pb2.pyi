from protos.nvidia.clara.platform import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GpuDetails(_message.Message):
    __slots__ = ("device_id", "data", "timestamp")
    class GpuMetrics(_message.Message):
        __slots__ = ("memory_utilization", "gpu_utilization", "free_bar_1", "used_bar_1", "free_gpu_memory", "used_gpu_memory")
        MEMORY_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
        GPU_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
        FREE_BAR_1_FIELD_NUMBER: _ClassVar[int]
        USED_BAR_1_FIELD_NUMBER: _ClassVar[int]
        FREE_GPU_MEMORY_FIELD_NUMBER: _ClassVar[int]
        USED_GPU_MEMORY_FIELD_NUMBER: _ClassVar[int]
        memory_utilization: float
        gpu_utilization: float
        free_bar_1: int
        used_bar_1: int
        free_gpu_memory: int
        used_gpu_memory: int
        def __init__(self, memory_utilization: _Optional[float] = ..., gpu_utilization: _Optional[float] = ..., free_bar_1: _Optional[int] = ..., used_bar_1: _Optional[int] = ..., free_gpu_memory: _Optional[int] = ..., used_gpu_memory: _Optional[int] = ...) -> None: ...
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    device_id: int
    data: GpuDetails.GpuMetrics
    timestamp: _common_pb2.Timestamp
    def __init__(self, device_id: _Optional[int] = ..., data: _Optional[_Union[GpuDetails.GpuMetrics, _Mapping]] = ..., timestamp: _Optional[_Union[_common_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class MonitorGpuMetricsRequest(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ...) -> None: ...

class MonitorGpuMetricsResponse(_message.Message):
    __slots__ = ("header", "gpu_details")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    GPU_DETAILS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    gpu_details: _containers.RepeatedCompositeFieldContainer[GpuDetails]
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., gpu_details: _Optional[_Iterable[_Union[GpuDetails, _Mapping]]] = ...) -> None: ...
