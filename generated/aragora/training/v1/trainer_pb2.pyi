import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATUS_UNSPECIFIED: _ClassVar[JobStatus]
    JOB_STATUS_QUEUED: _ClassVar[JobStatus]
    JOB_STATUS_PREPARING: _ClassVar[JobStatus]
    JOB_STATUS_TRAINING: _ClassVar[JobStatus]
    JOB_STATUS_COMPLETED: _ClassVar[JobStatus]
    JOB_STATUS_FAILED: _ClassVar[JobStatus]
    JOB_STATUS_CANCELLED: _ClassVar[JobStatus]

class Quantization(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUANTIZATION_UNSPECIFIED: _ClassVar[Quantization]
    QUANTIZATION_4BIT: _ClassVar[Quantization]
    QUANTIZATION_8BIT: _ClassVar[Quantization]
    QUANTIZATION_NONE: _ClassVar[Quantization]

class TrainingMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINING_METHOD_UNSPECIFIED: _ClassVar[TrainingMethod]
    TRAINING_METHOD_SFT: _ClassVar[TrainingMethod]
    TRAINING_METHOD_DPO: _ClassVar[TrainingMethod]
    TRAINING_METHOD_REWARD: _ClassVar[TrainingMethod]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_STATUS: _ClassVar[EventType]
    EVENT_TYPE_STEP: _ClassVar[EventType]
    EVENT_TYPE_CHECKPOINT: _ClassVar[EventType]
    EVENT_TYPE_EVAL: _ClassVar[EventType]
    EVENT_TYPE_LOG: _ClassVar[EventType]
    EVENT_TYPE_WARNING: _ClassVar[EventType]
    EVENT_TYPE_ERROR: _ClassVar[EventType]
JOB_STATUS_UNSPECIFIED: JobStatus
JOB_STATUS_QUEUED: JobStatus
JOB_STATUS_PREPARING: JobStatus
JOB_STATUS_TRAINING: JobStatus
JOB_STATUS_COMPLETED: JobStatus
JOB_STATUS_FAILED: JobStatus
JOB_STATUS_CANCELLED: JobStatus
QUANTIZATION_UNSPECIFIED: Quantization
QUANTIZATION_4BIT: Quantization
QUANTIZATION_8BIT: Quantization
QUANTIZATION_NONE: Quantization
TRAINING_METHOD_UNSPECIFIED: TrainingMethod
TRAINING_METHOD_SFT: TrainingMethod
TRAINING_METHOD_DPO: TrainingMethod
TRAINING_METHOD_REWARD: TrainingMethod
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_STATUS: EventType
EVENT_TYPE_STEP: EventType
EVENT_TYPE_CHECKPOINT: EventType
EVENT_TYPE_EVAL: EventType
EVENT_TYPE_LOG: EventType
EVENT_TYPE_WARNING: EventType
EVENT_TYPE_ERROR: EventType

class TrainingConfig(_message.Message):
    __slots__ = ("lora_r", "lora_alpha", "lora_dropout", "num_epochs", "batch_size", "learning_rate", "max_seq_length", "quantization", "gradient_checkpointing", "dataset_path", "method", "beta", "min_confidence", "min_confidence_diff", "target_modules", "max_steps", "seed", "checkpoint_every_steps")
    LORA_R_FIELD_NUMBER: _ClassVar[int]
    LORA_ALPHA_FIELD_NUMBER: _ClassVar[int]
    LORA_DROPOUT_FIELD_NUMBER: _ClassVar[int]
    NUM_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQ_LENGTH_FIELD_NUMBER: _ClassVar[int]
    QUANTIZATION_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_CHECKPOINTING_FIELD_NUMBER: _ClassVar[int]
    DATASET_PATH_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    MIN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MIN_CONFIDENCE_DIFF_FIELD_NUMBER: _ClassVar[int]
    TARGET_MODULES_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_EVERY_STEPS_FIELD_NUMBER: _ClassVar[int]
    lora_r: int
    lora_alpha: float
    lora_dropout: float
    num_epochs: int
    batch_size: int
    learning_rate: float
    max_seq_length: int
    quantization: Quantization
    gradient_checkpointing: bool
    dataset_path: str
    method: TrainingMethod
    beta: float
    min_confidence: float
    min_confidence_diff: float
    target_modules: _containers.RepeatedScalarFieldContainer[str]
    max_steps: int
    seed: int
    checkpoint_every_steps: int
    def __init__(self, lora_r: _Optional[int] = ..., lora_alpha: _Optional[float] = ..., lora_dropout: _Optional[float] = ..., num_epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., max_seq_length: _Optional[int] = ..., quantization: _Optional[_Union[Quantization, str]] = ..., gradient_checkpointing: _Optional[bool] = ..., dataset_path: _Optional[str] = ..., method: _Optional[_Union[TrainingMethod, str]] = ..., beta: _Optional[float] = ..., min_confidence: _Optional[float] = ..., min_confidence_diff: _Optional[float] = ..., target_modules: _Optional[_Iterable[str]] = ..., max_steps: _Optional[int] = ..., seed: _Optional[int] = ..., checkpoint_every_steps: _Optional[int] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "name", "vertical", "base_model", "training_config", "status", "progress", "current_epoch", "current_step", "total_steps", "loss", "training_examples", "created_at", "started_at", "completed_at", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERTICAL_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    TRAINING_CONFIG_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_EPOCH_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    vertical: str
    base_model: str
    training_config: TrainingConfig
    status: JobStatus
    progress: float
    current_epoch: int
    current_step: int
    total_steps: int
    loss: float
    training_examples: int
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    completed_at: _timestamp_pb2.Timestamp
    error: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., vertical: _Optional[str] = ..., base_model: _Optional[str] = ..., training_config: _Optional[_Union[TrainingConfig, _Mapping]] = ..., status: _Optional[_Union[JobStatus, str]] = ..., progress: _Optional[float] = ..., current_epoch: _Optional[int] = ..., current_step: _Optional[int] = ..., total_steps: _Optional[int] = ..., loss: _Optional[float] = ..., training_examples: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[str] = ...) -> None: ...

class CreateJobRequest(_message.Message):
    __slots__ = ("name", "vertical", "base_model", "training_config")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERTICAL_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    TRAINING_CONFIG_FIELD_NUMBER: _ClassVar[int]
    name: str
    vertical: str
    base_model: str
    training_config: TrainingConfig
    def __init__(self, name: _Optional[str] = ..., vertical: _Optional[str] = ..., base_model: _Optional[str] = ..., training_config: _Optional[_Union[TrainingConfig, _Mapping]] = ...) -> None: ...

class CreateJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class StartJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class StartJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("vertical", "status", "limit", "offset")
    VERTICAL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    vertical: str
    status: JobStatus
    limit: int
    offset: int
    def __init__(self, vertical: _Optional[str] = ..., status: _Optional[_Union[JobStatus, str]] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "total")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    total: int
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class GetJobCountsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetJobCountsResponse(_message.Message):
    __slots__ = ("queued", "preparing", "training", "completed", "failed", "cancelled", "total")
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    PREPARING_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    queued: int
    preparing: int
    training: int
    completed: int
    failed: int
    cancelled: int
    total: int
    def __init__(self, queued: _Optional[int] = ..., preparing: _Optional[int] = ..., training: _Optional[int] = ..., completed: _Optional[int] = ..., failed: _Optional[int] = ..., cancelled: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class GetJobMetricsRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ModelEvaluation(_message.Message):
    __slots__ = ("heldout_loss", "perplexity", "preference_accuracy", "vertical_accuracy")
    class VerticalAccuracyEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    HELDOUT_LOSS_FIELD_NUMBER: _ClassVar[int]
    PERPLEXITY_FIELD_NUMBER: _ClassVar[int]
    PREFERENCE_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    VERTICAL_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    heldout_loss: float
    perplexity: float
    preference_accuracy: float
    vertical_accuracy: _containers.ScalarMap[str, float]
    def __init__(self, heldout_loss: _Optional[float] = ..., perplexity: _Optional[float] = ..., preference_accuracy: _Optional[float] = ..., vertical_accuracy: _Optional[_Mapping[str, float]] = ...) -> None: ...

class GetJobMetricsResponse(_message.Message):
    __slots__ = ("job_id", "status", "training_data_examples", "training_data_debates", "final_loss", "elo_rating", "win_rate", "vertical_accuracy", "adapter", "base", "eval_matches", "eval_sft_records", "eval_dpo_pairs")
    class VerticalAccuracyEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_DATA_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    TRAINING_DATA_DEBATES_FIELD_NUMBER: _ClassVar[int]
    FINAL_LOSS_FIELD_NUMBER: _ClassVar[int]
    ELO_RATING_FIELD_NUMBER: _ClassVar[int]
    WIN_RATE_FIELD_NUMBER: _ClassVar[int]
    VERTICAL_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    EVAL_MATCHES_FIELD_NUMBER: _ClassVar[int]
    EVAL_SFT_RECORDS_FIELD_NUMBER: _ClassVar[int]
    EVAL_DPO_PAIRS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    status: JobStatus
    training_data_examples: int
    training_data_debates: int
    final_loss: float
    elo_rating: float
    win_rate: float
    vertical_accuracy: _containers.ScalarMap[str, float]
    adapter: ModelEvaluation
    base: ModelEvaluation
    eval_matches: int
    eval_sft_records: int
    eval_dpo_pairs: int
    def __init__(self, job_id: _Optional[str] = ..., status: _Optional[_Union[JobStatus, str]] = ..., training_data_examples: _Optional[int] = ..., training_data_debates: _Optional[int] = ..., final_loss: _Optional[float] = ..., elo_rating: _Optional[float] = ..., win_rate: _Optional[float] = ..., vertical_accuracy: _Optional[_Mapping[str, float]] = ..., adapter: _Optional[_Union[ModelEvaluation, _Mapping]] = ..., base: _Optional[_Union[ModelEvaluation, _Mapping]] = ..., eval_matches: _Optional[int] = ..., eval_sft_records: _Optional[int] = ..., eval_dpo_pairs: _Optional[int] = ...) -> None: ...

class GetJobArtifactsRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ArtifactFile(_message.Message):
    __slots__ = ("name", "size_bytes", "type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    size_bytes: int
    type: str
    def __init__(self, name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., type: _Optional[str] = ...) -> None: ...

class GetJobArtifactsResponse(_message.Message):
    __slots__ = ("job_id", "checkpoint_path", "data_directory", "files")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_PATH_FIELD_NUMBER: _ClassVar[int]
    DATA_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    checkpoint_path: str
    data_directory: str
    files: _containers.RepeatedCompositeFieldContainer[ArtifactFile]
    def __init__(self, job_id: _Optional[str] = ..., checkpoint_path: _Optional[str] = ..., data_directory: _Optional[str] = ..., files: _Optional[_Iterable[_Union[ArtifactFile, _Mapping]]] = ...) -> None: ...

class ReadArtifactRequest(_message.Message):
    __slots__ = ("job_id", "name", "offset", "length")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    name: str
    offset: int
    length: int
    def __init__(self, job_id: _Optional[str] = ..., name: _Optional[str] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class ReadArtifactResponse(_message.Message):
    __slots__ = ("data", "size_bytes", "modified_unix_ns")
    DATA_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    size_bytes: int
    modified_unix_ns: int
    def __init__(self, data: _Optional[bytes] = ..., size_bytes: _Optional[int] = ..., modified_unix_ns: _Optional[int] = ...) -> None: ...

class ListBaseModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BaseModel(_message.Message):
    __slots__ = ("id", "name", "provider", "parameters", "size", "verticals", "capabilities", "recommended", "available", "unavailable_reason", "max_seq_length", "description")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    VERTICALS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDED_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQ_LENGTH_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    provider: str
    parameters: int
    size: str
    verticals: _containers.RepeatedScalarFieldContainer[str]
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    recommended: bool
    available: bool
    unavailable_reason: str
    max_seq_length: int
    description: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., provider: _Optional[str] = ..., parameters: _Optional[int] = ..., size: _Optional[str] = ..., verticals: _Optional[_Iterable[str]] = ..., capabilities: _Optional[_Iterable[str]] = ..., recommended: _Optional[bool] = ..., available: _Optional[bool] = ..., unavailable_reason: _Optional[str] = ..., max_seq_length: _Optional[int] = ..., description: _Optional[str] = ...) -> None: ...

class ListBaseModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[BaseModel]
    def __init__(self, models: _Optional[_Iterable[_Union[BaseModel, _Mapping]]] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id", "after_sequence")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after_sequence: int
    def __init__(self, job_id: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class StatusChange(_message.Message):
    __slots__ = ("from_status", "to_status", "reason")
    FROM_STATUS_FIELD_NUMBER: _ClassVar[int]
    TO_STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    from_status: JobStatus
    to_status: JobStatus
    reason: str
    def __init__(self, from_status: _Optional[_Union[JobStatus, str]] = ..., to_status: _Optional[_Union[JobStatus, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class StepEvent(_message.Message):
    __slots__ = ("epoch", "step", "total_steps", "loss", "learning_rate", "examples_seen", "tokens_per_second", "progress", "extra")
    class ExtraEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_SEEN_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    epoch: float
    step: int
    total_steps: int
    loss: float
    learning_rate: float
    examples_seen: int
    tokens_per_second: float
    progress: float
    extra: _containers.ScalarMap[str, float]
    def __init__(self, epoch: _Optional[float] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ..., loss: _Optional[float] = ..., learning_rate: _Optional[float] = ..., examples_seen: _Optional[int] = ..., tokens_per_second: _Optional[float] = ..., progress: _Optional[float] = ..., extra: _Optional[_Mapping[str, float]] = ...) -> None: ...

class CheckpointEvent(_message.Message):
    __slots__ = ("path", "step")
    PATH_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    path: str
    step: int
    def __init__(self, path: _Optional[str] = ..., step: _Optional[int] = ...) -> None: ...

class EvalEvent(_message.Message):
    __slots__ = ("phase", "done", "total", "metrics")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PHASE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    phase: str
    done: int
    total: int
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, phase: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("sequence", "time", "type", "message", "status_change", "step", "checkpoint", "eval")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STATUS_CHANGE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    EVAL_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    time: _timestamp_pb2.Timestamp
    type: EventType
    message: str
    status_change: StatusChange
    step: StepEvent
    checkpoint: CheckpointEvent
    eval: EvalEvent
    def __init__(self, sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., type: _Optional[_Union[EventType, str]] = ..., message: _Optional[str] = ..., status_change: _Optional[_Union[StatusChange, _Mapping]] = ..., step: _Optional[_Union[StepEvent, _Mapping]] = ..., checkpoint: _Optional[_Union[CheckpointEvent, _Mapping]] = ..., eval: _Optional[_Union[EvalEvent, _Mapping]] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ("snapshot", "event")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    snapshot: Job
    event: JobEvent
    def __init__(self, snapshot: _Optional[_Union[Job, _Mapping]] = ..., event: _Optional[_Union[JobEvent, _Mapping]] = ...) -> None: ...
