"""Fixtures of the speed-correctness tests: the tiny random Llama (built once per session) and small SFT/DPO
data. These tests check that what makes training fast does not change what is learned; the speed itself is
measured by ``benchmarks/train_bench.py``, never asserted here."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.support.tiny_model import build_tiny_model

WORDS = ("the contract court clause liability party agreement statute appeal judge risk evidence claim "
         "patient dose code test market answer reason because therefore however").split()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models"))


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def sft_records(n: int, seed: int = 0) -> list[dict]:
    """SFT records of varied length (so batches need padding)."""
    rng = random.Random(seed)
    return [{"instruction": "Answer the question the debate settled.", "input": _text(rng, 4, 40) + "?",
             "output": _text(rng, 3, 40) + ".",
             "metadata": {"debate_id": f"debate-{i:03d}", "consensus_confidence": 0.9, "rounds": 2,
                          "vertical": "legal"}} for i in range(n)]


def dpo_pairs(n: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    return [{"prompt": _text(rng, 4, 20) + "?", "chosen": _text(rng, 5, 40) + ".", "rejected": _text(rng, 5, 40) + "!",
             "metadata": {"debate_id": f"debate-{i:03d}", "confidence_diff": 0.5, "vertical": "legal"}}
            for i in range(n)]


@pytest.fixture(scope="session")
def bench_data(tmp_path_factory) -> Path:
    """A folder holding ``sft.jsonl`` and ``dpo.jsonl`` as the benchmark's ``--data-dir`` expects."""
    folder = tmp_path_factory.mktemp("bench-data")
    (folder / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sft_records(24)), encoding="utf-8")
    (folder / "dpo.jsonl").write_text("".join(json.dumps(r) + "\n" for r in dpo_pairs(16)), encoding="utf-8")
    return folder


def load_for_training(tiny_model: Path, spec):
    """``(tokenizer, loaded)``: the worker's own ``load_model`` with every LoRA B drawn non-zero (so every LoRA
    gradient is), in training mode."""
    import io

    import torch

    from services.trainer.worker.events import EventSink
    from services.trainer.worker.modeling import load_model, load_tokenizer

    tok = load_tokenizer(tiny_model)
    loaded = load_model(tiny_model, spec, tok, EventSink(io.StringIO()))
    with torch.no_grad():
        for name, p in loaded.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    loaded.model.train()
    return tok, loaded


def sft_batch(tok, n: int = 4):
    """``(examples, batch)``: ``n`` encoded SFT examples of ``sft_records`` and their collated batch."""
    from services.trainer.worker import encoding

    examples, _ = encoding.encode_records(tok, sft_records(8), 128)
    return examples[:n], encoding.collate(examples[:n], tok.pad_token_id)


def sft_loss_and_grads(loaded, examples, batch):
    """The SFT loss of ``batch`` (shared prefix, response only) and every trained parameter's gradient, the
    gradients cleared after."""
    from services.trainer.worker import logprobs

    loss, _ = logprobs.response_only_loss(loaded.causal_lm, batch["input_ids"], batch["attention_mask"],
                                          batch["labels"], logprobs.batch_prefix_len(examples))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in loaded.model.named_parameters() if p.requires_grad}
    loaded.model.zero_grad(set_to_none=True)
    return loss.detach(), grads
