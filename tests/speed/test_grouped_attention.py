"""Grouped-query attention grouped by torch's kernel on a CPU (``modeling.group_gqa_attention``): the worker's
load turns it on for a GQA model, and the loss and LoRA gradients equal those with transformers repeating the
key/value heads (its default), through the shared-prefix path and the packed DPO pairs alike. The speed is
measured in the module's text (steps interleaved in one process)."""

from __future__ import annotations

import os

import pytest

from services.trainer.worker import modeling


@pytest.fixture
def gqa_env(monkeypatch):
    monkeypatch.delenv(modeling.GQA_ENV, raising=False)
    yield
    monkeypatch.delenv(modeling.GQA_ENV, raising=False)


def test_only_for_a_gqa_model(gqa_env, monkeypatch):
    from types import SimpleNamespace

    assert not modeling.group_gqa_attention(SimpleNamespace(num_attention_heads=4, num_key_value_heads=4))
    assert not modeling.group_gqa_attention(SimpleNamespace(num_attention_heads=4))
    assert modeling.GQA_ENV not in os.environ
    monkeypatch.setenv(modeling.GQA_ENV, "0")  # an explicit value wins
    assert not modeling.group_gqa_attention(SimpleNamespace(num_attention_heads=4, num_key_value_heads=2))
    monkeypatch.delenv(modeling.GQA_ENV)
    assert modeling.group_gqa_attention(SimpleNamespace(num_attention_heads=4, num_key_value_heads=2))
    assert os.environ[modeling.GQA_ENV] == "1"


def test_loss_and_gradients_equal_repeated_heads(tiny_model, gqa_env, monkeypatch):
    import torch
    import transformers.integrations.sdpa_attention as sdpa

    from services.trainer.spec import TrainingSpec
    from services.trainer.worker import encoding, logprobs
    from tests.speed.conftest import dpo_pairs, load_for_training, sft_batch

    spec = TrainingSpec(quantization="none", gradient_checkpointing=False, lora_dropout=0.0,
                        target_modules=["q_proj", "k_proj", "v_proj"])
    tok, loaded = load_for_training(tiny_model, spec)
    config = loaded.causal_lm.config
    assert config.num_key_value_heads < config.num_attention_heads  # the tiny model is a GQA model
    assert loaded.grouped_attention and os.environ[modeling.GQA_ENV] == "1"
    examples, batch = sft_batch(tok)
    pairs, _ = encoding.encode_pairs(tok, dpo_pairs(4), 128)
    seen = []
    original = sdpa.use_gqa_in_sdpa

    def spy(*args, **kwargs):
        seen.append(original(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(sdpa, "use_gqa_in_sdpa", spy)

    def loss_and_grads():
        loss, _ = logprobs.response_only_loss(loaded.causal_lm, batch["input_ids"], batch["attention_mask"],
                                              batch["labels"], logprobs.batch_prefix_len(examples))
        sums, _ = logprobs.pair_logps(loaded.causal_lm, pairs, tok.pad_token_id, torch.device("cpu"))
        chosen, rejected = sums.chunk(2)
        total = loss + chosen.sum() * 1e-3 - rejected.sum() * 1e-3
        total.backward()
        grads = {n: p.grad.clone() for n, p in loaded.model.named_parameters() if p.requires_grad}
        loaded.model.zero_grad(set_to_none=True)
        return loss.detach(), chosen.detach(), rejected.detach(), grads

    grouped = loss_and_grads()
    assert seen and all(seen)
    os.environ[modeling.GQA_ENV] = "0"
    seen.clear()
    repeated = loss_and_grads()
    assert seen and not all(seen)  # transformers' default: the heads repeated wherever there is a mask
    for a, b in zip(grouped[:3], repeated[:3]):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), (a, b)
    for name in grouped[3]:
        assert repeated[3][name].abs().max() > 0, name
        assert torch.allclose(grouped[3][name], repeated[3][name], atol=1e-5, rtol=1e-4), name
