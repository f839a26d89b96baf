"""Data-parallel jobs (``training_config.num_workers``): real worker processes on the tiny model, gloo on CPU.

Side by side (the imports dominate): the same SFT job with one worker (A) and with two (B); the two-worker job
stopped by SIGTERM (C) then resumed with two workers (C'); and the same DPO job with one and two workers. Then
a job whose rank 1 is killed mid-training: it fails with that reason.

The claim tested: two workers on the same global batch (``batch_size`` x ``gradient_accumulation_steps``, split
between the ranks) and seed are the optimisation of one worker. With ``lora_dropout`` 0 (dropout masks are
drawn per rank, so they cannot match one process's) the per-step losses, the validation losses and the
learning rates agree within a relative 1e-4 and the adapters' weights within 1e-4 absolute (|w| ~ 1e-2); what
differs is only the summation order of floating-point sums (the per-rank sub-batches also pad to their own
length, which changes no real token's value).
"""

from __future__ import annotations

import json
import time

import pytest

from tests.trainer_worker.conftest import Worker, make_job, set_resume, sft_records, write_jsonl

pytestmark = pytest.mark.slow

LOSS_REL = 1e-4
WEIGHT_ABS = 1e-4
SFT = {"dataset_path": "sft.jsonl", "quantization": "none", "num_epochs": 2, "batch_size": 4,
       "gradient_accumulation_steps": 2, "learning_rate": 5e-3, "seed": 11, "lora_dropout": 0.0,
       "validation_split": 0.2, "eval_every_steps": 2}
DPO = {"dataset_path": "dpo.jsonl", "quantization": "none", "num_epochs": 1, "batch_size": 4, "method": "dpo",
       "learning_rate": 5e-3, "seed": 3, "lora_dropout": 0.0}
N_SFT, N_DPO = 30, 12


def dpo_pairs(n: int) -> list[dict]:
    out = []
    for i, r in enumerate(sft_records(n, seed=5)):
        out.append({"prompt": r["input"], "chosen": r["output"], "rejected": " ".join(reversed(r["output"].split())),
                    "metadata": {"debate_id": f"debate-{i:03d}", "confidence_diff": 0.5, "vertical": "legal"}})
    return out


def config(base: dict, workers: int) -> dict:
    return {**base, "num_workers": workers}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("ddp")
    write_jsonl(root / "data" / "sft.jsonl", sft_records(N_SFT, seed=2))
    write_jsonl(root / "data" / "dpo.jsonl", dpo_pairs(N_DPO))
    env = {"TRAINER_EVAL_ENABLED": "false"}
    # One thread per process: four-to-six processes share this machine's few cores.
    jobs = {name: make_job(root, f"job-{name}", tiny_model, config(base, n), checkpoint_every_steps=2,
                           num_threads=1)
            for name, base, n in (("a", SFT, 1), ("b", SFT, 2), ("c", SFT, 2), ("dpo1", DPO, 1), ("dpo2", DPO, 2))}
    workers = {name: Worker(jobs[name], env) for name in ("a", "b", "c")}
    c = workers["c"]
    c.wait_for(lambda e: e["type"] == "checkpoint" and e["step"] >= 2, timeout=400)
    c.terminate()
    t0 = time.monotonic()
    rc_c = c.wait(30)
    stop_seconds = time.monotonic() - t0
    c_events = list(c.events)
    set_resume(jobs["c"])
    workers["c2"] = Worker(jobs["c"], env)
    out = {name: (w.wait(600), w) for name, w in workers.items() if name != "c"}
    for name in ("dpo1", "dpo2"):
        w = Worker(jobs[name], env)
        out[name] = (w.wait(600), w)
    out["c"] = (rc_c, c_events, stop_seconds)
    return out


def losses(w: Worker) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in w.of_type("step")}


def assert_same_adapter(a: Worker, b: Worker) -> None:
    import torch
    from safetensors.torch import load_file

    wa = load_file(a.job_dir / "adapter" / "adapter_model.safetensors")
    wb = load_file(b.job_dir / "adapter" / "adapter_model.safetensors")
    assert wa.keys() == wb.keys()
    moved = 0
    for k in wa:
        assert torch.allclose(wa[k], wb[k], rtol=0, atol=WEIGHT_ABS), (k, float((wa[k] - wb[k]).abs().max()))
        moved += "lora_B" in k and bool(wa[k].abs().max() > 10 * WEIGHT_ABS)  # B starts at 0: it trained
    assert moved


def test_two_workers_follow_the_loss_curve_of_one(runs):
    (rc_a, a), (rc_b, b) = runs["a"], runs["b"]
    assert rc_a == 0, a.log()
    assert rc_b == 0, b.log()
    la, lb = losses(a), losses(b)
    assert len(la) >= 4 and la.keys() == lb.keys()
    for step in la:
        assert lb[step] == pytest.approx(la[step], rel=LOSS_REL), step
    sa, sb = a.of_type("step"), b.of_type("step")
    for x, y in zip(sa, sb):
        assert y["learning_rate"] == pytest.approx(x["learning_rate"], rel=1e-9)
        assert (y["examples_seen"], y["total_steps"]) == (x["examples_seen"], x["total_steps"])
        assert y["extra"]["grad_norm"] == pytest.approx(x["extra"]["grad_norm"], rel=1e-3)
    va = [e["metrics"]["validation_loss"] for e in a.of_type("eval")]
    vb = [e["metrics"]["validation_loss"] for e in b.of_type("eval")]
    assert len(va) >= 2 and vb == pytest.approx(va, rel=LOSS_REL)
    assert_same_adapter(a, b)
    assert any("data-parallel: 2 data-parallel workers (gloo" in e["message"] for e in b.of_type("log"))


def test_rank_zero_alone_reports_and_writes(runs):
    _, b = runs["b"]
    assert not b.bad_lines
    steps = [e["step"] for e in b.of_type("step")]
    assert steps == list(range(1, len(steps) + 1))  # each step once: one rank emits
    assert len(b.of_type("result")) == 1 and not b.of_type("error")
    ckpts = sorted(p.name for p in (b.job_dir / "checkpoints").iterdir())
    assert ckpts == sorted({f"checkpoint-{e['step']}" for e in b.of_type("checkpoint")})
    metrics = json.loads((b.job_dir / "metrics.json").read_text())
    assert metrics["training_config"]["num_workers"] == 2
    assert [x["step"] for x in metrics["losses"]] == steps


def test_adapter_of_two_workers_loads_with_peft(runs, tiny_model):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    _, b = runs["b"]
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    model = PeftModel.from_pretrained(base, b.job_dir / "adapter")
    with torch.no_grad():
        out = model(input_ids=torch.tensor([[1, 2, 3, 4]]))
    assert torch.isfinite(out.logits).all()


def test_two_workers_stop_and_resume_from_the_checkpoint(runs):
    rc, events, seconds = runs["c"]
    assert rc == 143
    assert seconds < 5
    stopped_at = max(e["step"] for e in events if e["type"] == "checkpoint")
    assert not any(e["type"] in ("result", "error") for e in events)
    rc2, c2 = runs["c2"]
    assert rc2 == 0, c2.log()
    assert any(f"resumed from checkpoint-{stopped_at}" in e["message"] for e in c2.of_type("log"))
    steps = c2.of_type("step")
    assert steps[0]["step"] == stopped_at + 1
    # The resumed two-worker run continues the uninterrupted one (and so the one-worker run).
    _, b = runs["b"]
    lb = losses(b)
    for s in steps:
        assert s["loss"] == pytest.approx(lb[s["step"]], rel=LOSS_REL), s["step"]
    assert_same_adapter(b, c2)


def test_dpo_with_two_workers_is_dpo_with_one(runs):
    (rc1, one), (rc2, two) = runs["dpo1"], runs["dpo2"]
    assert rc1 == 0, one.log()
    assert rc2 == 0, two.log()
    l1, l2 = losses(one), losses(two)
    assert len(l1) == N_DPO // 4 and l1.keys() == l2.keys()
    for step in l1:
        assert l2[step] == pytest.approx(l1[step], rel=LOSS_REL), step
    for x, y in zip(one.of_type("step"), two.of_type("step")):
        for key in x["extra"]:
            assert y["extra"][key] == pytest.approx(x["extra"][key], rel=1e-3, abs=1e-6), key
    assert_same_adapter(one, two)


def test_a_rank_that_dies_fails_the_job_with_its_reason(tmp_path, tiny_model):
    import psutil

    write_jsonl(tmp_path / "data" / "sft.jsonl", sft_records(40, seed=4))
    job = make_job(tmp_path, "job-kill", tiny_model, {**config(SFT, 2), "validation_split": 0.0,
                                                      "eval_every_steps": None, "num_epochs": 20},
                   checkpoint_every_steps=1000, num_threads=1)
    w = Worker(job, {"TRAINER_EVAL_ENABLED": "false"})
    w.wait_for(lambda e: e["type"] == "step", timeout=400)
    ranks = [p for p in psutil.Process(w.proc.pid).children()
             if "spawn_main" in " ".join(p.cmdline()) and "resource_tracker" not in " ".join(p.cmdline())]
    assert len(ranks) == 1
    ranks[0].kill()
    assert w.wait(60) == 1
    errors = w.of_type("error")
    assert len(errors) == 1 and "worker rank 1 of 2 failed: killed by signal 9" in errors[0]["message"], errors
    assert not w.of_type("result")


def test_bad_data_fails_a_two_worker_job_at_once(tmp_path, tiny_model):
    write_jsonl(tmp_path / "data" / "sft.jsonl", [*sft_records(3), "not json"])
    job = make_job(tmp_path, "job-bad", tiny_model, config(SFT, 2) | {"validation_split": 0.0,
                                                                     "eval_every_steps": None}, num_threads=1)
    w = Worker(job)
    assert w.wait(120) == 1
    errors = w.of_type("error")
    assert len(errors) == 1 and "line 4" in errors[0]["message"], errors
