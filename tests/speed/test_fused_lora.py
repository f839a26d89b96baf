"""The LoRA layers in one autograd step on a CPU (``fused_lora.py``): the dropout mask's distribution, the same
values and gradients as peft's forward with the same mask, peft's forward wherever the fused one does not apply,
and a model's loss and LoRA gradients unchanged by it (with and without activation checkpointing). The speed is
measured by ``benchmarks/train_bench.py`` (the ``product-sft-peft-lora`` ablation row)."""

from __future__ import annotations

import pytest

from services.trainer.worker import cpu_linear, fused_lora

pytestmark = pytest.mark.skipif(cpu_linear.backend()[0] != "onednn",
                                reason=f"no oneDNN linear here: {cpu_linear.backend()[1]}")


def _close(a, b, tol=2e-5):
    scale = max(1.0, b.abs().max().item())
    assert (a - b).abs().max().item() <= tol * scale, ((a - b).abs().max().item(), scale)


def test_dropout_mask_distribution():
    import torch

    torch.manual_seed(0)
    p = 0.05
    bits = fused_lora.dropout_bits((1000, 999))
    assert bits.shape == (1000, 999) and bits.dtype == torch.int16
    keep = fused_lora.keep_mask(bits, p)
    assert keep.dtype == torch.float32 and set(keep.unique().tolist()) == {0.0, 1.0}
    drop = keep == 0
    q = fused_lora.drop_probability(p)
    assert abs(q - p) < 1 / 65536
    sigma = (q * (1 - q) / drop.numel()) ** 0.5
    assert abs(drop.float().mean().item() - q) < 5 * sigma
    flat = drop.reshape(-1)
    for lane in range(4):  # each 16-bit lane of the 64-bit words, the top one included, drops at the same rate
        part = flat[lane::4].float()
        assert abs(part.mean().item() - q) < 5 * (q * (1 - q) / part.numel()) ** 0.5, lane
    # neighbours are independent: P(both dropped) = q^2
    both = (flat[:-1] & flat[1:]).float().mean().item()
    assert abs(both - q * q) < 5 * (q * q / flat.numel()) ** 0.5 + 1e-5
    assert not torch.equal(bits, fused_lora.dropout_bits((1000, 999)))  # a fresh draw
    torch.manual_seed(0)
    assert torch.equal(bits, fused_lora.dropout_bits((1000, 999)))  # the generator's state decides it
    for odd in [(1, 1), (2, 5), (7,)]:
        assert fused_lora.dropout_bits(odd).shape == odd
    assert fused_lora.keep_mask(fused_lora.dropout_bits((4, 4)), 0.999).mean() < 0.5
    assert fused_lora.keep_mask(bits, 0.0).min() == 1.0  # p 0 keeps everything


def _layer(dropout: float, bias: bool = False):
    import torch
    from peft import LoraConfig, get_peft_model

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q_proj = torch.nn.Linear(48, 40, bias=bias)

        def forward(self, x):
            return self.q_proj(x)

    torch.manual_seed(3)
    model = get_peft_model(Net(), LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["q_proj"]))
    layer = model.base_model.model.q_proj
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_(0, 0.1)
    cpu_linear.use_onednn_linears(model)
    return model, layer


@pytest.mark.parametrize("dropout", [0.0, 0.1])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(9, 48), (2, 7, 48), (1, 1, 48)])
def test_values_and_gradients_equal_peft(monkeypatch, dropout, bias, shape):
    """The fused step against peft's arithmetic with the same dropout mask (recorded as it is drawn)."""
    import torch

    model, layer = _layer(dropout, bias)
    assert fused_lora.install(model) == {"path": "fused", "layers": 1, "reason": "one autograd step per LoRA layer"}
    masks = []
    draw = fused_lora.dropout_bits
    monkeypatch.setattr(fused_lora, "dropout_bits", lambda s: masks.append(draw(s)) or masks[-1])
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    x = torch.randn(*shape, requires_grad=True)
    out = model(x)
    assert "LoraStep" in type(out.grad_fn).__name__
    g = torch.randn_like(out)
    out.backward(g)
    fused = (out.detach(), x.grad.clone(), a.grad.clone(), b.grad.clone())
    assert len(masks) == (1 if dropout else 0)

    model.zero_grad(set_to_none=True)
    x2 = x.detach().clone().requires_grad_(True)
    keep = 1.0
    if dropout:
        dropped = masks[0] < round(dropout * 65536) - 32768
        assert 0 < dropped.float().mean() < 0.3
        keep = (~dropped).float().view(x2.shape) / (1 - fused_lora.drop_probability(dropout))
    base = torch.nn.functional.linear(x2, layer.base_layer.weight, layer.base_layer.bias)
    ref = base + torch.nn.functional.linear(torch.nn.functional.linear(x2 * keep, a), b) * layer.scaling["default"]
    ref.backward(g)
    for got, want in zip(fused, (ref.detach(), x2.grad, a.grad, b.grad)):
        assert got.shape == want.shape
        _close(got, want)


def test_falls_back_to_peft_where_it_does_not_apply():
    import torch

    model, layer = _layer(0.0)
    fused_lora.install(model)
    x = torch.randn(3, 48)
    assert "LoraStep" in type(model(x).grad_fn).__name__
    with model.disable_adapter():  # the base layer alone, as peft computes it
        out = model(x)
        assert "LoraStep" not in type(out.grad_fn).__name__
        _close(out, x @ layer.base_layer.weight.t())
    assert fused_lora._plan(layer, x.double()) is None  # not float32: peft (and torch's F.linear)
    assert fused_lora._plan(layer, torch.randn(0, 48)) is None  # no rows
    layer.base_layer.weight.requires_grad_(True)  # a trained base weight needs its own gradient
    assert fused_lora._plan(layer, x) is None
    layer.base_layer.weight.requires_grad_(False)
    layer.merge()
    assert fused_lora._plan(layer, x) is None
    layer.unmerge()
    assert fused_lora._plan(layer, x) is not None
    model.eval()  # dropout off at evaluation: the fused step without a mask
    assert fused_lora._plan(layer, x)[-1] == 0.0


def test_setting(monkeypatch):
    model, _ = _layer(0.0)
    monkeypatch.setenv(fused_lora.ENV, "peft")
    assert fused_lora.install(model) == {"path": "peft", "layers": 0, "reason": f"{fused_lora.ENV}=peft"}
    monkeypatch.setenv(fused_lora.ENV, "fast")
    assert fused_lora.setting() == (False, f"{fused_lora.ENV}='fast' is not fused or peft")
    monkeypatch.setenv(fused_lora.ENV, "fused")
    assert fused_lora.setting()[0]


def _fused_layers(model) -> list:
    return [m for m in model.modules() if getattr(m.__dict__.get("forward"), "__func__", None) is fused_lora._forward]


@pytest.mark.parametrize("quantization", ["none", "4bit"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_training_loss_and_lora_gradients_unchanged(tiny_model, checkpointing, quantization):
    """The worker's own load (which installs the fused forward) against the same model with peft's forward put
    back: the same SFT loss and LoRA gradients (dropout 0, where both compute the same numbers). In 4 bits the
    fused step computes with the layer's kept dequantized weight, peft's through the layer's own forward."""
    from services.trainer.spec import TrainingSpec
    from tests.speed.conftest import load_for_training, sft_batch, sft_loss_and_grads

    spec = TrainingSpec(gradient_checkpointing=checkpointing, lora_dropout=0.0, quantization=quantization,
                        target_modules=["q_proj", "v_proj", "down_proj"])
    tok, loaded = load_for_training(tiny_model, spec)
    assert loaded.quantization == quantization
    assert loaded.lora_path == {"path": "fused", "layers": 3 * 2, "reason": "one autograd step per LoRA layer"}
    examples, batch = sft_batch(tok)

    def loss_and_grads():
        return sft_loss_and_grads(loaded, examples, batch)

    calls = []
    step = fused_lora._function()
    original_apply = step.apply
    step.apply = lambda *a: calls.append(1) or original_apply(*a)
    try:
        loss, grads = loss_and_grads()
    finally:
        del step.apply
    assert len(calls) >= 6  # every LoRA layer took the fused step
    layers = _fused_layers(loaded.model)
    assert len(layers) == 6
    for m in layers:
        del m.forward  # peft's own forward again
    ref_loss, ref_grads = loss_and_grads()
    _close(loss, ref_loss, 1e-5)
    assert grads.keys() == ref_grads.keys() and len(grads) == 2 * 3 * 2
    for name in grads:
        assert ref_grads[name].abs().max() > 0, name
        _close(grads[name], ref_grads[name], 1e-4)


def test_checkpointing_redraws_the_same_mask(tiny_model):
    """With dropout, a checkpointed step (whose backward recomputes each layer, drawing its masks again) gives
    the loss and gradients of the same step without checkpointing: the recomputation drew the same masks."""
    import torch

    from services.trainer.spec import TrainingSpec
    from tests.speed.conftest import load_for_training, sft_batch, sft_loss_and_grads

    results = []
    for checkpointing in (False, True):
        spec = TrainingSpec(gradient_checkpointing=checkpointing, lora_dropout=0.3, target_modules=["q_proj", "v_proj"])
        tok, loaded = load_for_training(tiny_model, spec)
        assert loaded.lora_path["path"] == "fused"
        examples, batch = sft_batch(tok)
        torch.manual_seed(11)
        results.append(sft_loss_and_grads(loaded, examples, batch))
    (loss, grads), (ck_loss, ck_grads) = results
    _close(ck_loss, loss, 1e-6)
    for name in grads:
        _close(ck_grads[name], grads[name], 1e-5)
