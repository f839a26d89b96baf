"""DPO and SFT jobs end to end through the real services (exporter and trainer gRPC servers, worker processes
training the tiny random Llama, the gateway's REST API), then ``GET /metrics``: measured base-vs-adapter figures
on the held-out split, never on training data, and a 409 for any job that did not complete."""

from __future__ import annotations

import asyncio
import json
import math
import os

import pytest

from aragora.training.v1 import trainer_pb2 as pb
from services.exporter import server as exporter_server
from services.trainer.worker.evaluate import elo_from_win_rate
from tests.conftest import REPO, exporter_settings, gateway_client
from tests.support.wait import until as wait_for
from tests.trainer.conftest import running_trainer, watch_all

pytestmark = pytest.mark.slow

EVAL_ENV = {"TRAINER_EVAL_MAX_PAIRS": "10", "TRAINER_EVAL_MAX_SFT_RECORDS": "6", "TRAINER_EVAL_SAMPLES": "1",
            "TRAINER_EVAL_SAMPLE_MAX_NEW_TOKENS": "4",
            "TRAINER_EVAL_MAX_COST_RATIO": "0"}  # the caps alone (no cut to the short jobs' training cost)
CONFIG = {"quantization": "none", "max_steps": 4, "batch_size": 2, "max_seq_length": 384, "lora_r": 4,
          "lora_alpha": 8, "learning_rate": 5e-3, "gradient_checkpointing": False}
METRIC_FIELDS = {"job_id", "status", "training_data_examples", "training_data_debates", "final_loss", "elo_rating",
                 "win_rate", "vertical_accuracy", "base", "adapter", "eval_matches", "eval_sft_records",
                 "eval_dpo_pairs"}


def sample_debates(tmp_path, per_vertical: int = 80) -> str:
    """The first debates of two verticals from the bundled samples (enough for both splits, quick to train)."""
    counts: dict[str, int] = {}
    lines = []
    with open(REPO / "services" / "exporter" / "samples" / "debates.jsonl", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            v = d.get("vertical")
            if d.get("type", "debate") == "debate" and v in ("legal", "finance") and counts.get(v, 0) < per_vertical:
                counts[v] = counts.get(v, 0) + 1
                lines.append(line)
    path = tmp_path / "debates.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    return str(path)


def read_jsonl(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@pytest.fixture(scope="module")
async def finished(tmp_path_factory, tiny_model_dir):
    """A DPO job and an SFT job on the exporter's legal debates, trained at the same time; plus a job never
    started and a job that failed."""
    tmp = tmp_path_factory.mktemp("eval-jobs")
    saved = {k: os.environ.get(k) for k in EVAL_ENV}
    os.environ.update(EVAL_ENV)  # workers inherit the trainer's environment
    exporter = await exporter_server.start(
        exporter_settings(tmp, load_samples=True, samples_path=sample_debates(tmp)), port=0)
    try:
        async with running_trainer(tmp, models_dir=tiny_model_dir.parent, exporter_address=exporter.address,
                                   max_concurrent_jobs=2) as (stub, running):
            async with gateway_client(exporter.address, running.address) as api:
                jobs = {}
                for name, method in (("dpo", "dpo"), ("sft", "sft")):
                    r = await api.post("/api/training/jobs", json={
                        "name": f"eval-{name}", "vertical": "legal", "base_model": "test/tiny-llama",
                        "training_config": {**CONFIG, "method": method}})
                    assert r.status_code == 201, r.text
                    jobs[name] = r.json()
                early = (await api.get(f"/api/training/jobs/{jobs['dpo']['id']}/metrics"))
                watchers = {k: asyncio.create_task(watch_all(stub, j["id"])) for k, j in jobs.items()}
                await wait_for(lambda: all(running.manager.hub.watchers(j["id"]) >= 1 for j in jobs.values()))
                for j in jobs.values():
                    assert (await api.post(f"/api/training/jobs/{j['id']}/start")).status_code == 200
                results = {k: await asyncio.wait_for(w, 600) for k, w in watchers.items()}

                bad = tmp / "data" / "bad_pairs.jsonl"
                bad.write_text('{"prompt": "p", "chosen": "same", "rejected": "same"}\n')
                r = await api.post("/api/training/jobs", json={
                    "name": "eval-bad", "vertical": "legal", "base_model": "test/tiny-llama",
                    "training_config": {**CONFIG, "method": "dpo", "dataset_path": "bad_pairs.jsonl"}})
                failed = r.json()
                await api.post(f"/api/training/jobs/{failed['id']}/start")
                _, failed_events = await asyncio.wait_for(watch_all(stub, failed["id"]), 300)
                queued = (await api.post("/api/training/jobs", json={
                    "name": "eval-never-started", "base_model": "test/tiny-llama",
                    "training_config": {**CONFIG, "method": "dpo"}})).json()

                out = {"api": api, "jobs": jobs, "events": {k: v[1] for k, v in results.items()},
                       "early": early, "failed": failed, "failed_events": failed_events, "queued": queued,
                       "folders": {k: running.manager.jobs_dir / j["id"] for k, j in jobs.items()}}
                out["metrics"] = {k: (await api.get(f"/api/training/jobs/{j['id']}/metrics")).json()
                                  for k, j in jobs.items()}
                out["final"] = {k: (await api.get(f"/api/training/jobs/{j['id']}")).json() for k, j in jobs.items()}
                yield out
    finally:
        await exporter.stop(0.5)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_both_jobs_complete(finished):
    for k, job in finished["final"].items():
        assert job["status"] == "completed", (k, job["error"])
        assert job["training_config"]["method"] == k


def test_dpo_job_trains_on_the_exporters_train_pairs(finished):
    folder = finished["folders"]["dpo"]
    trained = read_jsonl(folder / "data" / "train.jsonl")
    assert trained and all({"prompt", "chosen", "rejected"} <= set(t) for t in trained)
    assert all(t["metadata"]["vertical"] == "legal" for t in trained)
    steps = [e.step for e in finished["events"]["dpo"] if e.WhichOneof("payload") == "step"]
    assert [s.step for s in steps] == [1, 2, 3, 4]
    assert steps[0].loss == pytest.approx(math.log(2), abs=1e-4)  # policy == reference before the first update
    assert all({"reward_accuracy", "reward_margin"} <= set(s.extra) for s in steps)
    assert all(0 <= s.extra["reward_accuracy"] <= 1 for s in steps)
    evals = [e.eval for e in finished["events"]["dpo"] if e.WhichOneof("payload") == "eval"]
    reference = [e for e in evals if e.phase == "reference"]
    assert reference and reference[-1].done == reference[-1].total == 8  # 4 steps x 2 pairs, once each
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["training_examples"] == len(trained) and metrics["dpo"]["beta"] == 0.1


def test_heldout_debates_are_never_trained_on(finished):
    for k, folder in finished["folders"].items():
        trained = {t["metadata"]["debate_id"] for t in read_jsonl(folder / "data" / "train.jsonl")}
        held_sft = read_jsonl(folder / "data" / "heldout_sft.jsonl")
        held_dpo = read_jsonl(folder / "data" / "heldout_dpo.jsonl")
        assert held_sft and held_dpo
        held = {r["metadata"]["debate_id"] for r in held_sft + held_dpo}
        assert not trained & held, k


def test_evaluation_reports_progress_between_training_and_completion(finished):
    for k, events in finished["events"].items():
        kinds = [e.WhichOneof("payload") for e in events]
        last_step = max(i for i, kind in enumerate(kinds) if kind == "step")
        after = [e.eval for e in events[last_step:] if e.WhichOneof("payload") == "eval"]
        phases = [e.phase for e in after]
        assert phases[0] == "start" and phases[-1] == "done", (k, phases)
        assert {"base: held-out loss", "adapter: held-out loss", "base: preference", "adapter: preference"} \
            <= set(phases)
        done = after[-1]
        assert done.metrics["win_rate"] == pytest.approx(finished["metrics"][k]["win_rate"])
        assert events[-1].status_change.to_status == pb.JOB_STATUS_COMPLETED


@pytest.mark.parametrize("kind", ["dpo", "sft"])
def test_metrics_are_the_measured_base_and_adapter_figures(finished, kind):
    m = finished["metrics"][kind]
    assert set(m) == METRIC_FIELDS and m["status"] == "completed"
    worker = json.loads((finished["folders"][kind] / "metrics.json").read_text())
    ev = worker["evaluation"]
    # Sizes: capped by TRAINER_EVAL_*; every held-out pair is one match.
    assert m["eval_dpo_pairs"] == m["eval_matches"] == min(10, ev["available_dpo_pairs"]) > 0
    assert 0 < m["eval_sft_records"] <= 6
    assert ev["wins"] + ev["draws"] + ev["losses"] == m["eval_matches"]
    assert m["win_rate"] == pytest.approx((ev["wins"] + 0.5 * ev["draws"]) / m["eval_matches"])
    assert m["elo_rating"] == pytest.approx(elo_from_win_rate(m["win_rate"]), abs=0.05)
    for side in ("base", "adapter"):
        e = m[side]
        assert e["heldout_loss"] > 0 and e["perplexity"] == pytest.approx(math.exp(e["heldout_loss"]), rel=1e-6)
        assert 0 <= e["preference_accuracy"] <= 1
        assert set(e["vertical_accuracy"]) == {"legal"}
        assert e == {k: worker[side][k] for k in ("heldout_loss", "perplexity", "preference_accuracy",
                                                  "vertical_accuracy")}
    assert m["vertical_accuracy"] == m["adapter"]["vertical_accuracy"]
    assert m["vertical_accuracy"]["legal"] == pytest.approx(m["adapter"]["preference_accuracy"])
    assert m["final_loss"] == pytest.approx(worker["final_loss"])
    assert m["training_data_examples"] == worker["training_examples"] > 0
    # The base model is the same on both sides of every comparison: same data, same code, same numbers.
    other = finished["metrics"]["sft" if kind == "dpo" else "dpo"]
    assert m["base"] == other["base"]


async def test_samples_artifact_answers_heldout_prompts_with_both_models(finished):
    api, job = finished["api"], finished["jobs"]["dpo"]
    listing = (await api.get(f"/api/training/jobs/{job['id']}/artifacts")).json()
    names = {f["name"] for f in listing["files"]}
    assert {"eval/samples.json", "data/heldout_sft.jsonl", "data/heldout_dpo.jsonl"} <= names
    r = await api.get(f"/api/training/jobs/{job['id']}/artifacts/eval/samples.json")
    samples = r.json()["samples"]
    held = {x["metadata"]["debate_id"] for x in read_jsonl(finished["folders"]["dpo"] / "data" / "heldout_sft.jsonl")}
    assert len(samples) == 1 and samples[0]["debate_id"] in held
    assert {"prompt", "reference", "base", "adapter"} <= set(samples[0])


async def test_metrics_of_a_job_that_did_not_complete_are_409_not_zeros(finished):
    api = finished["api"]
    assert finished["early"].status_code == 409  # asked before the job ran
    r = await api.get(f"/api/training/jobs/{finished['queued']['id']}/metrics")
    assert r.status_code == 409 and r.json()["code"] == "FAILED_PRECONDITION"
    assert "queued" in r.json()["detail"]
    failed = (await api.get(f"/api/training/jobs/{finished['failed']['id']}")).json()
    assert failed["status"] == "failed"
    assert "'chosen' and 'rejected' are the same text" in failed["error"]
    r = await api.get(f"/api/training/jobs/{finished['failed']['id']}/metrics")
    assert r.status_code == 409 and "failed" in r.json()["detail"]
