"""A LoRA layer's forward and backward as one autograd step on a CPU ("fewer passes over the LoRA path").

peft computes a LoRA layer as ``base(x) + lora_B(lora_A(dropout(x))) * scaling``: a Bernoulli draw and a
multiply for the dropout, two linear layers, a multiply and an add, each its own autograd step with its own
backward, and the rank-r GEMMs in the layouts torch's BLAS runs slowest at these shapes (``grad^T @ h`` for
B's gradient: ~13 GFLOP/s here; ``h^T @ grad`` for the same numbers: ~40). On the q_proj layer of a
SmolLM2 step (468 rows, 576 -> 576, r = 8, dropout 0.05) the LoRA part cost more than the frozen GEMM it sits
on. ``LoraStep`` does the same arithmetic in one step:

    forward   out = x @ W^T + b + s (x_m @ A^T) @ B^T      x_m: x with the dropped elements zeroed,
                                                          s = scaling / (1 - p)
    backward  dB = s grad^T h      dh = s grad @ B      dA = dh^T x_m      (h = x_m @ A^T)
              dx = grad @ W + (dh @ A), zeroed where dropped

the frozen GEMMs by oneDNN (``cpu_linear.onednn``), the LoRA term added into the base output in place, each
small GEMM in its faster layout. The values equal peft's to fp32 rounding with the same dropout mask
(``tests/speed/test_fused_lora.py``).

The dropout mask: 16 random bits per element from torch's CPU generator (whole 64-bit words, four 16-bit lanes
each), an element dropped where its bits fall below ``round(p * 65536)`` of the 65536 values. The drop
probability is therefore ``round(p * 65536) / 65536`` (within 7.7e-6 of ``p``), and the kept values are scaled
by ``1 / (1 - that)``, so the expectation is exact. Drawing it costs about a quarter of ``bernoulli_``'s time;
the bits (2 bytes an element) are kept for the backward instead of a float mask.
Under activation checkpointing the recomputed forward draws the same mask (torch restores the generator state).

``install(model)`` gives every peft ``lora.Linear`` of a model this forward where it applies: one active
adapter without a variant (no DoRA) or a bias, not merged, a plain frozen ``nn.Linear`` base that oneDNN takes
(``cpu_linear.applies``: a float32 CPU input) or a 4-bit base that keeps its dequantized weight on the CPU
(``quantized.kept_weight``), float32 LoRA weights, a plain dropout. Anything else (a 4-bit base that dequantizes
at each matmul, CUDA, several adapters, ``adapter_names``) runs peft's own forward. ``TRAINER_LORA_PATH=peft`` turns it
off.
"""

from __future__ import annotations

import math
import os
import types
from functools import cache

from services.trainer.worker import cpu_linear

ENV = "TRAINER_LORA_PATH"
"""``fused`` or ``peft``; unset: fused where it applies."""

_LEVELS = 1 << 16


def drop_probability(p: float) -> float:
    """The drop probability ``keep_mask`` realises for ``p``: ``p`` rounded to a multiple of 2^-16."""
    return round(p * _LEVELS) / _LEVELS


def dropout_bits(shape):
    """16 uniformly random bits per element of ``shape`` (an int16 tensor), from torch's default CPU generator."""
    import torch

    n = math.prod(shape)
    bits = torch.empty(-(-n // 4) * 4, dtype=torch.int16)
    bits.view(torch.int64).random_(-(1 << 63), None)  # whole 64-bit words: four uniform 16-bit lanes each
    return bits[:n].view(shape)


def keep_mask(bits, p: float):
    """float32, 1 where an element is kept and 0 where it is dropped: dropped where its bits (uniform over
    [-2^15, 2^15)) fall below ``round(p * 65536) - 2^15``, so with probability ``drop_probability(p)``."""
    import torch

    keep = torch.empty(bits.shape, dtype=torch.float32)
    return torch.ge(bits, round(p * _LEVELS) - (_LEVELS >> 1), out=keep)  # straight into float: no bool pass


@cache
def _function():
    import torch

    onednn = cpu_linear.onednn

    class LoraStep(torch.autograd.Function):
        """``x @ W^T + b + scaling * dropout(x) @ A^T @ B^T`` and its gradients for x, A and B (W, b frozen)."""

        @staticmethod
        def forward(ctx, x, weight, bias, lora_a, lora_b, scaling, p):
            x2 = x.reshape(-1, x.shape[-1])
            out = onednn(x2, weight, bias)
            bits = None
            if p > 0:
                bits = dropout_bits(x2.shape)
                xm = x2 * keep_mask(bits, p)
                scaling = scaling / (1.0 - drop_probability(p))
            else:
                xm = x2
            h = torch.mm(lora_a, xm.t()).t()  # [rows, r] as (A x_m^T)^T: BLAS's faster layout for this shape
            out.addmm_(h, lora_b.t(), alpha=scaling)
            ctx.save_for_backward(weight, xm, h, lora_a, lora_b, bits)  # the mask as its bits: 2 bytes an element
            ctx.p = p
            ctx.scaling = scaling
            return out.view(*x.shape[:-1], weight.shape[0])

        @staticmethod
        def backward(ctx, grad):
            weight, xm, h, lora_a, lora_b, bits = ctx.saved_tensors
            s = ctx.scaling
            g = grad.reshape(-1, grad.shape[-1])
            dh = onednn(g, lora_b.t()).mul_(s)  # grad @ B, scaled: [rows, r]
            grad_a = torch.mm(dh.t(), xm) if ctx.needs_input_grad[3] else None
            grad_b = torch.mm(h.t(), g).t().mul_(s) if ctx.needs_input_grad[4] else None  # (h^T grad)^T
            grad_x = None
            if ctx.needs_input_grad[0]:
                grad_x = onednn(g, weight.t())  # grad @ W on W's transposed view, no copy
                if bits is None:
                    grad_x.addmm_(dh, lora_a)
                else:
                    grad_x.add_(torch.mm(dh, lora_a).mul_(keep_mask(bits, ctx.p)))
                grad_x = grad_x.view(*grad.shape[:-1], weight.shape[1])
            return grad_x, None, None, grad_a, grad_b, None, None

    return LoraStep


def _plan(layer, x):
    """``(weight, bias, lora_a, lora_b, scaling, p)`` when ``LoraStep`` computes ``layer(x)``; else None."""
    import torch

    if layer.disable_adapters or layer.merged:
        return None
    active = layer.active_adapters
    if len(active) != 1:
        return None
    name = active[0]
    if name not in layer.lora_A or name in getattr(layer, "lora_variant", {}):
        return None
    a, b, base = layer.lora_A[name], layer.lora_B[name], layer.base_layer
    if type(a) is not torch.nn.Linear or type(b) is not torch.nn.Linear or a.bias is not None or b.bias is not None:
        return None
    if type(base) is torch.nn.Linear:
        weight = base.weight
    else:  # a 4-bit layer on a CPU computes with its kept dequantized weight (quantized.py), or peft runs it
        from services.trainer.worker.quantized import kept_weight

        weight = kept_weight(base, x.dtype)
    if weight is None or not cpu_linear.applies(x, weight, base.bias):
        return None
    if any(w.dtype != torch.float32 or w.device.type != "cpu" for w in (a.weight, b.weight)):
        return None
    dropout = layer.lora_dropout[name]
    if type(dropout) is torch.nn.Dropout:
        p = dropout.p if dropout.training else 0.0
    elif type(dropout) is torch.nn.Identity:
        p = 0.0
    else:
        return None
    if drop_probability(p) >= 1.0:
        return None
    if drop_probability(p) == 0.0:
        p = 0.0
    return weight, base.bias, a.weight, b.weight, float(layer.scaling[name]), p


def _forward(self, x, *args, **kwargs):
    plan = None if args or kwargs else _plan(self, x)
    if plan is None:
        return type(self).forward(self, x, *args, **kwargs)
    return _function().apply(x, *plan)


def setting() -> tuple[bool, str]:
    """``(on, reason)`` from ``TRAINER_LORA_PATH`` and the frozen-layer backend."""
    wanted = os.environ.get(ENV, "").strip().lower()
    if wanted not in ("", "fused", "peft"):
        return False, f"{ENV}={wanted!r} is not fused or peft"
    if wanted == "peft":
        return False, f"{ENV}=peft"
    if cpu_linear.backend()[0] != "onednn":
        return False, "the frozen layers are not computed by oneDNN here"
    return True, "one autograd step per LoRA layer"


def install(model) -> dict:
    """Gives every peft ``lora.Linear`` of ``model`` the fused forward (which still checks each call and runs
    peft's own where it does not apply). Returns ``{"path": "fused"|"peft", "layers": n, "reason": ...}``."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    on, reason = setting()
    if not on:
        return {"path": "peft", "layers": 0, "reason": reason}
    kinds = {LoraLinear}
    try:
        from peft.tuners.lora.bnb import Linear4bit
    except ImportError:  # peft without bitsandbytes
        pass
    else:
        kinds.add(Linear4bit)
    n = 0
    for module in model.modules():
        if type(module) in kinds:
            module.forward = types.MethodType(_forward, module)
            n += 1
    return {"path": "fused" if n else "peft", "layers": n, "reason": reason if n else "no peft LoRA linear layer"}
