"""The standard controls (gradient accumulation, warmup, LR scheduler, weight decay, max gradient norm) and
validation during training (the validation split, early stopping, the best checkpoint, retention).

Each control is checked where it acts: the loop's own optimizer step on the tiny model (in process, seconds),
and a real worker subprocess for validation and early stopping. Each test fails when its control is ignored.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest

from tests.trainer_worker.conftest import make_job, run_worker, sft_records, write_jsonl

FAST = {"quantization": "none", "gradient_checkpointing": False, "lora_dropout": 0.0, "max_seq_length": 128,
        "num_epochs": 1, "seed": 0, "lora_r": 4, "lora_alpha": 8}


# -- pure parts ------------------------------------------------------------------------------------------------

def test_lr_schedules_and_warmup():
    from services.trainer.spec import TrainingSpec
    from services.trainer.worker.loop import lr_schedule, warmup_steps

    total = 10
    # The default (linear, no warmup) is the schedule before the controls existed, bit for bit.
    assert [lr_schedule("linear", 0, total)(s) for s in range(total)] == [(total - s) / total for s in range(total)]
    linear = lr_schedule("linear", 4, total)
    assert [linear(s) for s in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]  # warmup from 0, then decay
    assert linear(7) == pytest.approx(0.5) and linear(total) == 0.0
    cosine = lr_schedule("cosine", 0, total)
    assert cosine(0) == 1.0 and cosine(5) == pytest.approx(0.5) and cosine(total) == pytest.approx(0.0)
    assert cosine(2) > lr_schedule("linear", 0, total)(2)  # a cosine stays high longer
    assert [lr_schedule("constant", 2, total)(s) for s in (0, 1, 2, 9)] == [0.0, 0.5, 1.0, 1.0]
    # warmup_steps wins over warmup_ratio; a ratio rounds up.
    assert warmup_steps(TrainingSpec(warmup_ratio=0.25), 10) == 3
    assert warmup_steps(TrainingSpec(warmup_ratio=0.25, warmup_steps=5), 10) == 5
    assert warmup_steps(TrainingSpec(), 10) == 0


def test_accumulation_in_the_step_plan():
    from services.trainer.worker.batching import Schedule, batch_order, step_groups

    lengths = list(range(1, 11))
    assert Schedule(10, 2, 3, seed=0, accumulation=2).steps_per_epoch == 3  # 5 batches: 2 + 2 + 1
    assert Schedule(10, 2, 3, seed=0, accumulation=2).total_steps == 9
    groups = step_groups(lengths, 2, 0, 0, 2)
    assert [b for g in groups for b in g] == batch_order(lengths, 2, 0, 0) and [len(g) for g in groups] == [2, 2, 1]
    assert Schedule(10, 2, 3, seed=0, max_steps=1, accumulation=2).used_indices(lengths) == sorted(
        groups[0][0] + groups[0][1])


def test_validation_split_is_by_debate_and_seeded():
    from services.trainer.worker.validation import split_validation

    records = sft_records(20)  # two records per debate
    train, val = split_validation(records, 0.2, seed=1)
    assert len(val) == 4 and sorted(train + val) == list(range(20))
    debate = lambda i: records[i]["metadata"]["debate_id"]  # noqa: E731
    assert not {debate(i) for i in train} & {debate(i) for i in val}
    assert split_validation(records, 0.2, seed=1) == (train, val)
    assert split_validation(records, 0.2, seed=2) != (train, val)
    assert split_validation(records, 0.0, seed=1) == (list(range(20)), [])


def test_early_stopping_counts_validations_without_improvement():
    from services.trainer.worker.validation import EarlyStopping

    es = EarlyStopping(patience=2, min_delta=0.1)
    assert not es.update(1, 0.5, 2.0)
    assert not es.update(2, 1.0, 1.95)  # better, but not by more than min_delta
    assert not es.update(3, 1.5, 1.5)  # an improvement resets the count
    assert not es.update(4, 2.0, 1.6)
    assert es.update(5, 2.5, 1.45)
    assert (es.state["best_step"], es.state["best_loss"]) == (3, 1.5)
    assert "early stopping at step 5" in es.state["stopped"]
    assert not EarlyStopping(None, 0.0).update(1, 1.0, 5.0) and not EarlyStopping(None, 0.0).update(2, 1.0, 9.0)


# -- the loop on the tiny model --------------------------------------------------------------------------------

class Run:
    """A ``TrainLoop`` on the tiny model in this process, its events parsed, the gradients it applies seen."""

    def __init__(self, model_path: Path, tmp_path: Path, records: list[dict], **config) -> None:
        import torch

        from services.trainer.spec import TrainingSpec
        from services.trainer.worker import modeling
        from services.trainer.worker.batching import Schedule
        from services.trainer.worker.events import EventSink
        from services.trainer.worker.job import JobConfig
        from services.trainer.worker.loop import TrainLoop
        from services.trainer.worker.methods.sft import SFTMethod
        from services.trainer.worker.signals import StopGuard

        spec = TrainingSpec.model_validate({**FAST, **config})
        self.stream = io.StringIO()
        events = EventSink(self.stream)
        tok = modeling.load_tokenizer(model_path)
        encoded, _ = SFTMethod.encode(tok, records, spec.max_seq_length)
        torch.manual_seed(0)
        loaded = modeling.load_model(model_path, spec, tok, events)
        self.model = loaded.model
        with torch.no_grad():  # a fresh LoRA B is zero (A's gradient too): move it off zero
            gen = torch.Generator().manual_seed(1)
            for name, p in self.model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
        job = JobConfig(job_dir=tmp_path, job_id="j", name="j", vertical="legal", base_model="tiny",
                        model_path=model_path, spec=spec, exporter_address="", data_root=tmp_path,
                        checkpoint_every_steps=None, resume=False)
        method = SFTMethod.create(encoded, tok.pad_token_id, loaded.device, spec)
        self.loop = TrainLoop(job, self.model, method, Schedule.for_spec(len(encoded), spec), events, StopGuard())
        self.applied: list[dict] = []  # the gradients each optimizer step applied (after clipping)
        self.loop.optimizer.register_step_pre_hook(
            lambda *_: self.applied.append({n: p.grad.detach().clone() for n, p in self.lora()}))

    def lora(self):
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def weights(self) -> dict:
        return {n: p.detach().clone() for n, p in self.lora()}

    def run(self) -> Run:
        self.loop.run()
        return self

    def events(self, kind: str) -> list[dict]:
        rows = [json.loads(line) for line in self.stream.getvalue().splitlines()]
        return [r for r in rows if r["type"] == kind]


def _norm(grads: dict) -> float:
    return math.sqrt(sum(float(g.pow(2).sum()) for g in grads.values()))


def test_accumulating_k_batches_of_b_equals_one_batch_of_k_times_b(tiny_model, tmp_path):
    records = sft_records(6, seed=3)
    # One optimizer step over the same 6 examples: 3 batches of 2 accumulated, or one batch of 6.
    small = Run(tiny_model, tmp_path / "a", records, batch_size=2, gradient_accumulation_steps=3,
                learning_rate=1e-2, max_grad_norm=0.0).run()
    big = Run(tiny_model, tmp_path / "b", records, batch_size=6, learning_rate=1e-2, max_grad_norm=0.0).run()
    assert len(small.applied) == len(big.applied) == 1
    assert small.loop.state["examples_seen"] == big.loop.state["examples_seen"] == 6
    for name, g in big.applied[0].items():
        assert float(g.abs().max()) > 0
        assert (small.applied[0][name] - g).abs().max() <= 1e-5 * float(g.abs().max()) + 1e-7, name
    # The weights after the step too, wherever the gradient is not vanishingly small (Adam's first step is
    # about lr * sign(gradient), so a gradient of 1e-10 may flip sign with the summation order).
    a, b = small.weights(), big.weights()
    compared = total = 0
    for name, g in big.applied[0].items():
        mask = g.abs() > 1e-4 * float(g.abs().max())
        assert (a[name] - b[name])[mask].abs().max() <= 1e-5, name
        compared, total = compared + int(mask.sum()), total + mask.numel()
    assert compared >= 0.9 * total
    # The loss reported is that of the one big batch.
    assert small.events("step")[0]["loss"] == pytest.approx(big.events("step")[0]["loss"], rel=1e-5)
    # Without the division by the summed weight the gradient would be far larger: the comparison is sharp.
    assert _norm(small.applied[0]) == pytest.approx(_norm(big.applied[0]), rel=1e-4)


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant"])
def test_the_learning_rate_follows_the_schedule(tiny_model, tmp_path, kind):
    from services.trainer.worker.loop import lr_schedule

    lr = 1e-3
    r = Run(tiny_model, tmp_path, sft_records(8), batch_size=1, lr_scheduler_type=kind, warmup_steps=3,
            learning_rate=lr).run()
    got = [e["learning_rate"] for e in r.events("step")]
    assert len(got) == 8
    want = [lr * lr_schedule(kind, 3, 8)(s) for s in range(8)]
    assert got == pytest.approx(want, rel=1e-9, abs=1e-15)
    assert got[:4] == pytest.approx([0.0, lr / 3, 2 * lr / 3, lr])  # warmup from 0
    if kind == "constant":
        assert got[3:] == pytest.approx([lr] * 5)
    else:
        assert all(x > y for x, y in zip(got[3:], got[4:]))


def test_warmup_ratio_sets_the_warmup(tiny_model, tmp_path):
    r = Run(tiny_model, tmp_path, sft_records(8), batch_size=1, warmup_ratio=0.5, learning_rate=1e-3).run()
    got = [e["learning_rate"] for e in r.events("step")]
    assert got[:5] == pytest.approx([0.0, 2.5e-4, 5e-4, 7.5e-4, 1e-3]) and r.loop.state["warmup_steps"] == 4


def test_weight_decay_shrinks_the_weights(tiny_model, tmp_path):
    records = sft_records(4)
    plain = Run(tiny_model, tmp_path / "a", records, batch_size=2, learning_rate=1e-2)
    before = plain.weights()
    plain.run()
    decayed = Run(tiny_model, tmp_path / "b", records, batch_size=2, learning_rate=1e-2, weight_decay=5.0).run()
    assert [e["loss"] for e in plain.events("step")][0] == decayed.events("step")[0]["loss"]  # same start
    p, d = plain.weights(), decayed.weights()
    assert any((p[n] - d[n]).abs().max() > 1e-6 for n in p)
    # AdamW's decoupled decay: the same update, minus lr * wd * w before it, at each of the 2 steps.
    b_names = [n for n in p if "lora_B" in n]
    assert sum(float(d[n].norm()) for n in b_names) < sum(float(p[n].norm()) for n in b_names)
    assert sum(float(before[n].norm()) for n in b_names) > 0


def test_max_grad_norm_clips_and_reports_the_norm(tiny_model, tmp_path):
    records = sft_records(4)
    clipped = Run(tiny_model, tmp_path / "a", records, batch_size=4, max_grad_norm=1e-3).run()
    free = Run(tiny_model, tmp_path / "b", records, batch_size=4, max_grad_norm=0.0).run()
    reported = clipped.events("step")[0]["extra"]["grad_norm"]
    # The norm before clipping is reported (the same for both: same weights, same batch) ...
    assert reported == pytest.approx(free.events("step")[0]["extra"]["grad_norm"], rel=1e-5)
    assert reported == pytest.approx(_norm(free.applied[0]), rel=1e-4) and reported > 1e-2
    # ... and the gradient applied is clipped to max_grad_norm, or left whole with 0.
    assert _norm(clipped.applied[0]) == pytest.approx(1e-3, rel=1e-3)
    assert clipped.loop.state["losses"][0]["grad_norm"] == reported


# -- validation and early stopping in a real worker ------------------------------------------------------------

def test_validation_early_stopping_best_adapter_and_retention(tiny_model, tmp_path):
    import torch
    from safetensors.torch import load_file

    root = tmp_path
    write_jsonl(root / "data" / "sft.jsonl", sft_records(24))
    # min_delta so large that no validation after the first counts as an improvement: the best is step 1,
    # and patience 2 stops the run at the 3rd validation (step 3 of 24).
    job_dir = make_job(root, "job-val", tiny_model, {
        **FAST, "dataset_path": "sft.jsonl", "batch_size": 2, "num_epochs": 3, "learning_rate": 1e-2,
        "validation_split": 0.25, "eval_every_steps": 1, "early_stopping_patience": 2,
        "early_stopping_min_delta": 100.0, "save_total_limit": 1}, checkpoint_every_steps=1000)
    rc, w = run_worker(job_dir)
    assert rc == 0, w.log()
    val = [e for e in w.of_type("eval") if e["phase"] == "validation"]
    assert [e["metrics"]["step"] for e in val] == [1, 2, 3]
    assert all(math.isfinite(e["metrics"]["validation_loss"]) for e in val)
    assert all(e["metrics"]["best_step"] == 1 for e in val)
    logs = [e["message"] for e in w.of_type("log")]
    assert any(m.startswith("early stopping at step 3") for m in logs), logs
    assert any("adapter: checkpoint-1, because step 1 has the lowest validation loss" in m for m in logs), logs
    assert w.of_type("result") and "early stopping" in w.of_type("result")[0]["message"]
    assert max(e["step"] for e in w.of_type("step")) == 3
    # The validation set: 3 of the 12 debates (6 records), written beside train.jsonl, never trained on.
    held = [json.loads(x) for x in (job_dir / "data" / "validation.jsonl").read_text().splitlines()]
    assert len(held) == 6
    metrics = json.loads((job_dir / "metrics.json").read_text())
    v = metrics["validation"]
    assert (v["best_step"], v["adapter_checkpoint"], v["early_stopped"], v["last_step"]) == (1, "checkpoint-1",
                                                                                          True, 3)
    assert [h["step"] for h in v["history"]] == [1, 2, 3] and v["best_loss"] == v["history"][0]["loss"]
    assert metrics["training_examples"] == 18
    # Retention: the newest checkpoint and the best one are kept, the others removed.
    kept = sorted(p.name for p in (job_dir / "checkpoints").iterdir())
    assert kept == ["checkpoint-1", "checkpoint-3"]
    # The adapter written is the best checkpoint's, not the last step's.
    adapter = load_file(job_dir / "adapter" / "adapter_model.safetensors")
    best = load_file(job_dir / "checkpoints" / "checkpoint-1" / "adapter_model.safetensors")
    last = load_file(job_dir / "checkpoints" / "checkpoint-3" / "adapter_model.safetensors")
    assert adapter.keys() == best.keys()
    assert all(torch.equal(adapter[k], best[k]) for k in adapter)
    assert any(not torch.equal(adapter[k], last[k]) for k in adapter)


def test_validation_off_by_default_changes_nothing(tiny_model, tmp_path):
    write_jsonl(tmp_path / "data" / "sft.jsonl", sft_records(8))
    job_dir = make_job(tmp_path, "job-plain", tiny_model, {**FAST, "dataset_path": "sft.jsonl", "batch_size": 4,
                                                          "save_total_limit": 1}, checkpoint_every_steps=1)
    rc, w = run_worker(job_dir)
    assert rc == 0, w.log()
    assert not [e for e in w.of_type("eval") if e["phase"] == "validation"]
    assert not (job_dir / "data" / "validation.jsonl").exists()
    metrics = json.loads((job_dir / "metrics.json").read_text())
    assert metrics["validation"] is None and metrics["training_examples"] == 8
    # Without validation there is no best: only the newest checkpoint stays.
    assert sorted(p.name for p in (job_dir / "checkpoints").iterdir()) == ["checkpoint-2"]


def test_dpo_validation_and_accumulation_in_a_real_worker(tiny_model, tmp_path):
    """DPO: the validation loss is the pair loss (its reference computed with the adapter off, so at step 0 of
    a zero-initialised adapter it would be log 2), and accumulation makes one step of two batches."""
    from tests.eval.conftest import known_pairs

    write_jsonl(tmp_path / "data" / "pairs.jsonl", known_pairs(10, seed=1))
    job_dir = make_job(tmp_path, "job-dpo", tiny_model, {
        **FAST, "method": "dpo", "dataset_path": "pairs.jsonl", "batch_size": 2, "gradient_accumulation_steps": 2,
        "learning_rate": 5e-3, "validation_split": 0.2, "eval_every_steps": 1}, checkpoint_every_steps=1000)
    rc, w = run_worker(job_dir)
    assert rc == 0, w.log()
    steps = w.of_type("step")
    assert [s["step"] for s in steps] == [1, 2] and steps[-1]["total_steps"] == 2  # 8 pairs: 4 batches, 2 steps
    assert steps[-1]["examples_seen"] == 8 and "reward_accuracy" in steps[0]["extra"]
    val = [e["metrics"] for e in w.of_type("eval") if e["phase"] == "validation"]
    assert [int(v["step"]) for v in val] == [1, 2]
    # Near log 2 after two small steps from the reference (a validation loss not on the DPO scale would not be).
    assert all(0.3 < v["validation_loss"] < 1.2 for v in val), val
    metrics = json.loads((job_dir / "metrics.json").read_text())
    assert metrics["validation"]["examples"] == 2 and metrics["training_examples"] == 8


def test_a_resumed_job_continues_its_validation_history(tiny_model, tmp_path):
    from tests.trainer_worker.conftest import Worker, set_resume

    write_jsonl(tmp_path / "data" / "sft.jsonl", sft_records(24))
    job_dir = make_job(tmp_path, "job-resume", tiny_model, {
        **FAST, "dataset_path": "sft.jsonl", "batch_size": 1, "num_epochs": 20, "learning_rate": 1e-3,
        "validation_split": 0.25, "eval_every_steps": 2, "early_stopping_patience": 1000}, checkpoint_every_steps=1000)
    first = Worker(job_dir)
    first.wait_for(lambda e: e["type"] == "eval" and e.get("phase") == "validation" and e["metrics"]["step"] >= 4,
                   timeout=300)
    first.terminate()
    assert first.wait(60) == 143
    before = [e["metrics"]["step"] for e in first.of_type("eval") if e.get("phase") == "validation"]
    stopped_at = max(e["step"] for e in first.of_type("checkpoint"))
    # The validation set on resume is the same one (split again from data/train.jsonl, all records).
    held = (job_dir / "data" / "validation.jsonl").read_text()
    set_resume(job_dir)
    second = Worker(job_dir)
    second.wait_for(lambda e: e["type"] == "eval" and e.get("phase") == "validation"
                    and e["metrics"]["step"] >= stopped_at + 4, timeout=300)
    second.terminate()
    assert second.wait(60) == 143
    state = json.loads(max((job_dir / "checkpoints").iterdir(), key=lambda p: int(p.name.split("-")[1]))
                       .joinpath("trainer_state.json").read_text())
    steps = [h["step"] for h in state["validation"]["history"]]
    assert steps[:len([s for s in before if s <= stopped_at])] == [s for s in before if s <= stopped_at]
    assert steps == sorted(set(steps)) and steps[-1] >= stopped_at + 4 and all(s % 2 == 0 for s in steps)
    assert (job_dir / "data" / "validation.jsonl").read_text() == held
