"""QLoRA for real: a ``quantization: "4bit"`` or ``"8bit"`` job trains on bitsandbytes layers (this CPU runs
them), says so in its events and metrics.json, and falls back to full precision, with a warning that says why,
only where bitsandbytes really cannot run.

The fallback is caused, not mocked: the worker process runs with bitsandbytes unimportable (a ``sitecustomize``
on its ``PYTHONPATH`` blocks the import, as on a server where the package is missing), so transformers' own
quantized load fails with its ``ImportError``. A failure that is not bitsandbytes' (a corrupt model file) fails
the job instead of being hidden by the fallback.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from tests.trainer_worker.conftest import Worker, make_job, sft_records, write_jsonl

LAYER_CLASS = {"4bit": "Linear4bit", "8bit": "Linear8bitLt"}
N_RECORDS, BATCH = 8, 4
CONFIG = {"dataset_path": "sft.jsonl", "num_epochs": 1, "batch_size": BATCH, "learning_rate": 5e-3, "seed": 3}


def _quantizable_linears(model_path: Path) -> int:
    """nn.Linear layers of the full-precision model that bitsandbytes replaces: all but the LM head (which
    transformers keeps in full precision). Counted on the plain model, independently of the worker."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    return sum(1 for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and name != "lm_head")


@pytest.fixture(scope="module")
def expected_layers(tiny_model) -> int:
    n = _quantizable_linears(tiny_model)
    assert n == 14  # 2 layers x (q, k, v, o, gate, up, down)
    return n


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_load_model_quantizes_every_linear_layer_under_lora(tiny_model, expected_layers, quantization):
    import bitsandbytes as bnb

    from services.trainer.spec import TrainingSpec
    from services.trainer.worker.events import EventSink
    from services.trainer.worker.modeling import load_model, load_tokenizer

    out = io.StringIO()
    spec = TrainingSpec(quantization=quantization)
    loaded = load_model(tiny_model, spec, load_tokenizer(tiny_model), EventSink(out))
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert not [e for e in events if e["type"] == "warning"]  # no warning: nothing fell back
    assert loaded.quantization == quantization
    cls = getattr(bnb.nn, LAYER_CLASS[quantization])
    quantized = [name for name, m in loaded.model.named_modules() if isinstance(m, cls)]
    assert len(quantized) == expected_layers
    assert loaded.quantized_layers == {LAYER_CLASS[quantization]: expected_layers}
    # The LoRA adapters sit on the quantized layers: each target module's base layer is a bitsandbytes layer.
    for target in spec.target_modules:
        wrapped = [m for name, m in loaded.model.named_modules() if name.endswith(target) and hasattr(m, "base_layer")]
        assert wrapped and all(isinstance(m.base_layer, cls) for m in wrapped), target
    # The base weights are stored quantized (packed 4-bit in uint8, or int8), not as fp32 behind the layer.
    weight = loaded.model.get_base_model().model.layers[0].self_attn.q_proj.base_layer.weight
    assert str(weight.dtype) == ("torch.uint8" if quantization == "4bit" else "torch.int8")


def test_a_failure_other_than_bitsandbytes_fails_instead_of_falling_back(tiny_model, tmp_path):
    """A corrupt weights file is not "bitsandbytes unavailable": the job fails naming the model, no fallback."""
    import shutil

    from services.trainer.spec import TrainingSpec
    from services.trainer.worker.events import EventSink
    from services.trainer.worker.job import WorkerError
    from services.trainer.worker.modeling import load_model, load_tokenizer

    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated: unreadable whatever the precision
    out = io.StringIO()
    with pytest.raises(WorkerError, match=r"^cannot load the base model from .*broken-model \(4bit\): "):
        load_model(broken, TrainingSpec(quantization="4bit"), load_tokenizer(broken), EventSink(out))
    assert "bitsandbytes" not in out.getvalue()  # no fallback warning


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model):
    """An 8-bit job and a 4-bit job in a worker process where bitsandbytes cannot be imported (side by side)."""

    root = tmp_path_factory.mktemp("quant")
    write_jsonl(root / "data" / "sft.jsonl", sft_records(N_RECORDS, seed=4))
    blocker = root / "no-bitsandbytes"
    blocker.mkdir()
    # Python imports sitecustomize at start-up: this worker process cannot import bitsandbytes at all.
    (blocker / "sitecustomize.py").write_text('import sys\n\nsys.modules["bitsandbytes"] = None\n')

    pythonpath = os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    eight = Worker(make_job(root, "job-8bit", tiny_model, dict(CONFIG, quantization="8bit")))
    blocked = Worker(make_job(root, "job-blocked", tiny_model, dict(CONFIG, quantization="4bit")),
                     env={"PYTHONPATH": pythonpath})
    return {"8bit": (eight.wait(400), eight), "blocked": (blocked.wait(400), blocked)}


def _finished(rc: int, w) -> dict:
    assert rc == 0, w.log()
    assert [e["type"] for e in w.events][-1] == "result" and not w.of_type("error")
    metrics = json.loads((w.job_dir / "metrics.json").read_text())
    assert metrics["steps"] == metrics["total_steps"] == N_RECORDS // BATCH
    assert len(w.of_type("step")) == N_RECORDS // BATCH
    return metrics


def test_an_8bit_job_trains_on_bitsandbytes_int8_layers(runs, expected_layers):
    rc, w = runs["8bit"]
    metrics = _finished(rc, w)
    assert metrics["quantization"] == "8bit"
    assert metrics["quantized_layers"] == {"Linear8bitLt": expected_layers}
    ready = [e["message"] for e in w.of_type("log") if e["message"].startswith("model ready:")]
    assert len(ready) == 1
    assert ready[0].startswith(f"model ready: 8bit weights ({expected_layers} bitsandbytes Linear8bitLt layers), ")
    assert not [e for e in w.of_type("warning") if "bitsandbytes" in e["message"]]
    assert (w.job_dir / "adapter" / "adapter_model.safetensors").is_file()


def test_without_bitsandbytes_a_4bit_job_trains_in_full_precision_and_says_why(runs):
    rc, w = runs["blocked"]
    metrics = _finished(rc, w)
    assert metrics["quantization"] == "none" and metrics["quantized_layers"] == {}
    warnings = [e["message"] for e in w.of_type("warning") if "bitsandbytes" in e["message"]]
    assert len(warnings) == 1
    assert warnings[0].startswith("bitsandbytes 4bit unavailable here (loading the model quantized failed: "
                                  "ImportError: ")
    assert "requires bitsandbytes" in warnings[0]  # transformers' own reason, passed on
    assert warnings[0].endswith("; training in full precision")
    ready = [e["message"] for e in w.of_type("log") if e["message"].startswith("model ready:")]
    assert ready[0].startswith("model ready: none weights, compute float32")
    assert (w.job_dir / "adapter" / "adapter_model.safetensors").is_file()
