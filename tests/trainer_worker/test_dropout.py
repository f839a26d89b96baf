"""``BitsDropout`` (the CPU's LoRA dropout from raw random bits) is dropout: each element dropped
independently with probability p (to 1/65536), the kept ones scaled so the expectation is the input, the
gradient through the same mask, the identity in eval mode; the worker puts it on every LoRA layer on the
CPU; a seeded run draws the same masks again."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from services.trainer.worker.dropout import LEVELS, BitsDropout, install


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_drop_rate_and_scale(p):
    torch.manual_seed(0)
    x = torch.ones(400, 1000)
    out = BitsDropout(p).train()(x)
    dropped = (out == 0).float().mean().item()
    q = round(p * LEVELS) / LEVELS
    assert abs(q - p) <= 0.5 / LEVELS
    sd = math.sqrt(q * (1 - q) / x.numel())
    assert abs(dropped - q) < 5 * sd  # a Bernoulli(q) rate, not merely "about p"
    kept = out[out != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / (1 - q)))
    assert abs(out.mean().item() - 1.0) < 5 * sd / (1 - q)  # unbiased: E[out] = x


def test_elements_are_independent():
    # neighbours (the two halves of one 32-bit word, adjacent words) drop together only as often as chance
    torch.manual_seed(1)
    p = 0.5
    m = (BitsDropout(p).train()(torch.ones(2_000_000)) == 0).float()
    for lag in (1, 2, 3, 64):
        both = (m[:-lag] * m[lag:]).mean().item()
        assert abs(both - p * p) < 0.003, lag
    # and each row of a 2-D input gets its own mask
    rows = BitsDropout(0.5).train()(torch.ones(64, 512))
    assert len({tuple(r.eq(0).tolist()) for r in rows}) == 64


def test_gradient_goes_through_the_same_mask():
    torch.manual_seed(2)
    x = torch.randn(32, 48, requires_grad=True)
    out = BitsDropout(0.3).train()(x)
    out.sum().backward()
    scale = out.detach() / x.detach()
    assert torch.allclose(x.grad, torch.nan_to_num(scale, nan=0.0), atol=1e-6)
    scale = LEVELS / (LEVELS - round(0.3 * LEVELS))
    assert all(v == 0.0 or abs(v - scale) < 1e-6 for v in torch.unique(x.grad).tolist())


def test_identity_in_eval_and_at_zero():
    x = torch.randn(8, 8)
    assert BitsDropout(0.2).eval()(x) is x
    assert BitsDropout(0.0).train()(x) is x
    with pytest.raises(ValueError):
        BitsDropout(1.0)


def test_seeded_runs_draw_the_same_masks():
    x = torch.ones(1000)
    torch.manual_seed(7)
    a = BitsDropout(0.1).train()(x)
    torch.manual_seed(7)
    b = BitsDropout(0.1).train()(x)
    assert torch.equal(a, b)


def test_install_replaces_lora_dropout_on_the_cpu_only():
    from peft import LoraConfig, get_peft_model

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj, self.v_proj, self.o_proj = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x):
            return self.o_proj(self.q_proj(x) + self.v_proj(x))

    def model(p):
        return get_peft_model(Tiny(), LoraConfig(r=2, lora_alpha=4, lora_dropout=p, target_modules=["q_proj", "v_proj"]))

    peft_model = model(0.05)
    assert install(peft_model, "cuda") == 0
    assert install(peft_model, torch.device("cpu")) == 2
    for m in (peft_model.base_model.model.q_proj, peft_model.base_model.model.v_proj):
        assert isinstance(m.lora_dropout["default"], BitsDropout) and m.lora_dropout["default"].p == 0.05
    assert install(model(0.0), "cpu") == 0  # no dropout: PEFT's identity stays
