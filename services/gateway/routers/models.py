"""Base-model catalogue routes (served by the trainer over gRPC)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from aragora.training.v1 import trainer_pb2 as pb
from services.gateway.deps import TimeoutDep, TrainerDep

router = APIRouter(prefix="/api/training", tags=["models"])


class BaseModelPublic(BaseModel):
    id: str
    name: str
    provider: str
    parameters: int
    size: str
    verticals: list[str]
    capabilities: list[str]
    recommended: bool
    available: bool
    """Whether its weights are on the trainer, so jobs can train it."""
    unavailable_reason: str
    max_seq_length: int
    description: str
    downloaded: bool = True
    """Whether its weights are on the trainer (False: a job downloads them from the model hub first)."""


class BaseModelsPublic(BaseModel):
    models: list[BaseModelPublic]


@router.get("/models", response_model=BaseModelsPublic)
async def read_models(trainer: TrainerDep, timeout: TimeoutDep) -> BaseModelsPublic:
    """The base models: the catalogue (available or not, and why) and the model folders found on the trainer."""
    resp = await trainer.ListBaseModels(pb.ListBaseModelsRequest(), timeout=timeout)
    return BaseModelsPublic(models=[
        BaseModelPublic(
            id=m.id, name=m.name, provider=m.provider, parameters=m.parameters, size=m.size,
            verticals=list(m.verticals), capabilities=list(m.capabilities), recommended=m.recommended,
            available=m.available, unavailable_reason=m.unavailable_reason, max_seq_length=m.max_seq_length,
            description=m.description, downloaded=m.downloaded,
        )
        for m in resp.models
    ])


class LocalModelPublic(BaseModel):
    id: str
    size_bytes: int
    """Bytes on the trainer's disk."""
    files: int
    source: str
    """``hub`` (downloaded by the trainer), ``local`` (placed in the models folder) or ``partial`` (a download
    not finished)."""
    revision: str
    bytes_total: int
    used_by: list[str]
    """Running jobs that use it (it cannot be deleted while any does)."""
    pulling: bool
    pull_error: str


class LocalModelsPublic(BaseModel):
    models: list[LocalModelPublic]


class PullRequestBody(BaseModel):
    model_id: str
    """A model hub id (org/name)."""


class PullStartedPublic(BaseModel):
    model_id: str
    already_present: bool
    files_total: int
    bytes_total: int
    revision: str


class DeletedPublic(BaseModel):
    model_id: str
    freed_bytes: int


@router.get("/models/local", response_model=LocalModelsPublic)
async def read_local_models(trainer: TrainerDep, timeout: TimeoutDep) -> LocalModelsPublic:
    """The model folders on the trainer (downloaded or placed there) and downloads in progress, with their size
    on disk and the running jobs using them."""
    resp = await trainer.ListLocalModels(pb.ListLocalModelsRequest(), timeout=timeout)
    return LocalModelsPublic(models=[
        LocalModelPublic(id=m.id, size_bytes=m.size_bytes, files=m.files, source=m.source, revision=m.revision,
                         bytes_total=m.bytes_total, used_by=list(m.used_by), pulling=m.pulling,
                         pull_error=m.pull_error)
        for m in resp.models
    ])


@router.post("/models/pull", response_model=PullStartedPublic, status_code=202)
async def pull_model(body: PullRequestBody, trainer: TrainerDep, timeout: TimeoutDep) -> PullStartedPublic:
    """Starts downloading a base model from the model hub onto the trainer (admin pre-fetch). Returns at once
    with the files and bytes to download; ``GET /models/local`` shows its progress. 422 naming an unknown,
    gated or unsupported model or a full disk; 409 when hub access is off."""
    r = await trainer.PullBaseModel(pb.PullBaseModelRequest(model_id=body.model_id), timeout=timeout)
    return PullStartedPublic(model_id=r.model_id, already_present=r.already_present, files_total=r.files_total,
                             bytes_total=r.bytes_total, revision=r.revision)


@router.delete("/models/local/{model_id:path}", response_model=DeletedPublic)
async def delete_local_model(model_id: str, trainer: TrainerDep, timeout: TimeoutDep) -> DeletedPublic:
    """Deletes a model folder from the trainer (refused while a running job or a pull uses it)."""
    r = await trainer.DeleteLocalModel(pb.DeleteLocalModelRequest(model_id=model_id), timeout=timeout)
    return DeletedPublic(model_id=model_id, freed_bytes=r.freed_bytes)
