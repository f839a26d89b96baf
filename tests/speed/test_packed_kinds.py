"""The packed DPO row (prompt + chosen + rejected in one row, a custom 4-D mask) and the shared-prefix SFT path
(the prefix's key/value cache) give the figures and gradients of separate sequences on every kind of attention
the catalogue's models use: Llama with SDPA and with eager attention, Qwen2 with a global and a sliding layer,
Mistral with a sliding window shorter than the rows, Gemma 2 (eager, soft-capped, sliding + global layers).
Where packing cannot be made exact (FlashAttention, ALiBi) the pair runs as two sequences, and the job says so.
A control shows each guarded kind really differs with the unguarded boolean mask, so these tests can fail."""

from __future__ import annotations

import random

import pytest

from tests.support.tiny_kinds import KINDS, SLIDING_WINDOW, VOCAB, tiny_causal_lm

ATOL = 1e-4


def _pairs(seed: int = 0):
    from services.trainer.worker.encoding import EncodedPair

    rng = random.Random(seed)
    ids = lambda a, b: [rng.randrange(3, VOCAB) for _ in range(rng.randint(a, b))]  # noqa: E731
    shared = ids(10, 10)  # a shared prompt start longer than MIN_SHARED_PREFIX: the prefix path runs
    return [EncodedPair(shared + ids(2, 6), ids(3, 12), ids(3, 12)) for _ in range(3)]


def _separate(model, pairs):
    """Every answer as its own ``prompt + answer`` sequence, one forward each (no padding, no sharing)."""
    import torch

    from services.trainer.worker.logprobs import sequence_logps

    seqs = [p.sequences()[0] for p in pairs] + [p.sequences()[1] for p in pairs]
    return torch.cat([sequence_logps(model, [s], 0, torch.device("cpu"))[0] for s in seqs])


def _grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_close_grads(a: dict, b: dict):
    import torch

    assert a.keys() == b.keys() and a
    for name in a:
        scale = max(1.0, float(b[name].abs().max()))
        assert torch.allclose(a[name], b[name], atol=ATOL * scale, rtol=1e-3), name


@pytest.mark.parametrize("kind", KINDS)
def test_packed_pairs_equal_separate_sequences(kind):
    import torch

    from services.trainer.worker.logprobs import packing_plan, pair_logps

    model = tiny_causal_lm(kind)
    pairs = _pairs()
    assert max(p.length for p in pairs) > 2 * SLIDING_WINDOW
    assert packing_plan(model)[0] == "packed"
    weights = torch.linspace(0.5, 1.5, 2 * len(pairs))
    packed, counts = pair_logps(model, pairs, 0, torch.device("cpu"))
    g_packed = _grads(model, (packed * weights).sum())
    separate = _separate(model, pairs)
    g_separate = _grads(model, (separate * weights).sum())
    assert torch.allclose(packed, separate, atol=ATOL), (packed - separate).abs().max()
    assert counts.tolist() == [len(p.chosen) for p in pairs] + [len(p.rejected) for p in pairs]
    _assert_close_grads(g_packed, g_separate)


@pytest.mark.parametrize("kind", KINDS)
def test_shared_prefix_sft_path_equals_separate_sequences(kind):
    """``sequence_logps`` of a batch whose rows share their start (the prefix's cache, where the model allows
    it) equals each sequence alone, values and gradients."""
    import torch

    from services.trainer.worker.logprobs import sequence_logps

    model = tiny_causal_lm(kind)
    pairs = _pairs(1)
    seqs = [p.sequences()[0] for p in pairs] + [p.sequences()[1] for p in pairs]
    weights = torch.linspace(0.5, 1.5, len(seqs))
    batched, _ = sequence_logps(model, seqs, 0, torch.device("cpu"))
    g_batched = _grads(model, (batched * weights).sum())
    alone = _separate(model, pairs)
    g_alone = _grads(model, (alone * weights).sum())
    assert torch.allclose(batched, alone, atol=ATOL), (batched - alone).abs().max()
    _assert_close_grads(g_batched, g_alone)


@pytest.mark.parametrize("kind", ["llama-eager", "mistral-sliding", "gemma2", "qwen2"])
def test_the_unguarded_boolean_mask_is_wrong_on_these_kinds(kind, monkeypatch):
    """The control: with the mask as it was (boolean, no window) the packed figures differ from the separate
    ones, so the equivalence above is the guards' doing."""
    import torch

    from services.trainer.worker import logprobs

    model = tiny_causal_lm(kind)
    pairs = _pairs()
    monkeypatch.setattr(logprobs, "packed_mask", lambda lm, allowed, positions, dtype: allowed.unsqueeze(1))
    with torch.no_grad():
        try:
            packed, _ = logprobs.pair_logps(model, pairs, 0, torch.device("cpu"))
        except RuntimeError:
            return  # a shape error is wrong too (the sliding cache cut the prefix)
        separate = _separate(model, pairs)
    assert (packed - separate).abs().max() > 1e-2


def test_models_packing_cannot_serve_run_pairs_separately():
    import torch
    import transformers as tf

    from services.trainer.worker.logprobs import describe_plan, packing_plan, pair_logps

    flash = tiny_causal_lm("llama-sdpa")
    flash.config._attn_implementation = "flash_attention_2"
    mode, why = packing_plan(flash)
    assert mode == "separate" and "FlashAttention" in why
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        bloom = tf.BloomForCausalLM(tf.BloomConfig(vocab_size=VOCAB, hidden_size=32, n_layer=2, n_head=4,
                                                   initializer_range=0.3)).eval()
    mode, why = packing_plan(bloom)
    assert mode == "separate" and "ALiBi" in why
    assert describe_plan(bloom).startswith("DPO pairs run as separate sequences (the prompt twice), not packed: ALiBi")
    pairs = _pairs()
    with torch.no_grad():
        got, _ = pair_logps(bloom, pairs, 0, torch.device("cpu"))
        assert torch.allclose(got, _separate(bloom, pairs), atol=ATOL)
    gemma = describe_plan(tiny_causal_lm("gemma2"))
    assert gemma == ("DPO pairs run packed (prompt once, both answers in one row): eager attention, additive float "
                     f"mask; sliding window {SLIDING_WINDOW} built into the mask of the sliding layers (one mask per "
                     "layer type)")
