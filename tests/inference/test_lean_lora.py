"""The lean LoRA forward of decoding (``inference/lora.py``) computes what PEFT's own forward computes: the
base alone, one adapter for every row, and rows of different adapters (and the base) in one forward; and an
adapter it does not implement (DoRA) is left to PEFT."""

from __future__ import annotations

import pytest

from services.trainer.inference.engine import Engine
from services.trainer.inference.lora import DEFERRED
from services.trainer.inference.planner import Target
from tests.inference.conftest import TINY, make_adapter

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, tiny_models_dir):
    tmp = tmp_path_factory.mktemp("lean")
    base_dir = tiny_models_dir / TINY.replace("/", "--")
    engine = Engine(memory_bytes=1 << 30, threads=1)
    targets = [Target(base_model=TINY, base_path=base_dir, job_id=f"job-{name}", adapter_path=path)
               for name, path in (("a", make_adapter(base_dir, tmp / "a", 1, ["q_proj", "v_proj"])),
                                  ("b", make_adapter(base_dir, tmp / "b", 2, ["q_proj", "k_proj", "o_proj", "up_proj",
                                                                          "down_proj"])),
                                  ("dora", make_adapter(base_dir, tmp / "dora", 3, ["q_proj"], use_dora=True)))]
    result = None
    for target in targets:
        result = engine.acquire(target)
        engine.release(result)
    return engine, result, [t.adapter_key for t in targets]


def _batch():
    import torch

    torch.manual_seed(0)
    return torch.randint(3, 200, (3, 9))


def _peft_logits(loaded, keys):
    """PEFT's own forward for these rows (the lean forward deferred)."""
    import torch

    with torch.inference_mode():
        loaded.lean.defer()
        peft = loaded.peft
        if all(k == keys[0] for k in keys):
            if keys[0] is None:
                with peft.disable_adapter():
                    return peft(input_ids=_batch()).logits
            peft.set_adapter(keys[0])
            peft.base_model.enable_adapter_layers()
            return peft(input_ids=_batch()).logits
        peft.base_model.enable_adapter_layers()
        return peft(input_ids=_batch(), adapter_names=["__base__" if k is None else k for k in keys]).logits


@pytest.mark.parametrize("rows", [["a", "a", "a"], ["b", "b", "b"], [None, None, None], ["a", None, "b"],
                                  ["b", "a", "b"]])
def test_lean_forward_equals_peft(loaded, rows):
    import torch

    engine, model, keys = loaded
    names = {"a": keys[0], "b": keys[1], None: None}
    row_keys = [names[r] for r in rows]
    lean = engine._forward(model, row_keys, input_ids=_batch()).logits
    assert model.lean.single is not DEFERRED  # the lean forward ran
    expected = _peft_logits(model, row_keys)
    if rows[0] is None and len(set(rows)) == 1:  # the base alone: the base layers' own matmuls
        assert torch.equal(lean, expected)
    else:  # the same arithmetic, the scaling folded into a GEMM (single adapter) or rows gathered (mixed)
        assert torch.allclose(lean, expected, atol=1e-6, rtol=1e-5)
    # a real adapter: its answers differ from the base's
    if rows[0] is not None:
        assert not torch.allclose(lean[0], _peft_logits(model, [None] * 3)[0], atol=1e-3)


def test_base_rows_equal_the_plain_model(loaded, tiny_models_dir):
    import torch
    from transformers import AutoModelForCausalLM

    engine, model, _ = loaded
    plain = AutoModelForCausalLM.from_pretrained(tiny_models_dir / TINY.replace("/", "--"), dtype=torch.float32)
    with torch.inference_mode():
        expected = plain.eval()(input_ids=_batch()).logits
    assert torch.equal(engine._forward(model, [None] * 3, input_ids=_batch()).logits, expected)


def test_dora_is_left_to_peft(loaded):
    import torch

    engine, model, keys = loaded
    dora = keys[2]
    got = engine._forward(model, [dora] * 3, input_ids=_batch()).logits
    assert model.lean.single is DEFERRED
    expected = _peft_logits(model, [dora] * 3)
    assert torch.allclose(got, expected, atol=1e-6)
    # and the lean forward takes over again for the next plain batch, whatever PEFT's flags were left at
    engine._forward(model, [None] * 3, input_ids=_batch())
    assert model.lean.single is None
    base = _peft_logits(model, [None] * 3)
    assert torch.equal(engine._forward(model, [None] * 3, input_ids=_batch()).logits, base)
