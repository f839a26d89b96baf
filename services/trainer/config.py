"""Process settings of the trainer, read once at start from TRAINER_* variables (or a .env file)."""

from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.tls import TlsFiles
from services.trainer.protocol import DEFAULT_EXPORTER_RETRY_SECONDS


class TrainerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRAINER_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    """Interface the gRPC server binds (0.0.0.0 in containers)."""
    port: int = 50052
    """gRPC port."""
    database_url: str = "sqlite:///var/trainer/jobs.db"
    """SQLAlchemy URL of the job store."""
    jobs_dir: Path = Path("var/jobs")
    """One artifact folder per job lives here."""
    models_dir: Path = Path("var/models")
    """Local base models (one folder per model id, '/' replaced by '--')."""
    data_root: Path = Path("var/data")
    """A job's dataset_path must lie inside this folder."""
    exporter_address: str = "127.0.0.1:50051"
    """Where the exporter's gRPC server listens."""
    max_concurrent_jobs: int = 1
    """Jobs running at once; more wait in queued and start in order."""
    checkpoint_every_steps: int = 50
    """Optimizer steps between checkpoints (a job's config can override it)."""
    auth_database_url: str = "sqlite:///var/auth/keys.db"
    """SQLAlchemy URL of the keys store shared by the three services (API keys, hashed, and the audit log;
    ``python -m services.auth`` manages it). While it holds no key (and no ``api_token`` is set) every call is
    open, as on loopback today; with keys, every call needs ``authorization: Bearer <key>``."""
    log_level: str = "INFO"
    grace_seconds: float = 5.0
    """How long calls in flight may finish after SIGTERM."""
    exporter_retry_seconds: float = DEFAULT_EXPORTER_RETRY_SECONDS
    """How long a preparing job's worker keeps retrying an unreachable exporter (with backoff) before the job
    fails with a reason naming the exporter (sent to the worker in job.json under the same name)."""
    max_resumes: int = 3
    """How many times a running job is resumed after the trainer crashed (SIGKILL, power loss) while it ran;
    one more crash fails it. A clean stop (SIGTERM) does not count."""
    worker_max_file_bytes: int | None = None
    """The largest file a worker may write (RLIMIT_FSIZE); None: no limit. A job that would write a bigger
    checkpoint or adapter fails with the reason instead of filling the disk."""
    api_token: str | None = None
    """When set, every TrainerService call needs the metadata ``authorization: Bearer <token>`` (health and
    reflection stay open), and workers send it to the exporter."""
    tls_cert_file: str = ""
    """The trainer's TLS certificate (PEM): with ``tls_key_file``, gRPC is served over TLS, and it is the client
    certificate the trainer presents to the exporter. Empty: plaintext."""
    tls_key_file: str = ""
    """The private key (PEM, unencrypted) of ``tls_cert_file``."""
    tls_ca_file: str = ""
    """A CA certificate (PEM): clients must present a certificate it signed (mutual TLS), and the exporter's
    certificate is verified against it (by the trainer and its workers)."""
    worker_tls_cert_file: str = ""
    """The client certificate (PEM) workers present to the exporter; empty: the trainer's ``tls_cert_file``.
    Workers read the paths from job.json (the files themselves must be readable where the worker runs)."""
    worker_tls_key_file: str = ""
    """The private key of ``worker_tls_cert_file``; empty: the trainer's ``tls_key_file``."""
    inference_memory_bytes: int = 8 * 1024**3
    """Memory the loaded inference models may take (weights, estimated before loading); the least recently
    used idle model is unloaded to make room, and a model larger than this is refused."""
    inference_threads: int = 0
    """CPU threads generation may use in the trainer process (0: half the cores), leaving the rest to a
    training worker on the same machine."""
    inference_max_streams: int = 8
    """Generations running at once; more wait their turn."""
    inference_max_new_tokens: int = 2048
    """The largest max_new_tokens a generation may ask for."""
    preflight_timeout_seconds: float = 600.0
    """The longest a preflight (a job's dry run: data, tokens, a few timed steps) may take before it is refused."""
    executor: Literal["local", "ray"] = "local"
    """Where a job's worker runs: ``local``, a child process of this trainer; ``ray``, an actor on a Ray cluster
    (README, "Running on a Ray cluster"): Ray places it on a node with the resources the job asks for, and its
    events come back over gRPC."""
    ray_address: str = ""
    """The Ray cluster to use with ``executor`` ``ray`` (passed to ``ray.init(address=...)``: ``auto``,
    ``host:6379`` or ``ray://host:10001``); empty: ``auto`` (the cluster this machine belongs to)."""
    ray_callback_address: str = ""
    """The address (host:port) at which Ray workers reach this trainer's gRPC server to send their events;
    empty: this trainer's host and port (the machine's IP address when the host is 0.0.0.0)."""
    ray_cpus_per_worker: float = 1.0
    """CPUs a job asks the Ray cluster for, per worker process."""
    ray_resources: dict[str, float] = {}
    """Custom Ray resources every job asks for besides CPUs, GPUs and memory (JSON, e.g. ``{"trainer_pool": 1}``
    to keep jobs on the nodes started with that resource)."""
    mlflow_enabled: bool = False
    """Log every job (parameters, per-step metrics, validation and final evaluation) to MLflow."""
    mlflow_tracking_uri: str = ""
    """Where MLflow runs go: a tracking server's URL (http://host:5000) or a database URI; empty: a local store,
    ``sqlite:///`` ``var/mlflow/mlflow.db`` with artifacts in ``var/mlflow/artifacts``."""
    mlflow_experiment: str = "aragora-training"
    """The MLflow experiment the runs are filed under."""

    def worker_tls(self) -> TlsFiles:
        """The TLS files a worker uses to reach the exporter (its own pair when set, else the trainer's)."""
        if self.worker_tls_cert_file or self.worker_tls_key_file:
            return TlsFiles(self.worker_tls_cert_file, self.worker_tls_key_file, self.tls_ca_file,
                            env_prefix="TRAINER_", field_prefix="worker_")
        return TlsFiles.from_settings(self)

    def mlflow_target(self) -> tuple[str | None, str | None]:
        """(tracking URI, artifact root of a new experiment) for the workers; (None, None) when tracking is off."""
        if not self.mlflow_enabled:
            return None, None
        uri = self.mlflow_tracking_uri
        if uri.startswith(("http://", "https://", "databricks")):
            return uri, None  # the tracking server keeps the artifacts
        if uri.startswith("sqlite:///"):
            # A local database: its artifacts beside it (MLflow's default, ./mlruns, would land in the cwd).
            return uri, (Path(uri.removeprefix("sqlite:///")).absolute().parent / "artifacts").as_uri()
        folder = Path("var/mlflow").absolute()
        return uri or f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()
    hub_enabled: bool = False
    """Whether the trainer may download base models from the model hub (a job whose base model is not in the
    models folder downloads it while preparing; ids outside the catalogue are accepted when the hub has them).
    Off: only the models folder counts, exactly as without network (HF_HUB_OFFLINE does not change this)."""
    hub_endpoint: str = "https://huggingface.co"
    """The model hub's address (an HF_ENDPOINT-style mirror works too)."""
    hub_token: SecretStr | None = None
    """Access token for gated models; sent only to the hub, never logged, echoed or written to job.json."""
    hub_keep_free_bytes: int = 0
    """Free bytes a download must leave on the models folder's disk; a download that would leave less fails
    before it starts, naming the bytes needed and free."""
