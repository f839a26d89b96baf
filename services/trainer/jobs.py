"""The job manager: the use cases the servicer calls — create, start, cancel, get, list, metrics, artifacts,
watch — plus recovery at start-up, scheduling of worker slots and shutdown.

The work is done by its parts: ``supervisor`` (one worker process per running job), ``eventlog`` (record,
persist, publish, replay and repair each job's events), ``artifacts`` (``JobLayout``, the listing and path
safety) and ``metrics`` (``metrics.json``). Store calls go through ``EventLog.calls``, off the event loop.
The training itself never runs on this process's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

from services.auth import policy
from services.common.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from services.trainer.artifacts import (
    Artifacts,
    JobLayout,
    list_artifacts,
    resolve_artifact,
)
from services.trainer.config import TrainerSettings
from services.trainer.eventlog import EventLog
from services.trainer.events import EventHub, EventType, JobEventRecord
from services.trainer.metrics import JobMetrics, job_metrics
from services.trainer.orm import RUNNING_STATUSES, Job, JobStatus
from services.trainer.store import JobStore
from services.trainer.supervisor import (
    KILL_AFTER_SECONDS,
    WorkerSupervisor,
    is_our_worker,
    stop_orphan,
)

log = logging.getLogger(__name__)

RESTARTED_REASON = "trainer restarted while the job was running"
CRASH_PREFIX = "the trainer stopped unexpectedly"
"""How the event that records a crash-restart of a running job begins (``recover`` counts them)."""
LOST_PREFIX = "the worker was lost (its node died)"
"""How the event that records a lost worker begins (``_worker_lost`` counts them)."""
RETRY_SECONDS = 2.0
"""How often the scheduler looks again for room on the cluster while the next job does not fit."""
NAME_MAX = 200
WEIGHTS_FILE = "adapter_model.safetensors"
_VERTICAL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def resume_point(layout: JobLayout, job: Job) -> tuple[str, dict]:
    """Where a job that is resumed continues (its newest checkpoint), for its event, and the job fields that
    say so (no worker, the checkpoint's step and progress)."""
    found = layout.latest_checkpoint()
    step = found[0] if found else 0
    total = job.total_steps or 0
    where = (f"from {found[1].name} (step {step}" + (f" of {total})" if total else ")")
             if found else "from the beginning (no checkpoint yet)")
    return where, dict(pid=None, current_step=step, progress=min(1.0, step / total) if total else 0.0)


class JobManager:
    """Jobs: their lifecycle, their worker processes, their event logs and watchers."""

    def __init__(self, settings: TrainerSettings, store: JobStore, hub: EventHub | None = None) -> None:
        self.settings = settings
        self.store = store
        self.hub = hub or EventHub()
        self.jobs_dir = Path(settings.jobs_dir).absolute()
        from services.auth.authn import Authenticator
        from services.auth.store import KeyStore

        self.auth = Authenticator(KeyStore(settings.auth_database_url), settings.api_token)
        """Who may call (the server's interceptor) and the keys store the audit log goes to."""
        self.models_dir = Path(settings.models_dir).absolute()
        self.data_root = Path(settings.data_root).absolute()
        self.max_concurrent = max(1, int(settings.max_concurrent_jobs))
        from services.trainer.hub import HubAccess

        self.hub_access = HubAccess.from_settings(settings)
        """How to reach the model hub; None when hub access is off."""
        from services.trainer.model_admin import ModelAdmin

        self.model_admin = ModelAdmin(self.models_dir, self.hub_access,
                                      lambda: self._calls.read(self.store.with_status, *RUNNING_STATUSES))
        self.events = EventLog(store, self.hub, self.layout)
        from services.trainer.executors import make_executor

        self.executor = make_executor(settings)
        """Where the workers run (``settings.executor``: this machine, or a Ray cluster)."""
        self._calls = self.events.calls
        self._runs: dict[str, WorkerSupervisor] = {}
        self._schedule_lock = asyncio.Lock()
        self._stopping = False
        self._background: set[asyncio.Task] = set()
        self._preflight_lock = asyncio.Lock()
        self._resume: list[str] = []
        """Jobs ``recover`` found running, to relaunch (before any queued job) as slots free up."""
        self._attached: list[WorkerSupervisor] = []
        """Workers ``recover`` found still running on the cluster, to follow once the loop runs."""
        self._retry: asyncio.TimerHandle | None = None

    # -- start and stop ----------------------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """Deals with the jobs a previous trainer process left in PREPARING/TRAINING, before any call can see
        them (blocking: it runs at start-up, before the server serves): each resumes from its newest complete
        checkpoint (from the beginning when it has none), keeping its id, status and event log. A worker the
        previous trainer left orphaned (it was SIGKILLed) is stopped first with SIGTERM, so it checkpoints its
        last step. A job whose trainer crashed more than ``max_resumes`` times while it ran fails instead (it
        may be what crashes it). Returns the job ids."""
        from services.trainer.preflight import remove_leftovers

        remove_leftovers(self.jobs_dir)
        handled = []
        limit = max(0, int(self.settings.max_resumes))
        for job in self.store.with_status(*RUNNING_STATUSES):
            layout = self.layout(job.id)
            if self.executor.reattaches:
                worker = self.executor.reattach(job, layout)
                if worker is not None:
                    self.events.sync_file(job.id)
                    self._reattach(job, worker)
                    handled.append(job.id)
                    continue
                crashed = False  # the worker ran on the cluster: the trainer's crash did not stop it
            else:
                crashed = job.pid is not None  # a trainer that stopped cleanly cleared the pid of its workers
                if job.pid and is_our_worker(job.pid, layout.root):
                    log.warning("stopping orphaned worker pid %s of %s", job.pid, job.id)
                    stop_orphan(job.pid, KILL_AFTER_SECONDS)
            self.events.sync_file(job.id)
            layout.remove_temporaries()
            handled.append(job.id)
            crashes = self.store.count_events(job.id, EventType.WARNING, CRASH_PREFIX) + (1 if crashed else 0)
            if crashed and crashes > limit:
                self.events.transition_now(job.id, JobStatus.FAILED,
                                           f"{RESTARTED_REASON}, {crashes} times: not resuming it again "
                                           f"(TRAINER_MAX_RESUMES is {limit})", pid=None)
                log.warning("job %s: the trainer crashed %d times while it ran: failed", job.id, crashes)
                continue
            where, fields = resume_point(layout, job)
            if crashed:
                text = (f"{CRASH_PREFIX} while the job was {job.status} (restart {crashes} of at most {limit}); "
                        f"resuming {where}")
            else:
                text = f"the trainer restarted while the job was {job.status}; resuming {where}"
            self.events.append_now(job.id, EventType.WARNING if crashed else EventType.LOG, text, **fields)
            self._resume.append(job.id)
            log.warning("job %s was %s when the trainer stopped: resuming %s", job.id, job.status, where)
        return handled

    def _reattach(self, job: Job, worker) -> None:
        """Follows the worker of ``job`` that a previous trainer left running on the cluster."""
        run = WorkerSupervisor(job, self.layout(job.id), self.events, self.settings, resumed=True,
                               is_stopping=lambda: self._stopping, executor=self.executor)
        run.attach(worker, int(job.worker_seq or 0))
        self._runs[job.id] = run
        self._attached.append(run)
        self.events.append_now(job.id, EventType.LOG,
                               f"the trainer restarted; the worker still runs on the cluster ({worker.where}): "
                               "following it again")
        log.warning("job %s: reattached to its worker on the cluster (%s)", job.id, worker.where)

    def serving_at(self, host: str, port: int) -> None:
        """Where this trainer's gRPC server listens (cluster workers send their lines there)."""
        serving_at = getattr(self.executor, "serving_at", None)
        if serving_at is not None:
            serving_at(host, port)

    def start_background(self) -> None:
        """Follows the workers found still running, then starts the jobs whose start was requested before the
        trainer (re)started."""
        for run in self._attached:
            self._spawn_task(self._supervise(run))
        self._attached.clear()
        self._spawn_task(self._schedule())

    async def shutdown(self, kill_after: float = KILL_AFTER_SECONDS) -> None:
        """Ends every worker (SIGTERM to its group, SIGKILL after ``kill_after`` s) and waits for them. Their
        jobs stay in their running status for ``recover`` at the next start."""
        self._stopping = True
        if self._retry is not None:
            self._retry.cancel()
        runs = list(self._runs.values())
        if self.executor.reattaches:
            # Cluster workers keep running; the next trainer follows them (``recover``).
            for run in runs:
                if run.worker is not None:
                    run.worker.detach()
                else:
                    await run.terminate(kill_after)
        else:
            await asyncio.gather(*(r.terminate(kill_after) for r in runs), return_exceptions=True)
        await asyncio.gather(*(r.done.wait() for r in runs), return_exceptions=True)
        for task in list(self._background):
            task.cancel()
        await asyncio.to_thread(self.executor.close)

    # -- queries -----------------------------------------------------------------------------------------------

    def layout(self, job_id: str) -> JobLayout:
        return JobLayout(self.jobs_dir / job_id)

    def job_dir(self, job_id: str) -> Path:
        return self.layout(job_id).root

    async def get(self, job_id: str) -> Job:
        return await self._calls.read(self.store.get, job_id)

    async def visible(self, job_id: str) -> Job:
        """The job, if the caller (``services.auth.policy.current()``) may see it: ``NotFound`` with the message
        of an unknown id otherwise (a user never learns that another user's job exists)."""
        job = await self.get(job_id)
        policy.check_visible(job.owner, f"job {job_id!r} not found")
        return job

    async def list(self, vertical: str = "", status: JobStatus | None = None, limit: int = 0,
                   offset: int = 0, owner: str | None = None) -> tuple[list[Job], int]:
        return await self._calls.read(self.store.list, vertical, status, limit, offset, owner)

    async def counts(self, owner: str | None = None) -> dict[str, int]:
        return await self._calls.read(self.store.counts, owner)

    async def list_models(self):
        from services.trainer import models

        return await asyncio.to_thread(models.list_models, self.models_dir, self.hub_access is not None)

    def _remote(self):
        """The hub lookup ``models.resolve_model`` uses for ids found nowhere here; None when hub access is off."""
        if self.hub_access is None:
            return None
        from services.trainer import hub

        access = self.hub_access
        return lambda model_id: hub.remote_model(model_id, access)

    def running_pid(self, job_id: str) -> int | None:
        run = self._runs.get(job_id)
        return run.pid if run is not None else None

    # -- create / start / cancel -------------------------------------------------------------------------------

    async def create(self, name: str, vertical: str, base_model: str, raw_config: dict,
                     owner: str | None = None) -> Job:
        """Validates everything, then creates a QUEUED job owned by ``owner``. Any bad field:
        ``InvalidArgument`` listing every one, and nothing is written."""
        fields = await asyncio.to_thread(self._validate, name, vertical, base_model, raw_config)
        await self._check_warm_start(fields["base_model"], fields["training_config"])
        job = await self.events.create(**fields, owner=owner)
        log.info("created %s (%s) on %s", job.id, job.name, job.base_model)
        return job

    async def clone(self, job_id: str, name: str, overrides: dict, owner: str | None = None) -> Job:
        """A new QUEUED job with the config of ``job_id``, the fields of ``overrides`` replacing its values
        (validated like ``create``). An empty ``name``: the source's name with " (copy)", numbered if taken."""
        source = await self.get(job_id)
        config = {**(source.training_config or {}), **overrides}
        if not (name or "").strip():
            name = await self._copy_name(source.name, owner)
        return await self.create(name, source.vertical or "", source.base_model, config, owner)

    async def _copy_name(self, name: str, owner: str | None = None) -> str:
        jobs, _ = await self.list(owner=owner)
        taken = {j.name for j in jobs}
        base = name[: NAME_MAX - 16]
        candidate, n = f"{base} (copy)", 1
        while candidate in taken:
            n += 1
            candidate = f"{base} (copy {n})"
        return candidate

    async def _check_warm_start(self, base_model: str, config: dict) -> None:
        """A warm start's source: ``NotFound`` for an unknown job, ``FailedPrecondition`` for an adapter of a
        job that did not complete, ``InvalidArgument`` for an unknown checkpoint or an adapter of another shape."""
        source_id, step = config.get("init_from_job"), config.get("init_from_checkpoint")
        if not source_id:
            if step is not None:
                raise InvalidArgument("needs training_config.init_from_job (the job whose checkpoint to start "
                                      "from)", field="training_config.init_from_checkpoint")
            return
        try:
            source = await self.visible(source_id)
        except NotFound:
            raise NotFound(f"training_config.init_from_job: job {source_id!r} not found") from None
        violations = []
        if source.base_model != base_model:
            violations.append(FieldViolation("training_config.init_from_job",
                                             f"job {source_id} trained {source.base_model}, not {base_model}: "
                                             "its adapter does not fit this base model"))
        for name in ("lora_r", "target_modules"):
            theirs, ours = (source.training_config or {}).get(name), config.get(name)
            if theirs != ours:
                violations.append(FieldViolation(f"training_config.{name}",
                                                 f"must equal that of job {source_id} ({theirs}) to start from its "
                                                 f"adapter (it is {ours})"))
        if violations:
            raise InvalidArgument(violations)
        layout = self.layout(source_id)
        if step is None:
            if source.job_status is not JobStatus.COMPLETED:
                raise FailedPrecondition(f"training_config.init_from_job: job {source_id} is {source.status}: only "
                                         "a completed job's adapter can be started from (or name one of its "
                                         "checkpoints in training_config.init_from_checkpoint)")
            folder = layout.adapter_dir
        else:
            folder = layout.checkpoint_dir(step)
        if not await asyncio.to_thread((folder / WEIGHTS_FILE).is_file):
            if step is None:
                raise FailedPrecondition(f"training_config.init_from_job: job {source_id} has no adapter "
                                         f"({folder.name}/{WEIGHTS_FILE} is missing)")
            steps = await asyncio.to_thread(layout.checkpoint_steps)
            raise InvalidArgument(f"job {source_id} has no checkpoint at step {step} (its checkpoints: "
                                  f"{', '.join(map(str, steps)) or 'none'})",
                                  field="training_config.init_from_checkpoint")

    async def preflight(self, name: str, vertical: str, base_model: str, raw_config: dict) -> tuple[dict, dict]:
        """A dry run of ``create``: validates the same way (the name may be empty), then a worker process in
        ``--preflight`` mode fetches and encodes the data and times a few training steps (one preflight at a
        time). Nothing is created. Returns (the config the job would store, the worker's answer)."""
        from services.trainer.preflight import run_preflight

        fields = await asyncio.to_thread(self._validate, (name or "").strip() or "preflight", vertical,
                                         base_model, raw_config)
        await self._check_warm_start(fields["base_model"], fields["training_config"])
        async with self._preflight_lock:
            return fields["training_config"], await run_preflight(self, fields)

    def _validate(self, name: str, vertical: str, base_model: str, raw_config: dict) -> dict:
        """The new job's fields (blocking: it reads the model folder and the dataset)."""
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
            model = models.resolve_model(self.models_dir, base_model, remote=self._remote())
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
        return dict(name=name, vertical=vertical, base_model=model.id, training_config=config)

    async def start(self, job_id: str) -> Job:
        """Queues a QUEUED job to run; it starts now if a slot is free, else when one frees, in order."""
        job = await self.get(job_id)
        if job.job_status is not JobStatus.QUEUED:
            raise FailedPrecondition(f"job {job_id} is {job.status}: only a queued job can be started")
        if self._stopping:
            raise FailedPrecondition("the trainer is shutting down")
        if job.start_requested_at is None:
            from services.trainer.orm import utcnow

            await self.events.update(job_id, start_requested_at=utcnow())
            await self._schedule()
            job = await self.get(job_id)
            if job.job_status is JobStatus.QUEUED:
                waiting = [j.id for j in await self._calls.read(self.store.waiting)]
                position = waiting.index(job_id) + 1 if job_id in waiting else 0
                await self.events.append(job_id, EventType.LOG,
                                         f"waiting for {self.executor.waiting_reason(job)} "
                                         f"({len(self._runs)} of {self.max_concurrent} "
                                         f"busy; position {position} in the queue)")
        return await self.get(job_id)

    async def cancel(self, job_id: str) -> Job:
        """Cancels a non-terminal job: a queued one at once, a running one by ending its worker (SIGTERM to
        its process group, SIGKILL after 5 s). Returns the job, CANCELLED."""
        job = await self.get(job_id)
        if job.job_status.is_terminal():
            raise FailedPrecondition(f"job {job_id} is {job.status}: it cannot be cancelled")
        run = self._runs.get(job_id)
        if run is None:
            await self.executor.unreserve(job_id)  # room the job was waiting for on the cluster
            return await self.events.transition(job_id, JobStatus.CANCELLED, "cancelled by user",
                                                start_requested_at=None)
        run.cancel_requested = True
        await run.spawned.wait()
        await run.terminate(KILL_AFTER_SECONDS)
        await run.done.wait()
        job = await self.get(job_id)
        if job.job_status is not JobStatus.CANCELLED:
            raise FailedPrecondition(f"job {job_id} is {job.status}: it ended before it could be cancelled")
        return job

    # -- metrics, artifacts, watching --------------------------------------------------------------------------

    async def metrics(self, job_id: str) -> JobMetrics:
        job = await self.get(job_id)
        if job.job_status is not JobStatus.COMPLETED:
            raise FailedPrecondition(f"job {job_id} is {job.status}: metrics exist only for a completed job")
        return await asyncio.to_thread(job_metrics, job, self.layout(job_id).metrics_file)

    async def artifacts(self, job_id: str) -> Artifacts:
        """Every regular file under the job folder (symlinks are not followed or listed)."""
        await self.get(job_id)
        return await asyncio.to_thread(list_artifacts, job_id, self.layout(job_id))

    async def artifact_path(self, job_id: str, name: str) -> Path:
        """The file ``name`` (as ``artifacts`` lists it) of the job. ``InvalidArgument`` for a name that tries
        to leave the folder; ``NotFound`` for anything that is not a regular file inside it."""
        await self.get(job_id)
        return await asyncio.to_thread(resolve_artifact, job_id, self.layout(job_id), name)

    def watch(self, job_id: str, after_sequence: int = 0) -> AsyncIterator[Job | JobEventRecord]:
        """The job's snapshot, then its events after ``after_sequence`` until it ends (``EventLog.watch``)."""
        return self.events.watch(job_id, after_sequence)

    # -- scheduling and workers --------------------------------------------------------------------------------

    def _spawn_task(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _schedule(self) -> None:
        """Launches the jobs to resume, then the waiting jobs, oldest request first, while slots are free and
        the executor has room (on a Ray cluster: the resources the next job asks for; when they are not there,
        every job waits, in order, and the scheduler looks again in ``RETRY_SECONDS``)."""
        async with self._schedule_lock:
            while not self._stopping and len(self._runs) < self.max_concurrent:
                if self._resume:
                    job = await self.get(self._resume[0])
                    if job.job_status not in RUNNING_STATUSES:  # cancelled meanwhile
                        self._resume.pop(0)
                        continue
                else:
                    waiting = await self._calls.read(self.store.waiting)
                    if not waiting:
                        return
                    job = waiting[0]
                if not await self.executor.reserve(job):
                    self._retry_later()
                    return
                if self._resume and self._resume[0] == job.id:
                    self._resume.pop(0)
                    await self._launch(job, resume=True)
                else:
                    await self._launch(job)

    def _retry_later(self) -> None:
        """Looks for room again in ``RETRY_SECONDS`` (once, however many times it is asked meanwhile)."""
        if self._retry is not None:
            return

        def retry() -> None:
            self._retry = None
            if not self._stopping:
                self._spawn_task(self._schedule())

        self._retry = asyncio.get_running_loop().call_later(RETRY_SECONDS, retry)

    async def _launch(self, job: Job, resume: bool = False) -> None:
        """Starts the job's worker. ``resume``: the job is already running (``recover`` found it); its worker
        continues from the newest checkpoint and the job keeps its status."""
        from services.trainer import models

        # Registered before the first await: a cancel from now on finds the run and waits for it.
        run = WorkerSupervisor(job, self.layout(job.id), self.events, self.settings, resumed=resume,
                               is_stopping=lambda: self._stopping, executor=self.executor)
        self._runs[job.id] = run
        try:
            model = await asyncio.to_thread(models.resolve_model, self.models_dir, job.base_model, self._remote())
        except (InvalidArgument, FailedPrecondition) as exc:
            self._runs.pop(job.id, None)
            await self.executor.unreserve(job.id)
            try:
                await self.events.transition(job.id, JobStatus.FAILED, f"base model unavailable: {exc.message}",
                                             start_requested_at=None)
            finally:
                run.abandon()
            return
        try:
            if not resume:
                await self.events.transition(job.id, JobStatus.PREPARING, "worker starting")
            # No folder yet (hub access on): the worker downloads it into its place while preparing.
            download = model.path is None
            await run.launch(job, model.path or self.models_dir / models.folder_name(model.id), download=download)
        except Exception as exc:
            log.exception("could not start the worker of %s", job.id)
            self._runs.pop(job.id, None)
            await self.executor.unreserve(job.id)
            run.abandon()
            current = (await self.get(job.id)).job_status
            if not current.is_terminal():
                await self.events.transition(job.id, JobStatus.FAILED, f"could not start the worker: {exc}")
            return
        await self.events.update(job.id, pid=run.pid, worker_attempt=run.worker.attempt, worker_seq=0)
        await self.events.append(job.id, EventType.LOG, f"worker started ({run.worker.where})")
        log.info("job %s: worker started (%s)", job.id, run.worker.where)
        run.spawned.set()
        self._spawn_task(self._supervise(run))
        if run.cancel_requested:
            self._spawn_task(run.terminate(KILL_AFTER_SECONDS))

    async def _supervise(self, run: WorkerSupervisor) -> None:
        try:
            await run.supervise()
            if run.lost and not self._stopping:
                await self._worker_lost(run.job_id)
        finally:
            self._runs.pop(run.job_id, None)
            run.done.set()
            if not self._stopping:
                self._spawn_task(self._schedule())

    async def _worker_lost(self, job_id: str) -> None:
        """The worker vanished with its node: the job resumes from its newest checkpoint on a node that is still
        there (before any queued job), as after a trainer crash; after ``max_resumes`` losses it fails."""
        limit = max(0, int(self.settings.max_resumes))
        layout = self.layout(job_id)
        losses = await self._calls.read(self.store.count_events, job_id, EventType.WARNING, LOST_PREFIX) + 1
        job = await self.get(job_id)
        if losses > limit:
            await self.events.transition(job_id, JobStatus.FAILED,
                                         f"{LOST_PREFIX}, {losses} times: not resuming it again "
                                         f"(TRAINER_MAX_RESUMES is {limit})", pid=None)
            return
        where, fields = await asyncio.to_thread(resume_point, layout, job)
        await asyncio.to_thread(layout.remove_temporaries)
        await self.events.append(job_id, EventType.WARNING,
                                 f"{LOST_PREFIX} while the job was {job.status} (resume {losses} of at most {limit}); "
                                 f"resuming {where} on a node that is still there", **fields)
        log.warning("job %s: its worker was lost with its node; resuming %s", job_id, where)
        self._resume.insert(0, job_id)
