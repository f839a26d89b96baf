"""The forward that SFT, DPO and the evaluation call: a batch's shared prefix runs once, the LM head only where
a next token is scored.

Every sequence of a batch usually starts with the same tokens: the chat template's system prompt and the
instruction every debate record carries (61 tokens of ~190 on the sample debates with SmolLM2's template). The
prefix is run once, as a batch of one, with the key/value cache on; its keys and values are repeated across the
batch and the rest of each row runs on top of them, with position ids continuing after the prefix. Gradients
flow through the cache into the prefix's computation, so the LoRA weights get the same gradients as from the
plain padded batch (``tests/speed/test_equivalence.py``), for (batch - 1) x prefix fewer tokens of work.

Not with gradient checkpointing while training (transformers drops the cache inside checkpointed layers): the
plain forward runs then.

LoRA dropout: the prefix runs once, so its tokens draw one dropout mask that every row of the batch shares
(each row's own tokens keep their own masks). Each sequence still sees a correctly distributed mask, so the
expected loss and gradient are unchanged; only the rows' noise on the prefix is correlated. With
``lora_dropout`` 0 the result equals the plain batch's to rounding.
"""

from __future__ import annotations

import inspect
from functools import lru_cache

MIN_SHARED_PREFIX = 8
"""Shorter shared prefixes run with the rest (the second forward call would cost more than it saves)."""


def shared_prefix_len(rows: list[list[int]], limit: int) -> int:
    """Tokens at the start that every row has in common, at most ``limit``; 0 when fewer than
    ``MIN_SHARED_PREFIX`` or for a single row (nothing to share)."""
    if len(rows) < 2 or limit < MIN_SHARED_PREFIX:
        return 0
    first, n = rows[0], 0
    top = min(limit, *(len(r) for r in rows))
    while n < top and all(r[n] == first[n] for r in rows[1:]):
        n += 1
    return n if n >= MIN_SHARED_PREFIX else 0


@lru_cache(maxsize=None)
def _takes_cache(decoder_class: type) -> bool:
    return "cache" in inspect.signature(decoder_class.forward).parameters


def can_share(decoder) -> bool:
    """False where the cache would be dropped (gradient checkpointing in a training forward) or where the
    decoder takes no ``cache`` argument (an architecture outside transformers' current cache API)."""
    import torch

    if getattr(decoder, "gradient_checkpointing", False) and decoder.training and torch.is_grad_enabled():
        return False
    return _takes_cache(type(decoder))


def decoder_hidden(causal_lm, input_ids, attention_mask=None, position_ids=None, prefix_len: int = 0):
    """The decoder's last hidden states of positions ``prefix_len`` onwards (``[batch, width - prefix_len,
    hidden]``), the first ``prefix_len`` tokens (the same in every row, all real tokens) run once.

    ``attention_mask``: None, 2-D ``[batch, width]`` (1 = token, 0 = padding) or a custom 4-D boolean
    ``[batch, 1, width, width]`` (True = may attend); ``position_ids``: ``[batch, width]`` or None (0, 1, ...).
    ``prefix_len`` 0 (or a model/mode where the cache cannot be used): one plain forward, and the hidden states
    are cut at ``prefix_len`` afterwards.
    """
    import torch

    decoder = causal_lm.get_decoder()
    if prefix_len <= 0 or not can_share(decoder):
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=False).last_hidden_state
        return hidden[:, prefix_len:] if prefix_len > 0 else hidden
    from transformers import DynamicCache

    batch, width = input_ids.shape
    device = input_ids.device
    if position_ids is None:
        position_ids = torch.arange(width, device=device).unsqueeze(0).expand(batch, width)
    cache = DynamicCache(config=decoder.config)
    decoder(input_ids=input_ids[:1, :prefix_len], position_ids=position_ids[:1, :prefix_len], cache=cache,
            use_cache=True)
    cache.batch_repeat_interleave(batch)
    if attention_mask is not None and attention_mask.dim() == 4:
        mask = attention_mask[:, :, prefix_len:, :]  # the rest's queries against every key, prefix included
    elif attention_mask is not None:
        mask = attention_mask  # 2-D over prefix + rest, as transformers expects with a cache
    else:
        mask = None
    return decoder(input_ids=input_ids[:, prefix_len:], attention_mask=mask,
                   position_ids=position_ids[:, prefix_len:], cache=cache, use_cache=True).last_hidden_state


def lm_head_logits(causal_lm, hidden):
    """The LM head on the given hidden states (only the positions whose next token is scored), with the
    model's final logit soft-capping where it has one (Gemma 2)."""
    import torch

    logits = causal_lm.get_output_embeddings()(hidden)
    cap = getattr(causal_lm.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits
