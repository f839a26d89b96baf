from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkerLine(_message.Message):
    __slots__ = ("sequence", "line", "exit_code")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    line: str
    exit_code: int
    def __init__(self, sequence: _Optional[int] = ..., line: _Optional[str] = ..., exit_code: _Optional[int] = ...) -> None: ...

class ReportLinesRequest(_message.Message):
    __slots__ = ("job_id", "attempt", "lines", "pid")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: str
    lines: _containers.RepeatedCompositeFieldContainer[WorkerLine]
    pid: int
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[WorkerLine, _Mapping]]] = ..., pid: _Optional[int] = ...) -> None: ...

class ReportLinesResponse(_message.Message):
    __slots__ = ("acked_sequence", "stop")
    ACKED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    acked_sequence: int
    stop: bool
    def __init__(self, acked_sequence: _Optional[int] = ..., stop: _Optional[bool] = ...) -> None: ...
