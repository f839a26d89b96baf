"""The job manager: creates jobs, queues and runs them as worker processes, cancels them, and streams them.

Each running job is one OS process (``python -m services.trainer.worker JOB_DIR``) in its own session, so a
cancel can end it and everything it started with one signal to its process group. The manager reads the
worker's stdout (one JSON object per line, see notes/WORKER_PROTOCOL.md) asynchronously, numbers each event,
persists it (database + the job folder's ``events.jsonl``), updates the job row and publishes the event to the
job's watchers. When the worker exits, the manager alone decides the outcome: completed, failed (with the
reason) or cancelled. The training itself never runs on this process's event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from services.common.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from services.trainer.config import TrainerSettings
from services.trainer.events import EventHub, EventType, JobEventRecord, Subscription
from services.trainer.orm import RUNNING_STATUSES, Job, JobStatus
from services.trainer.store import JobStore

log = logging.getLogger(__name__)

KILL_AFTER_SECONDS = 5.0
"""How long a worker has to exit after SIGTERM before it gets SIGKILL (cancel and shutdown)."""
RESTARTED_REASON = "trainer restarted while the job was running"
CRASH_PREFIX = "the trainer stopped unexpectedly"
"""How the event that records a crash-restart of a running job begins (``recover`` counts them)."""
OOM_REASON = "out of memory: reduce batch_size or enable gradient_checkpointing"
WORKER_TOKEN_ENV = "ARAGORA_EXPORTER_TOKEN"
"""The worker sends this token to the exporter (``authorization: Bearer``); the trainer's ``api_token``."""
WORKER_MAX_FILE_ENV = "ARAGORA_WORKER_MAX_FILE_BYTES"
"""The largest file the worker may write (RLIMIT_FSIZE it sets on itself); from ``worker_max_file_bytes``."""
MAX_LINE_BYTES = 1 << 20
MAX_MESSAGE_CHARS = 4000
REPLAY_BATCH = 500
NAME_MAX = 200
_VERTICAL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


# -- plain results the servicer converts ----------------------------------------------------------------------


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


@dataclass
class JobMetrics:
    """A completed job's metrics: counts and final loss from the job, the rest as ``metrics.json`` has it
    (absent stays absent)."""

    job_id: str
    status: JobStatus
    training_data_examples: int
    training_data_debates: int
    final_loss: float | None
    elo_rating: float | None = None
    win_rate: float | None = None
    vertical_accuracy: dict[str, float] = field(default_factory=dict)
    adapter: dict | None = None
    base: dict | None = None
    eval_matches: int = 0
    eval_sft_records: int = 0
    eval_dpo_pairs: int = 0


@dataclass
class _Run:
    """One worker process and what the manager learnt from it."""

    job_id: str
    job_dir: Path
    proc: asyncio.subprocess.Process | None = None
    spawned: asyncio.Event = field(default_factory=asyncio.Event)
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    cancel_requested: bool = False
    last_error: str = ""
    result: dict | None = None
    peak_rss: int = 0
    low_memory_seen: bool = False
    oom_kills_at_start: int | None = None
    events_file: object | None = None
    num_epochs: int = 1
    resumed: bool = False
    """Relaunched by ``recover`` to continue a job that was running when the trainer stopped."""


# -- helpers ---------------------------------------------------------------------------------------------------


def _num(value, default=None, kind=float):
    """A finite number of ``kind`` from a worker's JSON value, else ``default`` (a worker line never crashes
    the manager)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    if isinstance(value, float) and not math.isfinite(value):
        return default
    return kind(value)


def _text(value, limit: int = MAX_MESSAGE_CHARS) -> str:
    return (value if isinstance(value, str) else "" if value is None else str(value))[:limit]


def _float_map(value) -> dict[str, float]:
    if not isinstance(value, dict):
        return {}
    return {str(k)[:200]: float(v) for k, v in value.items() if _num(v) is not None}


def artifact_type(name: str) -> str:
    """What an artifact is, from its path inside the job folder."""
    parts = PurePosixPath(name).parts
    base = parts[-1]
    if parts[0] == "checkpoints":
        return "checkpoint"
    if parts[0] == "data":
        return "data"
    if base == "metrics.json":
        return "metrics"
    if base.endswith(".log") or base == "events.jsonl":
        return "log"
    if base.endswith((".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt")):
        return "weights"
    if base.startswith("tokenizer") or base in ("special_tokens_map.json", "vocab.json", "merges.txt",
                                                  "chat_template.jinja", "added_tokens.json") \
            or base.endswith((".model", ".tiktoken")):
        return "tokenizer"
    if base.endswith((".json", ".yaml", ".yml", ".toml")):
        return "config"
    return "other"


def _memory_limit() -> int:
    """The memory the worker can use: the cgroup limit if there is one, else the machine's RAM."""
    import psutil

    limit = psutil.virtual_memory().total
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            limit = min(limit, int(text))
    return limit


def _cgroup_oom_kills() -> int | None:
    try:
        for line in Path("/sys/fs/cgroup/memory.events").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        pass
    return None


def _last_log_line(path: Path, limit: int = 500) -> str:
    """The last non-empty line of a worker's stderr log (what a crash printed last), shortened."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 8192))
            lines = [ln.strip() for ln in fh.read().decode("utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:limit] if lines else ""


def _is_our_worker(pid: int, job_dir: Path) -> bool:
    """Whether ``pid`` still is a worker of ``job_dir`` (not a recycled pid of something else)."""
    import psutil

    try:
        cmd = psutil.Process(pid).cmdline()
    except (psutil.Error, OSError):
        return False
    return "services.trainer.worker" in cmd and str(job_dir) in cmd


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _stop_orphan(pid: int, kill_after: float) -> None:
    """Ends a worker a killed trainer left behind: SIGTERM first, so it writes a checkpoint of its last
    finished step (which the resumed job then starts from), SIGKILL if it has not exited after ``kill_after``."""
    import psutil

    try:
        proc = psutil.Process(pid)
    except psutil.Error:
        return
    _signal_group(pid, signal.SIGTERM)
    try:
        proc.wait(kill_after)
    except psutil.TimeoutExpired:
        _signal_group(pid, signal.SIGKILL)
        try:
            proc.wait(5)
        except psutil.Error:
            pass
    except psutil.Error:
        pass
    _signal_group(pid, signal.SIGKILL)  # anything the worker started in its group


def latest_checkpoint(job_dir: Path) -> tuple[int, Path] | None:
    """The job's newest COMPLETE checkpoint (step, folder): the one a resumed worker continues from."""
    from services.trainer.worker.checkpoint import latest_checkpoint as newest

    folder = newest(job_dir / "checkpoints")
    if folder is None:
        return None
    return int(_CHECKPOINT_RE.match(folder.name).group(1)), folder


def _remove_temporaries(job_dir: Path) -> None:
    """Deletes the half-written ``.<name>.tmp`` folders/files a killed worker left (a checkpoint or adapter
    being written): they never look like a finished artifact, and the next write starts them afresh."""
    import shutil

    for folder in (job_dir, job_dir / "checkpoints", job_dir / "data"):
        try:
            children = list(folder.iterdir())
        except OSError:
            continue
        for child in children:
            if _is_temporary(child.name):
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


# -- the manager -----------------------------------------------------------------------------------------------


class JobManager:
    """Jobs: their lifecycle, their worker processes, their event logs and watchers."""

    def __init__(self, settings: TrainerSettings, store: JobStore, hub: EventHub | None = None) -> None:
        self.settings = settings
        self.store = store
        self.hub = hub or EventHub()
        self.jobs_dir = Path(settings.jobs_dir).absolute()
        self.models_dir = Path(settings.models_dir).absolute()
        self.data_root = Path(settings.data_root).absolute()
        self.max_concurrent = max(1, int(settings.max_concurrent_jobs))
        self._runs: dict[str, _Run] = {}
        self._schedule_lock = asyncio.Lock()
        self._stopping = False
        self._background: set[asyncio.Task] = set()
        self._resume: list[str] = []
        """Jobs ``recover`` found running, to relaunch (before any queued job) as slots free up."""

    # -- start and stop ----------------------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """Deals with the jobs a previous trainer process left in PREPARING/TRAINING, before any call can see
        them: each resumes from its newest complete checkpoint (from the beginning when it has none), keeping
        its id, status and event log. A worker the previous trainer left orphaned (it was SIGKILLed) is
        stopped first with SIGTERM, so it checkpoints its last step. A job whose trainer crashed more than
        ``max_resumes`` times while it ran fails instead (it may be what crashes it). Returns the job ids."""
        handled = []
        limit = max(0, int(self.settings.max_resumes))
        for job in self.store.with_status(*RUNNING_STATUSES):
            job_dir = self.job_dir(job.id)
            crashed = job.pid is not None  # a trainer that stopped cleanly cleared the pid of its workers
            if job.pid and _is_our_worker(job.pid, job_dir):
                log.warning("stopping orphaned worker pid %s of %s", job.pid, job.id)
                _stop_orphan(job.pid, KILL_AFTER_SECONDS)
            self._sync_events_file(job.id)
            _remove_temporaries(job_dir)
            handled.append(job.id)
            crashes = self.store.count_events(job.id, EventType.WARNING, CRASH_PREFIX) + (1 if crashed else 0)
            if crashed and crashes > limit:
                self._transition(job.id, JobStatus.FAILED,
                                 f"{RESTARTED_REASON}, {crashes} times: not resuming it again "
                                 f"(TRAINER_MAX_RESUMES is {limit})", pid=None)
                log.warning("job %s: the trainer crashed %d times while it ran: failed", job.id, crashes)
                continue
            found = latest_checkpoint(job_dir)
            step = found[0] if found else 0
            total = job.total_steps or 0
            where = (f"from {found[1].name} (step {step}" + (f" of {total})" if total else ")")
                     if found else "from the beginning (no checkpoint yet)")
            if crashed:
                text = (f"{CRASH_PREFIX} while the job was {job.status} (restart {crashes} of at most {limit}); "
                        f"resuming {where}")
            else:
                text = f"the trainer restarted while the job was {job.status}; resuming {where}"
            self._event(job.id, EventType.WARNING if crashed else EventType.LOG, text,
                        pid=None, current_step=step, progress=min(1.0, step / total) if total else 0.0)
            self._resume.append(job.id)
            log.warning("job %s was %s when the trainer stopped: resuming %s", job.id, job.status, where)
        return handled

    def _sync_events_file(self, job_id: str) -> None:
        """Completes ``events.jsonl`` from the database (the log of record): the trainer may have been killed
        after committing an event but before writing its line, or half-way through a line. A cut line is
        dropped, then every event after the last whole line is appended, so the file keeps every event in order."""
        path = self.job_dir(job_id) / "events.jsonl"
        last = 0
        try:
            with open(path, "rb+") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(0, size - 65536))
                tail = fh.read()
                if tail and not tail.endswith(b"\n"):
                    # A line cut short by the kill: drop it (the database still has that event).
                    cut = len(tail) - (tail.rfind(b"\n") + 1)
                    fh.truncate(size - cut)
                    tail = tail[: len(tail) - cut]
            for raw in reversed(tail.splitlines()):
                try:
                    last = int(json.loads(raw)["sequence"])
                    break
                except (ValueError, KeyError, TypeError):
                    continue
        except FileNotFoundError:
            pass
        except OSError:
            log.exception("job %s: could not read events.jsonl", job_id)
            return
        missing = self.store.events_after(job_id, last)
        if not missing:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as fh:
                for event in missing:
                    fh.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
        except OSError:
            log.exception("job %s: could not complete events.jsonl", job_id)

    def start_background(self) -> None:
        """Starts the jobs whose start was requested before the trainer (re)started."""
        self._spawn_task(self._schedule())

    async def shutdown(self, kill_after: float = KILL_AFTER_SECONDS) -> None:
        """Ends every worker (SIGTERM to its group, SIGKILL after ``kill_after`` s) and waits for them. Their
        jobs stay in their running status for ``recover`` at the next start."""
        self._stopping = True
        runs = list(self._runs.values())
        await asyncio.gather(*(self._terminate(r, kill_after) for r in runs), return_exceptions=True)
        await asyncio.gather(*(r.done.wait() for r in runs), return_exceptions=True)
        for task in list(self._background):
            task.cancel()

    # -- queries -----------------------------------------------------------------------------------------------

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def get(self, job_id: str) -> Job:
        return self.store.get(job_id)

    def list(self, vertical: str = "", status: JobStatus | None = None, limit: int = 0,
             offset: int = 0) -> tuple[list[Job], int]:
        return self.store.list(vertical, status, limit, offset=offset)

    def counts(self) -> dict[str, int]:
        return self.store.counts()

    def list_models(self):
        from services.trainer import models

        return models.list_models(self.models_dir)

    def running_pid(self, job_id: str) -> int | None:
        run = self._runs.get(job_id)
        return run.proc.pid if run is not None and run.proc is not None else None

    # -- create / start / cancel -------------------------------------------------------------------------------

    def create(self, name: str, vertical: str, base_model: str, raw_config: dict) -> Job:
        """Validates everything, then creates a QUEUED job. Any bad field: ``InvalidArgument`` listing every
        one, and nothing is written."""
        from services.trainer import models, spec

        violations: list[FieldViolation] = []
        name = name.strip() if isinstance(name, str) else ""
        if not name:
            violations.append(FieldViolation("name", "is required"))
        elif len(name) > NAME_MAX:
            violations.append(FieldViolation("name", f"must be at most {NAME_MAX} characters"))
        elif any(ord(c) < 32 or ord(c) == 127 for c in name):
            violations.append(FieldViolation("name", "must not contain control characters"))
        vertical = (vertical or "").strip()
        if vertical and not _VERTICAL_RE.match(vertical):
            violations.append(FieldViolation(
                "vertical", "must be letters, digits, '_', '.' or '-' (at most 64), starting with a letter or digit"))
        model = None
        try:
            model = models.resolve_model(self.models_dir, base_model)
        except InvalidArgument as exc:
            violations.extend(exc.violations)
        config = None
        if model is not None:
            try:
                config = spec.validate_spec(raw_config, model, self.data_root).model_dump(mode="json")
            except InvalidArgument as exc:
                violations.extend(exc.violations)
        if violations:
            raise InvalidArgument(violations)
        job, event = self.store.create(name=name, vertical=vertical, base_model=model.id, training_config=config)
        self._emit(event)
        log.info("created %s (%s) on %s", job.id, job.name, job.base_model)
        return job

    async def start(self, job_id: str) -> Job:
        """Queues a QUEUED job to run; it starts now if a slot is free, else when one frees, in order."""
        job = self.store.get(job_id)
        if job.job_status is not JobStatus.QUEUED:
            raise FailedPrecondition(f"job {job_id} is {job.status}: only a queued job can be started")
        if self._stopping:
            raise FailedPrecondition("the trainer is shutting down")
        if job.start_requested_at is None:
            from services.trainer.orm import utcnow

            self.store.update(job_id, start_requested_at=utcnow())
            await self._schedule()
            job = self.store.get(job_id)
            if job.job_status is JobStatus.QUEUED:
                waiting = [j.id for j in self.store.waiting()]
                position = waiting.index(job_id) + 1 if job_id in waiting else 0
                self._event(job_id, EventType.LOG,
                            f"waiting for a free worker slot ({len(self._runs)} of {self.max_concurrent} busy; "
                            f"position {position} in the queue)")
        return self.store.get(job_id)

    async def cancel(self, job_id: str) -> Job:
        """Cancels a non-terminal job: a queued one at once, a running one by ending its worker (SIGTERM to
        its process group, SIGKILL after 5 s). Returns the job, CANCELLED."""
        job = self.store.get(job_id)
        if job.job_status.is_terminal():
            raise FailedPrecondition(f"job {job_id} is {job.status}: it cannot be cancelled")
        run = self._runs.get(job_id)
        if run is None:
            job, event = self.store.transition(job_id, JobStatus.CANCELLED, "cancelled by user", start_requested_at=None)
            self._emit(event)
            return job
        run.cancel_requested = True
        await run.spawned.wait()
        await self._terminate(run, KILL_AFTER_SECONDS)
        await run.done.wait()
        job = self.store.get(job_id)
        if job.job_status is not JobStatus.CANCELLED:
            raise FailedPrecondition(f"job {job_id} is {job.status}: it ended before it could be cancelled")
        return job

    # -- metrics and artifacts ---------------------------------------------------------------------------------

    def metrics(self, job_id: str) -> JobMetrics:
        job = self.store.get(job_id)
        if job.job_status is not JobStatus.COMPLETED:
            raise FailedPrecondition(f"job {job_id} is {job.status}: metrics exist only for a completed job")
        raw: dict = {}
        try:
            loaded = json.loads((self.job_dir(job_id) / "metrics.json").read_text(encoding="utf-8"))
            raw = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            raw = {}

        def evaluation(value) -> dict | None:
            if not isinstance(value, dict):
                return None
            out = {k: _num(value.get(k)) for k in ("heldout_loss", "perplexity", "preference_accuracy")}
            out["vertical_accuracy"] = _float_map(value.get("vertical_accuracy"))
            return out

        return JobMetrics(
            job_id=job.id,
            status=job.job_status,
            # The worker's metrics.json may name the counts either way; the job row has them too.
            training_data_examples=_num(raw.get("training_data_examples", raw.get("training_examples")),
                                        job.dataset_examples, int),
            training_data_debates=_num(raw.get("training_data_debates", raw.get("training_debates")),
                                       job.training_debates, int),
            final_loss=_num(raw.get("final_loss"), job.final_loss),
            elo_rating=_num(raw.get("elo_rating")),
            win_rate=_num(raw.get("win_rate")),
            vertical_accuracy=_float_map(raw.get("vertical_accuracy")),
            adapter=evaluation(raw.get("adapter")),
            base=evaluation(raw.get("base")),
            eval_matches=_num(raw.get("eval_matches"), 0, int),
            eval_sft_records=_num(raw.get("eval_sft_records"), 0, int),
            eval_dpo_pairs=_num(raw.get("eval_dpo_pairs"), 0, int),
        )

    def artifacts(self, job_id: str) -> Artifacts:
        """Every regular file under the job folder (symlinks are not followed or listed)."""
        self.store.get(job_id)
        root = self.job_dir(job_id)
        files: list[ArtifactFile] = []
        if root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
                # A ``.<name>.tmp`` is a checkpoint or adapter being written (or left half-written by a
                # crash): never listed, so nothing incomplete looks like a finished artifact.
                dirnames[:] = sorted(d for d in dirnames if not _is_temporary(d))
                for fn in sorted(f for f in filenames if not _is_temporary(f)):
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
        if (root / "adapter" / "adapter_config.json").is_file():
            checkpoint = str(root / "adapter")
        elif found := latest_checkpoint(root):
            checkpoint = str(found[1])  # complete ones only: the one a resumed job would continue from
        return Artifacts(job_id, checkpoint, str(root / "data"), files)

    def artifact_path(self, job_id: str, name: str) -> Path:
        """The file ``name`` (as ``artifacts`` lists it) of the job. ``InvalidArgument`` for a name that tries
        to leave the folder; ``NotFound`` for anything that is not a regular file inside it."""
        self.store.get(job_id)
        if not name or "\x00" in name:
            raise InvalidArgument("must name a file of the job's artifacts", field="name")
        pure = PurePosixPath(name)
        if pure.is_absolute() or name.startswith("\\") or re.match(r"^[A-Za-z]:", name):
            raise InvalidArgument("must be a path inside the job's folder, not an absolute path", field="name")
        if ".." in pure.parts or ".." in name.replace("\\", "/").split("/"):
            raise InvalidArgument("must not contain '..'", field="name")
        if any(_is_temporary(part) for part in pure.parts):
            raise NotFound(f"job {job_id} has no artifact {name!r}")  # being written, or left half-written
        root = self.job_dir(job_id)
        path = root.joinpath(*pure.parts)
        real_root = Path(os.path.realpath(root))
        real = Path(os.path.realpath(path))
        # A symlink anywhere on the way (even one pointing inside) is refused: artifacts are plain files.
        if real_root not in real.parents or real != real_root.joinpath(*pure.parts) or not real.is_file():
            raise NotFound(f"job {job_id} has no artifact {name!r}")
        return real

    # -- watching ----------------------------------------------------------------------------------------------

    async def watch(self, job_id: str, after_sequence: int = 0) -> AsyncIterator[Job | JobEventRecord]:
        """Yields the job (snapshot), then each of its events with a sequence above ``after_sequence`` in
        order, without gaps or repeats, ending after the event that makes it terminal. Leaving early (the
        consumer closing the generator) only unsubscribes."""
        after_sequence = max(0, int(after_sequence))
        # Subscribe before reading the store: an event persisted after the read is then in the queue.
        with self.hub.subscribe(job_id) as sub:
            job = self.store.get(job_id)
            yield job
            last = after_sequence
            async for event in self._replay(job_id, last):
                yield event
                last = event.sequence
                if event.terminal_status:
                    return
            if job.job_status.is_terminal():
                return  # the terminal event was at or before after_sequence
            while True:
                event = await self._next_live(sub)
                if event is None or event.sequence > last + 1:
                    # Fell behind (queue overflow) or a gap: the store has everything, in order.
                    async for stored in self._replay(job_id, last):
                        yield stored
                        last = stored.sequence
                        if stored.terminal_status:
                            return
                    continue
                if event.sequence <= last:
                    continue  # already replayed
                yield event
                last = event.sequence
                if event.terminal_status:
                    return

    async def _replay(self, job_id: str, after: int) -> AsyncIterator[JobEventRecord]:
        while True:
            batch = self.store.events_after(job_id, after, REPLAY_BATCH)
            for event in batch:
                yield event
                after = event.sequence
            if len(batch) < REPLAY_BATCH:
                return

    @staticmethod
    async def _next_live(sub: Subscription) -> JobEventRecord | None:
        """The next published event, or None when the subscription overflowed and lost some."""
        if sub.lagged:
            sub.lagged = False
            while not sub.queue.empty():
                sub.queue.get_nowait()
            return None
        event = await sub.queue.get()
        return event

    # -- scheduling and workers --------------------------------------------------------------------------------

    def _spawn_task(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _schedule(self) -> None:
        """Launches the jobs to resume, then the waiting jobs, oldest request first, while slots are free."""
        async with self._schedule_lock:
            while not self._stopping and len(self._runs) < self.max_concurrent:
                if self._resume:
                    job = self.store.get(self._resume.pop(0))
                    if job.job_status in RUNNING_STATUSES:  # not cancelled meanwhile
                        await self._launch(job, resume=True)
                    continue
                waiting = self.store.waiting()
                if not waiting:
                    return
                await self._launch(waiting[0])

    async def _launch(self, job: Job, resume: bool = False) -> None:
        """Starts the job's worker. ``resume``: the job is already running (``recover`` found it); its worker
        continues from the newest checkpoint and the job keeps its status."""
        from services.trainer import models

        job_dir = self.job_dir(job.id)
        try:
            model = models.resolve_model(self.models_dir, job.base_model)
        except InvalidArgument as exc:
            self._transition(job.id, JobStatus.FAILED, f"base model unavailable: {exc.message}", start_requested_at=None)
            return
        run = _Run(job.id, job_dir, num_epochs=int(job.training_config.get("num_epochs") or 1), resumed=resume)
        self._runs[job.id] = run
        try:
            if not resume:
                self._transition(job.id, JobStatus.PREPARING, "worker starting")
            job_dir.mkdir(parents=True, exist_ok=True)
            self._write_job_file(job, model.path, resume)
            log_file = open(job_dir / "worker.log", "ab")
            try:
                env = self._worker_env()
                run.oom_kills_at_start = _cgroup_oom_kills()
                run.proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "services.trainer.worker", str(job_dir),
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=log_file,
                    start_new_session=True, env=env, limit=MAX_LINE_BYTES,
                )
            finally:
                log_file.close()  # the child holds its own descriptor
        except Exception as exc:  # noqa: BLE001 - any failure to start is the job's failure, with the reason
            log.exception("could not start the worker of %s", job.id)
            self._runs.pop(job.id, None)
            run.spawned.set()
            run.exited.set()
            run.done.set()
            current = self.store.get(job.id).job_status
            if not current.is_terminal():
                self._transition(job.id, JobStatus.FAILED, f"could not start the worker: {exc}")
            return
        self.store.update(job.id, pid=run.proc.pid)
        self._event(job.id, EventType.LOG, f"worker started (pid {run.proc.pid})")
        log.info("job %s: worker pid %d started", job.id, run.proc.pid)
        run.spawned.set()
        run.task = self._spawn_task(self._supervise(run))
        if run.cancel_requested:
            self._spawn_task(self._terminate(run, KILL_AFTER_SECONDS))

    def _worker_env(self) -> dict[str, str]:
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
        # Secrets and limits travel in the environment, never in job.json (a downloadable artifact).
        for name in (WORKER_TOKEN_ENV, WORKER_MAX_FILE_ENV):
            env.pop(name, None)
        if self.settings.api_token:
            env[WORKER_TOKEN_ENV] = self.settings.api_token
        if self.settings.worker_max_file_bytes:
            env[WORKER_MAX_FILE_ENV] = str(int(self.settings.worker_max_file_bytes))
        return env

    def _write_job_file(self, job: Job, model_path: Path | None, resume: bool = False) -> None:
        config = dict(job.training_config)
        every = config.get("checkpoint_every_steps") or self.settings.checkpoint_every_steps
        spec = {
            "job_id": job.id,
            "name": job.name,
            "vertical": job.vertical,
            "base_model": job.base_model,
            "model_path": str(Path(model_path).absolute()) if model_path else None,
            "training_config": config,
            "exporter_address": self.settings.exporter_address,
            "data_root": str(self.data_root),
            "checkpoint_every_steps": int(every),
            "resume": resume,
            "exporter_timeout_s": float(self.settings.exporter_retry_seconds),
        }
        path = self.job_dir(job.id) / "job.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(spec, indent=2), encoding="utf-8")
        os.replace(tmp, path)

    async def _terminate(self, run: _Run, kill_after: float) -> None:
        """SIGTERM to the worker's process group, SIGKILL if it has not exited after ``kill_after`` s."""
        await run.spawned.wait()
        if run.proc is None or run.exited.is_set():
            return
        _signal_group(run.proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(run.exited.wait()), kill_after)
        except TimeoutError:
            log.warning("job %s: worker pid %d ignored SIGTERM for %.0fs: SIGKILL", run.job_id, run.proc.pid, kill_after)
            _signal_group(run.proc.pid, signal.SIGKILL)
            await run.exited.wait()

    async def _sample_memory(self, run: _Run) -> None:
        """Keeps the worker tree's peak RSS and whether the machine ran low on memory, to explain a SIGKILL."""
        import psutil

        try:
            proc = psutil.Process(run.proc.pid)
        except psutil.Error:
            return
        while True:
            try:
                rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
                run.peak_rss = max(run.peak_rss, rss)
                vm = psutil.virtual_memory()
                if vm.available < 0.05 * vm.total:
                    run.low_memory_seen = True
            except psutil.Error:
                return
            await asyncio.sleep(1.0)

    async def _supervise(self, run: _Run) -> None:
        proc = run.proc
        sampler = asyncio.get_running_loop().create_task(self._sample_memory(run))
        try:
            run.events_file = open(run.job_dir / "events.jsonl", "a", encoding="utf-8")
            while True:
                try:
                    line = await proc.stdout.readline()
                except ValueError:
                    self._event(run.job_id, EventType.WARNING, "the worker sent a line over 1 MiB; it was dropped")
                    continue
                if not line:
                    break
                try:
                    self._handle_line(run, line)
                except Exception:  # noqa: BLE001 - one bad line must not orphan the job
                    log.exception("job %s: could not handle worker line %r", run.job_id, line[:200])
            rc = await proc.wait()
            run.exited.set()
            _signal_group(proc.pid, signal.SIGKILL)  # stragglers the worker started in its group
            self._finish(run, rc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            log.exception("job %s: supervision failed", run.job_id)
            _signal_group(proc.pid, signal.SIGKILL)
            try:
                current = self.store.get(run.job_id).job_status
                if not current.is_terminal():
                    self._transition(run.job_id, JobStatus.FAILED, f"trainer lost track of the worker: {exc}")
            except Exception:  # noqa: BLE001
                log.exception("job %s: could not record the failure", run.job_id)
        finally:
            sampler.cancel()
            run.exited.set()
            if run.events_file is not None:
                run.events_file.close()
                run.events_file = None
            self._runs.pop(run.job_id, None)
            run.done.set()
            if not self._stopping:
                self._spawn_task(self._schedule())

    def _handle_line(self, run: _Run, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            return
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            self._event(run.job_id, EventType.LOG, _text(text))
            return
        kind = obj.get("type")
        message = _text(obj.get("message"))
        job_id = run.job_id
        if kind == "status":
            self._worker_status(job_id, obj.get("status"), message)
        elif kind == "step":
            step = _num(obj.get("step"), 0, int)
            total = _num(obj.get("total_steps"), 0, int)
            epoch = _num(obj.get("epoch"), 0.0)
            loss = _num(obj.get("loss"))
            progress = min(1.0, max(0.0, _num(obj.get("progress"), step / total if total else 0.0)))
            payload = {
                "epoch": epoch, "step": step, "total_steps": total, "loss": loss,
                "learning_rate": _num(obj.get("learning_rate"), 0.0),
                "examples_seen": _num(obj.get("examples_seen"), 0, int),
                "tokens_per_second": _num(obj.get("tokens_per_second"), 0.0),
                "progress": progress, "extra": _float_map(obj.get("extra")),
            }
            fields = dict(current_step=step, progress=progress,
                          current_epoch=min(run.num_epochs, max(1, math.ceil(epoch - 1e-9))),
                          training_examples=payload["examples_seen"])
            if total:
                fields["total_steps"] = total
            if loss is not None:
                fields["loss"] = loss
            msg = message or (f"step {step}/{total} loss {loss:.4f}" if loss is not None else f"step {step}/{total}")
            self._event(job_id, EventType.STEP, msg, payload, **fields)
        elif kind == "checkpoint":
            payload = {"path": _text(obj.get("path"), 1000), "step": _num(obj.get("step"), 0, int)}
            self._event(job_id, EventType.CHECKPOINT, message or f"checkpoint {payload['path']}", payload)
        elif kind == "eval":
            payload = {"phase": _text(obj.get("phase"), 200), "done": _num(obj.get("done"), 0, int),
                       "total": _num(obj.get("total"), 0, int), "metrics": _float_map(obj.get("metrics"))}
            self._event(job_id, EventType.EVAL, message or f"eval {payload['phase']} {payload['done']}/{payload['total']}",
                        payload)
        elif kind in ("log", "warning", "error"):
            if kind == "error":
                run.last_error = message or run.last_error
            self._event(job_id, EventType(kind), message)
        elif kind == "data":
            examples = _num(obj.get("training_examples"), 0, int)
            debates = _num(obj.get("training_debates"), 0, int)
            total = _num(obj.get("total_steps"), 0, int)
            fields = dict(dataset_examples=examples, training_debates=debates)
            if total:
                fields["total_steps"] = total
            self._event(job_id, EventType.LOG,
                        message or f"training data ready: {examples} examples from {debates} debates, {total} steps",
                        {"training_examples": examples, "training_debates": debates, "total_steps": total}, **fields)
        elif kind == "result":
            run.result = obj
            final = _num(obj.get("final_loss"))
            self._event(job_id, EventType.LOG,
                        message or ("training finished" + (f": final loss {final:.4f}" if final is not None else "")),
                        final_loss=final)
        else:
            self._event(job_id, EventType.LOG, _text(text))

    def _worker_status(self, job_id: str, status, message: str) -> None:
        try:
            target = JobStatus(status)
        except ValueError:
            target = None
        if target not in (JobStatus.PREPARING, JobStatus.TRAINING):
            self._event(job_id, EventType.WARNING, f"the worker announced an unexpected status {status!r}")
            return
        current = self.store.get(job_id).job_status
        run = self._runs.get(job_id)
        resumed_preparing = run is not None and run.resumed and target is JobStatus.PREPARING \
            and current is JobStatus.TRAINING
        if current is target or resumed_preparing:
            # A resumed worker prepares again (loads the model, reads its saved data) while the job stays
            # in training: the status machine has no way back, and the job is still on its way.
            if message:
                self._event(job_id, EventType.LOG, message)
        elif current.can_move_to(target):
            self._transition(job_id, target, message)
        else:
            self._event(job_id, EventType.WARNING, f"the worker announced {target.value} while the job is {current.value}")

    def _finish(self, run: _Run, rc: int) -> None:
        """Decides the job's outcome from how its worker ended."""
        job = self.store.get(run.job_id)
        status = job.job_status
        if status.is_terminal():
            return
        if rc == 0 and run.result is not None:
            # Finished, even if a cancel or the trainer's stop came too late to matter.
            if status is JobStatus.TRAINING:
                self._transition(run.job_id, JobStatus.COMPLETED, "", progress=1.0)
            else:
                self._transition(run.job_id, JobStatus.FAILED,
                                 f"the worker finished while the job was still {status.value}")
            return
        if self._stopping and not run.cancel_requested:
            # The trainer is stopping: the job is left for ``recover`` at the next start.
            self.store.update(run.job_id, pid=None)
            self._event(run.job_id, EventType.LOG, f"the trainer stopped; the worker ended (exit code {rc})")
            return
        if run.cancel_requested:
            self._transition(run.job_id, JobStatus.CANCELLED, "cancelled by user")
            return
        if rc == 0:
            reason = run.last_error or "the worker exited without reporting a result"
        elif rc < 0:
            sig = -rc
            oom_kills = _cgroup_oom_kills()
            oom = sig == signal.SIGKILL and (
                run.low_memory_seen
                or run.peak_rss >= 0.9 * _memory_limit()
                or (oom_kills is not None and run.oom_kills_at_start is not None and oom_kills > run.oom_kills_at_start)
            )
            reason = OOM_REASON if oom else f"worker killed by signal {sig}"
        else:
            reason = run.last_error or f"worker exited with code {rc}"
            if not run.last_error and (tail := _last_log_line(run.job_dir / "worker.log")):
                reason += f": {tail}"
        self._transition(run.job_id, JobStatus.FAILED, reason)

    # -- events ------------------------------------------------------------------------------------------------

    def _transition(self, job_id: str, to: JobStatus, reason: str = "", **fields) -> Job:
        job, event = self.store.transition(job_id, to, reason, **fields)
        self._emit(event)
        return job

    def _event(self, job_id: str, type: EventType, message: str = "", payload: dict | None = None, **fields) -> None:
        _job, event = self.store.append_event(job_id, type, message, payload, **fields)
        self._emit(event)

    def _emit(self, event: JobEventRecord) -> None:
        """After the event is in the database: append it to the job's ``events.jsonl`` and publish it."""
        line = json.dumps(event.to_dict(), ensure_ascii=False) + "\n"
        run = self._runs.get(event.job_id)
        try:
            if run is not None and run.events_file is not None:
                run.events_file.write(line)
                run.events_file.flush()
            else:
                path = self.job_dir(event.job_id) / "events.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "a", encoding="utf-8") as fh:
                    fh.write(line)
        except OSError:
            # The database holds the log; a full disk must not stop the job's bookkeeping.
            log.exception("job %s: could not append to events.jsonl", event.job_id)
        self.hub.publish(event)
