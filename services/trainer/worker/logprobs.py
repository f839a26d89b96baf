"""Log-probabilities: the forward that SFT, DPO and the evaluation call, and what they read off it.

- ``decoder_hidden``: a batch's shared prefix runs once, the rest on top of its key/value cache.
- ``lm_head_logits``: the LM head only where a next token is scored (no full-vocabulary logits for prompts).
- ``token_logps``: the log-probabilities of the scored tokens; with a plain frozen LM head through
  ``chunked_token_logps`` (the head a chunk of rows at a time, no [rows, vocabulary] tensor for the batch, the
  gradient made in the forward), which SFT's loss, DPO's pairs and the evaluation all take.
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

With gradient checkpointing while training, transformers would drop the cache inside checkpointed layers
(a layer replayed in the backward pass would append its keys and values a second time). The prefix then runs
without checkpointing (one row of prefix tokens: its activations are small), and the rest runs checkpointed on
a READ-ONLY view of the prefix's cache (each layer's ``update`` returns prefix + new keys/values and stores
nothing), so the replay reads exactly what the first pass read: the same loss and gradients as the plain
checkpointed batch (``tests/speed/test_equivalence.py``). Not for a sliding-window model whose rows are longer
than its window (its cache keeps only the window), nor under checkpointing for a decoder whose layers are not
transformers' ``GradientCheckpointingLayer``: the plain forward runs then.

The packed DPO row (``pair_logps``) needs a custom 4-D mask, which transformers hands to the attention as is.
``packing_plan`` decides, per model, how that is made right (or that it cannot be):

- SDPA and eager attention: the mask is ADDITIVE float (0 where a key may be seen, the dtype's minimum where
  not). A boolean mask is right for SDPA only; eager attention adds it to the scores, so True/False would be
  +1/+0 and mask nothing.
- Sliding-window attention (Mistral v0.1, Qwen2 with ``use_sliding_window``, Gemma 2/3's sliding layers): a 4-D
  mask replaces the model's own windowed mask, so the window (a key is seen when its position is within
  ``sliding_window`` of the query's, by the restarted positions) is built into the mask; where the model has
  sliding and global layers both (Gemma 2/3), one mask per layer type is passed (``{"full_attention": ...,
  "sliding_attention": ...}``, which their decoders take). A model with mixed layers whose decoder does not take
  such a mapping falls back to separate sequences.
- FlashAttention (takes a 2-D padding mask only), ALiBi models (Bloom, MPT, Falcon with ``alibi``: the bias
  follows the row's index, not the restarted position ids), and any other attention implementation: the pair
  runs as two separate sequences (``sequence_logps``), the same figures at the cost of the prompt twice.

The DPO method reports the plan in the job's log (``describe_plan``); ``tests/speed/test_packed_kinds.py``
proves packed = separate (values and gradients) for Llama with SDPA and with eager attention, Qwen2, Mistral
with a window shorter than the rows, and Gemma 2.

LoRA dropout: the prefix runs once, so its tokens draw one dropout mask that every row of the batch shares
(each row's own tokens keep their own masks). Each sequence still sees a correctly distributed mask, so the
expected loss and gradient are unchanged; only the rows' noise on the prefix is correlated. With
``lora_dropout`` 0 the result equals the plain batch's to rounding.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager, nullcontext
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


def checkpointing(decoder) -> bool:
    """Whether this forward of ``decoder`` runs its layers under gradient checkpointing (training, with grad)."""
    import torch

    return bool(getattr(decoder, "gradient_checkpointing", False) and decoder.training and torch.is_grad_enabled())


def _checkpoint_layers(decoder) -> list | None:
    """The decoder's layers when all are transformers' ``GradientCheckpointingLayer`` (which can keep a
    read-only cache under checkpointing), else None."""
    try:
        from transformers.modeling_layers import GradientCheckpointingLayer
    except ImportError:
        return None
    layers = list(getattr(decoder, "layers", None) or [])
    return layers if layers and all(isinstance(layer, GradientCheckpointingLayer) for layer in layers) else None


def can_share(decoder, width: int = 0) -> bool:
    """False where the decoder takes no ``cache`` argument (an architecture outside transformers' current cache
    API), where a sliding window shorter than the rows (``width``) would crop the cached prefix, or under
    gradient checkpointing where the layers cannot keep a read-only cache."""
    if checkpointing(decoder) and _checkpoint_layers(decoder) is None:
        return False
    window = sliding_window(decoder.config)
    if window and width > window:
        return False
    return _takes_cache(type(decoder))


@contextmanager
def _prefix_without_checkpointing(decoder):
    """Checkpointing paused on the decoder and its layers (the prefix's forward keeps its activations)."""
    modules = [decoder] + _checkpoint_layers(decoder)
    saved = [m.gradient_checkpointing for m in modules]
    try:
        for m in modules:
            m.gradient_checkpointing = False
        yield
    finally:
        for m, was in zip(modules, saved):
            m.gradient_checkpointing = was


@contextmanager
def _checkpointed_on_read_only_cache(decoder, cache):
    """The cache's layers made read-only (``update`` returns cached + new keys/values, stores nothing) and the
    decoder's layers allowed to keep it under checkpointing: the backward replay reads what the forward read."""
    import torch

    for layer in cache.layers:
        if getattr(layer, "is_initialized", True) and getattr(layer, "keys", None) is not None:
            def update(key_states, value_states, *args, _k=layer.keys, _v=layer.values, **kwargs):
                return torch.cat([_k, key_states], dim=-2), torch.cat([_v, value_states], dim=-2)

            layer.update = update
    layers = _checkpoint_layers(decoder)
    try:
        for layer in layers:
            layer._can_checkpoint_with_cache = True  # an instance attribute over the class's False
        yield
    finally:
        for layer in layers:
            layer.__dict__.pop("_can_checkpoint_with_cache", None)


# -- the packed row's mask, per kind of attention ---------------------------------------------------------------

MASKABLE = ("sdpa", "eager")
"""Attention implementations that apply a custom 4-D additive mask exactly."""


def sliding_window(config) -> int | None:
    """The window of the model's sliding-window layers, None when it has none (Qwen2: only with
    ``use_sliding_window``)."""
    window = getattr(config, "sliding_window", None)
    if not window or getattr(config, "use_sliding_window", True) is False:
        return None
    types = getattr(config, "layer_types", None)
    if types is not None and "sliding_attention" not in types:
        return None
    return int(window)


def _uses_alibi(config) -> bool:
    return bool(getattr(config, "alibi", False)) or getattr(config, "model_type", "") in ("bloom", "mpt")


@cache
def _takes_mask_mapping(decoder_class: type) -> bool:
    """Whether the decoder takes one mask per layer type (``{"full_attention": ..., "sliding_attention": ...}``)."""
    try:
        return "causal_mask_mapping" in inspect.getsource(decoder_class.forward)
    except (OSError, TypeError):
        return False


def packing_plan(causal_lm) -> tuple[str, str]:
    """``(mode, reason)``: ``"packed"`` (one row per pair, the mask made right for this model) or
    ``"separate"`` (two sequences per pair), and why, for the job's log."""
    config = causal_lm.config
    impl = str(getattr(config, "_attn_implementation", None) or "eager")
    if _uses_alibi(config):
        return "separate", "ALiBi position bias ignores the restarted position ids of a packed row"
    if impl not in MASKABLE:
        return "separate", (f"{impl} attention does not take a custom 4-D mask"
                            + (" (FlashAttention: a 2-D padding mask only)" if "flash" in impl else ""))
    window = sliding_window(config)
    types = set(getattr(config, "layer_types", None) or [])
    if window and len(types) > 1 and not _takes_mask_mapping(type(causal_lm.get_decoder())):
        return "separate", (f"sliding-window ({window}) and global layers, and the decoder takes a single mask")
    how = f"{impl} attention, additive float mask"
    if window:
        how += (f"; sliding window {window} built into the mask"
                + (" of the sliding layers (one mask per layer type)" if len(types) > 1 else ""))
    return "packed", how


def describe_plan(causal_lm) -> str:
    mode, why = packing_plan(causal_lm)
    if mode == "packed":
        return f"DPO pairs run packed (prompt once, both answers in one row): {why}"
    return f"DPO pairs run as separate sequences (the prompt twice), not packed: {why}"


def packed_mask(causal_lm, allowed, positions, dtype):
    """The packed row's mask for this model: ``allowed`` (``[n, width, width]`` bool, True = may attend) as an
    additive float mask ``[n, 1, width, width]``, windowed by ``positions`` where the model slides; a mapping per
    layer type where it has both kinds of layer."""
    import torch

    def additive(ok):
        return torch.zeros(ok.shape, dtype=dtype, device=ok.device).masked_fill(~ok, torch.finfo(dtype).min)

    window = sliding_window(causal_lm.config)
    full = additive(allowed).unsqueeze(1)
    if not window:
        return full
    distance = positions.unsqueeze(2) - positions.unsqueeze(1)  # query position minus key position
    eye = torch.eye(allowed.shape[-1], dtype=torch.bool, device=allowed.device)
    windowed = additive(allowed & ((distance < window) | eye)).unsqueeze(1)
    types = set(getattr(causal_lm.config, "layer_types", None) or [])
    if len(types) > 1:
        return {"full_attention": full, "sliding_attention": windowed}
    return windowed


def decoder_hidden(causal_lm, input_ids, attention_mask=None, position_ids=None, prefix_len: int = 0):
    """The decoder's last hidden states of positions ``prefix_len`` onwards (``[batch, width - prefix_len,
    hidden]``), the first ``prefix_len`` tokens (the same in every row, all real tokens) run once.

    ``attention_mask``: None, 2-D ``[batch, width]`` (1 = token, 0 = padding), a custom 4-D
    ``[batch, 1, width, width]`` (``packed_mask``), or a mapping of such masks by layer type;
    ``position_ids``: ``[batch, width]`` or None (0, 1, ...).
    ``prefix_len`` 0 (or a model/mode where the cache cannot be used): one plain forward, and the hidden states
    are cut at ``prefix_len`` afterwards.
    """
    import torch

    decoder = causal_lm.get_decoder()
    if prefix_len <= 0 or not can_share(decoder, input_ids.shape[1]):
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=False).last_hidden_state
        return hidden[:, prefix_len:] if prefix_len > 0 else hidden
    from transformers import DynamicCache

    batch, width = input_ids.shape
    device = input_ids.device
    if position_ids is None:
        position_ids = torch.arange(width, device=device).unsqueeze(0).expand(batch, width)
    cache = DynamicCache(config=decoder.config)
    checkpointed = checkpointing(decoder)
    with _prefix_without_checkpointing(decoder) if checkpointed else nullcontext():
        decoder(input_ids=input_ids[:1, :prefix_len], position_ids=position_ids[:1, :prefix_len], cache=cache,
                use_cache=True)
    cache.batch_repeat_interleave(batch)
    if isinstance(attention_mask, dict):
        mask = {k: m[:, :, prefix_len:, :] for k, m in attention_mask.items()}
    elif attention_mask is not None and attention_mask.dim() == 4:
        mask = attention_mask[:, :, prefix_len:, :]  # the rest's queries against every key, prefix included
    elif attention_mask is not None:
        mask = attention_mask  # 2-D over prefix + rest, as transformers expects with a cache
    else:
        mask = None
    with _checkpointed_on_read_only_cache(decoder, cache) if checkpointed else nullcontext():
        return decoder(input_ids=input_ids[:, prefix_len:], attention_mask=mask,
                       position_ids=position_ids[:, prefix_len:], cache=cache,
                       use_cache=not checkpointed).last_hidden_state  # (the cache is read all the same)


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
    predecessor) run once for the whole batch (``decoder_hidden``). Returns ``(logps, keep)``:
    ``logps`` flat, in row-major order of ``keep`` (``[batch, width - prefix_len - 1]``, True where a
    trained token is predicted).
    """
    rows, targets, keep = _trained_rows(causal_lm, input_ids, attention_mask, labels, prefix_len)
    return token_logps(causal_lm, rows, targets), keep


def token_logps(causal_lm, hidden, targets):
    """``log softmax(LM head(hidden))[targets]`` per row (float32): through ``chunked_token_logps`` when the
    head is a plain frozen linear layer (``_frozen_plain_head``), else through the head's full logits."""
    import torch.nn.functional as F

    weight = _frozen_plain_head(causal_lm)
    if weight is not None:
        return chunked_token_logps(hidden, weight, targets)
    return -F.cross_entropy(lm_head_logits(causal_lm, hidden).float(), targets, reduction="none")


def _trained_rows(causal_lm, input_ids, attention_mask, labels, prefix_len: int):
    """The decoder's hidden states at the positions that predict a trained token, those tokens, and the mask of
    where they sit (``[batch, width - prefix_len - 1]``)."""
    hidden = decoder_hidden(causal_lm, input_ids, attention_mask, prefix_len=prefix_len)
    targets = labels[:, prefix_len + 1:]
    keep = targets.ne(IGNORE_INDEX)
    return hidden[:, :-1][keep], targets[keep], keep


def response_only_loss(causal_lm, input_ids, attention_mask, labels, prefix_len: int = 0):
    """Mean cross-entropy over the trained (label != -100) tokens, and how many there were.

    Equal to the causal-LM loss of ``causal_lm(input_ids, labels=labels)``, with the head's logits a chunk at
    a time (``token_logps``); no trained token: NaN, like the plain mean.
    """
    logps, keep = response_token_logps(causal_lm, input_ids, attention_mask, labels, prefix_len)
    return -logps.mean(), int(keep.sum())


LM_HEAD_CHUNK_ROWS = 128
"""Rows of the LM head computed at once by ``chunked_token_logps``: [128, vocabulary] logits (24 MiB in fp32
for a 49k vocabulary, within a CPU's last-level cache); fewer rows make the head's matmul slower per row."""


def _frozen_plain_head(causal_lm):
    """The LM head's weight when the head is a bias-free ``nn.Linear`` that takes no gradient and the model has
    no logit soft-capping (what ``chunked_token_logps`` computes); else None."""
    import torch

    head = causal_lm.get_output_embeddings()
    if (type(head) is not torch.nn.Linear or head.bias is not None or head.weight.requires_grad
            or getattr(causal_lm.config, "final_logit_softcapping", None)):
        return None
    return head.weight


@cache
def _chunked_token_logps_class():
    import torch

    from services.trainer.worker.cpu_linear import linear

    class ChunkedTokenLogps(torch.autograd.Function):
        """``log softmax(hidden @ weight^T)[targets]`` per row, ``LM_HEAD_CHUNK_ROWS`` rows at a time.

        The weight is frozen and each output depends on its own row only, so the gradient of each row's output
        with respect to its hidden state is known in the forward: ``(onehot - softmax) @ weight``, made from the
        chunk's logits in place and multiplied back through the head at once (kept negated, as
        ``(softmax - onehot) @ weight``, which saves a pass). The backward scales each row's by its incoming
        gradient (``-1/n`` for a mean loss; a DPO sequence's weight for its tokens). Against
        ``cross_entropy(reduction="none")`` of full logits this makes no [rows, vocabulary] tensor for the batch
        and skips the separate log-softmax, its backward and the zero-filled gradient of the logits. Without a
        gradient to make (the reference pass, the evaluation) only the log-probabilities are computed."""

        @staticmethod
        def forward(ctx, hidden, weight, targets):
            n = hidden.shape[0]
            out = torch.empty(n, dtype=torch.float32, device=hidden.device)
            grad = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
            for start in range(0, n, LM_HEAD_CHUNK_ROWS):
                rows = slice(start, start + LM_HEAD_CHUNK_ROWS)
                target = targets[rows]
                logits = linear(hidden[rows], weight).float()
                lse = torch.logsumexp(logits, dim=-1)
                out[rows] = logits.gather(1, target[:, None]).squeeze(1) - lse
                if grad is not None:
                    logits.sub_(lse[:, None]).exp_()  # softmax
                    logits[torch.arange(len(target), device=logits.device), target] -= 1.0
                    grad[rows] = linear(logits.to(weight.dtype), weight.t())
            ctx.save_for_backward(grad)
            return out

        @staticmethod
        def backward(ctx, grad_out):
            (grad,) = ctx.saved_tensors
            return grad * grad_out.neg().to(grad.dtype)[:, None], None, None

    return ChunkedTokenLogps


def chunked_token_logps(hidden, weight, targets):
    """``-F.cross_entropy(hidden @ weight^T, targets, reduction="none")`` (float32) for a frozen ``weight``,
    computed chunk by chunk with each row's gradient made in the forward (``ChunkedTokenLogps``)."""
    return _chunked_token_logps_class().apply(hidden, weight, targets)


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
    logps, keep = response_token_logps(causal_lm, batch["input_ids"].to(device),
                                       None if mask is None else mask.to(device),
                                       batch["labels"].to(device), batch_prefix_len(examples))
    n = len(seqs)
    rows = torch.arange(n, device=keep.device).unsqueeze(1).expand_as(keep)[keep]
    sums = torch.zeros(n, dtype=torch.float32, device=keep.device).index_add(0, rows, logps)
    return sums, keep.sum(dim=1).to(torch.float32)


def pair_logps(causal_lm, pairs: list[EncodedPair], pad_id: int, device):
    """Summed response log-probabilities of each pair's chosen and rejected answer, the prompt run ONCE per pair.

    Each pair becomes one row ``[prompt | chosen | rejected | padding]``: a 4-D attention mask keeps the
    rejected tokens from seeing the chosen ones (they attend to the prompt and to themselves, causally) and their
    position ids restart where the prompt ends, so every response token sees exactly the context it has in its
    own ``prompt + response`` sequence. The first response token of both answers is predicted by the prompt's
    last position. The same figures as ``sequence_logps`` over the two sequences (``tests/speed``), with the
    prompt's share of the compute paid once instead of twice. Where packing cannot be made exact for the model
    (``packing_plan``), the two sequences run separately.

    Returns ``(sums, counts)`` of shape ``[2n]``: the n chosen answers, then the n rejected ones (the layout of
    ``sequence_logps([chosen sequences] + [rejected sequences])``).
    """
    import torch

    if packing_plan(causal_lm)[0] == "separate":
        return sequence_logps(causal_lm, [p.sequences()[0] for p in pairs] + [p.sequences()[1] for p in pairs],
                              pad_id, device)
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
    positions = positions.to(device)
    mask = packed_mask(causal_lm, allowed.to(device), positions, causal_lm.get_decoder().embed_tokens.weight.dtype
                       if hasattr(causal_lm.get_decoder(), "embed_tokens") else torch.float32)
    hidden = decoder_hidden(causal_lm, ids.to(device), mask, positions, prefix_len=prefix_len)
    picked = hidden[torch.tensor(rows, device=device), torch.tensor(at, device=device) - prefix_len]
    logps = token_logps(causal_lm, picked, torch.tensor(targets, device=device))
    slot_index = torch.tensor(slots, device=device)
    sums = torch.zeros(2 * n, dtype=torch.float32, device=device).index_add(0, slot_index, logps)
    counts = torch.tensor([float(len(p.chosen)) for p in pairs] + [float(len(p.rejected)) for p in pairs])
    return sums, counts.to(device)


