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
            description=m.description,
        )
        for m in resp.models
    ])
