from protos.nvidia.clara.platform import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PipelineDefinitionFile(_message.Message):
    __slots__ = ("path", "content")
    PATH_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    path: str
    content: str
    def __init__(self, path: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class PipelinesAddMetadataRequest(_message.Message):
    __slots__ = ("header", "pipeline_id", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    pipeline_id: _common_pb2.Identifier
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., pipeline_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PipelinesAddMetadataResponse(_message.Message):
    __slots__ = ("header", "pipeline_id", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    pipeline_id: _common_pb2.Identifier
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., pipeline_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PipelinesCreateRequest(_message.Message):
    __slots__ = ("header", "definition", "pipeline_id", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    definition: PipelineDefinitionFile
    pipeline_id: _common_pb2.Identifier
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., definition: _Optional[_Union[PipelineDefinitionFile, _Mapping]] = ..., pipeline_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PipelinesCreateResponse(_message.Message):
    __slots__ = ("header", "pipeline_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    pipeline_id: _common_pb2.Identifier
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., pipeline_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ...) -> None: ...

class PipelinesDetailsRequest(_message.Message):
    __slots__ = ("header", "pipeline_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    pipeline_id: _common_pb2.Identifier
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., pipeline_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ...) -> None: ...

class PipelinesDetailsResponse(_message.Message):
    __slots__ = ("header", "pipeline_id", "name", "definition", "dag", "metadata")
    class PipelineDagNode(_message.Message):
        __slots__ = ("name", "next")
        NAME_FIELD_NUMBER: _ClassVar[int]
        NEXT_FIELD_NUMBER: _ClassVar[int]
        name: str
        next: _containers.RepeatedCompositeFieldContainer[PipelinesDetailsResponse.PipelineDagNode]
        def __init__(self, name: _Optional[str] = ..., next: _Optional[_Iterable[_Union[PipelinesDetailsResponse.PipelineDagNode, _Mapping]]] = ...) -> None: ...
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    DAG_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    pipeline_id: _common_pb2.Identifier
    name: str
    definition: PipelineDefinitionFile
    dag: _containers.RepeatedCompositeFieldContainer[PipelinesDetailsResponse.PipelineDagNode]
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., pipeline_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., name: _Optional[str] = ..., definition: _Optional[_Union[PipelineDefinitionFile, _Mapping]] = ..., dag: _Optional[_Iterable[_Union[PipelinesDetailsResponse.PipelineDagNode, _Mapping]]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PipelinesListRequest(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ...) -> None: ...

class PipelinesListResponse(_message.Message):
    __slots__ = ("header", "details")
    class PipelineDetails(_message.Message):
        __slots__ = ("pipeline_id", "name", "metadata")
        class MetadataEntry(_message.Message):
            __slots__ = ("key", "value")
            KEY_FIELD_NUMBER: _ClassVar[int]
            VALUE_FIELD_NUMBER: _ClassVar[int]
            key: str
            value: str
            def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
        PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
        NAME_FIELD_NUMBER: _ClassVar[int]
        METADATA_FIELD_NUMBER: _ClassVar[int]
        pipeline_id: _common_pb2.Identifier
        name: str
        metadata: _containers.ScalarMap[str, str]
        def __init__(self, pipeline_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., name: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    details: PipelinesListResponse.PipelineDetails
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., details: _Optional[_Union[PipelinesListResponse.PipelineDetails, _Mapping]] = ...) -> None: ...

class PipelinesRemoveMetadataRequest(_message.Message):
    __slots__ = ("header", "pipeline_id", "keys")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    pipeline_id: _common_pb2.Identifier
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., pipeline_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class PipelinesRemoveMetadataResponse(_message.Message):
    __slots__ = ("header", "pipeline_id", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    pipeline_id: _common_pb2.Identifier
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ..., pipeline_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PipelinesRemoveRequest(_message.Message):
    __slots__ = ("header", "pipeline_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    pipeline_id: _common_pb2.Identifier
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., pipeline_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ...) -> None: ...

class PipelinesRemoveResponse(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ...) -> None: ...

class PipelinesUpdateRequest(_message.Message):
    __slots__ = ("header", "pipeline_id", "definition")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.RequestHeader
    pipeline_id: _common_pb2.Identifier
    definition: PipelineDefinitionFile
    def __init__(self, header: _Optional[_Union[_common_pb2.RequestHeader, _Mapping]] = ..., pipeline_id: _Optional[_Union[_common_pb2.Identifier, _Mapping]] = ..., definition: _Optional[_Union[PipelineDefinitionFile, _Mapping]] = ...) -> None: ...

class PipelinesUpdateResponse(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.ResponseHeader
    def __init__(self, header: _Optional[_Union[_common_pb2.ResponseHeader, _Mapping]] = ...) -> None: ...
