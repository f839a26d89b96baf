"""4-bit training on a CPU (``quantized.py``): the base layers pass gradients, and the loss and LoRA gradients
are those of the same model with each NF4 layer replaced by a plain ``nn.Linear`` holding its dequantized
weight, whether the dequantized copies are cached or made at each matmul, with and without gradient
checkpointing, and after an eval-mode forward without gradients (which, with bitsandbytes' own CPU path, turns
the layers into an inference layout that passes no gradient at all)."""

from __future__ import annotations

import io

import pytest

from tests.speed.conftest import sft_records


def _load(tiny_model, checkpointing: bool):
    import torch

    from services.trainer.spec import TrainingSpec
    from services.trainer.worker.events import EventSink
    from services.trainer.worker.modeling import load_model, load_tokenizer

    tok = load_tokenizer(tiny_model)
    spec = TrainingSpec(quantization="4bit", gradient_checkpointing=checkpointing, lora_dropout=0.0)
    out = io.StringIO()
    loaded = load_model(tiny_model, spec, tok, EventSink(out))
    assert loaded.quantization == "4bit" and loaded.quantized_layers == {"Linear4bit": 14}
    with torch.no_grad():
        for name, p in loaded.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)  # a fresh B is zero: every gradient but B's would be zero
    return loaded, tok, out.getvalue()


def _dequantized_copy_in_place(model) -> int:
    """Replaces every Linear4bit by an ``nn.Linear`` with bitsandbytes' dequantized weight; returns how many."""
    import bitsandbytes as bnb
    import bitsandbytes.functional as bnbf
    import torch

    n = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, bnb.nn.Linear4bit):
                w = child.weight
                assert not getattr(w.quant_state, "packing_format_for_cpu", False)
                plain = torch.nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
                plain.weight = torch.nn.Parameter(bnbf.dequantize_4bit(w.data, w.quant_state).float(),
                                                  requires_grad=False)
                setattr(module, name, plain)
                n += 1
    return n


@pytest.mark.parametrize("cache", ["on", "off"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_4bit_cpu_training_has_the_dequantized_models_loss_and_gradients(tiny_model, monkeypatch, cache,
                                                                         checkpointing):
    import torch

    from services.trainer.worker.encoding import encode_records
    from services.trainer.worker.methods.sft import SFTMethod
    from services.trainer.worker.quantized import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, cache)
    loaded, tok, log = _load(tiny_model, checkpointing)
    assert "4-bit layers on the CPU: NF4 weights dequantized to float32 " in log
    assert ("once and kept" in log) == (cache == "on")
    model, causal = loaded.model, loaded.causal_lm
    encoded, _ = encode_records(tok, sft_records(4, seed=9), max_len=256)
    objective = SFTMethod(encoded, tok.pad_token_id, torch.device("cpu"))
    params = [p for p in model.parameters() if p.requires_grad]

    model.eval()  # as validation and evaluation do: a forward without gradients in eval mode
    with torch.no_grad():
        objective.step(causal, [0, 1])
    model.train()
    out = objective.step(causal, [0, 1, 2, 3])
    grads = torch.autograd.grad(out.loss, params)
    # Every LoRA weight learns, the first layer's included (its gradient crosses every quantized layer above).
    assert all(float(g.abs().max()) > 0 for g in grads)

    assert _dequantized_copy_in_place(model) == 14
    reference = objective.step(causal, [0, 1, 2, 3])
    ref_grads = torch.autograd.grad(reference.loss, params)
    assert torch.allclose(out.loss, reference.loss, rtol=1e-6, atol=1e-6), (float(out.loss), float(reference.loss))
    for a, b in zip(grads, ref_grads):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7), float((a - b).abs().max())


def test_4bit_weights_stay_4bit_and_the_cache_is_not_saved(tiny_model, monkeypatch):
    """The stored weights stay packed 4-bit (uint8); the dequantized copy is no parameter or buffer, so neither
    a state dict nor the adapter carries it."""
    import torch

    from services.trainer.worker.quantized import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, "on")
    loaded, tok, _ = _load(tiny_model, False)
    with torch.no_grad():
        loaded.causal_lm(input_ids=torch.tensor([[1, 2, 3, 4]]))
    layer = loaded.causal_lm.model.layers[0].self_attn.q_proj.base_layer
    assert layer.weight.dtype == torch.uint8
    assert layer.__dict__["_dequantized"].dtype == torch.float32  # made at the first forward, kept
    keys = loaded.causal_lm.state_dict().keys()
    assert not any("_dequantized" in k for k in keys)
