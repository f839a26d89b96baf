"""The admin's model use cases: pull a base model from the model hub ahead of any job, list the model folders
(with their size on disk and the running jobs using them), delete one no running job uses.

A pull runs in a thread of the service (the event loop stays free); it shares the per-model lock with the
workers (``hub.ensure_model``), so a job needing the same model waits for it and then uses it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.trainer import hub

MAX_MODEL_ID_CHARS = 200  # hub ids are at most 96 + 1 + 96; a longer name cannot be a folder here

log = logging.getLogger(__name__)


@dataclass
class PullStarted:
    model_id: str
    already_present: bool
    files_total: int = 0
    bytes_total: int = 0
    revision: str = ""


@dataclass
class LocalModelView(hub.LocalModel):
    used_by: list[str] = field(default_factory=list)
    pulling: bool = False
    pull_error: str = ""


class ModelAdmin:
    def __init__(self, models_dir: Path, access: hub.HubAccess | None,
                 running_jobs: Callable[[], Awaitable[list]]) -> None:
        self.models_dir = Path(models_dir)
        self.access = access
        self.running_jobs = running_jobs
        """The jobs in preparing/training (the job manager reads them through its store executor)."""
        self._pulls: dict[str, threading.Thread] = {}
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()

    async def pull(self, model_id: str) -> PullStarted:
        """Checks the model on the hub (files, size, architecture, disk) and starts its download."""
        model_id = (model_id or "").strip()
        if not model_id:
            raise InvalidArgument("is required", field="model_id")
        if len(model_id) > MAX_MODEL_ID_CHARS:
            raise InvalidArgument(f"is longer than {MAX_MODEL_ID_CHARS} characters", field="model_id")
        if self.access is None:
            raise FailedPrecondition("model hub access is off on this trainer (TRAINER_HUB_ENABLED=false): place "
                                     "the model's folder in the models folder instead")
        hub.check_model_id(model_id)
        folder = hub.model_folder(self.models_dir, model_id)
        if hub.is_complete(folder):
            return PullStarted(model_id, already_present=True)
        access = self.access
        try:
            plan = await asyncio.to_thread(hub.plan, model_id, access)
            await asyncio.to_thread(self.models_dir.mkdir, parents=True, exist_ok=True)
            staging = self.models_dir / hub.DOWNLOADS / hub.folder_name(model_id)
            await asyncio.to_thread(hub.check_disk, plan, self.models_dir, staging, access)
        except hub.HubError as exc:
            if exc.kind in ("unreachable", "failed"):
                raise FailedPrecondition(exc.message) from None
            raise InvalidArgument(exc.message, field="model_id") from None
        with self._lock:
            running = self._pulls.get(model_id)
            if running is None or not running.is_alive():
                self._errors.pop(model_id, None)
                t = threading.Thread(target=self._run, args=(model_id,), name=f"pull {model_id}", daemon=True)
                self._pulls[model_id] = t
                t.start()
        return PullStarted(model_id, already_present=False, files_total=len(plan.files),
                           bytes_total=plan.total_bytes, revision=plan.revision)

    def _run(self, model_id: str) -> None:
        try:
            hub.ensure_model(model_id, self.models_dir, self.access)
            log.info("pulled %s", model_id)
        except hub.HubError as exc:
            log.warning("pull of %s failed: %s", model_id, exc.message)
            self._errors[model_id] = f"{exc.kind}: {exc.message}"
        except Exception as exc:  # recorded for ListLocalModels; the thread must not die silently
            log.exception("pull of %s failed", model_id)
            self._errors[model_id] = f"failed: {type(exc).__name__}: {exc}"

    def pulling(self, model_id: str) -> bool:
        t = self._pulls.get(model_id)
        return t is not None and t.is_alive()

    async def _used_by(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for job in await self.running_jobs():
            out.setdefault(job.base_model, []).append(job.id)
        return out

    def _list(self, used: dict[str, list[str]]) -> list[LocalModelView]:
        models = hub.local_models(self.models_dir)
        out = [LocalModelView(**vars(m), used_by=used.get(m.id, []), pulling=self.pulling(m.id),
                              pull_error=self._errors.get(m.id, "")) for m in models]
        seen = {m.id for m in models}
        for model_id, error in self._errors.items():
            if model_id not in seen:
                out.append(LocalModelView(id=model_id, size_bytes=0, files=0, source="partial", pull_error=error))
        return out

    async def list(self) -> list[LocalModelView]:
        return await asyncio.to_thread(self._list, await self._used_by())

    async def delete(self, model_id: str) -> int:
        model_id = (model_id or "").strip()
        if not model_id:
            raise InvalidArgument("is required", field="model_id")
        if len(model_id) > MAX_MODEL_ID_CHARS:
            raise InvalidArgument(f"is longer than {MAX_MODEL_ID_CHARS} characters", field="model_id")
        used = (await self._used_by()).get(model_id)
        if used:
            raise FailedPrecondition(f"{model_id} is used by running job(s) {', '.join(used)}: cancel them or wait")
        if self.pulling(model_id):
            raise FailedPrecondition(f"{model_id} is being pulled: wait until the pull ends")
        try:
            freed = await asyncio.to_thread(hub.delete_model, self.models_dir, model_id)
        except (FileNotFoundError, ValueError):  # ValueError: a NUL byte, which no folder name holds
            raise NotFound(f"no model {model_id!r} in the models folder") from None
        self._errors.pop(model_id, None)
        log.info("deleted model %s (%d bytes)", model_id, freed)
        return freed
