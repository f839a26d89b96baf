"""The DPO method in the worker process itself (``python -m services.trainer.worker JOB_DIR``): pairs from a
``dataset_path``, the same lifecycle as SFT (SIGTERM writes a checkpoint and exits 143, a resumed run continues
exactly where it stopped), clear errors for bad pairs, and evaluation skipped (not invented) when no held-out
data can be had."""

from __future__ import annotations

import json
import math

import pytest

from tests.eval.conftest import known_pairs
from tests.trainer_worker.conftest import Worker, make_job, run_worker, set_resume, write_jsonl

pytestmark = pytest.mark.slow

CONFIG = {"method": "dpo", "dataset_path": "pairs.jsonl", "quantization": "none", "num_epochs": 2,
          "batch_size": 2, "learning_rate": 5e-3, "max_seq_length": 128, "lora_r": 4, "lora_alpha": 8,
          "gradient_checkpointing": False, "seed": 7}
N_PAIRS = 16
TOTAL_STEPS = 2 * N_PAIRS // 2


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("dpo-runs")
    write_jsonl(root / "data" / "pairs.jsonl", known_pairs(N_PAIRS // 2, seed=1) +
                known_pairs(N_PAIRS // 2, seed=2, vertical="medical"))
    # The exporter address is dead: a dataset_path job cannot get held-out debates and says so.
    a_dir = make_job(root, "job-a", tiny_model_dir, CONFIG, checkpoint_every_steps=5)
    b_dir = make_job(root, "job-b", tiny_model_dir, CONFIG, checkpoint_every_steps=5)
    a, b = Worker(a_dir), Worker(b_dir)
    b.wait_for(lambda e: e["type"] == "step" and e["step"] >= 3, timeout=300)
    b.terminate()
    rc_b = b.wait(30)
    b_events = list(b.events)
    set_resume(b_dir)
    c = Worker(b_dir)
    return {"a": (a.wait(400), a), "b": (rc_b, b_events), "c": (c.wait(400), c)}


def test_dpo_job_runs_to_a_result_with_reward_figures(runs):
    rc, a = runs["a"]
    assert rc == 0, a.log()
    kinds = [e["type"] for e in a.events]
    assert kinds[0] == "status" and kinds[-1] == "result" and "error" not in kinds
    assert a.of_type("data")[0]["training_examples"] == N_PAIRS
    assert a.of_type("data")[0]["training_debates"] == N_PAIRS
    steps = a.of_type("step")
    assert [s["step"] for s in steps] == list(range(1, TOTAL_STEPS + 1))
    assert steps[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert steps[-1]["loss"] < steps[0]["loss"]
    assert all(set(s["extra"]) >= {"reward_accuracy", "reward_margin", "chosen_reward", "rejected_reward"}
               for s in steps)
    assert steps[-1]["extra"]["reward_margin"] > 0
    reference = [e for e in a.of_type("eval") if e["phase"] == "reference"]
    # Every pair once (two epochs use them all), before the first step.
    assert reference[-1]["done"] == reference[-1]["total"] == N_PAIRS
    assert kinds.index("eval") < kinds.index("step")
    assert "DPO pairs run packed (prompt once, both answers in one row): sdpa attention, additive float mask" in [
        e["message"] for e in a.of_type("log")]
    trained = [json.loads(x) for x in (a.job_dir / "data" / "train.jsonl").read_text().splitlines()]
    assert len(trained) == N_PAIRS and all({"prompt", "chosen", "rejected"} <= set(t) for t in trained)
    assert (a.job_dir / "adapter" / "adapter_model.safetensors").is_file()


def test_without_heldout_data_the_evaluation_is_skipped_not_invented(runs):
    _, a = runs["a"]
    warnings = [e["message"] for e in a.of_type("warning")]
    assert any(w.startswith("evaluation skipped: no held-out data (exporter unavailable at 127.0.0.1:1")
               for w in warnings)
    metrics = json.loads((a.job_dir / "metrics.json").read_text())
    assert "exporter unavailable" in metrics["evaluation"]["skipped"]
    for key in ("elo_rating", "win_rate", "base", "adapter", "eval_matches"):
        assert key not in metrics
    assert metrics["method"] == "dpo" and metrics["dpo"]["beta"] == 0.1


def test_sigterm_then_resume_continues_exactly(runs):
    import torch
    from safetensors.torch import load_file

    rc_b, b_events = runs["b"]
    assert rc_b == 143
    stopped_at = max(e["step"] for e in b_events if e["type"] == "checkpoint")
    rc, c = runs["c"]
    assert rc == 0, c.log()
    steps = c.of_type("step")
    assert steps[0]["step"] == stopped_at + 1 and steps[-1]["step"] == TOTAL_STEPS
    assert any("(resumed job)" in e["message"] for e in c.of_type("log"))  # the same pairs, from data/
    _, a = runs["a"]
    a_steps = {s["step"]: s for s in a.of_type("step")}
    for s in steps:
        assert s["loss"] == pytest.approx(a_steps[s["step"]]["loss"], rel=1e-4, abs=1e-5), s["step"]
        assert s["extra"]["reward_margin"] == pytest.approx(a_steps[s["step"]]["extra"]["reward_margin"],
                                                            rel=1e-3, abs=1e-5)
    wa = load_file(a.job_dir / "adapter" / "adapter_model.safetensors")
    wc = load_file(c.job_dir / "adapter" / "adapter_model.safetensors")
    for k in wa:
        assert torch.allclose(wa[k], wc[k], atol=1e-5), k


def test_bad_pairs_fail_before_the_model_loads(tmp_path, tiny_model_dir):
    good = known_pairs(2, seed=1)
    write_jsonl(tmp_path / "data" / "bad.jsonl", [json.dumps(p) for p in good] + [
        '{"prompt": "q", "chosen": "a"}', "not json", '{"prompt": "q", "chosen": "x", "rejected": " x "}'])
    job = make_job(tmp_path, "job-bad", tiny_model_dir, dict(CONFIG, dataset_path="bad.jsonl"))
    rc, w = run_worker(job, timeout=120)
    assert rc == 1
    assert [e["type"] for e in w.events] == ["status", "error"]
    msg = w.events[-1]["message"]
    assert msg.startswith("dataset_path bad.jsonl (method dpo): 3 bad DPO pairs: line 3: missing or empty field "
                          "'rejected'"), msg
    assert "line 4: invalid JSON" in msg and "line 5: 'chosen' and 'rejected' are the same text" in msg
    # Before the model loads: no "loading <model>" event (an event check, not a time bound that a loaded machine
    # could break).
    assert not any(e["message"].startswith("loading ") for e in w.events)
