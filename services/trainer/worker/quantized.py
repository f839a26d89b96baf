"""4-bit (NF4) base layers on a CPU: the same arithmetic as bitsandbytes, computed the way a CPU is fast at it.

bitsandbytes' ``Linear4bit`` on a CPU has two paths, both poor for training:

- In eval mode without gradients (the load's smoke forward, validation, evaluation) it converts its weight, for
  good, into a packed layout for a bf16 inference kernel (``packing_format_for_cpu``). Every later forward takes
  that kernel, which has no backward: in training the base layers pass no gradient, so no LoRA weight below the
  last quantized layer learns (measured: every LoRA gradient of SmolLM2-135M was None after the load's smoke
  forward), and the compute is bf16, not the job's fp32.
- In training mode it dequantizes the whole NF4 weight at every matmul: forward, backward, and the forward again
  under gradient checkpointing (three dequantizations per layer per batch).

``use_dequantized_forward`` replaces the forward of every ``Linear4bit`` of a CPU model with ``x @ W^T`` where
``W`` is the layer's NF4 weight dequantized to the compute dtype (bitsandbytes' own ``dequantize_4bit``, the
values its training path multiplies by). The weights stay stored in 4 bits; the NF4 rounding is what the adapter
trains against, as with bitsandbytes. When the dequantized copies of all layers fit in
``CACHE_SHARE`` of the memory available at load time they are made once and kept (the arithmetic of a
full-precision layer, at the memory of the full-precision weights on top of the 4-bit ones); otherwise each
matmul dequantizes its weight, and the backward dequantizes it again rather than holding it (the memory of the
4-bit model, bitsandbytes' cost). The matmuls take ``cpu_linear.linear`` (oneDNN where it applies), like the
model's full-precision frozen layers. ``tests/speed/test_quantized_cpu.py`` checks both against a model whose layers
are plain ``nn.Linear`` holding the dequantized weights: same loss, same LoRA gradients.
"""

from __future__ import annotations

import os

from services.trainer.worker.cpu_linear import linear

CACHE_SHARE = 0.25
"""The dequantized copies are cached when they take at most this share of the memory available at load time."""
CACHE_ENV = "TRAINER_DEQUANTIZED_CACHE"
"""``off`` never caches (the 4-bit memory footprint at bitsandbytes' speed), ``on`` always does; unset: by memory."""


def _dequantize(module, dtype):
    import bitsandbytes.functional as bnbf

    weight = module.weight
    quant_state = weight.quant_state
    data = weight.data
    if getattr(quant_state, "packing_format_for_cpu", False):
        data, quant_state = bnbf._convert_weight_packed_for_cpu_inverse(data, quant_state)
        weight.data, weight.quant_state = data, quant_state  # back to the canonical layout, for good
    return bnbf.dequantize_4bit(data, quant_state).to(dtype)


def _matmul_class():
    import torch

    class DequantizedMatmul(torch.autograd.Function):
        """``x @ W^T`` with ``W`` dequantized in the forward and again in the backward (never held between)."""

        @staticmethod
        def forward(ctx, x, module):
            ctx.module = module
            return linear(x, _dequantize(module, x.dtype))

        @staticmethod
        def backward(ctx, grad):
            return linear(grad, _dequantize(ctx.module, grad.dtype).t()), None

    return DequantizedMatmul


def _forward(self, x):
    weight = kept_weight(self, x.dtype)
    if weight is not None:
        out = linear(x.to(weight.dtype), weight)
    else:
        out = self.__dict__["_matmul"].apply(x, self)
    if self.bias is not None:
        out = out + self.bias.to(out.dtype)
    return out.to(x.dtype)


def kept_weight(module, dtype):
    """The layer's dequantized weight where this layer keeps one (``use_dequantized_forward`` with the cache on),
    made now if its first forward has not made it yet; None otherwise (a layer that dequantizes per matmul, or one
    without the dequantized forward)."""
    if not module.__dict__.get("_keep_dequantized"):
        return None
    weight = module.__dict__.get("_dequantized")
    if weight is None:
        weight = module.__dict__["_dequantized"] = _dequantize(module, dtype)
    return weight


def _float_forward(self, x):
    import torch

    return torch.nn.functional.linear(x.to(self.weight.dtype), self.weight, self.bias).to(x.dtype)


def available_memory() -> int:
    """Bytes this process can still allocate: the machine's available memory, or less under a cgroup limit."""
    import psutil

    available = psutil.virtual_memory().available
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        current = open("/sys/fs/cgroup/memory.current").read().strip()
        if limit.isdigit() and current.isdigit():
            available = min(available, int(limit) - int(current))
    except OSError:
        pass
    return max(0, available)


def use_dequantized_forward(model, dtype) -> dict:
    """Gives every bitsandbytes ``Linear4bit`` of ``model`` the dequantized forward (see the module's text); one
    whose weight was never quantized (a layer drawn at load) computes as a plain ``nn.Linear``.

    Returns ``{"layers": n, "cached": bool, "cache_bytes": size of the dequantized copies}`` (layers 0 where the
    model has none)."""
    import types

    import bitsandbytes as bnb
    import torch

    layers, unquantized = [], []
    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            (layers if getattr(m.weight, "quant_state", None) is not None else unquantized).append(m)
    for m in unquantized:
        # A layer the checkpoint lacks, drawn at load (a sequence classifier's pooler and head), holds a plain float
        # weight that was never quantized: bitsandbytes' own forward fails on it; it computes as an nn.Linear.
        m.forward = types.MethodType(_float_forward, m)
    if not layers:
        return {"layers": 0, "cached": False, "cache_bytes": 0}
    size = torch.tensor([], dtype=dtype).element_size()
    cache_bytes = sum(int(torch.Size(m.weight.quant_state.shape).numel()) * size for m in layers)
    wanted = os.environ.get(CACHE_ENV, "").strip().lower()
    if wanted in ("on", "1", "true"):
        keep = True
    elif wanted in ("off", "0", "false"):
        keep = False
    else:
        keep = cache_bytes <= CACHE_SHARE * available_memory()
    matmul = _matmul_class()
    for m in layers:
        m.__dict__["_keep_dequantized"] = keep
        m.__dict__["_matmul"] = matmul
        m.__dict__.pop("_dequantized", None)
        m.forward = types.MethodType(_forward, m)
    return {"layers": len(layers), "cached": keep, "cache_bytes": cache_bytes}
