"""The export manager: starts one process per export (``python -m services.trainer.model_export``), follows its
progress lines, lets clients watch and cancel it, and keeps what each export ended as.

Progress goes on an export-specific stream (``watch``), not on the job's event log: a completed job's event
log is closed (its watch ends at the terminal status), and an export may run any number of times after it.
Each run's events are numbered from 1. The outcome of every run (status, files, checks, error) is kept in the
job's ``export/manifest.json`` (written atomically), so the list survives a restart; an export that was running
when the trainer stopped is listed as cancelled, and its half-written ``.<name>.tmp`` files are removed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.trainer.model_export import EXPORT_DIR, KINDS
from services.trainer.orm import JobStatus

log = logging.getLogger(__name__)

KILL_AFTER_SECONDS = 5.0
MAX_LINE_BYTES = 1 << 20
MANIFEST = "manifest.json"
RUNNING, COMPLETED, FAILED, CANCELLED = "running", "completed", "failed", "cancelled"
STOPPED_REASON = "the trainer stopped while the export ran"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ExportEventRecord:
    sequence: int
    time: datetime
    phase: str
    done: int
    total: int
    progress: float
    message: str
    status: str


@dataclass
class ExportState:
    job_id: str
    kind: str
    status: str = RUNNING
    progress: float = 0.0
    phase: str = ""
    error: str = ""
    files: list[str] = field(default_factory=list)
    size_bytes: int = 0
    checks: dict = field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    events: list[ExportEventRecord] = field(default_factory=list)
    changed: asyncio.Condition | None = None
    proc: asyncio.subprocess.Process | None = None
    cancel_requested: bool = False
    done: asyncio.Event | None = None

    def to_manifest(self) -> dict:
        return {"status": self.status, "progress": self.progress, "phase": self.phase, "error": self.error,
                "files": self.files, "size_bytes": self.size_bytes, "checks": self.checks,
                "started_at": self.started_at.isoformat() if self.started_at else None,
                "finished_at": self.finished_at.isoformat() if self.finished_at else None}

    @classmethod
    def from_manifest(cls, job_id: str, kind: str, raw: dict) -> ExportState:
        def ts(value):
            try:
                return datetime.fromisoformat(value) if value else None
            except (TypeError, ValueError):
                return None

        status = raw.get("status") if raw.get("status") in (COMPLETED, FAILED, CANCELLED) else CANCELLED
        error = str(raw.get("error") or "")
        if raw.get("status") == RUNNING:
            error = STOPPED_REASON
        return cls(job_id, kind, status=status, progress=float(raw.get("progress") or 0.0),
                   phase=str(raw.get("phase") or ""), error=error,
                   files=[str(f) for f in raw.get("files") or []], size_bytes=int(raw.get("size_bytes") or 0),
                   checks=raw.get("checks") if isinstance(raw.get("checks"), dict) else {},
                   started_at=ts(raw.get("started_at")), finished_at=ts(raw.get("finished_at")) or _now())


def remove_temporaries(export_dir: Path) -> None:
    """Deletes the ``.<name>.tmp`` files and folders an ended export process left."""
    try:
        children = list(export_dir.iterdir())
    except OSError:
        return
    for child in children:
        if child.name.startswith(".") and child.name.endswith(".tmp"):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class ExportManager:
    """Exports of completed jobs: one process each, at most one running per job."""

    def __init__(self, jobs) -> None:
        self.jobs = jobs  # the JobManager: job rows and folders
        self._states: dict[tuple[str, str], ExportState] = {}
        self._loaded: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        self._stopping = False

    # -- state -----------------------------------------------------------------------------------------------

    def _export_dir(self, job_id: str) -> Path:
        return self.jobs.job_dir(job_id) / EXPORT_DIR

    def _load(self, job_id: str) -> None:
        """Reads the job's manifest once (after a restart: the exports of a previous trainer)."""
        if job_id in self._loaded:
            return
        self._loaded.add(job_id)
        export_dir = self._export_dir(job_id)
        try:
            raw = json.loads((export_dir / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        stale = False
        for kind in KINDS:
            entry = raw.get(kind) if isinstance(raw, dict) else None
            if isinstance(entry, dict) and (job_id, kind) not in self._states:
                self._states[(job_id, kind)] = ExportState.from_manifest(job_id, kind, entry)
                stale |= entry.get("status") == RUNNING
        if stale:
            remove_temporaries(export_dir)
            self._save(job_id)

    def _save(self, job_id: str) -> None:
        export_dir = self._export_dir(job_id)
        export_dir.mkdir(parents=True, exist_ok=True)
        data = {kind: s.to_manifest() for (jid, kind), s in self._states.items() if jid == job_id}
        tmp = export_dir / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
        os.replace(tmp, export_dir / MANIFEST)

    async def _state(self, job_id: str, kind: str) -> ExportState:
        await self.jobs.get(job_id)  # NotFound for an unknown job
        self._load(job_id)
        state = self._states.get((job_id, kind))
        if state is None:
            raise NotFound(f"job {job_id} has no {kind} export (start one first)")
        return state

    async def list(self, job_id: str) -> list[ExportState]:
        await self.jobs.get(job_id)
        self._load(job_id)
        return [self._states[(job_id, k)] for k in KINDS if (job_id, k) in self._states]

    def running(self) -> list[ExportState]:
        return [s for s in self._states.values() if s.status == RUNNING]

    # -- start, cancel, watch --------------------------------------------------------------------------------

    async def start(self, job_id: str, kind: str) -> ExportState:
        if kind not in KINDS:
            raise InvalidArgument(f"must be one of {', '.join(KINDS)}", field="kind")
        job = await self.jobs.get(job_id)
        if job.job_status != JobStatus.COMPLETED:
            raise FailedPrecondition(f"job {job_id} is {job.job_status.value}; only a completed job can be exported")
        self._load(job_id)
        for (jid, other), state in self._states.items():
            if jid == job_id and state.status == RUNNING:
                if other == kind:
                    raise AlreadyExists(f"the {kind} export of job {job_id} is already running")
                raise FailedPrecondition(f"the {other} export of job {job_id} is running; wait for it or cancel it")
        job_dir = self.jobs.job_dir(job_id)
        export_dir = job_dir / EXPORT_DIR
        state = ExportState(job_id, kind, started_at=_now(), changed=asyncio.Condition(), done=asyncio.Event())
        self._states[(job_id, kind)] = state
        try:
            export_dir.mkdir(parents=True, exist_ok=True)
            remove_temporaries(export_dir)
            env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
            with open(export_dir / f"{kind}.log", "wb") as log_file:  # noqa: ASYNC230 - a local file, opened once
                state.proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "services.trainer.model_export", str(job_dir), kind,
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=log_file,
                    start_new_session=True, env=env, limit=MAX_LINE_BYTES)
        except Exception as exc:
            log.exception("could not start the %s export of %s", kind, job_id)
            await self._finish(state, FAILED, f"could not start the export process: {exc}")
            return state
        await self._event(state, "status", 0, 0, f"export started (pid {state.proc.pid})")
        self._save(job_id)
        task = asyncio.get_running_loop().create_task(self._supervise(state))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if state.cancel_requested:  # a cancel arrived while the process was being spawned
            task2 = asyncio.get_running_loop().create_task(self._terminate(state))
            self._tasks.add(task2)
            task2.add_done_callback(self._tasks.discard)
        return state

    async def cancel(self, job_id: str, kind: str) -> ExportState:
        if kind not in KINDS:
            raise InvalidArgument(f"must be one of {', '.join(KINDS)}", field="kind")
        state = await self._state(job_id, kind)
        if state.status != RUNNING:
            raise FailedPrecondition(f"the {kind} export of job {job_id} is {state.status}; only a running export "
                                     "can be cancelled")
        state.cancel_requested = True
        await self._terminate(state)
        await state.done.wait()
        return state

    async def watch(self, job_id: str, kind: str, after: int = 0) -> AsyncIterator[ExportState | ExportEventRecord]:
        if kind not in KINDS:
            raise InvalidArgument(f"must be one of {', '.join(KINDS)}", field="kind")
        state = await self._state(job_id, kind)
        yield state
        seq = max(0, after)
        while True:
            while seq < len(state.events):
                seq += 1
                yield state.events[seq - 1]
            if state.status != RUNNING or state.changed is None:
                return
            seen = seq
            async with state.changed:
                await state.changed.wait_for(lambda seen=seen: len(state.events) > seen or state.status != RUNNING)

    async def shutdown(self) -> None:
        self._stopping = True
        for state in self.running():
            state.cancel_requested = True
            await self._terminate(state)
        for state in list(self._states.values()):
            if state.done is not None and state.status == RUNNING:
                try:
                    await asyncio.wait_for(state.done.wait(), KILL_AFTER_SECONDS + 5)
                except TimeoutError:
                    pass

    # -- the process -----------------------------------------------------------------------------------------

    async def _terminate(self, state: ExportState) -> None:
        proc = state.proc
        if proc is None or proc.returncode is not None:
            return
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), KILL_AFTER_SECONDS)
        except TimeoutError:
            _signal_group(proc.pid, signal.SIGKILL)

    async def _event(self, state: ExportState, phase: str, done: int, total: int, message: str) -> None:
        state.events.append(ExportEventRecord(len(state.events) + 1, _now(), phase, done, total, state.progress,
                                              message[:4000], state.status))
        if state.changed is not None:
            async with state.changed:
                state.changed.notify_all()

    async def _supervise(self, state: ExportState) -> None:
        proc = state.proc
        result: dict | None = None
        error = ""
        try:
            while True:
                try:
                    line = await proc.stdout.readline()
                except ValueError:
                    continue  # a line over 1 MiB: dropped
                if not line:
                    break
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(msg, dict):
                    continue
                kind = msg.get("type")
                if kind == "progress":
                    state.phase = str(msg.get("phase") or state.phase)
                    state.progress = max(state.progress, min(1.0, float(msg.get("progress") or 0.0)))
                    await self._event(state, state.phase, int(msg.get("done") or 0), int(msg.get("total") or 0),
                                      str(msg.get("message") or ""))
                elif kind == "warning":
                    await self._event(state, "warning", 0, 0, str(msg.get("message") or ""))
                elif kind == "result":
                    result = msg
                elif kind == "error":
                    error = str(msg.get("message") or "the export failed")
            rc = await proc.wait()
        except asyncio.CancelledError:
            _signal_group(proc.pid, signal.SIGKILL)
            raise
        except Exception as exc:
            log.exception("export %s of %s: supervision failed", state.kind, state.job_id)
            _signal_group(proc.pid, signal.SIGKILL)
            rc, error = -1, f"the trainer lost track of the export process: {exc}"
        _signal_group(proc.pid, signal.SIGKILL)  # stragglers in its group
        if state.cancel_requested:
            await self._finish(state, CANCELLED, "cancelled" if not self._stopping else STOPPED_REASON)
        elif rc == 0 and result is not None:
            root = self.jobs.job_dir(state.job_id)
            state.files = [str(f) for f in result.get("files") or []]
            state.size_bytes = sum((root / f).stat().st_size for f in state.files if (root / f).is_file())
            state.checks = result.get("checks") if isinstance(result.get("checks"), dict) else {}
            state.progress = 1.0
            if state.kind != "merged" and "merged" in state.checks:
                self._record_merged(state, root)
            await self._finish(state, COMPLETED, "")
        else:
            await self._finish(state, FAILED, error or f"the export process exited with code {rc}")

    def _record_merged(self, state: ExportState, root: Path) -> None:
        """A GGUF export that merged first also leaves a complete merged export: list it as one."""
        files = [f for f in state.files if f.startswith(f"{EXPORT_DIR}/merged/")]
        state.files = [f for f in state.files if f not in files]
        merged = self._states.get((state.job_id, "merged"))
        if merged is not None and merged.status == RUNNING:
            return
        self._states[(state.job_id, "merged")] = ExportState(
            state.job_id, "merged", status=COMPLETED, progress=1.0, phase="merge", files=files,
            size_bytes=sum((root / f).stat().st_size for f in files if (root / f).is_file()),
            checks={"merged": state.checks.pop("merged")}, started_at=state.started_at, finished_at=_now())
        state.size_bytes = sum((root / f).stat().st_size for f in state.files if (root / f).is_file())

    async def _finish(self, state: ExportState, status: str, error: str) -> None:
        if status != COMPLETED:
            remove_temporaries(self._export_dir(state.job_id))
        state.status, state.error, state.finished_at = status, error, _now()
        message = {COMPLETED: f"export completed: {', '.join(state.files)}", CANCELLED: "export cancelled",
                   FAILED: f"export failed: {error}"}[status]
        await self._event(state, "status", 0, 0, message)
        try:
            self._save(state.job_id)
        except OSError:
            log.exception("could not write the export manifest of %s", state.job_id)
        if state.done is not None:
            state.done.set()
