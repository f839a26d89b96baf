"""Training-job routes (served by the trainer over gRPC): list, counts, get, create, start, cancel, metrics,
artifacts and artifact downloads, and the training parameters' JSON Schema.

The training-config models are built from ``TrainingSpec`` (``services/common/training_spec.py``) and converted
to and from protobuf by ``services/common/training_config.py``: no parameter is named here. The request model
only checks types (strict: ``"8"`` is not a rank) and accepts the guide's camelCase names; the trainer validates
ranges and the model's limits, and its field errors come back as 422 with the field.
"""

from __future__ import annotations

import asyncio
import mimetypes
from datetime import UTC, datetime
from email.utils import formatdate
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import quote

import grpc
from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    create_model,
    model_serializer,
    model_validator,
)
from pydantic.fields import FieldInfo

from aragora.training.v1 import trainer_pb2 as pb
from services.common.training_config import config_from_pb, config_to_pb
from services.common.training_spec import CANONICAL, TrainingSpec, aliases, config_json_schema
from services.gateway import compat
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
# Aragora's status words (its TrainingStatus and its TypeScript client's) for the list filter.
ARAGORA_STATUS = {"pending": "queued", "exporting_data": "preparing",
                  "evaluating": "training", "ready": "completed"}

INT32 = dict(ge=-(2**31), le=2**31 - 1)


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


# -- the training parameters, built from the one TrainingSpec -------------------------------------------------


def _default_text(info: FieldInfo) -> str | None:
    value = info.get_default(call_default_factory=True)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _base_type(annotation: Any) -> Any:
    """``int | None`` -> ``int``; other annotations as they are."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    return args[0] if get_origin(annotation) in (Union, UnionType) and len(args) == 1 else annotation


def _config_fields(*, request: bool) -> dict[str, Any]:
    """Every ``TrainingSpec`` field as an optional field (None: unset, the trainer fills in the default). The
    request's fields accept the camelCase name too, and are bounded to what the protobuf field holds (int32,
    finite floats); the ranges themselves are the trainer's to check (its errors name the field)."""
    fields: dict[str, Any] = {}
    for name, info in TrainingSpec.model_fields.items():
        base = _base_type(info.annotation)
        if not request:
            # A repeated field has no "unset": an empty list.
            fields[name] = (base, Field([], description=info.description)) if get_origin(base) is list else (
                base | None, Field(None, description=info.description))
            continue
        default = _default_text(info)
        extra: dict[str, Any] = {}
        if base is int:
            extra.update(INT32)
        elif base is float:
            extra["allow_inf_nan"] = False
        fields[name] = (base | None, Field(
            None, validation_alias=aliases(name), **extra,
            description=f"{info.description} (default {default})" if default is not None else info.description))
    return fields


class _TrainingConfigCreateBase(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)

    def to_pb(self) -> pb.TrainingConfig:
        return config_to_pb(self.model_dump(exclude_none=True))


TrainingConfigCreate = create_model(
    "TrainingConfigCreate", __base__=_TrainingConfigCreateBase, __module__=__name__,
    __doc__="A job's training parameters; every field optional (unset takes the trainer's default).",
    **_config_fields(request=True))

# Every name a training parameter goes by (snake_case and camelCase), to spot them at the top level.
_CONFIG_KEYS = set(CANONICAL)


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


class TrainingJobPreflight(TrainingJobCreate):
    """A dry run's body: the create body, the name optional."""

    name: str = Field("", validation_alias=_alias("name", "jobName", "job_name"),
                      description="The job's name (optional for a preflight)")


class TrainingJobClone(BaseModel):
    """Clones a job: its config, the given parameters replacing the source's values."""

    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)

    name: str = Field("", validation_alias=_alias("name", "jobName", "job_name"),
                      description="The new job's unique name; empty: the source's name with \" (copy)\"")
    training_config: TrainingConfigCreate = Field(
        default_factory=TrainingConfigCreate, validation_alias=_alias("training_config", "trainingConfig"),
        description="The parameters that differ from the source's (e.g. init_from_job to continue from it)")


@router.get("/config-schema", response_model=dict[str, Any])
async def read_config_schema() -> dict[str, Any]:
    """The JSON Schema of ``training_config``: every training parameter with its type, default, range
    (``minimum`` / ``exclusiveMinimum`` / ``maximum`` / ``exclusiveMaximum``), choices (``enum``), label
    (``title``) and help (``description``), plus ``x-camelCase`` (the other name it is accepted under) and
    ``x-group`` (``advanced`` beyond the guide's table). The dashboard's New Job form is built from it."""
    return config_json_schema()


# -- responses -------------------------------------------------------------------------------------------------


TrainingConfigPublic = create_model(
    "TrainingConfigPublic", __module__=__name__,
    __doc__="A job's training parameters, every default filled in (null: a parameter with no default, unset).",
    **_config_fields(request=False))


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
    owner: str | None = None
    """The name of the API key that created the job (README: Users and roles); absent with no keys."""

    @model_serializer(mode="wrap")
    def _without_unowned(self, handler):
        # Without keys (the open default) a job has no owner, and its answer stays exactly what it was.
        data = handler(self)
        if isinstance(data, dict) and data.get("owner") is None:
            data.pop("owner", None)
        return data
    training_config: TrainingConfigPublic


class AragoraJobPublic(TrainingJobPublic):
    """A job as Aragora's clients get it (docs/aragora_clients.md): ours plus the names they read, and a
    queued job's ``status`` in Aragora's word, ``pending`` (its pages offer Start only for that word)."""

    status: Literal["pending", "queued", "preparing", "training", "completed", "failed", "cancelled"]
    job_status: JobStatusName
    """The status in the guide's words (``queued`` where ``status`` says ``pending``)."""
    training_data_examples: int = 0
    """The same as ``training_examples``."""
    total_epochs: int | None = None
    """The job's ``training_config.num_epochs``."""
    checkpoint_path: str | None = None
    """A completed job's adapter folder (or newest checkpoint) on the trainer, as its artifacts show it."""
    output_path: str | None = None
    """The same as ``checkpoint_path``."""


class TrainingJobsPublic(BaseModel):
    jobs: list[TrainingJobPublic]
    total: int


class AragoraJobsPublic(BaseModel):
    """The job list as Aragora's clients get it: their job shape, and ``limit`` / ``offset`` echoed."""

    jobs: list[AragoraJobPublic]
    total: int
    limit: int
    """The ``limit`` applied (0: none)."""
    offset: int
    """The ``offset`` applied."""


class CancelResultPublic(AragoraJobPublic):
    """``DELETE`` / ``POST .../cancel``: the job after the call, and Aragora's keys."""

    success: bool = True
    """Whether the job is cancelled now (false: it had already completed or failed)."""
    job_id: str = ""


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


class MetricsSoFarPublic(TrainingJobMetricsPublic):
    """The metrics of a job that has not completed, as Aragora's clients get them (200, not 409); a queued
    job's status is Aragora's ``pending``."""

    status: Literal["pending", "queued", "preparing", "training", "completed", "failed", "cancelled"]

    complete: bool = False
    """False in the answer to an Aragora client about a job that has not completed: what is known so far
    (status, examples, the latest loss and progress); the measured figures are null."""
    loss: float | None = None
    progress: float | None = None
    current_step: int | None = None
    total_steps: int | None = None


class ArtifactFilePublic(BaseModel):
    name: str
    size_bytes: int
    type: str


class TrainingJobArtifactsPublic(BaseModel):
    job_id: str
    checkpoint_path: str
    data_directory: str
    files: list[ArtifactFilePublic]


class RenderedSegmentPublic(BaseModel):
    text: str
    trained: bool = Field(description="Whether these tokens are in the loss")
    tokens: int


class PreflightPublic(BaseModel):
    """What a job would do and cost (``POST /api/training/jobs/preflight``)."""

    training_config: TrainingConfigPublic
    source: str = Field(description="Where the data came from")
    records: int = Field(description="Records fetched")
    examples: int = Field(description="Examples trained on (records minus those dropped)")
    dropped: int = Field(description="Records dropped: their prompt alone fills max_seq_length")
    truncated: int = Field(description="Examples cut at max_seq_length")
    tokens_per_epoch: int
    trained_tokens_per_epoch: int = Field(description="Tokens in the loss per epoch")
    longest_example: int
    steps_per_epoch: int
    total_steps: int
    tokens_to_train: int = Field(description="Tokens the job's steps process")
    tokens_per_second: float = Field(description="Measured training throughput")
    throughput_source: str = Field(description="How the throughput was measured")
    estimated_seconds: float = Field(description="tokens_to_train / tokens_per_second (+ DPO's reference pass)")
    estimated_memory_bytes: int
    memory_breakdown: str
    measured_peak_memory_bytes: int = Field(description="Peak memory during the timed steps")
    device: str
    example: list[RenderedSegmentPublic] = Field(description="The first example, its trained tokens marked")
    warnings: list[str]


# -- conversion ------------------------------------------------------------------------------------------------


def _ts(msg, name: str) -> datetime | None:
    return getattr(msg, name).ToDatetime(tzinfo=UTC) if msg.HasField(name) else None


def _opt(msg, name: str):
    return getattr(msg, name) if msg.HasField(name) else None


def config_public(c: pb.TrainingConfig) -> TrainingConfigPublic:
    return TrainingConfigPublic(**config_from_pb(c, strict=False))


def job_public(j: pb.Job, cls: type[TrainingJobPublic] = TrainingJobPublic, **extra) -> TrainingJobPublic:
    status = STATUS_NAMES[j.status]
    if issubclass(cls, AragoraJobPublic):
        extra = {"training_data_examples": j.training_examples, "job_status": status,
                 "total_epochs": _opt(j.training_config, "num_epochs"), **extra}
        status = "pending" if status == "queued" else status
    return cls(
        id=j.id, name=j.name, vertical=j.vertical, base_model=j.base_model, status=status,
        progress=j.progress, current_epoch=j.current_epoch, current_step=j.current_step, total_steps=j.total_steps,
        loss=_opt(j, "loss"), training_examples=j.training_examples, created_at=_ts(j, "created_at"),
        started_at=_ts(j, "started_at"), completed_at=_ts(j, "completed_at"), error=j.error or None,
        owner=j.owner or None,
        training_config=config_public(j.training_config), **extra,
    )


def aragora_json(model: BaseModel) -> JSONResponse:
    """An Aragora client's answer, in its own model (the route's response_model documents the guide's)."""
    return JSONResponse(jsonable_encoder(model))


async def with_paths(trainer, timeout: float, jobs: list[AragoraJobPublic]) -> list[AragoraJobPublic]:
    """Fills ``checkpoint_path`` / ``output_path`` of the completed jobs from their artifacts (one call each,
    concurrently; a job whose artifacts cannot be read keeps null)."""
    done = [j for j in jobs if j.status == "completed"]

    async def one(job: TrainingJobPublic) -> None:
        try:
            a = await trainer.GetJobArtifacts(pb.GetJobArtifactsRequest(job_id=job.id), timeout=timeout)
        except grpc.aio.AioRpcError:
            return
        job.checkpoint_path = job.output_path = a.checkpoint_path or None

    await asyncio.gather(*(one(j) for j in done))
    return jobs


def _evaluation_public(m: pb.GetJobMetricsResponse, name: str) -> ModelEvaluationPublic | None:
    if not m.HasField(name):
        return None
    e = getattr(m, name)
    return ModelEvaluationPublic(heldout_loss=_opt(e, "heldout_loss"), perplexity=_opt(e, "perplexity"),
                                 preference_accuracy=_opt(e, "preference_accuracy"),
                                 vertical_accuracy=dict(e.vertical_accuracy))


JobId = Annotated[str, Path(description="The job's id (job-...)", max_length=200)]


# -- routes ----------------------------------------------------------------------------------------------------


StatusFilterName = Literal["queued", "preparing", "training", "completed", "failed", "cancelled",
                          "pending", "exporting_data", "evaluating", "ready"]
"""Our status words and Aragora's (ARAGORA_STATUS)."""


@router.get("/jobs", response_model=TrainingJobsPublic)
async def read_jobs(
    request: Request,
    trainer: TrainerDep,
    timeout: TimeoutDep,
    vertical: Annotated[str, Query(description="Only this vertical", max_length=200)] = "",
    status: Annotated[StatusFilterName | None, BeforeValidator(lambda v: v or None),
                      Query(description="Only this status (empty: any). Aragora's words are accepted: pending "
                                        "(queued), exporting_data (preparing), evaluating (training), "
                                        "ready (completed)")] = None,
    limit: Annotated[int, Query(ge=0, le=10_000, description="At most this many jobs (0: all)")] = 0,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1, description="Skip this many matching jobs first")] = 0,
) -> TrainingJobsPublic:
    """Lists training jobs, newest first; ``total`` counts every job matching the filters. Aragora's clients
    (docs/aragora_clients.md) get ``AragoraJobsPublic``: their job keys, and ``limit`` / ``offset`` echoed."""
    status = ARAGORA_STATUS.get(status, status) if status else None
    resp = await trainer.ListJobs(
        pb.ListJobsRequest(vertical=vertical, status=STATUS_VALUES[status] if status else 0, limit=limit,
                           offset=offset),
        timeout=timeout,
    )
    if not compat.is_aragora_client(request):
        return TrainingJobsPublic(jobs=[job_public(j) for j in resp.jobs], total=resp.total)
    jobs = await with_paths(trainer, timeout, [job_public(j, AragoraJobPublic) for j in resp.jobs])
    return aragora_json(AragoraJobsPublic(jobs=jobs, total=resp.total, limit=limit, offset=offset))


@router.get("/jobs/counts", response_model=JobCountsPublic)
async def read_job_counts(trainer: TrainerDep, timeout: TimeoutDep) -> JobCountsPublic:
    """Job counts by status; ``running`` = preparing + training."""
    c = await trainer.GetJobCounts(pb.GetJobCountsRequest(), timeout=timeout)
    return JobCountsPublic(queued=c.queued, preparing=c.preparing, training=c.training, completed=c.completed,
                           failed=c.failed, cancelled=c.cancelled, total=c.total, running=c.preparing + c.training)


@router.get("/jobs/{job_id}", response_model=TrainingJobPublic)
async def read_job(request: Request, job_id: JobId, trainer: TrainerDep, timeout: TimeoutDep) -> TrainingJobPublic:
    """One job. 404 for an unknown id. Aragora's clients get ``AragoraJobPublic``."""
    resp = await trainer.GetJob(pb.GetJobRequest(job_id=job_id), timeout=timeout)
    if not compat.is_aragora_client(request):
        return job_public(resp.job)
    return aragora_json((await with_paths(trainer, timeout, [job_public(resp.job, AragoraJobPublic)]))[0])


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


PREFLIGHT_TIMEOUT_SECONDS = 660.0
"""How long the gateway waits for a preflight (the trainer gives up after its TRAINER_PREFLIGHT_TIMEOUT_SECONDS)."""


@router.post("/jobs/preflight", response_model=PreflightPublic)
async def preflight_job(body: TrainingJobPreflight, trainer: TrainerDep) -> PreflightPublic:
    """A dry run of a create (same body; the name may be left out): the trainer fetches and encodes the data
    and times a few training steps, and answers what the job would do and cost (examples, tokens, truncation,
    steps, time and memory estimates, one example with its trained tokens marked, warnings). Nothing is created.
    A bad field is 422 as for a create; data that cannot be fetched is 409 with the reason."""
    resp = await trainer.PreflightJob(
        pb.PreflightJobRequest(name=body.name, vertical=body.vertical, base_model=body.base_model,
                               training_config=body.training_config.to_pb()),
        timeout=PREFLIGHT_TIMEOUT_SECONDS,
    )
    names = [f for f in PreflightPublic.model_fields if f not in ("training_config", "example", "warnings")]
    return PreflightPublic(
        training_config=config_public(resp.training_config),
        example=[RenderedSegmentPublic(text=s.text, trained=s.trained, tokens=s.tokens) for s in resp.example],
        warnings=list(resp.warnings), **{n: getattr(resp, n) for n in names})


@router.post("/jobs/{job_id}/clone", response_model=TrainingJobPublic, status_code=201)
async def clone_job(job_id: JobId, body: TrainingJobClone, trainer: TrainerDep,
                    timeout: TimeoutDep) -> TrainingJobPublic:
    """Creates a new ``queued`` job with the config of ``job_id``, the given ``training_config`` fields replacing
    the source's values. 404 for an unknown source, 422 for a bad field, 409 for a name taken."""
    resp = await trainer.CloneJob(
        pb.CloneJobRequest(job_id=job_id, name=body.name, overrides=body.training_config.to_pb()), timeout=timeout)
    return job_public(resp.job)


@router.post("/jobs/{job_id}/start", response_model=TrainingJobPublic)
async def start_job(job_id: JobId, trainer: TrainerDep, timeout: TimeoutDep) -> TrainingJobPublic:
    """Starts a queued job (it waits in ``queued`` while the trainer's worker slots are busy). 409 if the job
    is not queued."""
    resp = await trainer.StartJob(pb.StartJobRequest(job_id=job_id), timeout=timeout)
    return job_public(resp.job)


@router.delete("/jobs/{job_id}", response_model=TrainingJobPublic)
async def cancel_job(request: Request, job_id: JobId, trainer: TrainerDep, timeout: TimeoutDep) -> TrainingJobPublic:
    """Cancels a job: its worker process is ended (within about 5 s) and the job becomes ``cancelled``; its
    checkpoints stay. 409 for a job that already ended. Aragora's clients (docs/aragora_clients.md) get
    ``CancelResultPublic``, and for a job that already ended 200 with the job as it is (``success`` false when
    it had completed or failed)."""
    if not compat.is_aragora_client(request):
        # Ending a worker may take its SIGTERM grace (5 s) on top of the usual deadline.
        resp = await trainer.CancelJob(pb.CancelJobRequest(job_id=job_id), timeout=timeout + 10)
        return job_public(resp.job)
    return aragora_json(await cancel(job_id, trainer, timeout))


async def cancel(job_id: str, trainer, timeout: float) -> CancelResultPublic:
    """Cancels as Aragora's clients expect: a job that already ended is answered as it is, not refused."""
    try:
        # Ending a worker may take its SIGTERM grace (5 s) on top of the usual deadline.
        resp = await trainer.CancelJob(pb.CancelJobRequest(job_id=job_id), timeout=timeout + 10)
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
            raise
        job = (await trainer.GetJob(pb.GetJobRequest(job_id=job_id), timeout=timeout)).job
        if job.status not in (pb.JOB_STATUS_COMPLETED, pb.JOB_STATUS_FAILED, pb.JOB_STATUS_CANCELLED):
            raise
        return job_public(job, CancelResultPublic, success=job.status == pb.JOB_STATUS_CANCELLED, job_id=job.id)
    return job_public(resp.job, CancelResultPublic, success=True, job_id=resp.job.id)


@router.get("/jobs/{job_id}/metrics", response_model=TrainingJobMetricsPublic)
async def read_job_metrics(request: Request, job_id: JobId, trainer: TrainerDep,
                           timeout: TimeoutDep) -> TrainingJobMetricsPublic:
    """A completed job's measured metrics (absent figures are null). 409 for a job that did not complete; to
    Aragora's clients (docs/aragora_clients.md) 200 with what is known so far and ``complete`` false."""
    try:
        m = await trainer.GetJobMetrics(pb.GetJobMetricsRequest(job_id=job_id), timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.FAILED_PRECONDITION or not compat.is_aragora_client(request):
            raise
        j = (await trainer.GetJob(pb.GetJobRequest(job_id=job_id), timeout=timeout)).job
        if j.status == pb.JOB_STATUS_COMPLETED:
            raise
        return aragora_json(MetricsSoFarPublic(
            job_id=j.id, status="pending" if j.status == pb.JOB_STATUS_QUEUED else STATUS_NAMES[j.status],
            training_data_examples=j.training_examples,
            training_data_debates=0, final_loss=None, elo_rating=None, win_rate=None, vertical_accuracy={},
            base=None, adapter=None, eval_matches=0, eval_sft_records=0, eval_dpo_pairs=0, complete=False,
            loss=_opt(j, "loss"), progress=j.progress, current_step=j.current_step, total_steps=j.total_steps,
        ))
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


def parse_range(value: str | None) -> tuple[int | None, int | None] | None:
    """One ``bytes=`` range as (first, last) (last None: to the end; first None: the last ``last`` bytes), or
    None for no Range, several ranges or a malformed one (RFC 9110: such a Range is ignored, the whole file
    is sent)."""
    if not value or not value.strip().lower().startswith("bytes="):
        return None
    spec = value.strip()[6:].strip()
    if "," in spec or "-" not in spec:
        return None
    first, _, last = (p.strip() for p in spec.partition("-"))
    if not (first.isdigit() or first == "") or not (last.isdigit() or last == "") or (first == last == ""):
        return None
    if len(first) > 18 or len(last) > 18:
        return None
    if first == "":
        return (None, int(last)) if int(last) > 0 else None
    if last != "" and int(last) < int(first):
        return None
    return int(first), (int(last) if last != "" else None)


@router.get(
    "/jobs/{job_id}/artifacts/{name:path}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The file's bytes"},
               206: {"description": "The requested byte range (Range: bytes=first-last)"},
               416: {"description": "The range starts past the end of the file"}},
)
async def download_artifact(
    job_id: JobId, name: str, trainer: TrainerDep, timeout: TimeoutDep,
    range_: Annotated[str | None, Header(alias="Range", description="bytes=first-[last]: a part (resume)")] = None,
    if_range: Annotated[str | None, Header(alias="If-Range", description="The ETag the part must belong to")] = None,
) -> Response:
    """Downloads one artifact file (``name`` as the artifacts listing shows it, e.g.
    ``adapter/adapter_model.safetensors``). 404 for a name outside the job's folder.

    Resumable: ``Accept-Ranges: bytes``; ``Range: bytes=N-`` (or ``N-M``, or ``-K`` for the last K bytes) gets
    206 with ``Content-Range``; a range starting past the end gets 416. ``ETag`` (size and modification time)
    with ``If-Range`` makes sure the part belongs to the same file, else the whole file comes (200)."""
    wanted = parse_range(range_)

    async def open_call(offset: int = 0, length: int = 0):
        call = trainer.ReadArtifact(pb.ReadArtifactRequest(job_id=job_id, name=name, offset=offset, length=length))
        try:
            # The first chunk (or the error) decides the status code before any byte is sent.
            return call, await asyncio.wait_for(call.read(), timeout)
        except BaseException:
            call.cancel()
            raise

    if wanted is not None and wanted[0] is None:  # the last K bytes: the size first
        probe, head = await open_call(0, 1)
        probe.cancel()
        size = head.size_bytes if head is not grpc.aio.EOF else 0
        wanted = (max(0, size - wanted[1]), None)
    first_byte, last_byte = wanted if wanted is not None else (0, None)
    length = last_byte - first_byte + 1 if last_byte is not None else 0
    call, first = await open_call(first_byte, length)
    size = first.size_bytes if first is not grpc.aio.EOF else 0
    mtime = first.modified_unix_ns if first is not grpc.aio.EOF else 0
    etag = f'"{size:x}-{mtime:x}"'
    if wanted is not None and if_range is not None and if_range.strip() != etag:
        call.cancel()  # the file changed since the client's first part: it gets the whole new file
        wanted, first_byte, last_byte = None, 0, None
        call, first = await open_call()
        size = first.size_bytes if first is not grpc.aio.EOF else 0

    filename = name.rsplit("/", 1)[-1]
    headers = {"Accept-Ranges": "bytes", "ETag": etag,
               "Content-Disposition": f"attachment; filename=\"{quote(filename)}\"; filename*=UTF-8''{quote(filename)}"}
    if mtime:
        headers["Last-Modified"] = formatdate(mtime / 1e9, usegmt=True)
    if wanted is not None and first_byte >= size:
        call.cancel()
        return JSONResponse(
            {"detail": f"the range starts at byte {first_byte}, past the end of the file ({size} bytes)",
             "code": "RANGE_NOT_SATISFIABLE", "errors": [{"field": "Range", "reason": f"must start below {size}"}]},
            status_code=416, headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes", "ETag": etag})

    async def body():
        try:
            msg = first
            while msg is not grpc.aio.EOF:
                if msg.data:
                    yield msg.data
                msg = await call.read()
        finally:
            call.cancel()

    media = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    if wanted is None:
        headers["Content-Length"] = str(size)
        return StreamingResponse(body(), media_type=media, headers=headers)
    last = min(last_byte, size - 1) if last_byte is not None else size - 1
    headers["Content-Length"] = str(last - first_byte + 1)
    headers["Content-Range"] = f"bytes {first_byte}-{last}/{size}"
    return StreamingResponse(body(), status_code=206, media_type=media, headers=headers)
