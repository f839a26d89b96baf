"""Experiment tracking: a job's run in MLflow, logged by its worker (``TRAINER_MLFLOW_ENABLED``).

``tracked(events, job_dir)`` wraps the worker's event sink when ``job.json`` names a tracking URI: every event
still goes to the service, and the sink also logs to MLflow what the events carry, so no training stage knows
about MLflow:

- at the ``preparing`` status: a run named after the job in the experiment ``mlflow_experiment`` (created if
  missing), tagged ``aragora.job_id``, with the job's parameters (the training config, base model, vertical);
- each ``step``: ``loss``, ``learning_rate``, ``tokens_per_second``, ``epoch`` and the method's own figures
  (DPO's ``reward_accuracy``...) at that step;
- each ``eval`` that carries metrics (held-out validation during training, the final ``base`` and ``adapter``
  evaluation): ``<phase>.<metric>`` at the current step;
- the ``result``: every number of ``metrics.json`` as ``final.<name>`` (nested ones as ``final.adapter.
  heldout_loss``...), ``metrics.json`` itself as an artifact, and the run FINISHED; an ``error``: the run FAILED.

A resumed job (the trainer restarted) continues its run (the run id is kept in ``mlflow_run.json``). Tracking
never fails a job: an MLflow error is reported once as a warning and tracking stops for that job.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from services.trainer.protocol import JobFile
from services.trainer.worker.events import EventSink

RUN_FILE = "mlflow_run.json"


def _flat(prefix: str, value: Any, out: dict[str, float]) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        if math.isfinite(value):
            out[prefix] = float(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}", v, out)


class TrackedSink(EventSink):
    """An ``EventSink`` that also logs the job to MLflow (see the module)."""

    def __init__(self, inner: EventSink, job_dir: Path, job: JobFile) -> None:
        self._inner = inner
        self._dir = Path(job_dir)
        self._job = job
        self._client = None
        self._run_id: str | None = None
        self._step = 0
        self._failed = False

    def emit(self, type: str, message: str = "", **fields: Any) -> None:
        self._inner.emit(type, message, **fields)
        if self._failed:
            return
        try:
            self._track(type, fields)
        except Exception as exc:  # tracking must never fail the job
            self._failed = True
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            self._inner.emit("warning", f"MLflow tracking stopped ({exc.__class__.__name__}): {first}")

    # -- the run ------------------------------------------------------------------------------------------------

    def _start(self) -> None:
        from mlflow.tracking import MlflowClient

        job = self._job
        self._client = client = MlflowClient(tracking_uri=job.mlflow_tracking_uri)
        saved = self._dir / RUN_FILE
        if saved.is_file():
            self._run_id = json.loads(saved.read_text(encoding="utf-8"))["run_id"]
            client.update_run(self._run_id, status="RUNNING")
            return
        experiment = client.get_experiment_by_name(job.mlflow_experiment)
        experiment_id = (experiment.experiment_id if experiment is not None else
                         client.create_experiment(job.mlflow_experiment, artifact_location=job.mlflow_artifact_root))
        run = client.create_run(experiment_id, run_name=job.name or job.job_id,
                                tags={"aragora.job_id": job.job_id, "aragora.base_model": job.base_model,
                                      "aragora.vertical": job.vertical or "all"})
        self._run_id = run.info.run_id
        saved.write_text(json.dumps({"run_id": self._run_id, "tracking_uri": job.mlflow_tracking_uri}),
                         encoding="utf-8")
        from mlflow.entities import Param

        params = {"base_model": job.base_model, "vertical": job.vertical or "", "job_id": job.job_id}
        for key, value in job.training_config.items():
            params[key] = ",".join(map(str, value)) if isinstance(value, list) else ("" if value is None else value)
        client.log_batch(self._run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])

    def _metrics(self, values: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        if values:
            self._client.log_batch(self._run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])

    def _track(self, type: str, fields: dict) -> None:
        if self._run_id is None:
            if type != "status":
                return
            self._start()
        if type == "step":
            self._step = int(fields.get("step") or self._step)
            values: dict[str, float] = {}
            for name in ("loss", "learning_rate", "tokens_per_second", "epoch"):
                _flat(name, fields.get(name), values)
            for k, v in (fields.get("extra") or {}).items():
                _flat(k, v, values)
            self._metrics(values, self._step)
        elif type == "eval" and fields.get("metrics"):
            values = {}
            _flat(fields.get("phase") or "eval", fields["metrics"], values)
            self._metrics(values, self._step)
        elif type == "result":
            path = self._dir / "metrics.json"
            if path.is_file():
                metrics = json.loads(path.read_text(encoding="utf-8"))
                values = {}
                for key, value in metrics.items():
                    if key not in ("losses", "training_config"):
                        _flat(f"final.{key}", value, values)
                self._metrics(values, self._step)
                self._client.log_artifact(self._run_id, str(path))
            self._client.set_terminated(self._run_id, status="FINISHED")
        elif type == "error":
            self._client.set_terminated(self._run_id, status="FAILED")


def tracked(events: EventSink, job_dir: Path) -> EventSink:
    """``events``, logging to MLflow too when the job's ``job.json`` names a tracking URI."""
    try:
        job = JobFile.read(Path(job_dir) / "job.json")
    except (OSError, ValueError):
        return events  # the runner reports the unreadable job file
    if not job.mlflow_tracking_uri:
        return events
    return TrackedSink(events, job_dir, job)
