"""Tiny random causal LMs of the attention kinds the packed DPO row must handle (built in memory, no files):
Llama with SDPA and with eager attention, Qwen2 (a global and a sliding layer), Mistral with a sliding window
shorter than the test sequences, Gemma 2 (sliding and global layers alternating, attention soft-capping, eager
by default). Used by the packed-vs-separate equivalence tests (``tests/speed/test_packed_kinds.py``)."""

from __future__ import annotations

VOCAB = 97
SLIDING_WINDOW = 6
"""Shorter than every test sequence, so a lost window changes the figures."""

KINDS = ("llama-sdpa", "llama-eager", "qwen2", "mistral-sliding", "gemma2")


def tiny_causal_lm(kind: str, seed: int = 0):
    """A fp32 random model of ``kind`` (one of ``KINDS``) in eval mode, hidden size 32, 2 layers."""
    import torch
    import transformers as tf

    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0,
                  tie_word_embeddings=False, initializer_range=0.3)
    if kind in ("llama-sdpa", "llama-eager"):
        config, cls = tf.LlamaConfig(**common), tf.LlamaForCausalLM
        attn = "sdpa" if kind == "llama-sdpa" else "eager"
    elif kind == "qwen2":
        # Layer 0 global, layer 1 sliding (Qwen2's use_sliding_window with max_window_layers).
        config = tf.Qwen2Config(**common, use_sliding_window=True, sliding_window=SLIDING_WINDOW, max_window_layers=1)
        cls, attn = tf.Qwen2ForCausalLM, "sdpa"
    elif kind == "mistral-sliding":
        config, cls, attn = tf.MistralConfig(**common, sliding_window=SLIDING_WINDOW), tf.MistralForCausalLM, "sdpa"
    elif kind == "gemma2":
        config = tf.Gemma2Config(**common, head_dim=8, sliding_window=SLIDING_WINDOW, query_pre_attn_scalar=8)
        cls, attn = tf.Gemma2ForCausalLM, "eager"
    else:
        raise ValueError(kind)
    config._attn_implementation = attn
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(config)
    model.config._attn_implementation = attn
    return model.eval()
