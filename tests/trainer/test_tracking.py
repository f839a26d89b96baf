"""MLflow tracking: a real job trained with TRAINER_MLFLOW_ENABLED logs its run (parameters, per-step metrics,
evaluation, final metrics, metrics.json) to a local store, read back here with MLflow's own client; with the
setting off (the default) nothing is logged."""

from __future__ import annotations

import json

import pytest

from aragora.training.v1 import trainer_pb2 as pb
from tests.trainer.conftest import FAST, create_request, running_trainer, watch_all

pytestmark = pytest.mark.slow


async def run_job(stub, name: str, **config) -> pb.Job:
    job = (await stub.CreateJob(create_request(name, **config))).job
    await stub.StartJob(pb.StartJobRequest(job_id=job.id))
    await watch_all(stub, job.id)
    done = (await stub.GetJob(pb.GetJobRequest(job_id=job.id))).job
    assert done.status == pb.JOB_STATUS_COMPLETED, done.error
    return done


async def test_a_job_is_logged_to_mlflow(tmp_path, tiny_models_dir):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    async with running_trainer(tmp_path, models_dir=tiny_models_dir, mlflow_enabled=True, mlflow_tracking_uri=uri,
                               mlflow_experiment="tests") as (stub, running):
        job = await run_job(stub, "tracked", **FAST)
        metrics = json.loads((running.manager.jobs_dir / job.id / "metrics.json").read_text())
        _, events = await watch_all(stub, job.id)
    assert not [e.message for e in events if "MLflow" in e.message]  # no tracking warning

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tests")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "tracked"
    assert run.data.tags["aragora.job_id"] == job.id
    params = run.data.params
    assert params["lora_r"] == "4" and params["batch_size"] == "2" and params["base_model"] == job.base_model
    assert float(params["learning_rate"]) == pytest.approx(5e-3) and params["target_modules"] == "q_proj,v_proj"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(1, 7))
    by_step = {m.step: m.value for m in history}
    assert [by_step[x["step"]] for x in metrics["losses"]] == pytest.approx([x["loss"] for x in metrics["losses"]])
    assert len(client.get_metric_history(run.info.run_id, "learning_rate")) == 6
    final = run.data.metrics
    assert final["final.final_loss"] == pytest.approx(metrics["final_loss"])
    assert final["final.steps"] == 6 and final["final.training_examples"] == 12
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert "metrics.json" in artifacts
    # A local database keeps its artifacts beside it, not in the trainer's working directory.
    assert list((tmp_path / "artifacts").rglob("metrics.json"))


async def test_tracking_is_off_by_default(tmp_path, tiny_models_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default local store would be var/mlflow under the working directory
    async with running_trainer(tmp_path, models_dir=tiny_models_dir) as (stub, running):
        assert running.manager.settings.mlflow_enabled is False
        job = await run_job(stub, "untracked", **dict(FAST, max_steps=1))
        assert not (running.manager.jobs_dir / job.id / "mlflow_run.json").exists()
        job_file = json.loads((running.manager.jobs_dir / job.id / "job.json").read_text())
        assert job_file["mlflow_tracking_uri"] is None
    assert not (tmp_path / "var" / "mlflow").exists()


def test_eval_events_and_a_failure_are_logged(tmp_path):
    """Validation and evaluation results (``eval`` events with metrics) land at the current step; an ``error``
    ends the run FAILED; every event still reaches the service's stream."""
    import io

    from mlflow.tracking import MlflowClient

    from services.trainer.protocol import JobFile
    from services.trainer.worker.events import EventSink
    from services.trainer.worker.tracking import tracked

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    JobFile(job_id="job-x", name="x", base_model="m", training_config={"lora_r": 4, "target_modules": ["q"]},
            mlflow_tracking_uri=uri, mlflow_experiment="unit",
            mlflow_artifact_root=(tmp_path / "art").as_uri()).write(tmp_path / "job.json")
    stream = io.StringIO()
    sink = tracked(EventSink(stream), tmp_path)
    sink.status("preparing", "preparing")
    sink.emit("step", "s", step=3, total_steps=9, loss=2.5, learning_rate=1e-3, extra={"reward_accuracy": 0.75})
    sink.emit("eval", "v", phase="validation", done=1, total=1, metrics={"loss": 2.25})
    sink.emit("eval", "progress", phase="adapter", done=1, total=4, metrics={})
    sink.emit("eval", "a", phase="adapter", done=4, total=4, metrics={"heldout_loss": 2.0, "perplexity": 7.39})
    sink.error("training failed: boom")
    assert [json.loads(line)["type"] for line in stream.getvalue().splitlines()] == [
        "status", "step", "eval", "eval", "eval", "error"]

    client = MlflowClient(tracking_uri=uri)
    run = client.search_runs([client.get_experiment_by_name("unit").experiment_id])[0]
    assert run.info.status == "FAILED" and run.data.params["target_modules"] == "q"
    history = {k: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)]
               for k in ("loss", "reward_accuracy", "validation.loss", "adapter.heldout_loss")}
    assert history == {"loss": [(3, 2.5)], "reward_accuracy": [(3, 0.75)], "validation.loss": [(3, 2.25)],
                       "adapter.heldout_loss": [(3, 2.0)]}
