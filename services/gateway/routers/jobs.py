"""Training-job routes (served by the trainer over gRPC): list, counts, get, create, start, cancel, metrics,
artifacts and artifact downloads.

The request model only checks types (strict: ``"8"`` is not a rank) and accepts the guide's camelCase names;
the trainer validates ranges and the model's limits, and its field errors come back as 422 with the field.
"""

from __future__ import annotations

import asyncio
import mimetypes
from datetime import datetime, timezone
from typing import Annotated, Any, Literal
from urllib.parse import quote

import grpc
from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from aragora.training.v1 import trainer_pb2 as pb
from services.gateway.deps import TimeoutDep, TrainerDep

router = APIRouter(prefix="/api/training", tags=["jobs"])

JobStatusName = Literal["queued", "preparing", "training", "completed", "failed", "cancelled"]
STATUS_NAMES: dict[int, str] = {
    pb.JOB_STATUS_QUEUED: "queued",
    pb.JOB_STATUS_PREPARING: "preparing",
    pb.JOB_STATUS_TRAINING: "training",
    pb.JOB_STATUS_COMPLETED: "completed",
    pb.JOB_STATUS_FAILED: "failed",
    pb.JOB_STATUS_CANCELLED: "cancelled",
}
STATUS_VALUES = {v: k for k, v in STATUS_NAMES.items()}
QUANTIZATION_NAMES = {pb.QUANTIZATION_4BIT: "4bit", pb.QUANTIZATION_8BIT: "8bit", pb.QUANTIZATION_NONE: "none"}
QUANTIZATION_VALUES = {v: k for k, v in QUANTIZATION_NAMES.items()}
METHOD_NAMES = {pb.TRAINING_METHOD_SFT: "sft", pb.TRAINING_METHOD_DPO: "dpo"}
METHOD_VALUES = {v: k for k, v in METHOD_NAMES.items()}

INT32 = dict(ge=-(2**31), le=2**31 - 1)


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


# -- requests --------------------------------------------------------------------------------------------------


class TrainingConfigCreate(BaseModel):
    """A job's training parameters; every field optional (unset takes the trainer's default)."""

    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)

    lora_r: int | None = Field(None, validation_alias=_alias("lora_r", "loraR"), description="LoRA rank (default 8)", **INT32)
    lora_alpha: float | None = Field(None, validation_alias=_alias("lora_alpha", "loraAlpha"), allow_inf_nan=False,
                                     description="LoRA scaling factor (default 16)")
    lora_dropout: float | None = Field(None, validation_alias=_alias("lora_dropout", "loraDropout"), allow_inf_nan=False,
                                       description="Dropout of the LoRA layers, in [0, 1) (default 0.05)")
    num_epochs: int | None = Field(None, validation_alias=_alias("num_epochs", "numEpochs"), description="Epochs (default 3)", **INT32)
    batch_size: int | None = Field(None, validation_alias=_alias("batch_size", "batchSize"), description="Batch size (default 4)", **INT32)
    learning_rate: float | None = Field(None, validation_alias=_alias("learning_rate", "learningRate"), allow_inf_nan=False,
                                        description="Learning rate (default 2e-4)")
    max_seq_length: int | None = Field(None, validation_alias=_alias("max_seq_length", "maxSeqLength"),
                                       description="Longest sequence in tokens (default 2048, capped at the model's limit)", **INT32)
    quantization: Literal["4bit", "8bit", "none"] | None = Field(None, description="Base model loading (default 4bit)")
    gradient_checkpointing: bool | None = Field(None, validation_alias=_alias("gradient_checkpointing", "gradientCheckpointing"),
                                                description="Recompute activations to save memory (default true)")
    dataset_path: str | None = Field(None, validation_alias=_alias("dataset_path", "datasetPath"),
                                     description="A JSONL file inside the trainer's data root (default: the exporter's SFT export)")
    method: Literal["sft", "dpo"] | None = Field(None, description="Training method (default sft)")
    beta: float | None = Field(None, allow_inf_nan=False, description="DPO temperature (default 0.1)")
    min_confidence: float | None = Field(None, validation_alias=_alias("min_confidence", "minConfidence"), allow_inf_nan=False,
                                         description="SFT data: minimum consensus confidence (default 0.7)")
    min_confidence_diff: float | None = Field(None, validation_alias=_alias("min_confidence_diff", "minConfidenceDiff"),
                                              allow_inf_nan=False, description="DPO data: minimum confidence difference (default 0)")
    target_modules: list[str] | None = Field(None, validation_alias=_alias("target_modules", "targetModules"),
                                             description="Modules LoRA adapts (default q_proj, v_proj)")
    max_steps: int | None = Field(None, validation_alias=_alias("max_steps", "maxSteps"), description="Stop after this many steps", **INT32)
    seed: int | None = Field(None, description="Random seed (default 42)", **INT32)
    checkpoint_every_steps: int | None = Field(None, validation_alias=_alias("checkpoint_every_steps", "checkpointEverySteps"),
                                               description="Steps between checkpoints (default: the trainer's setting)", **INT32)

    def to_pb(self) -> pb.TrainingConfig:
        out = pb.TrainingConfig()
        for name, value in self.model_dump(exclude_none=True).items():
            if name == "quantization":
                out.quantization = QUANTIZATION_VALUES[value]
            elif name == "method":
                out.method = METHOD_VALUES[value]
            elif name == "target_modules":
                out.target_modules.extend(value)
            else:
                setattr(out, name, value)
        return out


# Every name a training parameter goes by (snake_case and camelCase), to spot them at the top level.
_CONFIG_KEYS = set(TrainingConfigCreate.model_fields)
for _info in TrainingConfigCreate.model_fields.values():
    if isinstance(_info.validation_alias, AliasChoices):
        _CONFIG_KEYS |= {c for c in _info.validation_alias.choices if isinstance(c, str)}


class TrainingJobCreate(BaseModel):
    """The user guide's "Create Job" body. The guide's form names (``jobName``, ``baseModel``, ``loraR``...)
    are accepted too, and training parameters may also be given at the top level."""

    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)

    name: str = Field(validation_alias=_alias("name", "jobName", "job_name"), description="Unique job name")
    vertical: str = Field("", description="The vertical to train for (empty: every vertical)")
    base_model: str = Field("", validation_alias=_alias("base_model", "baseModel"),
                            description="Base model id (see GET /api/training/models); empty: the default")
    training_config: TrainingConfigCreate = Field(default_factory=TrainingConfigCreate,
                                                  validation_alias=_alias("training_config", "trainingConfig"))

    @model_validator(mode="before")
    @classmethod
    def _flat_form(cls, data: Any) -> Any:
        # The guide's form lists the parameters beside jobName; fold them into training_config.
        if not isinstance(data, dict):
            return data
        flat = {k: v for k, v in data.items() if k in _CONFIG_KEYS}
        if not flat:
            return data
        rest = {k: v for k, v in data.items() if k not in _CONFIG_KEYS}
        nested_key = "training_config" if "training_config" in rest else "trainingConfig"
        nested = rest.get(nested_key)
        if nested is None:
            nested = {}
        if isinstance(nested, dict):
            rest[nested_key] = {**flat, **nested}
        return rest


# -- responses -------------------------------------------------------------------------------------------------


class TrainingConfigPublic(BaseModel):
    lora_r: int | None = None
    lora_alpha: float | None = None
    lora_dropout: float | None = None
    num_epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    max_seq_length: int | None = None
    quantization: Literal["4bit", "8bit", "none"] | None = None
    gradient_checkpointing: bool | None = None
    dataset_path: str | None = None
    method: Literal["sft", "dpo"] | None = None
    beta: float | None = None
    min_confidence: float | None = None
    min_confidence_diff: float | None = None
    target_modules: list[str] = []
    max_steps: int | None = None
    seed: int | None = None
    checkpoint_every_steps: int | None = None


class TrainingJobPublic(BaseModel):
    id: str
    name: str
    vertical: str
    base_model: str
    status: JobStatusName
    progress: float
    current_epoch: int
    current_step: int
    total_steps: int
    loss: float | None
    training_examples: int
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    error: str | None
    training_config: TrainingConfigPublic


class TrainingJobsPublic(BaseModel):
    jobs: list[TrainingJobPublic]
    total: int


class JobCountsPublic(BaseModel):
    queued: int
    preparing: int
    training: int
    completed: int
    failed: int
    cancelled: int
    total: int
    running: int
    """preparing + training"""


class ModelEvaluationPublic(BaseModel):
    heldout_loss: float | None = None
    perplexity: float | None = None
    preference_accuracy: float | None = None
    vertical_accuracy: dict[str, float] = {}


class TrainingJobMetricsPublic(BaseModel):
    job_id: str
    status: JobStatusName
    training_data_examples: int
    training_data_debates: int
    final_loss: float | None
    elo_rating: float | None
    win_rate: float | None
    vertical_accuracy: dict[str, float]
    base: ModelEvaluationPublic | None
    adapter: ModelEvaluationPublic | None
    eval_matches: int
    eval_sft_records: int
    eval_dpo_pairs: int


class ArtifactFilePublic(BaseModel):
    name: str
    size_bytes: int
    type: str


class TrainingJobArtifactsPublic(BaseModel):
    job_id: str
    checkpoint_path: str
    data_directory: str
    files: list[ArtifactFilePublic]


# -- conversion ------------------------------------------------------------------------------------------------


def _ts(msg, name: str) -> datetime | None:
    return getattr(msg, name).ToDatetime(tzinfo=timezone.utc) if msg.HasField(name) else None


def _opt(msg, name: str):
    return getattr(msg, name) if msg.HasField(name) else None


def config_public(c: pb.TrainingConfig) -> TrainingConfigPublic:
    return TrainingConfigPublic(
        **{name: _opt(c, name) for name in (
            "lora_r", "lora_alpha", "lora_dropout", "num_epochs", "batch_size", "learning_rate", "max_seq_length",
            "gradient_checkpointing", "dataset_path", "beta", "min_confidence", "min_confidence_diff", "max_steps",
            "seed", "checkpoint_every_steps")},
        quantization=QUANTIZATION_NAMES.get(c.quantization),
        method=METHOD_NAMES.get(c.method),
        target_modules=list(c.target_modules),
    )


def job_public(j: pb.Job) -> TrainingJobPublic:
    return TrainingJobPublic(
        id=j.id, name=j.name, vertical=j.vertical, base_model=j.base_model, status=STATUS_NAMES[j.status],
        progress=j.progress, current_epoch=j.current_epoch, current_step=j.current_step, total_steps=j.total_steps,
        loss=_opt(j, "loss"), training_examples=j.training_examples, created_at=_ts(j, "created_at"),
        started_at=_ts(j, "started_at"), completed_at=_ts(j, "completed_at"), error=j.error or None,
        training_config=config_public(j.training_config),
    )


def _evaluation_public(m: pb.GetJobMetricsResponse, name: str) -> ModelEvaluationPublic | None:
    if not m.HasField(name):
        return None
    e = getattr(m, name)
    return ModelEvaluationPublic(heldout_loss=_opt(e, "heldout_loss"), perplexity=_opt(e, "perplexity"),
                                 preference_accuracy=_opt(e, "preference_accuracy"),
                                 vertical_accuracy=dict(e.vertical_accuracy))


JobId = Annotated[str, Path(description="The job's id (job-...)", max_length=200)]


# -- routes ----------------------------------------------------------------------------------------------------


@router.get("/jobs", response_model=TrainingJobsPublic)
async def read_jobs(
    trainer: TrainerDep,
    timeout: TimeoutDep,
    vertical: Annotated[str, Query(description="Only this vertical", max_length=200)] = "",
    status: Annotated[JobStatusName | None, BeforeValidator(lambda v: v or None),
                      Query(description="Only this status (empty: any)")] = None,
    limit: Annotated[int, Query(ge=0, le=10_000, description="At most this many jobs (0: all)")] = 0,
) -> TrainingJobsPublic:
    """Lists training jobs, newest first; ``total`` counts every job matching the filters."""
    resp = await trainer.ListJobs(
        pb.ListJobsRequest(vertical=vertical, status=STATUS_VALUES[status] if status else 0, limit=limit),
        timeout=timeout,
    )
    return TrainingJobsPublic(jobs=[job_public(j) for j in resp.jobs], total=resp.total)


@router.get("/jobs/counts", response_model=JobCountsPublic)
async def read_job_counts(trainer: TrainerDep, timeout: TimeoutDep) -> JobCountsPublic:
    """Job counts by status; ``running`` = preparing + training."""
    c = await trainer.GetJobCounts(pb.GetJobCountsRequest(), timeout=timeout)
    return JobCountsPublic(queued=c.queued, preparing=c.preparing, training=c.training, completed=c.completed,
                           failed=c.failed, cancelled=c.cancelled, total=c.total, running=c.preparing + c.training)


@router.get("/jobs/{job_id}", response_model=TrainingJobPublic)
async def read_job(job_id: JobId, trainer: TrainerDep, timeout: TimeoutDep) -> TrainingJobPublic:
    """One job. 404 for an unknown id."""
    resp = await trainer.GetJob(pb.GetJobRequest(job_id=job_id), timeout=timeout)
    return job_public(resp.job)


@router.post("/jobs", response_model=TrainingJobPublic, status_code=201)
async def create_job(body: TrainingJobCreate, trainer: TrainerDep, timeout: TimeoutDep) -> TrainingJobPublic:
    """Creates a job in ``queued`` status. A bad field is 422 naming it; a duplicate name is 409; nothing is
    created on error."""
    resp = await trainer.CreateJob(
        pb.CreateJobRequest(name=body.name, vertical=body.vertical, base_model=body.base_model,
                            training_config=body.training_config.to_pb()),
        timeout=timeout,
    )
    return job_public(resp.job)


@router.post("/jobs/{job_id}/start", response_model=TrainingJobPublic)
async def start_job(job_id: JobId, trainer: TrainerDep, timeout: TimeoutDep) -> TrainingJobPublic:
    """Starts a queued job (it waits in ``queued`` while the trainer's worker slots are busy). 409 if the job
    is not queued."""
    resp = await trainer.StartJob(pb.StartJobRequest(job_id=job_id), timeout=timeout)
    return job_public(resp.job)


@router.delete("/jobs/{job_id}", response_model=TrainingJobPublic)
async def cancel_job(job_id: JobId, trainer: TrainerDep, timeout: TimeoutDep) -> TrainingJobPublic:
    """Cancels a job: its worker process is ended (within about 5 s) and the job becomes ``cancelled``; its
    checkpoints stay. 409 for a job that already ended."""
    # Ending a worker may take its SIGTERM grace (5 s) on top of the usual deadline.
    resp = await trainer.CancelJob(pb.CancelJobRequest(job_id=job_id), timeout=timeout + 10)
    return job_public(resp.job)


@router.get("/jobs/{job_id}/metrics", response_model=TrainingJobMetricsPublic)
async def read_job_metrics(job_id: JobId, trainer: TrainerDep, timeout: TimeoutDep) -> TrainingJobMetricsPublic:
    """A completed job's measured metrics (absent figures are null). 409 for a job that did not complete."""
    m = await trainer.GetJobMetrics(pb.GetJobMetricsRequest(job_id=job_id), timeout=timeout)
    return TrainingJobMetricsPublic(
        job_id=m.job_id, status=STATUS_NAMES[m.status], training_data_examples=m.training_data_examples,
        training_data_debates=m.training_data_debates, final_loss=_opt(m, "final_loss"),
        elo_rating=_opt(m, "elo_rating"), win_rate=_opt(m, "win_rate"), vertical_accuracy=dict(m.vertical_accuracy),
        base=_evaluation_public(m, "base"), adapter=_evaluation_public(m, "adapter"), eval_matches=m.eval_matches,
        eval_sft_records=m.eval_sft_records, eval_dpo_pairs=m.eval_dpo_pairs,
    )


@router.get("/jobs/{job_id}/artifacts", response_model=TrainingJobArtifactsPublic)
async def read_job_artifacts(job_id: JobId, trainer: TrainerDep, timeout: TimeoutDep) -> TrainingJobArtifactsPublic:
    """Every file of the job's folder with its size and type (config, weights, tokenizer, checkpoint, data,
    log, metrics, other), the adapter (or newest checkpoint) folder and the data folder."""
    a = await trainer.GetJobArtifacts(pb.GetJobArtifactsRequest(job_id=job_id), timeout=timeout)
    return TrainingJobArtifactsPublic(
        job_id=a.job_id, checkpoint_path=a.checkpoint_path, data_directory=a.data_directory,
        files=[ArtifactFilePublic(name=f.name, size_bytes=f.size_bytes, type=f.type) for f in a.files],
    )


@router.get(
    "/jobs/{job_id}/artifacts/{name:path}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The file's bytes"}},
)
async def download_artifact(job_id: JobId, name: str, trainer: TrainerDep, timeout: TimeoutDep) -> StreamingResponse:
    """Downloads one artifact file (``name`` as the artifacts listing shows it, e.g.
    ``adapter/adapter_model.safetensors``). 404 for a name outside the job's folder."""
    call = trainer.ReadArtifact(pb.ReadArtifactRequest(job_id=job_id, name=name))
    try:
        # The first chunk (or the error) decides the status code before any byte is sent.
        first = await asyncio.wait_for(call.read(), timeout)
    except BaseException:
        call.cancel()
        raise

    async def body():
        try:
            msg = first
            while msg is not grpc.aio.EOF:
                if msg.data:
                    yield msg.data
                msg = await call.read()
        finally:
            call.cancel()

    size = first.size_bytes if first is not grpc.aio.EOF else 0
    filename = name.rsplit("/", 1)[-1]
    media = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    headers = {
        "Content-Length": str(size),
        "Content-Disposition": f"attachment; filename=\"{quote(filename)}\"; filename*=UTF-8''{quote(filename)}",
    }
    return StreamingResponse(body(), media_type=media, headers=headers)
