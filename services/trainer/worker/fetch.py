"""The preparing step that downloads the job's base model from the model hub when ``job.json`` asks for it
(``hub_download``): progress as ``download`` lines, failures as the job's error (``services.trainer.hub``).

It runs in the worker, so the service's event loop stays free, a cancel (SIGTERM to the worker) stops it, and
after a trainer restart the relaunched worker continues the ``.part`` files where they stopped."""

from __future__ import annotations

import os
import time
from pathlib import Path

from services.trainer.artifacts import JobLayout
from services.trainer.protocol import WORKER_HUB_TOKEN_ENV, JobFile
from services.trainer.worker.events import EventSink
from services.trainer.worker.job import WorkerError


def fetch_base_model(job_dir: str | Path, events: EventSink) -> None:
    """Downloads the base model into ``model_path`` when the job file asks for it and it is not there yet."""
    try:
        job = JobFile.read(JobLayout(Path(job_dir).absolute()).job_file)
    except (OSError, ValueError):
        return  # JobConfig.load reports it
    if not job.hub_download or not job.model_path or (Path(job.model_path) / "config.json").is_file():
        return
    from services.trainer import hub

    access = hub.HubAccess(endpoint=job.hub_endpoint.rstrip("/"), token=os.environ.get(WORKER_HUB_TOKEN_ENV) or None,
                           keep_free_bytes=job.hub_keep_free_bytes)
    events.log(f"base model {job.base_model} is not on this server: downloading it from the model hub at "
               f"{access.host}")
    last = {"phase": "", "at": 0.0}

    def report(p: hub.Progress) -> None:
        now = time.monotonic()
        if p.phase == last["phase"] and p.phase == "waiting" and now - last["at"] < 5.0:
            return  # a waiting job reports every 5 s, not every second
        last.update(phase=p.phase, at=now)
        events.emit("download", p.describe() if p.phase != "planning" else
                    f"asking the model hub for {p.model}'s files", model=p.model, phase=p.phase,
                    files_done=p.files_done, files_total=p.files_total, bytes_done=p.bytes_done,
                    bytes_total=p.bytes_total, bytes_per_second=p.bytes_per_second, eta_seconds=p.eta_seconds,
                    file=p.file)

    try:
        folder = hub.ensure_model(job.base_model, Path(job.model_path).parent, access, report)
    except hub.HubError as exc:
        raise WorkerError(f"base model download failed ({exc.kind}): {exc.message}") from None
    finally:
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = True  # the ML libraries load from the folder, never from the network
    if folder.absolute() != Path(job.model_path).absolute():
        raise WorkerError(f"base model downloaded to an unexpected folder {folder.name}")
