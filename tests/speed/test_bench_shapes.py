"""The benchmark's random-init model of another shape (``train_bench.py --random-init --architecture``), which
the GPU rows use for SmolLM2-1.7B: the shape laid over the folder's config, the weights saved in the asked
dtype, the tokenizer carried over; and the option refused without ``--random-init``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import train_bench  # noqa: E402  (after the path)


def test_random_init_model_takes_the_overrides_and_dtype(tiny_model, tmp_path):
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, AutoTokenizer

    out = train_bench.random_init_model(tiny_model, tmp_path / "m", seed=3,
                                        overrides={"num_hidden_layers": 1, "intermediate_size": 48},
                                        dtype="bfloat16")
    base, config = AutoConfig.from_pretrained(tiny_model), AutoConfig.from_pretrained(out)
    assert (config.num_hidden_layers, config.intermediate_size) == (1, 48)
    assert config.hidden_size == base.hidden_size and config.vocab_size == base.vocab_size
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        names = list(f.keys())
        assert {f.get_tensor(n).dtype for n in names} == {torch.bfloat16}
        gate = f.get_tensor(next(n for n in names if n.endswith("layers.0.mlp.gate_proj.weight")))
    assert gate.shape == (48, base.hidden_size)
    assert not any(".layers.1." in n for n in names)
    tok, ref = AutoTokenizer.from_pretrained(out), AutoTokenizer.from_pretrained(tiny_model)
    assert tok("the court")["input_ids"] == ref("the court")["input_ids"]
    # An existing folder is reused as it is (every row of a run loads the same weights).
    assert train_bench.random_init_model(tiny_model, out, seed=4, overrides={"num_hidden_layers": 2}) == out
    assert AutoConfig.from_pretrained(out).num_hidden_layers == 1


def test_smollm2_1_7b_shape_has_its_parameter_count(tiny_model):
    """SmolLM2-1.7B's published size (1.71 B) from the shape over SmolLM2-135M's config (vocabulary 49,152),
    counted without allocating the weights."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(vocab_size=49152, num_attention_heads=9, num_key_value_heads=3, hidden_size=576,
                         intermediate_size=1536, num_hidden_layers=30)
    for key, value in train_bench.ARCHITECTURES["smollm2-1.7b"].items():
        setattr(config, key, value)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(1.711e9, rel=1e-3)


def test_architecture_needs_random_init(capsys):
    with pytest.raises(SystemExit) as exc:
        train_bench.main(["--architecture", "smollm2-1.7b"])
    assert exc.value.code == 2
    assert "--architecture: only with --random-init" in capsys.readouterr().err
