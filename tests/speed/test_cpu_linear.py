"""Frozen linear layers by oneDNN on a CPU (``cpu_linear.py``): the same values and gradients as ``F.linear``
(to fp32 rounding), the fallback wherever it does not apply, and a model's loss and LoRA gradients unchanged
by it. The speed is measured by ``benchmarks/train_bench.py`` (the ``product-sft-no-onednn`` ablation row)."""

from __future__ import annotations

import pytest

from services.trainer.worker import cpu_linear

pytestmark = pytest.mark.skipif(cpu_linear.backend()[0] != "onednn",
                                reason=f"no oneDNN linear here: {cpu_linear.backend()[1]}")


def _close(a, b, tol=2e-5):
    scale = max(1.0, b.abs().max().item())
    assert (a - b).abs().max().item() <= tol * scale, ((a - b).abs().max().item(), scale)


@pytest.mark.parametrize("shape", [(7, 48), (3, 5, 48), (1, 48), (2, 1, 48)])
@pytest.mark.parametrize("bias", [False, True])
def test_values_and_input_gradient_equal_f_linear(shape, bias):
    import torch

    torch.manual_seed(0)
    w = torch.randn(96, 48)
    b = torch.randn(96) if bias else None
    x = torch.randn(*shape, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    assert cpu_linear.applies(x, w, b)
    out = cpu_linear.linear(x, w, b)
    ref = torch.nn.functional.linear(x2, w, b)
    assert out.shape == ref.shape and out.grad_fn is not None and "FrozenLinear" in type(out.grad_fn).__name__
    _close(out, ref)
    g = torch.randn_like(ref)
    out.backward(g)
    ref.backward(g)
    _close(x.grad, x2.grad)


def test_non_contiguous_input_and_transposed_weight():
    import torch

    torch.manual_seed(1)
    w = torch.randn(40, 64)
    x = torch.randn(64, 9).t()  # [9, 64], not contiguous
    _close(cpu_linear.linear(x, w), x @ w.t())
    g = torch.randn(9, 40)
    _close(cpu_linear.linear(g, w.t()), g @ w)  # grad @ W, as the dequantized 4-bit backward calls it


def test_falls_back_where_it_does_not_apply():
    import torch

    w = torch.nn.Parameter(torch.randn(8, 4))  # a trained weight: its gradient must flow
    x = torch.randn(3, 4)
    assert not cpu_linear.applies(x, w)
    cpu_linear.linear(x, w).sum().backward()
    assert w.grad is not None and torch.allclose(w.grad, x.sum(0).expand(8, 4))
    frozen = torch.randn(8, 4)
    assert not cpu_linear.applies(x.double(), frozen.double())
    assert not cpu_linear.applies(x.bfloat16(), frozen.bfloat16())
    assert not cpu_linear.applies(torch.randn(0, 4), frozen)  # no rows
    assert cpu_linear.linear(torch.randn(0, 4), frozen).shape == (0, 8)
    assert not cpu_linear.applies(x, frozen, torch.nn.Parameter(torch.zeros(8)))  # a trained bias


def test_backend_setting(monkeypatch):
    monkeypatch.setenv(cpu_linear.ENV, "torch")
    cpu_linear.backend.cache_clear()
    try:
        assert cpu_linear.backend() == ("torch", f"{cpu_linear.ENV}=torch")
        monkeypatch.setenv(cpu_linear.ENV, "fast")
        cpu_linear.backend.cache_clear()
        assert cpu_linear.backend()[0] == "torch" and "'fast' is not onednn or torch" in cpu_linear.backend()[1]
    finally:
        monkeypatch.delenv(cpu_linear.ENV)
        cpu_linear.backend.cache_clear()
    assert cpu_linear.backend()[0] == "onednn"


@pytest.mark.parametrize("checkpointing", [False, True])
def test_training_loss_and_lora_gradients_unchanged(tiny_model, checkpointing):
    """The worker's own load (which installs the oneDNN forward) against the same model with every layer's
    forward put back: the same SFT loss and LoRA gradients."""
    import torch

    from services.trainer.spec import TrainingSpec
    from tests.speed.conftest import load_for_training, sft_batch, sft_loss_and_grads

    spec = TrainingSpec(gradient_checkpointing=checkpointing, lora_dropout=0.0,
                        target_modules=["q_proj", "v_proj", "down_proj"])
    tok, loaded = load_for_training(tiny_model, spec)
    frozen = [m for m in loaded.model.modules() if type(m) is torch.nn.Linear and not m.weight.requires_grad]
    assert loaded.cpu_linear == {"backend": "onednn", "layers": len(frozen), "reason": "oneDNN fp32 matmul"}
    assert all("forward" in m.__dict__ for m in frozen)  # every frozen layer, the LM head included
    examples, batch = sft_batch(tok)

    def loss_and_grads():
        return sft_loss_and_grads(loaded, examples, batch)

    loss, grads = loss_and_grads()
    for m in frozen:
        del m.forward  # torch's own nn.Linear forward again
    ref_loss, ref_grads = loss_and_grads()
    _close(loss, ref_loss, 1e-5)
    assert grads.keys() == ref_grads.keys() and len(grads) == 2 * 3 * 2  # A and B of 3 modules in 2 layers
    for name in grads:
        assert ref_grads[name].abs().max() > 0, name
        _close(grads[name], ref_grads[name], 1e-4)
