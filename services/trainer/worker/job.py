"""The job a worker runs, read from the job folder's ``job.json`` (``services.trainer.protocol.JobFile``,
written by the trainer service)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.common.tls import TlsFiles
from services.trainer.artifacts import JobLayout
from services.trainer.protocol import DEFAULT_EXPORTER_RETRY_SECONDS, JobFile
from services.trainer.spec import TrainingSpec


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
    exporter_retry_seconds: float = DEFAULT_EXPORTER_RETRY_SECONDS
    """How long to retry an unreachable exporter before failing."""
    num_threads: int | None = None
    """Torch intra-op threads; None: the CPUs this process may use."""
    init_weights: Path | None = None
    """Warm start: the folder holding the starting LoRA weights (``adapter_model.safetensors``)."""
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str = "aragora-training"
    mlflow_artifact_root: str | None = None
    exporter_tls: TlsFiles | None = None
    """TLS to the exporter (the client certificate and CA paths from job.json); None: plaintext."""

    @property
    def layout(self) -> JobLayout:
        """The names of the job folder's files and folders."""
        return JobLayout(self.job_dir)

    @property
    def data_dir(self) -> Path:
        return self.layout.data_dir

    @property
    def checkpoints_dir(self) -> Path:
        return self.layout.checkpoints_dir

    @property
    def adapter_dir(self) -> Path:
        return self.layout.adapter_dir

    @classmethod
    def load(cls, job_dir: Path) -> JobConfig:
        """Reads and checks ``job.json``; raises ``WorkerError`` naming what is wrong."""
        job_dir = Path(job_dir).absolute()
        path = JobLayout(job_dir).job_file
        try:
            raw = JobFile.read(path)
        except FileNotFoundError:
            raise WorkerError(f"job file missing: {path}") from None
        except (OSError, ValueError) as exc:
            raise WorkerError(f"job file unreadable: {path}: {exc}") from None
        try:
            spec = TrainingSpec.model_validate(raw.training_config)
        except Exception as exc:  # pydantic.ValidationError: the service validated it, so this is a bug
            raise WorkerError(f"job file {path}: invalid training_config: {exc}") from None
        if not raw.model_path:
            raise WorkerError(f"job file {path}: no model_path (base model {raw.base_model!r} "
                              "is not available on this server)")
        if not (Path(raw.model_path) / "config.json").is_file():
            raise WorkerError(f"base model folder {raw.model_path} has no config.json (was it provisioned?)")
        every = spec.checkpoint_every_steps or raw.checkpoint_every_steps
        return cls(
            job_dir=job_dir,
            job_id=raw.job_id or job_dir.name,
            name=raw.name,
            vertical=raw.vertical,
            base_model=raw.base_model,
            model_path=Path(raw.model_path),
            spec=spec,
            exporter_address=raw.exporter_address,
            data_root=Path(raw.data_root).absolute(),
            checkpoint_every_steps=int(every) if every else None,
            resume=raw.resume,
            exporter_retry_seconds=raw.exporter_retry_seconds or DEFAULT_EXPORTER_RETRY_SECONDS,
            num_threads=raw.num_threads or None,
            init_weights=Path(raw.init_weights) if raw.init_weights else None,
            mlflow_tracking_uri=raw.mlflow_tracking_uri or None,
            mlflow_experiment=raw.mlflow_experiment or "aragora-training",
            mlflow_artifact_root=raw.mlflow_artifact_root or None,
            exporter_tls=(TlsFiles(raw.tls_cert_file or "", raw.tls_key_file or "", raw.tls_ca_file or "")
                          if (raw.tls_cert_file or raw.tls_key_file or raw.tls_ca_file) else None),
        )
