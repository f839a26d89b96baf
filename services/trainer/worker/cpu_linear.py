"""Frozen linear layers on a CPU computed by oneDNN instead of torch's default BLAS.

In a LoRA job almost all of a step's arithmetic is the frozen base layers (every ``nn.Linear`` of the decoder and
the LM head): ``x @ W^T`` forward, ``grad @ W`` backward (no weight gradient: the weight is frozen). On a CPU
torch computes both with its BLAS (MKL in the x86 wheels). oneDNN, which the same wheels carry for other ops,
runs these shapes faster on the CPUs measured (this machine, AMD EPYC with AVX-512, 2 threads, GFLOP/s of fp32,
``M`` = 516 tokens, isolated GEMMs, 2026-12-01):

========================================  =========  ======
shape (K -> N)                            torch.mm   oneDNN
========================================  =========  ======
576 -> 1536 (gate/up projections)         108-165    184-205
1536 -> 576 (down projection)             144-163    191-205
576 -> 49152 (LM head)                    76-94      131-163
backward ``grad @ W``, 1536 -> 576        158        179
2048^3                                    174        206-214
========================================  =========  ======

and a training step of SmolLM2-135M with LoRA on q/v, steps interleaved in one process: 1.13x on the
distinct-instruction data, 1.12x on long answers (``benchmarks/train_bench.py`` has the rows).

``linear(x, weight, bias)`` is ``F.linear`` with oneDNN's fp32 matmul (``mkldnn::_linear_pointwise``, the op
torch's own CPU compiler emits for linear layers) where it applies: a CPU float32 input and weight, a weight and
bias that need no gradient, a non-empty input. Anything else (a trained weight, CUDA, bf16, an input without
rows) takes ``F.linear``. The arithmetic is fp32 throughout; only the summation order differs (results equal
``F.linear``'s to rounding: ``tests/speed/test_cpu_linear.py``). The weight is used as it is stored: no
second, packed copy is kept, so the memory is the model's.

``use_onednn_linears(model)`` gives every frozen ``nn.Linear`` of a model that forward. ``TRAINER_CPU_LINEAR``
chooses: ``onednn`` (the default where torch has oneDNN on an x86-64 CPU) or ``torch`` (torch's own path).
"""

from __future__ import annotations

import os
import platform
import types
from functools import cache

ENV = "TRAINER_CPU_LINEAR"
"""``onednn`` or ``torch``; unset: oneDNN where available."""


@cache
def backend() -> tuple[str, str]:
    """``(backend, reason)``: ``("onednn", ...)`` or ``("torch", why not oneDNN)``."""
    import torch

    wanted = os.environ.get(ENV, "").strip().lower()
    if wanted not in ("", "onednn", "torch"):
        return "torch", f"{ENV}={wanted!r} is not onednn or torch"
    if wanted == "torch":
        return "torch", f"{ENV}=torch"
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return "torch", "this torch build has no oneDNN linear"
    if wanted != "onednn" and platform.machine().lower() not in ("x86_64", "amd64"):
        return "torch", f"measured on x86-64 only (this CPU: {platform.machine()}; {ENV}=onednn to use it)"
    try:  # a build whose op cannot run here (an unsupported CPU) says so now, not mid-job
        x, w = torch.ones(2, 3), torch.ones(4, 3)
        ok = torch.equal(torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], ""), x @ w.t())
    except RuntimeError as exc:
        return "torch", f"oneDNN linear failed here ({type(exc).__name__})"
    return ("onednn", "oneDNN fp32 matmul") if ok else ("torch", "oneDNN linear gave a wrong result here")


def onednn(x2d, weight, bias=None):
    """``x2d @ weight^T + bias`` by oneDNN for a 2-D float32 CPU input (no checks, no autograd: callers check
    ``applies`` and compute their own gradients). ``weight`` may be a strided view (``W.t()`` for ``grad @ W``)."""
    import torch

    return torch.ops.mkldnn._linear_pointwise(x2d, weight, bias, "none", [], "")


@cache
def _function():
    import torch

    class FrozenLinear(torch.autograd.Function):
        """``x @ W^T + b`` and its input gradient ``grad @ W``, both by oneDNN; W and b take no gradient."""

        @staticmethod
        def forward(ctx, x, weight, bias):
            ctx.save_for_backward(weight)
            out = onednn(x.reshape(-1, x.shape[-1]), weight, bias)
            return out.view(*x.shape[:-1], weight.shape[0])

        @staticmethod
        def backward(ctx, grad):
            if not ctx.needs_input_grad[0]:
                return None, None, None
            (weight,) = ctx.saved_tensors
            # W^T as a [in, out] view: oneDNN reads it strided, no copy.
            grad_x = onednn(grad.reshape(-1, grad.shape[-1]), weight.t())
            return grad_x.view(*grad.shape[:-1], weight.shape[1]), None, None

    return FrozenLinear


def applies(x, weight, bias=None) -> bool:
    """Whether ``linear`` takes oneDNN for these tensors."""
    import torch

    return (backend()[0] == "onednn" and x.device.type == "cpu" and x.dtype == torch.float32
            and weight.dtype == torch.float32 and weight.device.type == "cpu" and weight.dim() == 2
            and not weight.requires_grad and (bias is None or (not bias.requires_grad
                                                                and bias.dtype == torch.float32))
            and x.numel() > 0 and x.shape[-1] == weight.shape[1])


def linear(x, weight, bias=None):
    """``torch.nn.functional.linear(x, weight, bias)``, by oneDNN where that applies (``applies``)."""
    import torch

    if applies(x, weight, bias):
        return _function().apply(x, weight, bias)
    return torch.nn.functional.linear(x, weight, bias)


def _forward(self, x):
    return linear(x, self.weight, self.bias)


def use_onednn_linears(model) -> dict:
    """Gives every ``nn.Linear`` of ``model`` whose weight is frozen the oneDNN forward (``linear``, which
    still checks each call and falls back to ``F.linear``). Returns ``{"backend": "onednn"|"torch", "layers": n,
    "reason": ...}``; nothing changes where the backend is ``torch``."""
    import torch

    name, reason = backend()
    if name != "onednn":
        return {"backend": "torch", "layers": 0, "reason": reason}
    n = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear and not module.weight.requires_grad:
            module.forward = types.MethodType(_forward, module)
            n += 1
    return {"backend": "onednn" if n else "torch", "layers": n, "reason": reason if n else "no frozen linear layer"}
