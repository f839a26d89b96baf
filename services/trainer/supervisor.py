"""One job's worker: launch it, read its lines, terminate it, decide the outcome.

Where the worker process runs is its executor's business (``services.trainer.executors``: a child process of
the trainer, or a Ray actor on a cluster node); what it says is the same: the protocol lines
(``services.trainer.protocol``), which the supervisor turns into numbered job events. When the worker exits,
the supervisor alone decides the outcome: completed, failed (with the reason; a SIGKILL while memory was short
is classified as a kernel OOM kill, see ``classify_exit``), cancelled, or lost with its node (the job manager
resumes it). Also here: the memory forensics of a local worker, and finding and stopping the orphaned worker a
killed trainer left behind.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.trainer.artifacts import JobLayout
from services.trainer.config import TrainerSettings
from services.trainer.eventlog import EventLog
from services.trainer.events import EventType
from services.trainer.executors import LOST, Executor, Worker
from services.trainer.orm import Job, JobStatus
from services.trainer.protocol import (
    OOM_MESSAGE,
    WORKER_HUB_TOKEN_ENV,
    WORKER_MAX_FILE_ENV,
    WORKER_TOKEN_ENV,
    CheckpointLine,
    DataLine,
    DownloadLine,
    EvalLine,
    JobFile,
    ResultLine,
    StatusLine,
    StepLine,
    WorkerLine,
    parse_line,
)

log = logging.getLogger(__name__)

KILL_AFTER_SECONDS = 5.0
"""How long a worker has to exit after SIGTERM before it gets SIGKILL (cancel and shutdown)."""
MAX_LINE_BYTES = 1 << 20
LINE_DROPPED = "the worker sent a line over 1 MiB; it was dropped"
"""The warning a line over ``MAX_LINE_BYTES`` leaves instead of itself."""
LOW_MEMORY_SHARE = 0.05
"""The machine counts as short of memory when less than this share of its RAM is available."""
PEAK_RSS_SHARE = 0.9
"""A worker tree whose peak RSS reached this share of its memory limit was near it."""


# -- forensics: what ended a worker ----------------------------------------------------------------------------


def memory_limit() -> int:
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


def cgroup_oom_kills(events_file: Path = Path("/sys/fs/cgroup/memory.events")) -> int | None:
    """The cgroup's count of OOM kills (``oom_kill`` in ``memory.events``), None where there is none."""
    try:
        for line in events_file.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        pass
    return None


@dataclass
class MemoryForensics:
    """What was seen of memory while a worker ran, to explain a SIGKILL."""

    peak_rss: int = 0
    low_memory_seen: bool = False
    oom_kills_at_start: int | None = None
    oom_kills_at_exit: int | None = None
    memory_limit: int = 0

    def sample(self, proc) -> None:
        """One look at the worker (a ``psutil.Process``) and the machine: its tree's RSS, the free memory."""
        import psutil

        rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
        self.peak_rss = max(self.peak_rss, rss)
        vm = psutil.virtual_memory()
        if vm.available < LOW_MEMORY_SHARE * vm.total:
            self.low_memory_seen = True

    def oom_likely(self) -> bool:
        """The kernel's OOM killer probably sent the SIGKILL: the cgroup counted a new OOM kill, or the
        machine was short of memory, or the worker tree came near its limit."""
        counted = (self.oom_kills_at_start is not None and self.oom_kills_at_exit is not None
                   and self.oom_kills_at_exit > self.oom_kills_at_start)
        near_limit = self.memory_limit > 0 and self.peak_rss >= PEAK_RSS_SHARE * self.memory_limit
        return counted or self.low_memory_seen or near_limit


def classify_exit(rc: int, memory: MemoryForensics, last_error: str = "", log_tail: str = "") -> str:
    """The reason a job fails with, from how its worker exited without a result (``rc`` as asyncio gives it:
    negative for a signal)."""
    if rc == 0:
        return last_error or "the worker exited without reporting a result"
    if rc < 0:
        sig = -rc
        if sig == signal.SIGKILL and memory.oom_likely():
            return OOM_MESSAGE
        return f"worker killed by signal {sig}"
    reason = last_error or f"worker exited with code {rc}"
    if not last_error and log_tail:
        reason += f": {log_tail}"
    return reason


def last_log_line(path: Path, limit: int = 500) -> str:
    """The last non-empty line of a worker's stderr log (what a crash printed last), shortened."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 8192))
            lines = [ln.strip() for ln in fh.read().decode("utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:limit] if lines else ""


# -- process groups and orphans --------------------------------------------------------------------------------


def signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def is_our_worker(pid: int, job_dir: Path) -> bool:
    """Whether ``pid`` still is a worker of ``job_dir`` (not a recycled pid of something else)."""
    import psutil

    try:
        cmd = psutil.Process(pid).cmdline()
    except (psutil.Error, OSError):
        return False
    return "services.trainer.worker" in cmd and str(job_dir) in cmd


def stop_orphan(pid: int, kill_after: float) -> None:
    """Ends a worker a killed trainer left behind: SIGTERM first, so it writes a checkpoint of its last
    finished step (which the resumed job then starts from), SIGKILL if it has not exited after ``kill_after``."""
    import psutil

    try:
        proc = psutil.Process(pid)
    except psutil.Error:
        return
    signal_group(pid, signal.SIGTERM)
    try:
        proc.wait(kill_after)
    except psutil.TimeoutExpired:
        signal_group(pid, signal.SIGKILL)
        try:
            proc.wait(5)
        except psutil.Error:
            pass
    except psutil.Error:
        pass
    signal_group(pid, signal.SIGKILL)  # anything the worker started in its group


def worker_env(settings: TrainerSettings) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    # Secrets and limits travel in the environment, never in job.json (a downloadable artifact).
    for name in (WORKER_TOKEN_ENV, WORKER_MAX_FILE_ENV, WORKER_HUB_TOKEN_ENV, "TRAINER_HUB_TOKEN"):
        env.pop(name, None)
    if settings.hub_token:
        env[WORKER_HUB_TOKEN_ENV] = settings.hub_token.get_secret_value()
    # The worker reads exports with the trainer's api_token, or (with API keys) the trainer's service account.
    from services.auth.store import service_credential

    token = settings.api_token or service_credential(settings.auth_database_url, "trainer-worker")
    if token:
        env[WORKER_TOKEN_ENV] = token
    if settings.worker_max_file_bytes:
        env[WORKER_MAX_FILE_ENV] = str(int(settings.worker_max_file_bytes))
    return env


def job_file(job: Job, settings: TrainerSettings, model_path: Path | None, resume: bool,
             download: bool = False) -> JobFile:
    """What the worker of ``job`` is told to do."""
    config = dict(job.training_config)
    every = config.get("checkpoint_every_steps") or settings.checkpoint_every_steps
    init = None
    if config.get("init_from_job"):
        source = JobLayout(Path(settings.jobs_dir).absolute() / config["init_from_job"])
        step = config.get("init_from_checkpoint")
        init = str(source.checkpoint_dir(step) if step else source.adapter_dir)
    tracking_uri, artifact_root = settings.mlflow_target()
    tls = settings.worker_tls()
    return JobFile(
        job_id=job.id, name=job.name, vertical=job.vertical, base_model=job.base_model,
        model_path=str(Path(model_path).absolute()) if model_path else None,
        training_config=config, exporter_address=settings.exporter_address,
        data_root=str(Path(settings.data_root).absolute()), checkpoint_every_steps=int(every), resume=resume,
        exporter_retry_seconds=float(settings.exporter_retry_seconds), init_weights=init,
        mlflow_tracking_uri=tracking_uri, mlflow_experiment=settings.mlflow_experiment,
        mlflow_artifact_root=artifact_root,
        hub_download=download and bool(settings.hub_enabled), hub_endpoint=settings.hub_endpoint,
        hub_keep_free_bytes=int(settings.hub_keep_free_bytes or 0),
        **{field: str(Path(path).absolute()) if path else None
           for field, path in (("tls_cert_file", tls.cert_file), ("tls_key_file", tls.key_file),
                               ("tls_ca_file", tls.ca_file))},
    )


# -- the supervisor --------------------------------------------------------------------------------------------


class WorkerSupervisor:
    """One job's worker (wherever its executor runs it) and what the service learnt from it."""

    def __init__(self, job: Job, layout: JobLayout, events: EventLog, settings: TrainerSettings, *,
                 resumed: bool, is_stopping: Callable[[], bool], executor: Executor) -> None:
        self.job_id = job.id
        self.layout = layout
        self.events = events
        self.settings = settings
        self.executor = executor
        self.resumed = resumed
        """Relaunched by ``recover`` to continue a job that was running when the trainer stopped."""
        self.num_epochs = int(job.training_config.get("num_epochs") or 1)
        self._is_stopping = is_stopping
        self.worker: Worker | None = None
        self.spawned = asyncio.Event()
        self.exited = asyncio.Event()
        self.done = asyncio.Event()
        self.cancel_requested = False
        self.lost = False
        """The worker vanished without an exit code (its node died): the job is to be resumed elsewhere."""
        self.last_error = ""
        self.result: ResultLine | None = None
        self._line_fields: dict = {}

    @property
    def pid(self) -> int | None:
        return self.worker.pid if self.worker is not None else None

    @property
    def memory(self) -> MemoryForensics:
        return self.worker.memory if self.worker is not None else MemoryForensics()

    def abandon(self) -> None:
        """The worker never started: nothing will wait on it."""
        self.spawned.set()
        self.exited.set()
        self.done.set()

    async def launch(self, job: Job, model_path: Path | None, download: bool = False) -> None:
        """Writes ``job.json`` and starts the worker (raises whatever stops it from starting)."""
        root = self.layout.root
        resume = self.resumed

        def prepare():
            root.mkdir(parents=True, exist_ok=True)
            job_file(job, self.settings, model_path, resume, download).write(self.layout.job_file)

        await asyncio.to_thread(prepare)
        self.worker = await self.executor.start(job, self.layout, worker_env(self.settings))

    def attach(self, worker: Worker, handled: int) -> None:
        """Follows a worker a previous trainer started (``Executor.reattach``), which handled its lines up to
        ``handled``: what they said about the outcome (a result, an error) is remembered again."""
        self.worker = worker
        for seq, raw in getattr(worker, "outcome_lines", []):
            line = parse_line(raw) if seq <= handled else None
            if isinstance(line, ResultLine):
                self.result = line
            elif isinstance(line, WorkerLine) and line.type == "error":
                self.last_error = line.message or self.last_error
        self.spawned.set()

    async def terminate(self, kill_after: float = KILL_AFTER_SECONDS) -> None:
        """SIGTERM to the worker, SIGKILL if it has not exited after ``kill_after`` s."""
        await self.spawned.wait()
        if self.worker is None or self.exited.is_set():
            return
        await self.worker.terminate(kill_after)
        await self.exited.wait()

    async def supervise(self) -> None:
        """Reads the worker's lines until it exits, then records the outcome."""
        worker = self.worker
        try:
            await asyncio.to_thread(self.events.open_file, self.job_id)
            async for seq, raw in worker.lines():
                self._line_fields = {"worker_seq": seq} if seq else {}
                if raw is None:
                    await self._append(self.job_id, EventType.WARNING, LINE_DROPPED)
                else:
                    try:
                        await self.handle(parse_line(raw))
                    except Exception:
                        log.exception("job %s: could not handle worker line %r", self.job_id, raw[:200])
                if self._line_fields:  # a line that made no event: its sequence is stored all the same
                    await self.events.update(self.job_id, **self._line_fields)
                    self._line_fields = {}
                await worker.handled(seq)
            if worker.detached:
                return  # the trainer is stopping; the next one follows the worker
            rc = await worker.wait()
            self.exited.set()
            await worker.release()
            await self.finish(rc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("job %s: supervision failed", self.job_id)
            try:
                await worker.release()
                current = (await self.events.get(self.job_id)).job_status
                if not current.is_terminal():
                    await self.events.transition(self.job_id, JobStatus.FAILED,
                                                 f"trainer lost track of the worker: {exc}")
            except Exception:
                log.exception("job %s: could not record the failure", self.job_id)
        finally:
            self.exited.set()
            self.events.close_file(self.job_id)

    async def _append(self, job_id: str, type: EventType, message: str = "", payload: dict | None = None,
                      **fields):
        """``events.append`` with the current line's sequence stored in the same transaction."""
        fields.update(self._line_fields)
        self._line_fields = {}
        return await self.events.append(job_id, type, message, payload, **fields)

    async def _transition(self, job_id: str, to: JobStatus, reason: str = "", **fields):
        fields.update(self._line_fields)
        self._line_fields = {}
        return await self.events.transition(job_id, to, reason, **fields)

    async def handle(self, line: WorkerLine | str | None) -> None:
        """Turns one worker line into a job event (and job fields)."""
        job_id, append = self.job_id, self._append
        if line is None:
            return
        if isinstance(line, str):
            await append(job_id, EventType.LOG, line)
            return
        message = line.message
        if isinstance(line, StatusLine):
            await self._worker_status(line.status, message)
        elif isinstance(line, StepLine):
            step, total, loss = line.step, line.total_steps, line.loss
            payload = {
                "epoch": line.epoch, "step": step, "total_steps": total, "loss": loss,
                "learning_rate": line.learning_rate, "examples_seen": line.examples_seen,
                "tokens_per_second": line.tokens_per_second, "progress": line.progress, "extra": line.extra,
            }
            fields = dict(current_step=step, progress=line.progress,
                          current_epoch=min(self.num_epochs, max(1, math.ceil(line.epoch - 1e-9))),
                          training_examples=line.examples_seen)
            if total:
                fields["total_steps"] = total
            if loss is not None:
                fields["loss"] = loss
            msg = message or (f"step {step}/{total} loss {loss:.4f}" if loss is not None else f"step {step}/{total}")
            await append(job_id, EventType.STEP, msg, payload, **fields)
        elif isinstance(line, CheckpointLine):
            payload = {"path": line.path, "step": line.step}
            await append(job_id, EventType.CHECKPOINT, message or f"checkpoint {line.path}", payload)
        elif isinstance(line, EvalLine):
            payload = {"phase": line.phase, "done": line.done, "total": line.total, "metrics": line.metrics}
            await append(job_id, EventType.EVAL, message or f"eval {line.phase} {line.done}/{line.total}", payload)
        elif isinstance(line, DataLine):
            examples, debates, total = line.training_examples, line.training_debates, line.total_steps
            fields = dict(dataset_examples=examples, training_debates=debates)
            if total:
                fields["total_steps"] = total
            await append(job_id, EventType.LOG,
                         message or f"training data ready: {examples} examples from {debates} debates, {total} steps",
                         {"training_examples": examples, "training_debates": debates, "total_steps": total}, **fields)
        elif isinstance(line, DownloadLine):
            await append(job_id, EventType.DOWNLOAD, message, line.payload())
        elif isinstance(line, ResultLine):
            self.result = line
            final = line.final_loss
            await append(job_id, EventType.LOG,
                         message or ("training finished" + (f": final loss {final:.4f}" if final is not None else "")),
                         final_loss=final)
        else:  # log, warning, error
            if line.type == "error":
                self.last_error = message or self.last_error
            await append(job_id, EventType(line.type), message)

    async def _worker_status(self, status: str, message: str) -> None:
        try:
            target = JobStatus(status)
        except ValueError:
            target = None
        if target not in (JobStatus.PREPARING, JobStatus.TRAINING):
            await self._append(self.job_id, EventType.WARNING,
                                     f"the worker announced an unexpected status {status!r}")
            return
        current = (await self.events.get(self.job_id)).job_status
        resumed_preparing = self.resumed and target is JobStatus.PREPARING and current is JobStatus.TRAINING
        if current is target or resumed_preparing:
            # A resumed worker prepares again (loads the model, reads its saved data) while the job stays
            # in training: the status machine has no way back, and the job is still on its way.
            if message:
                await self._append(self.job_id, EventType.LOG, message)
        elif current.can_move_to(target):
            await self._transition(self.job_id, target, message)
        else:
            await self._append(self.job_id, EventType.WARNING,
                                     f"the worker announced {target.value} while the job is {current.value}")

    async def finish(self, rc: int | None) -> None:
        """Decides the job's outcome from how its worker ended (``rc`` ``LOST``: it vanished, its node died)."""
        job_id, events = self.job_id, self.events
        status = (await events.get(job_id)).job_status
        if status.is_terminal():
            return
        if rc == 0 and self.result is not None:
            # Finished, even if a cancel or the trainer's stop came too late to matter.
            if status is JobStatus.TRAINING:
                await events.transition(job_id, JobStatus.COMPLETED, "", progress=1.0)
            else:
                await events.transition(job_id, JobStatus.FAILED,
                                        f"the worker finished while the job was still {status.value}")
            return
        if self._is_stopping() and not self.cancel_requested:
            # The trainer is stopping: the job is left for ``recover`` at the next start.
            await events.update(job_id, pid=None)
            ended = "was lost" if rc is LOST else f"ended (exit code {rc})"
            await events.append(job_id, EventType.LOG, f"the trainer stopped; the worker {ended}")
            return
        if self.cancel_requested:
            await events.transition(job_id, JobStatus.CANCELLED, "cancelled by user")
            return
        if rc is LOST:
            self.lost = True  # the job manager resumes the job from its last checkpoint
            return
        tail = ""
        if rc < 0:
            self.memory.oom_kills_at_exit = cgroup_oom_kills()
            self.memory.memory_limit = memory_limit()
        elif rc > 0 and not self.last_error:
            tail = await asyncio.to_thread(last_log_line, self.layout.worker_log)
        await events.transition(job_id, JobStatus.FAILED, classify_exit(rc, self.memory, self.last_error, tail))
