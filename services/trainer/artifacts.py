"""A job's folder: ``JobLayout`` names every file and folder in it (for the service and the worker alike),
plus the listing of its artifacts and the path check of a requested one.

    JOB_DIR/
      job.json                      what to run (service -> worker; ``protocol.JobFile``)
      events.jsonl                  the numbered event log (service)
      worker.log                    the worker's stderr
      data/train.jsonl              the exact records trained on (worker; with a validation split, the
                                    training AND validation records, split again identically on resume)
      data/validation.jsonl         the validation records held out of them (worker, validation_split > 0)
      data/heldout_sft.jsonl        the held-out data evaluated on (worker)
      data/heldout_dpo.jsonl
      checkpoints/checkpoint-<step>/  a complete checkpoint has trainer_state.json (worker)
      adapter/                      the final LoRA adapter + tokenizer (worker)
      metrics.json                  the final figures (worker)
      eval/samples.json             base vs adapter answers to a few held-out prompts (worker)
      .<name>.tmp                   anything being written; renamed into place when complete
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from services.common.errors import InvalidArgument, NotFound


class JobLayout:
    """The names of one job folder's files and folders."""

    JOB_FILE = "job.json"
    EVENTS_FILE = "events.jsonl"
    WORKER_LOG = "worker.log"
    DATA_DIR = "data"
    TRAIN_FILE = "train.jsonl"
    VALIDATION_FILE = "validation.jsonl"
    HELDOUT_SFT_FILE = "heldout_sft.jsonl"
    HELDOUT_DPO_FILE = "heldout_dpo.jsonl"
    CHECKPOINTS_DIR = "checkpoints"
    CHECKPOINT_PREFIX = "checkpoint-"
    CHECKPOINT_STATE_FILE = "trainer_state.json"
    """Written last into a checkpoint: a checkpoint folder without it is incomplete."""
    ADAPTER_DIR = "adapter"
    ADAPTER_CONFIG_FILE = "adapter_config.json"
    METRICS_FILE = "metrics.json"
    EVAL_SAMPLES_FILE = "eval/samples.json"
    _CHECKPOINT_RE = re.compile(rf"^{re.escape(CHECKPOINT_PREFIX)}(\d+)$")

    def __init__(self, job_dir: Path | str) -> None:
        self.root = Path(job_dir)

    def __repr__(self) -> str:
        return f"JobLayout({str(self.root)!r})"

    @property
    def job_file(self) -> Path:
        return self.root / self.JOB_FILE

    @property
    def events_file(self) -> Path:
        return self.root / self.EVENTS_FILE

    @property
    def worker_log(self) -> Path:
        return self.root / self.WORKER_LOG

    @property
    def data_dir(self) -> Path:
        return self.root / self.DATA_DIR

    @property
    def train_file(self) -> Path:
        return self.data_dir / self.TRAIN_FILE

    @property
    def validation_file(self) -> Path:
        return self.data_dir / self.VALIDATION_FILE

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / self.CHECKPOINTS_DIR

    @property
    def adapter_dir(self) -> Path:
        return self.root / self.ADAPTER_DIR

    @property
    def metrics_file(self) -> Path:
        return self.root / self.METRICS_FILE

    # -- checkpoints -------------------------------------------------------------------------------------------

    @classmethod
    def checkpoint_name(cls, step: int) -> str:
        return f"{cls.CHECKPOINT_PREFIX}{int(step)}"

    @classmethod
    def checkpoint_step(cls, name: str) -> int | None:
        """The step of a checkpoint folder's name, None for any other name."""
        m = cls._CHECKPOINT_RE.match(name)
        return int(m.group(1)) if m else None

    def checkpoint_dir(self, step: int) -> Path:
        return self.checkpoints_dir / self.checkpoint_name(step)

    def checkpoint_steps(self) -> list[int]:
        """The steps of the complete checkpoints, in order."""
        if not self.checkpoints_dir.is_dir():
            return []
        return sorted(step for child in self.checkpoints_dir.iterdir()
                      if (step := self.checkpoint_step(child.name)) is not None
                      and (child / self.CHECKPOINT_STATE_FILE).is_file())

    def latest_checkpoint(self) -> tuple[int, Path] | None:
        """The newest COMPLETE checkpoint (step, folder): the one a resumed worker continues from."""
        return newest_checkpoint(self.checkpoints_dir)

    # -- temporaries -------------------------------------------------------------------------------------------

    @staticmethod
    def temporary(path: Path) -> Path:
        """Where ``path`` is written before it is renamed into place: ``.<name>.tmp`` next to it."""
        return path.with_name(f".{path.name}.tmp")

    @staticmethod
    def is_temporary(name: str) -> bool:
        return name.startswith(".") and name.endswith(".tmp")

    def remove_temporaries(self) -> None:
        """Deletes the half-written temporaries a killed worker left (a checkpoint, the adapter, a data file):
        they never look like a finished artifact, and the next write starts them afresh."""
        for folder in (self.root, self.checkpoints_dir, self.data_dir):
            try:
                children = list(folder.iterdir())
            except OSError:
                continue
            for child in children:
                if self.is_temporary(child.name):
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)


def complete_checkpoints(checkpoints_dir: Path) -> list[tuple[int, Path]]:
    """Every complete checkpoint (step, folder) in ``checkpoints_dir``, by step."""
    try:
        children = list(Path(checkpoints_dir).iterdir())
    except OSError:
        return []
    found = [(JobLayout.checkpoint_step(c.name), c) for c in children]
    return sorted((step, c) for step, c in found
                  if step is not None and (c / JobLayout.CHECKPOINT_STATE_FILE).is_file())


def newest_checkpoint(checkpoints_dir: Path) -> tuple[int, Path] | None:
    """The complete checkpoint with the highest step in ``checkpoints_dir``, if any."""
    best: tuple[int, Path] | None = None
    try:
        children = list(Path(checkpoints_dir).iterdir())
    except OSError:
        return None
    for child in children:
        step = JobLayout.checkpoint_step(child.name)
        if (step is not None and (child / JobLayout.CHECKPOINT_STATE_FILE).is_file()
                and (best is None or step > best[0])):
            best = (step, child)
    return best


# -- listing and path safety -----------------------------------------------------------------------------------


@dataclass
class ArtifactFile:
    name: str
    size_bytes: int
    type: str


@dataclass
class Artifacts:
    job_id: str
    checkpoint_path: str
    data_directory: str
    files: list[ArtifactFile]


_TOKENIZER_FILES = ("special_tokens_map.json", "vocab.json", "merges.txt", "chat_template.jinja", "added_tokens.json")


def artifact_type(name: str) -> str:
    """What an artifact is, from its path inside the job folder."""
    parts = PurePosixPath(name).parts
    base = parts[-1]
    if parts[0] == JobLayout.CHECKPOINTS_DIR:
        return "checkpoint"
    if parts[0] == JobLayout.DATA_DIR:
        return "data"
    if base == JobLayout.METRICS_FILE:
        return "metrics"
    if base.endswith(".log") or base == JobLayout.EVENTS_FILE:
        return "log"
    if base.endswith((".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt")):
        return "weights"
    if base.startswith("tokenizer") or base in _TOKENIZER_FILES or base.endswith((".model", ".tiktoken")):
        return "tokenizer"
    if base.endswith((".json", ".yaml", ".yml", ".toml")):
        return "config"
    return "other"


def list_artifacts(job_id: str, layout: JobLayout) -> Artifacts:
    """Every regular file under the job folder (symlinks are not followed or listed), and the adapter (or the
    newest complete checkpoint) as the job's checkpoint."""
    root = layout.root
    files: list[ArtifactFile] = []
    if root.is_dir():
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            # A ``.<name>.tmp`` is a checkpoint or adapter being written (or left half-written by a crash):
            # never listed, so nothing incomplete looks like a finished artifact.
            dirnames[:] = sorted(d for d in dirnames if not JobLayout.is_temporary(d))
            for fn in sorted(f for f in filenames if not JobLayout.is_temporary(f)):
                path = Path(dirpath) / fn
                try:
                    st = path.lstat()
                except OSError:
                    continue
                if not path.is_file() or path.is_symlink():
                    continue
                name = path.relative_to(root).as_posix()
                files.append(ArtifactFile(name, st.st_size, artifact_type(name)))
    checkpoint = ""
    if (layout.adapter_dir / JobLayout.ADAPTER_CONFIG_FILE).is_file():
        checkpoint = str(layout.adapter_dir)
    elif found := layout.latest_checkpoint():
        checkpoint = str(found[1])  # complete ones only: the one a resumed job would continue from
    return Artifacts(job_id, checkpoint, str(layout.data_dir), files)


def resolve_artifact(job_id: str, layout: JobLayout, name: str) -> Path:
    """The file ``name`` (as ``list_artifacts`` lists it). ``InvalidArgument`` for a name that tries to leave
    the folder; ``NotFound`` for anything that is not a regular file inside it."""
    if not name or "\x00" in name:
        raise InvalidArgument("must name a file of the job's artifacts", field="name")
    pure = PurePosixPath(name)
    if pure.is_absolute() or name.startswith("\\") or re.match(r"^[A-Za-z]:", name):
        raise InvalidArgument("must be a path inside the job's folder, not an absolute path", field="name")
    if ".." in pure.parts or ".." in name.replace("\\", "/").split("/"):
        raise InvalidArgument("must not contain '..'", field="name")
    if any(JobLayout.is_temporary(part) for part in pure.parts):
        raise NotFound(f"job {job_id} has no artifact {name!r}")  # being written, or left half-written
    path = layout.root.joinpath(*pure.parts)
    real_root = Path(os.path.realpath(layout.root))
    real = Path(os.path.realpath(path))
    # A symlink anywhere on the way (even one pointing inside) is refused: artifacts are plain files.
    if real_root not in real.parents or real != real_root.joinpath(*pure.parts) or not real.is_file():
        raise NotFound(f"job {job_id} has no artifact {name!r}")
    return real
