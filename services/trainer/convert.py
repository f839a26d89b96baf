"""Protobuf <-> the trainer's plain types, at the edge only (the servicer is the one caller).

A job's ``TrainingConfig`` is converted by ``services.common.training_config`` (shared with the gateway), which
takes the field list from the message descriptor.
"""

from __future__ import annotations

from datetime import datetime

from google.protobuf import timestamp_pb2

from aragora.training.v1 import trainer_pb2 as pb
from services.common import training_config
from services.common.errors import InvalidArgument
from services.trainer.events import EventType, JobEventRecord
from services.trainer.jobs import Artifacts, JobMetrics
from services.trainer.orm import Job, JobStatus

STATUS_TO_PB = {
    JobStatus.QUEUED: pb.JOB_STATUS_QUEUED,
    JobStatus.PREPARING: pb.JOB_STATUS_PREPARING,
    JobStatus.TRAINING: pb.JOB_STATUS_TRAINING,
    JobStatus.COMPLETED: pb.JOB_STATUS_COMPLETED,
    JobStatus.FAILED: pb.JOB_STATUS_FAILED,
    JobStatus.CANCELLED: pb.JOB_STATUS_CANCELLED,
}
STATUS_FROM_PB = {v: k for k, v in STATUS_TO_PB.items()}

EVENT_TYPE_TO_PB = {
    EventType.STATUS: pb.EVENT_TYPE_STATUS,
    EventType.STEP: pb.EVENT_TYPE_STEP,
    EventType.CHECKPOINT: pb.EVENT_TYPE_CHECKPOINT,
    EventType.EVAL: pb.EVENT_TYPE_EVAL,
    EventType.LOG: pb.EVENT_TYPE_LOG,
    EventType.WARNING: pb.EVENT_TYPE_WARNING,
    EventType.ERROR: pb.EVENT_TYPE_ERROR,
    EventType.DOWNLOAD: pb.EVENT_TYPE_DOWNLOAD,
}

# A request's config: the fields the client SET, as ``spec.validate_spec`` takes them; a stored config back.
config_from_pb = training_config.config_from_pb
config_to_pb = training_config.config_to_pb


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def status_from_pb(value: int, field: str = "status") -> JobStatus | None:
    """A status filter: UNSPECIFIED is None (any); an unknown number is an ``InvalidArgument``."""
    if value == pb.JOB_STATUS_UNSPECIFIED:
        return None
    if value not in STATUS_FROM_PB:
        raise InvalidArgument(f"unknown job status {value}", field=field)
    return STATUS_FROM_PB[value]


def job_to_pb(job: Job) -> pb.Job:
    out = pb.Job(
        id=job.id,
        name=job.name,
        vertical=job.vertical or "",
        base_model=job.base_model,
        training_config=config_to_pb(job.training_config or {}),
        status=STATUS_TO_PB[job.job_status],
        progress=float(job.progress or 0.0),
        current_epoch=int(job.current_epoch or 0),
        current_step=int(job.current_step or 0),
        total_steps=int(job.total_steps or 0),
        training_examples=int(job.training_examples or 0),
        error=job.error or "",
        owner=job.owner or "",
    )
    if job.loss is not None:
        out.loss = float(job.loss)
    for name in ("created_at", "started_at", "completed_at"):
        ts = timestamp(getattr(job, name))
        if ts is not None:
            getattr(out, name).CopyFrom(ts)
    return out


def event_to_pb(event: JobEventRecord) -> pb.JobEvent:
    out = pb.JobEvent(sequence=event.sequence, type=EVENT_TYPE_TO_PB[event.type], message=event.message)
    out.time.CopyFrom(timestamp(event.time))
    p = event.payload
    if event.type is EventType.STATUS:
        out.status_change.CopyFrom(pb.StatusChange(
            from_status=(STATUS_TO_PB.get(JobStatus(p["from_status"])) if p.get("from_status")
                         else pb.JOB_STATUS_UNSPECIFIED),
            to_status=STATUS_TO_PB[JobStatus(p["to_status"])],
            reason=p.get("reason") or "",
        ))
    elif event.type is EventType.STEP:
        out.step.CopyFrom(pb.StepEvent(
            epoch=p.get("epoch") or 0.0, step=p.get("step") or 0, total_steps=p.get("total_steps") or 0,
            loss=p.get("loss") or 0.0, learning_rate=p.get("learning_rate") or 0.0,
            examples_seen=p.get("examples_seen") or 0, tokens_per_second=p.get("tokens_per_second") or 0.0,
            progress=p.get("progress") or 0.0, extra=p.get("extra") or {},
        ))
    elif event.type is EventType.CHECKPOINT:
        out.checkpoint.CopyFrom(pb.CheckpointEvent(path=p.get("path") or "", step=p.get("step") or 0))
    elif event.type is EventType.EVAL:
        out.eval.CopyFrom(pb.EvalEvent(phase=p.get("phase") or "", done=p.get("done") or 0,
                                       total=p.get("total") or 0, metrics=p.get("metrics") or {}))
    elif event.type is EventType.DOWNLOAD:
        out.download.CopyFrom(pb.DownloadEvent(
            model=p.get("model") or "", phase=p.get("phase") or "", files_done=p.get("files_done") or 0,
            files_total=p.get("files_total") or 0, bytes_done=p.get("bytes_done") or 0,
            bytes_total=p.get("bytes_total") or 0, bytes_per_second=p.get("bytes_per_second") or 0.0,
            eta_seconds=p.get("eta_seconds"), file=p.get("file") or ""))
    return out


def _evaluation_to_pb(value: dict) -> pb.ModelEvaluation:
    out = pb.ModelEvaluation(vertical_accuracy=value.get("vertical_accuracy") or {})
    for name in ("heldout_loss", "perplexity", "preference_accuracy"):
        if value.get(name) is not None:
            setattr(out, name, value[name])
    return out


def metrics_to_pb(m: JobMetrics) -> pb.GetJobMetricsResponse:
    out = pb.GetJobMetricsResponse(
        job_id=m.job_id, status=STATUS_TO_PB[m.status], training_data_examples=m.training_data_examples,
        training_data_debates=m.training_data_debates, vertical_accuracy=m.vertical_accuracy,
        eval_matches=m.eval_matches, eval_sft_records=m.eval_sft_records, eval_dpo_pairs=m.eval_dpo_pairs,
    )
    for name in ("final_loss", "elo_rating", "win_rate"):
        if getattr(m, name) is not None:
            setattr(out, name, getattr(m, name))
    if m.adapter is not None:
        out.adapter.CopyFrom(_evaluation_to_pb(m.adapter))
    if m.base is not None:
        out.base.CopyFrom(_evaluation_to_pb(m.base))
    return out


def artifacts_to_pb(a: Artifacts) -> pb.GetJobArtifactsResponse:
    return pb.GetJobArtifactsResponse(
        job_id=a.job_id, checkpoint_path=a.checkpoint_path, data_directory=a.data_directory,
        files=[pb.ArtifactFile(name=f.name, size_bytes=f.size_bytes, type=f.type) for f in a.files],
    )


def model_to_pb(m) -> pb.BaseModel:
    """A ``models.BaseModelInfo`` as a ``BaseModel`` message."""
    return pb.BaseModel(
        id=m.id, name=m.name, provider=m.provider, parameters=int(m.parameters), size=m.size,
        verticals=list(m.verticals), capabilities=list(m.capabilities), recommended=bool(m.recommended),
        available=bool(m.available), unavailable_reason=m.unavailable_reason or "",
        max_seq_length=int(m.max_seq_length), description=m.description or "",
        downloaded=bool(getattr(m, "downloaded", True)),
    )


def preflight_to_pb(config: dict, result: dict) -> pb.PreflightJobResponse:
    """A preflight's answer (the worker's ``preflight.json``) as a message; unknown keys are ignored."""
    names = {f.name for f in pb.PreflightJobResponse.DESCRIPTOR.fields} - {"training_config", "example"}
    out = pb.PreflightJobResponse(training_config=config_to_pb(config),
                                  **{k: v for k, v in result.items() if k in names and v is not None})
    out.example.extend(pb.RenderedSegment(text=s.get("text", ""), trained=bool(s.get("trained")),
                                          tokens=int(s.get("tokens") or 0)) for s in result.get("example") or [])
    return out
