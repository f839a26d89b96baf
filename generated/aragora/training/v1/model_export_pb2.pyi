import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExportKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_KIND_UNSPECIFIED: _ClassVar[ExportKind]
    EXPORT_KIND_MERGED: _ClassVar[ExportKind]
    EXPORT_KIND_GGUF_F16: _ClassVar[ExportKind]
    EXPORT_KIND_GGUF_Q8_0: _ClassVar[ExportKind]

class ExportStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_STATUS_UNSPECIFIED: _ClassVar[ExportStatus]
    EXPORT_STATUS_RUNNING: _ClassVar[ExportStatus]
    EXPORT_STATUS_COMPLETED: _ClassVar[ExportStatus]
    EXPORT_STATUS_FAILED: _ClassVar[ExportStatus]
    EXPORT_STATUS_CANCELLED: _ClassVar[ExportStatus]
EXPORT_KIND_UNSPECIFIED: ExportKind
EXPORT_KIND_MERGED: ExportKind
EXPORT_KIND_GGUF_F16: ExportKind
EXPORT_KIND_GGUF_Q8_0: ExportKind
EXPORT_STATUS_UNSPECIFIED: ExportStatus
EXPORT_STATUS_RUNNING: ExportStatus
EXPORT_STATUS_COMPLETED: ExportStatus
EXPORT_STATUS_FAILED: ExportStatus
EXPORT_STATUS_CANCELLED: ExportStatus

class Export(_message.Message):
    __slots__ = ("job_id", "kind", "status", "progress", "phase", "error", "files", "size_bytes", "checks_json", "started_at", "finished_at")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHECKS_JSON_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    kind: ExportKind
    status: ExportStatus
    progress: float
    phase: str
    error: str
    files: _containers.RepeatedScalarFieldContainer[str]
    size_bytes: int
    checks_json: str
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    def __init__(self, job_id: _Optional[str] = ..., kind: _Optional[_Union[ExportKind, str]] = ..., status: _Optional[_Union[ExportStatus, str]] = ..., progress: _Optional[float] = ..., phase: _Optional[str] = ..., error: _Optional[str] = ..., files: _Optional[_Iterable[str]] = ..., size_bytes: _Optional[int] = ..., checks_json: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExportEvent(_message.Message):
    __slots__ = ("sequence", "time", "phase", "done", "total", "progress", "message", "status")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    time: _timestamp_pb2.Timestamp
    phase: str
    done: int
    total: int
    progress: float
    message: str
    status: ExportStatus
    def __init__(self, sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., phase: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., progress: _Optional[float] = ..., message: _Optional[str] = ..., status: _Optional[_Union[ExportStatus, str]] = ...) -> None: ...

class StartExportRequest(_message.Message):
    __slots__ = ("job_id", "kind")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    kind: ExportKind
    def __init__(self, job_id: _Optional[str] = ..., kind: _Optional[_Union[ExportKind, str]] = ...) -> None: ...

class StartExportResponse(_message.Message):
    __slots__ = ("export",)
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    export: Export
    def __init__(self, export: _Optional[_Union[Export, _Mapping]] = ...) -> None: ...

class ListExportsRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ListExportsResponse(_message.Message):
    __slots__ = ("exports",)
    EXPORTS_FIELD_NUMBER: _ClassVar[int]
    exports: _containers.RepeatedCompositeFieldContainer[Export]
    def __init__(self, exports: _Optional[_Iterable[_Union[Export, _Mapping]]] = ...) -> None: ...

class WatchExportRequest(_message.Message):
    __slots__ = ("job_id", "kind", "after_sequence")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    kind: ExportKind
    after_sequence: int
    def __init__(self, job_id: _Optional[str] = ..., kind: _Optional[_Union[ExportKind, str]] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class WatchExportResponse(_message.Message):
    __slots__ = ("snapshot", "event")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    snapshot: Export
    event: ExportEvent
    def __init__(self, snapshot: _Optional[_Union[Export, _Mapping]] = ..., event: _Optional[_Union[ExportEvent, _Mapping]] = ...) -> None: ...

class CancelExportRequest(_message.Message):
    __slots__ = ("job_id", "kind")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    kind: ExportKind
    def __init__(self, job_id: _Optional[str] = ..., kind: _Optional[_Union[ExportKind, str]] = ...) -> None: ...

class CancelExportResponse(_message.Message):
    __slots__ = ("export",)
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    export: Export
    def __init__(self, export: _Optional[_Union[Export, _Mapping]] = ...) -> None: ...
