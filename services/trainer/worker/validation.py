"""Validation during training: the validation set, its loss, and the early-stopping bookkeeping.

The validation set is a split of the job's TRAINING records (``training_config.validation_split`` of the
debates, chosen with the job's seed), never the exporter's held-out split: that one is the test set of the
evaluation after training, and choosing the adapter by it would make that evaluation optimistic. The split is
by debate id (every record of a debate on the same side, so a DPO pair's sibling never leaks into training);
records without a debate id count as a debate each. ``data/train.jsonl`` keeps all records, so a resumed job
splits them again identically; ``data/validation.jsonl`` holds the validation part.

The validation loss is the training method's own loss (SFT: mean cross-entropy per response token; DPO: mean
pair loss) on the validation examples, with dropout off and no gradient, measured every ``eval_every_steps``
optimizer steps, at each epoch end and at the last step. ``EarlyStopping`` keeps the best loss and its step and
counts the validations without an improvement of more than ``early_stopping_min_delta``; after
``early_stopping_patience`` of them the loop stops. This module imports no ML library at import time.
"""

from __future__ import annotations

import math
import random


def split_validation(records: list[dict], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(training indices, validation indices) of ``records``: ``fraction`` of the debates (at least one,
    rounded up), chosen with ``seed``, go to validation. Either list may be empty (too few debates)."""
    if fraction <= 0:
        return list(range(len(records))), []
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        debate = (r.get("metadata") or {}).get("debate_id") if isinstance(r, dict) else None
        groups.setdefault(str(debate) if debate else f"\0record-{i}", []).append(i)
    keys = sorted(groups)
    random.Random(f"validation-{seed}").shuffle(keys)
    n_val = min(len(keys), max(1, math.ceil(fraction * len(keys))))
    val = sorted(i for k in keys[:n_val] for i in groups[k])
    val_set = set(val)
    return [i for i in range(len(records)) if i not in val_set], val


class Validation:
    """The validation loss of a training method's examples (``method``: a ``TrainingMethod`` created for the
    validation examples and prepared, e.g. DPO's reference log-probabilities)."""

    def __init__(self, method, batch_size: int) -> None:
        self.method = method
        self.batch_size = batch_size
        order = sorted(range(len(method)), key=lambda i: -method.lengths[i])
        self.batches = [order[k:k + batch_size] for k in range(0, len(order), batch_size)]

    def __len__(self) -> int:
        return len(self.method)

    def loss(self, peft_model, group=None) -> float:
        """The method's loss over every validation example (weighted as one batch of them all would be);
        data-parallel (``group``, a ``distributed.Group``): each rank takes its share of the batches."""
        import torch

        causal_lm = peft_model.get_base_model()
        was_training = peft_model.training
        peft_model.eval()
        total = weight = 0.0
        try:
            with torch.no_grad():
                for indices in (self.batches if group is None else group.shard(self.batches)):
                    out = self.method.step(causal_lm, indices)
                    w = float(self.method.loss_weight(out))
                    total += float(out.loss) * w
                    weight += w
        finally:
            peft_model.train(was_training)
        if group is not None:
            total, weight = group.sum_floats(total, weight)
        return total / weight if weight else float("nan")


class EarlyStopping:
    """The best validation loss so far and the validations since it improved; state lives in ``state`` (a
    dict saved in every checkpoint, so a resumed job continues the count)."""

    def __init__(self, patience: int | None, min_delta: float, state: dict | None = None) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.state = state if state is not None else self.empty()

    @staticmethod
    def empty() -> dict:
        return {"history": [], "best_step": None, "best_loss": None, "bad_validations": 0, "stopped": None}

    def update(self, step: int, epoch: float, loss: float) -> bool:
        """Records a validation; True when training should stop now."""
        st = self.state
        st["history"].append({"step": step, "epoch": round(epoch, 4), "loss": loss})
        best = st["best_loss"]
        if best is None or (math.isfinite(loss) and loss < best - self.min_delta):
            st["best_loss"], st["best_step"], st["bad_validations"] = loss, step, 0
        else:
            st["bad_validations"] += 1
        if self.patience and st["bad_validations"] >= self.patience:
            st["stopped"] = (f"early stopping at step {step}: the validation loss has not improved by more than "
                             f"{self.min_delta:g} for {self.patience} validation(s) (best {st['best_loss']:.4f} "
                             f"at step {st['best_step']})")
            return True
        return False
