"""The LoRA layers' forward while decoding: the same arithmetic as PEFT's, without its per-call bookkeeping.

PEFT's ``lora.Linear.forward`` is written for training and every kind of adapter: on each call it checks its
arguments, reads its enable/merge flags and the active adapters, and runs ``lora_A``, ``dropout`` and
``lora_B`` as module calls. Decoding one token runs ~200 such layers (SmolLM2-135M with every linear adapted),
and at one token per forward that bookkeeping, not the adapter's arithmetic (a rank-16 product), is what made
an adapter ~10-20% slower than its base (``benchmarks/inference_bench.py``).

``LeanLora`` replaces the forward of every plain LoRA ``Linear`` of a ``PeftModel`` (no DoRA or other variant)
with one that reads ONE shared selection, set once per decoding step by the engine:

- ``select([None, ...])``: the base only: the base layer's matmul, nothing else (no PEFT flags to switch);
- ``select(["job-1", ...])``: one adapter for every row: ``base(x) + lora_B(lora_A(x)) * scaling``, the
  scaling and the sum folded into the second GEMM (``addmm``): three operations per layer where PEFT's
  forward runs five and its module calls; equal to PEFT's to rounding;
- mixed rows: the rows of each adapter get their own low-rank product (PEFT's per-row ``adapter_names``
  forward, as plain tensor operations).

Dropout is not applied: the model is decoding (eval mode, where PEFT's dropout is the identity). A layer that
has no weights for the selected adapter (adapters targeting different modules) returns its base output, as
PEFT does. Adapters PEFT must run itself (DoRA and other variants, non-LoRA adapters) are not selectable here;
for those the engine leaves the selection ``deferred`` and the layers call PEFT's own forward.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFERRED = object()
"""``LeanLora.single`` when PEFT's own forward must run (an adapter the lean forward does not implement)."""


@dataclass
class _Weights:
    a: object      # lora_A weight [r, in]
    a_bias: object
    b: object      # lora_B weight [out, r]
    b_bias: object
    scaling: float


class LeanLora:
    """The lean forward installed on a ``PeftModel``'s LoRA layers, and the selection they read."""

    def __init__(self, peft_model) -> None:
        self.peft = peft_model
        self.single = None
        """The adapter of every row (None: the base), or ``DEFERRED``; ignored while ``groups`` is set."""
        self.groups = None
        """Mixed rows: ``[(adapter, row-index tensor), ...]`` for the rows that use an adapter."""
        self._installed: set[int] = set()
        self.complete = True
        self.install()

    # -- layers ----------------------------------------------------------------------------------------------

    def install(self) -> None:
        """Puts the lean forward on every LoRA layer not yet given it (call again after attaching an adapter:
        new target modules get LoRA layers then) and drops cached weights (new adapters have new ones)."""
        from peft.tuners.lora.layer import Linear, LoraLayer

        layers = [m for m in self.peft.modules() if isinstance(m, LoraLayer)]
        self.complete = all(type(m) is Linear for m in layers)
        """False when a LoRA layer is of another kind (an embedding, a quantized base): PEFT runs them all."""
        for module in layers:
            if type(module) is not Linear:
                continue
            module.__dict__.pop("_lean_weights", None)
            if id(module) in self._installed:
                continue
            module.forward = self._make_forward(module, module.forward)
            self._installed.add(id(module))

    @staticmethod
    def supports(peft_config) -> bool:
        """Whether an adapter's layers can run the lean forward: plain LoRA (no DoRA or other variant)."""
        kind = str(getattr(peft_config.peft_type, "value", peft_config.peft_type))
        return kind == "LORA" and not getattr(peft_config, "use_dora", False)

    def _make_forward(self, module, peft_forward):
        import torch
        import torch.nn as nn
        import torch.nn.functional as F

        base = module.base_layer
        plain = type(base) is nn.Linear
        selection = self

        def weights(key: str) -> _Weights | None:
            table = module.__dict__.get("_lean_weights")
            if table is None:
                table = module.__dict__["_lean_weights"] = {}
            if key not in table:
                if key in module.lora_A and key not in module.lora_variant:
                    a, b = module.lora_A[key], module.lora_B[key]
                    dtype = base.weight.dtype
                    table[key] = _Weights(a.weight.to(dtype), None if a.bias is None else a.bias.to(dtype),
                                          b.weight.to(dtype), None if b.bias is None else b.bias.to(dtype),
                                          module.scaling[key])
                else:
                    table[key] = None
            return table[key]

        def forward(x, *args, **kwargs):
            if selection.groups is None and selection.single is DEFERRED:
                return peft_forward(x, *args, **kwargs)
            result = F.linear(x, base.weight, base.bias) if plain and not args and not kwargs \
                else base(x, *args, **kwargs)
            if selection.groups is None:
                if selection.single is None:
                    return result
                w = weights(selection.single)
                if w is None:
                    return result
                if w.a_bias is None and w.b_bias is None:
                    # result + scaling * (x A^T) B^T as one GEMM that adds into the base's output
                    shape = result.shape
                    low = F.linear(x, w.a).reshape(-1, w.a.shape[0])
                    return torch.addmm(result.reshape(-1, shape[-1]), low, w.b.t(), alpha=w.scaling).view(shape)
                return result + F.linear(F.linear(x, w.a, w.a_bias), w.b, w.b_bias) * w.scaling
            for key, rows in selection.groups:
                w = weights(key)
                if w is not None:
                    part = x[rows]
                    result[rows] += F.linear(F.linear(part, w.a, w.a_bias), w.b, w.b_bias) * w.scaling
            return result

        return forward

    # -- the selection ---------------------------------------------------------------------------------------

    def select(self, keys: list[str | None], device) -> bool:
        """Sets the adapter of each row of the next forward (None: the base). False (selection deferred to
        PEFT) when one of them is not an adapter the lean forward runs."""
        import torch

        if not self.complete:
            self.defer()
            return False
        for key in set(keys):
            if key is not None and not self.supports(self.peft.peft_config[key]):
                self.defer()
                return False
        first = keys[0]
        if all(k == first for k in keys):
            self.single, self.groups = first, None
            return True
        by_key: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            if key is not None:
                by_key.setdefault(key, []).append(i)
        self.single = None
        self.groups = [(key, torch.tensor(rows, device=device)) for key, rows in by_key.items()]
        return True

    def defer(self) -> None:
        self.single, self.groups = DEFERRED, None
