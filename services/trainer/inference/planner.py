"""From a Generate request to a plan: which base model, which adapter, which sampling values.

Plain types only (the servicer converts the protobuf). Every bad field is an ``InvalidArgument`` naming it;
an unknown model, job, deployment or checkpoint is ``NotFound``; a job that did not complete is
``FailedPrecondition`` naming its status.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from services.common.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from services.trainer import models
from services.trainer.orm import JobStatus

ROLES = ("system", "user", "assistant")
DEFAULT_MAX_NEW_TOKENS = 256
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 1.0
MAX_TEMPERATURE = 2.0
MAX_STOP_STRINGS = 4
MAX_STOP_CHARS = 200


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    seed: int = 0
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Target:
    """What answers: a base model folder, and optionally an adapter folder on it."""

    base_model: str
    base_path: Path
    job_id: str = ""
    checkpoint_step: int = 0
    adapter_path: Path | None = None

    @property
    def adapter_key(self) -> str | None:
        """The adapter's name inside the shared base (one per job / checkpoint)."""
        if self.adapter_path is None:
            return None
        return f"{self.job_id}@{self.checkpoint_step}" if self.checkpoint_step else self.job_id


@dataclass(frozen=True)
class Plan:
    target: Target
    messages: list[dict] = field(default_factory=list)
    sampling: Sampling = Sampling()


def check_sampling(max_new_tokens: int, temperature: float | None, top_p: float | None, seed: int | None,
                   stop: list[str], limit: int, prefix: str = "sampling.") -> Sampling:
    bad: list[FieldViolation] = []
    if max_new_tokens < 0:
        bad.append(FieldViolation(prefix + "max_new_tokens", "must be >= 0 (0: the default, 256)"))
    elif max_new_tokens > limit:
        bad.append(FieldViolation(prefix + "max_new_tokens", f"must be at most {limit} (this server's limit)"))
    if temperature is not None and not (0.0 <= temperature <= MAX_TEMPERATURE):
        bad.append(FieldViolation(prefix + "temperature", f"must be in [0, {MAX_TEMPERATURE:g}]"))
    if top_p is not None and not (0.0 < top_p <= 1.0):
        bad.append(FieldViolation(prefix + "top_p", "must be in (0, 1]"))
    if len(stop) > MAX_STOP_STRINGS:
        bad.append(FieldViolation(prefix + "stop", f"at most {MAX_STOP_STRINGS} stop strings"))
    for i, s in enumerate(stop):
        if not 1 <= len(s) <= MAX_STOP_CHARS:
            bad.append(FieldViolation(f"{prefix}stop[{i}]", f"must be 1 to {MAX_STOP_CHARS} characters"))
    if bad:
        raise InvalidArgument(bad)
    return Sampling(
        max_new_tokens=max_new_tokens or min(DEFAULT_MAX_NEW_TOKENS, limit),
        temperature=DEFAULT_TEMPERATURE if temperature is None else float(temperature),
        top_p=DEFAULT_TOP_P if top_p is None else float(top_p),
        seed=random.randrange(2**31) if seed is None else int(seed),
        stop=tuple(stop),
    )


def check_messages(messages: list[dict]) -> list[dict]:
    if not messages:
        raise InvalidArgument("at least one message is needed", field="messages")
    bad = [FieldViolation(f"messages[{i}].role", f"must be one of {', '.join(ROLES)}")
           for i, m in enumerate(messages) if m.get("role") not in ROLES]
    if bad:
        raise InvalidArgument(bad)
    return [{"role": m["role"], "content": m.get("content", "")} for m in messages]


def base_target(models_dir: Path, model_id: str) -> Target:
    """A base model by id or alias: ``NotFound`` when unknown, ``FailedPrecondition`` when not here."""
    for info in models.list_models(models_dir):
        if model_id == info.id or model_id in info.aliases:
            if not info.available or info.path is None:
                raise FailedPrecondition(f"base model {info.id} is not available: {info.unavailable_reason}")
            return Target(base_model=info.id, base_path=info.path)
    raise NotFound(f"model {model_id!r} not found: not a deployment, a job or a base model of this trainer")


def job_target(job, job_dir: Path, models_dir: Path, checkpoint_step: int = 0, base_only: bool = False) -> Target:
    """A job's final adapter (the job must have completed) or one of its checkpoints."""
    base = base_target(models_dir, job.base_model)
    if base_only:
        return base
    if checkpoint_step < 0:
        raise InvalidArgument("must be >= 0 (0: the final adapter)", field="checkpoint_step")
    if checkpoint_step:
        folder = job_dir / "checkpoints" / f"checkpoint-{checkpoint_step}"
        if not (folder / "adapter_config.json").is_file():
            raise NotFound(f"job {job.id} has no checkpoint at step {checkpoint_step}")
    else:
        if job.status != JobStatus.COMPLETED.value:
            raise FailedPrecondition(f"job {job.id} is {job.status}: only a completed job's adapter can answer "
                                     "(or name one of its checkpoints)")
        folder = job_dir / "adapter"
        if not (folder / "adapter_config.json").is_file():
            raise NotFound(f"job {job.id} has no adapter in its artifacts")
    return Target(base_model=base.base_model, base_path=base.base_path, job_id=job.id,
                  checkpoint_step=checkpoint_step, adapter_path=folder)
