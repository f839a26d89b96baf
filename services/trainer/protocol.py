"""The contract between the trainer service and its worker process, defined once and imported by both sides.

Two messages cross the process boundary:

- ``job.json`` in the job's folder (``JobFile``): what to run. The service writes it before it starts the worker
  (``JobFile.write``); the worker reads it (``JobFile.read``, via ``worker/job.py``'s ``JobConfig``). Secrets and
  limits never travel in it (it is a downloadable artifact): they come in the worker's environment
  (``WORKER_TOKEN_ENV``, ``WORKER_MAX_FILE_ENV``).
- one JSON object per line on the worker's ORIGINAL stdout (``WorkerLine`` and its kinds below): what happened.
  The worker writes them with ``encode_line`` (``worker/events.py``'s ``EventSink``); the service reads them with
  ``parse_line``, which never fails on a bad value (a non-number where a number belongs reads as the default),
  numbers them and turns them into job events.

The worker's exit code completes the picture: 0 after a ``result`` line, 1 after an ``error`` line, 143 when
stopped by SIGTERM/SIGINT (after writing a checkpoint of the last finished step), 2 for a wrong command line.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_EXPORTER_RETRY_SECONDS = 60.0
"""How long a preparing worker keeps retrying an unreachable exporter (the service's ``exporter_retry_seconds``)."""
DEFAULT_EXPORTER_ADDRESS = "127.0.0.1:50051"
OOM_MESSAGE = "out of memory: reduce batch_size or max_seq_length, or enable gradient_checkpointing"
"""The advice a job fails with when it ran out of memory: an allocation failure in the worker (``MemoryError``,
torch's allocator) or a kernel OOM kill the service recognises (SIGKILL while memory was short)."""
GPU_OOM_MESSAGE = OOM_MESSAGE.replace("out of memory", "out of GPU memory", 1)
WORKER_TOKEN_ENV = "ARAGORA_EXPORTER_TOKEN"
"""The worker sends this token to the exporter (``authorization: Bearer``); the trainer's ``api_token``."""
WORKER_MAX_FILE_ENV = "ARAGORA_WORKER_MAX_FILE_BYTES"
"""The largest file the worker may write (RLIMIT_FSIZE it sets on itself); from ``worker_max_file_bytes``."""
WORKER_HUB_TOKEN_ENV = "ARAGORA_HUB_TOKEN"
"""The model hub token (the trainer's ``hub_token``) a worker that downloads its base model sends to the hub."""
WORKER_MODULE_ENV = "ARAGORA_WORKER_MODULE"
"""Test hook: the module the trainer runs as a job's worker (``python -m <module> JOB_DIR``), read from the
trainer's environment; unset: ``services.trainer.worker``. ``benchmarks/capacity_bench.py`` runs its simulated
workers (``benchmarks/fake_worker.py``, the same protocol lines on stdout) through it."""
MAX_MESSAGE_CHARS = 4000
"""The longest message (and free text) the service keeps from a worker line."""


# -- job.json --------------------------------------------------------------------------------------------------


class JobFile(BaseModel):
    """``job.json``: everything the worker needs to run one job."""

    model_config = ConfigDict(extra="ignore")

    job_id: str = ""
    name: str = ""
    vertical: str = ""
    base_model: str = ""
    model_path: str | None = None
    """Absolute folder of the base model; None when the model is not available on this server."""
    training_config: dict = Field(default_factory=dict)
    """The validated ``TrainingSpec`` as JSON (every default filled in)."""
    exporter_address: str = DEFAULT_EXPORTER_ADDRESS
    data_root: str = "var/data"
    checkpoint_every_steps: int | None = None
    """The service's default; the spec's own ``checkpoint_every_steps`` wins when set."""
    resume: bool = False
    """Continue from the newest complete checkpoint (the trainer restarted while the job ran)."""
    exporter_retry_seconds: float = DEFAULT_EXPORTER_RETRY_SECONDS
    """How long to retry an unreachable exporter before failing."""
    num_threads: int | None = None
    """Torch intra-op threads; None: the CPUs the worker may use."""
    init_weights: str | None = None
    """Warm start: the absolute folder whose ``adapter_model.safetensors`` gives the starting LoRA weights (an
    earlier job's ``adapter/`` or one of its checkpoints); None: a fresh adapter."""
    mlflow_tracking_uri: str | None = None
    """Log the job to MLflow at this tracking URI; None: no tracking."""
    mlflow_experiment: str = "aragora-training"
    """The MLflow experiment the job's run belongs to."""
    mlflow_artifact_root: str | None = None
    """Where a new experiment keeps its artifacts (the local store's folder); None: the tracking server's."""
    hub_download: bool = False
    """``model_path`` does not exist yet: download ``base_model`` from the model hub into it while preparing
    (the token comes in ``WORKER_HUB_TOKEN_ENV``, never here)."""
    hub_endpoint: str = "https://huggingface.co"
    hub_keep_free_bytes: int = 0
    tls_cert_file: str | None = None
    """The client certificate (PEM) the worker presents to the exporter (mutual TLS); None: none."""
    tls_key_file: str | None = None
    """Its private key's path (the key itself never travels here)."""
    tls_ca_file: str | None = None
    """The CA the exporter's certificate is verified against. Any of the three set: TLS to the exporter."""

    def write(self, path: Path) -> None:
        """Writes the file atomically (a temporary renamed into place)."""
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(self.model_dump_json(indent=2), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> JobFile:
        """Reads the file; ``OSError`` when unreadable, ``ValueError`` (pydantic's included) when malformed."""
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("does not hold a JSON object")
        return cls.model_validate({k: v for k, v in raw.items() if v is not None or k == "model_path"})


# -- worker lines ----------------------------------------------------------------------------------------------


def number(value: Any, default: Any = None, kind: type = float) -> Any:
    """A finite number of ``kind`` from a JSON value, else ``default`` (a worker line never crashes the service)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    if isinstance(value, float) and not math.isfinite(value):
        return default
    return kind(value)


def text(value: Any, limit: int = MAX_MESSAGE_CHARS) -> str:
    return (value if isinstance(value, str) else "" if value is None else str(value))[:limit]


def float_map(value: Any) -> dict[str, float]:
    """``{name: number}`` from a JSON value, keeping only the finite numbers."""
    if not isinstance(value, dict):
        return {}
    return {str(k)[:200]: float(v) for k, v in value.items() if number(v) is not None}


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: non-finite floats become null (in nested dicts and lists too)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


@dataclass
class WorkerLine:
    """One line of the worker's stdout. Each kind below names its ``type`` and its fields."""

    TYPE: ClassVar[str] = ""
    message: str = ""

    def to_json(self) -> str:
        return json.dumps(_finite({"type": self.type, **asdict(self)}), allow_nan=False)

    @property
    def type(self) -> str:
        return self.TYPE

    @classmethod
    def coerce(cls, obj: dict) -> WorkerLine:
        """The line from a parsed JSON object, every value checked (bad values read as the defaults)."""
        return cls(message=text(obj.get("message")))


@dataclass
class StatusLine(WorkerLine):
    """The worker moved the job on: ``status`` is ``preparing`` or ``training``."""

    TYPE: ClassVar[str] = "status"
    status: str = ""

    @classmethod
    def coerce(cls, obj: dict) -> StatusLine:
        return cls(message=text(obj.get("message")), status=text(obj.get("status"), 200))


@dataclass
class StepLine(WorkerLine):
    """One optimizer step finished."""

    TYPE: ClassVar[str] = "step"
    epoch: float = 0.0
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    learning_rate: float = 0.0
    examples_seen: int = 0
    tokens_per_second: float = 0.0
    progress: float | None = None
    """0..1; None: ``step / total_steps``."""
    extra: dict[str, float] = field(default_factory=dict)
    """The training method's own figures of the step (DPO: rewards, margins, accuracy)."""

    @classmethod
    def coerce(cls, obj: dict) -> StepLine:
        step, total = number(obj.get("step"), 0, int), number(obj.get("total_steps"), 0, int)
        progress = number(obj.get("progress"), step / total if total else 0.0)
        return cls(message=text(obj.get("message")), epoch=number(obj.get("epoch"), 0.0), step=step,
                   total_steps=total, loss=number(obj.get("loss")),
                   learning_rate=number(obj.get("learning_rate"), 0.0),
                   examples_seen=number(obj.get("examples_seen"), 0, int),
                   tokens_per_second=number(obj.get("tokens_per_second"), 0.0),
                   progress=min(1.0, max(0.0, progress)), extra=float_map(obj.get("extra")))


@dataclass
class CheckpointLine(WorkerLine):
    """A complete checkpoint was written; ``path`` is relative to the job folder."""

    TYPE: ClassVar[str] = "checkpoint"
    path: str = ""
    step: int = 0

    @classmethod
    def coerce(cls, obj: dict) -> CheckpointLine:
        return cls(message=text(obj.get("message")), path=text(obj.get("path"), 1000),
                   step=number(obj.get("step"), 0, int))


@dataclass
class EvalLine(WorkerLine):
    """Progress of the evaluation (or of DPO's reference pass): ``done`` of ``total`` in ``phase``."""

    TYPE: ClassVar[str] = "eval"
    phase: str = ""
    done: int = 0
    total: int = 0
    metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def coerce(cls, obj: dict) -> EvalLine:
        return cls(message=text(obj.get("message")), phase=text(obj.get("phase"), 200),
                   done=number(obj.get("done"), 0, int), total=number(obj.get("total"), 0, int),
                   metrics=float_map(obj.get("metrics")))


@dataclass
class LogLine(WorkerLine):
    TYPE: ClassVar[str] = "log"


@dataclass
class WarningLine(WorkerLine):
    TYPE: ClassVar[str] = "warning"


@dataclass
class ErrorLine(WorkerLine):
    """What went wrong; the job fails with this message when the worker then exits non-zero."""

    TYPE: ClassVar[str] = "error"


@dataclass
class DataLine(WorkerLine):
    """The training data is ready."""

    TYPE: ClassVar[str] = "data"
    training_examples: int = 0
    training_debates: int = 0
    total_steps: int = 0

    @classmethod
    def coerce(cls, obj: dict) -> DataLine:
        return cls(message=text(obj.get("message")), training_examples=number(obj.get("training_examples"), 0, int),
                   training_debates=number(obj.get("training_debates"), 0, int),
                   total_steps=number(obj.get("total_steps"), 0, int))


@dataclass
class ResultLine(WorkerLine):
    """Training finished and ``metrics.json`` is written; the worker exits 0 next."""

    TYPE: ClassVar[str] = "result"
    final_loss: float | None = None
    metrics_path: str = ""

    @classmethod
    def coerce(cls, obj: dict) -> ResultLine:
        return cls(message=text(obj.get("message")), final_loss=number(obj.get("final_loss")),
                   metrics_path=text(obj.get("metrics_path"), 1000))


@dataclass
class DownloadLine(WorkerLine):
    """Progress of the base model's download from the model hub (``services.trainer.hub.Progress``)."""

    TYPE: ClassVar[str] = "download"
    model: str = ""
    phase: str = ""
    """``planning``, ``waiting`` (another job or a pull downloads it), ``downloading``, ``done``."""
    files_done: int = 0
    files_total: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    bytes_per_second: float = 0.0
    eta_seconds: float | None = None
    file: str = ""

    @classmethod
    def coerce(cls, obj: dict) -> DownloadLine:
        return cls(message=text(obj.get("message")), model=text(obj.get("model"), 300),
                   phase=text(obj.get("phase"), 50), files_done=number(obj.get("files_done"), 0, int),
                   files_total=number(obj.get("files_total"), 0, int),
                   bytes_done=number(obj.get("bytes_done"), 0, int),
                   bytes_total=number(obj.get("bytes_total"), 0, int),
                   bytes_per_second=number(obj.get("bytes_per_second"), 0.0),
                   eta_seconds=number(obj.get("eta_seconds")), file=text(obj.get("file"), 300))

    def payload(self) -> dict:
        """The job event's payload (every field but the message)."""
        return {k: v for k, v in asdict(self).items() if k != "message"}


LINE_TYPES: dict[str, type[WorkerLine]] = {
    cls.TYPE: cls for cls in (StatusLine, StepLine, CheckpointLine, EvalLine, LogLine, WarningLine, ErrorLine,
                              DataLine, ResultLine, DownloadLine)
}


def encode_line(type: str, message: str = "", **values: Any) -> str:
    """The worker side: one line of kind ``type`` (without the newline). A kind or field the protocol does not
    define is a programming error (``TypeError``), never a line the service would silently misread."""
    try:
        cls = LINE_TYPES[type]
    except KeyError:
        raise TypeError(f"unknown worker line type {type!r}; known: {', '.join(LINE_TYPES)}") from None
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise TypeError(f"worker line {type!r} has no field(s) {', '.join(sorted(unknown))}")
    return cls(message=message, **values).to_json()


def parse_line(raw: bytes) -> WorkerLine | str | None:
    """The service side: the typed line, or the text when the line is not a protocol line (a library that
    printed to the pipe), or None for an empty line."""
    line = raw.decode("utf-8", errors="replace").strip()
    if not line:
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        obj = None
    if not isinstance(obj, dict) or obj.get("type") not in LINE_TYPES:
        return text(line)
    return LINE_TYPES[obj["type"]].coerce(obj)
