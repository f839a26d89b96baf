"""Length-grouped batches: little padding, yet a shuffled, seeded order that a resumed job can replay exactly.

Each epoch shuffles the examples with a seed derived from (seed, epoch), cuts the order into mega-batches of
``batch_size * GROUP_MULT``, sorts each mega-batch by length and slices it into batches (so a batch holds
examples of similar length and pads little), then shuffles the batches. The batch with the longest example goes
first, so a job that cannot fit in memory fails at step 1 rather than hours in.
"""

from __future__ import annotations

import math
import random

GROUP_MULT = 50  # the mega-batch factor of transformers' LengthGroupedSampler


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    return math.ceil(n_examples / batch_size)


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
