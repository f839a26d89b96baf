"""The service side of a preflight (a job's dry run): a worker process in ``--preflight`` mode, off the event loop.

The manager has validated the request like a create. Here a throw-away folder under ``<jobs_dir>/.preflight/``
gets a ``job.json`` (the same ``JobFile`` a job's worker reads), ``python -m services.trainer.worker --preflight
DIR`` fetches and encodes the data with the worker's own stages, times a few training steps and writes
``preflight.json``; its answer is returned and the folder removed. A worker that fails (no data, the exporter
down) is a ``FailedPrecondition`` with its reason; one that runs past ``preflight_timeout_seconds`` is killed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import sys
import uuid
from pathlib import Path

from services.common.errors import FailedPrecondition
from services.trainer.orm import Job
from services.trainer.protocol import ErrorLine, parse_line
from services.trainer.supervisor import MAX_LINE_BYTES, job_file, signal_group, worker_env

log = logging.getLogger(__name__)

PREFLIGHT_DIR = ".preflight"
RESULT_FILE = "preflight.json"


async def run_preflight(manager, fields: dict) -> dict:
    """The worker's ``preflight.json`` for the validated job ``fields`` (name, vertical, base_model,
    training_config)."""
    from services.trainer import models

    settings = manager.settings
    model = await asyncio.to_thread(models.resolve_model, manager.models_dir, fields["base_model"])
    folder = manager.jobs_dir / PREFLIGHT_DIR / uuid.uuid4().hex[:12]
    job = Job(id=f"preflight-{folder.name}", name=fields["name"], vertical=fields["vertical"],
              base_model=fields["base_model"], training_config=fields["training_config"])

    def prepare():
        folder.mkdir(parents=True)
        spec = job_file(job, settings, model.path, resume=False)
        spec.mlflow_tracking_uri = None  # a dry run is not a run
        spec.exporter_retry_seconds = min(spec.exporter_retry_seconds, 10.0)
        spec.write(folder / "job.json")
        return open(folder / "worker.log", "ab")

    log_file = await asyncio.to_thread(prepare)
    proc = None
    try:
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.trainer.worker", "--preflight", str(folder),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=log_file,
                start_new_session=True, env=worker_env(settings), limit=MAX_LINE_BYTES)
        finally:
            log_file.close()
        last_error = ""

        async def read() -> None:
            nonlocal last_error
            while line := await proc.stdout.readline():
                parsed = parse_line(line)
                if isinstance(parsed, ErrorLine):
                    last_error = parsed.message
            await proc.wait()

        try:
            await asyncio.wait_for(read(), settings.preflight_timeout_seconds)
        except TimeoutError:
            raise FailedPrecondition(f"preflight took longer than {settings.preflight_timeout_seconds:g} s "
                                     "(TRAINER_PREFLIGHT_TIMEOUT_SECONDS)") from None
        if proc.returncode != 0:
            raise FailedPrecondition(f"preflight failed: {last_error or f'worker exited with code {proc.returncode}'}")
        return await asyncio.to_thread(lambda: json.loads((folder / RESULT_FILE).read_text(encoding="utf-8")))
    finally:
        if proc is not None and proc.returncode is None:
            signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
        await asyncio.to_thread(shutil.rmtree, folder, True)


def remove_leftovers(jobs_dir: Path) -> None:
    """Removes the folders of preflights a previous trainer left (it stopped while they ran)."""
    shutil.rmtree(Path(jobs_dir) / PREFLIGHT_DIR, ignore_errors=True)
