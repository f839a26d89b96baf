"""The worker as the service runs it: a real subprocess on the tiny model, events on stdout, files in the job
folder. Side by side (the imports dominate, so overlapping them keeps this folder quick): an uninterrupted run
(A), the same job stopped by SIGTERM (B) then resumed (C), and a job with the default config (4-bit) fetching
its data from a real exporter process (D)."""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import pytest

from tests.trainer_worker.conftest import (
    ExporterProcess,
    Worker,
    debate,
    make_job,
    run_worker,
    set_resume,
    sft_records,
    write_jsonl,
)

CONFIG = {"dataset_path": "sft.jsonl", "quantization": "none", "num_epochs": 3, "batch_size": 2,
          "learning_rate": 5e-3, "seed": 7}
N_RECORDS = 24
TOTAL_STEPS = 3 * N_RECORDS // 2
EVERY = 10


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("runs")
    write_jsonl(root / "data" / "sft.jsonl", sft_records(N_RECORDS))
    base_hash = sha256(tiny_model / "model.safetensors")
    a_dir = make_job(root, "job-a", tiny_model, CONFIG, checkpoint_every_steps=EVERY)
    b_dir = make_job(root, "job-b", tiny_model, CONFIG, checkpoint_every_steps=EVERY)
    a, b = Worker(a_dir), Worker(b_dir)
    exporter = ExporterProcess(root)
    try:
        d = start_exporter_job(root, tiny_model, exporter)
        # Generous: on a shared 2-core box the imports alone can take a minute.
        b.wait_for(lambda e: e["type"] == "step" and e["step"] >= 2, timeout=300)
        t_stop = time.monotonic()
        b.terminate()
        rc_b = b.wait(30)
        stop_seconds = time.monotonic() - t_stop
        b_events = list(b.events)
        set_resume(b_dir)
        c = Worker(b_dir)
        rc_a, rc_d, rc_c = a.wait(400), d.wait(400), c.wait(400)
    finally:
        exporter.close()
    return {"a": (rc_a, a), "b": (rc_b, b_events, stop_seconds), "c": (rc_c, c), "d": (rc_d, d), "root": root,
            "base_hash": base_hash, "model": tiny_model}


def start_exporter_job(root: Path, model: Path, exporter: ExporterProcess) -> Worker:
    """Imports debates into the exporter, then starts a legal job with the default config on its data."""
    from aragora.training.v1 import exporter_pb2 as pb

    records = ([debate(i, "legal", 0.9) for i in range(14)] + [debate(i, "legal", 0.5) for i in range(14, 18)]
               + [debate(i, "medical", 0.9) for i in range(6)])
    stub = exporter.stub()
    resp = stub.ImportDebates(iter([pb.ImportDebatesRequest(record_json=json.dumps(r)) for r in records]),
                              timeout=30)
    assert resp.imported == len(records) and resp.rejected == 0
    expected = [r for m in stub.ExportSFT(pb.ExportSFTRequest(min_confidence=0.7, vertical="legal",
                                                              split=pb.SPLIT_TRAIN), timeout=30)
                for r in m.records]
    assert 0 < len(expected) < 14  # some legal debates are held out; the 0.5 ones and medical are filtered out
    job = make_job(root, "job-exp", model, {"num_epochs": 1, "batch_size": 4},
                   exporter_address=exporter.address, vertical="legal")
    w = Worker(job)
    w.expected = expected
    return w


def test_events_in_order_and_well_formed(runs):
    rc, a = runs["a"]
    assert rc == 0, a.log()
    assert a.bad_lines == []  # nothing but JSON objects on the event stream (library prints go to stderr)
    kinds = [e["type"] for e in a.events]
    assert kinds[0] == "status" and a.events[0]["status"] == "preparing"
    assert kinds.index("data") < kinds.index("status", 1) < kinds.index("step")
    assert [e["status"] for e in a.of_type("status")] == ["preparing", "training"]
    assert kinds[-1] == "result" and "error" not in kinds
    for e in a.events:
        assert isinstance(e["message"], str) and e["message"]

    data = a.of_type("data")[0]
    assert data["training_examples"] == N_RECORDS and data["training_debates"] == N_RECORDS // 2
    assert data["total_steps"] == TOTAL_STEPS

    steps = a.of_type("step")
    assert [s["step"] for s in steps] == list(range(1, TOTAL_STEPS + 1))
    for s in steps:
        assert s["total_steps"] == TOTAL_STEPS and s["examples_seen"] == 2 * s["step"]
        assert s["epoch"] == pytest.approx(s["step"] / (N_RECORDS // 2), abs=1e-3)
        assert s["progress"] == pytest.approx(s["step"] / TOTAL_STEPS, abs=1e-5)
        assert math.isfinite(s["loss"]) and s["tokens_per_second"] > 0 and set(s["extra"]) == {"grad_norm"}
    lrs = [s["learning_rate"] for s in steps]
    assert lrs[0] == pytest.approx(5e-3) and all(x > y for x, y in zip(lrs, lrs[1:])) and lrs[-1] > 0

    # Checkpoints every 10 steps and at each epoch end (12, 24, 36), reported after the step they hold.
    cps = a.of_type("checkpoint")
    assert [c["step"] for c in cps] == [10, 12, 20, 24, 30, 36]
    for c in cps:
        assert c["path"] == f"checkpoints/checkpoint-{c['step']}"
        assert kinds.index("checkpoint") > kinds.index("step")
        state = json.loads((a.job_dir / c["path"] / "trainer_state.json").read_text())
        assert state["step"] == c["step"]
        assert {p.name for p in (a.job_dir / c["path"]).iterdir()} >= {
            "adapter_model.safetensors", "adapter_config.json", "optimizer.pt", "scheduler.pt", "rng_state.pt"}

    result = a.events[-1]
    metrics = json.loads((a.job_dir / result["metrics_path"]).read_text())
    assert result["final_loss"] == metrics["final_loss"] == steps[-1]["loss"]
    assert metrics["training_examples"] == N_RECORDS and metrics["training_debates"] == N_RECORDS // 2
    assert [x["loss"] for x in metrics["losses"]] == [s["loss"] for s in steps]
    assert metrics["quantization"] == "none" and metrics["steps"] == TOTAL_STEPS
    # What it trained on, exactly.
    trained = [json.loads(x) for x in (a.job_dir / "data" / "train.jsonl").read_text().splitlines()]
    assert trained == sft_records(N_RECORDS)


def test_training_learns(runs):
    _, a = runs["a"]
    losses = [s["loss"] for s in a.of_type("step")]
    per_epoch = [sum(losses[i:i + 12]) / 12 for i in range(0, 36, 12)]
    assert per_epoch[2] < per_epoch[0] - 0.05, per_epoch


def test_lora_weights_moved_and_base_weights_untouched(runs):
    import torch
    from peft import get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    _, a = runs["a"]
    adapter = a.job_dir / "adapter"
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {
        p.name for p in adapter.iterdir()}
    weights = load_file(adapter / "adapter_model.safetensors")
    assert weights and all("lora_A" in k or "lora_B" in k for k in weights)  # no base weight in the adapter
    assert len(weights) == 2 * 2 * 2  # 2 layers x (q_proj, v_proj) x (A, B)

    # The same seed gives the same initial adapter: B starts at zero, A at a seeded random draw.
    from services.trainer.spec import TrainingSpec

    spec = TrainingSpec.model_validate(json.loads((a.job_dir / "job.json").read_text())["training_config"])
    base = AutoModelForCausalLM.from_pretrained(runs["model"])
    torch.manual_seed(spec.seed)
    init = {k.replace(".default", ""): v.detach().clone()
            for k, v in get_peft_model(base, spec.to_lora_config()).named_parameters() if "lora_" in k}
    for name, trained in weights.items():
        start = init[name]
        assert not torch.allclose(trained, start), f"{name} did not move"
        if "lora_B" in name:
            assert torch.count_nonzero(start) == 0 and torch.count_nonzero(trained) > 0
    assert sha256(runs["model"] / "model.safetensors") == runs["base_hash"]
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["lora_alpha"] == 16 and config["base_model_name_or_path"] == "test/tiny-llama"


def test_adapter_loads_with_peft_and_generates(runs):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, a = runs["a"]
    adapter = a.job_dir / "adapter"
    tok = AutoTokenizer.from_pretrained(adapter)
    base = AutoModelForCausalLM.from_pretrained(runs["model"])
    prompt = tok.apply_chat_template([{"role": "user", "content": "Answer the question. the court?"}],
                                     add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        base_logits = base(**prompt).logits
    model = PeftModel.from_pretrained(base, adapter)
    model.eval()
    with torch.no_grad():
        tuned_logits = model(**prompt).logits
        out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]
    assert isinstance(tok.decode(out[0, prompt["input_ids"].shape[1]:]), str)
    assert (tuned_logits - base_logits).abs().max() > 1e-3  # the adapter changes what the model says


def test_sigterm_writes_a_checkpoint_then_exits_143(runs):
    rc, events, seconds = runs["b"]
    assert rc == 143
    assert seconds < 5  # within the service's grace before SIGKILL
    last_step = max(e["step"] for e in events if e["type"] == "step")
    cps = [e for e in events if e["type"] == "checkpoint"]
    assert cps and cps[-1]["step"] == last_step and "stopping" in cps[-1]["message"]
    assert not any(e["type"] in ("result", "error") for e in events)


def test_resume_continues_the_step_count_and_optimizer_state(runs):
    import torch
    from safetensors.torch import load_file

    rc, c = runs["c"]
    assert rc == 0, c.log()
    _, b_events, _ = runs["b"]
    stopped_at = max(e["step"] for e in b_events if e["type"] == "checkpoint")
    steps = c.of_type("step")
    assert steps[0]["step"] == stopped_at + 1 and steps[-1]["step"] == TOTAL_STEPS
    assert any(e["type"] == "log" and f"resumed from checkpoint-{stopped_at}" in e["message"] for e in c.events)
    assert steps[0]["examples_seen"] == 2 * (stopped_at + 1)

    # The resumed run is the uninterrupted run: same data order, same LR schedule, same optimizer moments,
    # same dropout masks (RNG restored), hence the same losses and the same final adapter.
    _, a = runs["a"]
    a_losses = {s["step"]: s["loss"] for s in a.of_type("step")}
    for s in steps:
        assert s["loss"] == pytest.approx(a_losses[s["step"]], rel=1e-4, abs=1e-5), s["step"]
        assert s["learning_rate"] == pytest.approx(a.of_type("step")[s["step"] - 1]["learning_rate"])
    wa = load_file(a.job_dir / "adapter" / "adapter_model.safetensors")
    wc = load_file(c.job_dir / "adapter" / "adapter_model.safetensors")
    for k in wa:
        assert torch.allclose(wa[k], wc[k], atol=1e-5), k
    metrics = json.loads((c.job_dir / "metrics.json").read_text())
    assert [x["step"] for x in metrics["losses"]] == list(range(1, TOTAL_STEPS + 1))


def test_bad_data_fails_with_the_line_and_reason(tmp_path, tiny_model):
    write_jsonl(tmp_path / "data" / "bad.jsonl", [json.dumps(r) for r in sft_records(3)] +
                ['{"instruction": "x", "input": "y"}', "not json", '{"instruction": "a", "output": 5}'])
    job = make_job(tmp_path, "job-bad", tiny_model, {"dataset_path": "bad.jsonl"})
    rc, w = run_worker(job, timeout=180)
    assert rc == 1
    assert [e["type"] for e in w.events] == ["status", "error"]
    msg = w.events[-1]["message"]
    assert msg.startswith("dataset_path bad.jsonl: 3 bad records: line 4: missing or empty field 'output'")
    assert "line 5: invalid JSON" in msg and "line 6: field 'output' must be a string" in msg
    assert not (job / "adapter").exists() and not (job / "checkpoints").exists()


def test_unreachable_exporter_fails_after_bounded_retries(tmp_path, tiny_model):
    job = make_job(tmp_path, "job-noexp", tiny_model, {}, exporter_address="127.0.0.1:9", exporter_retry_seconds=1.5)
    rc, w = run_worker(job, timeout=180)
    assert rc == 1
    # Retries for the budget (1.5 s), then gives up: timed from the first event, so the worker's start (imports,
    # slow on a loaded 2-core machine) does not count; the default budget (60 s) would exceed the bound.
    assert 1.5 <= w.arrivals[-1] - w.arrivals[0] < 25
    kinds = [e["type"] for e in w.events]
    assert kinds == ["status", "warning", "error"]
    assert "retrying for up to 1.5 s" in w.events[1]["message"]
    assert w.events[-1]["message"].startswith("exporter unavailable at 127.0.0.1:9: ")


def test_missing_model_folder_fails_clearly(tmp_path, tiny_model):
    write_jsonl(tmp_path / "data" / "sft.jsonl", sft_records(4))
    job = make_job(tmp_path, "job-nomodel", tiny_model, {"dataset_path": "sft.jsonl"})
    spec = json.loads((job / "job.json").read_text())
    spec["model_path"] = str(tmp_path / "gone")
    (job / "job.json").write_text(json.dumps(spec))
    rc, w = run_worker(job, timeout=180)
    assert rc == 1
    assert w.events[-1]["type"] == "error"
    assert w.events[-1]["message"] == f"base model folder {tmp_path / 'gone'} has no config.json (was it provisioned?)"


def test_job_trains_on_the_exporters_sft_export_with_default_4bit(runs):
    rc, d = runs["d"]
    assert rc == 0, d.log()
    kinds = [e["type"] for e in d.events]
    assert kinds[-1] == "result" and "error" not in kinds
    trained = [json.loads(x) for x in (d.job_dir / "data" / "train.jsonl").read_text().splitlines()]
    # Exactly the exporter's SFT export of the job's vertical, train split, min_confidence 0.7 (the default).
    assert [t["metadata"]["debate_id"] for t in trained] == [r.metadata.debate_id for r in d.expected]
    assert [(t["instruction"], t["input"], t["output"]) for t in trained] == [
        (r.instruction, r.input, r.output) for r in d.expected]
    assert all(t["metadata"]["vertical"] == "legal" and t["metadata"]["consensus_confidence"] >= 0.7
               for t in trained)
    data = d.of_type("data")[0]
    assert data["training_examples"] == data["training_debates"] == len(d.expected)

    # quantization defaults to 4bit, and bitsandbytes runs on this CPU: the job trained on NF4 layers (every
    # linear layer but the LM head of the 2-layer tiny Llama: 2 x 7). Where bitsandbytes cannot run the job
    # falls back to full precision with a warning (test_quantization.py causes that).
    metrics = json.loads((d.job_dir / "metrics.json").read_text())
    warnings = [e["message"] for e in d.of_type("warning")]
    assert metrics["quantization"] == "4bit" and metrics["quantized_layers"] == {"Linear4bit": 14}
    assert not any("bitsandbytes" in w for w in warnings)
    assert any(e["message"].startswith("model ready: 4bit weights (14 bitsandbytes Linear4bit layers), ")
               for e in d.of_type("log"))
    assert (d.job_dir / "adapter" / "adapter_model.safetensors").is_file()
