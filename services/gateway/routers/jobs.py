"""Training-job routes (served by the trainer over gRPC)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from aragora.training.v1 import trainer_pb2
from services.gateway.deps import TimeoutDep, TrainerDep

router = APIRouter(prefix="/api/training", tags=["jobs"])


class TrainingJobsPublic(BaseModel):
    jobs: list[dict]
    total: int


@router.get("/jobs", response_model=TrainingJobsPublic)
async def read_jobs(trainer: TrainerDep, timeout: TimeoutDep) -> TrainingJobsPublic:
    """Lists training jobs, newest first."""
    resp = await trainer.ListJobs(trainer_pb2.ListJobsRequest(), timeout=timeout)
    return TrainingJobsPublic(jobs=[], total=resp.total)
