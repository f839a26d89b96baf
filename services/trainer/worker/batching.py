"""Length-grouped batches: little padding, yet a shuffled, seeded order that a resumed job can replay exactly.

Each epoch shuffles the examples with a seed derived from (seed, epoch), cuts the order into mega-batches of
``batch_size * GROUP_MULT``, sorts each mega-batch by length and slices it into batches (so a batch holds
examples of similar length and pads little), then shuffles the batches. The batch with the longest example goes
first, so a job that cannot fit in memory fails at step 1 rather than hours in.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

GROUP_MULT = 50  # the mega-batch factor of transformers' LengthGroupedSampler


def steps_per_epoch(n_examples: int, batch_size: int, accumulation: int = 1) -> int:
    """Optimizer steps per epoch: the epoch's batches, ``accumulation`` of them per step."""
    return math.ceil(math.ceil(n_examples / batch_size) / accumulation)


def batch_order(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches (lists of example indices) of one epoch, every example exactly once."""
    n = len(lengths)
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(n))
    rng.shuffle(order)
    mega = batch_size * GROUP_MULT
    batches: list[list[int]] = []
    for start in range(0, n, mega):
        chunk = sorted(order[start:start + mega], key=lambda i: -lengths[i])
        batches.extend(chunk[k:k + batch_size] for k in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    if batches:
        longest = max(range(len(batches)), key=lambda b: max(lengths[i] for i in batches[b]))
        batches.insert(0, batches.pop(longest))
    return batches


def padding_ratio(lengths: list[int], batches: list[list[int]]) -> float:
    """Share of the padded batch tensors that is padding (for the log; 0 = none)."""
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1 - real / padded if padded else 0.0


def total_steps(n_examples: int, batch_size: int, num_epochs: int, max_steps: int | None,
                accumulation: int = 1) -> int:
    """Optimizer steps of a run: every epoch's batches (``accumulation`` of them per step), capped by
    ``max_steps`` (0/None: no cap)."""
    steps = steps_per_epoch(n_examples, batch_size, accumulation) * num_epochs
    return min(steps, max_steps) if max_steps else steps


def step_groups(lengths: list[int], batch_size: int, seed: int, epoch: int,
                accumulation: int = 1) -> list[list[list[int]]]:
    """The optimizer steps of one epoch: ``batch_order``'s batches in consecutive groups of ``accumulation``
    (the last group of an epoch may be shorter)."""
    batches = batch_order(lengths, batch_size, seed, epoch)
    return [batches[k:k + accumulation] for k in range(0, len(batches), accumulation)]


@dataclass(frozen=True)
class Schedule:
    """The run's step plan, computed once: the loop, the runner's events and the methods read it here."""

    n_examples: int
    batch_size: int
    num_epochs: int
    seed: int
    max_steps: int | None = None
    accumulation: int = 1
    """Batches per optimizer step (``gradient_accumulation_steps``)."""

    @classmethod
    def for_spec(cls, n_examples: int, spec) -> Schedule:
        return cls(n_examples, spec.batch_size, spec.num_epochs, spec.seed, spec.max_steps,
                   spec.gradient_accumulation_steps)

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(self.n_examples, self.batch_size, self.accumulation)

    @property
    def total_steps(self) -> int:
        return total_steps(self.n_examples, self.batch_size, self.num_epochs, self.max_steps, self.accumulation)

    def used_indices(self, lengths: list[int]) -> list[int]:
        """The examples the run's batches contain (all of them, unless ``max_steps`` ends it early)."""
        return used_indices(lengths, self.batch_size, self.seed, self.total_steps, self.accumulation)


def used_indices(lengths: list[int], batch_size: int, seed: int, total_steps: int,
                 accumulation: int = 1) -> list[int]:
    """The examples the first ``total_steps`` optimizer steps of the loop's (seeded) order contain."""
    used: set[int] = set()
    steps, epoch = 0, 0
    while steps < total_steps and lengths:
        for group in step_groups(lengths, batch_size, seed, epoch, accumulation):
            if steps >= total_steps:
                break
            for batch in group:
                used.update(batch)
            steps += 1
        epoch += 1
        if len(used) == len(lengths):
            break
    return sorted(used)
