import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Split(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SPLIT_UNSPECIFIED: _ClassVar[Split]
    SPLIT_TRAIN: _ClassVar[Split]
    SPLIT_HELDOUT: _ClassVar[Split]
    SPLIT_ALL: _ClassVar[Split]

class ExportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_FORMAT_UNSPECIFIED: _ClassVar[ExportFormat]
    EXPORT_FORMAT_SFT: _ClassVar[ExportFormat]
    EXPORT_FORMAT_DPO: _ClassVar[ExportFormat]
    EXPORT_FORMAT_GAUNTLET: _ClassVar[ExportFormat]
SPLIT_UNSPECIFIED: Split
SPLIT_TRAIN: Split
SPLIT_HELDOUT: Split
SPLIT_ALL: Split
EXPORT_FORMAT_UNSPECIFIED: ExportFormat
EXPORT_FORMAT_SFT: ExportFormat
EXPORT_FORMAT_DPO: ExportFormat
EXPORT_FORMAT_GAUNTLET: ExportFormat

class Proposal(_message.Message):
    __slots__ = ("agent", "content")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    agent: str
    content: str
    def __init__(self, agent: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class Round(_message.Message):
    __slots__ = ("number", "proposals")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    PROPOSALS_FIELD_NUMBER: _ClassVar[int]
    number: int
    proposals: _containers.RepeatedCompositeFieldContainer[Proposal]
    def __init__(self, number: _Optional[int] = ..., proposals: _Optional[_Iterable[_Union[Proposal, _Mapping]]] = ...) -> None: ...

class Critique(_message.Message):
    __slots__ = ("round", "agent", "target_agent", "issues", "suggestions", "severity")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    TARGET_AGENT_FIELD_NUMBER: _ClassVar[int]
    ISSUES_FIELD_NUMBER: _ClassVar[int]
    SUGGESTIONS_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    round: int
    agent: str
    target_agent: str
    issues: _containers.RepeatedScalarFieldContainer[str]
    suggestions: _containers.RepeatedScalarFieldContainer[str]
    severity: float
    def __init__(self, round: _Optional[int] = ..., agent: _Optional[str] = ..., target_agent: _Optional[str] = ..., issues: _Optional[_Iterable[str]] = ..., suggestions: _Optional[_Iterable[str]] = ..., severity: _Optional[float] = ...) -> None: ...

class Vote(_message.Message):
    __slots__ = ("agent", "choice", "confidence")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    CHOICE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    agent: str
    choice: str
    confidence: float
    def __init__(self, agent: _Optional[str] = ..., choice: _Optional[str] = ..., confidence: _Optional[float] = ...) -> None: ...

class Consensus(_message.Message):
    __slots__ = ("reached", "final_answer", "confidence", "winner", "dissenting_views")
    REACHED_FIELD_NUMBER: _ClassVar[int]
    FINAL_ANSWER_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    WINNER_FIELD_NUMBER: _ClassVar[int]
    DISSENTING_VIEWS_FIELD_NUMBER: _ClassVar[int]
    reached: bool
    final_answer: str
    confidence: float
    winner: str
    dissenting_views: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, reached: _Optional[bool] = ..., final_answer: _Optional[str] = ..., confidence: _Optional[float] = ..., winner: _Optional[str] = ..., dissenting_views: _Optional[_Iterable[str]] = ...) -> None: ...

class Debate(_message.Message):
    __slots__ = ("id", "task", "vertical", "created_at", "rounds", "critiques", "votes", "consensus")
    ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    VERTICAL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    CRITIQUES_FIELD_NUMBER: _ClassVar[int]
    VOTES_FIELD_NUMBER: _ClassVar[int]
    CONSENSUS_FIELD_NUMBER: _ClassVar[int]
    id: str
    task: str
    vertical: str
    created_at: _timestamp_pb2.Timestamp
    rounds: _containers.RepeatedCompositeFieldContainer[Round]
    critiques: _containers.RepeatedCompositeFieldContainer[Critique]
    votes: _containers.RepeatedCompositeFieldContainer[Vote]
    consensus: Consensus
    def __init__(self, id: _Optional[str] = ..., task: _Optional[str] = ..., vertical: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rounds: _Optional[_Iterable[_Union[Round, _Mapping]]] = ..., critiques: _Optional[_Iterable[_Union[Critique, _Mapping]]] = ..., votes: _Optional[_Iterable[_Union[Vote, _Mapping]]] = ..., consensus: _Optional[_Union[Consensus, _Mapping]] = ...) -> None: ...

class GauntletRun(_message.Message):
    __slots__ = ("id", "prompt", "response", "attack_type", "severity", "success", "findings", "persona")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ATTACK_TYPE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    PERSONA_FIELD_NUMBER: _ClassVar[int]
    id: str
    prompt: str
    response: str
    attack_type: str
    severity: float
    success: bool
    findings: _containers.RepeatedScalarFieldContainer[str]
    persona: str
    def __init__(self, id: _Optional[str] = ..., prompt: _Optional[str] = ..., response: _Optional[str] = ..., attack_type: _Optional[str] = ..., severity: _Optional[float] = ..., success: _Optional[bool] = ..., findings: _Optional[_Iterable[str]] = ..., persona: _Optional[str] = ...) -> None: ...

class ImportDebatesRequest(_message.Message):
    __slots__ = ("debate", "gauntlet_run", "record_json", "line")
    DEBATE_FIELD_NUMBER: _ClassVar[int]
    GAUNTLET_RUN_FIELD_NUMBER: _ClassVar[int]
    RECORD_JSON_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    debate: Debate
    gauntlet_run: GauntletRun
    record_json: str
    line: int
    def __init__(self, debate: _Optional[_Union[Debate, _Mapping]] = ..., gauntlet_run: _Optional[_Union[GauntletRun, _Mapping]] = ..., record_json: _Optional[str] = ..., line: _Optional[int] = ...) -> None: ...

class ImportRejection(_message.Message):
    __slots__ = ("line", "field", "reason")
    LINE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    line: int
    field: str
    reason: str
    def __init__(self, line: _Optional[int] = ..., field: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ImportDebatesResponse(_message.Message):
    __slots__ = ("imported", "updated", "rejected", "rejections")
    IMPORTED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    imported: int
    updated: int
    rejected: int
    rejections: _containers.RepeatedCompositeFieldContainer[ImportRejection]
    def __init__(self, imported: _Optional[int] = ..., updated: _Optional[int] = ..., rejected: _Optional[int] = ..., rejections: _Optional[_Iterable[_Union[ImportRejection, _Mapping]]] = ...) -> None: ...

class SFTMetadata(_message.Message):
    __slots__ = ("debate_id", "consensus_confidence", "rounds", "vertical")
    DEBATE_ID_FIELD_NUMBER: _ClassVar[int]
    CONSENSUS_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    VERTICAL_FIELD_NUMBER: _ClassVar[int]
    debate_id: str
    consensus_confidence: float
    rounds: int
    vertical: str
    def __init__(self, debate_id: _Optional[str] = ..., consensus_confidence: _Optional[float] = ..., rounds: _Optional[int] = ..., vertical: _Optional[str] = ...) -> None: ...

class SFTRecord(_message.Message):
    __slots__ = ("instruction", "input", "output", "metadata")
    INSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    instruction: str
    input: str
    output: str
    metadata: SFTMetadata
    def __init__(self, instruction: _Optional[str] = ..., input: _Optional[str] = ..., output: _Optional[str] = ..., metadata: _Optional[_Union[SFTMetadata, _Mapping]] = ...) -> None: ...

class DPOMetadata(_message.Message):
    __slots__ = ("debate_id", "confidence_diff", "vertical")
    DEBATE_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_DIFF_FIELD_NUMBER: _ClassVar[int]
    VERTICAL_FIELD_NUMBER: _ClassVar[int]
    debate_id: str
    confidence_diff: float
    vertical: str
    def __init__(self, debate_id: _Optional[str] = ..., confidence_diff: _Optional[float] = ..., vertical: _Optional[str] = ...) -> None: ...

class DPORecord(_message.Message):
    __slots__ = ("prompt", "chosen", "rejected", "metadata")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    chosen: str
    rejected: str
    metadata: DPOMetadata
    def __init__(self, prompt: _Optional[str] = ..., chosen: _Optional[str] = ..., rejected: _Optional[str] = ..., metadata: _Optional[_Union[DPOMetadata, _Mapping]] = ...) -> None: ...

class GauntletRecord(_message.Message):
    __slots__ = ("prompt", "response", "attack_type", "success", "findings")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ATTACK_TYPE_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    response: str
    attack_type: str
    success: bool
    findings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, prompt: _Optional[str] = ..., response: _Optional[str] = ..., attack_type: _Optional[str] = ..., success: _Optional[bool] = ..., findings: _Optional[_Iterable[str]] = ...) -> None: ...

class ExportSFTRequest(_message.Message):
    __slots__ = ("min_confidence", "limit", "vertical", "split", "jsonl")
    MIN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    VERTICAL_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    JSONL_FIELD_NUMBER: _ClassVar[int]
    min_confidence: float
    limit: int
    vertical: str
    split: Split
    jsonl: bool
    def __init__(self, min_confidence: _Optional[float] = ..., limit: _Optional[int] = ..., vertical: _Optional[str] = ..., split: _Optional[_Union[Split, str]] = ..., jsonl: _Optional[bool] = ...) -> None: ...

class ExportSFTResponse(_message.Message):
    __slots__ = ("records", "jsonl")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    JSONL_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[SFTRecord]
    jsonl: bytes
    def __init__(self, records: _Optional[_Iterable[_Union[SFTRecord, _Mapping]]] = ..., jsonl: _Optional[bytes] = ...) -> None: ...

class ExportDPORequest(_message.Message):
    __slots__ = ("min_confidence_diff", "limit", "vertical", "split", "jsonl")
    MIN_CONFIDENCE_DIFF_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    VERTICAL_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    JSONL_FIELD_NUMBER: _ClassVar[int]
    min_confidence_diff: float
    limit: int
    vertical: str
    split: Split
    jsonl: bool
    def __init__(self, min_confidence_diff: _Optional[float] = ..., limit: _Optional[int] = ..., vertical: _Optional[str] = ..., split: _Optional[_Union[Split, str]] = ..., jsonl: _Optional[bool] = ...) -> None: ...

class ExportDPOResponse(_message.Message):
    __slots__ = ("records", "jsonl")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    JSONL_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[DPORecord]
    jsonl: bytes
    def __init__(self, records: _Optional[_Iterable[_Union[DPORecord, _Mapping]]] = ..., jsonl: _Optional[bytes] = ...) -> None: ...

class ExportGauntletRequest(_message.Message):
    __slots__ = ("limit", "attack_type", "min_severity", "jsonl", "persona")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ATTACK_TYPE_FIELD_NUMBER: _ClassVar[int]
    MIN_SEVERITY_FIELD_NUMBER: _ClassVar[int]
    JSONL_FIELD_NUMBER: _ClassVar[int]
    PERSONA_FIELD_NUMBER: _ClassVar[int]
    limit: int
    attack_type: str
    min_severity: float
    jsonl: bool
    persona: str
    def __init__(self, limit: _Optional[int] = ..., attack_type: _Optional[str] = ..., min_severity: _Optional[float] = ..., jsonl: _Optional[bool] = ..., persona: _Optional[str] = ...) -> None: ...

class ExportGauntletResponse(_message.Message):
    __slots__ = ("records", "jsonl")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    JSONL_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[GauntletRecord]
    jsonl: bytes
    def __init__(self, records: _Optional[_Iterable[_Union[GauntletRecord, _Mapping]]] = ..., jsonl: _Optional[bytes] = ...) -> None: ...

class ExportedFile(_message.Message):
    __slots__ = ("name", "size_bytes", "created_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    size_bytes: int
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WriteExportRequest(_message.Message):
    __slots__ = ("format", "sft", "dpo", "gauntlet")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SFT_FIELD_NUMBER: _ClassVar[int]
    DPO_FIELD_NUMBER: _ClassVar[int]
    GAUNTLET_FIELD_NUMBER: _ClassVar[int]
    format: ExportFormat
    sft: ExportSFTRequest
    dpo: ExportDPORequest
    gauntlet: ExportGauntletRequest
    def __init__(self, format: _Optional[_Union[ExportFormat, str]] = ..., sft: _Optional[_Union[ExportSFTRequest, _Mapping]] = ..., dpo: _Optional[_Union[ExportDPORequest, _Mapping]] = ..., gauntlet: _Optional[_Union[ExportGauntletRequest, _Mapping]] = ...) -> None: ...

class WriteExportResponse(_message.Message):
    __slots__ = ("file", "record_count")
    FILE_FIELD_NUMBER: _ClassVar[int]
    RECORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    file: ExportedFile
    record_count: int
    def __init__(self, file: _Optional[_Union[ExportedFile, _Mapping]] = ..., record_count: _Optional[int] = ...) -> None: ...

class GetFormatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FormatDescription(_message.Message):
    __slots__ = ("name", "description", "json_schema", "example_json", "endpoint")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    JSON_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    EXAMPLE_JSON_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    json_schema: str
    example_json: str
    endpoint: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., json_schema: _Optional[str] = ..., example_json: _Optional[str] = ..., endpoint: _Optional[str] = ...) -> None: ...

class GetFormatsResponse(_message.Message):
    __slots__ = ("formats",)
    FORMATS_FIELD_NUMBER: _ClassVar[int]
    formats: _containers.RepeatedCompositeFieldContainer[FormatDescription]
    def __init__(self, formats: _Optional[_Iterable[_Union[FormatDescription, _Mapping]]] = ...) -> None: ...

class GetExportStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetExportStatsResponse(_message.Message):
    __slots__ = ("available_exporters", "export_directory", "exported_files", "sft_available", "debates_per_vertical", "total_debates", "total_gauntlet_runs")
    class DebatesPerVerticalEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    AVAILABLE_EXPORTERS_FIELD_NUMBER: _ClassVar[int]
    EXPORT_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    EXPORTED_FILES_FIELD_NUMBER: _ClassVar[int]
    SFT_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    DEBATES_PER_VERTICAL_FIELD_NUMBER: _ClassVar[int]
    TOTAL_DEBATES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_GAUNTLET_RUNS_FIELD_NUMBER: _ClassVar[int]
    available_exporters: _containers.RepeatedScalarFieldContainer[str]
    export_directory: str
    exported_files: _containers.RepeatedCompositeFieldContainer[ExportedFile]
    sft_available: bool
    debates_per_vertical: _containers.ScalarMap[str, int]
    total_debates: int
    total_gauntlet_runs: int
    def __init__(self, available_exporters: _Optional[_Iterable[str]] = ..., export_directory: _Optional[str] = ..., exported_files: _Optional[_Iterable[_Union[ExportedFile, _Mapping]]] = ..., sft_available: _Optional[bool] = ..., debates_per_vertical: _Optional[_Mapping[str, int]] = ..., total_debates: _Optional[int] = ..., total_gauntlet_runs: _Optional[int] = ...) -> None: ...
