"""Log-probabilities: the forward that SFT, DPO and the evaluation call, and what they read off it.

- ``decoder_hidden``: a batch's shared prefix runs once, the rest on top of its key/value cache.
- ``lm_head_logits``: the LM head only where a next token is scored (no full-vocabulary logits for prompts).
- ``response_token_logps`` / ``response_only_loss``: the trained tokens of padded SFT sequences.
- ``sequence_logps``: summed response log-probabilities per sequence (DPO reference, held-out loss).
- ``pair_logps``: a DPO pair's chosen and rejected answer in one packed row, the prompt run once.

The shared prefix: every sequence of a batch usually starts with the same tokens: the chat template's system
prompt and the instruction every debate record carries (61 tokens of ~190 on the sample debates with SmolLM2's
template). The prefix is run once, as a batch of one, with the key/value cache on; its keys and values are
repeated across the batch and the rest of each row runs on top of them, with position ids continuing after the
prefix. Gradients flow through the cache into the prefix's computation, so the LoRA weights get the same
gradients as from the plain padded batch (``tests/speed/test_equivalence.py``), for (batch - 1) x prefix fewer
tokens of work.

Not with gradient checkpointing while training (transformers drops the cache inside checkpointed layers): the
plain forward runs then.

LoRA dropout: the prefix runs once, so its tokens draw one dropout mask that every row of the batch shares
(each row's own tokens keep their own masks). Each sequence still sees a correctly distributed mask, so the
expected loss and gradient are unchanged; only the rows' noise on the prefix is correlated. With
``lora_dropout`` 0 the result equals the plain batch's to rounding.
"""

from __future__ import annotations

import inspect
from functools import cache

from services.trainer.worker.encoding import IGNORE_INDEX, Encoded, EncodedPair, collate

MIN_SHARED_PREFIX = 8
"""Shorter shared prefixes run with the rest (the second forward call would cost more than it saves)."""

_PROMPT, _CHOSEN, _REJECTED, _PAD = range(4)  # the segments of a packed pair row (``pair_logps``)


# -- the shared prefix -----------------------------------------------------------------------------------------

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


@cache
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


def batch_prefix_len(examples: list[Encoded]) -> int:
    """The shared prefix of a batch, up to the position before the one that predicts its first trained token."""
    return shared_prefix_len([e.input_ids for e in examples], min(e.prompt_len for e in examples) - 1)


# -- response tokens -------------------------------------------------------------------------------------------

def response_token_logps(causal_lm, input_ids, attention_mask, labels, prefix_len: int = 0):
    """Log-probabilities of the trained (label != -100) tokens, and the mask of where they sit.

    The LM head runs only on the positions that predict a trained token (no full-vocabulary logits for prompt
    tokens), and the first ``prefix_len`` tokens (the same in every row, before the first trained token's
    predecessor) run once for the whole batch (``decoder_hidden``). Returns ``(token_logps, keep)``:
    ``token_logps`` flat, in row-major order of ``keep`` (``[batch, width - prefix_len - 1]``, True where a
    trained token is predicted).
    """
    import torch.nn.functional as F

    hidden = decoder_hidden(causal_lm, input_ids, attention_mask, prefix_len=prefix_len)
    targets = labels[:, prefix_len + 1:]
    keep = targets.ne(IGNORE_INDEX)
    logits = lm_head_logits(causal_lm, hidden[:, :-1][keep])
    return -F.cross_entropy(logits.float(), targets[keep], reduction="none"), keep


def response_only_loss(causal_lm, input_ids, attention_mask, labels, prefix_len: int = 0):
    """Mean cross-entropy over the trained (label != -100) tokens, and how many there were.

    Equal to the causal-LM loss of ``causal_lm(input_ids, labels=labels)`` (``response_token_logps``).
    """
    token_logps, keep = response_token_logps(causal_lm, input_ids, attention_mask, labels, prefix_len)
    return -token_logps.mean(), int(keep.sum())


def sequence_logps(causal_lm, seqs: list[tuple[list[int], int]], pad_id: int, device):
    """Summed log-probabilities of each sequence's response tokens (positions >= prompt_len), and their counts.

    ``seqs``: ``(input_ids, prompt_len)`` per sequence. Returns ``(sums, counts)``, float32 tensors of shape
    ``[len(seqs)]`` (``sums`` carries grad when grad is enabled). The LM head runs only on the positions that
    predict a response token, like ``response_only_loss``.
    """
    import torch

    examples = [Encoded(list(ids), plen) for ids, plen in seqs]
    batch = collate(examples, pad_id)
    mask = batch["attention_mask"]
    token_logps, keep = response_token_logps(causal_lm, batch["input_ids"].to(device),
                                             None if mask is None else mask.to(device),
                                             batch["labels"].to(device), batch_prefix_len(examples))
    n = len(seqs)
    rows = torch.arange(n, device=keep.device).unsqueeze(1).expand_as(keep)[keep]
    sums = torch.zeros(n, dtype=torch.float32, device=keep.device).index_add(0, rows, token_logps)
    return sums, keep.sum(dim=1).to(torch.float32)


def pair_logps(causal_lm, pairs: list[EncodedPair], pad_id: int, device):
    """Summed response log-probabilities of each pair's chosen and rejected answer, the prompt run ONCE per pair.

    Each pair becomes one row ``[prompt | chosen | rejected | padding]``: a 4-D attention mask keeps the
    rejected tokens from seeing the chosen ones (they attend to the prompt and to themselves, causally) and their
    position ids restart where the prompt ends, so every response token sees exactly the context it has in its
    own ``prompt + response`` sequence. The first response token of both answers is predicted by the prompt's
    last position. The same figures as ``sequence_logps`` over the two sequences (``tests/speed``), with the
    prompt's share of the compute paid once instead of twice.

    Returns ``(sums, counts)`` of shape ``[2n]``: the n chosen answers, then the n rejected ones (the layout of
    ``sequence_logps([chosen sequences] + [rejected sequences])``).
    """
    import torch
    import torch.nn.functional as F

    n = len(pairs)
    width = max(p.length for p in pairs)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    segment = torch.full((n, width), _PAD, dtype=torch.long)
    positions = torch.zeros((n, width), dtype=torch.long)
    rows, at, targets, slots = [], [], [], []
    for row, p in enumerate(pairs):
        plen, clen, rlen = len(p.prompt), len(p.chosen), len(p.rejected)
        ids[row, :plen + clen + rlen] = torch.tensor(p.prompt + p.chosen + p.rejected)
        segment[row, :plen], segment[row, plen:plen + clen] = _PROMPT, _CHOSEN
        segment[row, plen + clen:plen + clen + rlen] = _REJECTED
        positions[row, :plen + clen] = torch.arange(plen + clen)
        positions[row, plen + clen:plen + clen + rlen] = torch.arange(plen, plen + rlen)
        # chosen[j] is predicted at plen-1+j; rejected[0] at plen-1, rejected[j>0] at plen+clen+j-1
        chosen_at = list(range(plen - 1, plen + clen - 1))
        rejected_at = ([plen - 1] + list(range(plen + clen, plen + clen + rlen - 1)))[:rlen]
        rows += [row] * (clen + rlen)
        at += chosen_at + rejected_at
        targets += p.chosen + p.rejected
        slots += [row] * clen + [n + row] * rlen
    q_seg, k_seg = segment.unsqueeze(2), segment.unsqueeze(1)
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    allowed = causal & (k_seg != _PAD) & ~((q_seg == _REJECTED) & (k_seg == _CHOSEN))
    allowed |= torch.eye(width, dtype=torch.bool)  # padding rows attend to themselves: no all-masked softmax
    # The prompts' common start (system prompt, instruction) runs once per batch, up to the position before
    # the first answer token's predictor.
    prefix_len = shared_prefix_len([p.prompt for p in pairs], min(len(p.prompt) for p in pairs) - 1)
    hidden = decoder_hidden(causal_lm, ids.to(device), allowed.unsqueeze(1).to(device), positions.to(device),
                            prefix_len=prefix_len)
    picked = hidden[torch.tensor(rows, device=device), torch.tensor(at, device=device) - prefix_len]
    logits = lm_head_logits(causal_lm, picked)
    token_logps = -F.cross_entropy(logits.float(), torch.tensor(targets, device=device), reduction="none")
    slot_index = torch.tensor(slots, device=device)
    sums = torch.zeros(2 * n, dtype=torch.float32, device=device).index_add(0, slot_index, token_logps)
    counts = torch.tensor([float(len(p.chosen)) for p in pairs] + [float(len(p.rejected)) for p in pairs])
    return sums, counts.to(device)


