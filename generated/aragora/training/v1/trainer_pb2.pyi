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

class LrScheduler(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LR_SCHEDULER_UNSPECIFIED: _ClassVar[LrScheduler]
    LR_SCHEDULER_LINEAR: _ClassVar[LrScheduler]
    LR_SCHEDULER_COSINE: _ClassVar[LrScheduler]
    LR_SCHEDULER_CONSTANT: _ClassVar[LrScheduler]

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
    EVENT_TYPE_DOWNLOAD: _ClassVar[EventType]
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
LR_SCHEDULER_UNSPECIFIED: LrScheduler
LR_SCHEDULER_LINEAR: LrScheduler
LR_SCHEDULER_COSINE: LrScheduler
LR_SCHEDULER_CONSTANT: LrScheduler
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_STATUS: EventType
EVENT_TYPE_STEP: EventType
EVENT_TYPE_CHECKPOINT: EventType
EVENT_TYPE_EVAL: EventType
EVENT_TYPE_LOG: EventType
EVENT_TYPE_WARNING: EventType
EVENT_TYPE_ERROR: EventType
EVENT_TYPE_DOWNLOAD: EventType

class TrainingConfig(_message.Message):
    __slots__ = ("lora_r", "lora_alpha", "lora_dropout", "num_epochs", "batch_size", "learning_rate", "max_seq_length", "quantization", "gradient_checkpointing", "dataset_path", "method", "beta", "min_confidence", "min_confidence_diff", "target_modules", "max_steps", "seed", "checkpoint_every_steps", "gradient_accumulation_steps", "lr_scheduler_type", "warmup_ratio", "warmup_steps", "weight_decay", "max_grad_norm", "validation_split", "eval_every_steps", "early_stopping_patience", "early_stopping_min_delta", "save_total_limit", "init_from_job", "init_from_checkpoint", "num_workers")
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
    GRADIENT_ACCUMULATION_STEPS_FIELD_NUMBER: _ClassVar[int]
    LR_SCHEDULER_TYPE_FIELD_NUMBER: _ClassVar[int]
    WARMUP_RATIO_FIELD_NUMBER: _ClassVar[int]
    WARMUP_STEPS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    MAX_GRAD_NORM_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_SPLIT_FIELD_NUMBER: _ClassVar[int]
    EVAL_EVERY_STEPS_FIELD_NUMBER: _ClassVar[int]
    EARLY_STOPPING_PATIENCE_FIELD_NUMBER: _ClassVar[int]
    EARLY_STOPPING_MIN_DELTA_FIELD_NUMBER: _ClassVar[int]
    SAVE_TOTAL_LIMIT_FIELD_NUMBER: _ClassVar[int]
    INIT_FROM_JOB_FIELD_NUMBER: _ClassVar[int]
    INIT_FROM_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    NUM_WORKERS_FIELD_NUMBER: _ClassVar[int]
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
    gradient_accumulation_steps: int
    lr_scheduler_type: LrScheduler
    warmup_ratio: float
    warmup_steps: int
    weight_decay: float
    max_grad_norm: float
    validation_split: float
    eval_every_steps: int
    early_stopping_patience: int
    early_stopping_min_delta: float
    save_total_limit: int
    init_from_job: str
    init_from_checkpoint: int
    num_workers: int
    def __init__(self, lora_r: _Optional[int] = ..., lora_alpha: _Optional[float] = ..., lora_dropout: _Optional[float] = ..., num_epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., max_seq_length: _Optional[int] = ..., quantization: _Optional[_Union[Quantization, str]] = ..., gradient_checkpointing: _Optional[bool] = ..., dataset_path: _Optional[str] = ..., method: _Optional[_Union[TrainingMethod, str]] = ..., beta: _Optional[float] = ..., min_confidence: _Optional[float] = ..., min_confidence_diff: _Optional[float] = ..., target_modules: _Optional[_Iterable[str]] = ..., max_steps: _Optional[int] = ..., seed: _Optional[int] = ..., checkpoint_every_steps: _Optional[int] = ..., gradient_accumulation_steps: _Optional[int] = ..., lr_scheduler_type: _Optional[_Union[LrScheduler, str]] = ..., warmup_ratio: _Optional[float] = ..., warmup_steps: _Optional[int] = ..., weight_decay: _Optional[float] = ..., max_grad_norm: _Optional[float] = ..., validation_split: _Optional[float] = ..., eval_every_steps: _Optional[int] = ..., early_stopping_patience: _Optional[int] = ..., early_stopping_min_delta: _Optional[float] = ..., save_total_limit: _Optional[int] = ..., init_from_job: _Optional[str] = ..., init_from_checkpoint: _Optional[int] = ..., num_workers: _Optional[int] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "name", "vertical", "base_model", "training_config", "status", "progress", "current_epoch", "current_step", "total_steps", "loss", "training_examples", "created_at", "started_at", "completed_at", "error", "owner")
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
    OWNER_FIELD_NUMBER: _ClassVar[int]
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
    owner: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., vertical: _Optional[str] = ..., base_model: _Optional[str] = ..., training_config: _Optional[_Union[TrainingConfig, _Mapping]] = ..., status: _Optional[_Union[JobStatus, str]] = ..., progress: _Optional[float] = ..., current_epoch: _Optional[int] = ..., current_step: _Optional[int] = ..., total_steps: _Optional[int] = ..., loss: _Optional[float] = ..., training_examples: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[str] = ..., owner: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("id", "name", "provider", "parameters", "size", "verticals", "capabilities", "recommended", "available", "unavailable_reason", "max_seq_length", "description", "downloaded")
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
    DOWNLOADED_FIELD_NUMBER: _ClassVar[int]
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
    downloaded: bool
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., provider: _Optional[str] = ..., parameters: _Optional[int] = ..., size: _Optional[str] = ..., verticals: _Optional[_Iterable[str]] = ..., capabilities: _Optional[_Iterable[str]] = ..., recommended: _Optional[bool] = ..., available: _Optional[bool] = ..., unavailable_reason: _Optional[str] = ..., max_seq_length: _Optional[int] = ..., description: _Optional[str] = ..., downloaded: _Optional[bool] = ...) -> None: ...

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

class DownloadEvent(_message.Message):
    __slots__ = ("model", "phase", "files_done", "files_total", "bytes_done", "bytes_total", "bytes_per_second", "eta_seconds", "file")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    FILES_DONE_FIELD_NUMBER: _ClassVar[int]
    FILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BYTES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    model: str
    phase: str
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    bytes_per_second: float
    eta_seconds: float
    file: str
    def __init__(self, model: _Optional[str] = ..., phase: _Optional[str] = ..., files_done: _Optional[int] = ..., files_total: _Optional[int] = ..., bytes_done: _Optional[int] = ..., bytes_total: _Optional[int] = ..., bytes_per_second: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., file: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("sequence", "time", "type", "message", "status_change", "step", "checkpoint", "eval", "download")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STATUS_CHANGE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    EVAL_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    time: _timestamp_pb2.Timestamp
    type: EventType
    message: str
    status_change: StatusChange
    step: StepEvent
    checkpoint: CheckpointEvent
    eval: EvalEvent
    download: DownloadEvent
    def __init__(self, sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., type: _Optional[_Union[EventType, str]] = ..., message: _Optional[str] = ..., status_change: _Optional[_Union[StatusChange, _Mapping]] = ..., step: _Optional[_Union[StepEvent, _Mapping]] = ..., checkpoint: _Optional[_Union[CheckpointEvent, _Mapping]] = ..., eval: _Optional[_Union[EvalEvent, _Mapping]] = ..., download: _Optional[_Union[DownloadEvent, _Mapping]] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ("snapshot", "event")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    snapshot: Job
    event: JobEvent
    def __init__(self, snapshot: _Optional[_Union[Job, _Mapping]] = ..., event: _Optional[_Union[JobEvent, _Mapping]] = ...) -> None: ...

class CloneJobRequest(_message.Message):
    __slots__ = ("job_id", "name", "overrides")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    name: str
    overrides: TrainingConfig
    def __init__(self, job_id: _Optional[str] = ..., name: _Optional[str] = ..., overrides: _Optional[_Union[TrainingConfig, _Mapping]] = ...) -> None: ...

class CloneJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class PreflightJobRequest(_message.Message):
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

class RenderedSegment(_message.Message):
    __slots__ = ("text", "trained", "tokens")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TRAINED_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    text: str
    trained: bool
    tokens: int
    def __init__(self, text: _Optional[str] = ..., trained: _Optional[bool] = ..., tokens: _Optional[int] = ...) -> None: ...

class PreflightJobResponse(_message.Message):
    __slots__ = ("training_config", "records", "examples", "dropped", "truncated", "tokens_per_epoch", "trained_tokens_per_epoch", "longest_example", "steps_per_epoch", "total_steps", "tokens_to_train", "tokens_per_second", "throughput_source", "estimated_seconds", "estimated_memory_bytes", "memory_breakdown", "measured_peak_memory_bytes", "device", "example", "warnings", "source")
    TRAINING_CONFIG_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    TRAINED_TOKENS_PER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    LONGEST_EXAMPLE_FIELD_NUMBER: _ClassVar[int]
    STEPS_PER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_TO_TRAIN_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    THROUGHPUT_SOURCE_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BREAKDOWN_FIELD_NUMBER: _ClassVar[int]
    MEASURED_PEAK_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    EXAMPLE_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    training_config: TrainingConfig
    records: int
    examples: int
    dropped: int
    truncated: int
    tokens_per_epoch: int
    trained_tokens_per_epoch: int
    longest_example: int
    steps_per_epoch: int
    total_steps: int
    tokens_to_train: int
    tokens_per_second: float
    throughput_source: str
    estimated_seconds: float
    estimated_memory_bytes: int
    memory_breakdown: str
    measured_peak_memory_bytes: int
    device: str
    example: _containers.RepeatedCompositeFieldContainer[RenderedSegment]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    source: str
    def __init__(self, training_config: _Optional[_Union[TrainingConfig, _Mapping]] = ..., records: _Optional[int] = ..., examples: _Optional[int] = ..., dropped: _Optional[int] = ..., truncated: _Optional[int] = ..., tokens_per_epoch: _Optional[int] = ..., trained_tokens_per_epoch: _Optional[int] = ..., longest_example: _Optional[int] = ..., steps_per_epoch: _Optional[int] = ..., total_steps: _Optional[int] = ..., tokens_to_train: _Optional[int] = ..., tokens_per_second: _Optional[float] = ..., throughput_source: _Optional[str] = ..., estimated_seconds: _Optional[float] = ..., estimated_memory_bytes: _Optional[int] = ..., memory_breakdown: _Optional[str] = ..., measured_peak_memory_bytes: _Optional[int] = ..., device: _Optional[str] = ..., example: _Optional[_Iterable[_Union[RenderedSegment, _Mapping]]] = ..., warnings: _Optional[_Iterable[str]] = ..., source: _Optional[str] = ...) -> None: ...

class PullBaseModelRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class PullBaseModelResponse(_message.Message):
    __slots__ = ("model_id", "already_present", "files_total", "bytes_total", "revision")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    ALREADY_PRESENT_FIELD_NUMBER: _ClassVar[int]
    FILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    already_present: bool
    files_total: int
    bytes_total: int
    revision: str
    def __init__(self, model_id: _Optional[str] = ..., already_present: _Optional[bool] = ..., files_total: _Optional[int] = ..., bytes_total: _Optional[int] = ..., revision: _Optional[str] = ...) -> None: ...

class ListLocalModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LocalModel(_message.Message):
    __slots__ = ("id", "size_bytes", "files", "source", "revision", "bytes_total", "used_by", "pulling", "pull_error")
    ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    USED_BY_FIELD_NUMBER: _ClassVar[int]
    PULLING_FIELD_NUMBER: _ClassVar[int]
    PULL_ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    size_bytes: int
    files: int
    source: str
    revision: str
    bytes_total: int
    used_by: _containers.RepeatedScalarFieldContainer[str]
    pulling: bool
    pull_error: str
    def __init__(self, id: _Optional[str] = ..., size_bytes: _Optional[int] = ..., files: _Optional[int] = ..., source: _Optional[str] = ..., revision: _Optional[str] = ..., bytes_total: _Optional[int] = ..., used_by: _Optional[_Iterable[str]] = ..., pulling: _Optional[bool] = ..., pull_error: _Optional[str] = ...) -> None: ...

class ListLocalModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[LocalModel]
    def __init__(self, models: _Optional[_Iterable[_Union[LocalModel, _Mapping]]] = ...) -> None: ...

class DeleteLocalModelRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class DeleteLocalModelResponse(_message.Message):
    __slots__ = ("freed_bytes",)
    FREED_BYTES_FIELD_NUMBER: _ClassVar[int]
    freed_bytes: int
    def __init__(self, freed_bytes: _Optional[int] = ...) -> None: ...
