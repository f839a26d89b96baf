"""LoRA dropout on the CPU from raw random bits: the same dropout, at a third of the cost.

PEFT puts an ``nn.Dropout`` before every LoRA layer's ``lora_A`` (``lora_dropout``, 0.05 by default here). On
the CPU, ``torch.nn.functional.dropout`` draws one Bernoulli variate per element, which costs more than
the LoRA matmuls themselves: 4.6 ms for one ``[4, 153, 576]`` activation on this machine, so that with
LoRA on q_proj and v_proj of SmolLM2-135M's 30 layers, dropout took ~20% of an SFT step (an SFT step ran
1.27x as long with ``lora_dropout`` 0.05 as with 0; ``benchmarks/train_bench.py``).

``BitsDropout`` draws 32 random bits per two elements instead (``torch.randint`` over int32, which fills
memory with the generator's raw output), reads them as two 16-bit integers, and keeps an element when its
integer is at or above ``round(p * 65536)`` (of 65536 values): a Bernoulli mask like ``nn.Dropout``'s, each
element independent, with drop probability ``round(p * 65536) / 65536`` (within 1/131072 of ``p``; 0.05
becomes 0.0500031), and kept elements scaled by the inverse of that keep probability, so the expectation of
the output is the input, exactly as with ``nn.Dropout``. It uses the default torch generator, so a seeded
job draws the same masks again (resume replays a step's masks from the checkpointed RNG state), but not
the same masks ``nn.Dropout`` would: a run's per-step losses differ from PEFT's by the dropout noise, not on
average. In eval mode, or with ``p`` 0, it is the identity. ``tests/trainer_worker/test_dropout.py`` checks
the drop rate, the expectation, independence between elements, the gradient and the eval identity.

Only on the CPU: on CUDA, ``nn.Dropout`` is a fused kernel already (``install`` leaves it).
"""

from __future__ import annotations

import torch
from torch import nn

LEVELS = 1 << 16
"""Resolution of the drop probability: one 16-bit integer per element."""


class BitsDropout(nn.Module):
    """``nn.Dropout(p)`` with the mask drawn from raw random bits (see the module's docstring)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)
        self.dropped = round(self.p * LEVELS)
        """Of the 65536 values of a 16-bit integer, how many drop the element."""
        self.threshold = self.dropped - LEVELS // 2  # the integers are signed: -32768 .. 32767
        self.scale = LEVELS / (LEVELS - self.dropped)

    def extra_repr(self) -> str:
        return f"p={self.p} (drop probability {self.dropped}/{LEVELS})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.dropped == 0:
            return x
        n = x.numel()
        words = torch.randint(-(1 << 31), 1 << 31, ((n + 1) // 2,), dtype=torch.int32, device=x.device)
        keep = words.view(torch.int16)[:n].view(x.shape) >= self.threshold
        return x * keep.to(x.dtype).mul_(self.scale)


def install(peft_model, device) -> int:
    """Replaces every LoRA layer's ``nn.Dropout`` with a ``BitsDropout`` of the same ``p`` when training on
    the CPU; returns how many were replaced (0 on other devices)."""
    if torch.device(device).type != "cpu":
        return 0
    replaced = 0
    for module in peft_model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, nn.ModuleDict):
            continue
        for name, layer in list(dropouts.items()):
            if type(layer) is nn.Dropout and layer.p > 0:
                fast = BitsDropout(layer.p)
                fast.train(layer.training)
                dropouts[name] = fast
                replaced += 1
    return replaced
