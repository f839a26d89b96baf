"""Fixtures of the evaluation tests: the tiny random Llama (built once per session), LoRA models on it, preference
pairs whose right answer is known, and a small training loop over the worker's own objectives."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.support.tiny_model import build_tiny_model

TINY = "test/tiny-llama"
# Words the tiny tokenizer knows (it was trained on them), so sequences stay short.
WORDS = ("contract court clause liability party agreement statute precedent ruling appeal judge patient diagnosis "
         "treatment dose symptom clinical trial risk code function variable bug test compile error market price "
         "return portfolio asset").split()
TOPICS = {"legal": ("contract", "clause", "statute", "appeal", "party", "ruling"),
          "medical": ("patient", "dose", "symptom", "treatment", "trial", "diagnosis")}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("eval-models"), TINY)


@pytest.fixture(scope="session")
def tokenizer(tiny_model_dir):
    from services.trainer.worker.modeling import load_tokenizer

    return load_tokenizer(tiny_model_dir)


@pytest.fixture
def lora_model(tiny_model_dir):
    """A fresh LoRA adapter (B = 0: identical to the base until trained) on the tiny model, like a job's."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    base.config.use_cache = False
    return get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                           target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))


def known_pairs(n: int, seed: int, vertical: str = "legal") -> list[dict]:
    """Pairs whose ``chosen`` always follows one sentence pattern of the vertical and whose ``rejected`` is a
    word salad: a model trained to prefer ``chosen`` can learn it, and the preference carries to new pairs."""
    rng = random.Random(seed)
    topic = TOPICS[vertical]
    out = []
    for i in range(n):
        a, b = rng.choice(topic), rng.choice(topic)
        out.append({
            "prompt": f"Question {seed}-{i}: what about the {a} and the {b}?",
            "chosen": f"The court held that the {a} is void because the {b} is a risk.",
            "rejected": " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 12))) + ".",
            "metadata": {"debate_id": f"debate-{seed}-{i:03d}", "confidence_diff": 0.5, "vertical": vertical},
        })
    return out


def as_sft(pairs: list[dict]) -> list[dict]:
    return [{"instruction": p["prompt"], "input": "", "output": p["chosen"],
             "metadata": {"debate_id": p["metadata"]["debate_id"], "vertical": p["metadata"]["vertical"]}}
            for p in pairs]


def swapped(pairs: list[dict]) -> list[dict]:
    return [dict(p, chosen=p["rejected"], rejected=p["chosen"]) for p in pairs]


def train(peft_model, objective, steps: int, lr: float, batch_size: int = 4, seed: int = 0) -> list:
    """The worker loop's update (AdamW, clip 1.0, linear decay) over its seeded batch order; the step outputs."""
    import torch

    from services.trainer.worker.batching import batch_order

    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, (steps - s) / steps))
    peft_model.train()
    causal_lm = peft_model.get_base_model()
    outs, epoch = [], 0
    while len(outs) < steps:
        for batch in batch_order(objective.lengths, batch_size, seed, epoch):
            out = objective.step(causal_lm, batch)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            outs.append(SimpleNamespace(loss=float(out.loss.detach()), extra=out.extra, tokens=out.tokens))
            if len(outs) == steps:
                break
        epoch += 1
    return outs


class Recorder:
    """An ``EventSink`` writing into memory; ``events`` parses what was written."""

    def __init__(self) -> None:
        from services.trainer.worker.events import EventSink

        self.buffer = io.StringIO()
        self.sink = EventSink(self.buffer)

    @property
    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.buffer.getvalue().splitlines()]


def fake_job(tmp_path: Path, vertical: str = "legal", max_seq_length: int = 128):
    """The few JobConfig fields ``evaluate`` reads."""
    return SimpleNamespace(job_dir=tmp_path, job_id="job-eval-test", base_model=TINY, vertical=vertical,
                           spec=SimpleNamespace(max_seq_length=max_seq_length))
