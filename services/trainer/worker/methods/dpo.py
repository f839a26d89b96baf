"""DPO (direct preference optimisation) on debate preference pairs, with the base model as the reference.

A pair ``{"prompt", "chosen", "rejected", "metadata"}`` (the exporter's DPO record) is encoded as the prompt
once and the two answers (``encoding.encode_pairs``). A sequence's log-probability is the sum over its response
tokens (and the end-of-turn token); prompt tokens never reach the LM head, and a pair's prompt runs once for both
answers (``logprobs.pair_logps``).

Loss (Rafailov et al. 2023, the sigmoid loss TRL uses by default):
``-log σ(β · ((π_c − ref_c) − (π_r − ref_r)))`` where π is the policy (base + LoRA adapter) and ref the base
model alone. The reference log-probabilities do not change during training, so they are computed ONCE per pair
before the first step, with the adapter disabled (``model.disable_adapter()``), instead of a second forward pass
at every step. Each step reports ``reward_accuracy`` (share of pairs whose implicit reward
``β · (π − ref)`` is higher for chosen) and ``reward_margin`` (mean chosen minus rejected reward) in ``extra``.
"""

from __future__ import annotations

import time

from services.trainer.worker import encoding, sources
from services.trainer.worker.events import EventSink
from services.trainer.worker.logprobs import describe_plan, packing_plan, pair_logps
from services.trainer.worker.methods.base import StepOutput, TrainingMethod, register

REFERENCE_BATCH = 4
"""Pairs per forward pass when precomputing the reference log-probabilities."""


@register
class DPOMethod(TrainingMethod):
    """DPO; ``compute_reference(peft_model)`` (``prepare`` calls it) must run once before the first step."""

    name = "dpo"
    records = sources.DPO_PAIRS

    def __init__(self, pairs: list[encoding.EncodedPair], pad_id: int, device, beta: float) -> None:
        super().__init__(pairs, pad_id, device)
        self.beta = float(beta)
        self.ref_chosen = None
        self.ref_rejected = None
        self.reference_seconds = 0.0
        self.reference_pairs = 0
        self.last_extra: dict = {}

    @property
    def pairs(self) -> list[encoding.EncodedPair]:
        return self.examples

    @classmethod
    def encode(cls, tokenizer, records, max_len):
        return encoding.encode_pairs(tokenizer, records, max_len)

    @staticmethod
    def example_length(example: encoding.EncodedPair) -> int:
        return example.length

    @classmethod
    def create(cls, examples, pad_id, device, spec) -> DPOMethod:
        return cls(examples, pad_id, device, spec.beta)

    def prepare(self, peft_model, events: EventSink, schedule) -> None:
        # How this model's attention runs a packed pair row (or why it cannot), in the job's log.
        plan = describe_plan(peft_model.get_base_model())
        (events.log if packing_plan(peft_model.get_base_model())[0] == "packed" else events.warning)(plan)
        # Once per pair the run will train on, with the adapter disabled (not a second forward at every step).
        self.compute_reference(peft_model, events, indices=schedule.used_indices(self.lengths))
        events.log(f"reference log-probabilities of {self.reference_pairs} pairs computed in "
                   f"{self.reference_seconds:.1f} s (base model, adapter disabled); DPO beta {self.beta:g}")

    def metrics(self) -> dict:
        return {"dpo": {"beta": self.beta, "reference_seconds": round(self.reference_seconds, 3),
                        **self.last_extra}}

    def compute_reference(self, peft_model, events: EventSink | None = None, indices=None,
                          batch_size: int = REFERENCE_BATCH) -> None:
        """Log-probabilities of the pairs' chosen and rejected responses under the base model (adapter
        disabled), once, in length-sorted batches; reports progress as ``eval`` events (phase ``reference``).

        ``indices``: the pairs training will use (all when None): a run capped by ``max_steps`` pays only for
        the pairs it trains on.
        """
        import torch

        t0 = time.monotonic()
        causal_lm = peft_model.get_base_model()
        wanted = sorted(set(range(len(self.pairs)) if indices is None else indices))
        order = sorted(wanted, key=lambda i: -self.pairs[i].length)
        chosen = torch.full((len(self.pairs),), float("nan"))
        rejected = torch.full((len(self.pairs),), float("nan"))
        self.reference_pairs = len(wanted)
        was_training = peft_model.training
        peft_model.eval()
        last_report = 0.0
        try:
            with torch.no_grad(), peft_model.disable_adapter():
                for start in range(0, len(order), batch_size):
                    idx = order[start:start + batch_size]
                    sums, _ = pair_logps(causal_lm, [self.pairs[i] for i in idx], self.pad_id, self.device)
                    sums = sums.float().cpu()
                    at = torch.tensor(idx, dtype=torch.long)
                    chosen[at], rejected[at] = sums[:len(idx)], sums[len(idx):]
                    done = min(start + batch_size, len(order))
                    now = time.monotonic()
                    if events is not None and (now - last_report > 2.0 or done == len(order)):
                        last_report = now
                        events.emit("eval", f"reference log-probabilities (base model, adapter disabled): "
                                            f"{done}/{len(wanted)} pairs",
                                    phase="reference", done=done, total=len(wanted), metrics={})
        finally:
            peft_model.train(was_training)
        # NaN marks a pair without a reference: using one is a bug, caught in ``step``.
        self.ref_chosen, self.ref_rejected = chosen, rejected
        self.reference_seconds = time.monotonic() - t0

    def step(self, causal_lm, indices: list[int]) -> StepOutput:
        """The DPO loss of a batch of pairs (``causal_lm``: the model with the adapter active)."""
        import torch
        import torch.nn.functional as F

        if self.ref_chosen is None:
            raise RuntimeError("DPOMethod.compute_reference must run before the first step")
        pairs = [self.pairs[i] for i in indices]
        sums, counts = pair_logps(causal_lm, pairs, self.pad_id, self.device)
        n = len(pairs)
        idx = torch.tensor(indices)
        ref_c, ref_r = self.ref_chosen[idx], self.ref_rejected[idx]
        if bool(torch.isnan(ref_c).any() or torch.isnan(ref_r).any()):
            raise RuntimeError(f"no reference log-probabilities for pairs {indices}")
        ref_c, ref_r = ref_c.to(sums.device), ref_r.to(sums.device)
        chosen_reward = self.beta * (sums[:n] - ref_c)
        rejected_reward = self.beta * (sums[n:] - ref_r)
        loss = -F.logsigmoid(chosen_reward - rejected_reward).mean()
        with torch.no_grad():
            cr, rr = chosen_reward.detach(), rejected_reward.detach()
            extra = {"reward_accuracy": float((cr > rr).float().mean()),
                     "reward_margin": float((cr - rr).mean()),
                     "chosen_reward": float(cr.mean()), "rejected_reward": float(rr.mean())}
        self.last_extra = extra
        # The tokens of the two sequences, as a trainer without prompt sharing counts the same work.
        tokens = sum(len(s) for p in pairs for s, _ in p.sequences())
        return StepOutput(loss, n, tokens, int(counts.sum()), extra)
