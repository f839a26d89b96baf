"""The job a worker runs, read from ``JOB_DIR/job.json`` (written by the trainer service)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from services.trainer.spec import TrainingSpec

DEFAULT_EXPORTER_TIMEOUT_S = 30.0


class WorkerError(Exception):
    """An expected failure: its message is what the user reads in the job's ``error``."""


@dataclass(frozen=True)
class JobConfig:
    """Everything a worker needs to run one job."""

    job_dir: Path
    job_id: str
    name: str
    vertical: str
    base_model: str
    model_path: Path
    spec: TrainingSpec
    exporter_address: str
    data_root: Path
    checkpoint_every_steps: int | None
    resume: bool
    exporter_timeout_s: float = DEFAULT_EXPORTER_TIMEOUT_S
    """How long to retry an unreachable exporter before failing."""
    num_threads: int | None = None
    """Torch intra-op threads; None: the CPUs this process may use."""

    @property
    def data_dir(self) -> Path:
        return self.job_dir / "data"

    @property
    def checkpoints_dir(self) -> Path:
        return self.job_dir / "checkpoints"

    @property
    def adapter_dir(self) -> Path:
        return self.job_dir / "adapter"

    @classmethod
    def load(cls, job_dir: Path) -> "JobConfig":
        """Reads and checks ``job.json``; raises ``WorkerError`` naming what is wrong."""
        job_dir = Path(job_dir).absolute()
        path = job_dir / "job.json"
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise WorkerError(f"job file missing: {path}") from None
        except (OSError, ValueError) as exc:
            raise WorkerError(f"job file unreadable: {path}: {exc}") from None
        if not isinstance(raw, dict):
            raise WorkerError(f"job file {path} does not hold a JSON object")
        try:
            spec = TrainingSpec.model_validate(raw.get("training_config") or {})
        except Exception as exc:  # pydantic.ValidationError: the service validated it, so this is a bug
            raise WorkerError(f"job file {path}: invalid training_config: {exc}") from None
        model_path = raw.get("model_path")
        if not model_path:
            raise WorkerError(f"job file {path}: no model_path (base model {raw.get('base_model')!r} "
                              "is not available on this server)")
        if not (Path(model_path) / "config.json").is_file():
            raise WorkerError(f"base model folder {model_path} has no config.json (was it provisioned?)")
        every = spec.checkpoint_every_steps or raw.get("checkpoint_every_steps")
        return cls(
            job_dir=job_dir,
            job_id=str(raw.get("job_id") or job_dir.name),
            name=str(raw.get("name") or ""),
            vertical=str(raw.get("vertical") or ""),
            base_model=str(raw.get("base_model") or ""),
            model_path=Path(model_path),
            spec=spec,
            exporter_address=str(raw.get("exporter_address") or "127.0.0.1:50051"),
            data_root=Path(raw.get("data_root") or "var/data").absolute(),
            checkpoint_every_steps=int(every) if every else None,
            resume=bool(raw.get("resume", False)),
            exporter_timeout_s=float(raw.get("exporter_timeout_s") or DEFAULT_EXPORTER_TIMEOUT_S),
            num_threads=int(raw["num_threads"]) if raw.get("num_threads") else None,
        )
