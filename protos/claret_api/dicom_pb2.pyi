from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DicomStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DicomPipeline(_message.Message):
    __slots__ = ("key", "ref")
    KEY_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    key: str
    ref: str
    def __init__(self, key: _Optional[str] = ..., ref: _Optional[str] = ...) -> None: ...

class DicomAeTitle(_message.Message):
    __slots__ = ("ae_title", "name", "pipelines", "priority", "grouping", "timeout", "sources", "export_operators", "export_destinations", "ignored_sop_classes")
    AE_TITLE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PIPELINES_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    GROUPING_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    EXPORT_OPERATORS_FIELD_NUMBER: _ClassVar[int]
    EXPORT_DESTINATIONS_FIELD_NUMBER: _ClassVar[int]
    IGNORED_SOP_CLASSES_FIELD_NUMBER: _ClassVar[int]
    ae_title: str
    name: str
    pipelines: _containers.RepeatedCompositeFieldContainer[DicomPipeline]
    priority: str
    grouping: str
    timeout: float
    sources: _containers.RepeatedScalarFieldContainer[str]
    export_operators: _containers.RepeatedScalarFieldContainer[str]
    export_destinations: _containers.RepeatedScalarFieldContainer[str]
    ignored_sop_classes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ae_title: _Optional[str] = ..., name: _Optional[str] = ..., pipelines: _Optional[_Iterable[_Union[DicomPipeline, _Mapping]]] = ..., priority: _Optional[str] = ..., grouping: _Optional[str] = ..., timeout: _Optional[float] = ..., sources: _Optional[_Iterable[str]] = ..., export_operators: _Optional[_Iterable[str]] = ..., export_destinations: _Optional[_Iterable[str]] = ..., ignored_sop_classes: _Optional[_Iterable[str]] = ...) -> None: ...

class DicomSource(_message.Message):
    __slots__ = ("ae_title", "host")
    AE_TITLE_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    ae_title: str
    host: str
    def __init__(self, ae_title: _Optional[str] = ..., host: _Optional[str] = ...) -> None: ...

class DicomDestination(_message.Message):
    __slots__ = ("name", "ae_title", "host", "port")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AE_TITLE_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    name: str
    ae_title: str
    host: str
    port: int
    def __init__(self, name: _Optional[str] = ..., ae_title: _Optional[str] = ..., host: _Optional[str] = ..., port: _Optional[int] = ...) -> None: ...

class DicomStatusResponse(_message.Message):
    __slots__ = ("config_path", "loaded", "problem", "scp_port", "scu_ae_title", "ae_titles", "sources", "destinations")
    CONFIG_PATH_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    SCP_PORT_FIELD_NUMBER: _ClassVar[int]
    SCU_AE_TITLE_FIELD_NUMBER: _ClassVar[int]
    AE_TITLES_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    DESTINATIONS_FIELD_NUMBER: _ClassVar[int]
    config_path: str
    loaded: float
    problem: str
    scp_port: int
    scu_ae_title: str
    ae_titles: _containers.RepeatedCompositeFieldContainer[DicomAeTitle]
    sources: _containers.RepeatedCompositeFieldContainer[DicomSource]
    destinations: _containers.RepeatedCompositeFieldContainer[DicomDestination]
    def __init__(self, config_path: _Optional[str] = ..., loaded: _Optional[float] = ..., problem: _Optional[str] = ..., scp_port: _Optional[int] = ..., scu_ae_title: _Optional[str] = ..., ae_titles: _Optional[_Iterable[_Union[DicomAeTitle, _Mapping]]] = ..., sources: _Optional[_Iterable[_Union[DicomSource, _Mapping]]] = ..., destinations: _Optional[_Iterable[_Union[DicomDestination, _Mapping]]] = ...) -> None: ...

class DicomListRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class DicomAssociation(_message.Message):
    __slots__ = ("id", "called", "calling", "address", "outcome", "reason", "instances", "bytes", "started", "ended")
    ID_FIELD_NUMBER: _ClassVar[int]
    CALLED_FIELD_NUMBER: _ClassVar[int]
    CALLING_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    id: str
    called: str
    calling: str
    address: str
    outcome: str
    reason: str
    instances: int
    bytes: int
    started: float
    ended: float
    def __init__(self, id: _Optional[str] = ..., called: _Optional[str] = ..., calling: _Optional[str] = ..., address: _Optional[str] = ..., outcome: _Optional[str] = ..., reason: _Optional[str] = ..., instances: _Optional[int] = ..., bytes: _Optional[int] = ..., started: _Optional[float] = ..., ended: _Optional[float] = ...) -> None: ...

class DicomListAssociationsResponse(_message.Message):
    __slots__ = ("associations",)
    ASSOCIATIONS_FIELD_NUMBER: _ClassVar[int]
    associations: _containers.RepeatedCompositeFieldContainer[DicomAssociation]
    def __init__(self, associations: _Optional[_Iterable[_Union[DicomAssociation, _Mapping]]] = ...) -> None: ...

class DicomExport(_message.Message):
    __slots__ = ("job_id", "destination", "state", "files", "attempts", "error", "next_try", "updated")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    NEXT_TRY_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    destination: str
    state: str
    files: int
    attempts: int
    error: str
    next_try: float
    updated: float
    def __init__(self, job_id: _Optional[str] = ..., destination: _Optional[str] = ..., state: _Optional[str] = ..., files: _Optional[int] = ..., attempts: _Optional[int] = ..., error: _Optional[str] = ..., next_try: _Optional[float] = ..., updated: _Optional[float] = ...) -> None: ...

class DicomListExportsResponse(_message.Message):
    __slots__ = ("exports",)
    EXPORTS_FIELD_NUMBER: _ClassVar[int]
    exports: _containers.RepeatedCompositeFieldContainer[DicomExport]
    def __init__(self, exports: _Optional[_Iterable[_Union[DicomExport, _Mapping]]] = ...) -> None: ...
