"""Routes that only Aragora's clients call (its server's ``TrainingHandler`` job routes): ``POST .../cancel``,
``POST .../complete`` and ``POST .../export``. Their semantics here are in docs/aragora_clients.md."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from pydantic import BaseModel

from aragora.training.v1 import trainer_pb2 as pb
from services.gateway import errors
from services.gateway.deps import TimeoutDep, TrainerDep
from services.gateway.routers.jobs import (
    STATUS_NAMES,
    CancelResultPublic,
    JobId,
    cancel,
)

router = APIRouter(prefix="/api/training", tags=["aragora compatibility"])


@router.post("/jobs/{job_id}/cancel", response_model=CancelResultPublic)
async def cancel_job_post(job_id: JobId, trainer: TrainerDep, timeout: TimeoutDep) -> CancelResultPublic:
    """Aragora's ``cancelJob`` (its TypeScript client): the same as ``DELETE /api/training/jobs/{id}`` as an
    Aragora client gets it: a job that already ended is 200 with the job as it is and ``success`` false."""
    return await cancel(job_id, trainer, timeout)


class CompleteResultPublic(BaseModel):
    success: bool
    job_id: str
    status: str
    final_loss: float | None


CompletionBody = Annotated[dict | None, Body(description="Aragora sends final_loss, checkpoint_path: accepted, "
                                                       "not used")]


@router.post("/jobs/{job_id}/complete", response_model=CompleteResultPublic)
async def complete_job(job_id: JobId, trainer: TrainerDep, timeout: TimeoutDep,
                       body: CompletionBody = None) -> CompleteResultPublic:
    """Aragora's completion webhook, for a trainer outside its server. Here the trainer's own worker completes a
    job when training ends, with the loss it measured: a client cannot declare it. A completed job is
    acknowledged (200, its own ``final_loss``); any other job is a 409 naming its status; the body is not used."""
    job = (await trainer.GetJob(pb.GetJobRequest(job_id=job_id), timeout=timeout)).job
    if job.status != pb.JOB_STATUS_COMPLETED:
        status = STATUS_NAMES[job.status]
        detail = (f"job {job_id} is {status}: a job here is completed by the trainer's worker when its training "
                  "ends, not by a client")
        return errors.response(409, detail, "FAILED_PRECONDITION", [{"field": "job_id", "reason": f"job is {status}"}])
    return CompleteResultPublic(success=True, job_id=job.id, status="completed",
                                final_loss=job.loss if job.HasField("loss") else None)


class JobExportPublic(BaseModel):
    success: bool
    job_id: str
    status: str
    examples_exported: int
    """The records in the job's ``data/`` folder (the exact records it trains on); 0 before it starts."""
    data_directory: str
    files: list[str]
    """The job's data files (download each with GET .../artifacts/{name})."""
    detail: str


@router.post("/jobs/{job_id}/export", response_model=JobExportPublic)
async def export_job_data(job_id: JobId, trainer: TrainerDep, timeout: TimeoutDep) -> JobExportPublic:
    """Aragora's "export the job's training data". Here the trainer writes a job's records into its ``data/``
    folder when the job starts (from the exporter, with the job's filters): this reports them. A queued job has
    none yet (``examples_exported`` 0, ``detail`` says so)."""
    job = (await trainer.GetJob(pb.GetJobRequest(job_id=job_id), timeout=timeout)).job
    a = await trainer.GetJobArtifacts(pb.GetJobArtifactsRequest(job_id=job_id), timeout=timeout)
    files = [f.name for f in a.files if f.type == "data"]
    status = STATUS_NAMES[job.status]
    if job.status == pb.JOB_STATUS_QUEUED:
        detail = "the job's data is written into data/ when the job starts (POST .../start)"
    else:
        detail = f"{job.training_examples} records in {a.data_directory}"
    return JobExportPublic(success=True, job_id=job.id, status=status, examples_exported=job.training_examples,
                           data_directory=a.data_directory, files=files, detail=detail)
